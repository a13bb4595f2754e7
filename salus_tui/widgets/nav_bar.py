"""The top line of every screen: the screens with their keys, and what each job is doing."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

SCREENS = (("collect", "1"), ("train", "2"), ("evaluate", "3"), ("episodes", "4"))
"""Screen (Textual mode) names and the keys that show them (F2..F5 work while typing)."""


class NavBar(Widget):
    """`SALUS  1 collect  2 train  3 evaluate  4 episodes   collect 3/20 · train epoch 4/50`.

    The job summaries come from `app.job_status` (name -> short text); the app refreshes the bar
    when a job's state changes (no timer)."""

    COMPONENT_CLASSES = {"nav-bar--title", "nav-bar--current", "nav-bar--key", "nav-bar--jobs"}
    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $foreground; }
    NavBar > .nav-bar--title { text-style: bold; }
    NavBar > .nav-bar--current { background: $primary; color: $background; text-style: bold; }
    NavBar > .nav-bar--key { color: $accent; text-style: bold; }
    NavBar > .nav-bar--jobs { color: $warning; }
    """

    def __init__(self, current: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.current = current

    def render(self) -> Text:
        style = lambda name: self.get_component_rich_style(f"nav-bar--{name}", partial=True)  # noqa: E731
        text = Text(" SALUS ", style=style("title"))
        for name, key in SCREENS:
            if name == self.current:
                text.append(f" {key} {name} ", style=style("current"))
            else:
                text.append(f" {key}", style=style("key")).append(f" {name} ")
        running = [line for line in getattr(self.app, "job_status", {}).values() if line]
        if running:
            text.append("  " + " · ".join(running), style=style("jobs"))
        return text
