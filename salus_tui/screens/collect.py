"""Collection screen: live progress, outcomes by type, memory, the current episode's six signals or
one of the signal families the collection records (g / G switch the group; with its horizon labels
once it ends) and the log of finished episodes.

With the runtime monitor (`--monitor RUN`), the progress box gets two lines: the live alarm score
against the threshold with the intervention acting now, and the alarm count with the last alarm
(episode, step and, once its episode ends, the predicted failure type, horizon and probability); the
timeline gets the score as one more row (drawn against the threshold) and the interventions row (the
letter of the intervention acting per step, ! at each alarm); each alarm is logged as it fires and
each intervention when its episode ends. The live data comes from the snapshot (`monitor` column of
`SignalSnapshot`) the screen's timer pulls; a finished episode's trace is read from the snapshot by
the job's sink, before the next episode resets it, and travels with its `EpisodeFinished` event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input, Label, ProgressBar, RichLog

from salus_engine import OUTCOME_NAMES, STOPPED
from salus_engine.config import CollectConfig, ConfigError
from salus_engine.events import (
    CollectionFinished,
    CollectionStarted,
    EpisodeFinished,
    Event,
    JobFailed,
    JobFinished,
    LogLine,
    ResourceSample,
    SignalSnapshot,
    WorkerStateChanged,
)
from salus_engine.store.layout import INTERVENTION_KINDS
from salus_tui.messages import EngineEvent
from salus_tui.screens.base import JobScreen, format_duration
from salus_tui.widgets.form_field import FormField
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.outcome_bars import OutcomeBars
from salus_tui.widgets.signal_timeline import (
    SIX_SIGNALS,
    SignalGroup,
    SignalTimeline,
    TimelineRow,
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


def intervention_name(code: int) -> str:
    """Name of an `INTERVENTION_KINDS` code ('none' for 0)."""
    code = int(code)
    return INTERVENTION_KINDS[code] if 0 <= code < len(INTERVENTION_KINDS) else f"code {code}"


@dataclass(frozen=True)
class MonitorTrace:
    """What the runtime monitor did in the episode in view, for the timeline."""

    interventions: np.ndarray
    """(T,) uint8 intervention code per step (`INTERVENTION_KINDS`)."""
    alarm_steps: tuple[int, ...]
    """Steps (0-based, in the steps shown) with an alarm."""
    scores: np.ndarray | None = None
    """(T,) float alarm score per step, or None when unknown (an episode from a Ray worker)."""
    threshold: float | None = None
    """The alarm threshold (None when unknown)."""

    @classmethod
    def from_snapshot(cls, monitor: np.ndarray, threshold: float | None) -> MonitorTrace:
        """From a snapshot's (n, 3) monitor columns: score, alarm (1/0), intervention code."""
        monitor = np.asarray(monitor, dtype=np.float32).reshape(-1, 3)
        return cls(interventions=monitor[:, 2].astype(np.uint8),
                   alarm_steps=tuple(int(s) for s in np.flatnonzero(monitor[:, 1] > 0)),
                   scores=monitor[:, 0].astype(np.float64), threshold=threshold)

    def rows(self) -> tuple[TimelineRow, ...]:
        """The score row drawn against the threshold (none without scores)."""
        if self.scores is None or self.threshold is None:
            return ()
        return (TimelineRow(f"mon≥{self.threshold:.3g}", self.scores, threshold=self.threshold),)


