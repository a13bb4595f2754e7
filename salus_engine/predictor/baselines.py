"""Simple baselines scored exactly like the predictor, and the permutation control.

- single signal thresholded: the raw value of one of the six signals is the failure score of every
  type and horizon; its direction (higher = more likely to fail, or the reverse) is chosen on the
  training split by the AUROC of "any failure within the longest horizon".
- logistic regression on the six current-step signals (scikit-learn, standardised, class-balanced),
  one model per failure type and horizon.
- permutation control: the same network trained on labels shuffled across episodes (`permuted_labels`);
  any skill it shows on real test labels would come from leakage, so it must come out near chance.
- RND novelty (`RNDNovelty`): random network distillation (Burda et al. 2019) trained on the steps of
  successful training episodes only, as FAIL-Detect scores observation novelty (Xu et al. 2025,
  "Can We Detect Failures Without Failure Data?"): a predictor network learns to match a fixed random
  target network; its squared error is high on inputs unlike successful runs.
- FIPER gate (`fiper_gate`): FIPER (Römer et al. 2025) alarms only when observation novelty (RND) and
  action-chunk entropy (ACE) both exceed their conformal thresholds; here each is turned into its
  quantile among successful calibration steps and the gate's score is the smaller of the two, so the
  episode threshold on it is again conformal.
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
    """One input column as the failure score. `scores(columns (N, C)) -> (N, H, 4)`, the signed value
    of column `index` broadcast (the six signals, or any column of the signal families)."""

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


class RNDNovelty:
    """Random network distillation novelty. `fit(x)` on steps of successful episodes (N, C) raw
    inputs; `scores(x) -> (N,)` float32 squared prediction error per step (higher = more novel).

    Target and predictor: C -> 64 -> 64 -> 32 ReLU MLPs on standardised inputs; the predictor is
    trained with Adam (lr 1e-3, batch 512) for `epochs` epochs.
    """

    def __init__(self, seed: int = 0, epochs: int = 15) -> None:
        self.seed = seed
        self.epochs = epochs

    @staticmethod
    def _net(width: int):
        from torch import nn

        return nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))

    def fit(self, x: np.ndarray) -> RNDNovelty:
        import torch

        torch.manual_seed(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        self.mean, std = xt.mean(dim=0), xt.std(dim=0)
        self.std = torch.where(std < 1e-6, torch.ones_like(std), std)
        xt = (xt - self.mean) / self.std
        self.target, self.predictor = self._net(x.shape[1]), self._net(x.shape[1])
        for p in self.target.parameters():
            p.requires_grad_(False)
        optimiser = torch.optim.Adam(self.predictor.parameters(), lr=1e-3)
        for _ in range(self.epochs):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), 512):
                batch = xt[order[start:start + 512]]
                optimiser.zero_grad(set_to_none=True)
                loss = ((self.predictor(batch) - self.target(batch)) ** 2).mean()
                loss.backward()
                optimiser.step()
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            xt = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) - self.mean) / self.std
            return ((self.predictor(xt) - self.target(xt)) ** 2).mean(dim=1).numpy().astype(np.float32)


def quantile_of(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Empirical CDF of `reference` (1-D) at `values`: share of reference values <= each value."""
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    return (np.searchsorted(ordered, np.asarray(values, dtype=np.float64), side="right") / max(1, len(ordered))
            ).astype(np.float32)


def fiper_gate(novelty: np.ndarray, entropy: np.ndarray, novelty_reference: np.ndarray,
               entropy_reference: np.ndarray) -> np.ndarray:
    """FIPER's AND-gate as one score: min of the two scores' quantiles among successful steps.

    Args:
        novelty, entropy: (N,) per-step RND novelty and action-chunk entropy to score.
        novelty_reference, entropy_reference: the same on steps of successful calibration episodes.

    Returns:
        (N,) float32 in [0, 1]; above a threshold q only where both scores are above their q-quantile.
    """
    return np.minimum(quantile_of(novelty_reference, novelty), quantile_of(entropy_reference, entropy))
