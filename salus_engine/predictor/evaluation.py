"""The `salus evaluate` job: scores a trained predictor, the field's detectors re-implemented as
baselines and two controls on one split of the checkpoint's store (and, with `fresh`, on every
episode of a second store), with conformal alarm thresholds, and writes metrics.json and plots.

Scorers (all trained on the checkpoint's train split, early-stopped on its val split):
- `model`: the checkpoint;
- `seeds_mlp`: the seeds' 6-64-64-4 MLP on the six signals (single-horizon);
- `logistic_regression`: on the six signals;
- `safe_probe`: a SAFE-style MLP probe on the hidden features (Gu et al. 2025), where recorded;
- `rnd`: RND novelty trained on successful training episodes (FAIL-Detect style), on every recorded
  input column but the robot state, its motion and time;
- `fiper`: FIPER's AND-gate of RND and action-chunk entropy, where chunk entropy is recorded;
- `signal:<column>`: each of the six signals and each signal-family column thresholded (STAC-single
  and TCE among them);
- `state_only`: the robot's proprioceptive state (joint angles, gripper opening) and the step index,
  in a network of the model's kind when the model is an `outcome` model (else a multi-horizon MLP):
  what the arm's own trajectory tells without any signal of the policy;
- controls: `permutation_control` (the model trained on labels shuffled across episodes) and
  `time_only` (a network of the same kind as `state_only` that sees only the step index).

Every scorer is treated alike: per-output decision thresholds are chosen on the validation split
(max F1), the conformal alarm threshold on the calibration split's successful episodes, and all
metrics are measured on the evaluated split (default `test`). The alarm score of a step combines the
failure types' scores at the alarm horizon (default: the longest horizon) by the scorer's rule
(`salus_engine.predictor.alarm_score`: the checkpoint's own for the model and for the networks of its
kind, the maximum for the others; a rule with a success profile uses each network's own, from its
training split's successes); an episode's score is its running maximum. Each scorer's
episode-level ROC-AUC gets a bootstrap 95 % interval, and the model's lead over it the paired bootstrap
95 % interval of the difference (`metrics.ranking_intervals`; metrics.json `episode.ranking.auroc_ci95`
and `episode.ranking.versus_reference`), so that "beats a baseline" can be told from the draw of the
evaluated episodes. With `ablation`, the model is retrained with each input family removed and with
each family alone, and scored the same way. The networks among the scorers and the ablation's rows
are trained by `salus_engine.predictor.parallel_training.train_networks`: one after another in this
process, or `EvaluateConfig.workers` at a time as Ray tasks, with the same figures.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from salus_engine import FAILURE_TYPES
from salus_engine.config import EvaluateConfig
from salus_engine.events import EvaluationFinished, EvaluationStarted, EventSink, JobFinished, LogLine, ProgressUpdate, discard
from salus_engine.predictor.alarm_score import alarm_scores
from salus_engine.predictor.baselines import LogisticBaseline, RNDNovelty, SignalThreshold, fiper_gate, permuted_labels
from salus_engine.predictor.checkpoint import check_out_folder, check_store_matches, folder_writes, load_model
from salus_engine.predictor.conformal import conformal_rank, conformal_threshold, episode_max_scores
from salus_engine.predictor import SPLIT_NAMES
from salus_engine.predictor.dataset import EpisodeInfo, SignalData, load_signal_data, load_splits
from salus_engine.predictor.inputs import input_names
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.metrics import (
    alpha_curve,
    choose_thresholds,
    episode_alarm_maxima,
    episode_metrics,
    episode_ranking,
    false_alarm_check,
    ranking_intervals,
    reliability,
    resplit_false_alarms,
    step_metrics,
)
from salus_engine.predictor.models import ModelSpec, model_scores, temporal_scores
from salus_engine.predictor.parallel_training import NetworkJob, train_networks, training_ray
from salus_engine.predictor.training import build_spec, model_inputs, restrict_member_features, torch_threads

METRICS_VERSION = 2
CONTROL_SEED_OFFSET = 1
"""The trained baselines and controls use the run's seed + 1 and the run's training settings."""
ALPHA_GRID: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
"""False-alarm rates of the detection vs lead-time curve."""
RESPLITS = 20
"""Random re-splits of the held-out successes that check the conformal false-alarm bound."""


@dataclass
class _Subset:
    ids: np.ndarray
    rows: np.ndarray
    episodes: list[EpisodeInfo]
    offsets: np.ndarray


def _subset(data: SignalData, ids: np.ndarray) -> _Subset:
    mask = np.isin(data.episode_ids, ids)
    episodes = [e for e, keep in zip(data.episodes, mask) if keep]
    offsets = np.concatenate([[0], np.cumsum([e.length for e in episodes])]).astype(np.int64)
    return _Subset(np.asarray(ids), data.rows(ids), episodes, offsets)


def scores_of(model, data: SignalData) -> np.ndarray:
    """(N, H, 4) float32 scores of a trained network on every row of a store's data."""
    x = model_inputs(model.spec, data)
    if model.spec.kind == "temporal":
        return temporal_scores(model, x, data.offsets)
    return model_scores(model, x)


