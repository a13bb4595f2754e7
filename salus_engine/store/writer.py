"""Appends complete episodes to a Zarr v3 store so that a kill at any moment loses at most the
episode in progress.

Each episode is written in full to `DIR/.staging/NNNNNN`, flushed to disk, and then renamed into
`DIR/episodes/NNNNNN` (an atomic rename on one filesystem). Readers list `episodes/` only, so an
episode is visible once complete or not at all. The root attributes are written once, at creation.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from salus_engine import FAILURE_TYPES
from salus_engine.signals import NUM_SIGNALS, SIGNAL_NAMES
from salus_engine.store.horizon_labels import make_horizon_labels
from salus_engine.store.layout import (
    EPISODES_GROUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    STAGING_DIR,
    StoreError,
    episode_name,
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

    @property
    def length(self) -> int:
        return int(self.signals.shape[0])


def _compressor(level: int) -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=level, shuffle="shuffle")


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


def _acquire_lock(path: Path):
    """Takes the store's writer lock: an advisory `flock` on the root `zarr.json`, which stays
    unmodified; the kernel releases it when the process ends, even by SIGKILL.

    Raises:
        StoreError: another process is writing to the store.
    """
    handle = open(path / "zarr.json", "rb")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"{path} is being written by another collection; wait for it or stop it first") from None
    return handle


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
    ) -> EpisodeWriter:
        """Creates a new, empty store at `path`.

        Raises:
            StoreError: `path` exists and is not empty (pass resume to continue it, or choose another path).
        """
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path} already exists and is not empty; use --resume to continue it or choose another --out")
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
            "sim_config": json.loads(json.dumps(sim_config, default=list)),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        path.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(attrs)
        root.create_group(EPISODES_GROUP)
        return cls(path, attrs, 0, compression_level)

    @classmethod
    def open_for_resume(cls, path: str | Path, compression_level: int = 3) -> EpisodeWriter:
        """Opens an existing store to append; discards a partial episode left by a crash.

        The next episode id is one more than the highest complete one, so there are no gaps and no
        duplicates.

        Raises:
            StoreError: `path` is missing, damaged or not a SALUS store.
        """
        store = EpisodeStore.open(path)
        lock = _acquire_lock(store.path)  # before touching .staging, which a live writer may be using
        staging = store.path / STAGING_DIR
        if staging.exists():
            shutil.rmtree(staging)
        ids = store.episode_ids
        return cls(store.path, dict(store.attrs), (max(ids) + 1) if ids else 0, compression_level, lock)

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
        for name, shape in expected.items():
            got = getattr(record, name).shape
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
        for key, data in arrays.items():
            # images: one chunk per 10 steps so the episode player reads a frame cheaply; others: one chunk.
            chunks = (min(10, data.shape[0]), *data.shape[1:]) if key == "images" else data.shape
            array = group.create_array(key, shape=data.shape, chunks=chunks, dtype=data.dtype,
                                       compressors=_compressor(self._compression_level))
            array[...] = data
        group.attrs.update({
            "episode_id": int(record.episode_id),
            "seed": int(record.seed),
            "success": bool(record.failure_type == -1),
            "failure_type": int(record.failure_type),
            "failure_step": int(record.failure_step),
            "episode_length": int(record.length),
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "evidence": json.loads(json.dumps(record.evidence, default=float)),
        })
        if durable:
            _fsync_tree(staged)
        final = self.path / EPISODES_GROUP / name
        os.rename(staged, final)
        if durable:
            _fsync_dir(final.parent)
        staging_root.rmdir()
        self.next_episode_id += 1
        return final
