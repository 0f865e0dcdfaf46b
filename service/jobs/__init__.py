"""Jobs as the API sees them, one module per concern:

- ``submission.py``: submit (the spec against its datasets, the queued-jobs
  quota, ``Idempotency-Key``), then ``queue.enqueue``;
- ``read.py``: the one read model: the owner check and the job's public shape
  (status history, progress, ETA) for every reader, the routes, the hot reads
  (``api/reads.py``) and the event streams (``api/sse.py``); the History;
- ``listing.py``: ``GET /v1/jobs``: its filters (tags, name, status, sweep,
  dates), its sorts (by age or a metric) and their cursors;
- ``prediction.py``: the trained model's file and its predictions;
- ``evaluation.py``, ``model_formats.py``: Keras' evaluate on a stored dataset,
  and the model's download formats;
- ``budget.py``: the training-memory estimate a spec is checked against at submit;
- ``deletion.py``: ``DELETE /v1/jobs/{id}``: an ended job's rows, then its files.

A job's status is written by ``service/queue/`` only (a cancel is
``queue.request_cancel``).
"""
