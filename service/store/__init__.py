"""The artifact store: ``artifacts.py`` (:class:`ArtifactStore`, bytes and
arrays under one URL) and ``keys.py`` (every key it holds, named once)."""

from fitq.service.store.artifacts import ArtifactStore, check_key, storage_options

__all__ = ["ArtifactStore", "check_key", "storage_options"]
