"""A labelled one-line form field (label + compact input), laid out two per row by `.form` grids."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label


class FormField(Horizontal):
    """`label [field........]` on one line."""

    DEFAULT_CSS = """
    FormField { height: 1; width: 1fr; }
    FormField > Label { width: auto; min-width: 9; padding-right: 1; color: $foreground 80%; }
    FormField > Input, FormField > Select { width: 1fr; }
    FormField > Checkbox { border: none; padding: 0; height: 1; width: auto; background: transparent; }
    """

    def __init__(self, label: str, field: Widget, *, id: str | None = None) -> None:
        super().__init__(Label(label), field, id=id)