class FinishedEpisode(EngineEvent):
    """An `EpisodeFinished` event with the monitor's trace of the episode (read from the snapshot by
    the job's sink in the engine thread, before the next episode resets it), or None."""

    def __init__(self, event: Event, trace: np.ndarray | None, threshold: float | None) -> None:
        super().__init__(event)
        self.trace = trace
        """(T, 3) float32 score, alarm, intervention code per step, or None."""
        self.threshold = threshold


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
    CollectScreen #monitor-text { height: 2; width: 1fr; text-wrap: nowrap; text-overflow: ellipsis; }
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
        self._timeline_monitor: MonitorTrace | None = None
        self.alarms = 0
        """Alarms of the runtime monitor in this job (finished episodes and the live one)."""
        self._alarms_finished = 0
        self._live_episode = -1
        self._live_alarm_steps: set[int] = set()
        self._last_finished = -1
        self.last_alarm = ""
        """The last alarm, as the monitor line shows it ('' before the first)."""
        self.monitor_now = ""
        """The live score against the threshold and the intervention acting, as shown."""
        self.stopped = 0

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
                monitor = Label("monitor: waiting for the first step", id="monitor-text")
                monitor.display = self.config.monitor.enabled
                yield monitor
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
        self._reset_monitor()
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
                      failure_step: int | None = None, monitor: MonitorTrace | None = None) -> None:
        """Shows an episode's groups (the chosen group, or the six signals when it lacks that one),
        with the monitor's score and interventions rows when it ran one."""
        offered = len(self.groups)
        self.groups = groups
        self._timeline_context = context
        self._timeline_labels, self._timeline_failure = horizon_labels, failure_step
        self._timeline_monitor = monitor
        self._show_group()
        if len(groups) != offered:
            self.refresh_bindings()

    def _show_group(self) -> None:
        group = pick_group(self.groups, self.group)
        where = f" ({[g.key for g in self.groups].index(group.key) + 1}/{len(self.groups)}, g)" if len(
            self.groups) > 1 else ""
        self.query_one("#signals-box").border_title = f"{group.title}{where}: {self._timeline_context}"
        monitor = self._timeline_monitor
        if monitor is None:
            self.query_one("#signals", SignalTimeline).set_rows(group.rows, self._timeline_labels, self.horizons,
                                                                 failure_step=self._timeline_failure)
            return
        self.query_one("#signals", SignalTimeline).set_rows(
            group.rows + monitor.rows(), self._timeline_labels, self.horizons, failure_step=self._timeline_failure,
            interventions=monitor.interventions, alarm_steps=monitor.alarm_steps)

    def action_stop(self) -> bool:
        if not super().action_stop():
            return False
        self.notify("stopping after the current episode; nothing recorded is lost")
        return True

    # events from the engine ---------------------------------------------------------------------
    def sink(self, event: Event) -> None:
        """The engine's event sink (called in the worker thread). A monitored episode's end carries
        its monitor trace, read from the snapshot now: the engine calls the sink before the next
        episode resets the snapshot."""
        if isinstance(event, EpisodeFinished) and event.intervention is not None:
            reading = self.snapshot.read()
            complete = (reading.episode_id == event.episode_id and reading.monitor is not None
                        and len(reading.monitor) == event.length)
            self.post_message(FinishedEpisode(event, reading.monitor if complete else None,
                                              reading.monitor_threshold if complete else None))
            return
        super().sink(event)

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
            monitored = event.interventions is not None
            self._log(f"ep {event.episode_id:4d} {name:9s} step {event.failure_step:3d}/{event.length:3d} "
                      f"unc max {event.max_uncertainty:.3f} {event.seconds:5.1f}s"
                      + (f" alarms {event.alarms}" if monitored else ""))
            trace = None
            if monitored:
                trace = self._monitor_finished(event, getattr(message, "trace", None),
                                               getattr(message, "threshold", None))
            if event.signals is not None:
                # keep the finished episode (with its labels) in view for FINISHED_HOLD_S, then go live
                self._snapshot_version = self.snapshot.read()[0]
                self._finished_at = self.app.clock()
                self._show_episode(
                    signal_groups(event.signals, event.features, event.feature_families, event.hidden_change),
                    f"episode {event.episode_id} ({name} at step {event.failure_step})", event.horizon_labels,
                    failure_step=event.failure_step if event.failure_type >= 0 else None, monitor=trace)
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

    # the runtime monitor --------------------------------------------------------------------------
    def _reset_monitor(self) -> None:
        self.alarms = self._alarms_finished = self.stopped = 0
        self._live_episode = self._last_finished = -1
        self._live_alarm_steps = set()
        self.last_alarm = ""
        self.monitor_now = "monitor: waiting for the first step"
        self._timeline_monitor = None
        self._show_monitor_text()

    def _show_monitor_text(self) -> None:
        label = self.query_one("#monitor-text", Label)
        if not (self.config.monitor.enabled or self.alarms or self.last_alarm or self._live_episode >= 0):
            return
        label.display = True
        count = f"alarms {self.alarms}" + (f" · stopped {self.stopped}" if self.stopped else "")
        label.update(f"{self.monitor_now}\n{count}" + (f" · last {self.last_alarm}" if self.last_alarm else ""))

    def _monitor_live(self, reading) -> MonitorTrace | None:
        """Takes the live episode's monitor columns from a snapshot reading: the live line, new
        alarms (logged as they fire); returns the timeline's trace (None without a monitor)."""
        if reading.monitor is None or len(reading.monitor) == 0:
            return None
        trace = MonitorTrace.from_snapshot(reading.monitor, reading.monitor_threshold)
        episode = reading.episode_id
        if episode > self._last_finished:  # not yet counted through its EpisodeFinished event
            if episode != self._live_episode:
                self._live_episode, self._live_alarm_steps = episode, set()
            first = reading.step - len(reading.monitor) + 1
            for i in trace.alarm_steps:
                step = first + i
                if step in self._live_alarm_steps:
                    continue
                self._live_alarm_steps.add(step)
                score = float(reading.monitor[i, 0])
                kind = intervention_name(reading.monitor[i, 2])
                self.last_alarm = f"ep {episode} step {step}: score {score:.3f}"
                above = "" if trace.threshold is None else f" (threshold {trace.threshold:.3g})"
                self._log(f"ep {episode:4d} step {step:3d}: ALARM score {score:.3f}{above}"
                          + (f", intervention {kind}" if kind != "none" else ", no intervention"))
            self.alarms = self._alarms_finished + len(self._live_alarm_steps)
        score, threshold = float(reading.monitor[-1, 0]), trace.threshold
        kind = intervention_name(reading.monitor[-1, 2])
        relation = "" if threshold is None else f" {'≥' if score >= threshold else '<'} {threshold:.3g}"
        self.monitor_now = (f"monitor {score:.3f}{relation} · "
                            + (f"intervention {kind}" if kind != "none" else "policy acting")
                            + (" · ALARM" if reading.monitor[-1, 1] > 0 else ""))
        self._show_monitor_text()
        return trace

    def _monitor_finished(self, event: EpisodeFinished, trace: np.ndarray | None,
                          threshold: float | None) -> MonitorTrace:
        """Counts a monitored episode's alarms, logs its interventions and returns its trace."""
        self._last_finished = max(self._last_finished, event.episode_id)
        if event.episode_id == self._live_episode:
            self._live_alarm_steps = set()
        self._alarms_finished += int(event.alarms)
        self.alarms = self._alarms_finished
        if event.failure_type == STOPPED:
            self.stopped += 1
        alarm_steps: list[int] = []
        for item in event.interventions or []:
            alarm = item.get("alarm")
            why = (f"alarm {alarm.get('failure_type')} ≤{alarm.get('horizon')} steps p "
                   f"{float(alarm.get('probability', float('nan'))):.2f}" if isinstance(alarm, dict)
                   else f"{item.get('trigger', '?')} trigger")
            self._log(f"ep {event.episode_id:4d} step {int(item.get('step', -1)):3d}: {item.get('intervention')} "
                      f"for {item.get('steps')} steps ({why})")
            if isinstance(alarm, dict):
                alarm_steps.append(int(alarm.get("step", item.get("step", 0))))
                self.last_alarm = (f"ep {event.episode_id} step {alarm_steps[-1]}: {alarm.get('failure_type')} "
                                   f"≤{alarm.get('horizon')} p {float(alarm.get('probability', float('nan'))):.2f}")
        self.monitor_now = (f"monitor: ep {event.episode_id} {OUTCOME_NAMES[event.failure_type]}, "
                            f"{event.alarms} alarms, {len(event.interventions or [])} interventions")
        self._show_monitor_text()
        if trace is not None:
            return MonitorTrace.from_snapshot(trace, threshold)
        codes = event.intervention if event.intervention is not None else np.zeros(event.length, np.uint8)
        return MonitorTrace(interventions=np.asarray(codes, dtype=np.uint8), alarm_steps=tuple(sorted(alarm_steps)))

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
            trace = self._monitor_live(reading)
            self._show_episode(signal_groups(reading.signals, reading.features, reading.feature_families,
                                             reading.hidden_change),
                               f"episode {reading.episode_id}, step {reading.step}", monitor=trace)
