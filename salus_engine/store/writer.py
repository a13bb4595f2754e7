"""Appends complete episodes to a Zarr v3 store so that a kill at any moment loses at most the
episode in progress.

Each episode is written in full to `DIR/.staging/NNNNNN`, flushed to disk, and then renamed into
`DIR/episodes/NNNNNN` (an atomic rename on one filesystem). Readers list `episodes/` only, so an
episode is visible once complete or not at all. The store itself is created the same way: built
with its root attributes in a sibling folder `.salus-creating-<name>-<random>` and renamed to `DIR`,
so a half-created store never exists. Every chunk carries a crc32c checksum (format version 2).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from salus_engine import FAILURE_TYPES
from salus_engine.signals import NUM_SIGNALS, SIGNAL_NAMES
from salus_engine.store.checks import chunk_checksum_problems, format_version
from salus_engine.store.horizon_labels import make_horizon_labels
from salus_engine.store.layout import (
    CHECKSUM_VERSION,
    CREATING_PREFIX,
    EPISODES_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    HIDDEN_PROJECTION,
    MONITOR_ARRAY_DTYPES,
    STAGING_DIR,
    StoreError,
    array_dtypes,
    episode_name,
    feature_names,
)
from salus_engine.store.reader import EpisodeStore


@dataclass
class EpisodeRecord:
    """One finished episode, in memory, ready to be written.

    Shapes: T steps, C cameras, image side S, M members.
    """

    episode_id: int
    seed: int
    images: np.ndarray
    """(T, C, 3, S, S) uint8."""
    states: np.ndarray
    """(T, 8) float32."""
    actions: np.ndarray
    """(T, 7) float32, executed (mean of members)."""
    member_actions: np.ndarray
    """(T, M, 7) float32."""
    signals: np.ndarray
    """(T, 6) float32."""
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout."""
    failure_step: int
    """0-based step at which the outcome happened."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable physics evidence for the label (forces in N, distances in m, ...)."""
    features: np.ndarray | None = None
    """(T, F) float32: the signal families' columns (`salus_engine.signal_families`), or None."""
    hidden_features: np.ndarray | None = None
    """(T, D) float16: the policy's pooled prefix embedding (projected to D), or None."""
    monitor_probabilities: np.ndarray | None = None
    """(T, H_m, 4) float32: the runtime monitor's failure probabilities per step (format 4), or None."""
    alarm: np.ndarray | None = None
    """(T,) uint8: 1 where the monitor raised an alarm, or None."""
    intervention: np.ndarray | None = None
    """(T,) uint8: the intervention active at each step (`layout.INTERVENTION_KINDS` code), or None."""
    actor: np.ndarray | None = None
    """(T,) uint8: who chose the executed action (`layout.ACTORS` code), or None."""
    interventions: list[dict[str, Any]] = field(default_factory=list)
    """The episode's interventions in order (JSON-serialisable: step, kind, steps, alarm...)."""

    @property
    def length(self) -> int:
        return int(self.signals.shape[0])


def _compressors(level: int) -> list:
    """Blosc (zstd, byte shuffle), then a crc32c checksum of the compressed chunk (format version 2)."""
    return [BloscCodec(cname="zstd", clevel=level, shuffle="shuffle"), Crc32cCodec()]


def _fsync_tree(path: Path) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(err: OSError) -> str:
    return err.strerror or type(err).__name__


def _acquire_lock(path: Path):
    """Takes the store's writer lock: an advisory `flock` on the root `zarr.json`, which stays
    unmodified; the kernel releases it when the process ends, even by SIGKILL.

    Raises:
        StoreError: another process is writing to the store, or the store cannot be opened.
    """
    try:
        handle = open(path / "zarr.json", "rb")
    except OSError as err:
        raise StoreError(f"{path}: cannot open the store's zarr.json ({_reason(err)}); check the folder") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"{path} is being written by another collection; wait for it or stop it first") from None
    return handle


def _check_new_store_path(path: Path) -> None:
    """Refuses an --out that cannot become a new store: a file, a folder under a file, a non-empty folder.

    Raises:
        StoreError: one line naming the path and what to do.
    """
    if path.is_dir():
        try:
            empty = not any(path.iterdir())
        except OSError as err:
            raise StoreError(f"{path}: cannot read the folder ({_reason(err)}); choose another --out") from None
        if not empty:
            raise StoreError(f"{path} already exists and is not empty; use --resume to continue it or choose another --out")
        return
    if path.exists() or path.is_symlink():
        raise StoreError(f"{path} is a file, not a folder; choose another --out")
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise StoreError(f"cannot create {path}: {ancestor} is a file, not a folder; choose another --out")
            break


