"""Episodes per hour of a collection in-process (1 worker) against N Ray workers, same settings,
measured one after the other in the same run. Prints both figures and the settings.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 .venv/bin/python bench/collect_workers.py [--episodes 12] [--workers 2]

The rate counts from the first written episode to the last (`EpisodeFinished` events), so neither
the ensemble load nor the Ray start-up is in it; both are printed separately as wall time in all.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from salus_engine.config import CollectConfig  # noqa: E402
from salus_engine.events import EpisodeFinished  # noqa: E402
from salus_engine.jobs import run_collection  # noqa: E402


def measure(out: Path, episodes: int, workers: int, image_size: int, max_steps: int) -> tuple[float, float]:
    """(episodes per hour between the first and the last written episode, wall seconds in all)."""
    config = CollectConfig(episodes=episodes, out=str(out), seed=0, workers=workers)
    config.sim.image_size = image_size
    config.sim.max_steps = max_steps
    written: list[float] = []

    def sink(event) -> None:
        if isinstance(event, EpisodeFinished):
            written.append(time.perf_counter())

    t0 = time.perf_counter()
    run_collection(config, sink=sink)
    wall = time.perf_counter() - t0
    rate = (len(written) - 1) / max(1e-9, written[-1] - written[0]) * 3600.0
    return rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=24)
    args = parser.parse_args()
    print(f"{args.episodes} episodes, {args.image_size} px, at most {args.max_steps} steps, embedded ensemble, "
          f"1 torch thread per worker, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as folder:
        for workers in (1, args.workers):
            rate, wall = measure(Path(folder) / f"w{workers}", args.episodes, workers, args.image_size, args.max_steps)
            where = "in-process" if workers == 1 else f"{workers} Ray workers"
            print(f"{where:>14}: {rate:7.0f} episodes/h (first to last written episode), {wall:6.1f} s in all")


if __name__ == "__main__":
    main()
