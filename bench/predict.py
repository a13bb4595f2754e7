"""Prints the median latency of one online predictor step (6 signals in, 16 probabilities out) over
10,000 calls of `OnlinePredictor.step` with a trained checkpoint's weights, fed with the real
signals of the checkpoint's store in step order.

    .venv/bin/python bench/predict.py --checkpoint checkpoints/RUN [--calls 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed

from salus_engine.predictor.checkpoint import read_config  # noqa: E402
from salus_engine.predictor.online import OnlinePredictor  # noqa: E402
from salus_engine.store import EpisodeStore  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a 'salus train' run folder")
    parser.add_argument("--data", help="store whose signals to feed (default: the checkpoint's store)")
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()

    config = read_config(args.checkpoint)
    store = EpisodeStore.open(args.data or config["store"]["path"])
    signals, first = [], []
    for episode in store:  # real signals in step order, enough episodes for `calls` steps
        signals.append(episode.signals)
        first.append(np.arange(len(episode.signals)) == 0)
        if sum(len(s) for s in signals) >= args.calls:
            break
    rows = np.concatenate(signals).astype(np.float64)
    first = np.concatenate(first)
    predictor = OnlinePredictor.load(args.checkpoint)
    for i in range(min(200, len(rows))):  # warm-up
        predictor.step(rows[i])
    times = np.empty(args.calls)
    predictor.reset()
    for i in range(args.calls):
        r = i % len(rows)
        if first[r]:
            predictor.reset()
        t0 = time.perf_counter()
        predictor.step(rows[r])
        times[i] = time.perf_counter() - t0
    us = times * 1e6
    print(f"online predictor step ({config['model']['kind']}, window {config['model']['window']}, "
          f"{rows.shape[1]} signals -> {config['model']['kind'] == 'single-horizon' and 4 or 16} probabilities), "
          f"{args.calls} calls: median {np.median(us):.1f} us, p90 {np.percentile(us, 90):.1f} us, "
          f"p99 {np.percentile(us, 99):.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
