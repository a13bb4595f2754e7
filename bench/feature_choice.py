"""Prints how sets of input families compare on held-out episodes of the training store, over several
training seeds: the figures that choose `salus train`'s default `--features`, without touching the test
split or a fresh store.

For every set (`--sets`, separated by `;`) and training seed (`--seeds`), the outcome model is trained
as `salus train` trains it (same split, seed 0, same settings; the seed changes only the initialisation
and the shuffling), except that early stopping watches a tenth of the training episodes, never the
episodes it scores; then it is scored on the validation split: the episode-level ROC-AUC of the running-max
alarm score, and detection, false-alarm rate, collisions and drops detected and the median lead on misses
and drops at the conformal threshold
(alpha = `--alpha`) calibrated on the calibration split's successful episodes. Then the mean of every
set and, per seed, each set's ROC-AUC minus the first set's.

With `--folds K` the validation split is replaced by K-fold cross-validation over the training and
validation splits together (stratified by outcome, seeded by the training seed): each fold in turn is
held out and scored, the rest trains (a tenth of it for early stopping), and the scores of all held-out folds
are pooled, so that every one of those episodes is scored once per seed. The test and calibration
splits are never trained on or scored (the calibration successes give the thresholds, as above).

With `--alarm-scores` the same trained models are scored by several per-step alarm scores (`ALARM_SCORES`),
each pooled and reported as its own row. The phase rules (`phase-excess`, `phase-or-step-excess`) need a
store with the front camera (`target_view`).

A set written as family sets separated by `/` (`state,time,target_view/state,time`) is one model whose
members read those sets in turn (`salus train --member-features`); the model's inputs are their union.

With `--type-members` the same trained models are also scored with each failure type's probability
averaged over a chosen subset of the members instead of all of them (routes separated by `;`, each as
four member lists in the order collision/drop/miss/timeout, e.g. `1,3/1,3/0,2,4/1,3`: the miss from the
members that read the view, the other types from those that do not), each reported as its own row;
`all` is the model as `salus train` builds it.

With `--collision-horizon H` the collision output is trained on "a collision within H steps" (the
store's horizon labels, H one of its horizons) instead of the episode's outcome; the other types keep
the outcome target. It asks whether a short-horizon collision head alarms less on successful
episodes, which pass through the same descent to the table.

With `--peak-weights` each weight of the success-peak term (`salus_engine.predictor.training.
success_peak_loss`: the mean over successful training episodes of their highest excess alarm score,
added to the loss) trains its own models, reported as its own row; the default is `salus train`'s
weight, 0 its training before the term.

With `--balances` each exponent b of the outcome model's positive weights (`salus_engine.predictor.
training.episode_positive_weights`: a failure type's episodes weighted by (n_negative / n_positive)^b)
trains its own models, reported as its own row; 0, the default, is `salus train`'s unweighted loss.

With `--average` the folds are the same for every seed, and the mean of the seeds' models'
probabilities (an averaged ensemble of outcome models) is scored beside each seed's model. Every
model's success profile (and the candidates' levels and phase profile) then comes from the successful
episodes of the fold's whole training part, early-stopping episodes included, so that it is the same
for every seed; the averaged model's comes from the seeds' mean probabilities on them.

With `--save PATH` every row's held-out scores are written to one `.npz` (`saved_arrays`), so that
which episodes alarmed, when and by how much can be read again without retraining: `names` lists the
rows (as printed, with the seed), and row i's arrays are `run{i}_episode_ids`, `run{i}_fold`,
`run{i}_failure_type`, `run{i}_failure_step`, `run{i}_scores`, `run{i}_offsets`,
`run{i}_calibration_max` and `run{i}_thresholds`.

    .venv/bin/python bench/feature_choice.py --data data/families \\
        --sets "state,time,target_view;state,time,target_view,command" --seeds 0,1,2,3,4 [--folds 5] \\
        [--members 5] [--alarm-scores max,noisy-or] [--save held_out.npz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from salus_engine import FAILURE_TYPES  # noqa: E402
from salus_engine.predictor.alarm_score import MIN_SUCCESSES, PROFILE_WEIGHT, alarm_scores, success_profile  # noqa: E402
from salus_engine.predictor.conformal import conformal_threshold, episode_max_scores, first_alarms  # noqa: E402
from salus_engine.predictor.dataset import load_signal_data, split_episodes  # noqa: E402
from salus_engine.predictor.errors import PredictorError  # noqa: E402
from salus_engine.predictor.metrics import episode_alarm_maxima, episode_ranking  # noqa: E402
from salus_engine.predictor.models import build_model  # noqa: E402
from salus_engine.predictor.spec import DEFAULT_ALARM_SCORE, DEFAULT_MEMBERS  # noqa: E402
from salus_engine.predictor.training import (  # noqa: E402
    DEFAULT_PEAK_WEIGHT,
    build_spec,
    fit,
    model_inputs,
    prepare_inputs,
    torch_threads,
)
from salus_engine.target_view import TARGET_VIEW_COLUMNS  # noqa: E402


MISS = FAILURE_TYPES.index("miss")
DROP = FAILURE_TYPES.index("drop")
COLLISION = FAILURE_TYPES.index("collision")
EARLY_STOPPING_SHARE = 0.1
"""Share of the training episodes that early stopping watches (not trained on, not scored)."""


THREADS = 2
"""torch threads of each training (`--threads`)."""


def trained_model(spec, train, stop, seed, settings, threads=THREADS):
    """(the outcome model at its best epoch, in eval mode; its `FitResult`) trained on `train` with early
    stopping on `stop`, each (inputs, targets, row offsets) from `prepare_inputs`."""
    with torch_threads(threads):
        result = fit(spec, *train[:2], *stop[:2], seed=seed, train_offsets=train[2], val_offsets=stop[2], **settings)
    model = build_model(spec)
    model.load_state_dict(result.best_state)
    model.eval()
    return model, result


def collision_within(data, episode_ids, targets, horizon):
    """`targets` (n, C) of the given episodes' rows with the collision column replaced by "a collision
    within `horizon` steps" (the store's horizon labels); `horizon` None: `targets` unchanged.

    Raises:
        ValueError: `horizon` is not one of the store's horizons."""
    if horizon is None:
        return targets
    if horizon not in data.horizons:
        raise ValueError(f"horizon {horizon} is not one of the store's ({', '.join(map(str, data.horizons))})")
    targets = targets.copy()
    targets[:, COLLISION] = data.labels[data.rows(episode_ids), data.horizons.index(horizon), COLLISION]
    return targets


