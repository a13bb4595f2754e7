"""Prints how far the conformal re-split check of an evaluation (`salus evaluate`: the mean test
false-alarm rate over random re-splits of the pooled calibration and test successes) can stray from
its exact value by the draw of the re-splits alone, for the model on the evaluated split and, where
evaluated, on the fresh store.

The check's figures come from the evaluation's metrics.json; the spread from
`salus_engine.predictor.metrics.resplit_mean_spread`, which for scores without ties depends only on
the numbers of calibration and test successes, alpha, delta and the number of re-splits (where
metrics.json's exact mean differs from that of untied scores, the scores tie and the figures printed
are those of untied scores).

With `--calibration-sizes` the same figures for other numbers of calibration successes with the
same test successes (how a larger calibration split would change the check). With `--deltas` the
single split's figures also for other deltas of the training-conditional rule (`none`: split
conformal): what a rule chosen before a new held-out set is scored promises for it, from the numbers
of successes alone.

Beside the re-splits, the single split that the headline false-alarm rate comes from: with n
calibration successes the threshold is the k-th of their scores (`conformal_rank`), and for
exchangeable scores without ties the false-alarm rate it gives on new successes is Beta(n + 1 - k, k)
over draws of the calibration set (the k-th of n uniform order statistics); the number of false alarms
among m test successes is then beta-binomial, so the chance that the test successes' rate exceeds
alpha is exact, for every calibration size printed.

    .venv/bin/python bench/resplit_spread.py --metrics checkpoints/run1/evaluation/metrics.json [--scorer model] \
        [--calibration-sizes 100,200,300] [--deltas none,0.1,0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import beta, betabinom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's packages, however installed

from salus_engine.predictor.conformal import conformal_rank  # noqa: E402
from salus_engine.predictor.metrics import resplit_mean_spread  # noqa: E402


def ordinal(k: int) -> str:
    """'1st', '2nd', '132nd', '11th'."""
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def single_split(n: int, m: int, alpha: float, delta: float | None) -> str:
    """One line: the false-alarm rate of the threshold set on n calibration successes (its mean and sd
    over calibration draws, and the chance that it exceeds alpha) and the chance that m test
    successes show a rate above alpha (see the module's docstring)."""
    k = conformal_rank(n, alpha, delta)
    if k is None:
        return f"  one split, {n} calibration successes: no rank gives the guarantee"
    rate = beta(n + 1 - k, k)
    above = betabinom.sf(np.floor(alpha * m + 1e-9), m, n + 1 - k, k)
    return (f"  one split, {n} calibration successes: threshold at the {ordinal(k)}; its false-alarm rate has mean "
            f"{rate.mean():.4f}, sd {rate.std():.4f}, P(> alpha) {rate.sf(alpha):.3f}; "
            f"P({m} test successes' rate > alpha) {above:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, required=True, help="metrics.json of salus evaluate")
    parser.add_argument("--scorer", default="model", help="scorer name in metrics.json (default: model)")
    parser.add_argument("--calibration-sizes", default="", help="other calibration sizes, comma-separated")
    parser.add_argument("--deltas", default="", help="other deltas for the single split, comma-separated "
                                                     "('none': split conformal)")
    args = parser.parse_args()
    sizes = [int(c) for c in args.calibration_sizes.split(",") if c]
    try:
        deltas = [None if d == "none" else float(d) for d in args.deltas.split(",") if d]
    except ValueError:
        parser.error(f"--deltas takes 'none' or numbers, comma-separated; got {args.deltas!r}")
    metrics = json.loads(args.metrics.read_text())
    alpha, delta = metrics["conformal"]["alpha"], metrics["conformal"].get("delta")
    sets = [(metrics["split"], metrics["scorers"])]
    if metrics.get("fresh"):
        sets.append(("fresh", metrics["fresh"]["scorers"]))
    for name, scorers in sets:
        check = scorers[args.scorer]["episode"]["resplits"]
        n, m, resplits = check["calibration_episodes"], check["test_episodes"], check["resplits"]
        spread = resplit_mean_spread(np.arange(n + m, dtype=np.float64), n, alpha, resplits, delta)
        untied = spread["expected_mean"]
        ties = "" if abs(check["expected_mean"] - untied) < 1e-9 else \
            f" (the scores tie: exact mean {check['expected_mean']:.4f}, untied {untied:.4f})"
        print(f"{name}: {n} calibration + {m} test successes, alpha {alpha}, delta {delta}, {resplits} re-splits{ties}")
        print(f"  measured mean {check['mean']:.4f}, exact mean {check['expected_mean']:.4f}, share above 0.15 "
              f"{check['share_above_0.15']:.2f}")
        print(f"  by the draw of the re-splits alone: sd of the mean {spread['sd']:.4f} (measured - exact = "
              f"{(check['mean'] - check['expected_mean']) / spread['sd']:+.2f} sd); P(mean > alpha) "
              f"{spread['chance_mean_above_alpha']:.3f}; P(more than a tenth of the re-splits above 0.15) "
              f"{spread['chance_over_a_tenth_above_0.15']:.3f}")
        for size in (n, *sizes):
            print(single_split(size, m, alpha, delta))
        for other_delta in deltas:
            print("  split conformal:" if other_delta is None else f"  delta {other_delta}:")
            for size in (n, *sizes):
                print("  " + single_split(size, m, alpha, other_delta))
        for size in sizes:
            other = resplit_mean_spread(np.arange(size + m, dtype=np.float64), size, alpha, resplits, delta)
            if other is None:
                print(f"  with {size} calibration successes: no rank gives the guarantee")
                continue
            print(f"  with {size} calibration successes: exact mean {other['expected_mean']:.4f} (untied), "
                  f"sd of the mean {other['sd']:.4f}, P(mean > alpha) {other['chance_mean_above_alpha']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
