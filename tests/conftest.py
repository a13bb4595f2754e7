"""Shared fixtures: tiny settings so the real simulator and the real lerobot ensemble run fast."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.config import CollectConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tiny_settings(out, episodes: int = 2, seed: int = 7, **values) -> CollectConfig:
    """Collection settings with small images and short episodes (SALUS_TEST_POLICY: a 2-member ensemble)."""
    config = CollectConfig(**{"episodes": episodes, "out": str(out), "seed": seed, **values})
    if os.environ.get("SALUS_TEST_POLICY"):
        config.policy.path = os.environ["SALUS_TEST_POLICY"]
        config.policy.ensemble_size = 2
    config.sim.image_size = 64
    config.sim.max_steps = 24
    return config


def tiny_flags(max_steps: int = 20) -> list[str]:
    """The command-line flags of small images and short episodes."""
    flags = ["--image-size", "64", "--max-steps", str(max_steps)]
    if os.environ.get("SALUS_TEST_POLICY"):
        flags += ["--policy", os.environ["SALUS_TEST_POLICY"], "--ensemble-size", "2"]
    return flags


def sigkill_after_first_episode(command: list[str], tmp_path, **popen) -> None:
    """Runs a `salus collect` command and SIGKILLs it as soon as it prints its line for episode 0 (that
    episode is then in the store, and the next ones are running); fails unless it was still running."""
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True, **popen)
    try:
        first = next((line for line in proc.stdout if line.startswith("episode")), None)
        assert first is not None, f"the collector ended before its first episode:\n{(tmp_path / 'stderr.txt').read_text()}"
        running = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()  # a failure above must not leave it running
        returncode = proc.wait()
        proc.stdout.close()
    assert running and returncode == -signal.SIGKILL, "the collection ended before the kill"


@pytest.fixture
def tiny_collect_config(tmp_path) -> CollectConfig:
    """A 2-episode collection with small images and short episodes, into a fresh folder."""
    return tiny_settings(tmp_path / "store")
