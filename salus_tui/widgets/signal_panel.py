"""The six signals of the current episode as sparklines with their current values."""

from __future__ import annotations

import numpy as np
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from salus_engine.signals import SIGNAL_NAMES

SHORT_NAMES = ("uncertainty", "magnitude", "variance", "smoothness", "max var", "trend")


class SignalPanel(Vertical):
    """Six rows: name, sparkline of the episode so far, current value."""

    DEFAULT_CSS = """
    SignalPanel { height: auto; }
    SignalPanel > Horizontal { height: 1; }
    SignalPanel .signal-name { width: 12; }
    SignalPanel Sparkline { width: 1fr; height: 1; }
    SignalPanel .signal-value { width: 10; text-align: right; }
    """

    def compose(self) -> ComposeResult:
        for k, name in enumerate(SHORT_NAMES):
            with Horizontal():
                yield Label(name, classes="signal-name", id=f"signal-name-{k}")
                yield Sparkline([], id=f"signal-spark-{k}", summary_function=max)
                yield Label("-", classes="signal-value", id=f"signal-value-{k}")

    def show(self, signals: np.ndarray) -> None:
        """Shows (n, 6) float32 signals; sparklines repaint only because they get new lists."""
        if signals.shape[0] == 0:
            return
        for k in range(len(SIGNAL_NAMES)):
            self.query_one(f"#signal-spark-{k}", Sparkline).data = signals[:, k].tolist()
            self.query_one(f"#signal-value-{k}", Label).update(f"{signals[-1, k]:.4f}")
