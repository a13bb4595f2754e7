"""Prints what the operator console costs: the collection slowdown with the console against the
headless `salus collect`, and the console's idle CPU.

(a) Slowdown: the same collection (same seeds, so the same episodes) runs headless
(`salus collect`) and in the console (`salus tui --collect`, inside tmux at 200x60 so that every
frame is really drawn in a terminal), alternating, `--repeats` times each. Each run is measured from
the end of its first episode to the end of its last (model loading and warm-up excluded): wall-clock
seconds per step and process CPU seconds per step (user + system, /proc). Slowdown = console /
headless - 1, median over the pairs. Target: at most 5 %. By default the two runs of a pair run at
the same time (`--mode concurrent`), so that other jobs' load on a shared machine falls on both alike
(one after the other, the wall clock follows that load: swings of +-40 % were seen on the 2-core
development machine); the console's own extra CPU then slows both runs, and is printed beside.

(b) Idle CPU: the console's process CPU time (user + system, /proc) over `--idle-seconds`, freshly
opened with nothing running, and after its collection finished on each screen (collect, train,
evaluate, episodes, the player paused), as % of one core.
Target: below 3 %.

Also printed: the console's UI (main) thread CPU while collecting, and the CPU of the terminal
(tmux) drawing it, as % of one core.

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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from salus_engine.config import DEFAULT_POLICY_DIR  # noqa: E402

HEADLESS_LINE = re.compile(r"episode\s+(\d+)\s+seed\s+\d+\s+(\w+)\s+step\s+\d+/\s*(\d+)")
CONSOLE_LINE = re.compile(r"ep\s+(\d+)\s+(\w+)\s+step\s+\d+/\s*(\d+)")
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


@dataclass
class Run:
    """Marks taken as each episode finished: (wall s, process CPU s, episode length, UI thread CPU s,
    terminal CPU s). Only the window from the first to the last mark is compared (model loading and
    the first episode's warm-up excluded)."""

    marks: list[tuple[float, float, int, float, float]] = field(default_factory=list)

    def window(self) -> tuple[float, float, int, float, float]:
        """(wall s, process CPU s, steps, UI thread CPU s, terminal CPU s) between the first and last mark."""
        if len(self.marks) < 2:
            raise SystemExit("console_overhead: fewer than 2 episodes finished; use --episodes 3 or more")
        first, last = self.marks[0], self.marks[-1]
        steps = sum(mark[2] for mark in self.marks[1:])
        return last[0] - first[0], last[1] - first[1], steps, last[3] - first[3], last[4] - first[4]


def run_headless(args: argparse.Namespace, work: Path, index: int) -> Run:
    out = work / f"headless-{index}"
    command = [sys.executable, "-m", "salus_engine.cli", "collect", "--episodes", str(args.episodes),
               *collect_args(args, out)]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONPATH": str(REPO),
           "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    run = Run()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    for line in proc.stdout:
        match = HEADLESS_LINE.search(line)
        if match:
            run.marks.append((time.monotonic(), cpu_seconds(proc.pid), int(match[3]), 0.0, 0.0))
    if proc.wait() != 0:
        raise SystemExit(f"console_overhead: salus collect failed:\n{proc.stderr.read()[-2000:]}")
    return run


def run_console(args: argparse.Namespace, work: Path, index: int) -> tuple[Run, float]:
    """The console's marks (from its session log, polled) and its idle CPU share after the collection."""
    out, log = work / f"console-{index}", work / f"console-{index}.log"
    command = [sys.executable, "-m", "salus_engine.cli", "tui", "--collect", str(args.episodes),
               *collect_args(args, out), "--log", str(log), "--checkpoint", "", "--refresh-hz", str(args.refresh_hz)]
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "TERM": "xterm-256color", "COLORTERM": "truecolor",
           "PYTHONPATH": str(REPO)}
    terminal = Terminal(f"salus-bench-{os.getpid()}-{index}", command, env, args.size)
    server = int(terminal.tmux("display-message", "-p", "#{pid}").strip())
    run = Run()
    try:
        text = lambda: log.read_text() if log.exists() else ""  # noqa: E731
        end = time.monotonic() + args.timeout
        while "collection complete" not in text():
            if "error:" in text() or time.monotonic() > end:
                raise SystemExit(f"console_overhead: the console collection failed or timed out; see {log}")
            lengths = [int(m[3]) for m in CONSOLE_LINE.finditer(text())]
            if len(lengths) > len(run.marks):
                run.marks.append((time.monotonic(), cpu_seconds(terminal.pid), lengths[len(run.marks)],
                                  cpu_seconds(terminal.pid, terminal.pid), cpu_seconds(server)))
            time.sleep(0.05)
        time.sleep(2.0)
        idle = idle_share(terminal.pid, args.idle_seconds)
        if index == 0:
            # idle on every screen (and in the player, paused), after the collection
            for keys, name in ((["2"], "train"), (["3"], "evaluate"), (["4"], "episodes"), (["Enter"], "player")):
                terminal.keys(*keys)
                time.sleep(3.0)
                share = idle_share(terminal.pid, args.idle_seconds)
                print(f"  idle CPU on the {name} screen: {100 * share:.2f} % of one core")
            terminal.keys("Escape")
        terminal.keys("q")
        wait_for(lambda: not Path(f"/proc/{terminal.pid}").exists(), 60, "the console to quit")
    finally:
        terminal.close()
    return run, idle


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
    parser.add_argument("--episodes", type=int, default=4, help="episodes per run, at least 3 (default 4)")
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
    parser.add_argument("--mode", choices=("concurrent", "sequential"), default="concurrent",
                        help="run each pair at the same time (default; robust to other jobs' load) or one after "
                             "the other (right on an otherwise idle machine)")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    if shutil.which("tmux") is None:
        raise SystemExit("console_overhead: tmux is not installed; apt-get install tmux")
    print(f"console overhead: {args.episodes} episodes x {args.repeats} {args.mode} pairs, terminal {args.size[0]}x{args.size[1]}, "
          f"refresh {args.refresh_hz:g} Hz, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="salus-console-bench-") as tmp:
        work = Path(tmp)
        idle_fresh = fresh_idle(args, work)
        print(f"idle CPU, console just opened, nothing running: {100 * idle_fresh:.2f} % of one core "
              f"over {args.idle_seconds:g} s")
        wall_ratios, cpu_ratios, ui_shares, terminal_shares, idle_after = [], [], [], [], []
        for index in range(args.repeats):
            load = os.getloadavg()[0]
            if args.mode == "concurrent":
                # both at once: the other processes' load falls on both alike
                result: dict[str, Run] = {}
                worker = threading.Thread(target=lambda: result.update(headless=run_headless(args, work, index)))
                worker.start()
                console, idle = run_console(args, work, index)
                worker.join()
                headless = result["headless"]
            else:
                headless = run_headless(args, work, index)
                console, idle = run_console(args, work, index)
            h_wall, h_cpu, h_steps, _, _ = headless.window()
            c_wall, c_cpu, c_steps, c_ui, c_terminal = console.window()
            wall_ratios.append((c_wall / c_steps) / (h_wall / h_steps))
            cpu_ratios.append((c_cpu / c_steps) / (h_cpu / h_steps))
            ui_shares.append(c_ui / c_wall)
            terminal_shares.append(c_terminal / c_wall)
            idle_after.append(idle)
            print(f"pair {index + 1} (load average {load:.1f} -> {os.getloadavg()[0]:.1f}): "
                  f"wall {1000 * h_wall / h_steps:.1f} -> {1000 * c_wall / c_steps:.1f} ms/step "
                  f"({100 * (wall_ratios[-1] - 1):+.1f} %), CPU {1000 * h_cpu / h_steps:.1f} -> "
                  f"{1000 * c_cpu / c_steps:.1f} ms/step ({100 * (cpu_ratios[-1] - 1):+.1f} %); console UI thread "
                  f"{100 * ui_shares[-1]:.1f} %, tmux {100 * terminal_shares[-1]:.1f} % of a core")
        print(f"collection slowdown with the console (wall clock per step, {args.mode} runs): "
              f"{100 * (statistics.median(wall_ratios) - 1):+.1f} % (median of {len(wall_ratios)} pairs; target <= 5 %)")
        print(f"collection CPU time per step with the console: {100 * (statistics.median(cpu_ratios) - 1):+.1f} % (median)")
        print(f"console UI thread while collecting: {100 * statistics.median(ui_shares):.1f} % of one core; "
              f"the terminal (tmux) drawing it: {100 * statistics.median(terminal_shares):.1f} %")
        print(f"idle CPU after a collection finished: {100 * statistics.median(idle_after):.2f} % of one core; "
              f"just opened: {100 * idle_fresh:.2f} % (target < 3 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
