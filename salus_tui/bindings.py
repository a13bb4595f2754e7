"""The key bindings live on a screen, for the help screen and the command palette.

Unlike `Screen.active_bindings` (one entry per key), this keeps a binding that a focused widget
shadows (e.g. the episodes screen's enter under the table's enter), so that every action of the
screen is listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen


@dataclass
class LiveBinding:
    """One action of one node with every key bound to it."""

    node: DOMNode
    binding: Binding
    enabled: bool
    """False when the node's `check_action` greys it out now (e.g. stop while nothing runs)."""
    keys: list[str] = field(default_factory=list)
    """Keys as the footer shows them."""

    @property
    def where(self) -> str:
        """`app`, the screen's name (its mode) or the widget's type."""
        if self.node is self.node.app:
            return "app"
        return getattr(self.node, "MODE", "") or type(self.node).__name__.lower()

    @property
    def description(self) -> str:
        return self.binding.description or self.binding.action


def live_bindings(screen: Screen) -> list[LiveBinding]:
    """Every binding reachable from the focused widget of `screen` (through the screen to the app),
    hidden actions included; system bindings excluded. Order: the screen's own, then widgets', then the app's."""
    app = screen.app
    entries: dict[tuple[int, str], LiveBinding] = {}
    for node, bindings in screen._modal_binding_chain:
        for _key, binding in bindings:
            if binding.system:
                continue
            state = app._check_action_state(binding.action, node)
            if state is False:
                continue
            entry = entries.setdefault((id(node), binding.action), LiveBinding(node, binding, bool(state)))
            display = app.get_key_display(binding)
            if display not in entry.keys:
                entry.keys.append(display)
    rank = lambda e: 0 if e.node is screen else 2 if e.node is app else 1  # noqa: E731
    return sorted(entries.values(), key=rank)
