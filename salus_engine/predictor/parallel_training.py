"""Trains the networks of an evaluation (its trained baselines and controls, the rows of its ablation):
one after another in this process, or up to N at a time as Ray tasks.

Each network is independent of the others: its spec, its seed, the run's training settings and the
checkpoint's splits fix it. A Ray task trains it exactly as this process would (the same `fit` on the
same arrays) and returns its weights; with the same number of torch threads the weights are the same
to the bit (`tests/test_predictor_families.py` compares whole evaluations). The store's arrays go to
the object store once (`ray.put`), and the columns that are computed on first use (`target_view`
from the front camera's frames, `command`) are computed here first, so that no task reads the store.

A local Ray is started for the evaluation (every process on 127.0.0.1, see
`salus_engine.distributed.ray_runtime`) and shut down at its end (`training_ray`: one Ray for all of an
evaluation's trainings); a process already connected to Ray keeps its connection and its cluster.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from salus_engine.command import COMMAND
from salus_engine.events import EventSink, ProgressUpdate, discard
from salus_engine.predictor.dataset import SignalData
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.models import ModelSpec, build_model
from salus_engine.predictor.training import (fit, model_inputs, prepare_inputs, takes_peak_term, torch_threads,
                                             with_success_profile)
from salus_engine.target_view import TARGET_VIEW

WAIT_S = 0.5
"""How often, in seconds, the driver looks at the stop event while tasks run."""


@dataclass(frozen=True)
class NetworkJob:
    """One network to train on the checkpoint's splits."""

    label: str
    """What it is, for the progress lines (a scorer's label, an ablation variant)."""
    spec: ModelSpec
    seed: int
    """Seed of its initialisation and shuffling."""
    labels: np.ndarray | None = None
    """(N, H, 4) uint8 labels to train on instead of the store's (the permutation control), or None."""


@contextmanager
def training_ray(workers: int):
    """With `workers` > 1: starts a local Ray (or joins the one this process is connected to) for the
    block, so that every `train_networks` call inside it uses the same Ray, and leaves it at the end;
    with 1, does nothing.

    Raises:
        RayClusterError: a local Ray could not be started.
    """
    if workers <= 1:
        yield
        return
    from salus_engine.distributed.ray_runtime import leave_ray, start_or_join_ray

    runtime = start_or_join_ray("")
    try:
        yield
    finally:
        leave_ray(runtime)


def train_on_splits(spec: ModelSpec, settings: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                    seed: int, stop: threading.Event | None = None,
                    labels: np.ndarray | None = None) -> tuple[nn.Module, ModelSpec]:
    """A network of `spec` trained with a run's settings on the train split (the val split early-stops it).

    Args:
        spec: the network.
        settings: the run's `train` settings (config.json): epochs, batch_size, lr, weight_decay,
            patience, episodes_per_batch, peak_weight; missing ones take `fit`'s defaults.
        data: the store; splits: split name -> episode ids (the checkpoint's splits.json).
        seed: initialisation and shuffling seed.
        stop: checked between epochs.
        labels: (N, H, 4) labels to train on instead of the store's, or None.

    Returns:
        (the network in eval mode with its best weights, `spec` with that network's success profile when
        its alarm score needs one).

    Raises:
        PredictorError: the training split holds no success for an alarm score that needs them.
    """
    x_all = model_inputs(spec, data)
    x_train, y_train, train_offsets = prepare_inputs(spec, data, splits["train"], x_all, labels)
    x_val, y_val, val_offsets = prepare_inputs(spec, data, splits["val"], x_all, labels)
    result = fit(spec, x_train, y_train, x_val, y_val, epochs=int(settings.get("epochs", 50)),
                 batch_size=int(settings.get("batch_size", 256)), lr=float(settings.get("lr", 1e-3)),
                 weight_decay=float(settings.get("weight_decay", 1e-2)), patience=int(settings.get("patience", 10)),
                 seed=seed, stop=stop, train_offsets=train_offsets, val_offsets=val_offsets,
                 episodes_per_batch=int(settings.get("episodes_per_batch", 16)),
                 peak_weight=float(settings.get("peak_weight") or 0.0) if takes_peak_term(spec) else 0.0)
    network = build_model(spec)
    network.load_state_dict(result.best_state if result.best_state is not None else result.final_state)
    network.eval()
    return network, with_success_profile(spec, network, data, splits["train"], x_all, labels)


