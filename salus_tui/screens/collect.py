"""Collection screen: live progress, outcomes by type, memory, the current episode's six signals or
one of the signal families the collection records (g / G switch the group; with its horizon labels
once it ends) and the log of finished episodes."""

from __future__ import annotations

from collections import Counter

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, RichLog

from salus_engine import OUTCOME_NAMES
from salus_engine.config import CollectConfig, ConfigError
from salus_engine.events import (
    CollectionFinished,
    CollectionStarted,
    EpisodeFinished,
    JobFailed,
    JobFinished,
    LogLine,
    ResourceSample,
    SignalSnapshot,
    WorkerStateChanged,
)
from salus_tui.messages import EngineEvent
from salus_tui.screens.base import JobScreen, format_duration
from salus_tui.widgets.form_field import FormField
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.outcome_bars import OutcomeBars
from salus_tui.widgets.signal_timeline import (
    SIX_SIGNALS,
    SignalGroup,
    SignalTimeline,
    pick_group,
    signal_groups,
    step_group,
)

WORKER_COLUMNS = (("worker", "worker"), ("host", "host"), ("pid", "pid"), ("state", "state"),
                  ("episode", "episode"), ("done", "done"), ("rate", "episodes/h"), ("memory", "memory"))
"""Columns of the worker table, shown while a collection runs on Ray workers (`--workers N`)."""
MEMORY_WARNING_FRACTION = 0.9
"""The memory gauge turns to the warning style above this share of the budget."""
FINISHED_HOLD_S = 3.0
"""Seconds a finished episode (with its horizon labels) stays in view before the next one's live signals."""