@dataclass
class Scorer:
    """One row of the comparison: how to score any store's rows with a fitted detector."""

    name: str
    label: str
    short: str
    kind: str
    """"model", "baseline" or "control"."""
    score: Callable[[SignalData], np.ndarray]
    """data -> (N, H, 4) float32 scores of every row (higher = more likely to fail)."""
    has_types: bool = True
    """False when the score is one number broadcast to every type and horizon."""
    alarm_score: str = "max"
    """How a step's (4,) type scores become its alarm score (`salus_engine.predictor.alarm_score`)."""
    profile: tuple[float, ...] = ()
    """The success profile of a rule that needs one (the network's own, from its training split)."""

    def alarm(self, type_scores: np.ndarray, data: SignalData) -> np.ndarray:
        """(N,) float64 alarm scores of every row of `data` from its (N, 4) type scores."""
        return alarm_scores(type_scores, self.alarm_score, data.step, self.profile)


def _check_inputs(config: EvaluateConfig, run_config: dict[str, Any], data: SignalData,
                  splits: dict[str, np.ndarray]) -> int:
    """Checks the store and settings against the checkpoint; returns the alarm horizon index."""
    trained_on = run_config.get("store", {})
    identity = (data.identity["created"], data.identity["base_seed"])
    if (trained_on.get("created"), trained_on.get("base_seed")) != identity:
        raise PredictorError(f"{data.path} is not the store this checkpoint was trained on ({trained_on.get('path')}, "
                             f"created {trained_on.get('created')}); its split does not apply, evaluate with --data "
                             "that store (and the other store with --fresh)")
    missing = set(np.concatenate(list(splits.values())).tolist()) - set(data.episode_ids.tolist())
    if missing:
        raise PredictorError(f"{data.path} lacks {len(missing)} episodes of the checkpoint's split (e.g. id "
                             f"{min(missing)}); restore the store or train again")
    if config.split not in SPLIT_NAMES:
        raise PredictorError(f"--split {config.split!r} is unknown; choose one of {', '.join(SPLIT_NAMES)}")
    if config.horizon is None:
        return len(data.horizons) - 1
    if config.horizon not in data.horizons:
        raise PredictorError(f"--horizon {config.horizon} is not one of the store's horizons {list(data.horizons)}")
    return data.horizons.index(config.horizon)


def _scalar_columns(data: SignalData) -> tuple[tuple[str, ...], list[str]]:
    """The signal families with one number per column (all but hidden state, robot state, its motion and
    time) and their columns."""
    families = tuple(f for f in data.columns if f not in ("hidden_state", "state", "motion", "time"))
    return families, list(input_names(families, data.columns))


