"""The driver of a parallel collection: hands out episodes to Ray rollout workers and is the single
writer of the store.

Episodes `(episode_id, seed = writer.seed_for(episode_id))` go to idle workers, at most
`IN_FLIGHT_PER_WORKER` per worker handed out and not yet written, so the driver's memory does not
grow with the number of episodes. Finished episodes wait in a reorder buffer until every lower id
is in, then go through the crash-safe `EpisodeWriter` in id order: the store never has a gap,
`--resume` works unchanged, and a finished collection holds exactly ids 0..N-1.

Faults: a worker that dies (its process killed, its node lost) is replaced by a fresh actor and its
episode re-runs with the same seed, hence gives the same episode; an episode whose worker died more
than `MAX_EPISODE_RERUNS` times stops the collection (`WorkerLostError`) after the other workers'
episodes are written. A stop request (SIGTERM, SIGHUP, the console's stop key) hands out no new
episodes; the running ones finish and are written. Killing the driver loses at most the episodes
in flight, and a local Ray it started dies with it.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

from salus_engine import OUTCOME_NAMES
from salus_engine.config import CollectConfig, ConfigError
from salus_engine.distributed.episode_packing import unpack_episode
from salus_engine.distributed.ray_runtime import RayClusterError, cluster_capacity, leave_ray, start_or_join_ray
from salus_engine.distributed.reorder_buffer import EpisodeReorderBuffer
from salus_engine.distributed.rollout_worker import RolloutWorker, WorkerEpisode, WorkerInfo
from salus_engine.errors import SalusError
from salus_engine.events import (
    CollectionFinished,
    CollectionStarted,
    CollectionSummary,
    EventSink,
    LogLine,
    ResourceSample,
    WorkerStateChanged,
    discard,
)
from salus_engine.store import EpisodeStore, EpisodeWriter

log = logging.getLogger(__name__)

IN_FLIGHT_PER_WORKER = 2
"""Episodes handed out and not yet written, per worker: one running on every worker plus room for
finished ones that wait for a slower lower id."""
MAX_EPISODE_RERUNS = 3
"""Re-runs of one episode after its worker died; one more death stops the collection."""
RESTART_WARNING_S = 120.0
"""A replacement worker that has not started after this long is reported as waiting for room, s."""
WAIT_S = 1.0
"""Longest wait for a worker's result before the driver looks at its stop token again, s."""


class WorkerLostError(SalusError):
    """Workers kept dying on one episode (or while starting); the store holds every episode before it."""


@dataclass
class _Worker:
    index: int
    actor: object
    state: str = "starting"
    info: WorkerInfo | None = None
    episode_id: int | None = None
    done: int = 0
    first_episode_at: float | None = None
    memory: ResourceSample | None = None
    start_failures: int = 0
    restarted_at: float | None = None


def run_parallel_collection(config: CollectConfig, sink: EventSink = discard,
                            stop: threading.Event | None = None,
                            schedules: dict[int, list] | None = None) -> CollectionSummary:
    """Collects `config.episodes` episodes (in total) with `config.workers` Ray rollout workers.

    Same store, events and summary as `salus_engine.jobs.run_collection` in-process, plus a
    `WorkerStateChanged` event whenever a worker starts, takes an episode, finishes, dies or is
    released. No per-step signal snapshot: episodes arrive whole. `schedules` (seed -> placebo
    interventions) travel with their episodes to the workers.

    Raises:
        ConfigError: GPUs per worker with a CPU policy device.
        RayClusterError: Ray cannot be started or joined, or the cluster lacks the cores or GPUs
            for the workers.
        StoreError: as in-process (checked before Ray starts).
        PolicyLoadError and other SalusErrors: a worker refused the settings (no store is created).
        WorkerLostError: workers kept dying on one episode.
    """
    stop = stop or threading.Event()
    started = time.perf_counter()
    from salus_engine.jobs import load_monitor, open_writer

    if EpisodeStore.exists(config.out):
        open_writer(config, config.policy.ensemble_size).close()
    else:
        EpisodeWriter.check_new_path(config.out)
    load_monitor(config)  # a wrong monitor setting is refused before Ray starts
    gpus = config.worker_gpus
    if gpus > 0 and not config.policy.device.startswith("cuda"):
        raise ConfigError(f"gpus_per_worker={gpus:g} with policy device {config.policy.device!r}: the workers would "
                          "hold GPUs they do not use; give --device cuda or --gpus-per-worker 0")
    runtime = start_or_join_ray(config.address)
    try:
        summary = _drive(config, sink, stop, started, gpus, schedules or {})
    finally:
        leave_ray(runtime)
    sink(CollectionFinished(job="collect", stopped=summary.stopped, summary=summary))
    return summary


