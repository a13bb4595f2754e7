"""A dialog for a job's error: the one-line message and where the session log is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ErrorDialog(ModalScreen[None]):
    """Shows an error; enter or escape closes it and the console carries on."""

    BINDINGS = [Binding("escape,enter", "close", "close", id="error-close")]
    DEFAULT_CSS = """
    ErrorDialog { align: center middle; }
    ErrorDialog > Vertical { width: 80%; max-width: 90; height: auto; border: thick $error; padding: 1 2;
                             background: $surface; }
    ErrorDialog #message { margin-bottom: 1; }
    ErrorDialog #log-path { color: $foreground 70%; margin-bottom: 1; }
    """

    def __init__(self, title: str, message: str, log_path: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Label(self.message, id="message")
            yield Label(f"session log: {self.log_path}", id="log-path")
            yield Button("OK (enter)", variant="error", id="ok")

    def on_button_pressed(self) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
