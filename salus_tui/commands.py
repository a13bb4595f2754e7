"""Command palette (ctrl+p): an entry for every action of the console.

Entries come from the live bindings of the screen the palette was opened from (so each key has an
entry named after its description), plus one per screen and one per theme.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from salus_tui.bindings import live_bindings
from salus_tui.widgets.nav_bar import SCREENS


def palette_commands(app, screen) -> list[tuple[str, str, Callable[[], object]]]:
    """(title, help, callback) of every command available on `screen`."""
    commands: list[tuple[str, str, Callable[[], object]]] = []
    for mode, key in SCREENS:
        commands.append((f"screen: {mode}", f"show the {mode} screen (key {key})", partial(app.action_show_screen, mode)))
    for entry in live_bindings(screen):
        action = entry.binding.action
        if not entry.enabled or action in ("command_palette", "leave_form") or action.startswith("show_screen"):
            continue
        commands.append((f"{entry.where}: {entry.description}", f"key {' '.join(entry.keys)}",
                         partial(app.run_action, action, entry.node)))
    for name in app.salus_theme_names:
        commands.append((f"theme: {name}", "switch the console's colours", partial(setattr, app, "theme", name)))
    return commands


class SalusCommands(Provider):
    """Every console action by name."""

    async def discover(self) -> Hits:
        for title, help_text, callback in palette_commands(self.app, self.screen):
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in palette_commands(self.app, self.screen):
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