def build_scorers(model, run_config: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                  sink: EventSink, stop: threading.Event | None, workers: int = 1,
                  threads: int | None = None) -> list[Scorer] | None:
    """Fits every baseline and control on the checkpoint's splits (see the module docstring); the
    networks among them are trained by `train_networks` (`workers` at a time, `threads` torch threads
    each). None when stopped."""
    spec: ModelSpec = model.spec
    settings = run_config.get("train", {})
    seed = int(settings.get("seed", 0))
    horizons = len(data.horizons)
    train_rows = data.rows(splits["train"])
    networks: dict[str, tuple[str, str, str]] = {}  # name -> (label, short, kind), in the order of `jobs`
    jobs: list[NetworkJob] = []

    def network(name: str, label: str, short: str, kind: str, features: tuple[str, ...], model_kind: str,
                labels: np.ndarray | None = None, hidden: tuple[int, ...] | None = None,
                member_features: str | None = None) -> None:
        # a control or baseline of the model's own kind has as many members, and the same alarm score
        own_kind = model_kind == spec.kind
        variant = build_spec(data, model_kind, features, hidden=hidden, members=spec.members if own_kind else 1,
                             alarm_score=spec.alarm_score if own_kind else None, member_features=member_features)
        networks[name] = (label, short, kind)
        jobs.append(NetworkJob(label, variant, seed + CONTROL_SEED_OFFSET, labels))

    network("seeds_mlp", "seeds' MLP (six signals, 6-64-64-4)", "seeds' MLP", "baseline", ("six",), "single-horizon")
    if "hidden_state" in data.columns:
        network("safe_probe", "SAFE-style probe (MLP on hidden features)", "SAFE probe", "baseline",
                ("hidden_state",), "multi-horizon")
    permuted = data.labels.copy()
    for ids in (splits["train"], splits["val"]):
        rows = data.rows(ids)
        permuted[rows] = permuted_labels(data.labels[rows], data.offsets_of(ids), seed + CONTROL_SEED_OFFSET)
    network("permutation_control", "permutation control (labels shuffled across episodes)", "permutation control",
            "control", spec.features, spec.kind, labels=permuted, hidden=spec.hidden,
            member_features=settings.get("member_features"))
    # the controls and the proprioception baseline use the model's own kind when it reads episode outcomes
    control_kind = "outcome" if spec.kind == "outcome" else "multi-horizon"
    if "state" in data.columns:
        network("state_only", "robot state only (joint angles and gripper, with the step index)", "state only",
                "baseline", ("state", "time"), control_kind)
    network("time_only", "time-only control (an MLP on the step index)", "time only", "control", ("time",),
            control_kind)
    trained_networks = train_networks(jobs, settings, data, splits, workers=workers, threads=threads, sink=sink,
                                      stop=stop)
    if trained_networks is None:
        return None
    trained: dict[str, Scorer] = {}
    for name, (trained_network, variant) in zip(networks, trained_networks):
        label, short, kind = networks[name]
        trained[name] = Scorer(name, label, short, kind, lambda d, n=trained_network: scores_of(n, d),
                               alarm_score=variant.alarm_score, profile=variant.success_profile)

    scorers = [Scorer("model", _model_label(spec), _model_short(spec), "model", lambda d: scores_of(model, d),
                      alarm_score=spec.alarm_score, profile=spec.success_profile), trained["seeds_mlp"]]
    sink(ProgressUpdate(len(scorers), len(scorers) + 1, "logistic regression"))
    with torch_threads(threads):
        logistic = LogisticBaseline(seed=seed).fit(data.signals[train_rows], data.labels[train_rows])
    scorers.append(Scorer("logistic_regression", "logistic regression (six signals)", "logistic regression",
                          "baseline", lambda d: logistic.scores(d.signals)))
    if "safe_probe" in trained:
        scorers.append(trained["safe_probe"])
    scalar_families, scalar_names = _scalar_columns(data)
    novelty_families = tuple(f for f in data.columns if f not in ("state", "motion", "time"))
    successes = np.array([e.episode_id for e in data.episodes if e.failure_type == -1], dtype=np.int64)
    success_train = data.rows(np.intersect1d(splits["train"], successes))
    sink(ProgressUpdate(len(scorers), len(scorers) + 1, "RND novelty"))
    with torch_threads(threads):
        rnd = RNDNovelty(seed=seed).fit(data.inputs(novelty_families)[success_train])

    def rnd_scores(d: SignalData) -> np.ndarray:
        value = rnd.scores(d.inputs(novelty_families))
        return np.broadcast_to(value[:, None, None], (len(value), horizons, len(FAILURE_TYPES)))

    scorers.append(Scorer("rnd", "RND novelty on successes (FAIL-Detect style)", "RND novelty", "baseline",
                          rnd_scores, has_types=False))
    if "chunk_entropy" in data.columns:
        calibration_success = data.rows(np.intersect1d(splits["calibration"], successes))
        novelty_reference = rnd.scores(data.inputs(novelty_families)[calibration_success])
        entropy_column = data.columns["chunk_entropy"].index("ace_mean")
        entropy_reference = data.inputs(("chunk_entropy",))[calibration_success, entropy_column]

        def fiper_scores(d: SignalData) -> np.ndarray:
            value = fiper_gate(rnd.scores(d.inputs(novelty_families)), d.inputs(("chunk_entropy",))[:, entropy_column],
                               novelty_reference, entropy_reference)
            return np.broadcast_to(value[:, None, None], (len(value), horizons, len(FAILURE_TYPES)))

        scorers.append(Scorer("fiper", "FIPER gate (RND and chunk entropy)", "FIPER gate", "baseline", fiper_scores,
                              has_types=False))
    columns_train = data.inputs(scalar_families)[train_rows]
    for index, column in enumerate(scalar_names):
        threshold = SignalThreshold(index, horizons).fit(columns_train, data.labels[train_rows])

        def column_scores(d: SignalData, scorer=threshold) -> np.ndarray:
            return scorer.scores(d.inputs(scalar_families))

        reversed_note = " (reversed)" if threshold.sign < 0 else ""
        scorers.append(Scorer(f"signal:{column}", f"{column} thresholded{reversed_note}",
                              column + (" (-)" if threshold.sign < 0 else ""), "baseline", column_scores,
                              has_types=False))
    scorers += [trained[name] for name in ("permutation_control", "state_only", "time_only") if name in trained]
    return scorers


