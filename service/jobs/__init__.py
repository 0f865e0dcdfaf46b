"""Jobs as the API sees them, one module per concern:

- ``submission.py``: submit (the spec against its datasets, the queued-jobs
  quota, ``Idempotency-Key``), then ``queue.enqueue``;
- ``read.py``: the one read model: the owner check and the job's public shape
  (status history, progress, ETA) for every reader, the routes, the hot reads
  (``api/reads.py``) and the event streams (``api/sse.py``); the History;
- ``prediction.py``: the trained model's file and its predictions.

A job's status is written by ``service/queue/`` only (a cancel is
``queue.request_cancel``).
"""
