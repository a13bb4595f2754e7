"""Modal asking whether to quit while a job runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmQuit(ModalScreen[bool]):
    """Returns True to stop the running jobs (after their current unit of work) and quit."""

    BINDINGS = [Binding("y", "answer(True)", "yes", id="confirm-yes"),
                Binding("n,escape", "answer(False)", "no", id="confirm-no")]
    DEFAULT_CSS = """
    ConfirmQuit { align: center middle; }
    ConfirmQuit > Vertical { width: 64; max-width: 100%; height: auto; border: thick $warning; padding: 1 2;
                             background: $surface; }
    ConfirmQuit Horizontal { height: auto; margin-top: 1; }
    ConfirmQuit Button { margin-right: 2; }
    """

    def __init__(self, jobs: list[str]) -> None:
        super().__init__()
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        units = {"collect": "episode", "train": "epoch", "evaluate": "scorer"}
        running = ", ".join(f"{job} (stops after the current {units.get(job, 'step')})" for job in self.jobs)
        with Vertical():
            # Static wraps at the dialog's width (a Label does not, and cut the sentence off)
            yield Static(f"Running: {running}.\nQuit once it has stopped? Everything recorded so far is kept.",
                         markup=False)
            with Horizontal():
                yield Button("Quit (y)", variant="warning", id="yes")
                yield Button("Keep running (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)
