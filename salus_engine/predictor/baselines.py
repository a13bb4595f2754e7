"""Simple baselines scored exactly like the predictor, and the permutation control.

- single signal thresholded: the raw value of one of the six signals is the failure score of every
  type and horizon; its direction (higher = more likely to fail, or the reverse) is chosen on the
  training split by the AUROC of "any failure within the longest horizon".
- logistic regression on the six current-step signals (scikit-learn, standardised, class-balanced),
  one model per failure type and horizon.
- permutation control: the same network trained on labels shuffled across episodes (`permuted_labels`);
  any skill it shows on real test labels would come from leakage, so it must come out near chance.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


class SignalThreshold:
    """One signal as the failure score. `scores(signals (N, 6)) -> (N, H, 4)`, the signed value broadcast."""

    def __init__(self, index: int, horizons: int, types: int = 4) -> None:
        self.index = index
        self.horizons = horizons
        self.types = types
        self.sign = 1.0

    def fit(self, signals: np.ndarray, labels: np.ndarray) -> SignalThreshold:
        """Chooses the direction on training rows: signals (N, 6), labels (N, H, 4) uint8."""
        any_failure = labels[:, -1, :].max(axis=1)
        if 0 < any_failure.sum() < len(any_failure):
            self.sign = 1.0 if roc_auc_score(any_failure, signals[:, self.index]) >= 0.5 else -1.0
        return self

    def scores(self, signals: np.ndarray) -> np.ndarray:
        value = (self.sign * signals[:, self.index]).astype(np.float32)
        return np.broadcast_to(value[:, None, None], (len(value), self.horizons, self.types))


class LogisticBaseline:
    """Logistic regression on the six current-step signals, one per (horizon, type) output.

    `scores(signals (N, 6)) -> (N, H, 4)` probabilities; an output without a positive training step
    scores 0 everywhere.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.models: dict[tuple[int, int], object] = {}
        self.shape: tuple[int, int] = (0, 0)

    def fit(self, signals: np.ndarray, labels: np.ndarray) -> LogisticBaseline:
        self.shape = labels.shape[1:]
        for h in range(labels.shape[1]):
            for k in range(labels.shape[2]):
                y = labels[:, h, k]
                if 0 < y.sum() < len(y):
                    model = make_pipeline(StandardScaler(), LogisticRegression(
                        class_weight="balanced", max_iter=500, random_state=self.seed))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        model.fit(signals, y)
                    self.models[(h, k)] = model
        return self

    def scores(self, signals: np.ndarray) -> np.ndarray:
        out = np.zeros((len(signals), *self.shape), dtype=np.float32)
        for (h, k), model in self.models.items():
            out[:, h, k] = model.predict_proba(signals)[:, 1]
        return out


def permuted_labels(labels: np.ndarray, offsets: np.ndarray, seed: int) -> np.ndarray:
    """Horizon labels shuffled across episodes.

    Episode e receives the label sequence of episode pi(e), for a seeded random permutation pi, read
    cyclically from a seeded random start step and cut to e's length. Positive steps keep their
    run lengths and their share, but lose any link to e's signals and to the phase of the episode
    (the step index), so a model trained on them can only be right by chance.

    Args:
        labels: (N, H, 4) uint8 labels of consecutive episodes.
        offsets: (E + 1,) row offsets of those episodes.
        seed: permutation seed.

    Returns:
        (N, H, 4) uint8, the same rows with other episodes' labels.
    """
    rng = np.random.default_rng(seed)
    episodes = len(offsets) - 1
    donors = rng.permutation(episodes)
    out = np.empty_like(labels)
    for e, d in enumerate(donors):
        length = int(offsets[e + 1] - offsets[e])
        donor = labels[offsets[d]:offsets[d + 1]]
        start = int(rng.integers(len(donor)))
        out[offsets[e]:offsets[e + 1]] = donor[(start + np.arange(length)) % len(donor)]
    return out
