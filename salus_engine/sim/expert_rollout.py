"""One scripted-expert episode, start to end: the loop bench/collect.py and demonstration recording use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from salus_engine.sim.env import PickPlaceEnv
from salus_engine.sim.expert import ScriptedExpert
from salus_engine.sim.outcome import EpisodeOutcome


def run_expert_episode(
    env: PickPlaceEnv,
    expert: ScriptedExpert,
    seed: int,
    on_step: Callable[[dict[str, Any], np.ndarray], None] | None = None,
) -> tuple[EpisodeOutcome, int]:
    """Resets `env` with `seed`, lets `expert` act until the episode ends.

    Args:
        env: the environment (its `config.cameras` decide what is rendered).
        expert: a `ScriptedExpert` bound to `env`; its noise generator is reseeded with `seed`.
        seed: episode seed (initial conditions and expert noise).
        on_step: called as `on_step(observation, action)` before every step, with the observation
            the action was chosen from (dict as returned by the env) and the (7,) float32 action;
            use it to record demonstrations.

    Returns:
        (outcome, steps): the `EpisodeOutcome` and the number of steps taken (1..max_steps).
    """
    observation, _ = env.reset(seed=seed)
    expert.reset(seed=seed)
    steps = 0
    while True:
        action = expert.act(observation)
        if on_step is not None:
            on_step(observation, action)
        observation, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            return info["outcome"], steps