class CollectScreen(JobScreen):
    """Runs `salus_engine.jobs.run_collection` in a thread worker and shows its progress.

    The form's episode count is the total the store should hold (as `salus collect --episodes`); an
    existing store at the out folder is continued (`--resume`).
    """

    MODE = "collect"
    JOB = "collect"
    STOP_STATUS = ("#progress-text", "stopping after the current episode ...")
    AUTO_FOCUS = "#log"
    BINDINGS = [
        Binding("s", "start", "start", id="collect-start"),
        Binding("x", "stop", "stop after episode", id="collect-stop"),
        Binding("g", "cycle_group(1)", "next signal group", id="collect-next-group", show=False),
        Binding("G", "cycle_group(-1)", "previous signal group", id="collect-previous-group", show=False),
    ]
    DEFAULT_CSS = """
    CollectScreen .form { grid-size: 2; grid-rows: 1; grid-gutter: 0 2; height: auto; padding: 0 1; }
    CollectScreen #top { height: 7; }
    CollectScreen #progress-box { width: 2fr; border: round $primary; padding: 0 1; }
    CollectScreen #outcomes-box { width: 1fr; min-width: 22; border: round $primary; padding: 0 1; }
    CollectScreen #memory-box { width: 1fr; min-width: 18; border: round $primary; padding: 0 1; }
    CollectScreen #signals-box { height: 2fr; min-height: 10; max-height: 34; border: round $primary; padding: 0 1; }
    CollectScreen #signals { height: 1fr; }
    CollectScreen #log { border: round $primary; height: 1fr; min-height: 4; }
    CollectScreen #workers { border: round $primary; height: auto; max-height: 12; }
    CollectScreen ProgressBar Bar { width: 1fr; }
    CollectScreen #progress-text { height: 2; width: 1fr; }
    CollectScreen .memory-warning { border: heavy $error; }
    CollectScreen .memory-warning Bar > .bar--bar { color: $error; }
    CollectScreen .memory-warning #memory-text { color: $error; text-style: bold reverse; }
    """

    def __init__(self, config: CollectConfig | None, refresh_hz: float = 5.0, autostart: bool = False) -> None:
        super().__init__()
        self.config = config or CollectConfig()
        self.refresh_hz = refresh_hz
        self.autostart = autostart
        self.snapshot = SignalSnapshot()
        self._snapshot_version = -1
        self.outcomes: Counter[str] = Counter()
        self._started_at = 0.0
        self._done_at_start = 0
        self._finished_at = float("-inf")
        self.horizons = tuple(self.config.store.horizons)
        self.group = SIX_SIGNALS
        """Key of the signal group the timeline shows (`signal_timeline.SIX_SIGNALS` or a family)."""
        self.groups: list[SignalGroup] = signal_groups(np.zeros((0, 6), np.float32))
        """The groups of the episode in view (the six signals, then the families it records)."""
        self._timeline_context = "current episode"
        self._timeline_labels: np.ndarray | None = None
        self._timeline_failure: int | None = None

    # layout -------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Grid(classes="form", id="form"):
            yield FormField("episodes", Input(str(self.config.episodes), id="episodes", type="integer", compact=True,
                                              tooltip="total episodes the store should hold"))
            yield FormField("out", Input(self.config.out, id="out", compact=True,
                                         tooltip="store folder; an existing store is continued"))
        with Horizontal(id="top"):
            with Vertical(id="progress-box") as box:
                box.border_title = "collection"
                yield ProgressBar(total=self.config.episodes, show_eta=False, id="episode-progress")
                yield Label("idle: s starts a collection (tab edits the form)", id="progress-text")
            with Vertical(id="outcomes-box") as box:
                box.border_title = "outcomes"
                yield OutcomeBars(id="outcome-bars")
            with Vertical(id="memory-box") as box:
                box.border_title = "memory"
                yield ProgressBar(total=1.0, show_eta=False, show_percentage=True, id="memory-bar")
                yield Label("-", id="memory-text")
        with Vertical(id="signals-box") as box:
            box.border_title = f"{self.groups[0].title}: current episode"
            yield SignalTimeline(id="signals", empty_text="no episode yet")
        workers = DataTable(id="workers", cursor_type="none", zebra_stripes=True)
        workers.display = self.config.uses_ray
        yield workers
        yield RichLog(id="log", max_lines=2000, markup=False, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log", RichLog).border_title = "finished episodes"
        workers = self.query_one("#workers", DataTable)
        workers.border_title = "workers"
        for key, label in WORKER_COLUMNS:
            workers.add_column(label, key=key)
        self.live_timer(1.0 / self.refresh_hz, self._pull_snapshot)
        if self.autostart:
            self.call_after_refresh(self.action_start)

    def main_panel(self):
        return self.query_one("#log")

    # actions ------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.running:
            self.notify("a collection is already running", severity="warning")
            return
        out = self.query_one("#out", Input).value.strip()
        if not out:
            self.notify("give an out folder for the store", severity="error")
            return
        from salus_engine.store import EpisodeStore

        try:
            self.config = self.config.with_values(episodes=self.query_one("#episodes", Input).value.strip(), out=out,
                                                  resume=self.config.resume or EpisodeStore.exists(out))
        except ConfigError as err:
            self.notify(str(err), severity="error")
            return
        episodes, resume = self.config.episodes, self.config.resume
        self.query_one("#form").display = False
        self.set_focus(self.query_one("#log"))
        self.outcomes.clear()
        self.query_one("#workers", DataTable).clear()
        self.query_one("#outcome-bars", OutcomeBars).set_counts({})
        self.query_one("#episode-progress", ProgressBar).update(total=episodes, progress=0)
        self.query_one("#progress-text", Label).update("loading the policy ensemble and the simulator ...")
        self._log(f"collect {episodes} episodes into {out}" + (" (continuing the store)" if resume else ""))
        config = self.config
        snapshot = self.snapshot

        def job(sink, stop) -> None:
            from salus_engine.jobs import run_collection

            run_collection(config, sink=sink, stop=stop, snapshot=snapshot)

        self.start_job(job)

    def action_cycle_group(self, delta: int) -> None:
        """Shows the next (delta 1) or previous (-1) signal group of the episode in view."""
        if len(self.groups) < 2:
            return
        self.group = step_group(self.groups, self.group, delta)
        self._show_group()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cycle_group":
            return len(self.groups) > 1 or None
        return super().check_action(action, parameters)

    def _show_episode(self, groups: list[SignalGroup], context: str, horizon_labels: np.ndarray | None = None,
                      failure_step: int | None = None) -> None:
        """Shows an episode's groups (the chosen group, or the six signals when it lacks that one)."""
        offered = len(self.groups)
        self.groups = groups
        self._timeline_context = context
        self._timeline_labels, self._timeline_failure = horizon_labels, failure_step
        self._show_group()
        if len(groups) != offered:
            self.refresh_bindings()

    def _show_group(self) -> None:
        group = pick_group(self.groups, self.group)
        where = f" ({[g.key for g in self.groups].index(group.key) + 1}/{len(self.groups)}, g)" if len(
            self.groups) > 1 else ""
        self.query_one("#signals-box").border_title = f"{group.title}{where}: {self._timeline_context}"
        self.query_one("#signals", SignalTimeline).set_rows(group.rows, self._timeline_labels, self.horizons,
                                                             failure_step=self._timeline_failure)

    def action_stop(self) -> bool:
        if not super().action_stop():
            return False
        self.notify("stopping after the current episode; nothing recorded is lost")
        return True

    # events from the engine ---------------------------------------------------------------------
    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, CollectionStarted):
            self._started_at = self.app.clock()
            self._done_at_start = event.first_episode
            self.query_one("#episode-progress", ProgressBar).update(total=event.total, progress=self._done_at_start)
            self._set_progress_text(self._done_at_start, event.total)
            self._log(f"collecting into {event.out} ({event.ensemble_size} ensemble members)")
        elif isinstance(event, EpisodeFinished):
            name = OUTCOME_NAMES[event.failure_type]
            self.outcomes[name] += 1
            self.query_one("#outcome-bars", OutcomeBars).set_counts(self.outcomes)
            self.query_one("#episode-progress", ProgressBar).update(progress=event.done)
            self._set_progress_text(event.done, event.total)
            self._log(f"ep {event.episode_id:4d} {name:9s} step {event.failure_step:3d}/{event.length:3d} "
                      f"unc max {event.max_uncertainty:.3f} {event.seconds:5.1f}s")
            if event.signals is not None:
                # keep the finished episode (with its labels) in view for FINISHED_HOLD_S, then go live
                self._snapshot_version = self.snapshot.read()[0]
                self._finished_at = self.app.clock()
                self._show_episode(
                    signal_groups(event.signals, event.features, event.feature_families, event.hidden_change),
                    f"episode {event.episode_id} ({name} at step {event.failure_step})", event.horizon_labels,
                    failure_step=event.failure_step if event.failure_type >= 0 else None)
        elif isinstance(event, WorkerStateChanged):
            self.show_worker(event)
        elif isinstance(event, ResourceSample):
            self.show_memory(event)
        elif isinstance(event, LogLine):
            self._log(f"[{event.level}] {event.text}")
        elif isinstance(event, JobFinished):
            text = "stopped: s continues the store" if event.stopped else "collection complete"
            self.query_one("#progress-text", Label).update(f"{text}; s starts another")
            self._log(text)
            if isinstance(event, CollectionFinished):
                self.app.suggest(store=event.summary.out)
        elif isinstance(event, JobFailed):
            self.query_one("#progress-text", Label).update("failed: see the log")
            self._log(f"error: {event.message}")
            self.app.show_error(event.message, title="collection failed")

    def show_worker(self, event: WorkerStateChanged) -> None:
        """One row per Ray worker: host, pid, state, episode, episodes done, episodes per hour, memory."""
        table = self.query_one("#workers", DataTable)
        table.display = True
        memory = "-"
        if event.memory_used_gb is not None and event.memory_budget_gb:
            label = "GPU" if event.memory_kind == "gpu" else "RSS"
            memory = f"{label} {event.memory_used_gb:.2f}/{event.memory_budget_gb:.0f} GB"
        row = {"worker": str(event.worker_index), "host": event.host or "-", "pid": str(event.pid or "-"),
               "state": event.state, "episode": "-" if event.episode_id is None else str(event.episode_id),
               "done": str(event.episodes_done),
               "rate": f"{event.episodes_per_hour:.0f}" if event.episodes_per_hour else "-", "memory": memory}
        key = f"worker-{event.worker_index}"
        if key in table.rows:
            for column, value in row.items():
                table.update_cell(key, column, value)
        else:
            table.add_row(*(row[column] for column, _ in WORKER_COLUMNS), key=key)

    def show_memory(self, event: ResourceSample) -> None:
        """Memory gauge; the warning style above 90 % of the budget."""
        bar = self.query_one("#memory-bar", ProgressBar)
        bar.update(total=event.budget_gb, progress=min(event.used_gb, event.budget_gb))
        label = "GPU" if event.kind == "gpu" else "RSS"
        warning = event.used_gb > MEMORY_WARNING_FRACTION * event.budget_gb
        text = f"{label} {event.used_gb:.2f}/{event.budget_gb:.1f} GB"
        self.query_one("#memory-text", Label).update(f"{text}\nABOVE 90 %" if warning else text)
        self.query_one("#memory-box").set_class(warning, "memory-warning")

    def job_ended(self, failed: bool) -> None:
        self.query_one("#form").display = True
        self.refresh_bindings()

    def _set_progress_text(self, done: int, total: int) -> None:
        new = done - self._done_at_start
        elapsed = self.app.clock() - self._started_at
        if new > 0:
            rate = elapsed / new
            text = f"{done}/{total} episodes  {rate:.1f} s/episode  ETA {format_duration(rate * (total - done))}"
        else:
            text = f"{done}/{total} episodes  first episode running ..."
        if self.stop_event.is_set():
            text += "  (stopping)"
        self.query_one("#progress-text", Label).update(text)
        self.app.set_job_status(self.JOB, f"collect {done}/{total}")

    def _log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)
        self.app.log_to_file(text)

    def _pull_snapshot(self) -> None:
        """Timer (refresh_hz, only while collecting and shown): the running episode's signals and
        family columns."""
        if self.app.clock() - self._finished_at < FINISHED_HOLD_S:
            return
        reading = self.snapshot.read()
        if reading.version == self._snapshot_version or len(reading.signals) == 0:
            return
        self._snapshot_version = reading.version
        with self.app.batch_update():
            self._show_episode(signal_groups(reading.signals, reading.features, reading.feature_families,
                                             reading.hidden_change),
                               f"episode {reading.episode_id}, step {reading.step}")
