"""Closed-loop evaluation of a policy ensemble in the simulator: outcome rates and step cost.

Used to check that the embedded default is a plausible but imperfect policy (issue: success between
25 % and 80 %, at least three of the four failure types over 50 episodes).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from salus_engine import OUTCOME_NAMES
from salus_engine.config import PolicyConfig, SimConfig
from salus_engine.events import EventSink, ProgressUpdate, discard


@dataclass
class EpisodeRecord:
    seed: int
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout."""
    failure_step: int
    length: int
    mean_disagreement: float
    """Mean over steps of the mean-over-dims std across members (signal 1, population std)."""


@dataclass
class PolicyEvaluation:
    episodes: list[EpisodeRecord] = field(default_factory=list)
    policy_seconds_per_step: float = 0.0
    """Mean wall-clock time of `PolicyEnsemble.step`, s (amortised over re-queries)."""
    env_seconds_per_step: float = 0.0
    """Mean wall-clock time of `PickPlaceEnv.step` including rendering, s."""

    def counts(self) -> dict[str, int]:
        """Outcome name -> number of episodes, every outcome listed."""
        c = Counter(OUTCOME_NAMES[e.failure_type] for e in self.episodes)
        return {name: c.get(name, 0) for name in OUTCOME_NAMES.values()}

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.failure_type == -1 for e in self.episodes])) if self.episodes else 0.0

    def summary(self) -> str:
        """One line: episodes, success rate, counts per outcome, time per step."""
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return (f"{len(self.episodes)} episodes: success {self.success_rate:.0%} ({counts}); "
                f"policy {self.policy_seconds_per_step * 1e3:.1f} ms/step, env {self.env_seconds_per_step * 1e3:.1f} ms/step")


def evaluate_policy(policy_config: PolicyConfig, sim_config: SimConfig, episodes: int, seed: int = 0,
                    sink: EventSink = discard, stop: threading.Event | None = None) -> PolicyEvaluation:
    """Rolls the ensemble of `policy_config` in `PickPlaceEnv(sim_config)` for `episodes` episodes.

    Episode i uses env seed `seed + i` (the ensemble's noise is re-seeded with it too).

    Returns:
        `PolicyEvaluation` with one `EpisodeRecord` per finished episode and mean step times.
    """
    from salus_engine.policy.ensemble import PolicyEnsemble
    from salus_engine.sim import PickPlaceEnv

    env = PickPlaceEnv(sim_config)
    ensemble = PolicyEnsemble(policy_config, tuple(sim_config.cameras))
    result = PolicyEvaluation()
    policy_time = env_time = 0.0
    steps = 0
    try:
        for i in range(episodes):
            if stop is not None and stop.is_set():
                break
            obs, info = env.reset(seed=seed + i)
            ensemble.reset(seed=seed + i, instruction=info["instruction"])
            disagreement = []
            while True:
                t0 = time.perf_counter()
                action, members = ensemble.step(obs)
                t1 = time.perf_counter()
                obs, _, terminated, truncated, info = env.step(action)
                t2 = time.perf_counter()
                policy_time += t1 - t0
                env_time += t2 - t1
                steps += 1
                disagreement.append(float(members.std(axis=0).mean()))
                if terminated or truncated:
                    break
            outcome = info["outcome"]
            result.episodes.append(EpisodeRecord(seed + i, int(outcome.failure_type), int(outcome.failure_step),
                                                 len(disagreement), float(np.mean(disagreement))))
            sink(ProgressUpdate(done=i + 1, total=episodes, message=f"episode {i + 1}: {outcome.name}",
                                values={"failure_type": float(outcome.failure_type), "length": float(len(disagreement))}))
    finally:
        ensemble.close()
        env.close()
    result.policy_seconds_per_step = policy_time / max(1, steps)
    result.env_seconds_per_step = env_time / max(1, steps)
    return result
