"""Prints the per-step cost of each signal family: the extractor's own computation per family
(from the ensemble outputs of real episodes) and the extra inference of chunk entropy (a query with
K = 0, 2, 4 entropy samples), with the default collection's query time for scale.

Real parts only: the embedded ensemble drives the simulator for `--episodes` episodes on the default
settings (or `--image-size` / `--max-steps`); every step's executed action and `ChunkQuery` are kept
and the extractors re-run over them, timed per family.

    .venv/bin/python bench/signal_families.py [--episodes 2] [--max-steps 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed

from salus_engine.config import load_collect_config  # noqa: E402
from salus_engine.signal_families import DEFAULT_FAMILIES, FamilyExtractor, FamilyLayout  # noqa: E402
from salus_engine.signals import SignalExtractor  # noqa: E402


def capture_steps(episodes: int, max_steps: int | None, image_size: int | None, entropy_samples: int = 0,
                  seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray, object]], object, object]:
    """Runs real episodes and keeps each step's (member actions (M, 7), executed action (7,), ChunkQuery or None,
    robot state (8,) and front-camera frame (S, S, 3) uint8 of the step's observation).

    Returns:
        (steps, the collection config, the ensemble) — the ensemble stays loaded for timing queries.
    """
    import torch

    from salus_engine.policy import PolicyEnsemble
    from salus_engine.sim import PickPlaceEnv

    sim = {k: v for k, v in (("max_steps", max_steps), ("image_size", image_size)) if v}
    config = load_collect_config(None, sim=sim, policy={"entropy_samples": entropy_samples},
                                 signals=",".join(DEFAULT_FAMILIES) + (",chunk_entropy" if entropy_samples else ""))
    torch.set_num_threads(config.threads)
    ensemble = PolicyEnsemble(config.policy, cameras=config.sim.cameras)
    env = PickPlaceEnv(config.sim)
    steps = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        ensemble.reset(seed=seed + episode)
        while True:
            action, members = ensemble.step(obs)
            steps.append((members, action, ensemble.last_query, np.array(obs["state"]), obs["images"]["front"].copy()))
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    env.close()
    return steps, config, ensemble


def time_extractor(steps, layout: FamilyLayout, requery_every: int, repeats: int = 3) -> float:
    """Median over `repeats` passes of the mean time per step of `FamilyExtractor.update`, microseconds."""
    extractor = FamilyExtractor(layout, requery_every)
    passes = []
    for _ in range(repeats):
        extractor.reset()
        t0 = time.perf_counter()
        for _members, action, query, _state, _frame in steps:
            extractor.update(action, query)
        passes.append((time.perf_counter() - t0) / len(steps) * 1e6)
    return float(np.median(passes))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--queries", type=int, default=10, help="queries timed per entropy-sample count")
    args = parser.parse_args()

    steps, config, ensemble = capture_steps(args.episodes, args.max_steps, args.image_size, entropy_samples=2)
    queries = sum(1 for s in steps if s[2] is not None)
    print(f"{len(steps)} steps of {args.episodes} real episodes ({queries} queries, re-query every "
          f"{config.policy.requery_every} steps, M = {ensemble.ensemble_size}, query {ensemble.query_mode})")
    signals = SignalExtractor()
    t0 = time.perf_counter()
    for members, _action, _query, _state, _frame in steps:
        signals.update(members)
    print(f"  six signals: {(time.perf_counter() - t0) / len(steps) * 1e6:.1f} us per step")
    width = ensemble.embedding_width
    for family in ("chunk_consistency", "flow_disagreement", "chunk_entropy", "hidden_state", "action_jerk"):
        layout = FamilyLayout.build((family,), 2, ensemble.sampler_reason, width)
        print(f"  {family}: {time_extractor(steps, layout, config.policy.requery_every):.1f} us per step "
              "(extractor only)")
    layout = FamilyLayout.build(DEFAULT_FAMILIES, 0, ensemble.sampler_reason, width)
    print(f"  all default families: {time_extractor(steps, layout, config.policy.requery_every):.1f} us per step")

    from salus_engine.sim import PickPlaceEnv

    env = PickPlaceEnv(config.sim)
    obs, _ = env.reset(seed=0)
    base = None
    for k in (0, 2, 4):
        ensemble.config.entropy_samples = k
        ensemble.reset(seed=0)
        times = []
        for _ in range(args.queries):
            t0 = time.perf_counter()
            ensemble._query(obs)  # one re-query, as at every requery_every-th step
            times.append(time.perf_counter() - t0)
        ms = float(np.median(times)) * 1e3
        base = ms if base is None else base
        print(f"  query with K = {k} entropy samples: {ms:.1f} ms ({ms / base:.2f}x), "
              f"{ms / config.policy.requery_every:.1f} ms per step")
    env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
