"""The `salus evaluate` job: scores a trained predictor, the baselines and the permutation control on
one split of the checkpoint's store, with conformal alarm thresholds, and writes metrics.json and plots.

Every scorer is treated alike: per-output decision thresholds are chosen on the validation split
(max F1), the conformal alarm threshold on the calibration split's successful episodes, and all
metrics are measured on the evaluated split (default `test`). The alarm score of a step is the
maximum over failure types of the score at the alarm horizon (default: the longest horizon).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salus_engine import FAILURE_TYPES
from salus_engine.config import EvaluateConfig
from salus_engine.events import EvaluationFinished, EvaluationStarted, EventSink, JobFinished, LogLine, ProgressUpdate, discard
from salus_engine.predictor.baselines import LogisticBaseline, SignalThreshold, permuted_labels
from salus_engine.predictor.checkpoint import check_out_folder, check_store_matches, folder_writes, load_model
from salus_engine.predictor.conformal import conformal_threshold, episode_max_scores
from salus_engine.predictor import SPLIT_NAMES
from salus_engine.predictor.dataset import EpisodeInfo, SignalData, load_signal_data, load_splits, window_features
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.metrics import choose_thresholds, episode_metrics, reliability, step_metrics
from salus_engine.predictor.models import ModelSpec, SignalMLP
from salus_engine.predictor.training import fit, targets_for, torch_threads
from salus_engine.signals import SIGNAL_NAMES

METRICS_VERSION = 1
CONTROL_SEED_OFFSET = 1
"""The permutation control shuffles labels with the run's seed + 1 and trains with the same settings."""


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


