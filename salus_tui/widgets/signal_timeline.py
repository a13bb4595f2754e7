"""An episode's per-step values over time as labelled bar rows, with its horizon labels, failure
step and a step cursor; and the groups of rows the console offers (the six signals, each recorded
signal family, the monitor's alarm score).

Rows: N labelled bars (block characters scaled between the episode's minimum and maximum of that
row; one terminal row each when the widget is N + 2 high, several when it is taller, as tall for
every group; with more steps than columns a column shows the maximum of its steps; a row with a
threshold is drawn from 0 and its columns at or above the threshold take the alarm style); for an
episode of the runtime monitor, the interventions row (the letter of the intervention acting,
`INTERVENTION_LETTERS`, and ! at each alarm step; the widget is then N + 3 high); then the horizon
labels (the failure type's letter where `horizon_labels[t, -1, k]` = 1, i.e. failure type k happens
within the longest horizon of step t), then a marker row (▲ cursor, ✕ failure step, ! first alarm).
The last column holds each row's value at the cursor (or at the last step); the interventions
row's, the intervention acting there. A widget too short for every line shows the first ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from textual.strip import Strip

from salus_engine import FAILURE_TYPES
from salus_engine.signal_families import COLLECTED_FAMILIES, HIDDEN_STATE
from salus_engine.store.layout import INTERVENTION_KINDS
from salus_tui.widgets.drawn_widget import DrawnWidget

SIGNAL_LABELS = ("uncertainty", "magnitude", "variance", "smoothness", "max var", "trend")
"""Short names of the six signals, in `salus_engine.signals.SIGNAL_NAMES` order."""
TYPE_LETTERS = "CDMT"
"""Letters of the failure types collision, drop, miss, timeout."""
LEVELS = "▁▂▃▄▅▆▇█"
NAME_WIDTH = 12
"""Cells of a row's label column (labels are cut to one cell less)."""
VALUE_WIDTH = 10

SIX_SIGNALS = "signals"
"""Key of the six signals' group (the other groups' keys are family names)."""
GROUP_TITLES = {SIX_SIGNALS: "six signals", "chunk_consistency": "chunk consistency",
                "flow_disagreement": "flow disagreement", "chunk_entropy": "chunk entropy",
                HIDDEN_STATE: "hidden state (change)", "action_jerk": "action jerk"}
"""Box titles of the groups; an unknown family is titled with its name."""
COLUMN_LABELS = {
    "stac_l2_mean": "stac mean", "stac_l2_max": "stac max", "tce_mse_mean": "tce mean", "tce_mse_max": "tce max",
    "chunk_magnitude": "chunk mag", "vfd_mean": "vfd mean", "vfd_first": "vfd first", "vfd_last": "vfd last",
    "ace_mean": "ace mean", "ace_max": "ace max", "jerk": "jerk", "jerk_mean": "jerk mean",
    "reversals": "reversals", "gripper_toggles": "grip toggle",
}
"""Row labels of the families' columns (`salus_engine.signal_families`); others show their name."""
INTERVENTION_LETTERS = {"none": " ", "slow": "s", "replan": "p", "retreat": "r", "handover": "h", "stop": "X"}
"""Letter of each intervention kind (`salus_engine.store.layout.INTERVENTION_KINDS`) in the
interventions row (replan is p, stop X: the kinds' initials clash)."""
INTERVENTIONS_LABEL = "interv."
"""Label of the interventions row."""
ALARM_MARK = "!"
"""Marks an alarm step in the interventions row (and the first alarm in the marker row)."""
HIDDEN_LABEL = "Δhidden L2"
"""Label of the hidden state's one row: the L2 norm of h_t - h_(t-1) (`salus_engine.events.hidden_change`)."""


@dataclass(frozen=True)
class TimelineRow:
    """One bar row of a `SignalTimeline`."""

    label: str
    values: np.ndarray
    """(T,) per-step values."""
    threshold: float | None = None
    """With a threshold the bar is drawn from 0 (to the larger of the maximum and a finite
    threshold) and the columns whose value reaches it take the alarm style."""


@dataclass(frozen=True)
class SignalGroup:
    """Rows shown together: the six signals, or the columns of one signal family."""

    key: str
    """`SIX_SIGNALS` or the family's name."""
    title: str
    rows: tuple[TimelineRow, ...]


