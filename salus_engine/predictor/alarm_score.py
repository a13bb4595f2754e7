"""The alarm score of a step: one number from a predictor's failure-type probabilities, the number that
the conformal threshold is calibrated on, that the evaluation ranks episodes by (its running maximum)
and that the monitor compares with the threshold online.

Three rules, named in a checkpoint's `ModelSpec.alarm_score`:
- `max`: the largest failure-type probability (the rule of every checkpoint before `noisy-or`);
- `noisy-or`: 1 - prod_k (1 - p_k), the probability that at least one failure type happens when the
  types are treated as independent (the noisy-OR of Pearl, "Probabilistic Reasoning in Intelligent
  Systems", 1988, section 4.3.2). Unlike `max` it rises when the predictor spreads its belief over
  several types (collision or miss) instead of committing to one. 5-fold cross-validation over the
  training and validation episodes of the 2,000-episode store ranked episodes higher with it than with
  `max` on every training seed (README "Measured", `bench/feature_choice.py --alarm-scores`).
- `noisy-or-excess`: the noisy-or minus `PROFILE_WEIGHT` times the *success profile* at the same step,
  the mean noisy-or of the training split's successful episodes at that step of their episodes
  (`success_profile`, stored in the checkpoint). Every episode passes through phases where successful
  episodes too score high (the descent to the table, the grasp); the profile lowers the score there and
  so lets the running maximum rank the episodes by how far they rise above a successful episode at the
  same moment. Thresholding it is a time-varying threshold on the noisy-or, `PROFILE_WEIGHT * mu(t) + h`,
  as in functional conformal bands (Diquigiovanni, Fontana and Vantini, "The Importance of Being a
  Band", arXiv 2102.06746, with a constant modulation) and FAIL-Detect's time-varying thresholds (Xu
  et al., "Can We Detect Failures Without Failure Data?", RSS 2025, arXiv 2503.08558); the split-conformal
  guarantee holds because the profile comes from the training split, never from the calibration
  episodes. The default of the outcome model, chosen by 5-fold cross-validation (README "Measured",
  `bench/feature_choice.py --alarm-scores`).
"""

from __future__ import annotations

import numpy as np

ALARM_SCORES = ("max", "noisy-or", "noisy-or-excess")
"""The alarm-score rules, in the order `salus train --alarm-score` lists them."""
PROFILE_RULES = {"noisy-or-excess": "noisy-or"}
"""The rules that need a success profile, each with the rule its profile is the mean of."""
PROFILE_WEIGHT = 0.5
"""How much of the success profile `noisy-or-excess` subtracts. 5-fold cross-validation on the training
and validation episodes of the 2,000-episode store, 3 training seeds, weights 0.25 / 0.5 / 0.75 / 1:
0.5 ranked highest on two seeds and within 0.0004 of the highest on the third, and kept the median
miss lead at 23 steps (1.0: 13.5; README "Measured")."""
MIN_SUCCESSES = 10
"""A step's profile value is the mean over the successful episodes still running at it when there are at
least this many; later steps keep the last such value."""


def score_range(rule: str) -> tuple[float, float]:
    """(lowest, highest) alarm score of `rule`: (0, 1), or (-PROFILE_WEIGHT, 1) for a rule with a profile."""
    return (-PROFILE_WEIGHT, 1.0) if rule in PROFILE_RULES else (0.0, 1.0)


def needs_profile(rule: str) -> bool:
    """True when `rule` subtracts a success profile (`PROFILE_RULES`)."""
    return rule in PROFILE_RULES


def alarm_scores(probabilities: np.ndarray, rule: str = "max", steps: np.ndarray | None = None,
                 profile: tuple[float, ...] | np.ndarray = ()) -> np.ndarray:
    """The alarm score of each row of failure-type probabilities.

    Args:
        probabilities: (..., C) probabilities in [0, 1], the last axis over failure types.
        rule: one of `ALARM_SCORES`.
        steps: for a rule with a profile: the 0-based step of each row within its episode, an int array
            broadcastable to `probabilities.shape[:-1]` (one int for one step); ignored otherwise.
        profile: for a rule with a profile: (T,) success profile (`success_profile`); a step at or after T
            takes its last value.

    Returns:
        (...) float64 scores: in [0, 1] for `max` and `noisy-or`, in [-PROFILE_WEIGHT, 1] for
        `noisy-or-excess`.

    Raises:
        ValueError: an unknown rule, or a profile rule without steps or with an empty profile.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if rule == "max":
        return p.max(axis=-1)
    if rule == "noisy-or":
        return 1.0 - np.prod(1.0 - p, axis=-1)
    if rule in PROFILE_RULES:
        mean = np.asarray(profile, dtype=np.float64)
        if steps is None or mean.ndim != 1 or not len(mean):
            raise ValueError(f"the {rule!r} alarm score needs each row's step and a success profile; the "
                             "checkpoint has none: train it again with this version of salus")
        index = np.minimum(np.asarray(steps, dtype=np.int64), len(mean) - 1)
        return alarm_scores(p, PROFILE_RULES[rule]) - PROFILE_WEIGHT * mean[index]
    raise ValueError(f"alarm score {rule!r} is unknown; choose one of {', '.join(ALARM_SCORES)}")


def success_profile(scores: np.ndarray, offsets: np.ndarray) -> tuple[float, ...]:
    """The success profile of a rule: at each step, the mean of its score over the successful episodes
    still running at that step.

    Args:
        scores: (N,) float scores (the profile rule's base rule, e.g. the noisy-or) of the successful
            episodes' steps, episode after episode.
        offsets: (E + 1,) int row offsets of those episodes in `scores`.

    Returns:
        T floats, T the longest episode's length; from the first step with fewer than `MIN_SUCCESSES`
        episodes running, the last value with at least that many (the first step's mean when no step
        has that many).

    Raises:
        ValueError: no episode, or offsets that do not match `scores`.
    """
    scores = np.asarray(scores, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    if len(lengths) == 0 or lengths.max() <= 0 or offsets[-1] != len(scores):
        raise ValueError("a success profile needs one or more successful episodes with steps")
    steps = np.concatenate([np.arange(n) for n in lengths])
    total = np.bincount(steps, weights=scores, minlength=lengths.max())
    count = np.bincount(steps, minlength=lengths.max())
    mean = total / count
    enough = np.flatnonzero(count >= MIN_SUCCESSES)
    last = int(enough[-1]) if len(enough) else 0
    mean[last + 1:] = mean[last]
    return tuple(float(v) for v in mean)
