"""Prints how long `salus train` takes for 50 epochs on about 100,000 steps (500 episodes x 200 steps),
or on a given store as it is (`--data`, e.g. a 2,000-episode collection): the time to read the
store's signals and labels and the training loop's time, separately.

The benchmark store is recorded with the project's own recorder (`EpisodeWriter`) from the real
episodes of a source collection store: episodes are re-recorded in turn (cycling through the
source) with their real signals, actions, member actions, states, outcome and evidence, until the
store holds `--episodes x --steps` steps. Images are stored as 1x1 pixels, so the default
`target_view` family reads 1-pixel frames there: its real cost (reading the front camera) shows only
with `--data`. Each re-recorded episode keeps its real length, so short (failed) episodes mean more
episodes than `--episodes`. Then `salus train` runs as a subprocess with early stopping off
(`--patience 0`), so exactly `--epochs` epochs are timed; it prints the command's wall-clock time
(imports and loading included) and the training loop's own time.

    .venv/bin/python bench/train.py --source data/collection [--episodes 500] [--steps 200] [--epochs 50]
    .venv/bin/python bench/train.py --data data/large [--epochs 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's salus_engine, however installed

from salus_engine.store import EpisodeRecord, EpisodeStore, EpisodeWriter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_store(source: Path, out: Path, target_steps: int, max_steps: int) -> tuple[int, int]:
    """Re-records the source's episodes in turn into `out` until it holds `target_steps` steps.

    Returns:
        (episodes written, steps written).
    """
    src = EpisodeStore.open(source)
    if len(src) == 0:
        raise SystemExit(f"{source}: the source store holds no episode")
    attrs = src.attrs
    writer = EpisodeWriter.create(
        out, horizons=src.horizons, cameras=tuple(attrs["cameras"]), image_size=1,
        ensemble_size=int(attrs["ensemble_size"]), base_seed=int(attrs["base_seed"]),
        policy=f"re-recorded from {source}", sim_config=dict(attrs.get("sim_config") or {}),
        feature_families=src.feature_families, hidden_dim=src.hidden_dim)
    members = int(attrs["ensemble_size"])
    usable = [i for i in range(len(src)) if src.episode(i).member_actions.shape[1] == members]
    if not usable:
        raise SystemExit(f"{source}: no episode has the store's {members} ensemble members")
    if len(usable) < len(src):
        print(f"skipping {len(src) - len(usable)} source episodes whose member count differs from the store's {members}")
    steps = episodes = 0
    cameras = len(attrs["cameras"])
    while steps < target_steps:
        episode = src.episode(usable[episodes % len(usable)])
        meta = episode.meta
        length = min(meta.episode_length, max_steps)
        if length < meta.episode_length and meta.failure_step >= length:
            length = meta.episode_length  # never cut an episode before its outcome
        writer.write(EpisodeRecord(
            episode_id=episodes, seed=meta.seed,
            images=np.zeros((length, cameras, 3, 1, 1), dtype=np.uint8),
            states=episode.states[:length], actions=episode.actions[:length],
            member_actions=episode.member_actions[:length], signals=episode.signals[:length],
            failure_type=meta.failure_type, failure_step=meta.failure_step, evidence=meta.evidence,
            features=None if episode.features is None else episode.features[:length],
            hidden_features=None if episode.hidden_features is None else episode.hidden_features[:length],
        ), durable=False)
        steps += length
        episodes += 1
    return episodes, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--source", help="a real collection store to re-record episodes from")
    source.add_argument("--data", help="a collection store to train on as it is (nothing re-recorded)")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--steps", type=int, default=200, help="steps per episode at most; target = episodes x steps")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, help="torch threads for training (default: torch's)")
    parser.add_argument("--model", help="model kind (default: salus train's)")
    parser.add_argument("--features", help="input families (default: salus train's, all the store records)")
    parser.add_argument("--members", help="members of the outcome model (default: salus train's); several, "
                        "comma-separated, are trained one after the other on the same store, e.g. 1,5")
    parser.add_argument("--work", help="folder for the benchmark store and run (default: a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="salus-bench-train-") as tmp:
        work = Path(args.work or tmp)
        store = work / "store"
        if args.data:
            store = Path(args.data)
            metas = EpisodeStore.open(store).metas()
            episodes, steps = len(metas), sum(meta.episode_length for meta in metas)
            print(f"{store}: {episodes} episodes, {steps} steps")
        else:
            t0 = time.perf_counter()
            episodes, steps = build_store(Path(args.source), store, args.episodes * args.steps, args.steps)
            print(f"recorded {episodes} episodes, {steps} steps into {store} in {time.perf_counter() - t0:.1f} s")
        loops = {}
        for members in (args.members or "").split(",") if args.members else [None]:
            loops[members] = train_once(args, store, work / f"run-{members or 'default'}", steps, members)
            if loops[members] is None:
                return 1
        if len(loops) > 1:
            first = next(iter(loops))
            print("epoch loop relative to --members " + first + ": " +
                  ", ".join(f"{m} members {loop / loops[first]:.2f}x" for m, loop in loops.items()))
    return 0


def train_once(args, store: Path, run: Path, steps: int, members: str | None) -> float | None:
    """Runs `salus train` once, prints its times; returns the epoch loop's seconds (None: it failed)."""
    command = [sys.executable, "-m", "salus_engine.cli", "train", "--data", str(store), "--out", str(run),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--patience", "0"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    for flag, value in (("--model", args.model), ("--features", args.features), ("--members", members)):
        if value:
            command += [flag, value]
    t0 = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], sep="\n")
        return None
    config = json.loads((run / "config.json").read_text())
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    loop = sum(row["seconds"] for row in history)
    print(f"training samples: {config['samples']['train']} train + {config['samples']['val']} val steps "
          f"({steps} steps in the store)")
    print(f"salus train, {len(history)} epochs: {wall:.1f} s wall-clock (command total), "
          f"{config['result']['seconds']:.1f} s in run_training")
    print(f"  load (signals + labels of {config['store']['episodes']} episodes): "
          f"{config['store']['load_seconds']:.1f} s")
    print(f"  inputs (the model's columns; target_view reads the front camera): "
          f"{config['store'].get('inputs_seconds', 0.0):.1f} s")
    print(f"  train (epoch loop): {loop:.1f} s")
    print(f"  model: {config['model']['kind']}, {config['model'].get('members', 1)} member(s), {config['parameters']} "
          f"parameters, {len(config['model']['signal_names'])} input columns "
          f"({'+'.join(config['model'].get('features', ['six']))})")
    return loop
    return 0


if __name__ == "__main__":
    sys.exit(main())
