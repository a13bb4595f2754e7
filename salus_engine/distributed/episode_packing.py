"""Finished episodes on their way from a rollout worker to the driver: images compressed on the
worker, decoded on the driver.

Camera images are almost all of an episode's bytes (T x C x 3 x S x S uint8: 9.4 MB for 24 steps of
one 256 px camera); the rendered scene compresses several-fold with Blosc, which saves the object
transfer between nodes and the driver's memory while episodes wait in the reorder buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numcodecs import Blosc

from salus_engine.store import EpisodeRecord

IMAGE_CODEC = Blosc(cname="lz4", clevel=5, shuffle=Blosc.NOSHUFFLE)
"""Blosc LZ4 for the trip only (the store re-encodes with zstd): fast on both ends. Shuffling does
nothing for one-byte pixels."""


@dataclass
class PackedEpisode:
    """An `EpisodeRecord` with its images compressed (see `pack_episode`)."""

    episode_id: int
    seed: int
    images: bytes
    """Blosc-compressed (T, C, 3, S, S) uint8 images."""
    image_shape: tuple[int, ...]
    states: np.ndarray
    """(T, 8) float32."""
    actions: np.ndarray
    """(T, 7) float32."""
    member_actions: np.ndarray
    """(T, M, 7) float32."""
    signals: np.ndarray
    """(T, 6) float32."""
    failure_type: int
    failure_step: int
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed arrays (what crosses the network, give or take pickling)."""
        return len(self.images) + sum(a.nbytes for a in (self.states, self.actions, self.member_actions, self.signals))


def pack_episode(record: EpisodeRecord) -> PackedEpisode:
    """Compresses the record's images for the trip to the driver; other arrays travel as they are."""
    images = np.ascontiguousarray(record.images, dtype=np.uint8)
    return PackedEpisode(
        episode_id=int(record.episode_id), seed=int(record.seed), images=IMAGE_CODEC.encode(images),
        image_shape=tuple(int(n) for n in images.shape), states=record.states, actions=record.actions,
        member_actions=record.member_actions, signals=record.signals, failure_type=int(record.failure_type),
        failure_step=int(record.failure_step), evidence=dict(record.evidence),
    )


def unpack_episode(packed: PackedEpisode) -> EpisodeRecord:
    """The `EpisodeRecord` that `pack_episode` packed, with its images decoded bit-identically.

    Raises:
        ValueError: the compressed images do not hold `image_shape` uint8 values.
    """
    flat = np.frombuffer(IMAGE_CODEC.decode(packed.images), dtype=np.uint8)
    if flat.size != int(np.prod(packed.image_shape)):
        raise ValueError(f"episode {packed.episode_id}: {flat.size} image bytes, expected shape {packed.image_shape}")
    return EpisodeRecord(
        episode_id=packed.episode_id, seed=packed.seed, images=flat.reshape(packed.image_shape),
        states=packed.states, actions=packed.actions, member_actions=packed.member_actions, signals=packed.signals,
        failure_type=packed.failure_type, failure_step=packed.failure_step, evidence=packed.evidence,
    )
