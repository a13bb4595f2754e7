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
from typing import Callable, Protocol

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
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout."""
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


class SignalSnapshot:
    """Lock-protected latest per-step data of a running collection, pulled by the UI on a timer.

    `push` is called from the engine thread every step; `read` returns copies.
    """

    def __init__(self, history: int = 200) -> None:
        self._lock = threading.Lock()
        self._signals: deque[np.ndarray] = deque(maxlen=history)
        self._step = 0
        self._episode_id = -1
        self._version = 0

    def reset(self, episode_id: int) -> None:
        with self._lock:
            self._signals.clear()
            self._step = 0
            self._episode_id = episode_id
            self._version += 1

    def push(self, step: int, signals: np.ndarray) -> None:
        with self._lock:
            self._signals.append(np.asarray(signals, dtype=np.float32).copy())
            self._step = step
            self._version += 1

    def read(self) -> tuple[int, int, int, np.ndarray]:
        """Returns (version, episode_id, step, signals (n, 6) float32) of the current episode."""
        with self._lock:
            arr = np.stack(self._signals) if self._signals else np.zeros((0, 6), np.float32)
            return self._version, self._episode_id, self._step, arr


SinkFn = Callable[[Event], None]
