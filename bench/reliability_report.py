"""Turn the fault-injection tests' figures into the table of docs/reliability.md.

    .venv/bin/pytest tests/reliability -q      # writes test-artifacts/reliability.json
    .venv/bin/python -m bench.reliability_report [path]

Prints a Markdown table, one row per scenario and backend. Latencies are what
the run measured on its machine (reported, never asserted by the tests).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ARTIFACT = Path(__file__).resolve().parents[1] / "test-artifacts" / "reliability.json"
ORDER = [
    "1,000 jobs, 16 claimers",
    "kill -9 of busy workers",
    "kill -9 mid-checkpoint + truncated newest",
    "SIGTERM mid-epoch",
    "SIGSTOP past the lease, then SIGCONT",
    "rescue racing completion",
    "worker always dies at epoch 2",
    "cancel",
]
COLUMNS = [
    "scenario",
    "db",
    "jobs",
    "workers",
    "kills",
    "lost",
    "dup. epochs",
    "rescue p50 / max",
    "hand-back",
    "cancel p50 / max",
    "notes",
]


def _ms(value: Any) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _pair(summary: dict[str, Any] | None) -> str:
    if not summary or summary.get("p50_ms") is None:
        return "–"
    return f"{_ms(summary['p50_ms'])} / {_ms(summary['max_ms'])}"


def _notes(figures: dict[str, Any]) -> str:
    notes = []
    if "claim" in figures:
        notes.append(
            f"claim p50 {_ms(figures['claim']['p50_ms'])}, "
            f"{figures['claims_per_second']} claims/s, claimed twice 0"
        )
    if "rerun_epochs" in figures:
        notes.append(f"epochs re-run after a kill: {figures['rerun_epochs']}")
    if "resumed_from" in figures:
        notes.append(f"resumed from {figures['resumed_from']}")
    if "races" in figures:
        won = "; ".join(
            f"{race}: " + ", ".join(f"{side} {n}" for side, n in sorted(wins.items()))
            for race, wins in sorted(figures["races"].items())
        )
        notes.append(f"winners — {won}; terminal overwritten 0")
    if "stale_epochs_run_after_takeover" in figures:
        notes.append(
            f"stale epochs run after the takeover {figures['stale_epochs_run_after_takeover']}, "
            "their writes refused; pauses " + str(figures.get("pauses", 1))
        )
    if "outcome" in figures:
        notes.append(figures["outcome"])
    if "exit_code" in figures:
        notes.append(f"exit code {figures['exit_code']}")
    if "seconds" in figures:
        notes.append(f"{figures['seconds']} s")
    return "; ".join(notes)


def table(data: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for scenario in ORDER + sorted(set(data) - set(ORDER)):
        for backend, f in sorted(data.get(scenario, {}).items(), key=lambda kv: kv[0] != "sqlite"):
            hand_back = _ms(f["hand_back_ms"]) if "hand_back_ms" in f else "–"
            row = [
                scenario,
                "SQLite" if backend == "sqlite" else "PostgreSQL",
                f"{f['jobs']:,}",
                str(f["workers"]),
                str(f["kills"]),
                str(f["lost"]),
                str(f["duplicated_epochs"]),
                _pair(f.get("rescue")),
                hand_back,
                _pair(f.get("cancel")),
                _notes(f),
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ARTIFACT
    print(table(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
