"""Puts episodes that finish out of order back in id order before they are written.

The store holds episodes 0..n-1 without gaps (`EpisodeWriter.write` takes the next id only, and
`--resume` relies on it), while parallel workers finish in any order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class EpisodeReorderBuffer(Generic[T]):
    """Holds finished episodes until every lower id has been released.

    Args:
        next_id: the id that the store expects next (`EpisodeWriter.next_episode_id`).
        capacity: most episodes held at once (the driver's in-flight limit): memory stays bounded
            whatever the number of episodes.
    """

    def __init__(self, next_id: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity is {capacity}; use 1 or more")
        self._next_id = int(next_id)
        self.capacity = int(capacity)
        self._held: dict[int, T] = {}

    @property
    def next_id(self) -> int:
        """The lowest id not yet released: the one the store expects next."""
        return self._next_id

    def __len__(self) -> int:
        return len(self._held)

    @property
    def held_ids(self) -> list[int]:
        """Ids held, waiting for a lower one, ascending."""
        return sorted(self._held)

    def add(self, episode_id: int, item: T) -> list[T]:
        """Takes one finished episode; returns the episodes now ready to write, in id order (possibly none).

        Raises:
            ValueError: the id was released or is held already, or the buffer is full (the
                driver handed out more episodes than its in-flight limit).
        """
        episode_id = int(episode_id)
        if episode_id < self._next_id or episode_id in self._held:
            raise ValueError(f"episode {episode_id} arrived twice")
        if episode_id != self._next_id and len(self._held) >= self.capacity:
            raise ValueError(f"reorder buffer full ({self.capacity} episodes) while waiting for episode {self._next_id}")
        self._held[episode_id] = item
        ready = []
        while self._next_id in self._held:
            ready.append(self._held.pop(self._next_id))
            self._next_id += 1
        return ready
