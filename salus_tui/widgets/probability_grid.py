"""The predictor's 16 probabilities at one step: failure type (rows) x horizon (columns)."""

from __future__ import annotations

import numpy as np
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from salus_engine import FAILURE_TYPES


class ProbabilityGrid(Static):
    """`show(p, horizons)` with p (H, 4): probability that failure type k happens within
    horizons[h] steps; values >= 0.5 are emphasised."""

    COMPONENT_CLASSES = {"probability-grid--high", "probability-grid--raised", "probability-grid--alarm"}
    DEFAULT_CSS = """
    ProbabilityGrid { height: auto; }
    ProbabilityGrid > .probability-grid--high { color: $error; text-style: bold; }
    ProbabilityGrid > .probability-grid--raised { color: $warning; }
    ProbabilityGrid > .probability-grid--alarm { color: $error; text-style: bold reverse; }
    """

    def show(self, probabilities: np.ndarray | None, horizons: tuple[int, ...], alarm: str = "",
             note: str = "") -> None:
        """Shows (H, 4) probabilities, or `note` when there are none; `alarm` is a title line
        (e.g. `ALARM: collision within 20 steps`)."""
        if probabilities is None:
            self.update(Text(note or "no predictor loaded: give a checkpoint to see the 16 probabilities",
                             style="italic"))
            return
        high = self.get_component_rich_style("probability-grid--high", partial=True)
        raised = self.get_component_rich_style("probability-grid--raised", partial=True)
        title = Text(alarm, style=self.get_component_rich_style("probability-grid--alarm", partial=True)) if alarm else None
        table = Table(box=None, padding=(0, 1), show_edge=False, title=title, title_justify="left")
        table.add_column("P(fail within)", no_wrap=True)
        for h in horizons:
            table.add_column(f"{h} st", justify="right")
        for k, name in enumerate(FAILURE_TYPES):
            cells = []
            for h in range(len(horizons)):
                p = float(probabilities[h, k])
                cells.append(Text(f"{p:.2f}", style=high if p >= 0.5 else raised if p >= 0.2 else ""))
            table.add_row(name, *cells)
        self.update(table)