def _model_label(spec: ModelSpec) -> str:
    inputs = "+".join(spec.features)
    if spec.kind == "temporal":
        return f"temporal convolution ({spec.receptive_field} steps; {inputs})"
    averaged = f", mean of {spec.members} members" if spec.members > 1 else ""
    if spec.member_inputs:
        averaged += f" reading {len(set(spec.member_inputs))} input sets"
    if spec.kind == "outcome":
        return f"episode-outcome MLP (step, running mean and max; {inputs}{averaged})"
    return f"MLP {spec.kind}" + (f" x{spec.members}" if spec.members > 1 else "") + (f" (window {spec.window})" if spec.window > 1 else "") + f" ({inputs})"


def _model_short(spec: ModelSpec) -> str:
    if spec.kind == "temporal":
        return "temporal conv"
    if spec.kind == "outcome":
        return "outcome MLP"
    return "MLP" + (" single-horizon" if spec.kind == "single-horizon" else "") + (
        f" window {spec.window}" if spec.window > 1 else "")


def _monitor_metrics(alarm: np.ndarray, type_scores: np.ndarray | None, subset: _Subset, threshold: float,
                     calibration_maxima: np.ndarray, alpha: float, data: SignalData,
                     delta: float | None = None) -> tuple[dict[str, Any], np.ndarray]:
    """Episode-level metrics of one scorer on one set of episodes (see `metrics`), and the (E,)
    running-max alarm scores of those episodes that rank them."""
    split_alarm = alarm[subset.rows]
    entry = episode_metrics(split_alarm, type_scores, subset.episodes, subset.offsets, threshold, data.control_hz,
                            min(data.horizons))
    maxima = episode_alarm_maxima(split_alarm, subset.episodes, subset.offsets)
    entry["ranking"] = episode_ranking(maxima, subset.episodes)
    entry["alpha_curve"] = alpha_curve(calibration_maxima, split_alarm, subset.episodes, subset.offsets, ALPHA_GRID,
                                       delta)
    success_maxima = maxima[[e.failure_type == -1 for e in subset.episodes]]
    entry["resplits"] = resplit_false_alarms(calibration_maxima, success_maxima, alpha, RESPLITS, delta=delta)
    entry["false_alarm_check"] = false_alarm_check(calibration_maxima, success_maxima, alpha, delta)
    return entry, maxima


