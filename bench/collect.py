"""Prints seconds per 200-step episode for (a) the bare simulator driven by the scripted expert with
rendering and (b) the full collection (ensemble, signals, Zarr writes), and their ratio.

Both run the default simulator settings (cameras, image size) on the same seeds; times are
normalised per step and scaled to 200 steps, since episodes end early on success or failure.

    .venv/bin/python bench/collect.py [--episodes 10] [--seed 1000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.config import CollectConfig  # noqa: E402
from salus_engine.events import JobFinished, JobStarted  # noqa: E402


def bare_simulator(config: CollectConfig) -> tuple[float, int]:
    """Seconds and steps for `config.episodes` expert episodes with rendering, nothing recorded."""
    from salus_engine.sim import PickPlaceEnv, ScriptedExpert

    env = PickPlaceEnv(config.sim)
    expert = ScriptedExpert(env)
    steps = 0
    env.reset(seed=config.seed)  # warm-up: first render initialises the GL context
    start = time.perf_counter()
    for i in range(config.episodes):
        obs, _ = env.reset(seed=config.seed + i)
        expert.reset()
        while True:
            obs, _r, terminated, truncated, _info = env.step(expert.act(obs))
            steps += 1
            if terminated or truncated:
                break
    seconds = time.perf_counter() - start
    env.close()
    return seconds, steps


def full_collection(config: CollectConfig) -> tuple[float, int]:
    """Seconds (model loading excluded) and steps of a real collection into a temporary store."""
    from salus_engine.jobs import run_collection

    marks: dict[str, float] = {}
    steps = 0

    def sink(event) -> None:
        nonlocal steps
        if isinstance(event, JobStarted):
            marks["start"] = time.perf_counter()
        elif isinstance(event, JobFinished):
            marks["end"] = time.perf_counter()
        elif hasattr(event, "length") and hasattr(event, "episode_id"):
            steps += event.length

    with tempfile.TemporaryDirectory() as tmp:
        config.out = os.path.join(tmp, "store")
        run_collection(config, sink=sink)
    return marks["end"] - marks["start"], steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    config = CollectConfig(episodes=args.episodes, seed=args.seed)
    per = config.sim.max_steps
    a_s, a_n = bare_simulator(config)
    b_s, b_n = full_collection(config)
    a, b = a_s / a_n * per, b_s / b_n * per
    print(f"settings: cameras {','.join(config.sim.cameras)} at {config.sim.image_size}px, "
          f"{config.policy.ensemble_size} members, chunk every {config.policy.requery_every} steps, "
          f"{config.policy.denoising_steps or 'checkpoint-default'} denoising steps, "
          f"{args.episodes} episodes, {os.cpu_count()} CPUs")
    print(f"(a) bare simulator + scripted expert + rendering: {a:.2f} s per {per}-step episode ({a_n} steps)")
    print(f"(b) full collection (ensemble, signals, Zarr):    {b:.2f} s per {per}-step episode ({b_n} steps)")
    print(f"ratio (b)/(a): {b / a:.2f}  (target <= 2.0)")


if __name__ == "__main__":
    main()
