"""Prints what the monitor in the loop costs per control step, measured in one run:

(a) a control step of the collection without a monitor (ensemble, signals and families, simulator with
    rendering), ms per step over `--episodes` episodes;
(b) the closed loop's own work per step (`ClosedLoop.step`: the predictor's online step, the alarm
    rule, the trigger and the intervention bookkeeping), µs per step, measured on the same episodes'
    recorded inputs with the `none` trigger (scores and records, never acts), median and 95th
    percentile;
(c) their ratio, b / a.

    .venv/bin/python bench/closed_loop.py --monitor RUN [--threshold 0.5] [--episodes 5] [--seed 5000]

RUN is a `salus train` run folder; without an evaluation in RUN/evaluation give --threshold.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed
os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from salus_engine.config import CollectConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitor", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "console_run"))
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=5000)
    args = parser.parse_args()

    import torch

    from salus_engine.jobs import StepExtractors, family_layout, load_monitor
    from salus_engine.monitor import ClosedLoop
    from salus_engine.policy import PolicyEnsemble
    from salus_engine.signal_families import FamilyExtractor
    from salus_engine.signals import SignalExtractor
    from salus_engine.sim import PickPlaceEnv

    config = CollectConfig(episodes=args.episodes, seed=args.seed)
    config.monitor.run = args.monitor
    config.monitor.threshold = args.threshold
    config.monitor.trigger = "none"
    torch.set_num_threads(config.threads)
    ensemble = PolicyEnsemble(config.policy, cameras=config.sim.cameras)
    env = PickPlaceEnv(config.sim)
    layout = family_layout(config, ensemble)
    setup = load_monitor(config, layout)
    loop = ClosedLoop(setup, env, ensemble)
    extractors = StepExtractors(SignalExtractor(), FamilyExtractor(layout, config.policy.requery_every))

    recorded, step_seconds = [], []
    for i in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + i)
        ensemble.reset(seed=args.seed + i)
        extractors.reset()
        inputs = []
        while True:
            t0 = time.perf_counter()
            action, members = ensemble.step(obs)
            signals = extractors.signals.update(members)
            features, hidden = extractors.families.update(action, ensemble.last_query)
            obs_before = obs
            obs, _r, terminated, truncated, _info = env.step(action)
            step_seconds.append(time.perf_counter() - t0)
            inputs.append((obs_before, action, signals, features, hidden))
            if terminated or truncated:
                break
        recorded.append(inputs)

    loop_seconds = []
    for inputs in recorded:
        loop.reset()
        for step, (obs, action, signals, features, hidden) in enumerate(inputs):
            t0 = time.perf_counter()
            loop.step(step, obs, action, signals, features, hidden)
            loop_seconds.append(time.perf_counter() - t0)

    steps = len(step_seconds)
    a = float(np.mean(step_seconds))
    b = np.array(loop_seconds)
    print(f"monitor {args.monitor}: {setup.predictor.spec.kind} model on {', '.join(setup.predictor.spec.features)}; "
          f"{args.episodes} episodes, {steps} steps, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"(a) control step without the monitor: {a * 1e3:.1f} ms")
    print(f"(b) closed loop per step: median {np.median(b) * 1e6:.0f} µs, p95 {np.percentile(b, 95) * 1e6:.0f} µs")
    print(f"(c) ratio b / a: {np.mean(b) / a:.4f}")
    env.close()
    ensemble.close()


if __name__ == "__main__":
    main()
