"""Prints how long `salus evaluate` takes with its networks trained one after another in the process
and with `--workers N` (Ray tasks), on the same checkpoint and store in the same run, their ratio,
and whether the two metrics.json hold the same figures.

Each configuration is the real `salus evaluate` command run as a subprocess (imports, loading the
store, the `target_view` columns, training the baselines and controls, scoring every scorer, the
bootstrap intervals; plots off) and timed by its wall clock. `--epochs E` copies the checkpoint's run
folder and sets its training settings to exactly E epochs with early stopping off, so that every
configuration trains every network for the same number of epochs (the run's own settings stop each
network when its validation loss stops falling: the same in both configurations, but longer).

Configurations, in this order: `default` (workers 1, torch's own thread count: the command as a user
types it), `1 thread` (workers 1, `--threads 1`: the in-process run whose figures the Ray tasks must
give to the bit) and `N workers` (`--workers N --threads 1`).

    .venv/bin/python bench/evaluate.py --checkpoint docs/results/predictor-grip-depth/outcome-depth \\
        --data data/families [--workers 2] [--epochs 5] [--ablation] [--fresh data/fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fixed_epochs_copy(checkpoint: Path, epochs: int, folder: Path) -> Path:
    """A copy of the run folder whose networks train exactly `epochs` epochs (patience 0)."""
    copy = folder / "run"
    shutil.copytree(checkpoint, copy, ignore=shutil.ignore_patterns("evaluation*", "ablation*", "*.txt"))
    config_path = copy / "config.json"
    config = json.loads(config_path.read_text())
    config.setdefault("train", {}).update(epochs=epochs, patience=0)
    config_path.write_text(json.dumps(config, indent=1) + "\n")
    return copy


def evaluate(checkpoint: Path, data: str, out: Path, extra: list[str]) -> tuple[float, dict]:
    """(wall-clock seconds, metrics.json without its `seconds`) of one `salus evaluate` run."""
    command = [sys.executable, "-m", "salus_engine.cli", "evaluate", "--checkpoint", str(checkpoint), "--data", data,
               "--out", str(out), "--no-plots", *extra]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"salus evaluate failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("seconds")
    return seconds, metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="run folder of salus train")
    parser.add_argument("--data", required=True, help="the store it was trained on")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="Ray workers (default: the cores)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of every network, early stopping off "
                        "(default 5; 0 keeps the run's own settings)")
    parser.add_argument("--ablation", action="store_true", help="also time the ablation's retrainings")
    parser.add_argument("--fresh", help="a fresh store to score as well (salus evaluate --fresh)")
    args = parser.parse_args()
    extra = (["--ablation"] if args.ablation else []) + (["--fresh", args.fresh] if args.fresh else [])
    with tempfile.TemporaryDirectory(prefix="salus-bench-evaluate-") as tmp:
        folder = Path(tmp)
        checkpoint = fixed_epochs_copy(Path(args.checkpoint), args.epochs, folder) if args.epochs else Path(args.checkpoint)
        configurations = [("default", []), ("1 thread", ["--threads", "1"]),
                          (f"{args.workers} workers", ["--workers", str(args.workers), "--threads", "1"])]
        print(f"salus evaluate --checkpoint {args.checkpoint} --data {args.data} {' '.join(extra)} --no-plots; "
              f"{'every network ' + str(args.epochs) + ' epochs' if args.epochs else 'the run' + chr(39) + 's epochs'}; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the start", flush=True)
        results = {}
        for name, flags in configurations:
            seconds, metrics = evaluate(checkpoint, args.data, folder / name.replace(" ", "-"), extra + flags)
            results[name] = (seconds, metrics)
            print(f"  {name:>10}: {seconds:8.1f} s  (load {os.getloadavg()[0]:.2f})", flush=True)
    base, single = results["default"][0], results["1 thread"][0]
    parallel, parallel_metrics = results[configurations[2][0]]
    print(f"speed-up of {configurations[2][0]}: x{base / parallel:.2f} against the default command, "
          f"x{single / parallel:.2f} against one thread in the process")
    same = parallel_metrics == results["1 thread"][1]
    print(f"same metrics.json as one thread in the process (every figure): {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
