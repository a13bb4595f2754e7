"""Typed progress events emitted by engine jobs and consumed by both front ends.

A job takes an `EventSink` (any callable accepting an `Event`) and calls it from the job's own
thread. The console forwards discrete events to the UI thread with `post_message`; the CLI prints
them. `SignalSnapshot` holds the high-rate per-step data that the console pulls on a timer instead
of receiving one event per step.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol

import numpy as np


@dataclass(frozen=True)
class Event:
    """Base class of every progress event."""


@dataclass(frozen=True)
class JobStarted(Event):
    job: str
    """`collect`, `train`, `evaluate` or `policy-train`."""
    total: int
    """Units of work planned: episodes, epochs or training steps."""


@dataclass(frozen=True)
class CollectionStarted(JobStarted):
    """A collection opened its store and loaded the ensemble."""

    out: str
    """Store folder."""
    first_episode: int
    """Id of the first episode this job writes (episodes already in the store with --resume)."""
    ensemble_size: int
    """Ensemble members M."""


@dataclass(frozen=True)
class TrainingStarted(JobStarted):
    """A predictor training run loaded its store and created its run folder."""

    out: str
    """Run folder."""
    data: str
    """Store folder."""
    model: str
    """Model kind (`multi-horizon` or `single-horizon`)."""
    parameters: int
    """Trainable parameters."""
    samples: dict[str, int]
    """Steps per split (`train`, `val`)."""
    episodes: dict[str, int]
    """Episodes per split (`train`, `val`)."""


@dataclass(frozen=True)
class EvaluationStarted(JobStarted):
    """An evaluation loaded its checkpoint and store."""

    checkpoint: str
    """Run folder of the checkpoint."""
    data: str
    """Store folder."""
    split: str
    """Evaluated split."""
    alpha: float
    """Conformal false-alarm rate."""


@dataclass(frozen=True)
class EpisodeFinished(Event):
    """One episode is complete and durable in the store."""

    episode_id: int
    seed: int
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout, 4 stopped by the monitor."""
    failure_step: int
    """Step of the failure (or of success), 0-based."""
    length: int
    """Steps recorded."""
    seconds: float
    """Wall-clock time of the episode, s."""
    done: int
    """Episodes complete in this job so far."""
    total: int
    max_uncertainty: float
    """Maximum of signal 1 (epistemic uncertainty) over the episode."""
    signals: np.ndarray | None = None
    """The episode's signals, (T, 6) float32, for the console's per-episode view."""
    horizon_labels: np.ndarray | None = None
    """(T, H, 4) uint8 horizon labels of the episode."""
    features: np.ndarray | None = None
    """(T, F) float32: the episode's signal-family columns (`salus_engine.signal_families`), or None
    when the store records no family with columns (format 1/2 stores, `--signals` without them)."""
    feature_families: dict[str, list[str]] = field(default_factory=dict)
    """Family -> its columns of `features`, in column order (the store's `feature_families`)."""
    hidden_change: np.ndarray | None = None
    """(T,) float32: L2 norm of the change of the hidden features (`hidden_state`) from the previous
    step (`hidden_change`), or None when the store does not record them."""
    alarms: int = 0
    """Alarms the runtime monitor raised in the episode (0 without a monitor)."""
    interventions: list[dict] | None = None
    """The monitor's interventions in the episode (`EpisodeRecord.interventions`), None without a monitor."""
    intervention: np.ndarray | None = None
    """(T,) uint8 intervention code per step (`INTERVENTION_KINDS`), None without a monitor."""


WORKER_STATES = ("starting", "idle", "running", "restarting", "stopped")
"""States of a Ray rollout worker, in `WorkerStateChanged.state`."""


