"""Metrics of a failure scorer, per step (per failure type and horizon) and per episode (as a
monitor is experienced). Classification metrics are scikit-learn's.

Conventions: scores (N, H, 4), higher = more likely to fail; labels (N, H, 4) uint8 horizon labels;
a step is predicted positive when its score >= the output's decision threshold. Values that are
undefined (AUROC without both classes, a rate over zero episodes) are None.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import gammaln
from scipy.stats import betabinom, binom, binomtest, bootstrap, hypergeom, mannwhitneyu, rankdata
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from salus_engine import FAILURE_TYPES, OUTCOME_NAMES
from salus_engine.predictor.conformal import conformal_rank, conformal_threshold, first_alarms
from salus_engine.predictor.dataset import EpisodeInfo

CURVE_POINTS = 101
"""Points of the false-positive-rate grid on which ROC curves are stored in metrics.json."""


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < len(y)


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def choose_thresholds(val_scores: np.ndarray, val_labels: np.ndarray, train_prevalence: np.ndarray) -> np.ndarray:
    """Decision thresholds per output, chosen on the validation split to maximise F1.

    An output whose validation labels lack a class gets the threshold that marks the training
    split's prevalence of validation steps positive.

    Args:
        val_scores, val_labels: (n, H, 4).
        train_prevalence: (H, 4) share of positive training steps.

    Returns:
        (H, 4) float64 thresholds.
    """
    _, horizons, types = val_scores.shape
    thresholds = np.empty((horizons, types))
    for h in range(horizons):
        for k in range(types):
            y, s = val_labels[:, h, k], val_scores[:, h, k].astype(np.float64)
            if _both_classes(y):
                precision, recall, cut = precision_recall_curve(y, s)
                f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
                thresholds[h, k] = cut[int(np.argmax(f1))]
            elif train_prevalence[h, k] > 0 and len(s):
                thresholds[h, k] = np.quantile(s, 1.0 - train_prevalence[h, k])
            else:
                thresholds[h, k] = np.inf
    return thresholds


def roc_on_grid(y: np.ndarray, s: np.ndarray) -> dict[str, list[float]] | None:
    """ROC curve as true-positive rate on an even false-positive-rate grid (for metrics.json)."""
    if not _both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, s)
    grid = np.linspace(0.0, 1.0, CURVE_POINTS)
    return {"fpr": [round(float(v), 4) for v in grid], "tpr": [round(float(v), 4) for v in np.interp(grid, fpr, tpr)]}


def step_metrics(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, horizons: tuple[int, ...],
                 primary: int) -> dict[str, Any]:
    """Per (failure type, horizon) precision, recall, F1, AUROC, AUPRC, support; their means over the
    outputs with a positive step; exact match (all 16 decisions right); and the "any failure within
    horizons[primary] steps" AUROC/AUPRC of the max-over-types score.

    Args:
        scores: (N, H, 4) failure scores.
        labels: (N, H, 4) uint8.
        thresholds: (H, 4) decision thresholds.
        horizons: horizon lengths, steps.
        primary: index of the horizon used for the per-type and any-failure summaries.
    """
    predicted = scores >= thresholds[None]
    rows = []
    for h, horizon in enumerate(horizons):
        for k, name in enumerate(FAILURE_TYPES):
            y, s, p = labels[:, h, k], scores[:, h, k].astype(np.float64), predicted[:, h, k]
            support = int(y.sum())
            precision, recall, f1, _ = precision_recall_fscore_support(y, p, average="binary", zero_division=0)
            rows.append({
                "type": name, "horizon": int(horizon),
                "precision": float(precision) if support else None,
                "recall": float(recall) if support else None,
                "f1": float(f1) if support else None,
                "auroc": float(roc_auc_score(y, s)) if _both_classes(y) else None,
                "auprc": float(average_precision_score(y, s)) if support else None,
                "support": support, "prevalence": support / max(1, len(y)),
                "threshold": float(thresholds[h, k]),
            })
    n = len(scores)
    means = {m: _mean([r[m] for r in rows]) for m in ("precision", "recall", "f1", "auroc", "auprc")}
    per_type = {r["type"]: {m: r[m] for m in ("precision", "recall", "f1", "auroc", "auprc", "support")}
                for r in rows if r["horizon"] == horizons[primary]}
    any_y = labels[:, primary, :].max(axis=1)
    any_s = scores[:, primary, :].max(axis=1).astype(np.float64)
    return {
        "per_type_horizon": rows,
        "mean": means,
        "per_type": per_type,
        "exact_match": float(accuracy_score(labels.reshape(n, -1), predicted.reshape(n, -1))) if n else None,
        "any_failure": {
            "horizon": int(horizons[primary]),
            "auroc": float(roc_auc_score(any_y, any_s)) if _both_classes(any_y) else None,
            "auprc": float(average_precision_score(any_y, any_s)) if any_y.sum() else None,
            "support": int(any_y.sum()),
            "roc": roc_on_grid(any_y, any_s),
        },
    }


def _rate(k: int, n: int) -> dict[str, Any]:
    """k of n as a rate with its exact (Clopper-Pearson) 95 % interval."""
    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci95": None}
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {"k": int(k), "n": int(n), "rate": k / n, "ci95": [float(ci.low), float(ci.high)]}


def episode_metrics(alarm_scores: np.ndarray, type_scores: np.ndarray | None, episodes: list[EpisodeInfo],
                    offsets: np.ndarray, threshold: float, control_hz: float, min_lead_steps: int) -> dict[str, Any]:
    """Episode-level monitor metrics: an alarm is the first step whose alarm score exceeds `threshold`.

    A failed episode is detected when its alarm comes at or before `failure_step`; lead time is
    failure_step - alarm step (steps, and seconds at `control_hz`). A successful episode with any
    alarm is a false alarm. The predicted outcome of an episode is success without an alarm, else the
    failure type with the highest score at the alarm step (`type_scores`, when the scorer has types).

    Args:
        alarm_scores: (N,) per-step alarm score of the episodes' rows.
        type_scores: (N, 4) per-type scores at the alarm horizon, or None.
        episodes: the E episodes, in row order; offsets: (E + 1,) their row offsets.
        threshold: alarm threshold (conformal).
        control_hz: control rate, Hz.
        min_lead_steps: lead time counted as actionable (the shortest horizon).
    """
    alarms = first_alarms(alarm_scores, offsets, threshold)
    outcome = np.array([e.failure_type for e in episodes])
    failure_step = np.array([e.failure_step for e in episodes])
    failed = outcome >= 0
    detected = failed & (alarms >= 0) & (alarms <= failure_step)
    false_alarm = ~failed & (alarms >= 0)
    lead = (failure_step - alarms)[detected]
    per_type = {}
    for k, name in enumerate(FAILURE_TYPES):
        of_type = outcome == k
        entry = _rate(int((detected & of_type).sum()), int(of_type.sum()))
        type_lead = (failure_step - alarms)[detected & of_type]
        entry["median_lead_steps"] = float(np.median(type_lead)) if len(type_lead) else None
        entry["median_lead_ci95"] = median_ci(type_lead)
        per_type[name] = entry
    result: dict[str, Any] = {
        "threshold": float(threshold),
        "tpr": _rate(int(detected.sum()), int(failed.sum())),
        "far": _rate(int(false_alarm.sum()), int((~failed).sum())),
        "tpr_actionable": _rate(int((detected & ((failure_step - alarms) >= min_lead_steps)).sum()), int(failed.sum())),
        "min_lead_steps": int(min_lead_steps),
        "per_type": per_type,
        "lead_steps": [int(v) for v in lead],
        "median_lead_steps": float(np.median(lead)) if len(lead) else None,
        "median_lead_s": float(np.median(lead)) / control_hz if len(lead) else None,
        "lead_quartiles_s": [float(q) / control_hz for q in np.percentile(lead, [25, 50, 75])] if len(lead) else None,
        "control_hz": control_hz,
        "alarm_steps": [int(a) for a in alarms],
        "episode_ids": [e.episode_id for e in episodes],
        "confusion": None,
    }
    if type_scores is not None:
        predicted = np.full(len(episodes), -1)
        for e in np.flatnonzero(alarms >= 0):
            predicted[e] = int(np.argmax(type_scores[offsets[e] + alarms[e]]))
        codes = sorted(OUTCOME_NAMES)
        result["confusion"] = {
            "labels": [OUTCOME_NAMES[c] for c in codes],
            "matrix": confusion_matrix(outcome, predicted, labels=codes).tolist(),
            "note": "rows: true outcome; columns: success = no alarm, else the type scored highest at the alarm",
        }
    return result


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability diagram data and expected calibration error over all given (probability, label)
    pairs, with `bins` equal-width bins (scikit-learn's `calibration_curve` binning).

    ECE = sum over bins of (steps in bin / all steps) * |fraction positive - mean probability|.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(int)
    if not _both_classes(y):
        return {"ece": None, "bins": bins, "mean_predicted": [], "fraction_positive": [], "counts": []}
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    nonempty = counts[counts > 0]
    ece = float(np.sum(nonempty / len(p) * np.abs(frac_pos - mean_pred))) if len(p) else None
    return {"ece": ece, "bins": bins, "mean_predicted": mean_pred.tolist(), "fraction_positive": frac_pos.tolist(),
            "counts": nonempty.tolist()}


def episode_alarm_maxima(alarm_scores: np.ndarray, episodes: list[EpisodeInfo], offsets: np.ndarray) -> np.ndarray:
    """Each episode's running-max alarm score at its end: the maximum over a failed episode's steps
    up to and including its failure step, over a successful episode's every step.

    Returns:
        (E,) float64.
    """
    out = np.empty(len(episodes))
    for e, info in enumerate(episodes):
        end = offsets[e] + (info.failure_step + 1 if info.failure_type >= 0 else info.length)
        out[e] = float(np.max(alarm_scores[offsets[e]:end]))
    return out


def episode_ranking(maxima: np.ndarray, episodes: list[EpisodeInfo]) -> dict[str, Any]:
    """Episode-level ROC-AUC and PR-AUC (average precision) of the running-max alarm score for
    "this episode fails", as SAFE scores a failure detector (Gu et al. 2025)."""
    failed = np.array([e.failure_type >= 0 for e in episodes], dtype=int)
    if not _both_classes(failed):
        return {"auroc": None, "auprc": None, "failed": int(failed.sum()), "episodes": len(failed)}
    return {"auroc": float(roc_auc_score(failed, maxima)), "auprc": float(average_precision_score(failed, maxima)),
            "failed": int(failed.sum()), "episodes": len(failed)}


BOOTSTRAP_RESAMPLES = 2000
"""Resamples of every bootstrap interval of the episode-level ranking."""


def _auroc_along(failed: np.ndarray, scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC-AUC along `axis` by the Mann-Whitney rank sum (ties count a half, as `roc_auc_score`
    counts them); NaN where a resample holds one class only."""
    failed = np.asarray(failed, dtype=bool)
    ranks = rankdata(scores, axis=axis)
    n_failed = failed.sum(axis=axis)
    n_success = failed.shape[axis] - n_failed
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * failed).sum(axis=axis) - n_failed * (n_failed + 1) / 2) / (n_failed * n_success)


