"""The alarm score of a step: one number from a predictor's failure-type probabilities, the number that
the conformal threshold is calibrated on, that the evaluation ranks episodes by (its running maximum)
and that the monitor compares with the threshold online.

Two rules, named in a checkpoint's `ModelSpec.alarm_score`:
- `max`: the largest failure-type probability (the rule of every checkpoint before `noisy-or`);
- `noisy-or`: 1 - prod_k (1 - p_k), the probability that at least one failure type happens when the
  types are treated as independent (the noisy-OR of Pearl, "Probabilistic Reasoning in Intelligent
  Systems", 1988, section 4.3.2). Unlike `max` it rises when the predictor spreads its belief over
  several types (collision or miss) instead of committing to one. It is the default of the outcome
  model: 5-fold cross-validation over the training and validation episodes of the 2,000-episode store
  ranked episodes higher with it on every training seed (README "Measured", `bench/feature_choice.py
  --alarm-scores`).
"""

from __future__ import annotations

import numpy as np

ALARM_SCORES = ("max", "noisy-or")
"""The alarm-score rules, in the order `salus train --alarm-score` lists them."""


def alarm_scores(probabilities: np.ndarray, rule: str = "max") -> np.ndarray:
    """The alarm score of each row of failure-type probabilities.

    Args:
        probabilities: (..., C) probabilities in [0, 1], the last axis over failure types.
        rule: one of `ALARM_SCORES`.

    Returns:
        (...) float64 scores in [0, 1].

    Raises:
        ValueError: an unknown rule.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if rule == "max":
        return p.max(axis=-1)
    if rule == "noisy-or":
        return 1.0 - np.prod(1.0 - p, axis=-1)
    raise ValueError(f"alarm score {rule!r} is unknown; choose one of {', '.join(ALARM_SCORES)}")
