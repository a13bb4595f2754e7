"""SALUS engine: simulation, policy ensemble, signals, storage, predictor and jobs.

Everything that computes lives here; the Textual console (`salus_tui`) and the `salus` CLI only
present it. This package never imports Textual.
"""

__version__ = "0.1.0"

FAILURE_TYPES: tuple[str, ...] = ("collision", "drop", "miss", "timeout")
"""Failure types, in the order of the `failure_type` code (0..3); success is code -1."""

OUTCOME_NAMES: dict[int, str] = {-1: "success", 0: "collision", 1: "drop", 2: "miss", 3: "timeout", 4: "stopped"}
"""Outcome code -> name; -1 is success, 0..3 index `FAILURE_TYPES`, 4 is an episode that the runtime
monitor stopped (`salus_engine.monitor`): neither a success nor an observed failure."""
STOPPED = 4
"""Outcome code of an episode the runtime monitor stopped (store format 4)."""