def held_out_scores(spec, data, x_all, train_ids, held_ids, calibration, seed, settings, outcome_of, threads=THREADS,
                    collision_horizon=None, profile_ids=None):
    """(held-out episodes in data order, their per-member probabilities (N, M, C), their row offsets;
    the calibration successes' per-member probabilities; the trained-on successes' per-member
    probabilities, row offsets and rows of `data`, for a success profile) of the outcome model trained on `train_ids`.
    Early stopping watches a tenth of `train_ids` (stratified by outcome, seeded), never the held-out
    episodes that are scored. `collision_horizon`: see `collision_within`. `profile_ids`: the episodes
    whose successes give the profile instead of the fitted ones (the same for every seed, so that the
    seeds' probabilities on them can be averaged)."""
    fit_ids, stop_ids = train_test_split(np.asarray(train_ids), test_size=EARLY_STOPPING_SHARE, random_state=seed,
                                         stratify=[outcome_of[i] for i in train_ids])
    fit_ids, stop_ids = np.sort(fit_ids), np.sort(stop_ids)
    x_train, y_train, train_offsets = prepare_inputs(spec, data, fit_ids, x_all)
    x_stop, y_stop, stop_offsets = prepare_inputs(spec, data, stop_ids, x_all)
    y_train = collision_within(data, fit_ids, y_train, collision_horizon)
    y_stop = collision_within(data, stop_ids, y_stop, collision_horizon)
    x_held, _, held_offsets = prepare_inputs(spec, data, np.sort(held_ids), x_all)
    model, _ = trained_model(spec, (x_train, y_train, train_offsets), (x_stop, y_stop, stop_offsets), seed, settings,
                             threads)
    held = set(np.asarray(held_ids).tolist())
    held_episodes = [e for e in data.episodes if e.episode_id in held]
    ids = [e.episode_id for e in calibration]
    successes = np.array([i for i in (fit_ids if profile_ids is None else np.sort(profile_ids)) if outcome_of[i] == -1])
    x_success, _, success_offsets = prepare_inputs(spec, data, successes, x_all)
    return (held_episodes, member_scores(model, x_held), held_offsets,
            member_scores(model, x_all[data.rows(ids)]),
            (member_scores(model, x_success), success_offsets, data.rows(successes)))


