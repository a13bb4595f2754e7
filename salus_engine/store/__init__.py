"""Crash-safe Zarr v3 episode store: layout, writer, reader, verification, horizon labels.

The on-disk layout is documented in docs/data-format.md.
"""

from salus_engine.store.horizon_labels import make_horizon_labels
from salus_engine.store.layout import StoreError
from salus_engine.store.reader import Episode, EpisodeStore
from salus_engine.store.writer import EpisodeRecord, EpisodeWriter

__all__ = ["Episode", "EpisodeRecord", "EpisodeStore", "EpisodeWriter", "StoreError", "make_horizon_labels"]
