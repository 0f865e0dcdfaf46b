"""The API tests' helpers (uploads, a snapshot of what is stored, calls with a key)."""

from tests.api.conftest import api, stored, upload, upload_tmp  # noqa: F401
from tests.worker.conftest import owner_id  # noqa: F401, E402