def _percentile_interval(data: tuple[np.ndarray, ...], statistic, seed: int) -> list[float] | None:
    result = bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", random_state=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return None if np.isnan(low) or np.isnan(high) else [low, high]


def ranking_intervals(maxima: dict[str, np.ndarray], episodes: list[EpisodeInfo], reference: str = "model",
                      seed: int = 0) -> dict[str, dict[str, Any]]:
    """How sure the episode-level ranking is: each scorer's ROC-AUC with a 95 % interval, and how far
    the reference scorer ranks above each other one, with a 95 % interval of that difference.

    Both are percentile bootstraps over episodes (`scipy.stats.bootstrap`, `BOOTSTRAP_RESAMPLES`
    resamples); the difference is paired: both scorers are scored on the same resampled episodes, so
    what they share cancels. An interval that excludes 0 says the reference ranks differently from that
    scorer beyond what the choice of these episodes explains; it says nothing about the spread between
    trainings (`bench/seed_spread.py` measures that).

    Args:
        maxima: scorer name -> (E,) running-max alarm score of each episode (`episode_alarm_maxima`).
        episodes: the E episodes, in the same order.
        reference: the scorer the others are compared with.
        seed: resampling seed.

    Returns:
        scorer name -> {"auroc_ci95": [low, high] or None, and for every scorer but the reference
        "versus_reference": {"reference", "difference" (reference's ROC-AUC minus this one's), "ci95"}};
        {} when the episodes hold one class only. An interval is None when a resample lacked a class.
    """
    failed = np.array([e.failure_type >= 0 for e in episodes], dtype=bool)
    if not _both_classes(failed.astype(int)):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, values in maxima.items():
        entry: dict[str, Any] = {"auroc_ci95": _percentile_interval(
            (failed, np.asarray(values, dtype=np.float64)), _auroc_along, seed)}
        if name != reference and reference in maxima:
            difference = _auroc_along(failed, maxima[reference]) - _auroc_along(failed, values)
            entry["versus_reference"] = {
                "reference": reference, "difference": float(difference),
                "ci95": _percentile_interval(
                    (failed, np.asarray(maxima[reference], dtype=np.float64), np.asarray(values, dtype=np.float64)),
                    lambda y, a, b, axis=-1: _auroc_along(y, a, axis) - _auroc_along(y, b, axis), seed)}
        out[name] = entry
    return out


