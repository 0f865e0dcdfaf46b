"""``fitq worker`` with faults installed, for the reliability tests and the soak.

    python -m tests.support.faulty_worker [--die-at JOB:EPOCH] [--die-in-checkpoint N]
        [--step-delay-ms MS] [--store-full N [--store-full-after M]]

It runs what ``fitq worker`` runs, ``fitq.worker.runner.serve`` (settings
from the environment, logs, SIGTERM and Ctrl-C), handing it the store and
the step observer of the faults (tests/support/faults.py) through the
worker's seams. Without arguments it is ``fitq worker`` exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from fitq.service.settings import get_settings
from fitq.worker import runner
from tests.support.faults import Faults


def main(argv: Sequence[str]) -> None:
    faults = Faults.parse(argv)
    settings = get_settings()
    runner.serve(settings, store=faults.store(settings), on_step=faults.on_step())


if __name__ == "__main__":
    main(sys.argv[1:])