def _worker_config(config: CollectConfig, gpus: float) -> CollectConfig:
    """The settings a worker runs with: a GPU worker sees only its own GPU(s), as `cuda`."""
    worker_config = config.model_copy(deep=True)
    if gpus > 0 and worker_config.policy.device != "cuda":
        log.info("workers use device 'cuda' (Ray gives each its own GPU) instead of %r", config.policy.device)
        worker_config.policy.device = "cuda"
    return worker_config


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _drive(config: CollectConfig, sink: EventSink, stop: threading.Event, started: float,
           gpus: float, schedules: dict[int, list]) -> CollectionSummary:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    from salus_engine.jobs import episode_finished, open_writer

    cores, gpus_total = cluster_capacity()
    need_cores, need_gpus = config.workers * config.threads, config.workers * gpus
    if need_cores > cores or need_gpus > gpus_total + 1e-9:
        fits = int(min(cores // config.threads, gpus_total // gpus if gpus else cores))
        raise RayClusterError(
            f"{config.workers} workers need {need_cores} CPU cores" + (f" and {need_gpus:g} GPUs" if gpus else "")
            + f" but the Ray cluster has {cores:g} cores and {gpus_total:g} GPUs; use --workers {max(1, fits)}"
            + ", fewer --threads" + (" or --gpus-per-worker" if gpus else "") + ", or add nodes to the cluster")
    worker_config = _worker_config(config, gpus)
    remote_worker = ray.remote(RolloutWorker)
    mujoco_gl = os.environ.get("MUJOCO_GL")

    def make_actor(index: int):
        return remote_worker.options(num_cpus=config.threads, num_gpus=gpus, max_restarts=0, max_task_retries=0,
                                     scheduling_strategy="SPREAD").remote(worker_config, index, mujoco_gl)

    workers = [_Worker(i, make_actor(i)) for i in range(config.workers)]
    pending: dict = {}  # ObjectRef -> ("start" | "episode", worker index, episode id or None)

    def emit(worker: _Worker) -> None:
        rate = 0.0
        if worker.done and worker.first_episode_at is not None:
            rate = worker.done / max(1e-9, time.perf_counter() - worker.first_episode_at) * 3600.0
        memory = worker.memory
        sink(WorkerStateChanged(
            worker_index=worker.index, state=worker.state, host=worker.info.host if worker.info else "",
            pid=worker.info.pid if worker.info else 0, node_id=worker.info.node_id if worker.info else "",
            episode_id=worker.episode_id, episodes_done=worker.done,
            episodes_per_hour=rate, memory_used_gb=memory.used_gb if memory else None,
            memory_budget_gb=memory.budget_gb if memory else None, memory_kind=memory.kind if memory else ""))

    for worker in workers:
        pending[worker.actor.start.remote()] = ("start", worker.index, None)
        emit(worker)

    writer: EpisodeWriter | None = None
    buffer: EpisodeReorderBuffer[WorkerEpisode] | None = None
    next_issue = 0
    total = config.episodes
    limit = IN_FLIGHT_PER_WORKER * config.workers
    reruns: Counter[int] = Counter()
    retry: list[int] = []  # heap of episode ids whose worker died
    outcomes: Counter[str] = Counter()
    written = 0
    failure: BaseException | None = None

    def replace(worker: _Worker, why: str) -> None:
        """Kills what is left of a dead worker and starts a fresh actor in its place."""
        try:
            ray.kill(worker.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        log.warning("worker %d (%s) %s; replacing it", worker.index,
                    f"{worker.info.host} pid {worker.info.pid}" if worker.info else "not started", why)
        worker.actor = make_actor(worker.index)
        worker.info = None
        worker.state, worker.restarted_at = "restarting", time.perf_counter()
        emit(worker)
        pending[worker.actor.start.remote()] = ("start", worker.index, None)

    def hand_out() -> None:
        nonlocal next_issue
        if writer is None or failure is not None:
            return
        for worker in workers:
            if worker.state != "idle":
                continue
            if retry:
                episode_id = heapq.heappop(retry)
            elif not stop.is_set() and next_issue < total and next_issue - buffer.next_id < limit:
                episode_id = next_issue
                next_issue += 1
            else:
                return
            seed = writer.seed_for(episode_id)
            ref = worker.actor.run_episode.remote(episode_id, seed, schedules.get(seed))
            pending[ref] = ("episode", worker.index, episode_id)
            worker.state, worker.episode_id = "running", episode_id
            if worker.first_episode_at is None:
                worker.first_episode_at = time.perf_counter()
            emit(worker)

    def write_ready(finished: list[WorkerEpisode]) -> None:
        nonlocal written
        for result in finished:
            record = unpack_episode(result.episode)
            writer.write(record)
            written += 1
            name = OUTCOME_NAMES[record.failure_type]
            outcomes[name] += 1
            sink(episode_finished(record, writer, seconds=result.seconds, total=total))

    def finished() -> bool:
        """True when no episode runs, none is left to hand out and every first worker has started. A
        replacement worker that still waits for room in the cluster does not keep a finished
        collection alive."""
        if not pending:
            return True
        if any(kind == "episode" for kind, _index, _episode in pending.values()):
            return False
        if failure is not None or stop.is_set():
            return True
        if writer is None:  # no worker has started yet
            return not pending
        if next_issue < total or retry:
            return False
        # a first worker still loading is awaited (it reports where it runs); a replacement is not
        return not any(kind == "start" and workers[index].state == "starting"
                       for kind, index, _episode in pending.values())

    waiting_logged: set[int] = set()
    try:
        while not finished():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
            if not ready:
                for _kind, index, _episode in pending.values():
                    worker = workers[index]
                    if (worker.state == "restarting" and index not in waiting_logged
                            and time.perf_counter() - worker.restarted_at > RESTART_WARNING_S):
                        waiting_logged.add(index)
                        log.warning("worker %d waits for the cluster to have room for it again "
                                    "(%g cores%s); stop with SIGTERM, or add a node", index, config.threads,
                                    f", {gpus:g} GPUs" if gpus else "")
            for ref in ready:
                kind, index, episode_id = pending.pop(ref)
                worker = workers[index]
                try:
                    result = ray.get(ref)
                except RayActorError as err:
                    if kind == "start":
                        worker.start_failures += 1
                        if worker.start_failures > MAX_EPISODE_RERUNS:
                            failure = failure or WorkerLostError(
                                f"worker {index} died {worker.start_failures} times while starting "
                                f"({_first_line(err)}); see the Ray logs (/tmp/ray/session_latest/logs on its "
                                "node), then continue with --resume")
                            worker.state = "stopped"
                            emit(worker)
                        elif failure is None:
                            replace(worker, "died while starting")
                        continue
                    reruns[episode_id] += 1
                    sink(LogLine("warning", f"worker {index} died during episode {episode_id} "
                                            f"({_first_line(err)}); re-running it with the same seed"))
                    worker.episode_id = None
                    if reruns[episode_id] > MAX_EPISODE_RERUNS:
                        failure = failure or WorkerLostError(
                            f"workers died {reruns[episode_id]} times on episode {episode_id}; the store holds the "
                            "episodes before it: see the Ray logs (/tmp/ray/session_latest/logs on the worker's "
                            "node), then continue with --resume")
                        worker.state = "stopped"
                        emit(worker)
                    elif failure is None:
                        heapq.heappush(retry, episode_id)
                        replace(worker, f"died during episode {episode_id}")
                    continue
                except RayTaskError as err:
                    cause = getattr(err, "cause", None)
                    failure = failure or (cause if isinstance(cause, SalusError) else err)
                    worker.state, worker.episode_id = "stopped", None
                    emit(worker)
                    continue
                if kind == "start":
                    worker.info, worker.state, worker.start_failures = result, "idle", 0
                    if writer is None and failure is None:
                        # the settings passed a worker: create (or reopen) the store now
                        writer = open_writer(config, result.ensemble_size, result.layout, result.monitor)
                        buffer = EpisodeReorderBuffer(writer.next_episode_id, limit)
                        next_issue = writer.next_episode_id
                        sink(CollectionStarted(job="collect", total=total, out=str(writer.path),
                                               first_episode=writer.next_episode_id,
                                               ensemble_size=result.ensemble_size))
                        if writer.next_episode_id >= total:
                            sink(LogLine("info", f"{writer.path} already holds {writer.next_episode_id} episodes; "
                                                 "nothing to collect"))
                        for note in result.notes:
                            log.warning("policy mapping: %s", note)
                    log.info("worker %d ready on %s (pid %d, node %s, query %s)", index, result.host, result.pid,
                             result.node_id[:12], result.query_mode)
                    emit(worker)
                    continue
                worker.done += 1
                worker.state, worker.episode_id, worker.memory = "idle", None, result.memory
                emit(worker)
                sink(result.memory)
                write_ready(buffer.add(episode_id, result))
            hand_out()
    finally:
        for worker in workers:
            try:
                ray.kill(worker.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
            if worker.state != "stopped":
                worker.state, worker.episode_id = "stopped", None
                emit(worker)
        if writer is not None:
            writer.close()
    if failure is not None:
        if buffer is not None and len(buffer):
            log.warning("collection failed: %d finished episodes after the missing episode %d are not written: %s",
                        len(buffer), buffer.next_id, buffer.held_ids)
        raise failure
    in_store = writer.next_episode_id if writer is not None else 0
    return CollectionSummary(out=str(writer.path if writer is not None else config.out), episodes_written=written,
                             total_in_store=in_store, outcomes=dict(outcomes),
                             stopped=stop.is_set() and in_store < total, seconds=time.perf_counter() - started)
