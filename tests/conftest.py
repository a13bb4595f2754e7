"""Shared fixtures: tiny settings so the real simulator and the real lerobot ensemble run fast."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.config import CollectConfig  # noqa: E402


@pytest.fixture
def tiny_collect_config(tmp_path) -> CollectConfig:
    """A 2-episode collection with small images and short episodes, into a fresh folder."""
    config = CollectConfig(episodes=2, out=str(tmp_path / "store"), seed=7)
    if os.environ.get("SALUS_TEST_POLICY"):
        config.policy.path = os.environ["SALUS_TEST_POLICY"]
        config.policy.ensemble_size = 2
    config.sim.image_size = 64
    config.sim.max_steps = 24
    return config