def run_evaluation(config: EvaluateConfig, sink: EventSink = discard,
                   stop: threading.Event | None = None) -> dict[str, Any] | None:
    """Evaluates a checkpoint and writes `OUT/metrics.json` and PNG plots.

    Args:
        config: settings (`fresh`: a second store whose every episode is scored with the thresholds
            calibrated on the first; `ablation`: also retrain the model per input family).
        sink: receives `JobStarted`, `ProgressUpdate` (one per scorer), `LogLine`, `JobFinished`.
        stop: checked between scorers; when set, nothing is written and None is returned.

    Returns:
        The metrics dict written to metrics.json, or None when stopped.

    Raises:
        PredictorError: missing or mismatched checkpoint or store, a split without the episodes the
            metrics need (no successful calibration episode, no failure in the evaluated split); a
            fresh store without a family the model reads or with other horizons; an --out that is a
            file, under a file or cannot be written.
    """
    started = time.perf_counter()
    check_out_folder(Path(config.out))  # before the work, not after it
    model, run_config = load_model(config.checkpoint, config.weights)
    run_dir = Path(config.checkpoint)
    run_dir = run_dir.parent if run_dir.suffix == ".safetensors" else run_dir
    spec: ModelSpec = model.spec
    data = load_signal_data(config.data)
    check_store_matches(run_config, data.horizons, data.path)
    splits = load_splits(run_dir / "splits.json")
    primary = _check_inputs(config, run_config, data, splits)
    fresh = None
    if config.fresh:
        fresh = load_signal_data(config.fresh)
        check_store_matches(run_config, fresh.horizons, fresh.path)
        fresh.resolve(spec.features)
        if fresh.columns != {k: v for k, v in data.columns.items() if k in fresh.columns} or set(fresh.columns) != set(
                data.columns):
            raise PredictorError(f"{fresh.path} records other signal families ({', '.join(fresh.columns)}) than "
                                 f"{data.path} ({', '.join(data.columns)}); collect both with the same --signals")
    subsets = {name: _subset(data, splits[name]) for name in SPLIT_NAMES}
    evaluated = subsets[config.split]
    calibration_successes = _subset(data, np.array([e.episode_id for e in subsets["calibration"].episodes
                                                     if e.failure_type == -1], dtype=np.int64))
    if not calibration_successes.episodes:
        raise PredictorError("the checkpoint's calibration split holds no successful episode, so no alarm threshold "
                             "can be calibrated; train on a store with more successes")
    counts = data.outcome_counts(evaluated.ids)
    if counts["success"] == sum(counts.values()):
        raise PredictorError(f"the {config.split} split holds no failed episode; nothing to detect, use a larger store")
    with training_ray(config.workers):  # one Ray for the baselines' and the ablation's trainings
        sink(EvaluationStarted(job="evaluate", total=0, checkpoint=str(run_dir), data=str(data.path),
                               split=config.split, alpha=config.alpha))
        scorers = build_scorers(model, run_config, data, splits, sink, stop, config.workers, config.threads)
        if scorers is None or (stop is not None and stop.is_set()):
            sink(JobFinished(job="evaluate", stopped=True))
            return None

        train, val = subsets["train"], subsets["val"]
        train_prevalence = data.labels[train.rows].mean(axis=0)
        results: dict[str, Any] = {}
        fresh_results: dict[str, Any] = {}
        curves: dict[str, np.ndarray] = {}
        fresh_subset = _subset(fresh, fresh.episode_ids) if fresh is not None else None
        maxima: dict[str, dict[str, np.ndarray]] = {"split": {}, "fresh": {}}
        for i, scorer in enumerate(scorers, start=1):
            with torch_threads(config.threads):
                all_scores = scorer.score(data)
            thresholds = choose_thresholds(all_scores[val.rows], data.labels[val.rows], train_prevalence)
            split_scores = np.asarray(all_scores[evaluated.rows])
            entry: dict[str, Any] = {"label": scorer.label, "short": scorer.short, "kind": scorer.kind,
                                     "alarm_score": scorer.alarm_score}
            entry.update(step_metrics(split_scores, data.labels[evaluated.rows], thresholds, data.horizons, primary))
            alarm_all = scorer.alarm(all_scores[:, primary, :], data)
            calibration_max = episode_max_scores(alarm_all[calibration_successes.rows], calibration_successes.offsets)
            threshold = conformal_threshold(calibration_max, config.alpha, config.delta)
            entry["episode"], maxima["split"][scorer.name] = _monitor_metrics(
                alarm_all, split_scores[:, primary, :] if scorer.has_types else None, evaluated, threshold,
                calibration_max, config.alpha, data, config.delta)
            if scorer.has_types:
                entry["reliability"] = reliability(split_scores, data.labels[evaluated.rows])
            results[scorer.name] = entry
            curves[scorer.name] = split_scores[:, primary, :]
            if fresh is not None:
                with torch_threads(config.threads):
                    fresh_scores = scorer.score(fresh)
                fresh_alarm = scorer.alarm(fresh_scores[:, primary, :], fresh)
                fresh_entry = {"label": scorer.label, "short": scorer.short, "kind": scorer.kind,
                               "alarm_score": scorer.alarm_score}
                fresh_entry.update(step_metrics(fresh_scores, fresh.labels, thresholds, data.horizons, primary))
                fresh_entry["episode"], maxima["fresh"][scorer.name] = _monitor_metrics(
                    fresh_alarm, fresh_scores[:, primary, :] if scorer.has_types else None, fresh_subset, threshold,
                    calibration_max, config.alpha, fresh, config.delta)
                fresh_results[scorer.name] = fresh_entry
            sink(ProgressUpdate(i, len(scorers), f"scored {scorer.label}"))
            if stop is not None and stop.is_set():
                sink(JobFinished(job="evaluate", stopped=True))
                return None

        sink(LogLine("info", "bootstrap intervals of the episode-level ranking"))
        for entries, episodes, key in ((results, evaluated.episodes, "split"),
                                       (fresh_results, fresh_subset.episodes if fresh_subset else [], "fresh")):
            for name, interval in ranking_intervals(maxima[key], episodes).items():
                entries[name]["episode"]["ranking"].update(interval)
        n_cal = len(calibration_successes.episodes)
        rank = conformal_rank(n_cal, config.alpha, config.delta)
        metrics: dict[str, Any] = {
            "format": "salus-predictor-metrics",
            "format_version": METRICS_VERSION,
            "checkpoint": str(run_dir.resolve()),
            "weights": config.weights,
            "model": spec.to_json(),
            "store": str(data.path.resolve()),
            "split": config.split,
            "horizons": list(data.horizons),
            "failure_types": list(FAILURE_TYPES),
            "alarm_horizon": int(data.horizons[primary]),
            "control_hz": data.control_hz,
            "episodes": {name: data.outcome_counts(s.ids) for name, s in subsets.items()},
            "samples": {name: int(len(s.rows)) for name, s in subsets.items()},
            "conformal": {
                "alpha": config.alpha,
                "delta": config.delta,
                "calibration_episodes": n_cal,
                "rank": rank,
                "guarantee": (f"P(false alarm on a successful episode) <= {config.alpha}" if config.delta is None else
                              f"P(this calibration's false-alarm rate > {config.alpha}) <= {config.delta}"),
                "expected_rate": None if rank is None else 1.0 - rank / (n_cal + 1),
                "lower_bound": max(0.0, config.alpha - 1.0 / (n_cal + 1)) if config.delta is None else None,
                "finite": rank is not None,
                "in_sample": config.split == "calibration",
                "resplits": RESPLITS,
            },
            "thresholds_note": "per-output decision thresholds chosen on the val split (max F1); alarm thresholds by "
                               "split conformal on the calibration split's successful episodes",
            "scorers": results,
            "fresh": None if fresh is None else {
                "store": str(fresh.path.resolve()), "base_seed": fresh.identity["base_seed"],
                "episodes": fresh.outcome_counts(), "scorers": fresh_results,
                "note": "every episode of a store the predictor never trained on, scored with the thresholds "
                        "calibrated on the training store",
            },
            "ablation": None,
            "seconds": None,
            "plots": [],
        }
        if config.ablation:
            metrics["ablation"] = run_ablation(spec, run_config, data, splits, subsets, calibration_successes,
                                               primary, config.alpha, fresh, fresh_subset, sink, stop,
                                               config.delta, config.workers, config.threads)
            if metrics["ablation"] is None:
                sink(JobFinished(job="evaluate", stopped=True))
                return None
        out = Path(config.out)
        with folder_writes(out):
            out.mkdir(parents=True, exist_ok=True)
            if config.plots:
                from salus_engine.predictor.plots import write_plots

                metrics["plots"] = write_plots(out, metrics, curves, data.labels[evaluated.rows][:, primary, :],
                                               run_dir / "history.jsonl")
            metrics["seconds"] = time.perf_counter() - started
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        model_entry = results["model"]
        sink(LogLine("info", f"model: episode AUROC {_fmt(model_entry['episode']['ranking']['auroc'])}, "
                             f"detection {_fmt(model_entry['episode']['tpr']['rate'])}, "
                             f"false alarms {_fmt(model_entry['episode']['far']['rate'])}"))
        sink(EvaluationFinished(job="evaluate", stopped=False, out=str(out), seconds=metrics["seconds"]))
        return metrics