def _remove_abandoned_builds(parent: Path, name: str) -> None:
    """Removes the build folders of creations of `name` killed before their rename. A live creation
    holds an flock on its build folder, so only abandoned ones are removed."""
    prefix = f"{CREATING_PREFIX}{name}-"
    for entry in parent.iterdir():
        if not entry.name.startswith(prefix):
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # BlockingIOError: a creation in progress
        finally:
            os.close(fd)


def _new_build_folder(parent: Path, name: str) -> tuple[Path, int]:
    """A fresh, locked build folder next to the store-to-be: (path, fd holding its flock)."""
    while True:
        build = parent / f"{CREATING_PREFIX}{name}-{secrets.token_hex(6)}"
        try:
            build.mkdir()
        except FileExistsError:
            continue
        try:
            fd = os.open(build, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue  # a concurrent cleaner took it for abandoned before we could lock it
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a concurrent cleaner removes it
        try:
            if os.stat(build).st_ino == os.fstat(fd).st_ino:
                return build, fd
        except FileNotFoundError:
            pass
        os.close(fd)  # removed by a cleaner between mkdir and flock: take another name


def json_attribute(value: Any, default: Callable[[Any], Any] = float) -> Any:
    """`value` as a store's JSON attribute holds it and reads it back: tuples become lists, numpy
    scalars plain numbers (through `default`, e.g. `float`)."""
    return json.loads(json.dumps(value, default=default))


class EpisodeWriter:
    """Writes episodes to one collection store. Create with `create` or `open_for_resume`."""

    def __init__(self, path: Path, attrs: dict[str, Any], next_episode_id: int, compression_level: int = 3,
                 lock=None) -> None:
        self._lock = lock if lock is not None else _acquire_lock(path)
        self.path = path
        self.attrs = attrs
        self.next_episode_id = next_episode_id
        self._compression_level = compression_level
        self._horizons = tuple(int(h) for h in attrs["horizons"])

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        horizons: tuple[int, ...],
        cameras: tuple[str, ...],
        image_size: int,
        ensemble_size: int,
        base_seed: int,
        policy: str,
        sim_config: dict[str, Any],
        compression_level: int = 3,
        feature_families: dict[str, list[str]] | None = None,
        hidden_dim: int = 0,
        hidden_projection: np.ndarray | None = None,
        monitor: dict[str, Any] | None = None,
    ) -> EpisodeWriter:
        """Creates a new, empty store at `path`, atomically: the store is built with its root
        attributes in a sibling folder and renamed to `path`, so a kill leaves either no store or a
        complete empty one (never a half-created one); a build folder left by a killed creation is
        removed by the next one. The returned writer holds the store's writer lock.

        Args (beyond the root attributes of docs/data-format.md):
            feature_families: signal family -> its columns of the `features` array (empty or None:
                the store has no `features` array).
            hidden_dim: width D of `hidden_features` (0: not recorded).
            hidden_projection: (D_policy, D) float32, the fixed projection of the policy's embedding,
                stored as the root array `hidden_projection`; None when the embedding is stored as is.
            monitor: the runtime monitor's settings (JSON-serialisable, with `horizons`, the
                predictor's horizons): every episode then records `monitor_probabilities`, `alarm`,
                `intervention` and `actor`. None: a collection without a monitor.

        Raises:
            StoreError: `path` is a file, under a file, not writable, or exists and is not empty (pass
                resume to continue it, or choose another path); or another creation got there first.
        """
        path = Path(path)
        _check_new_store_path(path)
        attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "horizons": [int(h) for h in horizons],
            "failure_types": list(FAILURE_TYPES),
            "signal_names": list(SIGNAL_NAMES),
            "cameras": list(cameras),
            "image_size": int(image_size),
            "ensemble_size": int(ensemble_size),
            "action_dim": 7,
            "state_dim": 8,
            "base_seed": int(base_seed),
            "policy": str(policy),
            "sim_config": json_attribute(sim_config, default=list),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "feature_families": {str(k): [str(c) for c in v] for k, v in (feature_families or {}).items()},
            "hidden_dim": int(hidden_dim),
            "monitor": json_attribute(monitor) if monitor else None,
        }
        target = Path(os.path.abspath(path))
        parent = target.parent
        build, guard, lock = None, None, None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned_builds(parent, target.name)
            build, guard = _new_build_folder(parent, target.name)
            root = zarr.create_group(store=str(build), attributes=attrs, zarr_format=3)
            root.create_group(EPISODES_GROUP)
            if hidden_projection is not None:
                projection = np.asarray(hidden_projection, dtype=np.float32)
                root.create_array(HIDDEN_PROJECTION, shape=projection.shape, chunks=projection.shape,
                                  dtype=projection.dtype, compressors=_compressors(compression_level))[...] = projection
            _fsync_tree(build)
            _fsync_dir(build)
            lock = _acquire_lock(build)  # the flock follows the inode through the rename
            try:
                os.rename(build, target)
            except OSError as err:
                if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise StoreError(f"{path} already exists and is not empty (created meanwhile by another "
                                     "process); use --resume to continue it or choose another --out") from None
                if err.errno == errno.ENOTDIR:
                    raise StoreError(f"{path} is a file, not a folder; choose another --out") from None
                raise
            build = None
            _fsync_dir(parent)
        except BaseException as err:
            if lock is not None:
                lock.close()
            if isinstance(err, OSError):
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise StoreError(f"cannot create {path}: disk full; free space or choose another --out") from None
                raise StoreError(f"cannot create {path}: {_reason(err)} in {parent}; choose a writable --out "
                                 "(a new folder inside a folder you can write to)") from None
            raise
        finally:
            if guard is not None:
                os.close(guard)
            if build is not None:
                shutil.rmtree(build, ignore_errors=True)
        return cls(path, attrs, 0, compression_level, lock)

    @staticmethod
    def check_new_path(path: str | Path) -> None:
        """Checks, without creating anything, that `path` can become a new store (for a job that
        wants to fail before loading its models). `create` checks the same and more.

        Raises:
            StoreError: `path` is a file, under a file, a non-empty folder, or its folder is not writable.
        """
        path = Path(path)
        _check_new_store_path(path)
        existing = next((p for p in Path(os.path.abspath(path)).parents if p.exists()), None)
        if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
            raise StoreError(f"cannot create {path}: {existing} is not writable; choose a writable --out")

    @classmethod
    def open_for_resume(cls, path: str | Path, compression_level: int = 3) -> EpisodeWriter:
        """Opens an existing store to append; discards a partial episode left by a crash.

        The store must pass the structural checks that `salus verify` runs first
        (`EpisodeStore.check`): the next episode id is then the number of episodes, which equals the
        highest id + 1, so there are no gaps and no duplicates.

        Raises:
            StoreError: `path` is missing, damaged or not a SALUS store, or another process writes to it.
        """
        store = EpisodeStore.open(path)
        lock = _acquire_lock(store.path)  # before touching .staging, which a live writer may be using
        try:
            staging = store.path / STAGING_DIR
            if staging.exists():
                try:
                    shutil.rmtree(staging)
                except OSError as err:
                    raise StoreError(f"{store.path}: cannot remove the partial episode in {STAGING_DIR} "
                                     f"({_reason(err)}); check the folder's permissions") from None
            store.check()
            if format_version(store.attrs) >= CHECKSUM_VERSION:
                for episode_id in store.episode_ids:
                    damaged = chunk_checksum_problems(store.path, episode_id, store.attrs)
                    if damaged:
                        raise StoreError(f"{store.path}: damaged store, episode {episode_id}: {damaged[0]}; "
                                         f"run 'salus verify {store.path}'")
        except BaseException:
            lock.close()
            raise
        return cls(store.path, dict(store.attrs), len(store), compression_level, lock)

    def close(self) -> None:
        """Releases the writer lock."""
        self._lock.close()

    def seed_for(self, episode_id: int) -> int:
        """Episode seed: the store's base seed plus the episode id."""
        return int(self.attrs["base_seed"]) + episode_id

    def _validate(self, record: EpisodeRecord) -> None:
        t = record.length
        m = int(self.attrs["ensemble_size"])
        c = len(self.attrs["cameras"])
        s = int(self.attrs["image_size"])
        expected = {
            "images": (t, c, 3, s, s),
            "states": (t, 8),
            "actions": (t, 7),
            "member_actions": (t, m, 7),
            "signals": (t, NUM_SIGNALS),
        }
        f, d = len(feature_names(self.attrs)), int(self.attrs.get("hidden_dim") or 0)
        if f:
            expected["features"] = (t, f)
        if d:
            expected["hidden_features"] = (t, d)
        if self.attrs.get("monitor"):
            expected["monitor_probabilities"] = (t, len(self.attrs["monitor"]["horizons"]), len(FAILURE_TYPES))
            expected.update(alarm=(t,), intervention=(t,), actor=(t,))
        for name, shape in expected.items():
            value = getattr(record, name)
            if value is None:
                raise ValueError(f"episode {record.episode_id}: {name} missing; the store records them")
            got = value.shape
            if got != shape:
                raise ValueError(f"episode {record.episode_id}: {name} has shape {got}, expected {shape}")
        if record.episode_id != self.next_episode_id:
            raise ValueError(f"episode id {record.episode_id} out of order; the store expects {self.next_episode_id}")
        if t == 0:
            raise ValueError(f"episode {record.episode_id} has no steps")

    def write(self, record: EpisodeRecord, durable: bool = True) -> Path:
        """Writes one complete episode and makes it visible atomically.

        Args:
            record: the episode; its id must equal `next_episode_id`.
            durable: fsync the episode's files before the rename (survives power loss, not only a kill).

        Returns:
            The episode group's directory.

        Raises:
            ValueError: shapes inconsistent with the store's attributes, or an out-of-order id.
        """
        self._validate(record)
        name = episode_name(record.episode_id)
        staging_root = self.path / STAGING_DIR
        staged = staging_root / name
        try:
            final = self._write_staged(record, staging_root, staged, durable)
        except OSError as err:
            # leave no partial episode behind (resume would remove it too); the store stays valid
            shutil.rmtree(staged, ignore_errors=True)
            try:
                staging_root.rmdir()
            except OSError:
                pass
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StoreError(f"{self.path}: disk full at episode {record.episode_id}: free space and continue "
                                 "with --resume") from None
            raise StoreError(f"{self.path}: cannot write episode {record.episode_id} ({_reason(err)}); fix the "
                             "folder and continue with --resume") from None
        self.next_episode_id += 1
        return final

    def _write_staged(self, record: EpisodeRecord, staging_root: Path, staged: Path, durable: bool) -> Path:
        if staged.exists():
            shutil.rmtree(staged)
        staging_root.mkdir(exist_ok=True)
        group = zarr.open_group(str(staged), mode="w", zarr_format=3)
        labels = make_horizon_labels(record.failure_type, record.failure_step, record.length, self._horizons)
        arrays = {
            "images": np.ascontiguousarray(record.images, dtype=np.uint8),
            "states": np.asarray(record.states, dtype=np.float32),
            "actions": np.asarray(record.actions, dtype=np.float32),
            "member_actions": np.asarray(record.member_actions, dtype=np.float32),
            "signals": np.asarray(record.signals, dtype=np.float32),
            "horizon_labels": labels,
        }
        if "features" in array_dtypes(self.attrs):
            arrays["features"] = np.asarray(record.features, dtype=np.float32)
        if "hidden_features" in array_dtypes(self.attrs):
            arrays["hidden_features"] = np.asarray(record.hidden_features, dtype=np.float16)
        for key, dtype in MONITOR_ARRAY_DTYPES.items():
            if key in array_dtypes(self.attrs):
                arrays[key] = np.asarray(getattr(record, key), dtype=dtype)
        for key, data in arrays.items():
            # images: one chunk per 10 steps so the episode player reads a frame cheaply; others: one chunk.
            # Every chunk is written, also one equal to the fill value: a missing chunk is damage.
            chunks = (min(10, data.shape[0]), *data.shape[1:]) if key == "images" else data.shape
            array = group.create_array(key, shape=data.shape, chunks=chunks, dtype=data.dtype,
                                       compressors=_compressors(self._compression_level),
                                       config={"write_empty_chunks": True})
            array[...] = data
        group.attrs.update({
            "episode_id": int(record.episode_id),
            "seed": int(record.seed),
            "success": bool(record.failure_type == -1),
            "failure_type": int(record.failure_type),
            "failure_step": int(record.failure_step),
            "episode_length": int(record.length),
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "evidence": json_attribute(record.evidence),
        })
        if self.attrs.get("monitor"):
            group.attrs["interventions"] = json_attribute(record.interventions)
        if durable:
            _fsync_tree(staged)
        final = self.path / EPISODES_GROUP / staged.name
        os.rename(staged, final)
        if durable:
            _fsync_dir(final.parent)
        staging_root.rmdir()
        return final
