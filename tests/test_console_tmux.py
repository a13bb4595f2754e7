"""The real `salus tui` in a real terminal (tmux): keys in with send-keys, the screen out with
capture-pane. A tiny collection with the real simulator and ensemble, a recorded episode stepped
through in the player, quit; and a hang-up (the tmux session killed: SIGHUP) during a collection
stops it after the current episode with nothing lost."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from salus_engine.store import EpisodeStore

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None,
                                                   reason="tmux is not installed (scripts/ensure-env installs it)")]


class Terminal:
    """One tmux server on a private socket running one command in a 100x30 window."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", name, "-f", "/dev/null"]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        shell = f"cd {shlex.quote(str(REPO))} && exec env -u COLUMNS -u LINES {exports} {shlex.join(command)}"
        # a fixed 100x30 window first (a detached session may otherwise start at tmux's 80x24), then the command
        subprocess.run([*self.base, "new-session", "-d", "-s", "salus", "-x", "100", "-y", "30", "sleep 600"], check=True)
        self.tmux("set-option", "-t", "salus", "window-size", "manual")
        self.tmux("resize-window", "-t", "salus", "-x", "100", "-y", "30")
        subprocess.run([*self.base, "respawn-pane", "-k", "-t", "salus", shell], check=True)
        self.pid = int(self.tmux("display-message", "-p", "-t", "salus", "#{pane_pid}").strip())

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run([*self.base, "send-keys", "-t", "salus", key], check=True)
            time.sleep(0.3)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "salus")

    def alive(self) -> bool:
        return subprocess.run([*self.base, "has-session", "-t", "salus"], capture_output=True).returncode == 0

    def wait_for(self, text: str, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            screen = self.screen()
            if text in screen:
                return screen
            if not self.alive():
                raise AssertionError(f"salus tui ended while waiting for {text!r}")
            time.sleep(0.5)
        raise AssertionError(f"{text!r} not on the screen after {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def tui_command(out: Path, log: Path, episodes: int, image_size: int = 64, max_steps: int = 16) -> list[str]:
    command = [sys.executable, "-m", "salus_engine.cli", "tui", "--out", str(out), "--episodes", str(episodes),
               "--image-size", str(image_size), "--max-steps", str(max_steps), "--seed", "7", "--log", str(log),
               "--checkpoint", "", "--theme", "dark"]
    if os.environ.get("SALUS_TEST_POLICY"):
        command += ["--policy", os.environ["SALUS_TEST_POLICY"], "--ensemble-size", "2"]
    return command


def terminal_env() -> dict[str, str]:
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "TERM": "xterm-256color", "COLORTERM": "truecolor",
           "PYTHONPATH": str(REPO)}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SALUS_")})
    return env


def wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.3)
    return False


def test_collect_step_through_an_episode_and_quit(tmp_path):
    out, log = tmp_path / "store", tmp_path / "session.log"
    terminal = Terminal(f"salus-{os.getpid()}-a", tui_command(out, log, episodes=5), terminal_env())
    try:
        terminal.wait_for("s start", 90)
        # tab into the form's episode count, type 2, enter starts the collection
        terminal.keys("Tab", "2", "Enter")
        screen = terminal.wait_for("collection complete", 420)
        assert "ep    1" in screen and "fail<=20" in screen, screen
        # the episodes screen shows the new store; enter opens the first episode in the player
        terminal.keys("4")
        terminal.wait_for("2 episodes", 60)
        terminal.keys("Enter")
        terminal.wait_for("episode 0 (seed 7)", 30)
        terminal.wait_for("step 0/", 10)
        terminal.keys("Right", "Right")
        terminal.wait_for("step 2/", 10)
        last = EpisodeStore.open(out).meta(0).episode_length - 1
        terminal.keys("End")
        screen = terminal.wait_for(f"step {last}/{last}", 10)
        assert "state" in screen and "action" in screen
        terminal.keys("f")
        terminal.keys("Escape", "q")
        end = time.monotonic() + 30
        while terminal.alive() and time.monotonic() < end:
            time.sleep(0.3)
        assert not terminal.alive(), terminal.screen()
    finally:
        terminal.close()
    assert len(EpisodeStore.open(out)) == 2
    text = log.read_text()
    assert "ep    1" in text and "quit" in text and "session ended" in text


def test_hang_up_stops_after_the_episode_and_keeps_the_store(tmp_path):
    out, log = tmp_path / "store", tmp_path / "session.log"
    total = 60  # the hang-up comes after the first episode: far more are still to go, however fast this machine is
    command = tui_command(out, log, episodes=total)
    command[command.index("--episodes")] = "--collect"  # starts at once
    terminal = Terminal(f"salus-{os.getpid()}-b", command, terminal_env())
    try:
        terminal.wait_for("ep    0", 420)
        pid = terminal.pid
        terminal.tmux("kill-session", "-t", "salus")  # the terminal goes away: SIGHUP
        assert wait_gone(pid, 120), "salus tui did not exit after the hang-up"
    finally:
        terminal.close()
    text = log.read_text()
    assert "SIGHUP received" in text and "every job stopped; exiting" in text and "session ended" in text
    # the hang-up reached a running collection (a stop is requested only from a running job) ...
    assert "collect: stop requested" in text, text
    # ... which stopped after its current episode with every recorded episode complete
    store = EpisodeStore.open(out)
    assert 1 <= len(store) < total and store.episode_ids == list(range(len(store)))
