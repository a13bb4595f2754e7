"""Fault-injection campaign against the real `salus` command; prints how many faults were handled.

    .venv/bin/python bench/faults.py [--quick] [--kills N] [--rss-episodes N] [--only GROUP ...] [--keep]

Every case runs `python -m salus_engine.cli ...` (the installed `salus` command) as a subprocess with
its working directory in a temporary folder (session logs land in its `logs/`). A case is handled
when the command ends with exit code 2 (or 1 with `problem:` lines for `salus verify`) and exactly
one line on stderr, `salus: error: ...` (no traceback, no exit code 3), and the data already recorded
is intact: every file of the store's complete episodes is byte-for-byte the same afterwards (SHA-256
of every file outside `.staging/`), and the episode ids are the same. A refused collection into a
new folder must not leave a store behind.

Groups (`--only`): `inputs` (bad flags and paths), `config` (bad TOML files), `stores` (foreign and
damaged stores for verify, train and collect --resume), `checkpoints` (damaged predictor runs for
evaluate and report), `kills` (SIGKILL at random moments, then --resume), `signals` (SIGTERM and
SIGHUP), `disk` (a full tmpfs), `rss` (memory growth of an in-process collection).

Stores are checked by the filesystem (episode folders with their group and array `zarr.json`) and by
`salus_engine.store.verify.verify_store`, the function behind `salus verify`, called in this process
(a `salus verify` subprocess costs a torch-free but still 10-20 s start-up on a busy 2-core machine;
`salus verify` itself is run as a subprocess in every store case).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "egl")

TINY = ["--image-size", "64", "--max-steps", "30"]
"""Tiny collection settings: a 30-step episode of 64-pixel images (all timeouts but for a collision)."""
ARRAYS = ("images", "states", "actions", "member_actions", "signals", "horizon_labels")
GROUPS = ("inputs", "config", "stores", "checkpoints", "kills", "signals", "disk", "rss")
SALUS = [sys.executable, "-m", "salus_engine.cli"]
CHILD_ENV = {**os.environ, "COLUMNS": "200"}
"""rich wraps a pipe's output at 80 columns; wide enough, each episode line stays one line."""
COMMAND_TIMEOUT = 900


# ---------------------------------------------------------------------------------------------- store views


def complete_episodes(store: Path) -> dict[int, dict]:
    """Episode id -> attributes of every complete episode folder (group zarr.json and every array's
    zarr.json present), read from the files without SALUS."""
    found = {}
    episodes = store / "episodes"
    if not episodes.is_dir():
        return found
    for folder in episodes.iterdir():
        if not re.fullmatch(r"\d{6}", folder.name):
            continue
        try:
            attrs = json.loads((folder / "zarr.json").read_text())["attributes"]
        except (OSError, ValueError, KeyError):
            continue
        if all((folder / name / "zarr.json").is_file() for name in ARRAYS):
            found[int(folder.name)] = attrs
    return found


def episode_folders(store: Path) -> list[str]:
    episodes = store / "episodes"
    return sorted(p.name for p in episodes.iterdir() if p.is_dir()) if episodes.is_dir() else []


