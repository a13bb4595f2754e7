"""Read access to a collection store: `EpisodeStore.open(path)`, `len(store)`, `store.episode(i)`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from salus_engine.store.layout import (
    ARRAY_DTYPES,
    EPISODE_NAME,
    EPISODES_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    StoreError,
    episode_name,
)


@dataclass(frozen=True)
class EpisodeMeta:
    """An episode's metadata (the group's attributes)."""

    episode_id: int
    seed: int
    success: bool
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout."""
    failure_step: int
    episode_length: int
    timestamp: str
    """ISO 8601, UTC."""
    evidence: dict[str, Any]


class Episode:
    """One recorded episode. Arrays load on first access and are cached.

    Attributes `images` (T, C, 3, H, W) uint8, `states` (T, 8), `actions` (T, 7),
    `member_actions` (T, M, 7), `signals` (T, 6) float32, `horizon_labels` (T, H, 4) uint8.
    """

    def __init__(self, group: zarr.Group, meta: EpisodeMeta) -> None:
        self._group = group
        self.meta = meta

    def array(self, name: str) -> zarr.Array:
        """The lazy zarr array `name` (e.g. to read one image frame without loading the rest)."""
        return self._group[name]

    def frame(self, step: int, camera: int = 0) -> np.ndarray:
        """One camera image at `step` as (H, W, 3) uint8."""
        return np.asarray(self._group["images"][step, camera]).transpose(1, 2, 0)

    @cached_property
    def states(self) -> np.ndarray:
        return self._group["states"][...]

    @cached_property
    def actions(self) -> np.ndarray:
        return self._group["actions"][...]

    @cached_property
    def member_actions(self) -> np.ndarray:
        return self._group["member_actions"][...]

    @cached_property
    def signals(self) -> np.ndarray:
        return self._group["signals"][...]

    @cached_property
    def horizon_labels(self) -> np.ndarray:
        return self._group["horizon_labels"][...]

    @property
    def images(self) -> np.ndarray:
        """All frames, (T, C, 3, H, W) uint8 (not cached: tens of MB)."""
        return self._group["images"][...]


class EpisodeStore:
    """A collection store opened for reading.

    Raises `StoreError` (one line: the path and what is wrong) for a missing, foreign or damaged store.
    """

    def __init__(self, path: Path, root: zarr.Group) -> None:
        self.path = path
        self._root = root
        self.attrs: dict[str, Any] = dict(root.attrs)
        self._metas: dict[int, EpisodeMeta] = {}

    @staticmethod
    def exists(path: str | Path) -> bool:
        """True when `path` holds something (a store or other files); False for a missing or empty folder."""
        path = Path(path)
        return path.exists() and any(path.iterdir())

    @classmethod
    def open(cls, path: str | Path) -> EpisodeStore:
        """Opens the store at `path` read-only.

        Raises:
            StoreError: missing path, not a Zarr v3 group, not a SALUS store, or unsupported version.
        """
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such store; give the --out folder of a collection")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a Zarr v3 store (no zarr.json); give the --out folder of a collection")
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
        except Exception as err:  # zarr raises several types for damaged metadata
            raise StoreError(f"{path}: damaged store metadata ({type(err).__name__}); re-collect or restore it") from None
        attrs = dict(root.attrs)
        if attrs.get("format") != FORMAT_NAME:
            raise StoreError(f"{path}: a Zarr store, but not a SALUS episode store (attribute format={attrs.get('format')!r})")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise StoreError(f"{path}: store format version {attrs.get('format_version')} is not supported "
                             f"(this SALUS reads {FORMAT_VERSION}); upgrade SALUS or re-collect")
        if not (path / EPISODES_GROUP / "zarr.json").is_file():
            raise StoreError(f"{path}: damaged store, the '{EPISODES_GROUP}' group is missing; re-collect")
        return cls(path, root)

    @cached_property
    def episode_ids(self) -> list[int]:
        """Ids of complete episodes, ascending."""
        folder = self.path / EPISODES_GROUP
        return sorted(int(p.name) for p in folder.iterdir()
                      if EPISODE_NAME.match(p.name) and (p / "zarr.json").is_file())

    def __len__(self) -> int:
        return len(self.episode_ids)

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(int(h) for h in self.attrs["horizons"])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.attrs["cameras"])

    def _group(self, episode_id: int) -> zarr.Group:
        try:
            return zarr.open_group(str(self.path / EPISODES_GROUP / episode_name(episode_id)), mode="r", zarr_format=3)
        except Exception as err:
            raise StoreError(f"{self.path}: episode {episode_id} is damaged ({type(err).__name__}); "
                             "run 'salus verify' on the store") from None

    def meta(self, index: int) -> EpisodeMeta:
        """Metadata of the `index`-th complete episode (0-based position, not id), without arrays.

        Raises:
            IndexError: index out of range.
            StoreError: the episode's metadata is damaged.
        """
        episode_id = self.episode_ids[index]
        if episode_id not in self._metas:
            meta_path = self.path / EPISODES_GROUP / episode_name(episode_id) / "zarr.json"
            try:
                attrs = json.loads(meta_path.read_text()).get("attributes", {})
                self._metas[episode_id] = EpisodeMeta(**{k: attrs[k] for k in EpisodeMeta.__dataclass_fields__})
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise StoreError(f"{self.path}: episode {episode_id} has damaged metadata ({err!s}); "
                                 "run 'salus verify' on the store") from None
        return self._metas[episode_id]

    def metas(self) -> list[EpisodeMeta]:
        """Metadata of every complete episode, in id order."""
        return [self.meta(i) for i in range(len(self))]

    def episode(self, index: int) -> Episode:
        """The `index`-th complete episode (0-based position in id order)."""
        meta = self.meta(index)
        return Episode(self._group(meta.episode_id), meta)

    def __iter__(self):
        for i in range(len(self)):
            yield self.episode(i)

    def array_names(self) -> tuple[str, ...]:
        return tuple(ARRAY_DTYPES)

    def read_arrays(self, names: tuple[str, ...] = ("signals", "horizon_labels")) -> list[dict[str, np.ndarray]]:
        """Loads the named arrays of every episode into memory (never images unless asked)."""
        return [{name: getattr(ep, name) for name in names} for ep in self]
