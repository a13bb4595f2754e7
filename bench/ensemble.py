"""Prints the policy ensemble's own cost, batched against sequential, for M = 3 and M = 5 members:
ms per query (`PolicyEnsemble._query`: every member predicts a fresh action chunk) and ms per control
step (a full re-query cycle of `requery_every` steps divided by its length), and their ratio.

Both paths run in the same process on the same recorded observations and are interleaved round by
round (which path goes first alternates), so the machine's load falls on both alike; figures are
medians over the rounds. Before each timed query both ensembles are reset with the same episode
seed, so they draw the same noise and their member actions must agree: the largest difference is
printed too.

M = 5 needs five members and the embedded default has three: members 3 and 4 are copies of members 0
and 1 whose weights carry a small deterministic perturbation (1 % of each tensor's standard
deviation, seeded), written into a temporary folder. Training five members with `salus policy train
--members 5` at the default settings (120 demonstrations, 4000 + 4 x 1500 optimiser steps) takes far
longer than this bench; the perturbed copies have exactly the default's architecture, processors and
cost per query.

    .venv/bin/python bench/ensemble.py [--rounds 30] [--threads 1] [--members 3,5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from salus_engine.config import DEFAULT_POLICY_DIR, PolicyConfig, SimConfig  # noqa: E402
from salus_engine.policy.checkpoint import WEIGHTS_FILE  # noqa: E402
from salus_engine.policy.ensemble import PolicyEnsemble, member_folders  # noqa: E402

PERTURBATION = 0.01
"""Perturbation of the copied members' weights, in units of each tensor's standard deviation."""


def five_member_folder(root: Path, members: int) -> Path:
    """`root/ensemble` with the default's members and perturbed copies of them up to `members`."""
    from safetensors.torch import load_file, save_file

    source = member_folders(DEFAULT_POLICY_DIR)
    out = root / "ensemble"
    for i in range(members):
        shutil.copytree(source[i % len(source)], out / f"member_{i}")
        if i < len(source):
            continue
        generator = torch.Generator().manual_seed(i)
        weights = load_file(str(out / f"member_{i}" / WEIGHTS_FILE))
        for name, tensor in weights.items():
            if tensor.is_floating_point() and tensor.numel() > 1:
                noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
                weights[name] = (tensor.float() + PERTURBATION * tensor.float().std() * noise).to(tensor.dtype)
        save_file(weights, str(out / f"member_{i}" / WEIGHTS_FILE))
    return out


def observations(count: int) -> list[dict]:
    """`count` observations of one scripted-expert episode at the default simulator settings."""
    from salus_engine.sim import PickPlaceEnv, ScriptedExpert

    env = PickPlaceEnv(SimConfig())
    expert = ScriptedExpert(env)
    obs, _ = env.reset(seed=1000)
    expert.reset()
    seen = []
    try:
        while len(seen) < count:
            seen.append({"images": {k: v.copy() for k, v in obs["images"].items()}, "state": obs["state"].copy()})
            for _ in range(5):  # spread the observations over the episode
                obs, _r, terminated, truncated, _info = env.step(expert.act(obs))
                if terminated or truncated:
                    obs, _ = env.reset(seed=1001)
                    expert.reset()
    finally:
        env.close()
    return seen


def measure(path: Path, members: int, seen: list[dict], rounds: int) -> dict[str, float]:
    """Median ms per query and per control step of each path, and the largest member-action difference."""
    cameras = tuple(seen[0]["images"])
    ensembles = {
        "batched": PolicyEnsemble(PolicyConfig(path=str(path), ensemble_size=members), cameras),
        "sequential": PolicyEnsemble(PolicyConfig(path=str(path), ensemble_size=members, batched_members=False),
                                     cameras),
    }
    k = ensembles["batched"].config.requery_every
    query = {name: [] for name in ensembles}
    step = {name: [] for name in ensembles}
    difference = 0.0
    for name, ensemble in ensembles.items():  # warm-up (first calls build caches, vmap traces)
        ensemble.reset(seed=0)
        for _ in range(2):
            ensemble._query(seen[0])
    for r in range(rounds):
        obs = seen[r % len(seen)]
        order = list(ensembles) if r % 2 == 0 else list(reversed(ensembles))
        chunks = {}
        for name in order:
            ensemble = ensembles[name]
            ensemble.reset(seed=r)
            start = time.perf_counter()
            chunks[name] = ensemble._query(obs)
            query[name].append(time.perf_counter() - start)
        difference = max(difference, float(np.abs(chunks["batched"] - chunks["sequential"]).max()))
        for name in order:
            ensemble = ensembles[name]
            ensemble.reset(seed=r)
            start = time.perf_counter()
            for _ in range(k):  # one re-query cycle: a fresh chunk, then k - 1 reads of it
                ensemble.step(obs)
            step[name].append((time.perf_counter() - start) / k)
    modes = {name: e.query_mode for name, e in ensembles.items()}
    for ensemble in ensembles.values():
        ensemble.close()
    ms = {f"{kind} {name}": 1e3 * statistics.median(values[name])
          for kind, values in (("query", query), ("step", step)) for name in ensembles}
    return {**ms, "difference": difference, "k": k, "modes": modes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds per ensemble size")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--members", default="3,5", help="ensemble sizes, comma-separated (at most 5)")
    args = parser.parse_args()
    sizes = [int(m) for m in args.members.split(",")]
    if max(sizes) > 5 or min(sizes) < 1:
        parser.error("--members takes sizes 1..5")
    torch.set_num_threads(args.threads)
    seen = observations(6)
    defaults = PolicyConfig()
    print(f"settings: embedded default ensemble, {SimConfig().image_size}px camera, re-query every "
          f"{defaults.requery_every} steps, the checkpoints' own denoising steps, torch {torch.__version__} on "
          f"{defaults.device}, {args.threads} thread(s), {os.cpu_count()} CPUs, {args.rounds} interleaved rounds, "
          "medians")
    with tempfile.TemporaryDirectory() as tmp:
        path = five_member_folder(Path(tmp), max(sizes))
        if max(sizes) > len(member_folders(DEFAULT_POLICY_DIR)):
            print(f"members 3 and 4: copies of members 0 and 1 with weights perturbed by {PERTURBATION:.0%} of each "
                  "tensor's std (seeded), not trained")
        for m in sizes:
            r = measure(path, m, seen, args.rounds)
            qb, qs, sb, ss = r["query batched"], r["query sequential"], r["step batched"], r["step sequential"]
            print(f"M = {m}: query  batched ({r['modes']['batched']}) {qb:6.1f} ms, sequential {qs:6.1f} ms, "
                  f"sequential / batched {qs / qb:.2f}")
            print(f"       step   batched {sb:6.1f} ms, sequential {ss:6.1f} ms (one query per {r['k']} steps), "
                  f"sequential / batched {ss / sb:.2f}")
            print(f"       max |batched - sequential| member action: {r['difference']:.2e}")


if __name__ == "__main__":
    main()
