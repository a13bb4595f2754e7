"""Prints what the operator console costs: the collection slowdown with the console against the
headless `salus collect`, and the console's idle CPU.

(a) Slowdown: the same collection (same seeds, so the same episodes) runs headless
(`salus collect`) and in the console (`salus tui --collect`, inside tmux at 200x60 so that every
frame is really drawn in a terminal), alternating, `--repeats` times each. Time per step is the
sum of the engine's per-episode seconds over the sum of episode lengths (model loading excluded);
slowdown = console / headless - 1, median over the pairs. Target: at most 5 %.

(b) Idle CPU: the console's process CPU time (user + system, /proc) over `--idle-seconds`, once
freshly opened with nothing running and once after its collection finished, as % of one core.
Target: below 3 %.

Also printed: the console's UI (main) thread CPU while collecting, as % of one core.

    .venv/bin/python bench/console_overhead.py [--episodes 4] [--repeats 2] [--idle-seconds 30]

Needs tmux. Uses the embedded default ensemble, or SALUS_TEST_POLICY (2 members) when the default is
not there yet, or --policy/--ensemble-size.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from salus_engine.config import DEFAULT_POLICY_DIR  # noqa: E402

HEADLESS_LINE = re.compile(r"episode\s+(\d+)\s+seed\s+\d+\s+(\w+)\s+step\s+\d+/\s*(\d+)\s+max uncertainty\s+\S+\s+([\d.]+) s")
CONSOLE_LINE = re.compile(r"ep\s+(\d+)\s+(\w+)\s+step\s+\d+/\s*(\d+)\s+unc max\s+\S+\s+([\d.]+)s")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU seconds of a process (or one of its threads) from /proc."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class Terminal:
    """A tmux server on a private socket with one window of a fixed size running one command."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], size: tuple[int, int]) -> None:
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        shell = f"cd {shlex.quote(str(REPO))} && exec env -u COLUMNS -u LINES {exports} {shlex.join(command)}"
        width, height = (str(v) for v in size)
        subprocess.run([*self.base, "new-session", "-d", "-s", "bench", "-x", width, "-y", height, "sleep 3600"],
                       check=True)
        self.tmux("set-option", "-t", "bench", "window-size", "manual")
        self.tmux("resize-window", "-t", "bench", "-x", width, "-y", height)
        subprocess.run([*self.base, "respawn-pane", "-k", "-t", "bench", shell], check=True)
        self.pid = int(self.tmux("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "bench")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "bench", key)
            time.sleep(0.3)

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise SystemExit(f"console_overhead: timed out waiting for {what}")
        time.sleep(0.5)


def policy_args(args: argparse.Namespace) -> list[str]:
    if args.policy:
        return ["--policy", args.policy] + (["--ensemble-size", str(args.ensemble_size)] if args.ensemble_size else [])
    if DEFAULT_POLICY_DIR.is_dir() and any(DEFAULT_POLICY_DIR.glob("member_*")):
        return ["--ensemble-size", str(args.ensemble_size)] if args.ensemble_size else []
    if os.environ.get("SALUS_TEST_POLICY"):
        return ["--policy", os.environ["SALUS_TEST_POLICY"], "--ensemble-size", str(args.ensemble_size or 2)]
    raise SystemExit(f"console_overhead: no policy ensemble: {DEFAULT_POLICY_DIR} is missing; train it "
                     "('salus policy train') or give --policy")


def collect_args(args: argparse.Namespace, out: Path) -> list[str]:
    extra = ["--image-size", str(args.image_size)] if args.image_size else []
    extra += ["--max-steps", str(args.max_steps)] if args.max_steps else []
    return ["--out", str(out), "--seed", str(args.seed), *extra, *policy_args(args)]


def per_step(lines: list[tuple[int, str, int, float]]) -> tuple[float, int, float]:
    """(seconds per step, steps, seconds) over parsed episode lines (id, outcome, length, seconds)."""
    steps = sum(line[2] for line in lines)
    seconds = sum(line[3] for line in lines)
    return seconds / max(1, steps), steps, seconds


def run_headless(args: argparse.Namespace, work: Path, index: int) -> list[tuple[int, str, int, float]]:
    out = work / f"headless-{index}"
    command = [sys.executable, "-m", "salus_engine.cli", "collect", "--episodes", str(args.episodes),
               *collect_args(args, out)]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"console_overhead: salus collect failed:\n{proc.stderr[-2000:]}")
    return [(int(m[1]), m[2], int(m[3]), float(m[4])) for m in HEADLESS_LINE.finditer(proc.stdout)]


def run_console(args: argparse.Namespace, work: Path, index: int) -> tuple[list[tuple[int, str, int, float]],
                                                                             float, float]:
    """Episode lines, the UI thread's CPU share while collecting, and the idle CPU share afterwards."""
    out, log = work / f"console-{index}", work / f"console-{index}.log"
    command = [sys.executable, "-m", "salus_engine.cli", "tui", "--collect", str(args.episodes),
               *collect_args(args, out), "--log", str(log), "--checkpoint", "", "--refresh-hz", str(args.refresh_hz)]
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "TERM": "xterm-256color", "COLORTERM": "truecolor",
           "PYTHONPATH": str(REPO)}
    terminal = Terminal(f"salus-bench-{os.getpid()}-{index}", command, env, args.size)
    try:
        text = lambda: log.read_text() if log.exists() else ""  # noqa: E731
        wait_for(lambda: "ep    0" in text(), args.timeout, "the first console episode")
        ui_start, wall_start = cpu_seconds(terminal.pid, terminal.pid), time.monotonic()
        wait_for(lambda: "collection complete" in text() or "error:" in text(), args.timeout,
                 "the console collection")
        ui_share = (cpu_seconds(terminal.pid, terminal.pid) - ui_start) / (time.monotonic() - wall_start)
        if "error:" in text():
            raise SystemExit(f"console_overhead: the console collection failed; see {log}")
        time.sleep(2.0)
        idle = idle_share(terminal.pid, args.idle_seconds)
        terminal.keys("q")
        wait_for(lambda: not Path(f"/proc/{terminal.pid}").exists(), 60, "the console to quit")
    finally:
        terminal.close()
    return [(int(m[1]), m[2], int(m[3]), float(m[4])) for m in CONSOLE_LINE.finditer(text())], ui_share, idle


