"""fitq's Python client (httpx), Keras-flavoured.

    from fitq import Client

    client = Client("http://127.0.0.1:8000", api_key)
    history = client.fit(spec, x_train, y_train, epochs=10, validation_split=0.1)
    history.history["loss"]          # as Keras' History.history
    job = history.job
    job.predict(x_test)              # probabilities (classification) or values
    job.download("model.safetensors")  # fitq's layout; format="keras" or "onnx" too
    model = job.to_keras()           # a Keras model: model.predict(x_test)
    job.evaluate(x_test, y_test)     # Keras' evaluate: {"loss": …, "accuracy": …}

``spec`` may also be a compiled Keras model (``client.fit(keras_model, x, y, …)``):
its ``to_json()`` and compile config are sent as the spec.

Or step by step: ``client.upload_dataset(x, y)`` (arrays, sent as NPZ) or
``client.upload_dataset("digits.csv")``; ``job = client.submit(spec,
dataset=…)``; ``job.wait(progress=True)``; ``job.history``.

Every non-2xx answer raises :class:`ApiError` carrying the status and the
server's ``detail``; a job that ends failed or cancelled raises
:class:`JobFailed` from ``fit`` (``wait`` returns it as it is).

The modules: ``client.py`` (the :class:`Client`, one method per endpoint),
``job.py`` (a :class:`Job` and its History), ``sweep.py`` (a :class:`Sweep`:
``client.sweep(spec, parameters, metric=…)``, ``.wait()``, ``.table()``,
``.best``), ``events.py`` (Server-Sent Events), ``errors.py``, ``config.py``
(where ``Client()`` with no arguments finds its server and key: the
environment, then the file ``fitq login`` writes). Nothing here
imports the server's packages.
"""

from fitq.service.client.client import Client
from fitq.service.client.errors import ApiError, JobFailed
from fitq.service.client.events import ServerEvent, parse_sse
from fitq.service.client.job import PREDICT_BATCH_ROWS, History, Job, history_of, keras_line
from fitq.service.client.sweep import Sweep

__all__ = [
    "PREDICT_BATCH_ROWS",
    "ApiError",
    "Client",
    "History",
    "Job",
    "JobFailed",
    "ServerEvent",
    "Sweep",
    "history_of",
    "keras_line",
    "parse_sse",
]
