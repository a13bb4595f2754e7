"""A line chart drawn with braille dots (2 x 4 dots per terminal cell) by a `render_line` widget.

Used for the training loss curves and the ROC curves. The chart is drawn once per data or size
change and cached; nothing is redrawn while the data stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from textual.strip import Strip

from salus_tui.widgets.drawn_widget import DrawnWidget

BRAILLE_BASE = 0x2800
# bit of the dot at (column 0..1, row 0..3) inside one braille cell (Unicode braille patterns)
_DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
SERIES_STYLES = 6
"""Colours available to series: component classes `line-chart--series-0` .. `-5`."""


@dataclass(frozen=True)
class Series:
    """One line: points (x[i], y[i]) joined in order; `style` picks a colour (0..5, or -1 for the
    muted axis colour, e.g. the chance diagonal of a ROC plot)."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: int = 0


def format_tick(value: float) -> str:
    """Short tick label: 3 significant digits, e.g. 0.123, 12.3, 1.2e+03."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    return f"{value:.3g}"


class LineChart(DrawnWidget):
    """Legend row, plot with y-axis ticks, x-axis row. `set_series` replaces the data."""

    COMPONENT_CLASSES = {"line-chart--axis", "line-chart--empty",
                         *(f"line-chart--series-{i}" for i in range(SERIES_STYLES))}
    DEFAULT_CSS = """
    LineChart { height: 1fr; min-height: 6; }
    LineChart > .line-chart--axis { color: $foreground 60%; }
    LineChart > .line-chart--empty { color: $foreground 50%; text-style: italic; }
    LineChart > .line-chart--series-0 { color: $primary; }
    LineChart > .line-chart--series-1 { color: $warning; }
    LineChart > .line-chart--series-2 { color: $success; }
    LineChart > .line-chart--series-3 { color: $secondary; }
    LineChart > .line-chart--series-4 { color: $error; }
    LineChart > .line-chart--series-5 { color: $accent; }
    """

    def __init__(self, *, x_label: str = "", empty_text: str = "no data yet",
                 x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
                 name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.x_label = x_label
        self.empty_text = empty_text
        self.fixed_x = x_range
        self.fixed_y = y_range
        self.series: list[Series] = []

    def set_series(self, series: list[Series]) -> None:
        """Replaces every line and redraws once."""
        self.series = list(series)
        self.redraw()

    # drawing ------------------------------------------------------------------------------------
    def _ranges(self) -> tuple[float, float, float, float] | None:
        xs = [float(v) for s in self.series for v in s.x if math.isfinite(float(v))]
        ys = [float(v) for s in self.series for v in s.y if math.isfinite(float(v))]
        if not xs or not ys:
            return None
        x0, x1 = self.fixed_x or (min(xs), max(xs))
        y0, y1 = self.fixed_y or (min(ys), max(ys))
        if x1 <= x0:
            x0, x1 = x0 - 0.5, x0 + 0.5
        if y1 <= y0:
            pad = abs(y0) * 0.1 or 0.5
            y0, y1 = y0 - pad, y1 + pad
        return x0, x1, y0, y1

    def _draw(self, width: int, height: int) -> list[Strip]:
        axis = self.get_component_rich_style("line-chart--axis", partial=True)
        styles = [self.get_component_rich_style(f"line-chart--series-{i}", partial=True) for i in range(SERIES_STYLES)]
        legend: list[Segment] = []
        for s in sorted(self.series, key=lambda s: s.style):
            if s.style < 0 or not s.label:
                continue
            legend += [Segment("━ ", styles[s.style % SERIES_STYLES]), Segment(s.label + "  ")]
        lines = [Strip(legend)]
        ranges = self._ranges()
        plot_height = height - 2
        if ranges is None or plot_height < 2 or width < 16:
            empty = self.get_component_rich_style("line-chart--empty", partial=True)
            lines += [Strip.blank(width)] * max(0, (height - 2) // 2)
            lines.append(Strip([Segment(self.empty_text.center(width)[:width], empty)]))
            return lines
        x0, x1, y0, y1 = ranges
        ticks = [format_tick(v) for v in (y1, (y0 + y1) / 2, y0)]
        label_width = max(len(t) for t in ticks) + 1
        plot_width = width - label_width - 1
        dots_w, dots_h = plot_width * 2, plot_height * 4
        bits = [[0] * plot_width for _ in range(plot_height)]
        colour = [[-2] * plot_width for _ in range(plot_height)]

        def to_dot(x: float, y: float) -> tuple[int, int]:
            dx = round((x - x0) / (x1 - x0) * (dots_w - 1))
            dy = round((1.0 - (y - y0) / (y1 - y0)) * (dots_h - 1))
            return min(max(dx, 0), dots_w - 1), min(max(dy, 0), dots_h - 1)

        def plot(dx: int, dy: int, style: int) -> None:
            row, col = dy // 4, dx // 2
            bits[row][col] |= _DOT_BITS[dx % 2][dy % 4]
            colour[row][col] = style

        for s in self.series:
            points = [to_dot(float(a), float(b)) for a, b in zip(s.x, s.y)
                      if math.isfinite(float(a)) and math.isfinite(float(b))]
            for i, (px, py) in enumerate(points):
                if i == 0:
                    plot(px, py, s.style)
                    continue
                for qx, qy in line_dots(points[i - 1], (px, py)):
                    plot(qx, qy, s.style)
        tick_rows = {0: ticks[0], plot_height // 2: ticks[1], plot_height - 1: ticks[2]}
        for row in range(plot_height):
            segments = [Segment(tick_rows.get(row, "").rjust(label_width - 1) + " ", axis), Segment("│", axis)]
            run_text, run_style = "", None
            for col in range(plot_width):
                b = bits[row][col]
                if b == 0:
                    char, style = " ", None
                else:
                    c = colour[row][col]
                    char, style = chr(BRAILLE_BASE + b), axis if c < 0 else styles[c % SERIES_STYLES]
                if style is not run_style and run_text:
                    segments.append(Segment(run_text, run_style))
                    run_text = ""
                run_text += char
                run_style = style
            segments.append(Segment(run_text, run_style))
            lines.append(Strip(segments))
        left, right = format_tick(x0), format_tick(x1)
        middle = self.x_label.center(max(0, plot_width - len(left) - len(right)))
        lines.append(Strip([Segment(" " * label_width + "└" + left + middle + right, axis)]))
        return lines


def line_dots(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Dots of the straight line from a to b (Bresenham), both ends included."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    out = []
    while True:
        out.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return out
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy

