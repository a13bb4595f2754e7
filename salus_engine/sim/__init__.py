"""The pick-and-place task in MuJoCo: scene, gymnasium environment, outcome labels, scripted expert.

Rendering is headless: unless `MUJOCO_GL` is already set, it is set to `egl` here, before MuJoCo is
imported (`osmesa` also works where `libosmesa6` is installed).
"""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.sim.env import INSTRUCTION, PickPlaceEnv, TaskState  # noqa: E402
from salus_engine.sim.expert import ScriptedExpert  # noqa: E402
from salus_engine.sim.expert_rollout import run_expert_episode  # noqa: E402
from salus_engine.sim.outcome import EpisodeOutcome  # noqa: E402

__all__ = ["INSTRUCTION", "EpisodeOutcome", "PickPlaceEnv", "ScriptedExpert", "TaskState", "run_expert_episode"]
