"""Collection screen: live progress, outcomes, the six signals, memory and the episode log."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, ProgressBar, RichLog, Static

from salus_engine import OUTCOME_NAMES
from salus_engine.config import CollectConfig
from salus_engine.events import (
    EpisodeFinished,
    JobFailed,
    JobFinished,
    JobStarted,
    LogLine,
    ResourceSample,
    SignalSnapshot,
)
from salus_tui.messages import EngineEvent
from salus_tui.widgets.signal_panel import SignalPanel


class CollectScreen(Screen):
    """Runs `salus_engine.jobs.run_collection` in a thread worker and shows its progress."""

    BINDINGS = [
        Binding("s", "start", "start", id="collect-start"),
        Binding("x", "stop", "stop after episode", id="collect-stop"),
    ]
    DEFAULT_CSS = """
    CollectScreen #top { height: 6; }
    CollectScreen #progress-box { width: 2fr; border: round $primary; padding: 0 1; }
    CollectScreen #memory-box { width: 1fr; border: round $primary; padding: 0 1; }
    CollectScreen #signals-box { height: 8; border: round $primary; padding: 0 1; }
    CollectScreen #log { border: round $primary; height: 1fr; min-height: 3; }
    CollectScreen #form { height: 3; }
    CollectScreen #form Input { width: 1fr; }
    CollectScreen ProgressBar Bar { width: 1fr; }
    CollectScreen .memory-warning Bar > .bar--bar { color: $error; }
    CollectScreen .memory-warning #memory-text { color: $error; }
    """

    def __init__(self, config: CollectConfig | None, refresh_hz: float = 5.0) -> None:
        super().__init__()
        self.config = config or CollectConfig()
        self.refresh_hz = refresh_hz
        self.autostart = config is not None
        self.stop_event = threading.Event()
        self.done_event = threading.Event()
        self.done_event.set()
        self.snapshot = SignalSnapshot()
        self._snapshot_version = -1
        self._outcomes: Counter[str] = Counter()
        self._started_at = 0.0
        self._done_at_start = 0
        self._timer = None

    # layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="form"):
            yield Input(str(self.config.episodes), placeholder="episodes", id="episodes", type="integer")
            yield Input(self.config.out, placeholder="out folder", id="out")
        with Horizontal(id="top"):
            with Vertical(id="progress-box") as box:
                box.border_title = "collection"
                yield ProgressBar(total=self.config.episodes, show_eta=False, id="episode-progress")
                yield Label("idle: press s to start", id="progress-text")
                yield Label("", id="outcomes-text")
            with Vertical(id="memory-box") as box:
                box.border_title = "memory"
                yield ProgressBar(total=1.0, show_eta=False, show_percentage=True, id="memory-bar")
                yield Label("-", id="memory-text")
        with Vertical(id="signals-box") as box:
            box.border_title = "signals: current episode"
            yield SignalPanel(id="signals")
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log", RichLog).border_title = "finished episodes"
        self._timer = self.set_interval(1.0 / self.refresh_hz, self._pull_snapshot, pause=True)
        if self.autostart:
            self.call_after_refresh(self.action_start)

    # actions ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self.done_event.is_set()

    def action_start(self) -> None:
        if self.running:
            self.notify("a collection is already running", severity="warning")
            return
        try:
            episodes = int(self.query_one("#episodes", Input).value or "0")
        except ValueError:
            episodes = 0
        if episodes < 1:
            self.notify("episodes must be a whole number of at least 1", severity="error")
            return
        out = self.query_one("#out", Input).value.strip()
        if not out:
            self.notify("give an out folder for the store", severity="error")
            return
        self.config = dataclasses.replace(self.config, episodes=episodes, out=out)
        self.query_one("#form").display = False
        self.set_focus(self.query_one("#log"))
        self.stop_event.clear()
        self.done_event.clear()
        self._outcomes.clear()
        self.query_one("#episode-progress", ProgressBar).update(total=episodes, progress=0)
        self.query_one("#progress-text", Label).update("loading the policy ensemble and the simulator ...")
        self._timer.resume()
        self._collect()

    def action_stop(self) -> None:
        if self.running and not self.stop_event.is_set():
            self.stop_event.set()
            self.query_one("#progress-text", Label).update("stopping after the current episode ...")
            self.notify("stopping after the current episode; nothing recorded is lost")

    # worker -------------------------------------------------------------------------------------
    @work(thread=True, exit_on_error=False, group="collect")
    def _collect(self) -> None:
        from salus_engine.cli import _user_errors
        from salus_engine.jobs import run_collection

        def sink(event) -> None:
            self.post_message(EngineEvent(event))

        try:
            run_collection(self.config, sink=sink, stop=self.stop_event, snapshot=self.snapshot)
        except _user_errors() as err:
            sink(JobFailed(job="collect", message=str(err).splitlines()[0]))
        finally:
            self.done_event.set()

    # events from the engine ---------------------------------------------------------------------
    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, JobStarted):
            self._started_at = time.monotonic()
            self._done_at_start = int(event.detail.get("first_episode", 0))
            self.query_one("#episode-progress", ProgressBar).update(progress=self._done_at_start)
            self._set_progress_text(self._done_at_start, event.total)
            self._log(f"collecting into {event.detail['out']} ({event.detail['ensemble_size']} ensemble members)")
        elif isinstance(event, EpisodeFinished):
            name = OUTCOME_NAMES[event.failure_type]
            self._outcomes[name] += 1
            self.query_one("#episode-progress", ProgressBar).update(progress=event.done)
            self._set_progress_text(event.done, event.total)
            self.query_one("#outcomes-text", Label).update(
                "  ".join(f"{OUTCOME_NAMES[c]} {self._outcomes.get(OUTCOME_NAMES[c], 0)}" for c in (-1, 0, 1, 2, 3)))
            self._log(f"ep {event.episode_id:4d} {name:9s} step {event.failure_step:3d}/{event.length:3d} "
                      f"unc max {event.max_uncertainty:.3f} {event.seconds:5.1f}s")
        elif isinstance(event, ResourceSample):
            bar = self.query_one("#memory-bar", ProgressBar)
            bar.update(total=event.budget_gb, progress=min(event.used_gb, event.budget_gb))
            label = "GPU" if event.kind == "gpu" else "RSS"
            self.query_one("#memory-text", Label).update(f"{label} {event.used_gb:.2f} / {event.budget_gb:.1f} GB")
            self.query_one("#memory-box").set_class(event.used_gb > 0.9 * event.budget_gb, "memory-warning")
        elif isinstance(event, LogLine):
            self._log(f"[{event.level}] {event.text}")
        elif isinstance(event, JobFinished):
            self._timer.pause()
            self._pull_snapshot()
            text = "stopped: continue later with --resume" if event.stopped else "collection complete"
            self.query_one("#progress-text", Label).update(f"{text}; s starts another")
            self._log(text)
            self.query_one("#form").display = True
        elif isinstance(event, JobFailed):
            self._timer.pause()
            self.query_one("#progress-text", Label).update("failed: see the log")
            self._log(f"error: {event.message}")
            self.app.show_error(event.message)
            self.query_one("#form").display = True

    def _set_progress_text(self, done: int, total: int) -> None:
        new = done - self._done_at_start
        elapsed = time.monotonic() - self._started_at
        if new > 0:
            rate = elapsed / new
            eta = rate * (total - done)
            text = f"{done}/{total} episodes  {rate:.1f} s/episode  ETA {int(eta // 60)}m{int(eta % 60):02d}s"
        else:
            text = f"{done}/{total} episodes  first episode running ..."
        if self.stop_event.is_set():
            text += "  (stopping)"
        self.query_one("#progress-text", Label).update(text)

    def _log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)
        self.app.log_to_file(text)

    def _pull_snapshot(self) -> None:
        version, episode_id, step, signals = self.snapshot.read()
        if version == self._snapshot_version or not self.is_current:
            return
        self._snapshot_version = version
        with self.app.batch_update():
            self.query_one("#signals-box").border_title = f"signals: episode {episode_id}, step {step}"
            self.query_one("#signals", SignalPanel).show(signals)
