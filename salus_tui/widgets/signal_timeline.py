"""The six signals of one episode over time, with its horizon labels, failure step and a step cursor.

Rows: the six signals (bars of block characters scaled between the episode's minimum and maximum of
that signal, one terminal row each at the minimum height of 8, several when the widget is taller; with more steps than columns a column shows the maximum of its steps), then the horizon
labels (the failure type's letter where `horizon_labels[t, -1, k]` = 1, i.e. failure type k happens
within the longest horizon of step t), then a marker row (▲ cursor, ✕ failure step, ! first alarm).
The last column holds each signal's value at the cursor (or at the last step).
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from salus_engine import FAILURE_TYPES

SIGNAL_LABELS = ("uncertainty", "magnitude", "variance", "smoothness", "max var", "trend")
"""Short names of the six signals, in `salus_engine.signals.SIGNAL_NAMES` order."""
TYPE_LETTERS = "CDMT"
"""Letters of the failure types collision, drop, miss, timeout."""
LEVELS = "▁▂▃▄▅▆▇█"
NAME_WIDTH = 12
VALUE_WIDTH = 10


def column_steps(steps: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps shown by each of `columns` columns: column c covers steps [lo[c], hi[c]).

    With more steps than columns a column covers several steps (and shows their maximum); with
    fewer, a step spans several columns, so every episode fills the width.

    Returns:
        (lo, hi): (columns,) int arrays, hi > lo, covering 0..steps-1 in order.
    """
    c = np.arange(columns)
    lo = c * steps // columns
    hi = np.maximum((c + 1) * steps // columns, lo + 1)
    return lo, np.minimum(hi, steps)


def _runs(cells: list[str], styles: list) -> list[Segment]:
    """One segment per run of cells with the same style (fewer segments to compose and write)."""
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(cells) + 1):
        if i == len(cells) or styles[i] != styles[start]:
            segments.append(Segment("".join(cells[start:i]), styles[start]))
            start = i
    return segments


