"""Prints how sets of input families compare on the validation split, over several training seeds:
the figures that choose `salus train`'s default `--features`, without touching the test split or a
fresh store.

For every set (`--sets`, separated by `;`) and training seed (`--seeds`), the outcome model is trained
as `salus train` trains it (same split, seed 0, same settings; the seed changes only the initialisation
and the shuffling), then scored on the validation split: the episode-level ROC-AUC of the running-max
alarm score, and detection, false-alarm rate and collisions detected at the conformal threshold
(α = `--alpha`) calibrated on the calibration split's successful episodes. Then the mean of every set
and, per seed, each set's ROC-AUC minus the first set's.

    .venv/bin/python bench/feature_choice.py --data data/families \\
        --sets "state,time,target_view;state,time,target_view,command" --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from salus_engine.predictor.conformal import conformal_threshold  # noqa: E402
from salus_engine.predictor.dataset import load_signal_data, split_episodes  # noqa: E402
from salus_engine.predictor.evaluation import model_scores  # noqa: E402
from salus_engine.predictor.metrics import episode_alarm_maxima, episode_ranking  # noqa: E402
from salus_engine.predictor.models import build_model  # noqa: E402
from salus_engine.predictor.training import build_spec, fit, model_inputs, prepare_inputs, torch_threads  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="collection store folder")
    parser.add_argument("--sets", required=True, help="input-family sets, ';'-separated, each as --features takes it")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    parser.add_argument("--alpha", type=float, default=0.1)
    args = parser.parse_args()

    data = load_signal_data(args.data)
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    seeds = [int(s) for s in args.seeds.split(",")]
    val_ids, calibration_ids = splits["val"], splits["calibration"]
    val = [e for e in data.episodes if e.episode_id in set(val_ids.tolist())]
    calibration = [e for e in data.episodes if e.episode_id in set(calibration_ids.tolist()) and e.failure_type == -1]
    failed = np.array([e.failure_type >= 0 for e in val])
    collision = np.array([e.failure_type == 0 for e in val])
    print(f"{args.data}: validation split {len(val)} episodes ({failed.sum()} failed), calibration "
          f"{len(calibration)} successes, alpha {args.alpha}")
    results: dict[str, list[dict[str, float]]] = {}
    for features in args.sets.split(";"):
        spec = build_spec(data, "outcome", features)
        x_all = model_inputs(spec, data)
        x_train, y_train, train_offsets = prepare_inputs(spec, data, splits["train"], x_all)
        x_val, y_val, val_offsets = prepare_inputs(spec, data, val_ids, x_all)
        calibration_rows = data.rows([e.episode_id for e in calibration])
        calibration_offsets = data.offsets_of([e.episode_id for e in calibration])
        for seed in seeds:
            with torch_threads(2):
                result = fit(spec, x_train, y_train, x_val, y_val, seed=seed, train_offsets=train_offsets,
                             val_offsets=val_offsets)
            model = build_model(spec)
            model.load_state_dict(result.best_state)
            model.eval()
            val_max = episode_alarm_maxima(model_scores(model, x_val).max(axis=(1, 2)), val, val_offsets)
            calibration_max = episode_alarm_maxima(model_scores(model, x_all[calibration_rows]).max(axis=(1, 2)),
                                                   calibration, calibration_offsets)
            threshold = conformal_threshold(calibration_max, args.alpha)
            row = {"auroc": episode_ranking(val_max, val)["auroc"], "detected": float((val_max[failed] > threshold).mean()),
                   "false_alarms": float((val_max[~failed] > threshold).mean()),
                   "collisions": float((val_max[collision] > threshold).mean())}
            results.setdefault(features, []).append(row)
            print(f"  {features:40s} seed {seed}: ROC-AUC {row['auroc']:.4f}, detected {row['detected']:.3f}, "
                  f"false alarms {row['false_alarms']:.3f}, collisions detected {row['collisions']:.3f}", flush=True)
    first = next(iter(results))
    print("mean over seeds:")
    for features, rows in results.items():
        means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        difference = [r["auroc"] - f["auroc"] for r, f in zip(rows, results[first])]
        print(f"  {features:40s} ROC-AUC {means['auroc']:.4f} (range {min(r['auroc'] for r in rows):.4f}-"
              f"{max(r['auroc'] for r in rows):.4f}), detected {means['detected']:.3f}, false alarms "
              f"{means['false_alarms']:.3f}, collisions detected {means['collisions']:.3f}; ROC-AUC minus "
              f"{first} per seed: {', '.join(f'{d:+.4f}' for d in difference)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