def idle_share(pid: int, seconds: float) -> float:
    start, wall = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / (time.monotonic() - wall)


def fresh_idle(args: argparse.Namespace, work: Path) -> float:
    """Idle CPU share of a freshly opened console with nothing running."""
    log = work / "idle.log"
    command = [sys.executable, "-m", "salus_engine.cli", "tui", "--out", str(work / "idle-store"), "--log", str(log),
               "--checkpoint", "", "--refresh-hz", str(args.refresh_hz)]
    env = {"TERM": "xterm-256color", "COLORTERM": "truecolor", "PYTHONPATH": str(REPO)}
    terminal = Terminal(f"salus-bench-{os.getpid()}-idle", command, env, args.size)
    try:
        wait_for(lambda: "s start" in terminal.screen(), 120, "the console to open")
        time.sleep(3.0)
        share = idle_share(terminal.pid, args.idle_seconds)
        terminal.keys("q")
    finally:
        terminal.close()
    return share


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="episodes per run (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="headless/console pairs (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, help="camera image side (default: the simulator's, 256)")
    parser.add_argument("--max-steps", type=int, help="episode step limit (default: the simulator's, 200)")
    parser.add_argument("--policy", help="policy ensemble (default: the embedded one)")
    parser.add_argument("--ensemble-size", type=int)
    parser.add_argument("--refresh-hz", type=float, default=5.0, help="console refresh rate (default 5)")
    parser.add_argument("--size", default="200x60", help="terminal size, WxH (default 200x60)")
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU sampling time (default 30)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per run")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if shutil.which("tmux") is None:
        raise SystemExit("console_overhead: tmux is not installed; apt-get install tmux")
    print(f"console overhead: {args.episodes} episodes x {args.repeats} pairs, terminal {args.size[0]}x{args.size[1]}, "
          f"refresh {args.refresh_hz:g} Hz, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="salus-console-bench-") as tmp:
        work = Path(tmp)
        idle_fresh = fresh_idle(args, work)
        print(f"idle CPU, console just opened, nothing running: {100 * idle_fresh:.2f} % of one core "
              f"over {args.idle_seconds:g} s")
        ratios, ui_shares, idle_after = [], [], []
        for index in range(args.repeats):
            headless = run_headless(args, work, index)
            console, ui_share, idle = run_console(args, work, index)
            h_step, h_steps, h_seconds = per_step(headless)
            c_step, c_steps, c_seconds = per_step(console)
            if [line[:3] for line in headless] != [line[:3] for line in console]:
                print("  warning: the two runs recorded different episodes; comparing time per step anyway")
            ratio = c_step / h_step
            ratios.append(ratio)
            ui_shares.append(ui_share)
            idle_after.append(idle)
            print(f"pair {index + 1}: headless {1000 * h_step:.1f} ms/step ({h_steps} steps, {h_seconds:.1f} s), "
                  f"console {1000 * c_step:.1f} ms/step ({c_steps} steps, {c_seconds:.1f} s): "
                  f"{100 * (ratio - 1):+.1f} %; console UI thread {100 * ui_share:.1f} % of a core while collecting")
        median = statistics.median(ratios)
        print(f"collection slowdown with the console: {100 * (median - 1):+.1f} % (median of {len(ratios)} pairs; "
              f"target <= 5 %)")
        print(f"console UI thread while collecting: {100 * statistics.median(ui_shares):.1f} % of one core (median)")
        print(f"idle CPU after a collection finished: {100 * statistics.median(idle_after):.2f} % of one core; "
              f"just opened: {100 * idle_fresh:.2f} % (target < 3 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
