"""Parallel collection's driver-side parts that need no Ray: the reorder buffer that puts episodes
back in id order, and the packing of episodes for the trip from a worker to the driver."""

from __future__ import annotations

import numpy as np
import pytest

from salus_engine.distributed.episode_packing import pack_episode, unpack_episode
from salus_engine.distributed.reorder_buffer import EpisodeReorderBuffer
from tests.test_store import record


def test_reorder_buffer_releases_in_id_order():
    buffer = EpisodeReorderBuffer(next_id=5, capacity=3)
    assert buffer.add(7, "e7") == [] and buffer.add(6, "e6") == [] and buffer.held_ids == [6, 7]
    assert buffer.add(5, "e5") == ["e5", "e6", "e7"]
    assert buffer.next_id == 8 and len(buffer) == 0
    assert buffer.add(8, "e8") == ["e8"]


def test_reorder_buffer_refuses_duplicates_and_overflow():
    buffer = EpisodeReorderBuffer(next_id=0, capacity=2)
    buffer.add(1, "a")
    with pytest.raises(ValueError, match="arrived twice"):
        buffer.add(1, "b")
    buffer.add(2, "c")
    with pytest.raises(ValueError, match="buffer full"):
        buffer.add(3, "d")
    # the awaited id is always taken, even when the buffer is full, and releases the rest
    assert buffer.add(0, "z") == ["z", "a", "c"]
    with pytest.raises(ValueError, match="arrived twice"):
        buffer.add(0, "again")
    with pytest.raises(ValueError, match="capacity"):
        EpisodeReorderBuffer(next_id=0, capacity=0)


def test_packing_round_trip_is_bit_identical_and_smaller():
    episode = record(3, length=20, failure_type=0, failure_step=15)
    episode.features = np.linspace(-1, 1, 20 * 9, dtype=np.float32).reshape(20, 9)  # signal families (format 3)
    episode.hidden_features = np.linspace(-3, 3, 20 * 64).astype(np.float16).reshape(20, 64)
    packed = pack_episode(episode)
    assert len(packed.images) < episode.images.nbytes
    assert packed.nbytes > episode.features.nbytes + episode.hidden_features.nbytes
    back = unpack_episode(packed)
    assert back.images.dtype == np.uint8 and np.array_equal(back.images, episode.images)
    for name in ("states", "actions", "member_actions", "signals", "features", "hidden_features"):
        assert getattr(back, name).dtype == getattr(episode, name).dtype, name
        assert np.array_equal(getattr(back, name), getattr(episode, name)), name
    assert (back.episode_id, back.seed, back.failure_type, back.failure_step, back.evidence) == (
        3, episode.seed, 0, 15, episode.evidence)


def test_unpacking_refuses_images_of_the_wrong_size():
    packed = pack_episode(record(0, length=4))
    packed.image_shape = (5, *packed.image_shape[1:])
    with pytest.raises(ValueError, match="image bytes"):
        unpack_episode(packed)
