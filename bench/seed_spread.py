"""Prints how far one configuration's episode-level figures move with the training seed alone, on the
test split and on a fresh store: the spread behind every single-training figure in the README.

The outcome model is trained as `salus train` trains it with its defaults (`--features`, `--members`,
the split of seed 0, early stopping on the validation split), once per seed of `--seeds`; the seed
changes only the initialisation and the shuffling, so seed 0 is `salus train`'s own model. Each model
is scored as `salus evaluate` scores it: the episode-level ROC-AUC of the running-max alarm score, and
detection and false-alarm rate at the conformal threshold (alpha = `--alpha`) calibrated on the
calibration split's successful episodes, on the test split and, with `--fresh`, on every episode of
that store. The same models are scored under each alarm score of `--alarm-scores`
(`bench/feature_choice.py`'s `STEP_PROFILE_SCORES`) and each threshold rule of `--deltas` (`none`: split
conformal; a number: `salus evaluate --delta`'s training-conditional threshold). Then the mean,
standard deviation and range per figure. `--member-features` trains `salus train --member-features`'s
configuration instead of the default one, `--peak-weight` another weight of the success-peak term,
and `--features` other input families (the evaluation's state-only
baseline is `--features state,time`).

Nothing here chooses a setting: it measures the configuration already chosen by cross-validation.

    MUJOCO_GL=egl .venv/bin/python bench/seed_spread.py --data data/families --fresh data/fresh \\
        --seeds 0,1,2,3,4 [--alarm-scores max,noisy-or] [--deltas none,0.1] [--member-features SETS] \\
        [--features state,time]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from feature_choice import STEP_PROFILE_SCORES, Reference, pooled_row, scored, trained_model  # noqa: E402  (bench/: the script's folder)
from salus_engine.config import TrainConfig, default_of  # noqa: E402
from salus_engine.predictor.dataset import load_signal_data, split_episodes  # noqa: E402
from salus_engine.predictor.models import model_scores  # noqa: E402
from salus_engine.predictor.spec import DEFAULT_ALARM_SCORE, DEFAULT_MEMBERS  # noqa: E402
from salus_engine.predictor.training import (build_spec, model_inputs, peak_weight_for,  # noqa: E402
                                             prepare_inputs, with_success_profile)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # each row reaches a redirected log as it is measured
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the training store")
    parser.add_argument("--fresh", help="a store from another seed range, scored whole")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="training seeds, comma-separated")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--alarm-scores", default=DEFAULT_ALARM_SCORE["outcome"],
                        help=f"alarm scores, comma-separated, of {', '.join(STEP_PROFILE_SCORES)}")
    parser.add_argument("--deltas", default="none", help="threshold rules, comma-separated: none (split conformal) "
                        "or a delta of salus evaluate --delta")
    parser.add_argument("--features", default=default_of(TrainConfig, "features"),
                        help="salus train --features (default: its default)")
    parser.add_argument("--peak-weight", type=float, help="salus train --peak-weight (default: salus train's)")
    parser.add_argument("--member-features", help="salus train --member-features (default: every member reads "
                        "--features)")
    args = parser.parse_args()
    try:
        deltas = [None if d == "none" else float(d) for d in args.deltas.split(",")]
    except ValueError:
        parser.error(f"--deltas takes 'none' or numbers, comma-separated; got {args.deltas!r}")
    alarm_scores = args.alarm_scores.split(",")
    unknown = [a for a in alarm_scores if a not in STEP_PROFILE_SCORES]
    if unknown:
        parser.error(f"unknown alarm score {unknown[0]!r}: choose from {', '.join(STEP_PROFILE_SCORES)}")

    started = time.perf_counter()
    data = load_signal_data(args.data)
    fresh = load_signal_data(args.fresh) if args.fresh else None
    features = args.features
    spec = build_spec(data, "outcome", features, members=DEFAULT_MEMBERS, alarm_score="noisy-or-excess",
                      member_features=args.member_features)
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    x_all = model_inputs(spec, data)
    x_fresh = model_inputs(spec, fresh) if fresh is not None else None
    train = prepare_inputs(spec, data, splits["train"], x_all)
    val = prepare_inputs(spec, data, splits["val"], x_all)
    calibration_ids = set(splits["calibration"].tolist())
    calibration = [e for e in data.episodes if e.episode_id in calibration_ids and e.failure_type == -1]
    test_ids = set(splits["test"].tolist())
    test = [e for e in data.episodes if e.episode_id in test_ids]
    sets = [("test", data, test, x_all[data.rows([e.episode_id for e in test])],
             data.offsets_of([e.episode_id for e in test]))]
    if fresh is not None:
        sets.append(("fresh", fresh, fresh.episodes, x_fresh, fresh.offsets))
    settings = {name: default_of(TrainConfig, name)
                for name in ("epochs", "batch_size", "lr", "weight_decay", "patience")}
    settings["peak_weight"] = peak_weight_for(spec, args.peak_weight)
    print(f"{args.data}: outcome model, features {features}, {DEFAULT_MEMBERS} members"
          + (f" reading {args.member_features}" if args.member_features else "")
          + f", success-peak weight {settings['peak_weight']:g}, split of seed 0 "
          f"(test {len(test)} episodes, calibration {len(calibration)} successes)"
          + (f"; fresh {args.fresh} ({len(fresh.episodes)} episodes)" if fresh is not None else "")
          + f"; alpha {args.alpha}; inputs ready in {time.perf_counter() - started:.0f} s", flush=True)

    rows: dict[tuple[str, str, float | None], list[dict[str, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        model, result = trained_model(spec, train, val, seed, settings, threads=1)
        calibration_p = model_scores(model, x_all[data.rows([e.episode_id for e in calibration])])
        # the noisy-or's success profile, as salus train computes it (the spec's rule is noisy-or-excess)
        reference = Reference(with_success_profile(spec, model, data, splits["train"], x_all).success_profile)
        for name, source, episodes, x, offsets in sets:
            held_p = model_scores(model, x)
            for a in alarm_scores:
                parts = [(episodes, *scored(episodes, held_p, offsets, data, calibration, calibration_p, reference, a))]
                for delta in deltas:
                    row = pooled_row(parts, args.alpha, delta)
                    rows.setdefault((name, a, delta), []).append(row)
                    print(f"  seed {seed} (best epoch {result.best_epoch}) {name:5s} [{a}, delta {delta}]: "
                          f"ROC-AUC {row['auroc']:.4f}, "
                          f"detected {row['detected']:.3f}, false alarms {row['false_alarms']:.3f}, collisions "
                          f"detected {row['collisions']:.3f}, miss lead {row['miss_lead']:.1f} steps", flush=True)
    print("over seeds: mean ± standard deviation (range)")
    for (name, a, delta), values in rows.items():
        cells = []
        for key in ("auroc", "detected", "false_alarms", "collisions", "miss_lead"):
            v = np.array([r[key] for r in values])
            cells.append(f"{key} {v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.4f} ({v.min():.4f}-{v.max():.4f})")
        print(f"  {name:5s} [{a}, delta {delta}]: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
