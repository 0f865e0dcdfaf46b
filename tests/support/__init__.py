"""What the tests and the benchmarks share to drive fitq from outside.

- ``stack.py``: one live-stack harness (``live_stack``: APIs and workers over
  SQLite or PostgreSQL; ``fitq_up``), yielding a ``Stack``;
- ``fleet.py``: worker processes (``fitq worker``, or the faulty worker),
  forked from the warm ``zygote.py`` when the test starts many;
- ``faults.py`` and ``faulty_worker.py``: kills and pauses installed through
  the worker's seams, never through production code;
- ``processes.py``: one fitq process, its environment and its readiness;
- ``specs.py``: ``spec_factory(**overrides)`` and the shapes used again and again;
- ``rows.py``: jobs submitted through the API's own path and read back;
- ``waits.py``: ``wait_for``, the one bounded poll.

The benchmarks import it as ``tests.support`` (they run as ``python -m bench.x``
from the repository); nothing edits ``sys.path``.
"""

from tests.support.faults import Faults
from tests.support.specs import DIGITS_SPEC, dense, digits_spec, iris_spec, spec_factory
from tests.support.stack import Stack, fitq_up, live_stack
from tests.support.waits import WAIT_SECONDS, wait_for

__all__ = [
    "DIGITS_SPEC",
    "WAIT_SECONDS",
    "Faults",
    "Stack",
    "dense",
    "digits_spec",
    "fitq_up",
    "iris_spec",
    "live_stack",
    "spec_factory",
    "wait_for",
]