def fingerprint(store: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under the store, `.staging/` excluded."""
    prints = {}
    if not store.exists():
        return prints
    for path in sorted(store.rglob("*")):
        rel = path.relative_to(store)
        if rel.parts and rel.parts[0] == ".staging":
            continue
        if path.is_file():
            prints[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return prints


def describe_change(before: dict[str, str], after: dict[str, str]) -> str:
    gone = sorted(set(before) - set(after))
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = []
    for label, names in (("removed", gone), ("added", new), ("changed", changed)):
        if names:
            parts.append(f"{len(names)} files {label} (e.g. {names[0]})")
    return "; ".join(parts)


def verify_ok(store: Path) -> tuple[bool, str]:
    """`verify_store` (the function behind `salus verify`) in this process."""
    from salus_engine.store.verify import verify_store

    try:
        report = verify_store(store)
    except Exception as err:  # noqa: BLE001 - any exception is a finding
        return False, f"verify_store raised {type(err).__name__}: {err}"
    return report.ok, "; ".join(report.problems[:3])


# ---------------------------------------------------------------------------------------------- results


@dataclass
class Outcome:
    group: str
    name: str
    handled: bool
    why: str = ""
    rc: int | None = None
    stderr: str = ""
    message: str = ""


@dataclass
class Campaign:
    work: Path
    rng: random.Random
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ running the command

    def salus(self, *args: str, timeout: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([*SALUS, *args], cwd=self.work, capture_output=True, text=True, timeout=timeout,
                                  env={**CHILD_ENV, **(env or {})})
        except subprocess.TimeoutExpired as err:
            return subprocess.CompletedProcess(err.cmd, 124, _text(err.stdout), _text(err.stderr) + "\n[timed out]")

    def record(self, group: str, name: str, handled: bool, why: str = "", result=None, message: str = "") -> None:
        outcome = Outcome(group, name, handled, why, getattr(result, "returncode", None),
                          (getattr(result, "stderr", "") or "") + _tail_stdout(result), message)
        self.outcomes.append(outcome)
        status = "handled" if handled else f"NOT HANDLED ({why})"
        print(f"[{group}] {name}: {status}" + (f"\n    {message}" if message else ""), flush=True)

    # ------------------------------------------------------------------ one refused command

    def refused(self, group: str, name: str, argv: list[str], store: Path | None = None,
                absent: Path | None = None, must_mention: str | None = None, must_not_mention: str | None = None,
                verify_command: bool = False, env: dict[str, str] | None = None) -> None:
        """Runs `argv`; handled when it ends in one `salus: error:` line with exit code 2 (or, for
        `salus verify`, exit code 1 with problem lines), `store` is byte-for-byte unchanged and
        `absent` was not created."""
        before = fingerprint(store) if store else None
        ids_before = sorted(complete_episodes(store)) if store else None
        result = self.salus(*argv, env=env)
        ok, why, message = judge_refusal(result, verify_command)
        if ok and must_mention and must_mention.lower() not in message.lower():
            ok, why = False, f"the message does not name {must_mention!r}"
        if ok and must_not_mention and must_not_mention.lower() in message.lower():
            ok, why = False, f"the damage went unnoticed (refused later for another reason: {must_not_mention!r})"
        if store is not None:
            after = fingerprint(store)
            if after != before:
                ok, why = False, (why + "; " if not ok else "") + "store changed: " + describe_change(before, after)
            elif sorted(complete_episodes(store)) != ids_before:
                ok, why = False, "episode ids changed"
        if absent is not None and absent.exists():
            ok, why = False, (why + "; " if not ok else "") + f"{absent.name} was created by a refused command"
        self.record(group, name, ok, why, result, message)

    def accepted(self, group: str, name: str, argv: list[str], store: Path, expect_ids: list[int] | None,
                 keep: dict[str, str] | None = None, check_verify: bool = True) -> subprocess.CompletedProcess:
        """Runs `argv`; handled when it exits 0 without a traceback, the store's earlier files (`keep`,
        default the fingerprint before) are unchanged, its complete episode ids are `expect_ids` (None:
        unchanged) and it verifies."""
        before = fingerprint(store) if keep is None else keep
        ids_before = sorted(complete_episodes(store))
        result = self.salus(*argv)
        ok, why = result.returncode == 0, f"exit code {result.returncode}"
        if "Traceback" in result.stderr + result.stdout:
            ok, why = False, "traceback"
        after = fingerprint(store)
        lost = {k: v for k, v in before.items() if after.get(k) != v and not k.startswith(".staging")}
        if lost:
            ok, why = False, f"{len(lost)} earlier files changed or lost (e.g. {sorted(lost)[0]})"
        ids = sorted(complete_episodes(store))
        want = ids_before if expect_ids is None else expect_ids
        if ids != want:
            ok, why = False, f"episode ids {_ids(ids)}, expected {_ids(want)}"
        if ok and check_verify:
            good, problems = verify_ok(store)
            if not good:
                ok, why = False, f"store does not verify: {problems}"
        self.record(group, name, ok, why if not ok else "", result)
        return result


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _tail_stdout(result) -> str:
    if result is None or not getattr(result, "stdout", ""):
        return ""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return "\n[stdout] " + "\n[stdout] ".join(lines[-4:]) if lines else ""


def _ids(ids: list[int]) -> str:
    if ids and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}..{ids[-1]} ({len(ids)})"
    return str(ids)


def judge_refusal(result: subprocess.CompletedProcess, verify_command: bool) -> tuple[bool, str, str]:
    """(handled, why not, the one-line message) for a command that must refuse."""
    stderr_lines = [line for line in result.stderr.splitlines() if line.strip()]
    text = result.stderr + result.stdout
    if "Traceback" in text:
        return False, "traceback", stderr_lines[0] if stderr_lines else ""
    if result.returncode == 3:
        return False, "exit code 3 (internal error)", stderr_lines[0] if stderr_lines else ""
    if verify_command and result.returncode == 1:
        problems = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
        if stderr_lines:
            return False, f"verify wrote {len(stderr_lines)} lines on stderr", stderr_lines[0]
        if not problems:
            return False, "exit code 1 without a problem line", ""
        return True, "", problems[0]
    if result.returncode != 2:
        return False, f"exit code {result.returncode}", stderr_lines[0] if stderr_lines else ""
    if len(stderr_lines) != 1:
        return False, f"{len(stderr_lines)} lines on stderr", stderr_lines[0] if stderr_lines else ""
    line = stderr_lines[0]
    if not line.startswith("salus: error: ") or "internal error" in line or len(line) < 30:
        return False, "not a one-line 'salus: error:' message", line
    return True, "", line


# ---------------------------------------------------------------------------------------------- fixtures


def collect(c: Campaign, out: Path, episodes: int, seed: int = 0, resume: bool = False,
            extra: list[str] | None = None) -> subprocess.CompletedProcess:
    args = ["collect", "--episodes", str(episodes), "--out", str(out), "--seed", str(seed), *TINY, *(extra or [])]
    return c.salus(*args, *(["--resume"] if resume else []))


def build_store(c: Campaign, name: str, episodes: int, seed: int = 0) -> Path:
    """A store of `episodes` tiny episodes, collected once and kept in the work folder."""
    out = c.work / "fixtures" / name
    if len(complete_episodes(out)) < episodes:
        started = time.perf_counter()
        result = collect(c, out, episodes, seed, resume=True)
        if result.returncode != 0:
            raise SystemExit(f"cannot build the fixture store {out}: exit {result.returncode}\n{result.stderr}")
        print(f"fixture {name}: {episodes} episodes in {time.perf_counter() - started:.0f} s", flush=True)
    return out


def copy_store(c: Campaign, source: Path, name: str) -> Path:
    target = c.work / "cases" / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    return target


def set_episode_attr(store: Path, episode_id: int, **values) -> None:
    path = store / "episodes" / f"{episode_id:06d}" / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"].update(values)
    path.write_text(json.dumps(meta, indent=2))


def signals_chunk(store: Path, episode_id: int) -> Path:
    chunks = sorted(p for p in (store / "episodes" / f"{episode_id:06d}" / "signals" / "c").rglob("*") if p.is_file())
    return chunks[0]


def root_cannot_write_0555(work: Path) -> bool:
    """True when a folder with mode 0555 still accepts a new file (root ignores permission bits)."""
    probe = work / "mode-0555"
    probe.mkdir(exist_ok=True)
    probe.chmod(0o555)
    try:
        (probe / "x").write_text("x")
        return True
    except OSError:
        return False
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)


class Tmpfs:
    """A small tmpfs mounted at `path` (root only); `ok` is False with `reason` where mounting fails."""

    def __init__(self, path: Path, size: str, readonly: bool = False) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if readonly else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                capture_output=True, text=True)
        self.ok = result.returncode == 0
        self.reason = (result.stderr or result.stdout).strip() or f"mount exit code {result.returncode}"

    def remount(self, options: str) -> bool:
        return subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], capture_output=True).returncode == 0

    def close(self) -> None:
        if self.ok:
            for _ in range(5):
                if subprocess.run(["umount", str(self.path)], capture_output=True).returncode == 0:
                    break
                time.sleep(1)
            else:
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True)
            self.ok = False


# ---------------------------------------------------------------------------------------------- groups


def group_inputs(c: Campaign, base: Path) -> None:
    """Bad flags and paths, each against a new folder (nothing may be created) and, for collect,
    against an intact store with --resume (nothing may change)."""
    g = "bad inputs"
    bad_flags = {
        "--episodes 0": ["--episodes", "0"], "--episodes -1": ["--episodes", "-1"],
        "--image-size 0": ["--image-size", "0"], "--max-steps 0": ["--max-steps", "0"],
        "--seed -5": ["--seed", "-5"], "--ensemble-size 0": ["--ensemble-size", "0"],
        "--requery-every 0": ["--requery-every", "0"], "--cameras top": ["--cameras", "top"],
        "--cameras ''": ["--cameras", ""], "--cameras front,front": ["--cameras", "front,front"],
        "--device cuda:7": ["--device", "cuda:7"],
        "--device nonsense": ["--device", "nonsense"],
        "--policy missing folder": ["--policy", str(c.work / "no-such-policy")],
        "--denoising-steps -2": ["--denoising-steps", "-2"], "--gpu-budget-gb -1": ["--gpu-budget-gb", "-1"],
    }
    total = len(complete_episodes(base))
    for label, flags in bad_flags.items():
        argv = ["collect", "--episodes", "3", *TINY]
        argv = _override(argv, flags)
        new = c.work / "cases" / f"new-{_slug(label)}"
        c.refused(g, f"collect {label} (new --out)", [*argv, "--out", str(new)], absent=new)
        argv = _override(["collect", "--episodes", str(total + 2), *TINY], flags)
        c.refused(g, f"collect {label} (--resume an intact store)", [*argv, "--out", str(base), "--resume"], store=base)

    # SALUS_* environment variables
    for variable, value in (("SALUS_SIM_IMAGE_SIZE", "abc"), ("SALUS_COLLECT_SEED", "-1"),
                            ("SALUS_SIM_CAMERAS", "top"), ("SALUS_POLICY_ENSEMBLE_SIZE", "1.5"),
                            ("SALUS_STORE_HORIZONS", "6,x"), ("SALUS_SIM_NO_SUCH_KEY", "1")):
        new = c.work / "cases" / f"env-{_slug(variable)}"
        flags = TINY[2:] if variable == "SALUS_SIM_IMAGE_SIZE" else TINY
        c.refused(g, f"{variable}={value}", ["collect", "--episodes", "2", "--out", str(new), *flags], absent=new,
                  env={variable: value})

    # paths
    a_file = c.work / "cases" / "a-file"
    a_file.parent.mkdir(parents=True, exist_ok=True)
    a_file.write_text("not a store\n")

    # foreign and damaged policies
    default = ROOT / "salus_engine" / "policy" / "default_ensemble"
    empty = c.work / "cases" / "empty-policy"
    empty.mkdir(exist_ok=True)

    def damaged_policy(label: str, damage) -> Path:
        target = c.work / "cases" / f"policy-{_slug(label)}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(default, target)
        damage(target)
        return target

    policies = {
        "an empty folder": empty,
        "a hub id that cannot be fetched": "salus-faults/no-such-policy",
        "a file": a_file,
        "member_1 weights truncated": damaged_policy(
            "weights truncated", lambda p: _truncate(p / "member_1" / "model.safetensors", 1000)),
        "member_0 config.json not JSON": damaged_policy(
            "config not json", lambda p: (p / "member_0" / "config.json").write_text("{oops")),
        "member_2 without its backbone": damaged_policy(
            "no backbone", lambda p: shutil.rmtree(p / "member_2" / "backbone")),
        "member_0 normalizer stats missing": damaged_policy(
            "no normalizer", lambda p: (p / "member_0" / "policy_preprocessor_step_5_normalizer_processor.safetensors")
            .unlink()),
    }
    for label, path in policies.items():
        new = c.work / "cases" / f"new-policy-{_slug(label)}"
        c.refused(g, f"collect --policy {label}", ["collect", "--episodes", "2", *TINY, "--out", str(new), "--policy",
                                                   str(path)], absent=new)
    full = c.work / "cases" / "not-empty"
    full.mkdir(exist_ok=True)
    (full / "notes.txt").write_text("someone's notes\n")
    c.refused(g, "collect --out a file", ["collect", "--episodes", "2", "--out", str(a_file), *TINY])
    c.refused(g, "collect --out under a file", ["collect", "--episodes", "2", "--out", str(a_file / "store"), *TINY])
    c.refused(g, "collect --out a non-empty folder (no --resume)",
              ["collect", "--episodes", "2", "--out", str(full), *TINY], store=full)
    c.refused(g, "collect --resume into a non-store folder",
              ["collect", "--episodes", "2", "--out", str(full), "--resume", *TINY], store=full)
    c.refused(g, "collect --out an intact store without --resume",
              ["collect", "--episodes", str(total + 1), "--out", str(base), *TINY], store=base)
    c.refused(g, "collect --resume with another --image-size",
              ["collect", "--episodes", str(total + 1), "--out", str(base), "--resume", "--image-size", "32",
               "--max-steps", "30"], store=base)
    c.refused(g, "collect --out under /proc (unwritable)",
              ["collect", "--episodes", "2", "--out", "/proc/salus-faults/store", *TINY])
    if root_cannot_write_0555(c.work):
        c.notes.append("read-only folder (chmod 0555): not testable as root (permission bits do not stop root's "
                       "writes); /proc and a read-only tmpfs stand in for it")
    else:
        ro = c.work / "cases" / "read-only"
        ro.mkdir(exist_ok=True)
        ro.chmod(0o555)
        c.refused(g, "collect --out in a read-only folder (0555)",
                  ["collect", "--episodes", "2", "--out", str(ro / "store"), *TINY], absent=ro / "store")
        ro.chmod(0o755)
    mount = Tmpfs(c.work / "cases" / "ro-mount", "32m")
    try:
        if not mount.ok:
            c.notes.append(f"read-only file system cases skipped: mount refused ({mount.reason})")
        else:
            shutil.copytree(base, mount.path / "store")
            if mount.remount("ro"):
                c.refused(g, "collect --out a new folder on a read-only file system",
                          ["collect", "--episodes", "2", "--out", str(mount.path / "new"), *TINY])
                c.refused(g, "collect --resume a store on a read-only file system",
                          ["collect", "--episodes", str(total + 2), "--out", str(mount.path / "store"), "--resume",
                           *TINY], store=mount.path / "store")
                c.refused(g, "train --out on a read-only file system",
                          ["train", "--data", str(base), "--out", str(mount.path / "run"), "--epochs", "1"])
            else:
                c.notes.append("read-only file system cases skipped: remount ro refused")
    finally:
        mount.close()

    missing = c.work / "cases" / "missing"
    c.refused(g, "verify a missing folder", ["verify", str(missing)], verify_command=True)
    c.refused(g, "verify a file", ["verify", str(a_file)], verify_command=True)
    c.refused(g, "train --data missing", ["train", "--data", str(missing), "--out", str(c.work / "cases" / "r1")])
    c.refused(g, "train --data a file", ["train", "--data", str(a_file), "--out", str(c.work / "cases" / "r2")])
    for label, flags in (("--batch-size 0", ["--batch-size", "0"]), ("--lr 0", ["--lr", "0"]),
                         ("--window 0", ["--window", "0"]), ("--patience -1", ["--patience", "-1"]),
                         ("--threads 0", ["--threads", "0"]),
                         ("--model single-horizon --window 3", ["--model", "single-horizon", "--window", "3"])):
        run = c.work / "cases" / f"run-{_slug(label)}"
        c.refused(g, f"train {label}", ["train", "--data", str(base), "--out", str(run), *flags], absent=run)
    for label, flags in (("--alpha 1.5", ["--alpha", "1.5"]), ("--alpha 0", ["--alpha", "0"]),
                         ("--threads 0", ["--threads", "0"])):
        c.refused(g, f"evaluate {label}", ["evaluate", "--checkpoint", str(missing), "--data", str(base), "--out",
                                           str(c.work / "cases" / "e0"), *flags])
    c.refused(g, "train --epochs 0", ["train", "--data", str(base), "--out", str(c.work / "cases" / "r3"),
                                      "--epochs", "0"], absent=c.work / "cases" / "r3")
    c.refused(g, "train --out a file", ["train", "--data", str(base), "--out", str(a_file), "--epochs", "1"])
    c.refused(g, "train --out under a file", ["train", "--data", str(base), "--out", str(a_file / "run"),
                                              "--epochs", "1"])
    c.refused(g, "evaluate --checkpoint missing", ["evaluate", "--checkpoint", str(missing), "--data", str(base),
                                                   "--out", str(c.work / "cases" / "e1")])
    c.refused(g, "evaluate --out a file", ["evaluate", "--checkpoint", str(missing), "--data", str(base),
                                           "--out", str(a_file)])
    c.refused(g, "evaluate --out under a file", ["evaluate", "--checkpoint", str(missing), "--data", str(base),
                                                 "--out", str(a_file / "eval")])
    c.refused(g, "report missing folder", ["report", str(missing)])
    c.refused(g, "report a file", ["report", str(a_file)])
    c.refused(g, "--log under a file", ["--log", str(a_file / "x.log"), "verify", str(base)])
    c.refused(g, "--log a folder", ["--log", str(c.work / "cases"), "verify", str(base)])


def group_config(c: Campaign, base: Path) -> None:
    """Bad TOML files. The tiny settings are given as flags only where the file does not set the same
    key (a flag overrides the file's value, so the file's wrong value would never be read), and the
    refusal must name the wrong key (a resume refused for another reason does not count)."""
    g = "bad inputs"
    steps = TINY[2:]
    files = {  # label: (file content, a word the one-line error must hold, flags that do not override it)
        "unknown key [sim] imagesize": ("[sim]\nimagesize = 64\n", "imagesize", TINY),
        "unknown key [collect] episodez": ("[collect]\nepisodez = 3\n", "episodez", TINY),
        "unknown section [simulator]": ("[simulator]\nimage_size = 64\n", "simulator", TINY),
        "top-level key outside a table": ("episodes = 3\n", "episodes", TINY),
        "image_size = 64.9": ("[sim]\nimage_size = 64.9\n", "image_size", steps),
        "image_size = true": ("[sim]\nimage_size = true\n", "image_size", steps),
        "image_size = '64px'": ("[sim]\nimage_size = '64px'\n", "image_size", steps),
        "[collect] sim = 5": ("[collect]\nsim = 5\n", "sim", TINY),
        "[collect] sim = 5 (no flags)": ("[collect]\nsim = 5\n", "sim", []),
        "[store] horizons = []": ("[store]\nhorizons = []\n", "horizons", TINY),
        "[store] horizons = [0]": ("[store]\nhorizons = [0]\n", "horizons", TINY),
        "[policy] device = 7": ("[policy]\ndevice = 7\n", "device", TINY),
        "[sim] cameras = []": ("[sim]\ncameras = []\n", "cameras", TINY),
        "malformed TOML": ("[sim\nimage_size = = 64\n", "TOML", TINY),
        "not UTF-8": (b"[sim]\nimage_size = 64 # \xff\xfe\n", "TOML", TINY),
    }
    total = len(complete_episodes(base))
    folder = c.work / "cases" / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    for label, (text, mention, flags) in files.items():
        path = folder / f"{_slug(label)}.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        new = c.work / "cases" / f"cfg-{_slug(label)}"
        c.refused(g, f"--config {label} (new --out)",
                  ["collect", "--episodes", "2", "--out", str(new), *flags, "--config", str(path)],
                  absent=new, must_mention=mention)
        c.refused(g, f"--config {label} (--resume an intact store)",
                  ["collect", "--episodes", str(total + 2), "--out", str(base), "--resume", *flags, "--config",
                   str(path)], store=base, must_mention=mention)
    new = c.work / "cases" / "cfg-missing"
    c.refused(g, "--config missing file", ["collect", "--episodes", "2", "--out", str(new), *TINY, "--config",
                                           str(folder / "none.toml")], absent=new)
    c.refused(g, "--config a folder", ["collect", "--episodes", "2", "--out", str(new), *TINY, "--config",
                                       str(folder)], absent=new)


def group_stores(c: Campaign, base: Path) -> None:
    """Foreign and damaged stores, each for `salus verify`, `salus train` and `salus collect --resume`."""
    import numpy as np
    import zarr

    g = "bad inputs"
    total = len(complete_episodes(base))

    def plain_zarr(p: Path) -> None:
        shutil.rmtree(p)
        root = zarr.open_group(str(p), mode="w", zarr_format=3)
        root.attrs["owner"] = "someone else"
        root.create_array("x", shape=(10,), dtype="int32")[:] = np.arange(10)

    def truncate(p: Path) -> None:
        chunk = signals_chunk(p, 1)
        chunk.write_bytes(chunk.read_bytes()[:100])

    def scribble(p: Path) -> None:
        chunk = signals_chunk(p, 1)
        data = bytearray(chunk.read_bytes())
        rng = random.Random(7)
        at = rng.randrange(0, max(1, len(data) - 32))
        data[at:at + 32] = bytes(rng.randrange(256) for _ in range(32))
        chunk.write_bytes(bytes(data))

    damages = {
        "plain zarr group (not a SALUS store)": plain_zarr,
        "missing root zarr.json": lambda p: (p / "zarr.json").unlink(),
        "signals chunk truncated to 100 bytes": truncate,
        "32 random bytes in a signals chunk": scribble,
        "missing array (signals)": lambda p: shutil.rmtree(p / "episodes" / "000001" / "signals"),
        "missing array (images)": lambda p: shutil.rmtree(p / "episodes" / "000001" / "images"),
        "failure_type 'collision'": lambda p: set_episode_attr(p, 1, failure_type="collision"),
        "failure_step null": lambda p: set_episode_attr(p, 1, failure_step=None),
        "episode_length -3": lambda p: set_episode_attr(p, 1, episode_length=-3),
        "episode_length 10**12": lambda p: set_episode_attr(p, 1, episode_length=10**12),
        "episode folder without zarr.json": lambda p: (p / "episodes" / "000001" / "zarr.json").unlink(),
        "missing episode (gap)": lambda p: shutil.rmtree(p / "episodes" / "000001"),
        "root image_size 'big'": lambda p: _set_root_attr(p, image_size="big"),
        "root zarr.json not JSON": lambda p: (p / "zarr.json").write_text("{not json"),
    }
    for label, damage in damages.items():
        for command in ("verify", "train", "collect --resume"):
            store = copy_store(c, base, f"damaged-{_slug(label)}-{_slug(command)}")
            damage(store)
            name = f"{command}: {label}"
            if command == "verify":
                c.refused(g, name, ["verify", str(store)], store=store, verify_command=True)
            elif command == "train":
                run = c.work / "cases" / f"run-{_slug(label)}"
                c.refused(g, name, ["train", "--data", str(store), "--out", str(run), "--epochs", "1"], store=store,
                          absent=run)
            else:
                c.refused(g, name, ["collect", "--episodes", str(total + 2), "--out", str(store), "--resume", *TINY],
                          store=store)

    # a leftover .staging/ is what a kill leaves: not an error
    for command in ("verify", "train", "collect --resume"):
        store = copy_store(c, base, f"staging-{_slug(command)}")
        keep = fingerprint(store)
        staged = store / ".staging" / f"{total:06d}"
        shutil.copytree(store / "episodes" / "000000", staged)
        shutil.rmtree(staged / "images")
        name = f"{command}: leftover .staging/ (must just work)"
        if command == "verify":
            c.accepted(g, name, ["verify", str(store)], store, None, keep)
        elif command == "train":
            c.accepted(g, name, ["train", "--data", str(store), "--out", str(c.work / "cases" / "run-staging"),
                                 "--epochs", "1"], store, None, keep)
        else:
            result = c.accepted(g, name, ["collect", "--episodes", str(total + 1), "--out", str(store), "--resume",
                                          *TINY], store, list(range(total + 1)), keep)
            if result.returncode == 0 and (store / ".staging").exists() and any((store / ".staging").iterdir()):
                c.outcomes[-1].handled = False
                c.outcomes[-1].why = ".staging/ still holds the partial episode after --resume"


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _set_root_attr(store: Path, **values) -> None:
    path = store / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"].update(values)
    path.write_text(json.dumps(meta, indent=2))


def build_checkpoint(c: Campaign, store: Path) -> Path:
    """A real tiny predictor run trained on `store` (2 epochs)."""
    run = c.work / "fixtures" / "run"
    if not (run / "best.safetensors").is_file():
        if run.exists():
            shutil.rmtree(run)
        started = time.perf_counter()
        result = c.salus("train", "--data", str(store), "--out", str(run), "--epochs", "2")
        if result.returncode != 0:
            raise SystemExit(f"cannot train the fixture checkpoint: exit {result.returncode}\n{result.stderr}")
        print(f"fixture run: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return run


def group_checkpoints(c: Campaign, store: Path, run: Path) -> None:
    """Damaged predictor runs for `salus evaluate` and `salus report`."""
    import torch
    from safetensors.torch import load_file, save_file

    g = "bad inputs"
    good = c.salus("evaluate", "--checkpoint", str(run), "--data", str(store), "--out", str(c.work / "cases" / "eval"),
                   "--no-plots")
    good_line = (good.stderr.strip().splitlines() or [""])[0]
    c.notes.append(f"evaluate of the intact fixture run: exit {good.returncode}"
                   + (f" ({good_line})" if good.returncode else ""))
    # the message evaluate gives for this store once the checkpoint loaded (all-timeout stores have no
    # successful calibration episode): a damaged checkpoint must be refused before it
    later = "calibration split" if "calibration split" in good_line else None

    def weights(p: Path) -> Path:
        return p / "best.safetensors"

    def truncate(p: Path) -> None:
        weights(p).write_bytes(weights(p).read_bytes()[:100])

    def foreign(p: Path) -> None:
        save_file({"embedding.weight": torch.zeros(10, 4)}, str(weights(p)))

    def not_safetensors(p: Path) -> None:
        weights(p).write_bytes(b"PK\x03\x04 this is a zip file, not safetensors" * 10)

    def wrong_shape(p: Path) -> None:
        state = load_file(str(weights(p)))
        name = next(k for k, v in state.items() if v.dim() == 2)
        state[name] = torch.zeros(state[name].shape[0] + 3, state[name].shape[1])
        save_file(state, str(weights(p)))

    def config_edit(**model):
        def edit(p: Path) -> None:
            config = json.loads((p / "config.json").read_text())
            config["model"].update(model)
            (p / "config.json").write_text(json.dumps(config))
        return edit

    def config_top(**values):
        def edit(p: Path) -> None:
            config = json.loads((p / "config.json").read_text())
            config.update(values)
            (p / "config.json").write_text(json.dumps(config))
        return edit

    damages = {
        "best.safetensors truncated to 100 bytes": truncate,
        "foreign safetensors (other tensors)": foreign,
        "best.safetensors not safetensors at all": not_safetensors,
        "a weight tensor of the wrong shape": wrong_shape,
        "config.json hidden [32] (weights mismatch)": config_edit(hidden=[32]),
        "config.json hidden [-3]": config_edit(hidden=[-3]),
        "config.json hidden ['x']": config_edit(hidden=["x"]),
        "config.json window 0": config_edit(window=0),
        "config.json horizons []": config_edit(horizons=[]),
        "config.json model null": config_top(model=None),
        "config.json without store": lambda p: _drop_key(p / "config.json", "store"),
        "config.json a JSON list": lambda p: (p / "config.json").write_text("[1, 2]"),
        "config.json truncated": lambda p: (p / "config.json").write_text((p / "config.json").read_text()[:50]),
        "missing config.json": lambda p: (p / "config.json").unlink(),
        "missing best.safetensors": lambda p: weights(p).unlink(),
        "splits.json damaged": lambda p: (p / "splits.json").write_text("{\"train\": [1, 2"),
    }
    for label, damage in damages.items():
        broken = c.work / "cases" / f"ckpt-{_slug(label)}"
        if broken.exists():
            shutil.rmtree(broken)
        shutil.copytree(run, broken)
        damage(broken)
        out = c.work / "cases" / f"eval-{_slug(label)}"
        c.refused(g, f"evaluate: {label}", ["evaluate", "--checkpoint", str(broken), "--data", str(store), "--out",
                                            str(out), "--no-plots"], store=store, must_not_mention=later)
        if label in ("best.safetensors truncated to 100 bytes", "missing best.safetensors", "splits.json damaged",
                     "foreign safetensors (other tensors)", "best.safetensors not safetensors at all",
                     "a weight tensor of the wrong shape", "config.json hidden [32] (weights mismatch)"):
            continue  # report does not read the weights or the splits (hidden [32] alone is a valid config)
        c.refused(g, f"report: {label}", ["report", str(broken)])

    # report of a run with an evaluation: a real one from the repository's test data
    evaluated = ROOT / "tests" / "data" / "console_run"
    metrics_damages = {
        "metrics.json truncated": lambda m: m.write_text(m.read_text()[:200]),
        "metrics.json a JSON list": lambda m: m.write_text("[]"),
        "metrics.json without scorers": lambda m: _drop_key(m, "scorers"),
        "metrics.json of another format": lambda m: _set_key(m, "format", "something-else"),
        "metrics.json checkpoint null": lambda m: _set_key(m, "checkpoint", None),
    }
    for label, damage in metrics_damages.items():
        broken = c.work / "cases" / f"report-{_slug(label)}"
        if broken.exists():
            shutil.rmtree(broken)
        shutil.copytree(evaluated, broken)
        damage(broken / "evaluation" / "metrics.json")
        c.refused(g, f"report: {label}", ["report", str(broken)])
        c.refused(g, f"report --markdown: {label}", ["report", "--markdown", str(broken / "evaluation")])


def _drop_key(path: Path, key: str) -> None:
    data = json.loads(path.read_text())
    data.pop(key, None)
    path.write_text(json.dumps(data))


def _set_key(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))


def _default_signals() -> None:
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


class CollectProcess:
    """A `salus collect` subprocess whose stdout lines are read by a thread."""

    def __init__(self, c: Campaign, argv: list[str], log: Path) -> None:
        self.started = time.perf_counter()
        self.stderr_file = open(log, "w")
        # default SIGHUP and SIGTERM actions in the child, as from a terminal (nohup would leave SIGHUP ignored
        # until the collection installs its own handler)
        self.proc = subprocess.Popen([*SALUS, *argv], cwd=c.work, stdout=subprocess.PIPE, stderr=self.stderr_file,
                                     text=True, preexec_fn=_default_signals, env=CHILD_ENV)
        self.log = log
        self.lines: list[str] = []
        self.first_episode = threading.Event()
        self.episode_seconds: float | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("episode") and not self.first_episode.is_set():
                match = re.search(r"([\d.]+) s\s*$", line)
                self.episode_seconds = float(match.group(1)) if match else None
                self.first_episode.set()

    def episodes_printed(self) -> int:
        return sum(1 for line in self.lines if line.startswith("episode"))

    def finish(self, timeout: float | None = None) -> int | None:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.reader.join(timeout=10)
        self.stderr_file.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def stderr(self) -> str:
        if not self.stderr_file.closed:
            self.stderr_file.flush()
        return self.log.read_text()


def expected_complete(store: Path, total: int, seed: int) -> str:
    """'' when the store holds exactly episodes 0..total-1, each complete with seed `seed + id`, no
    stray episode folder, no staged episode, and it verifies; else what is wrong."""
    episodes = complete_episodes(store)
    ids = sorted(episodes)
    if ids != list(range(total)):
        return f"episode ids {_ids(ids)}, expected 0..{total - 1}"
    if episode_folders(store) != [f"{i:06d}" for i in range(total)]:
        return f"stray episode folders: {sorted(set(episode_folders(store)) - {f'{i:06d}' for i in range(total)})}"
    seeds = [episodes[i].get("seed") for i in ids]
    if seeds != [seed + i for i in ids]:
        return f"seeds {seeds}, expected {seed}..{seed + total - 1}"
    staging = store / ".staging"
    if staging.exists() and any(staging.iterdir()):
        return ".staging/ not empty after the resume"
    leftovers = [p.name for p in store.parent.iterdir() if p.name.startswith(".salus-creating-")]
    if leftovers:
        return f"creation leftovers beside the store: {leftovers}"
    good, problems = verify_ok(store)
    return "" if good else f"does not verify: {problems}"


def group_kills(c: Campaign, kills: int) -> None:
    """SIGKILL of a collection at random moments, each followed by --resume to the full count."""
    g = "kills"
    total = 4
    timing = {"startup": None, "episode": None}
    done = attempts = 0
    # after a first kill that measures start-up and episode time: one in six at a random moment of the
    # start-up, one in six just as the store (or its build folder) appears, the rest during episodes
    modes = ["episode", "startup", "episode", "creation", "episode", "episode"]
    while done < kills and attempts < kills * 2:
        attempts += 1
        mode = modes[done % len(modes)] if timing["startup"] else "episode"
        home = c.work / "kills" / f"{attempts:03d}"
        home.mkdir(parents=True, exist_ok=True)
        out = home / "store"
        seed = 1000 + 17 * attempts
        argv = ["collect", "--episodes", str(total), "--out", str(out), "--seed", str(seed), *TINY]
        proc = CollectProcess(c, argv, home / "stderr.txt")
        moment = ""
        try:
            if mode == "startup":
                delay = c.rng.uniform(0.2, timing["startup"])
                time.sleep(delay)
                moment = f"{delay:.1f} s into start-up"
            elif mode == "creation":
                deadline = time.perf_counter() + (timing["startup"] or 60) * 3 + 60
                while time.perf_counter() < deadline and proc.proc.poll() is None:
                    if out.exists() or any(p.name.startswith(".salus-creating-") for p in home.iterdir()):
                        break
                    time.sleep(0.002)
                delay = c.rng.uniform(0, 0.05)
                time.sleep(delay)
                moment = f"{delay * 1000:.0f} ms after the store (or its build folder) appeared"
            else:
                if not proc.first_episode.wait(timeout=COMMAND_TIMEOUT):
                    proc.kill()
                    c.record(g, f"kill #{attempts}", False, "no episode line within the timeout", None,
                             proc.stderr()[-400:])
                    continue
                if timing["startup"] is None:
                    timing["startup"] = max(1.0, time.perf_counter() - proc.started - (proc.episode_seconds or 0))
                    timing["episode"] = proc.episode_seconds or 5.0
                delay = c.rng.uniform(0, 2.2 * timing["episode"])
                time.sleep(delay)
                moment = f"{delay:.1f} s after episode 0's line"
            alive = proc.proc.poll() is None
            if alive:
                os.kill(proc.proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
        rc = proc.proc.returncode
        if not alive:
            print(f"[{g}] attempt {attempts}: the collection ended ({rc}) before the kill {moment}; not counted",
                  flush=True)
            continue
        done += 1
        at_kill = len(complete_episodes(out))
        problem = ""
        if at_kill:  # an empty store (killed before its first episode) has nothing to verify
            good, problems = verify_ok(out)
            if not good:
                problem = f"after the kill the store does not verify: {problems}"
        result = c.salus(*argv, "--resume")
        if not problem and result.returncode != 0:
            problem = f"--resume exit code {result.returncode}"
        if not problem:
            problem = expected_complete(out, total, seed)
        c.record(g, f"SIGKILL #{done} ({mode}, {moment}, {at_kill} episodes in the store)", not problem, problem,
                 result)
        if not problem:
            shutil.rmtree(home)
    c.counters["kills"] = done


def group_signals(c: Campaign) -> None:
    """SIGTERM and SIGHUP: the collection stops on its own after the current episode, then --resume."""
    g = "signals"
    total = 5
    for number, (sig, when) in enumerate([(signal.SIGTERM, "episode"), (signal.SIGHUP, "episode"),
                                          (signal.SIGTERM, "episode"), (signal.SIGHUP, "episode"),
                                          (signal.SIGTERM, "startup"), (signal.SIGHUP, "startup")]):
        home = c.work / "signals" / f"{number:02d}"
        home.mkdir(parents=True, exist_ok=True)
        out = home / "store"
        seed = 5000 + 31 * number
        argv = ["collect", "--episodes", str(total), "--out", str(out), "--seed", str(seed), *TINY]
        proc = CollectProcess(c, argv, home / "stderr.txt")
        name = f"{sig.name} during {'an episode' if when == 'episode' else 'start-up'} #{number}"
        try:
            if when == "episode":
                if not proc.first_episode.wait(timeout=COMMAND_TIMEOUT):
                    proc.kill()
                    c.record(g, name, False, "no episode line", None, proc.stderr()[-400:])
                    continue
                time.sleep(c.rng.uniform(0, proc.episode_seconds or 2.0))
            else:
                time.sleep(c.rng.uniform(1.0, 6.0))
            if proc.proc.poll() is not None:
                print(f"[{g}] {name}: the collection ended before the signal; not counted", flush=True)
                proc.finish()
                continue
            sent_at_episodes = proc.episodes_printed()
            os.kill(proc.proc.pid, sig)
            limit = 120 + 3 * (proc.episode_seconds or 20)
            rc = proc.finish(timeout=limit)
            if rc is None:
                proc.kill()
                c.record(g, name, False, f"still running {limit:.0f} s after the signal", None, proc.stderr()[-400:])
                continue
        finally:
            if proc.proc.poll() is None:
                proc.kill()
        stderr = proc.stderr()
        problem = ""
        printed = proc.episodes_printed()
        if "Traceback" in stderr or rc == 3:
            problem = f"exit code {rc} with a traceback"
        elif when == "episode":
            if rc != 0:
                problem = f"exit code {rc}, expected 0 (a graceful stop)"
            elif printed > sent_at_episodes + 1:
                problem = f"{printed - sent_at_episodes} more episodes after the signal (expected at most 1)"
            elif printed >= total:
                problem = "the collection completed instead of stopping"
        elif rc not in (0, -sig, 128 + sig):
            problem = f"exit code {rc} after a signal during start-up"
        elif rc == 0 and printed >= total:
            problem = "the signal was ignored: the collection completed"
        at_stop = len(complete_episodes(out))
        if not problem and at_stop:  # an empty store (stopped before its first episode) has nothing to verify
            good, problems = verify_ok(out)
            if not good:
                problem = f"store does not verify after the stop: {problems}"
        if not problem:
            result = c.salus(*argv, "--resume")
            if result.returncode != 0:
                problem = f"--resume exit code {result.returncode}: {result.stderr.strip()[-300:]}"
            else:
                problem = expected_complete(out, total, seed)
        c.record(g, f"{name}: exit {rc}, {at_stop} episodes at the stop", not problem, problem, None,
                 "" if not problem else stderr.strip()[-300:])
        if not problem:
            shutil.rmtree(home)


def group_disk(c: Campaign, size: str) -> None:
    """Collect into a small tmpfs until it is full; the store must verify, then --resume completes."""
    g = "disk full"
    mount = Tmpfs(c.work / "disk", size)
    try:
        if not mount.ok:
            c.notes.append(f"disk-full case skipped: mounting a tmpfs is not permitted here ({mount.reason})")
            return
        out = mount.path / "store"
        started = time.perf_counter()
        result = collect(c, out, 10_000, seed=9000)
        ok, why, message = judge_refusal(result, False)
        written = len(complete_episodes(out))
        if ok and written < 1:
            ok, why = False, "no episode was written before the disk filled (make the tmpfs larger)"
        if ok:
            good, problems = verify_ok(out)
            if not good:
                ok, why = False, f"the store does not verify after the disk filled: {problems}"
        if ok and (problem := expected_complete(out, written, 9000)):
            ok, why = False, problem
        c.record(g, f"collect into a {size} tmpfs until full ({written} episodes, {time.perf_counter() - started:.0f} s)",
                 ok, why, result, message)
        if not mount.remount("size=64m"):
            c.record(g, "free space (remount size=64m)", False, "remount refused")
            return
        result = collect(c, out, written + 2, seed=9000, resume=True)
        problem = f"--resume exit code {result.returncode}" if result.returncode else expected_complete(
            out, written + 2, 9000)
        c.record(g, "after freeing space, --resume completes", not problem, problem, result)

        # a disk already full when the store is created
        mount.remount(f"size={size}")
        filler = mount.path / "filler"
        with open(filler, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass
        new = mount.path / "new-store"
        c.refused(g, "collect a new store on a full disk", ["collect", "--episodes", "2", "--out", str(new), *TINY])
        c.refused(g, "collect --resume on a full disk", ["collect", "--episodes", str(written + 4), "--out", str(out),
                                                         "--resume", *TINY], store=out)
        filler.unlink()
    finally:
        mount.close()


RSS_CHILD = r"""
import gc, json, os, sys
os.environ.setdefault("MUJOCO_GL", "egl")
import psutil
from salus_engine.config import load_collect_config
from salus_engine.events import EpisodeFinished
from salus_engine.jobs import run_collection
episodes, out = int(sys.argv[1]), sys.argv[2]
process = psutil.Process()
def sink(event):
    if isinstance(event, EpisodeFinished):
        gc.collect()
        print(json.dumps({"done": event.done, "rss_mb": process.memory_info().rss / 2**20}), flush=True)