def member_scores(model, x):
    """(N, M, C) float32 failure-type probabilities of each member of an outcome model (M = 1 for one
    member); their mean over members is `model_scores`'s."""
    with torch.no_grad():
        logits = model.forward(torch.from_numpy(np.ascontiguousarray(x)))
    return torch.sigmoid(logits).numpy().reshape(len(x), model.spec.members, -1)


def routed(member_probabilities, route):
    """(N, 1, C) probabilities: type k averaged over the members `route[k]` (None: all members)."""
    columns = [member_probabilities[:, slice(None) if members is None else list(members), k].mean(axis=1)
               for k, members in enumerate(route)]
    return np.stack(columns, axis=1)[:, None, :]


def parse_routes(text, types):
    """{name: per-type member lists} from `--type-members` (see the module docstring)."""
    routes = {}
    for item in text.split(";"):
        item = item.strip()
        if item == "all":
            routes[item] = (None,) * types
            continue
        parts = item.split("/")
        if len(parts) != types:
            raise ValueError(f"route {item!r} names {len(parts)} member lists; give one per failure type ({types})")
        routes[item] = tuple(tuple(int(m) for m in part.split(",")) for part in parts)
    return routes


def causal_mean(values, offsets, window):
    """(N,) mean of each step's value over the last `window` steps of its own episode (fewer at the start)."""
    out = np.empty(len(values), np.float64)
    for start, end in zip(offsets[:-1], offsets[1:]):
        cumulative = np.concatenate([[0.0], np.cumsum(values[start:end], dtype=np.float64)])
        index = np.arange(1, end - start + 1)
        lower = np.maximum(0, index - window)
        out[start:end] = (cumulative[index] - cumulative[lower]) / (index - lower)
    return out


def steps_of(offsets):
    """(N,) 0-based step of every row within its episode."""
    return np.concatenate([np.arange(n) for n in np.diff(offsets)]) if len(offsets) > 1 else np.zeros(0, np.int64)


class Reference(NamedTuple):
    """(success profile, component levels, phase profile) of one model, from its trained-on successful
    episodes; `phase` is None where the store offers no phase (`phase_profile`)."""

    profile: tuple | np.ndarray
    levels: np.ndarray | None = None
    phase: "PhaseProfile | None" = None


PHASE_BINS = 20
"""Quantile bins of the gripper's height above the target (`target_dz`) in the phase candidates."""


class PhaseProfile(NamedTuple):
    """The noisy-or's mean over trained-on successful steps per phase cell: (`target_dz` quantile bin,
    pads holding the object or not); cells with fewer than `MIN_SUCCESSES` steps take the mean of the
    others. `columns`: (N, 2) float64 `target_dz` (m) and `grip_depth_mm` of every row of the store."""

    columns: np.ndarray
    edges: np.ndarray
    means: np.ndarray

    def at(self, rows):
        """(n,) the profile at the given rows of the store."""
        dz, depth = self.columns[rows, 0], self.columns[rows, 1]
        return self.means[np.searchsorted(self.edges, dz) * 2 + (depth > 0)]


def phase_profile(columns, noisy_or, rows):
    """`PhaseProfile` from the noisy-or (N,) of the trained-on successful steps at `rows` of the store."""
    edges = np.quantile(columns[rows, 0], np.linspace(0, 1, PHASE_BINS + 1)[1:-1])
    keys = np.searchsorted(edges, columns[rows, 0]) * 2 + (columns[rows, 1] > 0)
    total = np.bincount(keys, weights=noisy_or, minlength=2 * PHASE_BINS)
    count = np.bincount(keys, minlength=2 * PHASE_BINS)
    means = np.where(count >= MIN_SUCCESSES, total / np.maximum(count, 1), np.nan)
    return PhaseProfile(columns, edges, np.where(np.isnan(means), np.nanmean(means), means))


