"""A dialog for a job's error: the whole message (wrapped; scrollable when it is longer than the
terminal allows), where the session log is, and an OK button."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.events import Resize
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


CHROME_ROWS = 8
"""Rows of the dialog around its scrollable text: border 2, padding 2, button 3 with 1 above it."""


class ErrorDialog(ModalScreen[None]):
    """Shows an error; enter or escape closes it and the console carries on. The dialog grows with
    its text up to the terminal's height; longer text scrolls above the button."""

    BINDINGS = [Binding("escape,enter", "close", "close", id="error-close")]
    DEFAULT_CSS = """
    ErrorDialog { align: center middle; }
    ErrorDialog > #dialog { width: 80%; max-width: 90; height: auto; max-height: 100%; border: thick $error;
                            padding: 1 2; background: $surface; }
    ErrorDialog #body { height: auto; max-height: 16; }
    ErrorDialog #message { width: 1fr; margin-bottom: 1; }
    ErrorDialog #log-path { width: 1fr; color: $foreground 70%; }
    ErrorDialog #ok { dock: bottom; margin-top: 1; }
    """

    def __init__(self, title: str, message: str, log_path: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.log_path = log_path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = self.title_text
            with VerticalScroll(id="body"):
                # Static wraps at the dialog's width (a Label does not); no markup: the text is shown as it is
                yield Static(self.message, id="message", markup=False)
                yield Static(f"session log: {self.log_path}", id="log-path", markup=False)
            yield Button("OK (enter)", variant="error", id="ok")

    def on_resize(self, event: Resize) -> None:
        self.query_one("#body").styles.max_height = max(3, event.size.height - CHROME_ROWS)

    def on_button_pressed(self) -> None:
        self.dismiss()

    def action_close(self) -> None:
        self.dismiss()