def run_ablation(spec: ModelSpec, run_config: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                 subsets: dict[str, _Subset], calibration_successes: _Subset, primary: int, alpha: float,
                 fresh: SignalData | None, fresh_subset: _Subset | None, sink: EventSink,
                 stop: threading.Event | None, delta: float | None = None, workers: int = 1,
                 threads: int | None = None) -> list[dict[str, Any]] | None:
    """The model's network retrained with each input family removed and with each family alone (same
    settings and splits; `train_networks`, `workers` at a time), scored at the episode level on the
    evaluated split (and the fresh store).

    Returns:
        One row per variant: `variant`, `features`, and per store the ranking, detection, false alarms
        and median lead; None when stopped.
    """
    settings = run_config.get("train", {})
    seed = int(settings.get("seed", 0))
    families = spec.features
    variants = [("full", families)]
    if len(families) > 1:
        variants += [(f"without {f}", tuple(g for g in families if g != f)) for f in families]
        variants += [(f"{f} alone", (f,)) for f in families]
    jobs = [NetworkJob(f"ablation: {name}", build_spec(data, spec.kind, features, spec.window, spec.hidden, spec.members,
                                                       spec.alarm_score,
                                                       restrict_member_features(settings.get("member_features"),
                                                                                features)), seed)
            for name, features in variants]
    trained = train_networks(jobs, settings, data, splits, workers=workers, threads=threads, sink=sink, stop=stop)
    if trained is None:
        return None
    rows = []
    evaluated = subsets["test"]
    for (name, features), (network, variant) in zip(variants, trained):
        row: dict[str, Any] = {"variant": name, "features": list(features)}
        for label, source, subset in (("test", data, evaluated), ("fresh", fresh, fresh_subset)):
            if source is None:
                continue
            with torch_threads(threads):
                scores = scores_of(network, source)[:, primary, :]
            alarm = alarm_scores(scores, variant.alarm_score, source.step, variant.success_profile)
            if label == "test":  # the store's own alarm scores: its calibration successes set the threshold
                calibration_max = episode_max_scores(alarm[calibration_successes.rows], calibration_successes.offsets)
                threshold = conformal_threshold(calibration_max, alpha, delta)
            episode = episode_metrics(alarm[subset.rows], None, subset.episodes, subset.offsets, threshold,
                                      source.control_hz, min(source.horizons))
            maxima = episode_alarm_maxima(alarm[subset.rows], subset.episodes, subset.offsets)
            row[label] = {"ranking": episode_ranking(maxima, subset.episodes), "tpr": episode["tpr"],
                          "far": episode["far"], "median_lead_steps": episode["median_lead_steps"]}
        rows.append(row)
    return rows


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
