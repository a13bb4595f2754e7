"""Textual messages that carry engine events from worker threads to the UI thread."""

from __future__ import annotations

from textual.message import Message

from salus_engine.events import Event


class EngineEvent(Message):
    """An engine `Event`, posted thread-safely by a worker's sink with `post_message`."""

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event
