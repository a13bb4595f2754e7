"""One rollout worker of a parallel collection: its own simulator, policy ensemble and signal
extractor, run as a Ray actor (`ray.remote(RolloutWorker)`, created by the driver)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from salus_engine.config import CollectConfig
from salus_engine.distributed.episode_packing import PackedEpisode, pack_episode
from salus_engine.events import ResourceSample
from salus_engine.signal_families import FamilyLayout


@dataclass
class WorkerInfo:
    """What a started worker reports about itself."""

    worker_index: int
    host: str
    """Host name of its node."""
    pid: int
    """Its process id on that host."""
    node_id: str
    """Ray node id (hex) of its node."""
    ensemble_size: int
    """Ensemble members M it loaded."""
    query_mode: str
    """How its ensemble evaluates the members (`PolicyEnsemble.query_mode`)."""
    notes: list[str] = field(default_factory=list)
    """The ensemble's camera / action mapping notes (logged by the driver)."""
    layout: FamilyLayout = field(default_factory=lambda: FamilyLayout(families=()))
    """The signal families it records (the driver creates the store with them)."""
    monitor: dict | None = None
    """Its runtime monitor's store attribute (`MonitorSetup.store_attrs`), None without one."""


@dataclass
class WorkerEpisode:
    """One episode as a worker returns it."""

    episode: PackedEpisode
    seconds: float
    """Wall-clock time of the episode on the worker, s."""
    memory: ResourceSample
    """The worker's memory after the episode (`salus_engine.resources.sample_memory`)."""
    pid: int
    """Process id of the worker that ran it."""


class RolloutWorker:
    """Runs whole episodes on request; the driver decides which (episode id, seed) and writes them.

    An episode depends on its seed alone (`salus_engine.jobs.run_episode`): a worker that is
    replaced after a crash re-runs its episode with the same seed and returns the same episode.

    Args:
        config: the collection settings (`sim`, `policy`, `threads`, `gpu_budget_gb` are used here).
        worker_index: 0-based, stable across restarts.
        mujoco_gl: `MUJOCO_GL` of the driver, used when the worker's environment has none (nodes of a
            cluster started elsewhere).
    """

    def __init__(self, config: CollectConfig, worker_index: int, mujoco_gl: str | None = None) -> None:
        if mujoco_gl and "MUJOCO_GL" not in os.environ:
            os.environ["MUJOCO_GL"] = mujoco_gl
        self._config = config
        self._worker_index = int(worker_index)
        self._env = None
        self._ensemble = None
        self._extractor = None
        self._loop = None

    def start(self) -> WorkerInfo:
        """Loads the ensemble and builds the simulator (once); returns who and where the worker is.

        Raises:
            SalusError (PolicyLoadError, ConfigError, ...): the settings are refused, as in-process.
        """
        import ray

        self._build()
        return WorkerInfo(worker_index=self._worker_index, host=socket.gethostname(), pid=os.getpid(),
                          node_id=ray.get_runtime_context().get_node_id(),
                          ensemble_size=self._ensemble.ensemble_size, query_mode=self._ensemble.query_mode,
                          notes=list(self._ensemble.notes), layout=self._layout,
                          monitor=None if self._loop is None else self._loop.setup.store_attrs())

    def _build(self) -> None:
        if self._ensemble is not None:
            return
        import torch

        from salus_engine.policy import PolicyEnsemble
        from salus_engine.jobs import StepExtractors, family_layout, load_monitor
        from salus_engine.signal_families import FamilyExtractor
        from salus_engine.signals import SignalExtractor
        from salus_engine.sim import PickPlaceEnv

        torch.set_num_threads(self._config.threads)
        self._ensemble = PolicyEnsemble(self._config.policy, cameras=self._config.sim.cameras)
        self._env = PickPlaceEnv(self._config.sim)
        self._layout = family_layout(self._config, self._ensemble)
        self._extractor = StepExtractors(SignalExtractor(),
                                         FamilyExtractor(self._layout, self._config.policy.requery_every))
        setup = load_monitor(self._config, self._layout)  # the run folder must be readable on this node
        if setup is not None:
            from salus_engine.monitor import ClosedLoop

            self._loop = ClosedLoop(setup, self._env, self._ensemble)

    def run_episode(self, episode_id: int, seed: int, schedule: list | None = None) -> WorkerEpisode:
        """Simulates episode `episode_id` from `seed` and returns it with compressed images
        (`schedule`: its placebo interventions in a trial's random or blind arm).

        Raises:
            SalusError: the settings are refused (first episode of a worker that was not started).
        """
        from salus_engine.jobs import run_episode
        from salus_engine.resources import sample_memory

        self._build()
        t0 = time.perf_counter()
        record = run_episode(self._env, self._ensemble, self._extractor, episode_id, seed, self._config,
                             loop=self._loop, schedule=schedule)
        seconds = time.perf_counter() - t0
        return WorkerEpisode(episode=pack_episode(record), seconds=seconds, pid=os.getpid(),
                             memory=sample_memory(self._config.policy.device, self._config.gpu_budget_gb))

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()

    def close(self) -> None:
        """Closes the simulator's renderer and releases the ensemble."""
        if self._env is not None:
            self._env.close()
            self._env = None
        if self._ensemble is not None:
            self._ensemble.close()
            self._ensemble = None