def step_level(offsets, ref):
    """(N,) the success profile at each row's step of its episode (the last entry past its end)."""
    return np.asarray(ref.profile)[np.minimum(steps_of(offsets), len(ref.profile) - 1)]


def phase_excess(combine):
    """Candidate: the noisy-or less half of a success profile indexed by the episode's phase instead of
    its step (`combine` None), or by the larger of the two at each step (`combine` "max"): a slow
    approach that ends well reaches the descent later than most successes, when the step's profile
    has already fallen."""
    def rule(p, offsets, ref, rows):
        if ref.phase is None:
            raise ValueError("the phase candidates need a store with the target_view and grip_depth families")
        level = ref.phase.at(rows)
        if combine == "max":
            level = np.maximum(level, step_level(offsets, ref))
        return alarm_scores(p[:, 0, :], "noisy-or") - PROFILE_WEIGHT * level
    return rule


def type_ratio(p, offsets, ref, rows=None):
    """Candidate: the largest failure-type probability, each divided by its level on successes."""
    return (p[:, 0, :] / ref.levels[:-1]).max(axis=1)


def excess_or_drop(p, offsets, ref, rows=None):
    """Candidate: the larger of the `noisy-or-excess` score and the drop probability, each divided by its
    level on successes (a drop-specific score beside the general one)."""
    excess_score = alarm_scores(p[:, 0, :], "noisy-or-excess", steps_of(offsets), ref.profile)
    return np.maximum(excess_score / ref.levels[-1], p[:, 0, DROP] / ref.levels[DROP])


def excess(weight):
    """The `noisy-or-excess` rule with another profile weight (`PROFILE_WEIGHT` is salus train's)."""
    return lambda p, offsets, ref, rows=None: alarm_scores(p[:, 0, :], "noisy-or") - weight * step_level(offsets, ref)


def smoothed_excess(window):
    """The `noisy-or-excess` rule averaged over the last `window` steps of the episode (`causal_mean`)."""
    return lambda p, offsets, ref, rows=None: causal_mean(
        alarm_scores(p[:, 0, :], "noisy-or-excess", steps_of(offsets), ref.profile), offsets, window)


ALARM_SCORES = {
    "max": lambda p, offsets, ref, rows=None: alarm_scores(p[:, 0, :], "max"),
    "noisy-or": lambda p, offsets, ref, rows=None: alarm_scores(p[:, 0, :], "noisy-or"),
    "noisy-or-excess": lambda p, offsets, ref, rows=None: alarm_scores(p[:, 0, :], "noisy-or-excess", steps_of(offsets),
                                                            ref.profile),
    "type-ratio": type_ratio,
    "excess-or-drop": excess_or_drop,
    **{f"noisy-or-excess{w}": excess(w) for w in (0.25, 0.75, 1.0)},
    "sum": lambda p, offsets, ref, rows=None: np.minimum(1.0, p.sum(axis=(1, 2))),
    "max-mean3": lambda p, offsets, ref, rows=None: causal_mean(alarm_scores(p[:, 0, :], "max"), offsets, 3),
    "max-mean6": lambda p, offsets, ref, rows=None: causal_mean(alarm_scores(p[:, 0, :], "max"), offsets, 6),
    "sum-mean6": lambda p, offsets, ref, rows=None: causal_mean(np.minimum(1.0, p.sum(axis=(1, 2))), offsets, 6),
    **{f"noisy-or-excess-mean{w}": smoothed_excess(w) for w in (3, 6)},
    "phase-excess": phase_excess(None),
    "phase-or-step-excess": phase_excess("max"),
}
"""Per-step alarm scores from an outcome model's (N, 1, C) failure-type probabilities, the episodes'
(E + 1,) row offsets and the model's success profile (the noisy-or's mean over its trained-on
successful episodes per step): the rules of `salus_engine.predictor.alarm_score` (`max`, `noisy-or`,
`noisy-or-excess`), the last with other profile weights (`noisy-or-excess0.25` subtracts a quarter of
the profile), and candidates tried against them: the types' sum clipped to 1 (the probability of any
failure if the types' probabilities were those of exclusive events) and causal means over the last few
steps of the episode (`noisy-or-excess-mean3`: the excess averaged over the last 3 steps), and two
that give the rare types their own scale (`type-ratio`, `excess-or-drop`: each component divided by
its `LEVEL_QUANTILE` level on the trained-on successes, the highest component taken), and two whose
profile follows the episode's phase rather than its step (`phase-excess`, `phase-or-step-excess`:
`phase_excess`). Each rule also takes the rows of the store that the probabilities belong to."""

