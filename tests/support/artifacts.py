"""The figures tests leave in ``test-artifacts/`` (JSON read by the docs' reports).

Several test processes may add to one file at once (pytest-xdist runs the suite
on every core), so each update reads, changes and writes the file under an
exclusive lock: no figure of another process is lost, no reader sees half a file.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def update_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``change`` to the JSON object in ``path`` (``{}`` if there is none yet)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        change(data)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        temporary.replace(path)
