"""What the tests and the benchmarks share to drive fitq from outside.

- ``stack.py``: one live-stack harness (``live_stack``: APIs and workers over
  SQLite or PostgreSQL; ``fitq_up``), yielding a ``Stack``;
- ``fleet.py``: worker processes (``fitq worker``, or the faulty worker),
  forked from the warm ``zygote.py`` when the test starts many;
- ``faults.py`` and ``faulty_worker.py``: kills and pauses installed through
  the worker's seams, never through production code;
- ``processes.py``: one fitq process, its environment and its readiness;
- ``specs.py``: ``spec_factory(**overrides)`` and the shapes used again and again;
- ``keras_reference.py``: Keras on the torch backend, the reference fitq is
  compared against;
- ``rows.py``: jobs submitted through the API's own path and read back;
- ``waits.py``: ``wait_for``, the one bounded poll.

Import from the module (``from tests.support.specs import spec_factory``):
this file imports nothing, so a light user (bench/engine.py on a GPU machine
with torch alone) does not pull in the service. The benchmarks import it as
``tests.support`` (they run as ``python -m bench.x`` from the repository);
nothing edits ``sys.path``.
"""