@dataclass(frozen=True)
class WorkerStateChanged(Event):
    """A Ray rollout worker of a parallel collection changed state (`salus collect --workers N`).

    `starting`: loading its simulator and ensemble; `idle`: waiting for an episode; `running`:
    simulating `episode_id`; `restarting`: it died (its episode is re-run on a fresh worker);
    `stopped`: the collection released it.
    """

    worker_index: int
    """0-based index of the worker, stable across restarts."""
    state: str
    """One of `WORKER_STATES`."""
    host: str = ""
    """Host name of the node the worker runs on ("" until it reported)."""
    pid: int = 0
    """Process id of the worker on its host (0 until it reported)."""
    node_id: str = ""
    """Ray node id (hex) of its node ("" until it reported); tells nodes of one host apart."""
    episode_id: int | None = None
    """Episode being simulated (`running`, `restarting`), else None."""
    episodes_done: int = 0
    """Episodes this worker finished in this job."""
    episodes_per_hour: float = 0.0
    """This worker's finished episodes per hour of its time since its first episode."""
    memory_used_gb: float | None = None
    """Memory of the worker at its last finished episode, GiB: torch's reserved GPU memory, or
    the process's resident set size (kind `ram`)."""
    memory_budget_gb: float | None = None
    """What `memory_used_gb` is measured against, GiB: the GPU budget, or the node's total RAM."""
    memory_kind: str = ""
    """`gpu` or `ram` ("" before the first sample)."""


@dataclass(frozen=True)
class ProgressUpdate(Event):
    """Generic progress inside a job (e.g. a policy-training step)."""

    done: int
    total: int
    message: str = ""
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EpochFinished(Event):
    epoch: int
    total: int
    train_loss: float
    val_loss: float
    lr: float
    best: bool
    patience_left: int
    seconds: float


@dataclass(frozen=True)
class ResourceSample(Event):
    """Memory use sampled in the engine thread."""

    used_gb: float
    budget_gb: float
    kind: str
    """`gpu` (torch.cuda / NVML) or `ram` (process RSS against system memory)."""


@dataclass(frozen=True)
class LogLine(Event):
    level: str
    """`info`, `warning` or `error`."""
    text: str


@dataclass(frozen=True)
class JobFinished(Event):
    job: str
    stopped: bool
    """True when the job ended early on a stop request."""


@dataclass
class CollectionSummary:
    """What a collection did."""

    out: str
    """Store folder."""
    episodes_written: int
    """Episodes this job wrote."""
    total_in_store: int
    """Complete episodes in the store at the end."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Outcome name -> episodes this job wrote."""
    stopped: bool = False
    """True when it ended early on a stop request."""
    seconds: float = 0.0
    """Wall-clock time, s."""


@dataclass
class TrainSummary:
    """What a predictor training run did."""

    out: str
    """Run folder."""
    epochs_run: int
    best_epoch: int
    """1-based epoch of the best weights."""
    best_val_loss: float
    stopped: bool
    """Stopped on request."""
    early_stopped: bool
    """Stopped by patience."""
    seconds: float
    """Wall-clock time, s."""
    parameters: int
    samples: dict[str, int]
    """Steps per split."""
    episodes: dict[str, int]
    """Episodes per split."""


@dataclass(frozen=True)
class CollectionFinished(JobFinished):
    summary: CollectionSummary


@dataclass(frozen=True)
class TrainingFinished(JobFinished):
    summary: TrainSummary


@dataclass(frozen=True)
class EvaluationFinished(JobFinished):
    out: str
    """Folder of metrics.json and the plots."""
    seconds: float
    """Wall-clock time, s."""


@dataclass(frozen=True)
class JobFailed(Event):
    job: str
    message: str
    """One line: what is wrong and what to do."""


class EventSink(Protocol):
    def __call__(self, event: Event) -> None: ...


def discard(event: Event) -> None:
    """An `EventSink` that ignores every event."""


def hidden_change(hidden: np.ndarray | None) -> np.ndarray | None:
    """L2 norm of h_t - h_(t-1) for hidden features (T, D) (`hidden_state`; 0 at t = 0), as (T,)
    float32; None for None. The hidden vector is 64-D: this one number per step is what a timeline
    can draw of it (it moves when the policy's embedding moves, at the re-query steps)."""
    if hidden is None:
        return None
    h = np.asarray(hidden, dtype=np.float32)
    change = np.zeros(len(h), np.float32)
    if len(h) > 1:
        change[1:] = np.linalg.norm(np.diff(h, axis=0), axis=1)
    return change