def median_ci(values: np.ndarray, seed: int = 0, resamples: int = 2000) -> list[float] | None:
    """Percentile-bootstrap 95 % interval of the median (None for fewer than 2 values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(values, size=(resamples, len(values)), replace=True), axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def alpha_curve(calibration_maxima: np.ndarray, alarm_scores: np.ndarray, episodes: list[EpisodeInfo],
                offsets: np.ndarray, alphas: tuple[float, ...], delta: float | None = None) -> list[dict[str, Any]]:
    """Detection rate, false-alarm rate and median lead time at the conformal threshold of each alpha
    (the detection-rate vs lead-time trade-off of a monitor); `delta` as `conformal_threshold` takes it."""
    rows = []
    for alpha in alphas:
        threshold = conformal_threshold(calibration_maxima, alpha, delta)
        alarms = first_alarms(alarm_scores, offsets, threshold)
        outcome = np.array([e.failure_type for e in episodes])
        failure_step = np.array([e.failure_step for e in episodes])
        failed = outcome >= 0
        detected = failed & (alarms >= 0) & (alarms <= failure_step)
        lead = (failure_step - alarms)[detected]
        rows.append({"alpha": alpha, "threshold": threshold,
                     "tpr": float(detected.sum() / max(1, failed.sum())),
                     "far": float(((~failed) & (alarms >= 0)).sum() / max(1, (~failed).sum())),
                     "median_lead_steps": float(np.median(lead)) if len(lead) else None})
    return rows


def expected_resplit_rate(pooled_maxima: np.ndarray, calibration_size: int, alpha: float,
                          delta: float | None = None) -> float | None:
    """The mean test false-alarm rate over every re-split of the pooled successes into `calibration_size`
    calibration episodes and the rest (what `resplit_false_alarms` estimates from a few random ones).

    It is the mean of one re-split's false-alarm count (`resplit_count_distribution`) over the N - n
    test episodes. Without ties it is (n + 1 - k) / (n + 1) whatever the scores (k: `conformal_rank`),
    at most alpha for the split-conformal rank (the guarantee: exchangeable episodes, V. Vovk,
    A. Gammerman and G. Shafer, "Algorithmic Learning in a Random World", 2005, ch. 2); ties lower it.

    Args:
        pooled_maxima: (N,) alarm scores of the pooled successful episodes.
        calibration_size: n, 1 <= n < N.
        alpha, delta: the threshold's rule (`conformal_threshold`).

    Returns:
        The expected rate in [0, 1]; None when n is outside 1..N - 1 or no rank gives the guarantee.
    """
    counts = resplit_count_distribution(pooled_maxima, calibration_size, alpha, delta)
    return None if counts is None else _mean_rate(counts)


def _mean_rate(counts: np.ndarray) -> float:
    """The mean false-alarm rate of a (N - n + 1,) `resplit_count_distribution`."""
    return float(counts @ np.arange(len(counts)) / (len(counts) - 1))


def resplit_count_distribution(pooled_maxima: np.ndarray, calibration_size: int, alpha: float,
                               delta: float | None = None) -> np.ndarray | None:
    """The distribution of one random re-split's test false-alarm count: the pooled successes are split
    at random into `calibration_size` calibration episodes and the rest, the threshold is the
    calibration scores' k-th smallest (k: `conformal_rank`), and the count is the rest's episodes above it.

    The k-th smallest calibration score sits at position t of the N sorted pooled scores with the
    probability C(t, k - 1) C(N - 1 - t, n - k) / C(N, n); the other n - k calibration episodes are a
    uniform draw from the N - 1 - t positions after t, so the number of them that score above the
    threshold is hypergeometric, and the count is the pooled episodes above it less those. Without
    ties the count is N - 1 - t - (n - k), the same for any scores.

    Args:
        pooled_maxima: (N,) alarm scores of the pooled successful episodes.
        calibration_size: n, 1 <= n < N.
        alpha, delta: the threshold's rule (`conformal_threshold`).

    Returns:
        (N - n + 1,) float64 probabilities of 0..N - n test false alarms; None when n is outside
        1..N - 1 or no rank gives the guarantee.
    """
    pooled = np.sort(np.asarray(pooled_maxima, dtype=np.float64).ravel())
    total, n = len(pooled), int(calibration_size)
    if not 0 < n < total:
        return None
    k = conformal_rank(n, alpha, delta)
    if k is None:
        return None
    positions = np.arange(k - 1, total - n + k)
    log_comb = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    at = np.exp(log_comb(positions, k - 1) + log_comb(total - 1 - positions, n - k) - log_comb(total, n))
    above = total - np.searchsorted(pooled, pooled[positions], side="right")  # pooled episodes above the threshold
    drawn_above = np.arange(n - k + 1)[None, :]  # of the n - k calibration episodes after t, how many lie above
    p_drawn = at[:, None] * hypergeom.pmf(drawn_above, (total - 1 - positions)[:, None], above[:, None], n - k)
    possible = p_drawn > 0
    counts = np.zeros(total - n + 1)
    np.add.at(counts, (above[:, None] - drawn_above)[possible], p_drawn[possible])
    return counts / counts.sum()


def resplit_mean_spread(pooled_maxima: np.ndarray, calibration_size: int, alpha: float, resplits: int,
                        delta: float | None = None) -> dict[str, float] | None:
    """How far the mean test false-alarm rate of `resplits` random re-splits (`resplit_false_alarms`)
    strays from its exact value (`expected_resplit_rate`) by the draw of the re-splits alone: the
    re-splits are independent, each rate distributed as `resplit_count_distribution` over N - n.

    Returns:
        {"expected_mean": `expected_resplit_rate`; "sd": the standard deviation of the re-splits' mean
        rate; "chance_mean_above_alpha": the
        chance that it exceeds alpha; "chance_over_a_tenth_above_0.15": the chance that more than a
        tenth of the re-splits exceed 0.15} for the pooled episodes, each a property of the check, not
        of a particular draw; None where `resplit_count_distribution` is None.
    """
    counts = resplit_count_distribution(pooled_maxima, calibration_size, alpha, delta)
    if counts is None:
        return None
    rates = np.arange(len(counts)) / (len(counts) - 1)
    variance = float(counts @ rates**2 - (counts @ rates) ** 2)
    size = resplits * (len(counts) - 1) + 1  # the sum of the re-splits' counts: its distribution by FFT
    summed = np.clip(np.fft.irfft(np.fft.rfft(counts, 2 * size) ** resplits, 2 * size)[:size], 0.0, None)
    summed /= summed.sum()
    limit = int(np.floor(alpha * (size - 1) + 1e-9))  # the largest count sum whose mean rate is <= alpha
    above_015 = float(counts[rates > 0.15].sum())
    return {"expected_mean": _mean_rate(counts), "sd": float(np.sqrt(max(variance, 0.0) / resplits)),
            "chance_mean_above_alpha": float(summed[limit + 1:].sum()),
            "chance_over_a_tenth_above_0.15": float(binom.sf(int(np.floor(0.1 * resplits)), resplits, above_015))}


def false_alarm_check(calibration_maxima: np.ndarray, test_success_maxima: np.ndarray, alpha: float,
                      delta: float | None = None) -> dict[str, Any]:
    """Whether the test successes' false-alarm rate is one that the conformal rule allows, or a sign
    that they do not score like the calibration successes.

    With the threshold at the calibration scores' k-th smallest (`conformal_rank`), the share of new
    successes above it is Beta(n + 1 - k, k) over the draw of n exchangeable calibration episodes, so
    the count of m test successes that alarm is beta-binomial(m, n + 1 - k, k) (continuous scores):
    `p_value` is the chance of at least the observed count. A small one says the test successes score
    higher than the calibration draw explains; `mann_whitney_p` (two-sided, `scipy.stats.mannwhitneyu`)
    tests whether the two sets of scores come from one distribution at all.

    Args:
        calibration_maxima: (n,) alarm scores of the calibration successes.
        test_success_maxima: (m,) alarm scores of the test successes.
        alpha, delta: the threshold's rule (`conformal_threshold`).

    Returns:
        {"alarms", "successes", "rank", "expected_rate" (the rate's mean over calibration draws,
        (n + 1 - k) / (n + 1)), "p_value", "mann_whitney_p"}; the last three None without a finite
        threshold or without test successes.
    """
    calibration = np.sort(np.asarray(calibration_maxima, dtype=np.float64).ravel())
    test = np.asarray(test_success_maxima, dtype=np.float64).ravel()
    n, m = len(calibration), len(test)
    k = conformal_rank(n, alpha, delta) if n else None
    out: dict[str, Any] = {"alarms": None, "successes": int(m), "rank": k, "expected_rate": None, "p_value": None,
                           "mann_whitney_p": None}
    if k is None or not m:
        return out
    alarms = int((test > calibration[k - 1]).sum())
    out.update(alarms=alarms, expected_rate=(n + 1 - k) / (n + 1),
               p_value=float(betabinom.sf(alarms - 1, m, n + 1 - k, k)),
               mann_whitney_p=float(mannwhitneyu(calibration, test, alternative="two-sided").pvalue))
    return out


def resplit_false_alarms(calibration_maxima: np.ndarray, test_success_maxima: np.ndarray, alpha: float,
                         resplits: int = 20, seed: int = 0, delta: float | None = None) -> dict[str, Any]:
    """Checks the conformal guarantee: the calibration and test successes are pooled and re-split at
    random `resplits` times (calibration keeps its size); each time the threshold is recalibrated (by
    the rule of `delta`, see `conformal_threshold`) and the test false-alarm rate measured.

    Returns:
        rates per re-split, their mean, the share of re-splits whose rate exceeds alpha + 0.05 and
        0.15, the mean over every re-split and how far a mean of this many re-splits strays by their
        draw alone (`resplit_mean_spread`: "expected_mean", "sd", "chance_mean_above_alpha",
        "chance_over_a_tenth_above_0.15"; only "expected_mean", None, where no rank gives the guarantee).
    """
    pooled = np.concatenate([calibration_maxima, test_success_maxima])
    n_cal = len(calibration_maxima)
    rng = np.random.default_rng(seed)
    rates = []
    for _ in range(resplits):
        order = rng.permutation(len(pooled))
        cal, test = pooled[order[:n_cal]], pooled[order[n_cal:]]
        if not len(test):
            break
        threshold = conformal_threshold(cal, alpha, delta)
        rates.append(float((test > threshold).mean()))
    rates_a = np.array(rates)
    return {"resplits": len(rates), "calibration_episodes": int(n_cal), "test_episodes": int(len(pooled) - n_cal),
            "rates": rates, "mean": float(rates_a.mean()) if len(rates) else None,
            **(resplit_mean_spread(pooled, n_cal, alpha, resplits, delta) or {"expected_mean": None}),
            "share_above_alpha_plus_0.05": float((rates_a > alpha + 0.05).mean()) if len(rates) else None,
            "share_above_0.15": float((rates_a > 0.15).mean()) if len(rates) else None}
