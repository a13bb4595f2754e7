"""Prints the collection process's resident set size (RSS) every 10 episodes of an in-process
collection with tiny settings, to find memory that grows per episode (a leak).

    .venv/bin/python bench/collect_rss.py [--episodes 100] [--image-size 64] [--max-steps 30] [--every 10]

Each line: episodes done, RSS in MB, growth since the previous line and since the first line
(the first `--every` episodes are the warm-up: lazy imports, the GL context, allocator pools).
The RSS after loading the ensemble (before episode 1) and after episode 1 is printed too.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "egl")

import psutil  # noqa: E402

from salus_engine.config import CollectConfig  # noqa: E402
from salus_engine.events import EpisodeFinished, JobStarted  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="store folder (default: a temporary folder, removed afterwards)")
    args = parser.parse_args()
    from salus_engine.jobs import run_collection

    process = psutil.Process()
    marks: list[float] = []

    def sink(event) -> None:
        if isinstance(event, JobStarted) or (isinstance(event, EpisodeFinished) and event.done == 1):
            where = "ensemble loaded" if isinstance(event, JobStarted) else "episodes    1"
            print(f"{where}  rss {process.memory_info().rss / 2**20:8.1f} MB", flush=True)
        if isinstance(event, EpisodeFinished) and event.done % args.every == 0:
            gc.collect()
            rss = process.memory_info().rss / 2**20
            previous = marks[-1] if marks else rss
            first = marks[0] if marks else rss
            marks.append(rss)
            print(f"episodes {event.done:4d}  rss {rss:8.1f} MB  +{rss - previous:6.2f} MB since last  "
                  f"+{rss - first:6.2f} MB since episode {args.every}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(episodes=args.episodes, seed=args.seed, out=args.out or os.path.join(tmp, "store"))
        config.sim.image_size = args.image_size
        config.sim.max_steps = args.max_steps
        run_collection(config, sink=sink)
    for start in (0, 1):
        if len(marks) >= start + 2:
            episodes = (len(marks) - 1 - start) * args.every
            grown = marks[-1] - marks[start]
            print(f"from episode {(start + 1) * args.every}: {grown:.2f} MB over {episodes} episodes "
                  f"({grown / episodes * 100:.2f} MB per 100 episodes)")


if __name__ == "__main__":
    main()