def column_label(name: str) -> str:
    return COLUMN_LABELS.get(name, name.replace("_", " "))[:NAME_WIDTH - 1]


def signal_groups(signals: np.ndarray, features: np.ndarray | None = None,
                  feature_families: dict[str, Sequence[str]] | None = None,
                  hidden_change: np.ndarray | None = None) -> list[SignalGroup]:
    """The groups an episode offers: the six signals first, then each recorded family in storage
    order (`salus_engine.signal_families.COLLECTED_FAMILIES`, unknown ones after).

    Args:
        signals: (T, 6) the six signals.
        features: (T, F) family columns in `feature_families` order, or None (format 1/2 stores, or
            no family with columns recorded): then no family group but the hidden state's.
        feature_families: family -> its columns of `features`.
        hidden_change: (T,) change of the hidden features per step (`events.hidden_change`), or None:
            the hidden state is offered as this one row (its 64 dims are no readable bar chart).
    """
    signals = np.asarray(signals, dtype=np.float32).reshape(-1, len(SIGNAL_LABELS))
    groups = [SignalGroup(SIX_SIGNALS, GROUP_TITLES[SIX_SIGNALS],
                          tuple(TimelineRow(label, signals[:, k]) for k, label in enumerate(SIGNAL_LABELS)))]
    families: dict[str, SignalGroup] = {}
    if features is not None and feature_families:
        features = np.asarray(features, dtype=np.float32)
        start = 0
        for name, columns in feature_families.items():
            stop = start + len(columns)
            if columns and stop <= features.shape[1] and len(features) == len(signals):
                rows = tuple(TimelineRow(column_label(c), features[:, start + j]) for j, c in enumerate(columns))
                families[name] = SignalGroup(name, GROUP_TITLES.get(name, name.replace("_", " ")), rows)
            start = stop
    if hidden_change is not None and len(hidden_change) == len(signals):
        families[HIDDEN_STATE] = SignalGroup(HIDDEN_STATE, GROUP_TITLES[HIDDEN_STATE],
                                             (TimelineRow(HIDDEN_LABEL, np.asarray(hidden_change, np.float32)),))
    order = [name for name in COLLECTED_FAMILIES if name in families] + [
        name for name in families if name not in COLLECTED_FAMILIES]
    return groups + [families[name] for name in order]


def pick_group(groups: Sequence[SignalGroup], key: str) -> SignalGroup:
    """The group with `key`, or the first (the six signals) when this episode does not offer it."""
    return next((g for g in groups if g.key == key), groups[0])


def step_group(groups: Sequence[SignalGroup], key: str, delta: int) -> str:
    """Key of the group `delta` places after the one with `key` (cyclic)."""
    keys = [g.key for g in groups]
    index = keys.index(key) if key in keys else 0
    return keys[(index + delta) % len(keys)]


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


