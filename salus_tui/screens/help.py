"""Help: every key binding active on the screen below, read from the live bindings."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Label

from salus_tui.bindings import live_bindings


def binding_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(keys, description, where) of every binding live on `screen` (see `salus_tui.bindings`)."""
    app = screen.app
    rows = []
    for entry in live_bindings(screen):
        if entry.binding.action == "command_palette":
            continue
        rows.append((" ".join(entry.keys), entry.description + ("" if entry.enabled else " (not now)"), entry.where))
    if app.ENABLE_COMMAND_PALETTE:
        rows.append((app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")),
                     "command palette: every action by name", "app"))
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists the bindings of the screen it was opened from; escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "close", id="help-close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; max-width: 100; height: 90%; border: thick $primary; background: $surface; }
    HelpScreen Label { padding: 0 1; width: 1fr; }
    HelpScreen DataTable { height: 1fr; }
    """

    def __init__(self, rows: list[tuple[str, str, str]], title: str) -> None:
        super().__init__()
        self.rows = rows
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = f"keys: {self.title_text}"
            yield Label("Keys work when no form field has focus (tab enters the form, escape leaves it); "
                        "F2-F5 switch screens even while typing. ctrl+p finds every action by name.")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("key", "action", "where")
        for row in self.rows:
            table.add_row(*row)

    def action_close(self) -> None:
        self.dismiss()
