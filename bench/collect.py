"""Prints the collection's throughput figures on the default settings, all measured in one run:

(a) the bare simulator driven by the scripted expert, with rendering: seconds per 200-step episode;
(b) the full collection with one worker (in-process: ensemble, signals, Zarr writes): the same;
    ratio (b) / (a), target <= 1.3;
(c) episodes per hour with 1 worker (in-process) and with N Ray rollout workers (N = cores by
    default) on the same seeds, hence the same episodes; their ratio (target >= 1.7 for N = 2) and
    the scaling efficiency (ratio / N);
(d) the policy ensemble's own cost per query and per control step, batched against sequential, for
    M = 3 and M = 5 members (`bench/ensemble.py`, fewer rounds).

(a) and (b) are normalised per step and scaled to 200 steps, since episodes end early on success or
failure. Rates in (c) run from the collection's start (`CollectionStarted`: the store is open and the
first worker is ready, so model loading and Ray's start are not in it) to its last written episode;
both runs collect the same seeds. Everything runs one after the other on the same machine: the
machine's load during the run is printed with the figures.

    .venv/bin/python bench/collect.py [--episodes 20] [--seed 1000] [--workers N] [--ensemble-rounds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ensemble.py

os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.config import CollectConfig  # noqa: E402
from salus_engine.events import CollectionStarted, EpisodeFinished  # noqa: E402


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


def collection(config: CollectConfig, workers: int) -> tuple[float, int, int]:
    """(seconds from `CollectionStarted` to the last written episode, steps, episodes) of a real
    collection into a temporary store with `workers` rollout workers (1: in-process)."""
    from salus_engine.jobs import run_collection

    config = config.model_copy(deep=True)
    config.workers = workers
    marks: dict[str, float] = {}
    steps = episodes = 0

    def sink(event) -> None:
        nonlocal steps, episodes
        if isinstance(event, CollectionStarted):
            marks["start"] = time.perf_counter()
        elif isinstance(event, EpisodeFinished):
            marks["end"] = time.perf_counter()
            steps += event.length
            episodes += 1

    with tempfile.TemporaryDirectory(prefix="salus-bench-collect-") as tmp:
        config.out = os.path.join(tmp, "store")
        run_collection(config, sink=sink)
    return marks["end"] - marks["start"], steps, episodes


def ensemble_cost(rounds: int) -> None:
    """(d): the ensemble's ms per query and per step, batched and sequential, M = 3 and 5."""
    import torch
    from ensemble import DEFAULT_POLICY_DIR, five_member_folder, measure, member_folders, observations

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seen = observations(6)
    with tempfile.TemporaryDirectory(prefix="salus-bench-ensemble-") as tmp:
        path = five_member_folder(Path(tmp), 5)
        note = (" (members 3 and 4: perturbed copies of 0 and 1, see bench/ensemble.py)"
                if len(member_folders(DEFAULT_POLICY_DIR)) < 5 else "")
        print(f"(d) ensemble cost, 1 torch thread, {rounds} interleaved rounds, medians{note}:")
        for m in (3, 5):
            r = measure(path, m, seen, rounds)
            print(f"    M = {m}: per query batched {r['query batched']:6.1f} ms, sequential {r['query sequential']:6.1f} "
                  f"ms ({r['query sequential'] / r['query batched']:.2f}x); per step batched {r['step batched']:5.1f} ms, "
                  f"sequential {r['step sequential']:5.1f} ms ({r['step sequential'] / r['step batched']:.2f}x)")
    torch.set_num_threads(threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N for (c); default: the cores")
    parser.add_argument("--ensemble-rounds", type=int, default=10, help="rounds for (d); 0 skips (d)")
    args = parser.parse_args()
    config = CollectConfig(episodes=args.episodes, seed=args.seed)
    per = config.sim.max_steps
    load_before = os.getloadavg()[0]
    print(f"settings: cameras {','.join(config.sim.cameras)} at {config.sim.image_size}px, "
          f"{config.policy.ensemble_size} members, chunk every {config.policy.requery_every} steps, "
          f"{config.policy.denoising_steps or 'checkpoint-default'} denoising steps, {config.threads} torch thread "
          f"per worker, {args.episodes} episodes (seeds {args.seed}-{args.seed + args.episodes - 1}), "
          f"{os.cpu_count()} CPUs, load average {load_before:.2f} at the start")
    a_s, a_n = bare_simulator(config)
    b_s, b_n, b_e = collection(config, 1)
    a, b = a_s / a_n * per, b_s / b_n * per
    print(f"(a) bare simulator + scripted expert + rendering: {a:.2f} s per {per}-step episode ({a_n} steps)")
    print(f"(b) full collection, 1 worker (ensemble, signals, Zarr): {b:.2f} s per {per}-step episode ({b_n} steps)")
    print(f"    ratio (b)/(a): {b / a:.2f}  (target <= 1.3)")
    n_s, n_n, n_e = collection(config, args.workers)
    one, many = b_e / b_s * 3600.0, n_e / n_s * 3600.0
    print(f"(c) 1 worker (in-process): {one:6.0f} episodes/h ({b_e} episodes, {b_s:.1f} s)")
    print(f"    {args.workers} Ray workers:       {many:6.0f} episodes/h ({n_e} episodes, {n_s:.1f} s, "
          f"{'same' if n_n == b_n else 'DIFFERENT'} steps: {n_n})")
    print(f"    {args.workers} workers / 1 worker: {many / one:.2f}x  (target >= 1.7 for 2 workers), "
          f"scaling efficiency {many / one / args.workers:.0%}")
    if args.ensemble_rounds:
        ensemble_cost(args.ensemble_rounds)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