STEP_PROFILE_SCORES = [name for name in ALARM_SCORES
                       if name not in ("type-ratio", "excess-or-drop", "phase-excess", "phase-or-step-excess")]
"""The `ALARM_SCORES` that read no more of the model's `Reference` than its success profile per step
(the others read its component levels or its phase profile, which only `profile_of` builds)."""


LEVEL_QUANTILE = 0.9
"""The quantile, over the trained-on successful episodes, of each component's episode maximum that the
`type-ratio` and `excess-or-drop` candidates divide it by."""


def profile_of(success_probabilities, success_offsets, phase_columns=None, success_rows=None):
    """The success profile (`salus_engine.predictor.alarm_score.success_profile`) of the noisy-or of
    (N, 1, C) probabilities of successful episodes, and the levels of the `type-ratio` and
    `excess-or-drop` candidates: per failure type, and for the `noisy-or-excess` score, the
    `LEVEL_QUANTILE` quantile of the successful episodes' maxima ((C + 1,), the excess last); with
    the store's (N, 2) phase columns and the successful steps' rows, the phase profile too."""
    noisy_or = alarm_scores(success_probabilities[:, 0, :], "noisy-or")
    profile = success_profile(noisy_or, success_offsets)
    steps = steps_of(success_offsets)
    excess_scores = alarm_scores(success_probabilities[:, 0, :], "noisy-or-excess", steps, profile)
    columns = np.concatenate([success_probabilities[:, 0, :], excess_scores[:, None]], axis=1)
    maxima = np.stack([episode_max_scores(column, success_offsets) for column in columns.T], axis=1)
    phase = None if phase_columns is None else phase_profile(phase_columns, noisy_or, success_rows)
    return Reference(profile, np.maximum(np.quantile(maxima, LEVEL_QUANTILE, axis=0), 1e-6), phase)


def scored(held_episodes, held_probabilities, held_offsets, data, calibration, calibration_probabilities, profile,
           alarm_score=DEFAULT_ALARM_SCORE["outcome"]):
    """(running-max alarm scores of the held-out episodes, of the calibration successes; the held-out
    episodes' per-step alarm scores and their row offsets) for one model's probabilities or the mean of
    several models'."""
    reduce = ALARM_SCORES[alarm_score]
    calibration_ids = [e.episode_id for e in calibration]
    calibration_offsets = data.offsets_of(calibration_ids)
    held_scores = reduce(held_probabilities, held_offsets, profile, data.rows([e.episode_id for e in held_episodes]))
    held_max = episode_alarm_maxima(held_scores, held_episodes, held_offsets)
    calibration_max = episode_alarm_maxima(reduce(calibration_probabilities, calibration_offsets, profile,
                                                  data.rows(calibration_ids)),
                                           calibration, calibration_offsets)
    return held_max, calibration_max, held_scores, held_offsets


