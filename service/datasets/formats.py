"""Which format an uploaded file is in, decided by its bytes.

Policy: the bytes decide, the name is checked against them.

- ``PK\\x03\\x04`` (a zip archive)            → ``npz``
- ``PAR1`` at the start and at the end      → ``parquet``
- UTF-8 text (no NUL byte)                  → ``csv``, or ``tsv`` when the name
  ends in ``.tsv``/``.tab`` or the header line holds tabs and no commas
- anything else is refused, with what it looks like where we can tell
  (a gzip stream, a lone ``.npy`` array, a Python pickle, a truncated Parquet
  file, binary data). Nothing is ever unpickled: a pickle is named and refused.

A client's file name is only a hint and is never used as a path: only its
extension is read. When the extension names a format (``.csv``, ``.tsv``,
``.tab``, ``.parquet``, ``.pq``, ``.npz``) and the bytes are another one, the
upload is refused (``file named 'data.parquet' is not a Parquet file: its
content looks like CSV text``) rather than silently read as what it is: a
mislabelled file usually means the wrong file was picked. Unknown extensions
(``.txt``, ``.dat``, none) leave the decision to the bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from fitq.service.errors import InvalidDataset

Format = Literal["csv", "tsv", "parquet", "npz"]

SNIFF_BYTES = 64 * 1024
"""How much of the start of a text file is read to tell CSV from TSV (bytes)."""

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
}
_PICKLE_PROTOCOLS = (b"\x02", b"\x03", b"\x04", b"\x05")
"""The byte after a pickle's PROTO opcode (0x80) in protocols 2–5 (what pickle writes today)."""
_DESCRIBE: dict[str, str] = {
    "csv": "CSV text",
    "tsv": "TSV text",
    "parquet": "a Parquet file",
    "npz": "an NPZ (zip) archive",
}


def client_name(filename: str | None) -> str | None:
    """The last part of a client's file name, for messages and the extension only."""
    if not filename:
        return None
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    return base[:200] or None


def extension_format(filename: str | None) -> Format | None:
    """The format a client's file name claims, or None when it claims none we know."""
    base = client_name(filename)
    if base is None:
        return None
    return _EXTENSIONS.get(os.path.splitext(base)[1].lower())


def detect_format(path: Path, filename: str | None = None) -> Format:
    """The format of the file at ``path`` by its bytes, checked against ``filename``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    actual = _by_bytes(head, tail, size)
    claimed = extension_format(filename)
    if claimed == "tsv" and actual == "csv":
        actual = "tsv"
    text = {"csv", "tsv"}
    if claimed is not None and claimed != actual and not (claimed in text and actual in text):
        raise InvalidDataset(
            f"file named {client_name(filename)!r} is not {_DESCRIBE[claimed]}: "
            f"its content looks like {_DESCRIBE[actual]}"
        )
    return actual


def _by_bytes(head: bytes, tail: bytes, size: int) -> Format:
    if size == 0 or not head.strip():
        raise InvalidDataset("the file is empty")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "npz"
    if head.startswith(b"PAR1"):
        if size >= 8 and tail == b"PAR1":
            return "parquet"
        raise InvalidDataset("the file starts like Parquet but is truncated (no PAR1 footer)")
    if head.startswith(b"\x93NUMPY"):
        raise InvalidDataset(
            "the file is a single .npy array; upload an .npz holding arrays x and y "
            "(numpy.savez(f, x=x, y=y))"
        )
    if head[:1] == b"\x80" and head[1:2] in _PICKLE_PROTOCOLS:
        raise InvalidDataset(
            "the file is a Python pickle; fitq never unpickles: upload CSV, TSV, Parquet or "
            "an NPZ of numeric arrays"
        )
    if head.startswith(b"\x1f\x8b"):
        raise InvalidDataset("the file is gzip-compressed; upload it uncompressed")
    if b"\x00" in head:
        raise InvalidDataset(
            "the file is neither UTF-8 text (CSV/TSV) nor Parquet nor NPZ: it looks like "
            "binary data"
        )
    if not _is_utf8(head):
        raise InvalidDataset(
            "the file is neither UTF-8 text (CSV/TSV) nor Parquet nor NPZ; if it is a CSV "
            "file, save it as UTF-8"
        )
    first_line = head.lstrip(b"\xef\xbb\xbf\r\n").split(b"\n", 1)[0]
    return "tsv" if b"\t" in first_line and b"," not in first_line else "csv"


def _is_utf8(head: bytes) -> bool:
    """Whether ``head`` is UTF-8, allowing a character cut at the sniff boundary."""
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            if len(head) < SNIFF_BYTES:
                return False
            continue
        return True
    return False
