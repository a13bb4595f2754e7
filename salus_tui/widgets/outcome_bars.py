"""Episode outcomes by type as a small horizontal bar chart (one row per outcome)."""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widget import Widget

from salus_engine import OUTCOME_NAMES

OUTCOME_ORDER = (-1, 0, 1, 2, 3)
"""success, collision, drop, miss, timeout."""


class OutcomeBars(Widget):
    """Five rows `name  ████  count`; bars are scaled to the largest count."""

    COMPONENT_CLASSES = {"outcome-bars--name", "outcome-bars--count",
                         *(f"outcome-bars--{OUTCOME_NAMES[c]}" for c in OUTCOME_ORDER)}
    DEFAULT_CSS = """
    OutcomeBars { height: 5; }
    OutcomeBars > .outcome-bars--name { color: $foreground 80%; }
    OutcomeBars > .outcome-bars--count { color: $foreground; text-style: bold; }
    OutcomeBars > .outcome-bars--success { color: $success; }
    OutcomeBars > .outcome-bars--collision { color: $error; }
    OutcomeBars > .outcome-bars--drop { color: $warning; }
    OutcomeBars > .outcome-bars--miss { color: $accent; }
    OutcomeBars > .outcome-bars--timeout { color: $secondary; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.counts: dict[str, int] = {OUTCOME_NAMES[c]: 0 for c in OUTCOME_ORDER}

    def set_counts(self, counts: dict[str, int]) -> None:
        """Episodes per outcome name (`success`, `collision`, ...); missing names count 0."""
        self.counts = {OUTCOME_NAMES[c]: int(counts.get(OUTCOME_NAMES[c], 0)) for c in OUTCOME_ORDER}
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y >= len(OUTCOME_ORDER):
            return Strip.blank(width, self.rich_style)
        name = OUTCOME_NAMES[OUTCOME_ORDER[y]]
        count = self.counts[name]
        name_width, count_width = 10, 5
        bar_width = max(0, width - name_width - count_width)
        largest = max(self.counts.values()) or 1
        filled = 0 if count == 0 else max(1, round(count / largest * bar_width))
        segments = [
            Segment(name.ljust(name_width), self.get_component_rich_style("outcome-bars--name", partial=True)),
            Segment("█" * filled, self.get_component_rich_style(f"outcome-bars--{name}", partial=True)),
            Segment(" " * (bar_width - filled)),
            Segment(str(count).rjust(count_width), self.get_component_rich_style("outcome-bars--count", partial=True)),
        ]
        return Strip(segments).crop_extend(0, width, self.rich_style).apply_style(self.rich_style)
