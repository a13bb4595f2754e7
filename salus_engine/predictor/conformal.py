"""Split-conformal alarm thresholds with a stated false-alarm rate (FAIL-Detect, SAFE: calibrate on
successful runs only).

An episode's alarm score is the maximum of its per-step failure score; the monitor raises an alarm
at the first step whose score exceeds the threshold. For n successful calibration episodes with
alarm scores s_1..s_n, the threshold is the k-th smallest score with k = ceil((n + 1)(1 - alpha)).
If a new successful episode is exchangeable with the calibration ones, it raises a (false) alarm
with probability at most alpha (and, without ties, at least alpha - 1 / (n + 1)). When k > n, i.e.
alpha < 1 / (n + 1), no finite threshold gives the guarantee and the threshold is +inf (never alarm).
"""

from __future__ import annotations

import math

import numpy as np

from salus_engine.predictor.errors import PredictorError


def conformal_threshold(calibration_scores: np.ndarray, alpha: float = 0.1) -> float:
    """Split-conformal threshold for false-alarm rate `alpha`.

    Args:
        calibration_scores: (n,) alarm scores of successful calibration episodes.
        alpha: tolerated false-alarm rate on successful episodes, in (0, 1).

    Returns:
        The threshold (alarm when score > threshold); +inf when alpha < 1 / (n + 1).

    Raises:
        PredictorError: alpha outside (0, 1), no calibration episode, or a non-finite score.
    """
    if not 0.0 < alpha < 1.0:
        raise PredictorError(f"--alpha must be between 0 and 1 (a false-alarm rate such as 0.1), got {alpha}")
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    n = len(scores)
    if n == 0:
        raise PredictorError("no successful calibration episode, so no alarm threshold can be calibrated; "
                             "collect more episodes (successes are needed)")
    if not np.isfinite(scores).all():
        raise PredictorError("a calibration score is NaN or inf; check the store's signals with 'salus verify'")
    k = math.ceil((n + 1) * (1.0 - alpha))
    return float("inf") if k > n else float(scores[k - 1])


def episode_max_scores(step_scores: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Maximum per-step score of each episode.

    Args:
        step_scores: (N,) scores of consecutive episodes' steps.
        offsets: (E + 1,) row offsets, episode e = rows offsets[e]:offsets[e + 1] (each non-empty).

    Returns:
        (E,) float64.
    """
    return np.maximum.reduceat(np.asarray(step_scores, dtype=np.float64), np.asarray(offsets[:-1], dtype=np.int64))


def first_alarms(step_scores: np.ndarray, offsets: np.ndarray, threshold: float) -> np.ndarray:
    """First step of each episode whose score exceeds `threshold`.

    Returns:
        (E,) int64 step index within the episode, -1 where no step exceeds it.
    """
    above = np.asarray(step_scores) > threshold
    alarms = np.full(len(offsets) - 1, -1, dtype=np.int64)
    for e in range(len(offsets) - 1):
        hits = np.flatnonzero(above[offsets[e]:offsets[e + 1]])
        if len(hits):
            alarms[e] = hits[0]
    return alarms