def pooled_row(parts, alpha, delta=None):
    """The pooled figures over folds from [(held episodes, held maxima, calibration maxima, held per-step
    scores, held row offsets)]: each fold's model ranks its own episodes (fold models differ slightly).
    `miss_lead`, `drop_lead`: the median lead (steps from the first alarm to the label) over the detected
    misses, drops."""
    episodes, maxima, detected, false_alarms = [], [], [], []
    caught = {COLLISION: [], DROP: []}
    leads = {MISS: [], DROP: []}
    for held_episodes, held_max, calibration_max, held_scores, held_offsets in parts:
        threshold = conformal_threshold(calibration_max, alpha, delta)
        failed = np.array([e.failure_type >= 0 for e in held_episodes])
        episodes += held_episodes
        maxima.append(held_max)
        detected += list(held_max[failed] > threshold)
        false_alarms += list(held_max[~failed] > threshold)
        for kind, kind_caught in caught.items():
            kind_caught += list(held_max[[e.failure_type == kind for e in held_episodes]] > threshold)
        alarms = first_alarms(held_scores, held_offsets, threshold)
        for kind, kind_leads in leads.items():
            kind_leads += [e.failure_step - a for e, a in zip(held_episodes, alarms)
                           if e.failure_type == kind and 0 <= a <= e.failure_step]
    return {"auroc": episode_ranking(np.concatenate(maxima), episodes)["auroc"],
            "detected": float(np.mean(detected)), "false_alarms": float(np.mean(false_alarms)),
            "collisions": float(np.mean(caught[COLLISION])),
            "drops": float(np.mean(caught[DROP])) if caught[DROP] else np.nan,
            "miss_lead": float(np.median(leads[MISS])) if leads[MISS] else np.nan,
            "drop_lead": float(np.median(leads[DROP])) if leads[DROP] else np.nan}


def saved_arrays(parts, alpha, delta=None):
    """One row's held-out scores, pooled over folds as `pooled_row` pools them, as arrays for `--save`:
    `episode_ids`, `fold`, `failure_type` (-1 success), `failure_step` (-1 success): (E,) int64, the
    held-out episodes fold after fold; `scores`: (N,) float64 per-step alarm scores of those episodes in
    that order, `offsets`: (E + 1,) int64 their row offsets into `scores`; `calibration_max`: (F, n)
    float64 the calibration successes' running-max scores under each fold's model; `thresholds`: (F,)
    float64 each fold's conformal threshold (`conformal_threshold` of alpha, delta)."""
    held_episodes, _, calibration_max, held_scores, held_offsets = zip(*parts)
    episodes = [e for fold in held_episodes for e in fold]
    lengths = np.concatenate([np.diff(offsets) for offsets in held_offsets])
    return {"episode_ids": np.array([e.episode_id for e in episodes], np.int64),
            "fold": np.concatenate([np.full(len(fold), f, np.int64) for f, fold in enumerate(held_episodes)]),
            "failure_type": np.array([e.failure_type for e in episodes], np.int64),
            "failure_step": np.array([e.failure_step for e in episodes], np.int64),
            "scores": np.concatenate(held_scores).astype(np.float64),
            "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "calibration_max": np.stack(calibration_max).astype(np.float64),
            "thresholds": np.array([conformal_threshold(c, alpha, delta) for c in calibration_max], np.float64)}


