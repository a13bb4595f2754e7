"""A labelled one-line form field (label + compact input), laid out two per row by `.form` grids."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Input, Label


class FormField(Horizontal):
    """`label [field........]` on one line (a second widget, e.g. a checkbox, may follow the first)."""

    DEFAULT_CSS = """
    FormField { height: 1; width: 1fr; }
    FormField > Label { width: auto; min-width: 9; padding-right: 1; color: $foreground 80%; }
    FormField > Input, FormField > Select { width: 1fr; }
    FormField > Checkbox { border: none; padding: 0 0 0 1; height: 1; width: auto; background: transparent; }
    """

    def __init__(self, label: str, *fields: Widget, id: str | None = None) -> None:
        for field in fields:
            if isinstance(field, Input):
                field.cursor_blink = False  # a blinking cursor is a timer and terminal traffic while idle
        super().__init__(Label(label), *fields, id=id)
