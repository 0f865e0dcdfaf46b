"""FITQ_MAX_STORED_BYTES_PER_KEY: what a key's datasets take in the store is
bounded; an upload past it is a 413 naming the usage and the limit."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest

from fitq.service.settings import Settings
from tests.api.conftest import Api, Stored, Upload, csv_bytes
from tests.conftest import Owner

pytestmark = pytest.mark.anyio

CSV_BYTES = 30 * (4 * 4 + 8)
"""csv_bytes(): 30 rows × 4 float32 features and an int64 label, stored."""
LIMIT = 2 * CSV_BYTES + 100


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_stored_bytes_per_key": LIMIT})


async def test_an_upload_past_the_quota_is_a_413_naming_usage_and_limit(
    api: Api, upload: Upload, stored: Callable[[], Stored], make_owner: Callable[..., Owner]
) -> None:
    first = await upload("a.csv", csv_bytes())
    assert first.status_code == 201, first.text
    assert (await upload("b.csv", csv_bytes(n_rows=30, n_classes=2))).status_code == 201
    before = stored()

    r = await upload("c.csv", csv_bytes(n_rows=30, n_classes=4))
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        f"this key's datasets take {2 * CSV_BYTES} bytes in the store and this one "
        f"{CSV_BYTES}, over the limit of {LIMIT} bytes (FITQ_MAX_STORED_BYTES_PER_KEY); "
        "delete a dataset to make room"
    )
    assert stored() == before

    # The same bytes again are a new dataset of this key: they count too.
    assert (await upload("a-again.csv", csv_bytes())).status_code == 413
    # Another key has its own quota; a deleted dataset frees its share.
    other = await upload("c.csv", csv_bytes(n_classes=4), headers=make_owner().headers)
    assert other.status_code == 201
    assert (await api.delete(f"/v1/datasets/{first.json()['id']}")).status_code == 204
    assert (await upload("c.csv", csv_bytes(n_classes=4))).status_code == 201


async def test_the_decoded_size_counts_not_the_upload(upload: Upload) -> None:
    """A compressed NPZ is small on the wire; what it takes in the store counts."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros((300, 4)), y=np.zeros(300))  # ~1 KB
    assert len(buffer.getvalue()) < LIMIT
    r = await upload("z.npz", buffer.getvalue())
    assert r.status_code == 413, r.text
    assert "this one 6000," in r.json()["detail"]  # 300 × (4 + 1) float32
