"""Read access to a collection store: `EpisodeStore.open(path)`, `len(store)`, `store.episode(i)`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.errors import ChunkNotFoundError

from salus_engine.store.checks import (
    EpisodeMeta,
    StoreScan,
    episode_attributes,
    episode_problems,
    format_version,
    root_problems,
    scan_store,
)
from salus_engine.store.layout import (
    ARRAY_DTYPES,
    CHECKSUM_VERSION,
    EPISODE_NAME,
    EPISODES_GROUP,
    StoreError,
    array_dtypes,
    episode_name,
    feature_names,
)

__all__ = ["CheckedArray", "Episode", "EpisodeMeta", "EpisodeStore", "damage"]


def damage(err: BaseException) -> str:
    """A short, one-line description of why zarr could not read a chunk or its metadata."""
    first = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, ChunkNotFoundError):
        return "a chunk file is missing"
    if "checksum" in first.lower():
        return "checksum mismatch: the chunk was altered or truncated"
    text = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return text if len(text) <= 100 else text[:97] + "..."


class CheckedArray:
    """A read-only zarr array of one episode whose reads turn damage into a one-line `StoreError`.

    `shape`, `dtype`, `chunks` and the rest are the zarr array's; indexing reads chunks.
    """

    def __init__(self, array: zarr.Array, store_path: Path, episode_id: int, name: str) -> None:
        self._array = array
        self._store_path = store_path
        self._episode_id = episode_id
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._array, attr)

    def __len__(self) -> int:
        return len(self._array)

    def damaged(self, err: BaseException) -> StoreError:
        return StoreError(f"{self._store_path}: episode {self._episode_id}: array '{self.name}' is damaged "
                          f"({damage(err)}); run 'salus verify {self._store_path}'")

    def __getitem__(self, selection: Any) -> np.ndarray:
        try:
            return self._array[selection]
        except (IndexError, TypeError):
            raise  # a bad selection is the caller's bug, not damage
        except Exception as err:  # zarr and the codecs raise several types for a damaged chunk
            raise self.damaged(err) from None


class Episode:
    """One recorded episode. Arrays load on first access and are cached.

    Attributes `images` (T, C, 3, H, W) uint8, `states` (T, 8), `actions` (T, 7),
    `member_actions` (T, M, 7), `signals` (T, 6) float32, `horizon_labels` (T, H, 4) uint8, and in a
    format-3 store with families `features` (T, F) float32 and `hidden_features` (T, D) float16
    (None where the store does not record them).
    A damaged chunk raises `StoreError` (one line naming the episode and the array).
    """

    def __init__(self, folder: Path, meta: EpisodeMeta, store_path: Path, checksums: bool,
                 names: tuple[str, ...] = tuple(ARRAY_DTYPES)) -> None:
        self.array_names = names
        self._folder = folder
        self._store_path = store_path
        self._checksums = checksums
        self._arrays: dict[str, CheckedArray] = {}
        self.meta = meta

    def array(self, name: str) -> CheckedArray:
        """The lazy array `name` (e.g. to read one image frame without loading the rest).

        Raises:
            KeyError: `name` is not an array of the episode layout.
            StoreError: the array's metadata is damaged.
        """
        if name not in self.array_names:
            raise KeyError(name)
        if name not in self._arrays:
            try:
                array = self.open_zarr_array(name)
            except Exception as err:  # zarr raises several types for damaged metadata
                raise StoreError(f"{self._store_path}: episode {self.meta.episode_id}: array '{name}' is unreadable "
                                 f"({damage(err)}); run 'salus verify {self._store_path}'") from None
            self._arrays[name] = CheckedArray(array, self._store_path, self.meta.episode_id, name)
        return self._arrays[name]

    def open_zarr_array(self, name: str) -> zarr.Array:
        """The plain zarr array `name`, without turning damage into `StoreError` (for `salus verify`).
        A missing chunk raises in a store with checksums (format version 2 stores every chunk)."""
        return zarr.open_array(store=str(self._folder / name), mode="r", zarr_format=3,
                               config={"read_missing_chunks": not self._checksums})

    def frame(self, step: int, camera: int = 0) -> np.ndarray:
        """One camera image at `step` as (H, W, 3) uint8."""
        return np.asarray(self.array("images")[step, camera]).transpose(1, 2, 0)

    @cached_property
    def states(self) -> np.ndarray:
        return self.array("states")[...]

    @cached_property
    def actions(self) -> np.ndarray:
        return self.array("actions")[...]

    @cached_property
    def member_actions(self) -> np.ndarray:
        return self.array("member_actions")[...]

    @cached_property
    def signals(self) -> np.ndarray:
        return self.array("signals")[...]

    @cached_property
    def horizon_labels(self) -> np.ndarray:
        return self.array("horizon_labels")[...]

    @cached_property
    def features(self) -> np.ndarray | None:
        return self.array("features")[...] if "features" in self.array_names else None

    @cached_property
    def hidden_features(self) -> np.ndarray | None:
        return self.array("hidden_features")[...] if "hidden_features" in self.array_names else None

    @property
    def images(self) -> np.ndarray:
        """All frames, (T, C, 3, H, W) uint8 (not cached: tens of MB)."""
        return self.array("images")[...]


class EpisodeStore:
    """A collection store opened for reading.

    Raises `StoreError` (one line: the path and what is wrong) for a missing, foreign or damaged store.
    """

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.attrs: dict[str, Any] = attrs
        self._metas: dict[int, EpisodeMeta] = {}

    @staticmethod
    def exists(path: str | Path) -> bool:
        """True when `path` holds something (a store, other files, or is a file); False for a missing
        or empty folder."""
        path = Path(path)
        try:
            return path.exists() and (not path.is_dir() or any(path.iterdir()))
        except OSError:
            return True  # unreadable: something is there; opening or creating says what is wrong

    @classmethod
    def open(cls, path: str | Path) -> EpisodeStore:
        """Opens the store at `path` read-only and checks its root attributes.

        Raises:
            StoreError: missing path, not a Zarr v3 group, not a SALUS store, unsupported version or
                damaged root attributes.
        """
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such store; give the --out folder of a collection")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a Zarr v3 store (no zarr.json); give the --out folder of a collection")
        try:
            root = zarr.open_group(str(path), mode="r", zarr_format=3)
            attrs = dict(root.attrs)
        except Exception as err:  # zarr raises several types for damaged metadata
            raise StoreError(f"{path}: damaged store metadata ({type(err).__name__}); re-collect or restore it") from None
        if not attrs:
            # only an older SALUS could leave this: its creation was killed before the attributes
            raise StoreError(f"{path}: a Zarr group without attributes: not a SALUS store, or one whose creation "
                             "by an older SALUS was interrupted; give another --out, or delete it and collect again")
        problems = root_problems(attrs)
        if problems:
            raise StoreError(f"{path}: {problems[0]}")
        if not (path / EPISODES_GROUP / "zarr.json").is_file() or not (path / EPISODES_GROUP).is_dir():
            raise StoreError(f"{path}: damaged store, the '{EPISODES_GROUP}' group is missing; re-collect")
        return cls(path, attrs)

    @property
    def format_version(self) -> int:
        return format_version(self.attrs)

    @property
    def has_checksums(self) -> bool:
        """True when every chunk carries a crc32c checksum (format version 2 and later)."""
        return self.format_version >= CHECKSUM_VERSION

    @cached_property
    def episode_ids(self) -> list[int]:
        """Ids of the episode folders that hold a group (`zarr.json`), ascending. `check` tells
        whether they are complete and contiguous."""
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

    def scan(self) -> StoreScan:
        """Every structural problem of the store (`salus_engine.store.checks.scan_store`); reads no chunk."""
        scan = scan_store(self.path, self.attrs)
        self._metas.update(scan.metas)
        return scan

    def check(self) -> StoreScan:
        """Refuses a damaged store: gaps in the episode ids, an episode folder without `zarr.json`,
        wrong-typed or impossible episode attributes, arrays whose shape or dtype disagree.

        Raises:
            StoreError: one line with the first problem (naming the episode) and 'run salus verify'.
        """
        scan = self.scan()
        first = scan.first_problem()
        if first is not None:
            raise StoreError(f"{self.path}: damaged store, {first}; run 'salus verify {self.path}'")
        return scan

    def meta(self, index: int) -> EpisodeMeta:
        """Metadata of the `index`-th complete episode (0-based position, not id), without arrays.

        Raises:
            IndexError: index out of range.
            StoreError: the episode's metadata is damaged (wrong types, impossible values, arrays
                that disagree with its length).
        """
        episode_id = self.episode_ids[index]
        if episode_id not in self._metas:
            meta, problems = episode_problems(self.path, episode_id, self.attrs)
            if meta is None:
                raise StoreError(f"{self.path}: episode {episode_id} is damaged ({problems[0]}); "
                                 f"run 'salus verify {self.path}'")
            self._metas[episode_id] = meta
        return self._metas[episode_id]

    def metas(self) -> list[EpisodeMeta]:
        """Metadata of every complete episode, in id order, each checked against its arrays' metadata
        (see `meta`)."""
        return [self.meta(i) for i in range(len(self))]

    def listing(self) -> list[EpisodeMeta]:
        """Metadata of every complete episode, in id order, from the episodes' group attributes alone:
        one small file per episode (a 2,000-episode store in well under a second), for tables.
        Unlike `metas`, the arrays' metadata is not checked; reading an array still refuses damage.

        Raises:
            StoreError: an episode's attributes are damaged (one line naming it, 'run salus verify').
        """
        metas = []
        for episode_id in self.episode_ids:
            meta = self._metas.get(episode_id)
            if meta is None:
                meta, problems = episode_attributes(self.path, episode_id)
                if meta is None:
                    raise StoreError(f"{self.path}: episode {episode_id} is damaged ({problems[0]}); "
                                     f"run 'salus verify {self.path}'")
            metas.append(meta)
        return metas

    def episode(self, index: int) -> Episode:
        """The `index`-th complete episode (0-based position in id order).

        Raises:
            StoreError: the episode is damaged (see `meta`); reading a damaged chunk raises it later.
        """
        meta = self.meta(index)
        folder = self.path / EPISODES_GROUP / episode_name(meta.episode_id)
        return Episode(folder, meta, self.path, self.has_checksums, self.array_names())

    def episode_by_id(self, episode_id: int) -> Episode:
        """The episode with id `episode_id` (see `episode`).

        Raises:
            KeyError: no such episode.
            StoreError: the episode is damaged.
        """
        if episode_id not in self.episode_ids:
            raise KeyError(episode_id)
        return self.episode(self.episode_ids.index(episode_id))

    def __iter__(self):
        for i in range(len(self)):
            yield self.episode(i)

    def array_names(self) -> tuple[str, ...]:
        """The arrays of every episode of this store (format 3 adds the signal families')."""
        return tuple(array_dtypes(self.attrs))

    @property
    def feature_families(self) -> dict[str, list[str]]:
        """Signal family -> its columns of the `features` array, in order (empty before format 3)."""
        return {name: list(columns) for name, columns in (self.attrs.get("feature_families") or {}).items()}

    @property
    def feature_names(self) -> list[str]:
        """The columns of the `features` array (`feature_families` concatenated)."""
        return feature_names(self.attrs)

    @property
    def hidden_dim(self) -> int:
        """Width of `hidden_features`, 0 when the store does not record them."""
        return int(self.attrs.get("hidden_dim") or 0)

    def read_arrays(self, names: tuple[str, ...] = ("signals", "horizon_labels"),
                    episode_ids: list[int] | None = None) -> list[dict[str, np.ndarray]]:
        """The named arrays of the given episodes (default: every complete one), read concurrently.

        One event loop reads every array through zarr's asynchronous API (one round trip for the
        whole store instead of one per array; about 3x faster than `Episode.signals` in a loop), so a
        2,000-episode store's signals load in seconds. Never reads images unless asked.

        Args:
            names: array names (docs/data-format.md), e.g. ("signals",): (T, 6) float32.
            episode_ids: ids to read, in the order wanted; None: `episode_ids`.

        Returns:
            One dict {name: array} per episode, in the order of `episode_ids`.

        Raises:
            StoreError: an array is unreadable (missing or damaged chunk, checksum mismatch, bad
                metadata): one line naming the episode and the array, and 'run salus verify'.
        """
        import asyncio

        import zarr.api.asynchronous as zarr_async

        ids = list(self.episode_ids if episode_ids is None else episode_ids)
        wanted = [(episode_id, name) for episode_id in ids for name in names]
        folder = self.path / EPISODES_GROUP
        config = {"read_missing_chunks": not self.has_checksums}  # version 2 stores every chunk

        async def read(episode_id: int, name: str):
            array = await zarr_async.open_array(store=str(folder / episode_name(episode_id) / name), mode="r",
                                                zarr_format=3, config=config)
            return await array.getitem(...)

        async def read_all():
            return await asyncio.gather(*(read(i, name) for i, name in wanted), return_exceptions=True)

        values = asyncio.run(read_all())
        for (episode_id, name), value in zip(wanted, values):
            if isinstance(value, BaseException):
                raise StoreError(f"{self.path}: episode {episode_id}: array '{name}' is damaged ({damage(value)}); "
                                 f"run 'salus verify {self.path}'")
        width = len(names)
        return [dict(zip(names, values[k * width:(k + 1) * width])) for k in range(len(ids))]
