"""A CSV/TSV file's size before it is parsed: its header row, read within a byte
limit, and its records, counted in one pass over its bytes.

pyarrow's reader would tell both only after parsing — and holding — the whole
file; these let ``tabular`` refuse a file over the limits first, then parse it
into a matrix of exactly the right size.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from fitq.service.datasets.limits import Limits
from fitq.service.errors import InvalidDataset

COUNT_CHUNK_BYTES = 256 << 10
"""Bytes examined at a time when counting records (numpy holds ~10× that meanwhile)."""
MAX_HEADER_BYTES = 16 << 20
"""The longest header row read (bytes): 100,000 column names of ~160 characters."""
HEADER_READ_BYTES = 64 << 10
"""Bytes read at a time while looking for the header row's end."""
_NL, _CR = 10, 13


def count_records(path: Path) -> int:
    """The records of a text file as pyarrow's CSV reader counts them: lines ended
    by ``\\n``, ``\\r\\n`` or a lone ``\\r``, empty lines skipped (the header included)."""
    records = 0
    open_line = False  # the line in progress already holds a byte
    carry = b""  # a \\r that ended the previous chunk: a break of its own unless \\n follows
    with open(path, "rb") as f:
        while True:
            chunk = f.read(COUNT_CHUNK_BYTES)
            data = carry + chunk
            if not data:
                break
            carry = b""
            if chunk and data.endswith(b"\r"):
                carry, data = b"\r", data[:-1]
                if not data:
                    continue
            b = np.frombuffer(data, dtype=np.uint8)
            newline, cr = b == _NL, b == _CR
            lone_cr = cr.copy()
            lone_cr[:-1] &= ~newline[1:]
            ends = np.flatnonzero(newline | lone_cr)
            content = np.cumsum(~(newline | cr), dtype=np.int32)
            if ends.size:
                before = content[ends]
                held = np.diff(before, prepend=0) > 0
                held[0] |= open_line
                records += int(np.count_nonzero(held))
                open_line = bool(content[-1] > before[-1])
            else:
                open_line = open_line or bool(content[-1] > 0)
            if not chunk:
                break
    return records + int(open_line)


def _first_line(path: Path) -> bytes:
    """The first non-empty line's bytes, read ``HEADER_READ_BYTES`` at a time."""
    head = bytearray()
    with open(path, "rb") as f:
        while piece := f.read(HEADER_READ_BYTES):
            head += piece
            start = len(head) - len(head.lstrip(b"\r\n"))
            ends = [i for i in (head.find(b"\n", start), head.find(b"\r", start)) if i >= 0]
            if start < len(head) and ends:
                return bytes(head[start : min(ends)])
            if len(head) > MAX_HEADER_BYTES:
                raise InvalidDataset(f"the header row is longer than {MAX_HEADER_BYTES} bytes")
    return bytes(head.lstrip(b"\r\n"))


def read_header(path: Path, delimiter: str, limits: Limits) -> list[str]:
    """The column names of the first non-empty line, refused when the line is over
    ``MAX_HEADER_BYTES`` or holds more feature columns than the limits allow
    (counted from its delimiters first, so a line of millions of names never
    becomes strings; a delimiter inside a quoted name counts too)."""
    line = _first_line(path)
    limits.check_features(line.count(delimiter.encode()))  # the fields but the label
    text = line.decode("utf-8-sig", errors="replace")
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if row:
            return row
    raise InvalidDataset("the file is empty")
