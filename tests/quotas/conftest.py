"""The quota tests' fixtures: the API tests' (uploads, a snapshot of what is
stored, calls with a key), the worker tests' owner, the fault-injection tests'
(a warm parent for worker processes, their home and store)."""

from tests.api.conftest import api, stored, upload, upload_tmp  # noqa: F401
from tests.reliability.conftest import backend, home, storage_url, zygote  # noqa: F401
from tests.worker.conftest import owner_id  # noqa: F401