def model_scores(model: SignalMLP, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    """(N, H, 4) float32 probabilities of `model` for raw inputs x (N, n_inputs)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(model.probabilities(torch.from_numpy(np.ascontiguousarray(x[start:start + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.spec.horizons), len(FAILURE_TYPES)), np.float32)


def _check_inputs(config: EvaluateConfig, run_config: dict[str, Any], data: SignalData,
                  splits: dict[str, np.ndarray]) -> int:
    """Checks the store and settings against the checkpoint; returns the alarm horizon index."""
    trained_on = run_config.get("store", {})
    identity = (data.identity["created"], data.identity["base_seed"])
    if (trained_on.get("created"), trained_on.get("base_seed")) != identity:
        raise PredictorError(f"{data.path} is not the store this checkpoint was trained on ({trained_on.get('path')}, "
                             f"created {trained_on.get('created')}); its split does not apply, evaluate with --data "
                             "that store")
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


def run_evaluation(config: EvaluateConfig, sink: EventSink = discard,
                   stop: threading.Event | None = None) -> dict[str, Any] | None:
    """Evaluates a checkpoint and writes `OUT/metrics.json` and PNG plots.

    Args:
        config: settings.
        sink: receives `JobStarted`, `ProgressUpdate` (one per scorer), `LogLine`, `JobFinished`.
        stop: checked between scorers; when set, nothing is written and None is returned.

    Returns:
        The metrics dict written to metrics.json, or None when stopped.

    Raises:
        PredictorError: missing or mismatched checkpoint or store, a split without the episodes the
            metrics need (no successful calibration episode, no failure in the evaluated split); an
            --out that is a file, under a file or cannot be written.
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
    subsets = {name: _subset(data, splits[name]) for name in SPLIT_NAMES}
    evaluated = subsets[config.split]
    calibration_successes = _subset(data, np.array([e.episode_id for e in subsets["calibration"].episodes
                                                     if e.failure_type == -1], dtype=np.int64))
    if not calibration_successes.episodes:
        raise PredictorError(f"the checkpoint's calibration split holds no successful episode, so no alarm threshold "
                             f"can be calibrated; train on a store with more successes")
    counts = data.outcome_counts(evaluated.ids)
    if counts["success"] == sum(counts.values()):
        raise PredictorError(f"the {config.split} split holds no failed episode; nothing to detect, use a larger store")

    scorer_names = ["model", "logistic_regression", "permutation_control", *(f"signal:{n}" for n in SIGNAL_NAMES)]
    sink(EvaluationStarted(job="evaluate", total=len(scorer_names), checkpoint=str(run_dir), data=str(data.path),
                           split=config.split, alpha=config.alpha))

    x_all = window_features(data.signals, data.step, spec.window)
    train, val = subsets["train"], subsets["val"]
    scores: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    short: dict[str, str] = {"model": "MLP" + (" single-horizon" if spec.kind == "single-horizon" else "")
                             + (f" window {spec.window}" if spec.window > 1 else ""),
                             "logistic_regression": "logistic regression",
                             "permutation_control": "permutation control"}
    with torch_threads(config.threads):
        scores["model"] = model_scores(model, x_all)
        labels["model"] = f"MLP {spec.kind}" + (f" (window {spec.window})" if spec.window > 1 else "")
        sink(ProgressUpdate(1, len(scorer_names), "logistic regression"))
        scores["logistic_regression"] = LogisticBaseline().fit(
            data.signals[train.rows], data.labels[train.rows]).scores(data.signals)
        labels["logistic_regression"] = "logistic regression (6 signals)"
        if stop is not None and stop.is_set():
            sink(JobFinished(job="evaluate", stopped=True))
            return None
        sink(ProgressUpdate(2, len(scorer_names), "permutation control"))
        scores["permutation_control"] = _permutation_control(spec, run_config, data, x_all, train, val, stop)
        labels["permutation_control"] = "permutation control (labels shuffled across episodes)"
    for index, name in enumerate(SIGNAL_NAMES):
        scorer = SignalThreshold(index, len(data.horizons)).fit(data.signals[train.rows], data.labels[train.rows])
        scores[f"signal:{name}"] = scorer.scores(data.signals)
        labels[f"signal:{name}"] = f"{name} thresholded" + (" (reversed)" if scorer.sign < 0 else "")
        short[f"signal:{name}"] = name + (" (-)" if scorer.sign < 0 else "")
    if stop is not None and stop.is_set():
        sink(JobFinished(job="evaluate", stopped=True))
        return None

    train_prevalence = data.labels[train.rows].mean(axis=0)
    results: dict[str, Any] = {}
    curves: dict[str, np.ndarray] = {}
    for i, name in enumerate(scorer_names, start=1):
        all_scores = scores[name]
        thresholds = choose_thresholds(all_scores[val.rows], data.labels[val.rows], train_prevalence)
        split_scores = np.asarray(all_scores[evaluated.rows])
        entry: dict[str, Any] = {"label": labels[name], "short": short[name],
                                 "kind": "model" if name == "model" else "control" if name == "permutation_control"
                                 else "baseline"}
        entry.update(step_metrics(split_scores, data.labels[evaluated.rows], thresholds, data.horizons, primary))
        alarm_all = all_scores[:, primary, :].max(axis=1)
        calibration_max = episode_max_scores(alarm_all[calibration_successes.rows], calibration_successes.offsets)
        threshold = conformal_threshold(calibration_max, config.alpha)
        has_types = not name.startswith("signal:")
        entry["episode"] = episode_metrics(
            alarm_all[evaluated.rows], split_scores[:, primary, :] if has_types else None, evaluated.episodes,
            evaluated.offsets, threshold, data.control_hz, min(data.horizons))
        if has_types:
            entry["reliability"] = reliability(split_scores, data.labels[evaluated.rows])
        results[name] = entry
        curves[name] = split_scores[:, primary, :]
        sink(ProgressUpdate(i, len(scorer_names), f"scored {labels[name]}"))

    n_cal = len(calibration_successes.episodes)
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
            "calibration_episodes": n_cal,
            "guarantee": f"P(false alarm on a successful episode) <= {config.alpha}",
            "lower_bound": max(0.0, config.alpha - 1.0 / (n_cal + 1)),
            "finite": 1.0 / (n_cal + 1) <= config.alpha,
            "in_sample": config.split == "calibration",
        },
        "thresholds_note": "per-output decision thresholds chosen on the val split (max F1); alarm thresholds by "
                           "split conformal on the calibration split's successful episodes",
        "scorers": results,
        "seconds": None,
        "plots": [],
    }
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
    sink(LogLine("info", f"model: mean AUROC {_fmt(model_entry['mean']['auroc'])}, "
                         f"detection {_fmt(model_entry['episode']['tpr']['rate'])}, "
                         f"false alarms {_fmt(model_entry['episode']['far']['rate'])}"))
    sink(EvaluationFinished(job="evaluate", stopped=False, out=str(out), seconds=metrics["seconds"]))
    return metrics


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _permutation_control(spec: ModelSpec, run_config: dict[str, Any], data: SignalData, x_all: np.ndarray,
                         train: _Subset, val: _Subset, stop: threading.Event | None) -> np.ndarray:
    """Trains the checkpoint's network with its settings on labels shuffled across episodes and
    returns its (N, H, 4) scores on every row."""
    settings = run_config.get("train", {})
    seed = int(settings.get("seed", 0)) + CONTROL_SEED_OFFSET
    y_train = targets_for(spec, permuted_labels(data.labels[train.rows], train.offsets, seed))
    y_val = targets_for(spec, permuted_labels(data.labels[val.rows], val.offsets, seed))
    result = fit(spec, x_all[train.rows], y_train, x_all[val.rows], y_val,
                 epochs=int(settings.get("epochs", 50)), batch_size=int(settings.get("batch_size", 256)),
                 lr=float(settings.get("lr", 1e-3)), weight_decay=float(settings.get("weight_decay", 1e-2)),
                 patience=int(settings.get("patience", 10)), seed=seed, stop=stop)
    control = SignalMLP(spec)
    control.load_state_dict(result.best_state if result.best_state is not None else result.final_state)
    control.eval()
    return model_scores(control, x_all)