class SignalTimeline(DrawnWidget):
    """N labelled bar rows (the six signals by default), horizon labels, markers."""

    COMPONENT_CLASSES = {
        "signal-timeline--name", "signal-timeline--bar", "signal-timeline--cursor", "signal-timeline--failure",
        "signal-timeline--alarm", "signal-timeline--value", "signal-timeline--empty",
        "signal-timeline--intervention",
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
    SignalTimeline > .signal-timeline--intervention { color: $accent; text-style: bold; }
    SignalTimeline > .signal-timeline--type-0 { color: $error; }
    SignalTimeline > .signal-timeline--type-1 { color: $warning; }
    SignalTimeline > .signal-timeline--type-2 { color: $accent; }
    SignalTimeline > .signal-timeline--type-3 { color: $secondary; }
    """

    def __init__(self, *, empty_text: str = "no episode yet", name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.empty_text = empty_text
        self.rows: tuple[TimelineRow, ...] = tuple(TimelineRow(label, np.zeros(0, np.float32))
                                                   for label in SIGNAL_LABELS)
        self.horizon_labels: np.ndarray | None = None
        self.horizons: tuple[int, ...] = ()
        self.failure_step: int | None = None
        self.alarm_step: int | None = None
        self.cursor: int | None = None
        self.interventions: np.ndarray | None = None
        """(T,) intervention codes (`INTERVENTION_KINDS`) of a monitored episode, or None: no
        interventions row."""
        self.alarm_steps: tuple[int, ...] = ()
        """Steps at which the runtime monitor raised an alarm (marked in the interventions row)."""
        self.layout_rows = len(SIGNAL_LABELS)
        """Bars are as tall as when this many rows are shown: a group with fewer rows keeps the bar
        height of the largest group instead of stretching (the screens set it)."""

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels of the rows shown."""
        return tuple(row.label for row in self.rows)

    @property
    def signals(self) -> np.ndarray:
        """(T, N) float32: the values of the N rows shown (the six signals by default)."""
        if not self.rows:
            return np.zeros((0, 0), np.float32)
        return np.stack([np.asarray(row.values, np.float32) for row in self.rows], axis=1)

    @property
    def steps(self) -> int:
        return len(self.rows[0].values) if self.rows else 0

    def set_rows(self, rows: Sequence[TimelineRow], horizon_labels: np.ndarray | None = None,
                 horizons: tuple[int, ...] = (), failure_step: int | None = None,
                 alarm_step: int | None = None, cursor: int | None = None,
                 interventions: np.ndarray | None = None, alarm_steps: Sequence[int] = ()) -> None:
        """Shows an episode as `rows` (each (T,) values), horizon_labels (T, H, 4) uint8 or None
        (episode still running), failure_step (0-based) or None, alarm_step (first monitor alarm) or
        None; `interventions` (T,) uint8 intervention codes of a monitored episode (or None: no
        interventions row) with its `alarm_steps` (0-based)."""
        self.rows = tuple(rows)
        self.horizon_labels = horizon_labels
        self.horizons = tuple(horizons)
        self.failure_step = failure_step
        self.alarm_step = alarm_step
        self.cursor = cursor
        self.interventions = None if interventions is None else np.asarray(interventions, dtype=np.int64)
        self.alarm_steps = tuple(int(s) for s in alarm_steps)
        self.redraw()

    def set_episode(self, signals: np.ndarray, horizon_labels: np.ndarray | None = None,
                    horizons: tuple[int, ...] = (), failure_step: int | None = None,
                    alarm_step: int | None = None, cursor: int | None = None) -> None:
        """Shows an episode's six signals (T, 6) float32 (see `set_rows` for the rest)."""
        self.set_rows(signal_groups(signals)[0].rows, horizon_labels, horizons, failure_step, alarm_step, cursor)

    def set_cursor(self, step: int | None) -> None:
        if step != self.cursor:
            self.cursor = step
            self.redraw()

    def value_at_cursor(self, k: int) -> float | None:
        steps = self.steps
        if steps == 0:
            return None
        step = steps - 1 if self.cursor is None else min(max(self.cursor, 0), steps - 1)
        return float(self.rows[k].values[step])

    # drawing ------------------------------------------------------------------------------------
    def _style(self, name: str):
        return self.get_component_rich_style(f"signal-timeline--{name}", partial=True)

    def _draw(self, width: int, height: int) -> list[Strip]:
        steps = self.steps
        rows = self.rows_per_signal(height)
        name_style, value_style = self._style("name"), self._style("value")
        columns = max(1, width - NAME_WIDTH - VALUE_WIDTH)
        if steps == 0:
            empty = self._style("empty")
            return [Strip([Segment(row.label[:NAME_WIDTH - 1].ljust(NAME_WIDTH), name_style),
                           Segment(self.empty_text if k == 0 else "", empty)]) for k, row in enumerate(self.rows)]
        lo, hi = column_steps(steps, columns)
        cursor = self._covers(self.cursor, lo, hi)
        failure = self._covers(self.failure_step, lo, hi)
        bar, cursor_style, failure_style = self._style("bar"), self._style("cursor"), self._style("failure")
        alarm_style = self._style("alarm")
        lines = []
        for k, row in enumerate(self.rows):
            values = np.asarray(row.values, dtype=np.float64)
            column_max = np.maximum.reduceat(values, lo) if steps > columns else values[lo]
            low, high = float(values.min()), float(values.max())
            above = np.zeros(columns, bool)
            if row.threshold is not None:
                low = min(0.0, low)
                if np.isfinite(row.threshold):
                    high = max(high, float(row.threshold))
                above = column_max >= row.threshold
            top = 8 * rows - 1
            level = (np.zeros(columns, int) if not high > low
                     else np.rint((column_max - low) / (high - low) * top).astype(int))
            styles = [cursor_style if cursor[c] else failure_style if failure[c] else alarm_style if above[c] else bar
                      for c in range(columns)]
            value = self.value_at_cursor(k)
            label = row.label[:NAME_WIDTH - 1]
            for line in range(rows):
                # a bar of `rows` cells: this line shows the eighths above 8 * (rows - 1 - line)
                fill = np.clip(level + 1 - 8 * (rows - 1 - line), 0, 8)
                cells = [LEVELS[f - 1] if f else " " for f in fill]
                segments = [Segment((label if line == 0 else "").ljust(NAME_WIDTH), name_style)]
                segments += _runs(cells, styles)
                text = f"{value:>{VALUE_WIDTH}.4f}"[-VALUE_WIDTH:] if line == 0 else ""
                segments.append(Segment(text, value_style))
                lines.append(Strip(segments))
        if self.interventions is not None:
            lines.append(self._intervention_row(lo, hi, cursor))
        lines.append(self._label_row(lo, hi, cursor))
        lines.append(self._marker_row(lo, hi, steps))
        return lines

    @property
    def extra_lines(self) -> int:
        """Lines below the bars: the horizon labels and the markers, and the interventions row of a
        monitored episode."""
        return 2 + (self.interventions is not None)

    def rows_per_signal(self, height: int) -> int:
        """Terminal rows per bar: 1 when the widget is N + `extra_lines` high (N the rows shown, at
        least `layout_rows`), more when it is taller."""
        return max(1, (height - self.extra_lines) // max(1, len(self.rows), self.layout_rows))

    def intervention_at(self, step: int | None) -> str:
        """Name of the intervention acting at `step` (the cursor's when None: the last step without
        a cursor); '' without an interventions row."""
        codes = self.interventions
        if codes is None or len(codes) == 0:
            return ""
        step = (len(codes) - 1 if self.cursor is None else self.cursor) if step is None else step
        code = int(codes[min(max(step, 0), len(codes) - 1)])
        return INTERVENTION_KINDS[code] if 0 <= code < len(INTERVENTION_KINDS) else str(code)

    def intervention_cells(self, lo: np.ndarray, hi: np.ndarray) -> str:
        """The interventions row's cells for columns covering steps [lo[c], hi[c]): ! in the first
        column of each alarm step, else the letter of the strongest intervention (largest code)
        acting in the column's steps, else a space."""
        codes = self.interventions
        cells = []
        for c in range(len(lo)):
            covered = codes[lo[c]:hi[c]] if codes is not None else ()
            top = int(np.max(covered)) if len(covered) else 0
            kind = INTERVENTION_KINDS[top] if 0 <= top < len(INTERVENTION_KINDS) else "none"
            cells.append(INTERVENTION_LETTERS.get(kind, "?"))
        for step in self.alarm_steps:
            covered = np.flatnonzero(self._covers(step, lo, hi))
            if len(covered):
                cells[int(covered[0])] = ALARM_MARK
        return "".join(cells)

    def _intervention_row(self, lo: np.ndarray, hi: np.ndarray, cursor: np.ndarray) -> Strip:
        """`interv.` then one cell per column (`intervention_cells`), the cursor column reversed,
        and the intervention at the cursor in the value column."""
        cells = list(self.intervention_cells(lo, hi))
        letter, alarm, cursor_style = self._style("intervention"), self._style("alarm"), self._style("cursor")
        styles = []
        for c, cell in enumerate(cells):
            style = alarm if cell == ALARM_MARK else letter if cell != " " else None
            if cursor[c]:
                if cell == " ":
                    cells[c] = "·"
                style = cursor_style if style is None else style + cursor_style
            styles.append(style)
        kind = self.intervention_at(None)
        segments = [Segment(INTERVENTIONS_LABEL.ljust(NAME_WIDTH), self._style("name")), *_runs(cells, styles),
                    Segment(("–" if kind in ("", "none") else kind).rjust(VALUE_WIDTH)[-VALUE_WIDTH:],
                            self._style("value"))]
        return Strip(segments)

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
