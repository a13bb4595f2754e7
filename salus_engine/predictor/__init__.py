"""Failure predictor: models, dataset and episode split, training, conformal alarm thresholds,
baselines, evaluation, plots, report, the online monitor path, and the `salus` subcommands.

This package module is light (no torch, zarr, scikit-learn or matplotlib) so that building the CLI
parser stays fast; the submodules import what they need.
"""

from salus_engine.predictor.errors import PredictorError

MODEL_KINDS: tuple[str, ...] = ("outcome", "temporal", "multi-horizon", "single-horizon")
"""Predictor networks (see `salus_engine.predictor.models`)."""

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "calibration", "test")
"""Episode splits: `train` fits the model, `val` early-stops it and picks decision thresholds,
`calibration` (successful episodes only) sets the conformal alarm threshold, `test` is held out."""

__all__ = ["MODEL_KINDS", "PredictorError", "SPLIT_NAMES"]