def _train_in_task(job: NetworkJob, settings: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                   threads: int) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """The body of one Ray task: `train_on_splits` with `threads` torch threads; (weights, spec)."""
    torch.set_num_threads(threads)
    network, spec = train_on_splits(job.spec, settings, data, splits, job.seed, labels=job.labels)
    return {name: value.detach().clone() for name, value in network.state_dict().items()}, spec


def _with_weights(spec: ModelSpec, weights: dict[str, torch.Tensor]) -> nn.Module:
    network = build_model(spec)
    network.load_state_dict(weights)
    network.eval()
    return network


def _compute_shared_columns(data: SignalData, jobs: list[NetworkJob]) -> None:
    """Computes (and keeps in `data`) the columns that are derived on first use, before `data` is shipped."""
    families = {family for job in jobs for family in job.spec.features}
    if TARGET_VIEW in families:
        data.target_views()
    if COMMAND in families:
        data.command_columns()


def train_networks(jobs: list[NetworkJob], settings: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                   *, workers: int = 1, threads: int | None = None, sink: EventSink = discard,
                   stop: threading.Event | None = None) -> list[tuple[nn.Module, ModelSpec]] | None:
    """Trains every job's network (`train_on_splits`).

    Args:
        jobs: the networks, in the order of the result.
        settings, data, splits: as `train_on_splits`.
        workers: 1 trains the networks one after another in this process; N > 1 runs up to N at a time
            as Ray tasks of one CPU each, on a local Ray started here (127.0.0.1) or on the Ray this
            process is already connected to.
        threads: torch threads per network (None: torch's setting in this process, 1 in a task).
        sink: receives a `ProgressUpdate` as each network starts (in this process) or ends (on Ray).
        stop: checked between epochs (in this process) or every `WAIT_S` seconds (on Ray, where the
            running tasks are then cancelled).

    Returns:
        One (network in eval mode, spec with its success profile) per job, in the jobs' order; None
        when stopped.

    Raises:
        PredictorError: as `train_on_splits`, raised from the task that met it.
        RayClusterError: a local Ray could not be started.
    """
    if workers <= 1:
        trained = []
        for i, job in enumerate(jobs):
            if stop is not None and stop.is_set():
                return None
            sink(ProgressUpdate(i, len(jobs), f"training {job.label}"))
            with torch_threads(threads):
                trained.append(train_on_splits(job.spec, settings, data, splits, job.seed, stop, job.labels))
        return None if stop is not None and stop.is_set() else trained
    return _train_on_ray(jobs, settings, data, splits, workers, threads or 1, sink, stop)


def _train_on_ray(jobs: list[NetworkJob], settings: dict[str, Any], data: SignalData, splits: dict[str, np.ndarray],
                  workers: int, threads: int, sink: EventSink,
                  stop: threading.Event | None) -> list[tuple[nn.Module, ModelSpec]] | None:
    _compute_shared_columns(data, jobs)
    with training_ray(workers):
        import ray
        from ray.exceptions import RayTaskError

        in_flight: dict[Any, int] = {}
        try:
            task = ray.remote(num_cpus=1, max_retries=0)(_train_in_task)
            shared = (ray.put(settings), ray.put(data), ray.put(splits))
            waiting = list(range(len(jobs)))
            results: dict[int, tuple[nn.Module, ModelSpec]] = {}
            sink(ProgressUpdate(0, len(jobs), f"training {len(jobs)} networks, {min(workers, len(jobs))} at a time "
                                              "on Ray"))
            while waiting or in_flight:
                while waiting and len(in_flight) < workers:
                    index = waiting.pop(0)
                    in_flight[task.remote(jobs[index], *shared, threads)] = index
                done, _ = ray.wait(list(in_flight), num_returns=1, timeout=WAIT_S)
                if stop is not None and stop.is_set():
                    return None
                for ref in done:
                    index = in_flight.pop(ref)
                    try:
                        weights, spec = ray.get(ref)
                    except RayTaskError as err:
                        if isinstance(err.cause, PredictorError):
                            raise err.cause from None
                        raise
                    results[index] = (_with_weights(spec, weights), spec)
                    sink(ProgressUpdate(len(results), len(jobs), f"trained {jobs[index].label}"))
            return [results[i] for i in range(len(jobs))]
        finally:
            for ref in in_flight:
                ray.cancel(ref, force=True)
