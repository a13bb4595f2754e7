"""Multi-horizon failure labels from an episode's outcome (seeds: `horizon_labels` (T, 4, 4))."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from salus_engine import FAILURE_TYPES, STOPPED


def make_horizon_labels(failure_type: int, failure_step: int, length: int, horizons: Sequence[int]) -> np.ndarray:
    """Builds `horizon_labels` for one episode.

    `labels[t, h, k] = 1` when the episode's failure is of type k and happens within `horizons[h]`
    steps of step t, i.e. `t <= failure_step <= t + horizons[h]`; all zeros for a success and for an
    episode the runtime monitor stopped (no failure was observed).

    Args:
        failure_type: -1 for success, 0..3 (index into `FAILURE_TYPES`), or 4 (`STOPPED`).
        failure_step: 0-based step of the failure, < length.
        length: number of steps T.
        horizons: horizon lengths in steps, e.g. (6, 10, 15, 20).

    Returns:
        (T, len(horizons), 4) uint8 array.

    Raises:
        ValueError: failure_type out of range, or a failure whose step lies outside [0, length).
    """
    if failure_type not in (-1, *range(len(FAILURE_TYPES)), STOPPED):
        raise ValueError(f"failure_type must be -1..{len(FAILURE_TYPES) - 1} or {STOPPED}, got {failure_type}")
    labels = np.zeros((length, len(horizons), len(FAILURE_TYPES)), dtype=np.uint8)
    if failure_type < 0 or failure_type == STOPPED:
        return labels
    if not 0 <= failure_step < length:
        raise ValueError(f"failure_step {failure_step} outside the episode's {length} steps")
    steps_to_failure = failure_step - np.arange(length)
    for h, horizon in enumerate(horizons):
        labels[:, h, failure_type] = (steps_to_failure >= 0) & (steps_to_failure <= horizon)
    return labels
