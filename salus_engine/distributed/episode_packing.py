"""Finished episodes on their way from a rollout worker to the driver: images compressed on the
worker, decoded on the driver.

Camera images are almost all of an episode's bytes (T x C x 3 x S x S uint8: 9.4 MB for 24 steps of
one 256 px camera); the rendered scene compresses several-fold with Blosc, which saves the object
transfer between nodes and the driver's memory while episodes wait in the reorder buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numcodecs import Blosc

from salus_engine.store import EpisodeRecord

IMAGE_CODEC = Blosc(cname="lz4", clevel=5, shuffle=Blosc.NOSHUFFLE)
"""Blosc LZ4 for the trip only (the store re-encodes with zstd): fast on both ends. Shuffling does
nothing for one-byte pixels."""


@dataclass
class PackedEpisode:
    """An `EpisodeRecord` with its images compressed (see `pack_episode`)."""

    record: EpisodeRecord
    """The episode with an empty `images` array; every other array travels as it is."""
    images: bytes
    """Blosc-compressed (T, C, 3, S, S) uint8 images."""
    image_shape: tuple[int, ...]

    @property
    def episode_id(self) -> int:
        return int(self.record.episode_id)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed arrays (what crosses the network, give or take pickling)."""
        r = self.record
        arrays = (r.states, r.actions, r.member_actions, r.signals, r.features, r.hidden_features,
                  r.monitor_probabilities, r.alarm, r.intervention, r.actor)
        return len(self.images) + sum(a.nbytes for a in arrays if a is not None)


def pack_episode(record: EpisodeRecord) -> PackedEpisode:
    """Compresses the record's images for the trip to the driver; other arrays travel as they are."""
    images = np.ascontiguousarray(record.images, dtype=np.uint8)
    return PackedEpisode(record=replace(record, images=np.empty(0, dtype=np.uint8)),
                         images=IMAGE_CODEC.encode(images), image_shape=tuple(int(n) for n in images.shape))


def unpack_episode(packed: PackedEpisode) -> EpisodeRecord:
    """The `EpisodeRecord` that `pack_episode` packed, with its images decoded bit-identically.

    Raises:
        ValueError: the compressed images do not hold `image_shape` uint8 values.
    """
    flat = np.frombuffer(IMAGE_CODEC.decode(packed.images), dtype=np.uint8)
    if flat.size != int(np.prod(packed.image_shape)):
        raise ValueError(f"episode {packed.episode_id}: {flat.size} image bytes, expected shape {packed.image_shape}")
    return replace(packed.record, images=flat.reshape(packed.image_shape))
