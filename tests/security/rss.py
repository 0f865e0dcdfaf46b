"""A process's resident memory from ``/proc`` (Linux): now, and its peak since
the last reset (``VmHWM``, reset by writing ``5`` to ``clear_refs``, Linux ≥ 4.0).

The peak is what a memory bomb costs: a process that decodes 6 GB and frees it
again shows it only there.
"""

from __future__ import annotations

import re
from pathlib import Path

KIB = 1024


def _status(pid: int | str, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"/proc/{pid}/status has no {field}")
    return int(found.group(1)) * KIB


def rss(pid: int | str = "self") -> int:
    """Resident bytes now."""
    return _status(pid, "VmRSS")


def peak(pid: int | str = "self") -> int:
    """The most resident bytes since the last :func:`reset_peak` (or the start)."""
    return _status(pid, "VmHWM")


def reset_peak(pid: int | str = "self") -> None:
    """Start a new peak at the current resident size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def can_reset_peak() -> bool:
    """Whether this kernel lets us reset the peak (Linux, /proc mounted, ≥ 4.0)."""
    try:
        reset_peak()
    except OSError:
        return False
    return True
