"""What one upload may decode to, checked before anything is decoded.

Ingest runs in the API process, and the formats it reads expand: a few MB of
deflated zeros are gigabytes of floats, a Parquet footer can announce millions
of rows of one repeated value. So each reader learns the dataset's size first —
an NPZ from its arrays' headers, a Parquet file from its footer, a CSV file by
counting its records in one pass over the bytes — and asks :class:`Limits`
before it allocates: features (``FITQ_MAX_FEATURES``), rows × features
(``FITQ_MAX_DATASET_CELLS``) and the decoded bytes, features as float32 plus the
targets (``FITQ_MAX_DATASET_BYTES``). Ingest then holds about the decoded size,
plus a read buffer of a few MB.
"""

from __future__ import annotations

from dataclasses import dataclass

from fitq.service.errors import InvalidDataset
from fitq.service.settings import Settings

FEATURE_BYTES = 4
"""A feature cell in canonical form (float32)."""
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 << 30
"""An NPZ whose members add up to more than this, uncompressed, is refused (bytes)."""


@dataclass(frozen=True)
class Limits:
    """The limits of one upload; None: unbounded (the ingest tests' default)."""

    max_cells: int | None = None
    max_bytes: int | None = None
    max_features: int | None = None
    max_uncompressed_bytes: int = DEFAULT_MAX_UNCOMPRESSED_BYTES

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_cells=settings.max_dataset_cells,
            max_bytes=settings.max_dataset_bytes,
            max_features=settings.max_features,
            max_uncompressed_bytes=settings.max_npz_uncompressed_bytes,
        )

    def check_features(self, n_features: int) -> None:
        """Refuse more feature columns than ``FITQ_MAX_FEATURES``."""
        if self.max_features is not None and n_features > self.max_features:
            raise InvalidDataset(
                f"dataset too wide: {n_features} feature columns, limit {self.max_features} "
                "(FITQ_MAX_FEATURES)"
            )

    def check_size(self, n_rows: int, n_features: int, target_bytes: int) -> None:
        """Refuse a dataset of ``n_rows`` × ``n_features`` (and ``target_bytes`` of
        targets) over the cells or the bytes limit, before it is read."""
        cells = n_rows * n_features
        if self.max_cells is not None and cells > self.max_cells:
            raise InvalidDataset(
                f"dataset too large: {cells} cells ({n_rows} rows × {n_features} features), "
                f"limit {self.max_cells} (FITQ_MAX_DATASET_CELLS)"
            )
        decoded = cells * FEATURE_BYTES + target_bytes
        if self.max_bytes is not None and decoded > self.max_bytes:
            raise InvalidDataset(
                f"dataset too large: it decodes to {decoded} bytes ({n_rows} rows × "
                f"{n_features} features × {FEATURE_BYTES} bytes, and {target_bytes} bytes of "
                f"targets), limit {self.max_bytes} (FITQ_MAX_DATASET_BYTES); nothing was read"
            )


NO_LIMITS = Limits()
