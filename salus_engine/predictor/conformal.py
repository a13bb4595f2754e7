"""Split-conformal alarm thresholds with a stated false-alarm rate (FAIL-Detect, SAFE: calibrate on
successful runs only).

An episode's alarm score is the maximum of its per-step failure score; the monitor raises an alarm
at the first step whose score exceeds the threshold. For n successful calibration episodes with
alarm scores s_1..s_n, the threshold is the k-th smallest score with k = ceil((n + 1)(1 - alpha)).
If a new successful episode is exchangeable with the calibration ones, it raises a (false) alarm
with probability at most alpha (and, without ties, at least alpha - 1 / (n + 1)). When k > n, i.e.
alpha < 1 / (n + 1), no finite threshold gives the guarantee and the threshold is +inf (never alarm).

That guarantee is marginal: it averages over the draw of the calibration set. For one calibration set
the false-alarm rate of its threshold, 1 - F(s_(k)) with F the successes' score distribution, is a
random variable: F(s_(k)) ~ Beta(k, n + 1 - k) for continuous scores, whose mean gives the bound above;
with n = 141 and alpha = 0.1 a calibration set lets more than 10 % of new successes alarm about half
the time. Given `delta`, the threshold is instead the k-th smallest score with the smallest k such that
P(Beta(k, n + 1 - k) < 1 - alpha) = P(Binomial(n, 1 - alpha) >= k) <= delta: with probability at least
1 - delta over the calibration set, this set's threshold lets at most a fraction alpha of new successful
episodes alarm (training-conditional validity: V. Vovk, "Conditional validity of inductive conformal
predictors", ACML 2012, PMLR 25:475-490; M. Bian and R. F. Barber, "Training-conditional coverage for
distribution-free predictive inference", arXiv:2205.03647). The price is a higher threshold: fewer
and later alarms on failing episodes.
"""

from __future__ import annotations

import math

import numpy as np

from salus_engine.predictor.errors import PredictorError


def conformal_rank(n: int, alpha: float, delta: float | None = None) -> int | None:
    """Rank k (1-based, ascending) of the calibration score that is the conformal threshold.

    Args:
        n: calibration episodes, >= 1.
        alpha: tolerated false-alarm rate, in (0, 1).
        delta: None for the marginal guarantee, k = ceil((n + 1)(1 - alpha)); else the probability, in
            (0, 1), that the calibration set's threshold lets more than alpha of new successes alarm
            (the smallest k with P(Binomial(n, 1 - alpha) >= k) <= delta).

    Returns:
        k in 1..n, or None where no rank gives the guarantee (too few calibration episodes).

    Raises:
        PredictorError: alpha or delta outside (0, 1).
    """
    if not 0.0 < alpha < 1.0:
        raise PredictorError(f"--alpha must be between 0 and 1 (a false-alarm rate such as 0.1), got {alpha}")
    if delta is None:
        k = math.ceil((n + 1) * (1.0 - alpha))
        return k if k <= n else None
    if not 0.0 < delta < 1.0:
        raise PredictorError(f"--delta must be between 0 and 1 (the chance that the calibration set's false-alarm "
                             f"rate exceeds alpha, such as 0.1), got {delta}")
    from scipy.stats import binom

    ranks = np.arange(1, n + 1)
    valid = np.flatnonzero(binom.sf(ranks - 1, n, 1.0 - alpha) <= delta)
    return int(ranks[valid[0]]) if len(valid) else None


def conformal_threshold(calibration_scores: np.ndarray, alpha: float = 0.1, delta: float | None = None) -> float:
    """Split-conformal threshold for false-alarm rate `alpha`.

    Args:
        calibration_scores: (n,) alarm scores of successful calibration episodes.
        alpha: tolerated false-alarm rate on successful episodes, in (0, 1).
        delta: None for the marginal guarantee; else the tolerated probability, in (0, 1), that this
            calibration set's threshold exceeds alpha (training-conditional; see the module).

    Returns:
        The threshold (alarm when score > threshold); +inf when no rank gives the guarantee
        (alpha < 1 / (n + 1) for the marginal one).

    Raises:
        PredictorError: alpha or delta outside (0, 1), no calibration episode, or a non-finite score.
    """
    scores = np.sort(np.asarray(calibration_scores, dtype=np.float64).ravel())
    n = len(scores)
    k = conformal_rank(max(n, 1), alpha, delta)  # validates alpha and delta before the emptiness check
    if n == 0:
        raise PredictorError("no successful calibration episode, so no alarm threshold can be calibrated; "
                             "collect more episodes (successes are needed)")
    if not np.isfinite(scores).all():
        raise PredictorError("a calibration score is NaN or inf; check the store's signals with 'salus verify'")
    return float("inf") if k is None else float(scores[k - 1])


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