class SnapshotReading(NamedTuple):
    """What `SignalSnapshot.read` returns: copies of the current episode's latest n steps."""

    version: int
    """Changes with every push and reset."""
    episode_id: int
    step: int
    """Step of the latest push."""
    signals: np.ndarray
    """(n, 6) float32, the six signals."""
    features: np.ndarray | None
    """(n, F) float32 signal-family columns, or None when the collection records none."""
    hidden_change: np.ndarray | None
    """(n,) float32 change of the hidden features (`hidden_change`), or None without `hidden_state`."""
    feature_families: dict[str, list[str]]
    """Family -> its columns of `features`, in column order (empty without families)."""
    monitor: np.ndarray | None = None
    """(n, 3) float32 per step: the runtime monitor's alarm score, alarm (1/0) and intervention code
    (`INTERVENTION_KINDS`), or None without a monitor."""
    monitor_threshold: float | None = None
    """The monitor's alarm threshold (None without a monitor)."""


class SignalSnapshot:
    """Lock-protected latest per-step data of a running collection, pulled by the UI on a timer.

    `push` is called from the engine thread every step; `read` returns copies. Per step it keeps the
    six signals (6,), the family columns (F,) and one number for the hidden features (their change
    from the previous step), never the hidden vector itself.
    """

    def __init__(self, history: int = 200) -> None:
        self._lock = threading.Lock()
        self._signals: deque[np.ndarray] = deque(maxlen=history)
        self._features: deque[np.ndarray] = deque(maxlen=history)
        self._hidden_change: deque[float] = deque(maxlen=history)
        self._monitor: deque[tuple[float, float, float]] = deque(maxlen=history)
        self._monitor_threshold: float | None = None
        self._previous_hidden: np.ndarray | None = None
        self._feature_families: dict[str, list[str]] = {}
        self._step = 0
        self._episode_id = -1
        self._version = 0

    def reset(self, episode_id: int, feature_families: dict[str, list[str]] | None = None,
              monitor_threshold: float | None = None) -> None:
        """Starts episode `episode_id`; `feature_families` names the columns of the pushed features;
        `monitor_threshold` is the runtime monitor's alarm threshold (None without a monitor)."""
        with self._lock:
            self._signals.clear()
            self._features.clear()
            self._hidden_change.clear()
            self._monitor.clear()
            self._monitor_threshold = monitor_threshold
            self._previous_hidden = None
            self._feature_families = {str(k): [str(c) for c in v] for k, v in (feature_families or {}).items()}
            self._step = 0
            self._episode_id = episode_id
            self._version += 1

    def push(self, step: int, signals: np.ndarray, features: np.ndarray | None = None,
             hidden: np.ndarray | None = None, monitor: tuple[float, bool, int] | None = None) -> None:
        """One step: signals (6,), features (F,) float32 in `feature_families` column order or None,
        hidden (D,) hidden features or None, monitor (alarm score, alarm, intervention code) or None
        (pass each at every step of an episode or at none)."""
        row = np.asarray(signals, dtype=np.float32).copy()
        columns = None if features is None or np.size(features) == 0 else np.asarray(features, np.float32).copy()
        h = None if hidden is None else np.asarray(hidden, dtype=np.float32)
        with self._lock:
            self._signals.append(row)
            if columns is not None:
                self._features.append(columns)
            if h is not None:
                previous = self._previous_hidden
                self._hidden_change.append(0.0 if previous is None else float(np.linalg.norm(h - previous)))
                self._previous_hidden = h
            if monitor is not None:
                self._monitor.append((float(monitor[0]), float(bool(monitor[1])), float(monitor[2])))
            self._step = step
            self._version += 1

    def read(self) -> SnapshotReading:
        """(version, episode_id, step, signals (n, 6), features (n, F) or None, hidden change (n,) or
        None, feature families, monitor (n, 3) or None, monitor threshold) of the current episode."""
        with self._lock:
            n = len(self._signals)
            arr = np.stack(self._signals) if n else np.zeros((0, 6), np.float32)
            features = np.stack(self._features) if n and len(self._features) == n else None
            change = np.array(self._hidden_change, np.float32) if n and len(self._hidden_change) == n else None
            families = {k: list(v) for k, v in self._feature_families.items()} if features is not None else {}
            monitor = np.array(self._monitor, np.float32) if n and len(self._monitor) == n else None
            return SnapshotReading(self._version, self._episode_id, self._step, arr, features, change, families,
                                   monitor, self._monitor_threshold if monitor is not None else None)


SinkFn = Callable[[Event], None]
