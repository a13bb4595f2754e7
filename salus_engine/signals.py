"""The six per-step uncertainty signals computed from an ensemble's actions.

Definitions are the seeds' ("SALUS" notes, `smolvla_wrapper.py` signal extractor), with population
statistics (numpy's default `ddof=0`, torch's `unbiased=False`) so that an ensemble of one member
gives zeros, not NaN:

====  =========================  ==============================================================  =====================
 idx   name                       definition (member actions a_m, m = 1..M, dims d = 1..A)          unit
====  =========================  ==============================================================  =====================
 0     epistemic_uncertainty      mean_d std_m(a_m,d)                                              action units
 1     action_magnitude           || mean_m a_m ||_2                                               action units
 2     action_variance            mean_d var_m(a_m,d)                                              action units^2
 3     action_smoothness          || mean_m a_m(t) - mean_m a_m(t-1) ||_2, 0 at the first step      action units
 4     max_per_dim_variance       max_d var_m(a_m,d)                                               action units^2
 5     uncertainty_trend          signal 0 at t minus signal 0 at t-1, 0 at the first step         action units
====  =========================  ==============================================================  =====================

Action units are those of the env's normalised 7-D action in [-1, 1] (see `salus_engine.sim`).
"""

from __future__ import annotations

import math

import numpy as np

SIGNAL_NAMES: tuple[str, ...] = (
    "epistemic_uncertainty",
    "action_magnitude",
    "action_variance",
    "action_smoothness",
    "max_per_dim_variance",
    "uncertainty_trend",
)
"""Names of the six signals, in storage order."""

NUM_SIGNALS = len(SIGNAL_NAMES)

_sum, _all, _isfinite = np.add.reduce, np.logical_and.reduce, np.isfinite


class SignalExtractor:
    """Stateful extractor of the six signals for one episode.

    Call `reset()` at the start of every episode and `update()` once per step.

    The (M, A) statistics are numpy's, computed as `np.mean` and `np.var` compute them (sum, divide;
    squared deviations, sum, divide); the rest works on the A-vectors as Python floats, which costs
    less than numpy calls on arrays this small (`bench/predict.py` times a control step).
    """

    def __init__(self) -> None:
        self._prev_mean: list[float] | None = None
        self._prev_uncertainty = 0.0

    def reset(self) -> None:
        """Forgets the previous step, so the next `update` gives 0 smoothness and trend."""
        self._prev_mean = None
        self._prev_uncertainty = 0.0

    def update(self, member_actions: np.ndarray) -> np.ndarray:
        """Computes the signals of one step.

        Args:
            member_actions: (M, A) array, one action per ensemble member (M >= 1, A >= 1).

        Returns:
            (6,) float32 array in the order of `SIGNAL_NAMES`.

        Raises:
            ValueError: `member_actions` is not 2-D, is empty, or holds a non-finite value.
        """
        actions = np.asarray(member_actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[0] == 0 or actions.shape[1] == 0:
            raise ValueError(f"member_actions must have shape (M, A) with M, A >= 1, got {actions.shape}")
        if not _all(_isfinite(actions), None):
            raise ValueError("member_actions holds NaN or inf; the policy produced invalid actions")
        members = actions.shape[0]
        mean_array = _sum(actions, 0) / members
        deviation = actions - mean_array
        var = (_sum(deviation * deviation, 0) / members).tolist()  # population variance (ddof=0), unbiased=False
        mean = mean_array.tolist()
        dims = len(var)
        uncertainty = sum(map(math.sqrt, var)) / dims
        if self._prev_mean is None:
            smoothness = 0.0
            trend = 0.0
        else:
            smoothness = math.dist(mean, self._prev_mean)
            trend = uncertainty - self._prev_uncertainty
        self._prev_mean = mean
        self._prev_uncertainty = uncertainty
        return np.array([uncertainty, math.hypot(*mean), sum(var) / dims, smoothness, max(var), trend],
                        dtype=np.float32)
