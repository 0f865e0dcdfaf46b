"""A multipart upload streamed to a temporary file, with a byte limit that acts
while the body arrives (Starlette's ``UploadFile`` buffers before a limit could).

The body goes through python-multipart's streaming parser chunk by chunk: the
``file`` part is written to a temporary file and hashed on the way; the small
text fields (``name``, ``label``, ``task``) are kept in memory, each capped.
The client's file name is returned as a string, never used as a path. Text
that no database can hold (a NUL) is refused in either (``untrusted``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from fitq.service import untrusted
from fitq.service.errors import InvalidInput, PayloadTooLarge

FILE_FIELD = "file"
TEXT_FIELDS = ("name", "label", "task")
MAX_TEXT_FIELD_BYTES = 4096
"""Cap on each text field (bytes)."""
MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room for boundaries, part headers and text fields above the file limit (bytes)."""


@dataclass
class Upload:
    """A received upload; ``path`` is a temporary file the caller must remove."""

    path: Path
    filename: str | None
    size_bytes: int
    sha256: str
    fields: dict[str, str] = field(default_factory=dict)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class _Receiver:
    """The parser's callbacks: which part we are in and where its bytes go."""

    def __init__(self, out: IO[bytes], max_file_bytes: int):
        self.out = out
        self.max_file_bytes = max_file_bytes
        self.hasher = hashlib.sha256()
        self.file_bytes = 0
        self.file_seen = False
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._part: str | None = None
        self._text = bytearray()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._headers = {}
        self._part = None
        self._text = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise InvalidInput("a multipart part has no form-data name", loc=["body"])
        name = options[b"name"].decode("utf-8", "replace")
        if name == FILE_FIELD:
            if self.file_seen:
                raise InvalidInput("more than one 'file' part", loc=["body", FILE_FIELD])
            self.file_seen = True
            raw = options.get(b"filename")
            if raw is not None:
                self.filename = raw.decode("utf-8", "replace")
                untrusted.check_text(self.filename, ["body", FILE_FIELD], "the file name")
        elif name in TEXT_FIELDS:
            if name in self.fields:
                raise InvalidInput(f"more than one {name!r} field", loc=["body", name])
        else:
            expected = ", ".join((FILE_FIELD, *TEXT_FIELDS))
            raise InvalidInput(
                f"unknown form field {name!r}; the fields are {expected}", loc=["body", name]
            )
        self._part = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part == FILE_FIELD:
            self.file_bytes += len(chunk)
            if self.file_bytes > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"the file is over the upload limit of {self.max_file_bytes} bytes "
                    "(FITQ_MAX_UPLOAD_BYTES)"
                )
            self.hasher.update(chunk)
            # Local disk writes of one ASGI chunk (~64 KiB) land in the page cache.
            self.out.write(chunk)
        else:
            self._text += chunk
            if len(self._text) > MAX_TEXT_FIELD_BYTES:
                raise InvalidInput(
                    f"field {self._part!r} is over {MAX_TEXT_FIELD_BYTES} bytes",
                    loc=["body", str(self._part)],
                )

    def on_part_end(self) -> None:
        if self._part in TEXT_FIELDS:
            try:
                text = self._text.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"field {self._part!r} is not UTF-8 text", loc=["body", self._part]
                ) from None
            loc = ["body", self._part]
            self.fields[self._part] = untrusted.check_text(text, loc, f"field {self._part!r}")
        self._part = None

    def on_end(self) -> None:
        self.ended = True


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidInput(
            "the upload must be multipart/form-data with the file in the field 'file'",
            loc=["header", "content-type"],
        )
    return options[b"boundary"]


def _check_content_length(request: Request, max_file_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise InvalidInput(
            "Content-Length is not a number", loc=["header", "content-length"]
        ) from None
    if length > max_file_bytes + MULTIPART_OVERHEAD_BYTES:
        raise PayloadTooLarge(
            f"the body ({length} bytes) is over the upload limit of {max_file_bytes} bytes "
            "(FITQ_MAX_UPLOAD_BYTES)"
        )


async def receive_upload(request: Request, *, max_file_bytes: int) -> Upload:
    """Stream the request's multipart body; the ``file`` part lands in a temp file.

    Raises ``PayloadTooLarge`` as soon as the file (or, upfront, the declared
    Content-Length) passes ``max_file_bytes``, and ``InvalidInput`` for a body
    that is not the expected form. Nothing is left on disk when it raises.
    """
    _check_content_length(request, max_file_bytes)
    boundary = _boundary(request)
    fd, tmp = tempfile.mkstemp(prefix="fitq-upload-", suffix=".part")
    body_bytes = 0
    body_limit = max_file_bytes + MULTIPART_OVERHEAD_BYTES
    try:
        with os.fdopen(fd, "wb") as out:
            receiver = _Receiver(out, max_file_bytes)
            parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
            async for chunk in request.stream():
                body_bytes += len(chunk)
                if body_bytes > body_limit:
                    raise PayloadTooLarge(
                        f"the body is over the upload limit of {max_file_bytes} bytes "
                        "(FITQ_MAX_UPLOAD_BYTES)"
                    )
                parser.write(chunk)
                if receiver.ended:
                    break
        if not receiver.ended:
            raise InvalidInput("the multipart body is incomplete", loc=["body"])
        if not receiver.file_seen:
            raise InvalidInput("the field 'file' is required", loc=["body", FILE_FIELD])
        return Upload(
            path=Path(tmp),
            filename=receiver.filename,
            size_bytes=receiver.file_bytes,
            sha256=receiver.hasher.hexdigest(),
            fields=receiver.fields,
        )
    except FormParserError as exc:
        _unlink(tmp)
        raise InvalidInput(f"the multipart body is malformed: {exc}", loc=["body"]) from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