def print_row(name, row):
    print(f"  {name:48s}: ROC-AUC {row['auroc']:.4f}, detected {row['detected']:.3f}, "
          f"false alarms {row['false_alarms']:.3f}, collisions detected {row['collisions']:.3f}, "
          f"drops detected {row['drops']:.3f}, miss lead {row['miss_lead']:.1f} steps, "
          f"drop lead {row['drop_lead']:.1f} steps", flush=True)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each row reaches a redirected log as it is measured
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="collection store folder")
    parser.add_argument("--sets", required=True, help="input-family sets, ';'-separated, each as --features takes it")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation over train + val (0: the val split)")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--delta", type=float, help="training-conditional threshold (salus evaluate --delta); "
                        "default the split-conformal one")
    parser.add_argument("--average", action="store_true", help="also score the mean of the seeds' models' "
                        "probabilities (the folds are then the same for every seed)")
    parser.add_argument("--lr", type=float, help="learning rate (default: salus train's)")
    parser.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: salus train's)")
    parser.add_argument("--members", type=int, default=DEFAULT_MEMBERS, help="members of each outcome model, trained "
                        f"side by side and averaged (default {DEFAULT_MEMBERS}, salus train's)")
    parser.add_argument("--hidden", help="hidden layer widths, comma-separated (default: salus train's)")
    parser.add_argument("--alarm-scores", default=DEFAULT_ALARM_SCORE["outcome"],
                        help="per-step alarm scores to compare on the same models, comma-separated, of "
                        f"{', '.join(ALARM_SCORES)} (default {DEFAULT_ALARM_SCORE['outcome']}, salus train's)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads per training (default {THREADS})")
    parser.add_argument("--type-members", default="all", help="per-type member routes, ';'-separated, each "
                        "collision/drop/miss/timeout member lists (default: all, salus train's model)")
    parser.add_argument("--peak-weights", default=f"{DEFAULT_PEAK_WEIGHT:g}", help="success-peak term weights (salus_engine.predictor."
                        "training.success_peak_loss), comma-separated; each trains its own models, one row each")
    parser.add_argument("--balances", default="0", help="outcome-model balance exponents (salus_engine.predictor."
                        "training.episode_positive_weights), comma-separated; each trains its own models, one row each")
    parser.add_argument("--collision-horizon", type=int, help="train the collision output on a collision within "
                        "this many steps (one of the store's horizons) instead of the episode's outcome")
    parser.add_argument("--save", type=Path, help="write every row's held-out per-step scores, episodes and "
                        "thresholds to this .npz (see the module docstring)")
    args = parser.parse_args()
    try:
        routes = parse_routes(args.type_members, len(FAILURE_TYPES))
    except ValueError as err:
        parser.error(f"--type-members: {err}")
    settings = {k: v for k, v in (("lr", args.lr), ("weight_decay", args.weight_decay)) if v is not None}
    hidden = tuple(int(w) for w in args.hidden.split(",")) if args.hidden else None
    alarm_scores = args.alarm_scores.split(",")
    unknown = [a for a in alarm_scores if a not in ALARM_SCORES]
    if unknown:
        parser.error(f"unknown alarm score {unknown[0]!r}: choose from {', '.join(ALARM_SCORES)}")

    data = load_signal_data(args.data)
    if args.collision_horizon is not None and args.collision_horizon not in data.horizons:
        parser.error(f"--collision-horizon {args.collision_horizon} is not one of the store's horizons "
                     f"({', '.join(map(str, data.horizons))})")
    phase_columns = None
    if any(a.startswith("phase") for a in alarm_scores):
        try:
            view_and_depth = data.inputs(("target_view", "grip_depth"))
        except PredictorError as err:
            parser.error(f"the phase alarm scores need the target_view and grip_depth families: {err}")
        phase_columns = view_and_depth[:, [TARGET_VIEW_COLUMNS.index("target_dz"), len(TARGET_VIEW_COLUMNS)]]
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    seeds = [int(s) for s in args.seeds.split(",")]
    calibration_ids = set(splits["calibration"].tolist())
    calibration = [e for e in data.episodes if e.episode_id in calibration_ids and e.failure_type == -1]
    pool = np.sort(np.concatenate([splits["train"], splits["val"]]))
    outcome_of = {e.episode_id: e.failure_type for e in data.episodes}
    where = f"{args.folds}-fold cross-validation over {len(pool)} train + val episodes" if args.folds else \
        f"the validation split ({len(splits['val'])} episodes)"
    print(f"{args.data}: {where}; calibration {len(calibration)} successes; alpha {args.alpha}; "
          f"training settings {settings or 'default'}, hidden {hidden or 'default'}, members {args.members}"
          + (f"; collision output: a collision within {args.collision_horizon} steps" if args.collision_horizon else ""))
    results: dict[str, list[dict[str, float]]] = {}
    peak_weights = [float(w) for w in args.peak_weights.split(",")]
    balances = [float(b) for b in args.balances.split(",")]
    inputs_of: dict[str, np.ndarray] = {}
    saved: dict[str, dict[str, np.ndarray]] = {}  # printed row name -> its `saved_arrays`
    for features, peak_weight, balance in ((f, w, b) for f in args.sets.split(";") for w in peak_weights
                                           for b in balances):
        member_features = features if "/" in features else None  # per-member sets: the model reads their union
        union = ",".join(dict.fromkeys(f.strip() for part in features.split("/") for f in part.split(",")))
        spec = build_spec(data, "outcome", union, hidden=hidden, members=args.members, member_features=member_features)
        if features not in inputs_of:
            inputs_of.clear()  # one set's inputs at a time (the sets' loops are consecutive)
            inputs_of[features] = model_inputs(spec, data)
        x_all = inputs_of[features]
        averaged: list[list[tuple]] = []  # per run, per seed: (episodes, held, offsets, calibration, successes,
        # success offsets, success rows), the probabilities as the mean over the model's members
        for seed in seeds:
            if args.folds:
                folds = StratifiedKFold(args.folds, shuffle=True, random_state=0 if args.average else seed).split(
                    pool, [outcome_of[i] for i in pool])
                runs = [(pool[train], pool[held]) for train, held in folds]
            else:
                runs = [(splits["train"], splits["val"])]
            parts = {(route, a): [] for route in routes for a in alarm_scores}
            for r, (train_ids, held_ids) in enumerate(runs):
                episodes, held_m, offsets, calibration_m, (success_m, success_offsets, success_rows) = held_out_scores(
                    spec, data, x_all, train_ids, held_ids, calibration, seed,
                    {**settings, **({"peak_weight": peak_weight} if peak_weight else {}),
                     **({"balance": balance} if balance else {})}, outcome_of, args.threads,
                    args.collision_horizon, train_ids if args.average else None)
                for route, members in routes.items():
                    held_p, calibration_p = routed(held_m, members), routed(calibration_m, members)
                    profile = profile_of(routed(success_m, members), success_offsets, phase_columns, success_rows)
                    for a in alarm_scores:
                        parts[route, a].append((episodes, *scored(episodes, held_p, offsets, data, calibration,
                                                                  calibration_p, profile, a)))
                if args.average:
                    if len(averaged) <= r:
                        averaged.append([])
                    averaged[r].append((episodes, held_m.mean(axis=1)[:, None, :], offsets,
                                        calibration_m.mean(axis=1)[:, None, :], success_m.mean(axis=1)[:, None, :],
                                        success_offsets, success_rows))
            for route, a in parts:
                name = features + (f" [peak {peak_weight:g}]" if len(peak_weights) > 1 else "") + (
                    f" [balance {balance:g}]" if len(balances) > 1 else "") + (
                    f" [{route}]" if len(routes) > 1 else "") + (
                    f" [{a}]" if len(alarm_scores) > 1 else "")
                row = pooled_row(parts[route, a], args.alpha, args.delta)
                results.setdefault(name, []).append(row)
                print_row(f"{name} seed {seed}", row)
                if args.save:
                    saved[f"{name} seed {seed}"] = saved_arrays(parts[route, a], args.alpha, args.delta)
        if args.average:
            for a in alarm_scores:
                parts_a = []
                for members in averaged:
                    episodes, _, offsets, _, _, success_offsets, success_rows = members[0]
                    held_p, calibration_p, success_p = (np.mean([m[i] for m in members], axis=0) for i in (1, 3, 4))
                    # the averaged model's own reference, from its probabilities on the same trained-on successes
                    reference = profile_of(success_p, success_offsets, phase_columns, success_rows)
                    parts_a.append((episodes, *scored(episodes, held_p, offsets, data, calibration, calibration_p,
                                                       reference, a)))
                name = features if len(alarm_scores) == 1 else f"{features} [{a}]"
                print_row(f"{name} mean of the {len(seeds)} seeds' models", pooled_row(parts_a, args.alpha, args.delta))
    first = next(iter(results))
    print("mean over seeds:")
    for features, rows in results.items():
        means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        difference = [r["auroc"] - f["auroc"] for r, f in zip(rows, results[first])]
        print(f"  {features:40s} ROC-AUC {means['auroc']:.4f} (range {min(r['auroc'] for r in rows):.4f}-"
              f"{max(r['auroc'] for r in rows):.4f}), detected {means['detected']:.3f}, false alarms "
              f"{means['false_alarms']:.3f}, collisions detected {means['collisions']:.3f}, drops detected "
              f"{means['drops']:.3f}, miss lead {means['miss_lead']:.1f} steps, drop lead "
              f"{means['drop_lead']:.1f} steps; ROC-AUC minus "
              f"{first} per seed: {', '.join(f'{d:+.4f}' for d in difference)}")
    if args.save:
        arrays = {f"run{i}_{key}": value for i, row in enumerate(saved.values()) for key, value in row.items()}
        np.savez_compressed(args.save, names=np.array(list(saved)), **arrays)
        print(f"held-out scores of {len(saved)} rows written to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
