"""Command palette (ctrl+p): an entry for every action of the console.

Entries come from the live bindings of the screen the palette was opened from (so each key has an
entry named after its description), plus one per screen and one per theme.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from salus_tui.widgets.nav_bar import SCREENS


def palette_commands(app, screen) -> list[tuple[str, str, Callable[[], object]]]:
    """(title, help, callback) of every command available on `screen`."""
    commands: list[tuple[str, str, Callable[[], object]]] = []
    for mode, key in SCREENS:
        commands.append((f"screen: {mode}", f"show the {mode} screen (key {key})", partial(app.action_show_screen, mode)))
    seen: set[tuple[int, str]] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.system or binding.action in ("command_palette", "leave_form") or binding.action.startswith("show_screen"):
            continue
        if (id(active.node), binding.action) in seen or not active.enabled:
            continue
        seen.add((id(active.node), binding.action))
        where = "app" if active.node is app else getattr(active.node, "MODE", "") or type(active.node).__name__.lower()
        title = f"{where}: {binding.description or binding.action}"
        commands.append((title, f"key {app.get_key_display(binding)}", partial(app.run_action, binding.action, active.node)))
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