class SignalTimeline(Widget):
    """8 rows: six signals, horizon labels, markers."""

    COMPONENT_CLASSES = {
        "signal-timeline--name", "signal-timeline--bar", "signal-timeline--cursor", "signal-timeline--failure",
        "signal-timeline--alarm", "signal-timeline--value", "signal-timeline--empty",
        *(f"signal-timeline--type-{k}" for k in range(len(FAILURE_TYPES))),
    }
    DEFAULT_CSS = """
    SignalTimeline { height: 8; }
    SignalTimeline > .signal-timeline--name { color: $foreground 80%; }
    SignalTimeline > .signal-timeline--bar { color: $primary; }
    SignalTimeline > .signal-timeline--cursor { color: $foreground; text-style: reverse bold; }
    SignalTimeline > .signal-timeline--failure { color: $error; text-style: bold; }
    SignalTimeline > .signal-timeline--alarm { color: $warning; text-style: bold; }
    SignalTimeline > .signal-timeline--value { color: $foreground; }
    SignalTimeline > .signal-timeline--empty { color: $foreground 50%; text-style: italic; }
    SignalTimeline > .signal-timeline--type-0 { color: $error; }
    SignalTimeline > .signal-timeline--type-1 { color: $warning; }
    SignalTimeline > .signal-timeline--type-2 { color: $accent; }
    SignalTimeline > .signal-timeline--type-3 { color: $secondary; }
    """

    def __init__(self, *, empty_text: str = "no episode yet", name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.empty_text = empty_text
        self.signals = np.zeros((0, len(SIGNAL_LABELS)), np.float32)
        self.horizon_labels: np.ndarray | None = None
        self.horizons: tuple[int, ...] = ()
        self.failure_step: int | None = None
        self.alarm_step: int | None = None
        self.cursor: int | None = None
        self._lines: list[Strip] | None = None
        self._drawn_size: Size | None = None

    def set_episode(self, signals: np.ndarray, horizon_labels: np.ndarray | None = None,
                    horizons: tuple[int, ...] = (), failure_step: int | None = None,
                    alarm_step: int | None = None, cursor: int | None = None) -> None:
        """Shows an episode: signals (T, 6) float32, horizon_labels (T, H, 4) uint8 or None (episode
        still running), failure_step (0-based) or None, alarm_step (first monitor alarm) or None."""
        self.signals = np.asarray(signals, dtype=np.float32).reshape(-1, len(SIGNAL_LABELS))
        self.horizon_labels = horizon_labels
        self.horizons = tuple(horizons)
        self.failure_step = failure_step
        self.alarm_step = alarm_step
        self.cursor = cursor
        self._lines = None
        self.refresh()

    def set_cursor(self, step: int | None) -> None:
        if step != self.cursor:
            self.cursor = step
            self._lines = None
            self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines = None

    def value_at_cursor(self, k: int) -> float | None:
        if len(self.signals) == 0:
            return None
        step = len(self.signals) - 1 if self.cursor is None else min(max(self.cursor, 0), len(self.signals) - 1)
        return float(self.signals[step, k])

    # drawing ------------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        if self._lines is None or self._drawn_size != self.size:
            self._lines = self._draw(self.size.width, self.size.height)
            self._drawn_size = self.size
        line = self._lines[y] if y < len(self._lines) else Strip.blank(self.size.width)
        return line.crop_extend(0, self.size.width, self.rich_style).apply_style(self.rich_style)

    def _style(self, name: str):
        return self.get_component_rich_style(f"signal-timeline--{name}", partial=True)

    def _draw(self, width: int, height: int) -> list[Strip]:
        steps = len(self.signals)
        rows = self.rows_per_signal(height)
        name_style, value_style = self._style("name"), self._style("value")
        columns = max(1, width - NAME_WIDTH - VALUE_WIDTH)
        if steps == 0:
            empty = self._style("empty")
            return [Strip([Segment(SIGNAL_LABELS[k].ljust(NAME_WIDTH), name_style),
                           Segment(self.empty_text if k == 0 else "", empty)]) for k in range(len(SIGNAL_LABELS))]
        lo, hi = column_steps(steps, columns)
        cursor = self._covers(self.cursor, lo, hi)
        failure = self._covers(self.failure_step, lo, hi)
        bar, cursor_style, failure_style = self._style("bar"), self._style("cursor"), self._style("failure")
        lines = []
        for k, label in enumerate(SIGNAL_LABELS):
            values = self.signals[:, k].astype(np.float64)
            column_max = np.maximum.reduceat(values, lo) if steps > columns else values[lo]
            low, high = float(values.min()), float(values.max())
            top = 8 * rows - 1
            level = (np.zeros(columns, int) if high <= low
                     else np.rint((column_max - low) / (high - low) * top).astype(int))
            styles = [cursor_style if cursor[c] else failure_style if failure[c] else bar for c in range(columns)]
            value = self.value_at_cursor(k)
            for row in range(rows):
                # a bar of `rows` cells: this row shows the eighths above 8 * (rows - 1 - row)
                fill = np.clip(level + 1 - 8 * (rows - 1 - row), 0, 8)
                cells = [LEVELS[f - 1] if f else " " for f in fill]
                segments = [Segment((label if row == 0 else "").ljust(NAME_WIDTH), name_style)]
                segments += _runs(cells, styles)
                text = f"{value:>{VALUE_WIDTH}.4f}"[-VALUE_WIDTH:] if row == 0 else ""
                segments.append(Segment(text, value_style))
                lines.append(Strip(segments))
        lines.append(self._label_row(lo, hi, cursor))
        lines.append(self._marker_row(lo, hi, steps))
        return lines

    @staticmethod
    def rows_per_signal(height: int) -> int:
        """Terminal rows per signal: 1 at the minimum height of 8, more when the widget is taller."""
        return max(1, (height - 2) // len(SIGNAL_LABELS))

    @staticmethod
    def _covers(step: int | None, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """(columns,) bool: the columns that show `step`."""
        if step is None or step < 0:
            return np.zeros(len(lo), bool)
        return (lo <= step) & (step < hi)

    def _label_row(self, lo: np.ndarray, hi: np.ndarray, cursor: np.ndarray) -> Strip:
        name_style = self._style("name")
        if self.horizon_labels is None or len(self.horizon_labels) == 0:
            text = "(horizon labels when the episode ends)" if self.horizon_labels is None else ""
            return Strip([Segment("labels".ljust(NAME_WIDTH), name_style), Segment(text, self._style("empty"))])
        longest = self.horizons[-1] if self.horizons else self.horizon_labels.shape[1]
        labels = np.asarray(self.horizon_labels)[:, -1, :]
        cursor_style = self._style("cursor")
        type_styles = [self._style(f"type-{k}") for k in range(len(FAILURE_TYPES))]
        cells, styles = [], []
        for c in range(len(lo)):
            kinds = np.flatnonzero(labels[lo[c]:hi[c]].max(axis=0))
            if len(kinds):
                k = int(kinds[0])
                cells.append(TYPE_LETTERS[k])
                styles.append(type_styles[k] + cursor_style if cursor[c] else type_styles[k])
            else:
                cells.append("·" if cursor[c] else " ")
                styles.append(cursor_style if cursor[c] else None)
        return Strip([Segment(f"fail<={longest}".ljust(NAME_WIDTH), name_style), *_runs(cells, styles)])

    def _marker_row(self, lo: np.ndarray, hi: np.ndarray, steps: int) -> Strip:
        """▲ under the cursor, ✕ under the failure step, ! under the first alarm (first column of each)."""
        cells: list[tuple[str, object]] = [(" ", None)] * len(lo)
        for step, mark, style in ((self.alarm_step, "!", "alarm"), (self.failure_step, "✕", "failure"),
                                  (self.cursor, "▲", "cursor")):
            covered = np.flatnonzero(self._covers(step, lo, hi))
            if len(covered):
                cells[int(covered[0])] = (mark, self._style(style))
        segments = [Segment("step".ljust(NAME_WIDTH), self._style("name"))]
        segments += [Segment(cell, style) for cell, style in cells]
        where = steps - 1 if self.cursor is None else self.cursor
        segments.append(Segment(f"{where}/{steps - 1}".rjust(VALUE_WIDTH), self._style("value")))
        return Strip(segments)