run_collection(load_collect_config(episodes=episodes, out=out, sim={"image_size": 64, "max_steps": 30}), sink=sink)
"""


def measure_rss(c: Campaign, measured: int, warmup: int = 10) -> str:
    """RSS growth per 100 episodes of a tiny in-process collection, after `warmup` episodes: the slope
    of a least-squares line through one RSS sample per episode."""
    import numpy as np

    episodes = warmup + measured
    out = c.work / "rss" / "store"
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    script = ROOT / "bench" / "collect_rss.py"
    started = time.perf_counter()
    if script.is_file():  # the store agent's script: one line per --every episodes, here every episode
        argv = [sys.executable, str(script), "--episodes", str(episodes), "--every", "1", "--image-size", "64",
                "--max-steps", "30", "--out", str(out)]
        pattern = re.compile(r"episodes\s+(\d+)\s+rss\s+([\d.]+) MB")
        source = "bench/collect_rss.py --every 1"
    else:
        argv = [sys.executable, "-c", RSS_CHILD, str(episodes), str(out)]
        pattern = re.compile(r'"done": (\d+), "rss_mb": ([\d.]+)')
        source = "an in-process run_collection"
    result = subprocess.run(argv, cwd=c.work, capture_output=True, text=True, timeout=4 * 3600)
    samples = [(int(m.group(1)), float(m.group(2))) for m in pattern.finditer(result.stdout)]
    measured_samples = [(n, rss) for n, rss in samples if n > warmup]
    if result.returncode != 0 or len(measured_samples) < 2:
        return f"RSS measurement failed (exit {result.returncode}): {result.stderr.strip()[-300:]}"
    n, rss = np.array(measured_samples, dtype=float).T
    slope, _ = np.polyfit(n, rss, 1)
    return (f"RSS growth per 100 episodes of a tiny collection: {slope * 100:+.2f} MB (least-squares slope over "
            f"episodes {int(n[0])}-{int(n[-1])} after {warmup} warm-up; RSS {rss[0]:.0f} -> {rss[-1]:.0f} MB; "
            f"{source}, {time.perf_counter() - started:.0f} s)")


# ---------------------------------------------------------------------------------------------- main


def _override(argv: list[str], flags: list[str]) -> list[str]:
    """argv with each `--flag value` of `flags` replacing the same flag's value, or appended."""
    argv = list(argv)
    for i in range(0, len(flags), 2):
        if flags[i] in argv:
            argv[argv.index(flags[i]) + 1] = flags[i + 1]
        else:
            argv += flags[i:i + 2]
    return argv


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def summary(c: Campaign, wall: float, rss_line: str | None) -> None:
    print("\n" + "=" * 100)
    inputs = [o for o in c.outcomes if o.group == "bad inputs"]
    k = sum(o.handled for o in inputs)
    print(f"bad inputs: {len(inputs)} tried, {k} handled in one line with data intact ({_pct(k, len(inputs))})")
    kills = [o for o in c.outcomes if o.group == "kills"]
    k = sum(o.handled for o in kills)
    print(f"kills: {len(kills)} SIGKILLs, {k} recovered with exactly the expected unique complete episodes "
          f"({_pct(k, len(kills))})")
    sigs = [o for o in c.outcomes if o.group == "signals"]
    k = sum(o.handled for o in sigs)
    print(f"signals: SIGTERM/SIGHUP {len(sigs)} sent, {k} stopped on their own after the current episode (or at "
          f"start-up), store verified, --resume completed ({_pct(k, len(sigs))})")
    disk = [o for o in c.outcomes if o.group == "disk full"]
    if disk:
        k = sum(o.handled for o in disk)
        print(f"disk full: {len(disk)} steps, {k} handled ({_pct(k, len(disk))})")
    if rss_line:
        print(rss_line)
    for note in c.notes:
        print(f"note: {note}")
    failed = [o for o in c.outcomes if not o.handled]
    print(f"\nnot handled: {len(failed)}")
    for o in failed:
        print(f"- [{o.group}] {o.name}: {o.why} (exit code {o.rc})")
        for line in [line for line in o.stderr.splitlines() if line.strip()][:6]:
            print(f"    {line[:300]}")
    print(f"\ncampaign wall time: {wall / 60:.1f} min")


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.0f} %" if n else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 kills and 30 RSS episodes")
    parser.add_argument("--kills", type=int, help="SIGKILLs (default 20, 6 with --quick)")
    parser.add_argument("--rss-episodes", type=int, help="measured episodes after 10 warm-up (default 300: over 100, one 2 MB step of the allocator moves the slope by 2 MB per 100; 30 with --quick)")
    parser.add_argument("--only", nargs="+", choices=GROUPS, help="run only these groups")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the random kill moments")
    parser.add_argument("--disk-size", default="512k", help="tmpfs size of the disk-full case (default 512k)")
    parser.add_argument("--work", help="work folder (default a new temporary folder, removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    kills = args.kills if args.kills is not None else (6 if args.quick else 20)
    rss_episodes = args.rss_episodes if args.rss_episodes is not None else (30 if args.quick else 300)
    groups = set(args.only or GROUPS)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="salus-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}; groups {', '.join(g for g in GROUPS if g in groups)}", flush=True)
    c = Campaign(work=work, rng=random.Random(args.seed))
    started = time.perf_counter()
    rss_line = None
    try:
        needs_base = groups & {"inputs", "config", "stores", "checkpoints"}
        base = build_store(c, "base", 24, seed=0) if needs_base else None
        if "inputs" in groups:
            group_inputs(c, base)
        if "config" in groups:
            group_config(c, base)
        if "stores" in groups:
            group_stores(c, base)
        if "checkpoints" in groups:
            group_checkpoints(c, base, build_checkpoint(c, base))
        if "kills" in groups:
            group_kills(c, kills)
        if "signals" in groups:
            group_signals(c)
        if "disk" in groups:
            group_disk(c, args.disk_size)
        if "rss" in groups:
            rss_line = measure_rss(c, rss_episodes)
    finally:
        summary(c, time.perf_counter() - started, rss_line)
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work folder kept: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
