"""Engine jobs shared by the console and the CLI: each takes an event sink and a stop token.

A stop request (`stop.set()`) ends a collection after the current episode; nothing recorded is lost.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

import numpy as np

from salus_engine import OUTCOME_NAMES
from salus_engine.config import CollectConfig
from salus_engine.events import (
    CollectionFinished,
    CollectionStarted,
    CollectionSummary,
    EpisodeFinished,
    EventSink,
    LogLine,
    SignalSnapshot,
    discard,
    hidden_change,
)
from salus_engine.resources import sample_memory
from salus_engine.signal_families import FamilyExtractor, FamilyLayout
from salus_engine.signals import SignalExtractor
from salus_engine.store import EpisodeRecord, EpisodeStore, EpisodeWriter, StoreError, make_horizon_labels
from salus_engine.store.writer import json_attribute

RESOURCE_SAMPLE_EVERY = 30
"""Steps between memory samples during a collection (about once a second of simulated time)."""


def family_layout(config: CollectConfig, ensemble) -> FamilyLayout:
    """The signal families this collection records with this ensemble (`CollectConfig.signals`,
    less those the ensemble cannot give, which are logged)."""
    return FamilyLayout.build(config.signals, config.policy.entropy_samples, ensemble.sampler_reason,
                              ensemble.embedding_width)


def open_writer(config: CollectConfig, ensemble_size: int, layout: FamilyLayout | None = None,
                monitor: dict | None = None) -> EpisodeWriter:
    """Creates the collection store, or opens it for `--resume` (which creates it when absent).

    `layout` (the recorded signal families) is compared with a resumed store's and written into a
    new one; None only checks an existing store early, before the ensemble is loaded (a new store
    is then refused as not empty, or resumed without the families' comparison). `monitor` is the
    runtime monitor's store attribute (`MonitorSetup.store_attrs`), None without one; a resumed
    store must have been collected with the same monitor settings.

    Raises:
        StoreError: the out folder is not empty without resume, is not a SALUS store or is damaged
            with resume, cannot be created (a file, under a file, not writable), or resume with
            cameras, image size, ensemble size, signal families or monitor settings different from
            the store's.
    """
    if config.resume and EpisodeStore.exists(config.out):
        writer = EpisodeWriter.open_for_resume(config.out, config.store.compression_level)
        attrs = writer.attrs
        mismatch = []
        if tuple(attrs["cameras"]) != tuple(config.sim.cameras):
            mismatch.append(f"cameras {attrs['cameras']} vs {list(config.sim.cameras)}")
        if int(attrs["image_size"]) != config.sim.image_size:
            mismatch.append(f"image size {attrs['image_size']} vs {config.sim.image_size}")
        if int(attrs["ensemble_size"]) != ensemble_size:
            mismatch.append(f"ensemble size {attrs['ensemble_size']} vs {ensemble_size}")
        if layout is not None and "feature_families" in attrs and (attrs["feature_families"], int(attrs["hidden_dim"])) != (
                layout.feature_families, layout.hidden_dim):
            mismatch.append(f"signal families {sorted(attrs['feature_families'])} (hidden {attrs['hidden_dim']}) vs "
                            f"{sorted(layout.feature_families)} (hidden {layout.hidden_dim})")
        if layout is not None and (attrs.get("monitor") or None) != (json_attribute(monitor) if monitor else None):
            mismatch.append("the runtime monitor's settings (monitor.*, --monitor)")
        if mismatch:
            writer.close()
            raise StoreError(f"cannot resume {config.out}: the store was collected with other settings "
                             f"({'; '.join(mismatch)}); use the store's settings or another --out")
        return writer
    layout = layout if layout is not None else FamilyLayout(families=())
    return EpisodeWriter.create(
        config.out,
        horizons=config.store.horizons,
        cameras=config.sim.cameras,
        image_size=config.sim.image_size,
        ensemble_size=ensemble_size,
        base_seed=config.seed,
        policy=config.policy.path,
        sim_config=dataclasses.asdict(config.sim),
        compression_level=config.store.compression_level,
        feature_families=layout.feature_families,
        hidden_dim=layout.hidden_dim,
        hidden_projection=layout.projection,
        monitor=monitor,
    )


def run_collection(
    config: CollectConfig,
    sink: EventSink = discard,
    stop: threading.Event | None = None,
    snapshot: SignalSnapshot | None = None,
    schedules: dict[int, list] | None = None,
) -> CollectionSummary:
    """Collects `config.episodes` episodes (in total, counting those already in a resumed store).

    Per step: the ensemble sees the observation, returns the executed action (7,) and member actions
    (M, 7); the six signals (6,) come from the member actions; the env steps. When the episode ends,
    its physics outcome labels it and the whole episode is written atomically.

    With `config.workers` > 1 or a Ray `config.address`, the episodes run on Ray actors and this
    process only writes them (`salus_engine.distributed.parallel_collection`); the store is the same.
    torch uses `config.threads` CPU threads while collecting (restored afterwards).

    Args:
        config: the collection settings.
        sink: receives `CollectionStarted`, `EpisodeFinished`, `ResourceSample`, `LogLine`,
            `CollectionFinished` (and `WorkerStateChanged` with Ray workers).
        stop: when set, the job ends after the current episode (every worker's, with Ray workers).
        snapshot: receives each step's signals and family columns for live display (in-process
            collection only).
        schedules: seed -> that episode's placebo interventions (`ScheduledIntervention`s), for a
            monitor with the `random` or `blind` trigger (`salus trial`).

    With `config.monitor.run` set, the runtime monitor acts in every episode
    (`salus_engine.monitor.ClosedLoop`) and the store records it (format 4).

    Raises:
        SalusError (StoreError, ConfigError, PolicyLoadError, ...): a user-fixable problem (one-line
            message). The store is created only after the ensemble and the simulator accepted the
            settings, so a refused setting leaves no store behind.
    """
    stop = stop or threading.Event()
    if config.uses_ray:
        from salus_engine.distributed.parallel_collection import run_parallel_collection

        return run_parallel_collection(config, sink=sink, stop=stop, schedules=schedules)
    import torch  # heavy imports (torch, lerobot) only when collecting

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _collect_in_process(config, sink, stop, snapshot, schedules or {})
    finally:
        torch.set_num_threads(previous_threads)


def load_monitor(config: CollectConfig, layout: FamilyLayout | None = None):
    """The collection's runtime monitor (`MonitorSetup`) bound to its signal families (unless `layout`
    is None: then only loaded, to refuse wrong settings before the ensemble loads), or None when
    `config.monitor.run` is empty.

    Raises:
        PredictorError, InterventionError: see `MonitorSetup.load` and `MonitorSetup.bind`.
    """
    if not config.monitor.enabled:
        return None
    from salus_engine.monitor import MonitorSetup

    setup = MonitorSetup.load(config.monitor)
    if layout is not None:
        setup.bind(layout.feature_families, layout.hidden_dim, config.sim.cameras)
    return setup


def _collect_in_process(config: CollectConfig, sink: EventSink, stop: threading.Event,
                        snapshot: SignalSnapshot | None, schedules: dict[int, list]) -> CollectionSummary:
    """`run_collection` without Ray: one simulator and one ensemble in this process."""
    from salus_engine.policy import PolicyEnsemble
    from salus_engine.sim import PickPlaceEnv

    started = time.perf_counter()
    # check the store (or that it can be created) before spending seconds on loading the ensemble
    if EpisodeStore.exists(config.out):
        open_writer(config, config.policy.ensemble_size).close()
    else:
        EpisodeWriter.check_new_path(config.out)
    setup = load_monitor(config)  # a wrong monitor setting is refused before the ensemble loads
    # Everything that can refuse the settings (policy, simulator) is built before the store is
    # created, so a rejected setting never leaves an empty store behind.
    ensemble = PolicyEnsemble(config.policy, cameras=config.sim.cameras)
    env = writer = None
    try:
        env = PickPlaceEnv(config.sim)
        layout = family_layout(config, ensemble)
        loop = None
        if setup is not None:
            from salus_engine.monitor import ClosedLoop

            setup.bind(layout.feature_families, layout.hidden_dim, config.sim.cameras)
            loop = ClosedLoop(setup, env, ensemble)
        writer = open_writer(config, ensemble.ensemble_size, layout, None if setup is None else setup.store_attrs())
        extractors = StepExtractors(SignalExtractor(), FamilyExtractor(layout, config.policy.requery_every))
        summary = _collect(config, ensemble, env, writer, extractors, sink=sink, stop=stop,
                           snapshot=snapshot, started=started, loop=loop, schedules=schedules)
    finally:
        if env is not None:
            env.close()
        ensemble.close()
        if writer is not None:
            writer.close()
    sink(CollectionFinished(job="collect", stopped=summary.stopped, summary=summary))
    return summary


def _collect(config: CollectConfig, ensemble, env, writer: EpisodeWriter, extractor: StepExtractors,
             sink: EventSink, stop: threading.Event, snapshot: SignalSnapshot | None,
             started: float, loop=None, schedules: dict[int, list] | None = None) -> CollectionSummary:
    """The episode loop of `run_collection`, into an open writer."""
    outcomes: Counter[str] = Counter()
    written = 0
    first = writer.next_episode_id
    total = config.episodes
    sink(CollectionStarted(job="collect", total=total, out=str(writer.path), first_episode=first,
                           ensemble_size=ensemble.ensemble_size))
    if first >= total:
        sink(LogLine("info", f"{writer.path} already holds {first} episodes; nothing to collect"))
    while writer.next_episode_id < total and not stop.is_set():
        episode_id = writer.next_episode_id
        seed = writer.seed_for(episode_id)
        t0 = time.perf_counter()
        record = run_episode(env, ensemble, extractor, episode_id, seed, config, sink, snapshot, loop=loop,
                             schedule=(schedules or {}).get(seed))
        writer.write(record)
        written += 1
        name = OUTCOME_NAMES[record.failure_type]
        outcomes[name] += 1
        sink(episode_finished(record, writer, seconds=time.perf_counter() - t0, total=total))
    return CollectionSummary(out=str(writer.path), episodes_written=written, total_in_store=writer.next_episode_id,
                             outcomes=dict(outcomes), stopped=stop.is_set() and writer.next_episode_id < total,
                             seconds=time.perf_counter() - started)


def episode_finished(record: EpisodeRecord, writer: EpisodeWriter, seconds: float, total: int) -> EpisodeFinished:
    """The `EpisodeFinished` event of `record`, just written by `writer` (in-process and Ray collections).

    It carries the episode's signals (T, 6), its horizon labels (T, H, 4) for the store's horizons,
    its family columns (T, F) with the store's `feature_families` (None and {} when the store records
    none) and the change of its hidden features (T,) (`events.hidden_change`; None without them),
    never the images or the hidden vectors themselves.

    Args:
        record: the episode as written.
        writer: the store's writer, after `writer.write(record)` (its `next_episode_id` counts it).
        seconds: wall-clock time of the episode, s.
        total: episodes the store should hold at the end.
    """
    attrs = writer.attrs
    families = {str(k): [str(c) for c in v] for k, v in (attrs.get("feature_families") or {}).items()}
    has_features = bool(families) and record.features is not None and record.features.size > 0
    horizons = tuple(int(h) for h in attrs["horizons"])
    return EpisodeFinished(
        episode_id=record.episode_id, seed=record.seed, failure_type=record.failure_type,
        failure_step=record.failure_step, length=record.length, seconds=seconds,
        done=writer.next_episode_id, total=total, max_uncertainty=float(record.signals[:, 0].max()),
        signals=record.signals,
        horizon_labels=make_horizon_labels(record.failure_type, record.failure_step, record.length, horizons),
        features=np.asarray(record.features, dtype=np.float32) if has_features else None,
        feature_families=families if has_features else {},
        hidden_change=hidden_change(record.hidden_features),
        alarms=0 if record.alarm is None else int(record.alarm.sum()),
        interventions=None if record.intervention is None else list(record.interventions),
        intervention=record.intervention,
    )


@dataclasses.dataclass
class StepExtractors:
    """The per-step extractors of a collection: the six signals and the recorded signal families."""

    signals: SignalExtractor
    families: FamilyExtractor

    def reset(self) -> None:
        self.signals.reset()
        self.families.reset()


def run_episode(env, ensemble, extractor: StepExtractors, episode_id: int, seed: int, config: CollectConfig,
                sink: EventSink = discard, snapshot: SignalSnapshot | None = None, loop=None,
                schedule: list | None = None) -> EpisodeRecord:
    """Runs one episode of the ensemble in the env and returns it, not yet written.

    The episode depends on its seed alone: the env is reset with `seed` (scene randomisation), the
    ensemble with `seed` (its shared flow-matching noise sequence, with `PolicyConfig.seed`), and the
    signal extractor is cleared; the result does not depend on what ran before in the same process.
    (Float sums also depend on torch's thread count: see `CollectConfig.threads`.)

    With a `loop` (`salus_engine.monitor.ClosedLoop`), the monitor scores every step and its
    interventions choose the executed action (or stop the episode); `schedule` is the episode's
    placebo schedule (`ScheduledIntervention`s) for the `random` and `blind` triggers. Without one,
    the executed action is the ensemble's.

    Returns:
        An `EpisodeRecord` with T steps: images (T, C, 3, S, S) uint8, states (T, 8), actions (T, 7)
        (executed), member actions (T, M, 7) (what the members proposed), signals (T, 6), features
        (T, F) float32, hidden features (T, D) float16 (None when not recorded), the physics outcome
        and, with a loop, the monitor's probabilities (T, H_m, 4), alarm, intervention and actor (T,)
        and its list of interventions.
    """
    obs, _info = env.reset(seed=seed)
    ensemble.reset(seed=seed)
    extractor.reset()
    if loop is not None:
        loop.reset(schedule)
    if snapshot is not None:
        snapshot.reset(episode_id, extractor.families.layout.feature_families,
                       monitor_threshold=None if loop is None else loop.setup.threshold)
    cameras = config.sim.cameras
    images, states, actions, members, signals, features, hidden = [], [], [], [], [], [], []
    monitored: list = []
    step = 0
    while True:
        action, member_actions = ensemble.step(obs)
        step_signals = extractor.signals.update(member_actions)
        step_features, step_hidden = extractor.families.update(action, ensemble.last_query)
        decision = None
        if loop is not None:
            decision = loop.step(step, obs, action, step_signals, step_features, step_hidden)
            action = decision.action
            monitored.append(decision)
        features.append(step_features)
        hidden.append(step_hidden)
        images.append(np.stack([obs["images"][cam].transpose(2, 0, 1) for cam in cameras]))
        states.append(obs["state"])
        actions.append(action)
        members.append(member_actions)
        signals.append(step_signals)
        if snapshot is not None:
            snapshot.push(step, step_signals, step_features, step_hidden,
                          monitor=None if decision is None else (loop.score, decision.alarm, decision.intervention))
        if step % RESOURCE_SAMPLE_EVERY == 0:
            sink(sample_memory(config.policy.device, config.gpu_budget_gb))
        if decision is not None and decision.stop:
            outcome = env.stop(stopped_by="monitor", alarms=len(loop.alarms))
            break
        obs, _reward, terminated, truncated, info = env.step(action)
        step += 1
        if terminated or truncated:
            outcome = info["outcome"]
            break
    record = EpisodeRecord(
        episode_id=episode_id,
        seed=seed,
        images=np.stack(images),
        states=np.stack(states).astype(np.float32),
        actions=np.stack(actions).astype(np.float32),
        member_actions=np.stack(members).astype(np.float32),
        signals=np.stack(signals),
        failure_type=int(outcome.failure_type),
        failure_step=int(outcome.failure_step),
        evidence=dict(outcome.evidence),
        features=np.stack(features),
        hidden_features=None if hidden[0] is None else np.stack(hidden),
    )
    if loop is not None:
        record.monitor_probabilities = np.stack([d.probabilities for d in monitored]).astype(np.float32)
        record.alarm = np.array([d.alarm for d in monitored], dtype=np.uint8)
        record.intervention = np.array([d.intervention for d in monitored], dtype=np.uint8)
        record.actor = np.array([d.actor for d in monitored], dtype=np.uint8)
        record.interventions = [dict(item) for item in loop.interventions]
    return record
