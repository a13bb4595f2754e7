"""Prints the latency of the online monitor per control step: the six signals and the signal
families computed from the ensemble's outputs, then one `OnlinePredictor.step` of a trained
checkpoint (with the robot state and front-camera frame of the step's observation; a checkpoint that
reads `target_view` locates the cube in that frame inside the step), over the steps of real episodes
(the embedded ensemble in the simulator), in step order.

    .venv/bin/python bench/predict.py --checkpoint checkpoints/RUN [--episodes 2] [--max-steps 120] [--repeats 5]
        [--baseline checkpoints/OTHER]

With `--baseline` a second checkpoint's predictor runs on the same steps in the same pass, the two
predictor steps of each control step timed one after the other (in turns first), and the ratio of
their medians is printed: on a busy machine that ratio holds where the absolute times do not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the capture of real steps in bench/signal_families.py

from signal_families import capture_steps  # noqa: E402

from salus_engine.predictor.checkpoint import read_config  # noqa: E402
from salus_engine.predictor.online import OnlinePredictor  # noqa: E402
from salus_engine.signal_families import DEFAULT_FAMILIES, FamilyExtractor, FamilyLayout  # noqa: E402
from salus_engine.signals import SignalExtractor  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a 'salus train' run folder")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5, help="passes over the captured steps")
    parser.add_argument("--baseline", help="a second run folder timed in the same pass, for the ratio")
    args = parser.parse_args()

    config = read_config(args.checkpoint)
    steps, collect, ensemble = capture_steps(args.episodes, args.max_steps, None)
    layout = FamilyLayout.build(DEFAULT_FAMILIES, 0, ensemble.sampler_reason, ensemble.embedding_width)
    predictors = [OnlinePredictor.load(run) for run in (args.checkpoint, args.baseline) if run]
    for predictor in predictors:
        predictor.bind(layout.feature_families, layout.hidden_dim, collect.sim.cameras)
    signals, families = SignalExtractor(), FamilyExtractor(layout, collect.policy.requery_every)
    features_us: list[float] = []
    step_us: list[list[float]] = [[] for _ in predictors]
    turn = 0
    for _ in range(args.repeats):
        signals.reset()
        families.reset()
        for predictor in predictors:
            predictor.reset()
        previous = None
        for members, action, query, state, frame in steps:
            t0 = time.perf_counter()
            six = signals.update(members)
            features, hidden = families.update(action, query)
            features_us.append((time.perf_counter() - t0) * 1e6)
            turn = 1 - turn
            for k in (range(len(predictors)) if turn else reversed(range(len(predictors)))):
                t1 = time.perf_counter()
                predictors[k].step(six, features, hidden, state, frame, previous)
                step_us[k].append((time.perf_counter() - t1) * 1e6)
            previous = action
    predictor_us = step_us[0]
    total = np.array(features_us) + np.array(predictor_us)
    model = config["model"]
    print(f"online monitor per step ({model['kind']}, inputs {'+'.join(model.get('features', ['six']))}: "
          f"{len(model['signal_names'])} columns -> probabilities), {len(total)} steps of {args.episodes} real "
          "episodes:")
    print(f"  signals + families: median {np.median(features_us):.1f} us, p90 {np.percentile(features_us, 90):.1f} us")
    print(f"  predictor step:     median {np.median(predictor_us):.1f} us, p90 {np.percentile(predictor_us, 90):.1f} us")
    print(f"  total:              median {np.median(total):.1f} us, p90 {np.percentile(total, 90):.1f} us, "
          f"p99 {np.percentile(total, 99):.1f} us (target <= 100 us)")
    if args.baseline:
        base = read_config(args.baseline)["model"]
        print(f"  baseline {args.baseline} ({base['kind']}, {base.get('members', 1)} member(s)): predictor step median "
              f"{np.median(step_us[1]):.1f} us, p90 {np.percentile(step_us[1], 90):.1f} us; total median "
              f"{np.median(np.array(features_us) + np.array(step_us[1])):.1f} us")
        print(f"  predictor step, this checkpoint / baseline: {np.median(step_us[0]) / np.median(step_us[1]):.2f} "
              "(ratio of medians, same pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
