"""Episode player: step through a recorded episode frame by frame.

Shows the camera image (half-block cells, or Kitty graphics / sixel pixels where the terminal draws
them: `widgets.terminal_graphics`), a timeline with a cursor at the current step and the failure
marker (the six signals, or one of the signal families the store records: g / G switch the group),
the state and action values, the horizon labels of the step and, with a predictor checkpoint, its
16 probabilities at the step and the monitor's alarm; with an evaluated checkpoint the timeline
gets one more row, the running alarm score against the conformal threshold.

An episode of a store whose collection ran the runtime monitor (format 4, root attribute `monitor`)
also shows what the monitor did: the recorded alarm score (the failure probabilities at the monitor's
horizon combined by its alarm-score rule) against the recorded threshold as a timeline row, the interventions row (the
letter of the intervention acting per step, ! at the alarm steps), and at the cursor the score, the
alarm, the intervention acting (with the alarm that started it) and who acted (policy or expert);
without a checkpoint the probability grid shows the monitor's recorded probabilities. `a` jumps to
the next recorded alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Label, Static

from salus_engine import FAILURE_TYPES, OUTCOME_NAMES, STOPPED
from salus_engine.events import hidden_change
from salus_engine.store.layout import ACTORS, INTERVENTION_KINDS
from salus_engine.target_view import recorded_frames
from salus_engine.predictor.alarm_score import alarm_scores
from salus_tui.widgets.camera_view import CameraView
from salus_tui.widgets.terminal_graphics import pixel_image_widget
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.probability_grid import ProbabilityGrid
from salus_tui.widgets.signal_timeline import (
    INTERVENTION_LETTERS,
    SIX_SIGNALS,
    SignalTimeline,
    TimelineRow,
    pick_group,
    signal_groups,
    step_group,
)

DEFAULT_CONTROL_HZ = 30.0
"""Control rate for step times when the store does not record one (the simulator's default)."""


@dataclass(frozen=True)
class RecordedMonitor:
    """What a format-4 store recorded of its runtime monitor in one episode (`salus collect --monitor`)."""

    threshold: float
    """The monitor's alarm threshold on the score."""
    horizon: int
    """The monitor's alarm horizon, steps."""
    horizons: tuple[int, ...]
    """The monitor predictor's horizons, steps (the second axis of `probabilities`)."""
    probabilities: np.ndarray
    """(T, H_m, 4) float32 failure probabilities per step."""
    scores: np.ndarray
    """(T,) float64 alarm score per step: the failure types' probabilities at `horizon` combined by the
    monitor's alarm-score rule (`salus_engine.predictor.alarm_score`; `max` for stores that name none)."""
    alarm: np.ndarray
    """(T,) bool: an alarm was raised at the step."""
    intervention: np.ndarray
    """(T,) uint8 code of the intervention acting at the step (`INTERVENTION_KINDS`)."""
    actor: np.ndarray
    """(T,) uint8 code of who chose the executed action (`ACTORS`)."""
    interventions: tuple[dict[str, Any], ...]
    """The episode's interventions (`EpisodeMeta.interventions`), in order."""

    @classmethod
    def read(cls, store, episode) -> RecordedMonitor | None:
        """The monitor record of `episode` (an `Episode` of `store`), or None when the store's
        collection ran no monitor (formats 1-3, or format 4 without the root attribute `monitor`).

        Raises:
            StoreError: a damaged monitor array.
        """
        settings = store.attrs.get("monitor") or None
        if not settings or "alarm" not in episode.array_names:
            return None
        probabilities = np.asarray(episode.array("monitor_probabilities")[:], dtype=np.float32)
        horizons = tuple(int(h) for h in settings.get("horizons") or ())
        horizon = int(settings.get("horizon") or (horizons[-1] if horizons else 0))
        h = horizons.index(horizon) if horizon in horizons else probabilities.shape[1] - 1
        rule = str(settings.get("alarm_score") or "max")  # stores recorded before the rule was: max
        profile = tuple(settings.get("success_profile") or ())
        scores = alarm_scores(probabilities[:, h, :], rule, np.arange(len(probabilities)), profile) \
            if len(probabilities) else np.zeros(0)
        return cls(threshold=float(settings["threshold"]), horizon=horizon, horizons=horizons,
                   probabilities=probabilities, scores=scores, alarm=np.asarray(episode.array("alarm")[:]).astype(bool),
                   intervention=np.asarray(episode.array("intervention")[:], dtype=np.uint8),
                   actor=np.asarray(episode.array("actor")[:], dtype=np.uint8),
                   interventions=tuple(dict(item) for item in (episode.meta.interventions or ())))

    @property
    def alarm_steps(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.flatnonzero(self.alarm))

    def row(self) -> TimelineRow:
        """The recorded alarm score against the recorded threshold, as a timeline row."""
        return TimelineRow(f"mon≥{self.threshold:.3g}", self.scores, threshold=self.threshold)

    def acting(self, step: int) -> dict[str, Any] | None:
        """The intervention acting at `step` (its entry of `interventions`), or None."""
        for item in self.interventions:
            start = int(item.get("step", -1))
            if start <= step < start + max(1, int(item.get("steps", 0) or 0)):
                return item
        return None

    def describe(self, step: int) -> Text:
        """Two lines about `step`: the score against the threshold (and the alarm), and the
        intervention acting (what started it) and who acted."""
        score = float(self.scores[step])
        text = Text(f"monitor {score:.3f} {'≥' if score >= self.threshold else '<'} {self.threshold:.3g} "
                    f"(max P(fail ≤{self.horizon}))")
        if self.alarm[step]:
            text.append("  ALARM", style="bold reverse")
        code = int(self.intervention[step])
        kind = INTERVENTION_KINDS[code] if code < len(INTERVENTION_KINDS) else str(code)
        actor = int(self.actor[step])
        text.append(f"\nintervention {kind}")
        item = self.acting(step) if code else None
        if item is not None:
            text.append(f" ({INTERVENTION_LETTERS.get(kind, '?')}) since step {item.get('step')}")
            alarm = item.get("alarm")
            if isinstance(alarm, dict):
                text.append(f", alarm {alarm.get('failure_type')} ≤{alarm.get('horizon')} steps "
                            f"p {float(alarm.get('probability', float('nan'))):.2f}")
            elif item.get("trigger"):
                text.append(f", {item['trigger']} trigger")
        text.append(f" · actor {ACTORS[actor] if actor < len(ACTORS) else actor}")
        return text


class EpisodePlayer(Screen):
    """Pushed by the episodes screen; escape goes back to the table."""

    MODE = "player"
    """Name in the help screen and the command palette (the player belongs to the episodes mode)."""
    AUTO_FOCUS = None

    BINDINGS = [
        Binding("right", "step(1)", "+1", id="player-next"),
        Binding("left", "step(-1)", "-1", id="player-previous"),
        Binding("down,pagedown", "step(10)", "+10", id="player-forward-10"),
        Binding("up,pageup", "step(-10)", "-10", id="player-back-10"),
        Binding("home", "first", "first", id="player-first"),
        Binding("end", "last", "last", id="player-last"),
        Binding("f", "failure", "failure step", id="player-failure"),
        Binding("space", "play", "play/pause", id="player-play"),
        Binding("a", "alarm", "alarm step", id="player-alarm", show=False),
        Binding("c", "camera", "camera", id="player-camera", show=False),
        Binding("g", "cycle_group(1)", "next signal group", id="player-next-group", show=False),
        Binding("G", "cycle_group(-1)", "previous signal group", id="player-previous-group", show=False),
        Binding("escape", "back", "back", id="player-back"),
    ]
    DEFAULT_CSS = """
    EpisodePlayer #title { height: 1; padding: 0 1; text-style: bold; }
    EpisodePlayer #main { height: 1fr; }
    EpisodePlayer #camera { width: 40; height: 1fr; }
    EpisodePlayer #details { width: 1fr; padding: 0 1; }
    EpisodePlayer #step-info { height: auto; }
    EpisodePlayer #probabilities { margin-top: 1; }
    EpisodePlayer #values { height: auto; margin-top: 1; }
    EpisodePlayer #evidence { height: auto; color: $foreground 60%; }
    EpisodePlayer #timeline { border-top: solid $primary; height: 9; }
    EpisodePlayer .failure-step #step-info { color: $error; text-style: bold; }
    """

    def __init__(self, store, index: int, monitor=None, play_hz: float = 10.0) -> None:
        super().__init__()
        self.store = store
        self.index = index
        self.monitor = monitor
        self.play_hz = play_hz
        self.step = 0
        self.camera = 0
        self._play_timer: Timer | None = None
        self._chunk_key: tuple[int, int] | None = None
        self._chunk: np.ndarray | None = None
        episode = store.episode(index)
        self.episode = episode
        self.meta = episode.meta
        self.signals = np.asarray(episode.signals)
        self.states = np.asarray(episode.states)
        self.actions = np.asarray(episode.actions)
        self.labels = np.asarray(episode.horizon_labels)
        self.horizons = store.horizons
        self.cameras = store.cameras
        self.length = len(self.signals)
        sim_config = store.attrs.get("sim_config") or {}
        self.control_hz = float(sim_config.get("control_hz", DEFAULT_CONTROL_HZ))
        frames = recorded_frames(store, self.meta.episode_id) if monitor is not None and monitor.reads_frames else None
        self.probabilities = None if monitor is None else monitor.probabilities(
            self.signals, episode.features, episode.hidden_features, self.states, frames, self.actions)
        self.alarm_step = monitor.first_alarm(self.probabilities) if monitor is not None else None
        self.alarm_scores = monitor.alarm_scores(self.probabilities) if monitor is not None else None
        """(T,) running alarm score (`Monitor.alarm_scores`), or None without an evaluated checkpoint."""
        features = episode.features if store.feature_names else None
        self.groups = signal_groups(self.signals, features, store.feature_families,
                                    hidden_change(episode.hidden_features) if store.hidden_dim else None)
        """The timeline's groups: the six signals, then each family the store records."""
        self.group = SIX_SIGNALS
        self.recorded = RecordedMonitor.read(store, episode)
        """What the runtime monitor of the store's collection did in this episode, or None."""

    @property
    def failed(self) -> bool:
        return self.meta.failure_type >= 0

    @property
    def playing(self) -> bool:
        """True while playback advances the step (space starts and pauses it)."""
        return self._play_timer is not None

    def compose(self) -> ComposeResult:
        yield NavBar("episodes")
        yield Label(self._title(), id="title")
        with Horizontal(id="main"):
            if getattr(self.app, "graphics", None):
                yield pixel_image_widget("camera")
            else:
                yield CameraView(id="camera")
            with VerticalScroll(id="details") as details:
                details.can_focus = False  # the arrow keys step through the episode, never scroll
                yield Static("", id="step-info")
                yield ProbabilityGrid(id="probabilities")
                yield Static("", id="values")
                yield Static("", id="evidence")
        yield SignalTimeline(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        self.show_group()
        self.show_step()

    def alarm_row(self) -> TimelineRow | None:
        """The running alarm score against the conformal threshold, or None without one."""
        if self.alarm_scores is None or self.monitor.threshold is None:
            return None
        threshold = float(self.monitor.threshold)
        return TimelineRow(f"alarm≥{threshold:.3g}", self.alarm_scores, threshold=threshold)

    def show_group(self) -> None:
        """Shows the chosen signal group (and the alarm row) in the timeline, named in its title."""
        group = pick_group(self.groups, self.group)
        rows = list(group.rows)
        title = group.title
        if len(self.groups) > 1:
            title += f" ({[g.key for g in self.groups].index(group.key) + 1}/{len(self.groups)}, g)"
        recorded = self.recorded
        if recorded is not None:
            rows.append(recorded.row())
            title += f" · mon: recorded monitor, max P(fail ≤{recorded.horizon})"
        alarm = self.alarm_row()
        if alarm is not None:
            rows.append(alarm)
            title += f" · alarm: max P(fail ≤{self.monitor.alarm_horizon}) so far"
        timeline = self.query_one("#timeline", SignalTimeline)
        timeline.border_title = title
        timeline.layout_rows = self.timeline_rows()
        timeline.set_rows(rows, self.labels, self.horizons, failure_step=self.meta.failure_step if self.failed else None,
                          alarm_step=self.alarm_step, cursor=self.step,
                          interventions=None if recorded is None else recorded.intervention,
                          alarm_steps=() if recorded is None else recorded.alarm_steps)

    def timeline_rows(self) -> int:
        """Bar rows of the largest group (with the recorded monitor's and the alarm row): the
        timeline keeps its height when the group changes."""
        return max(len(g.rows) for g in self.groups) + (self.recorded is not None) + (self.alarm_row() is not None)

    def on_resize(self, event: Resize) -> None:
        """Taller terminals get taller signal bars (2 rows each from 50 rows); the camera takes a
        square of the remaining height (2 pixels per row), at most half the width."""
        extra = 2 + (self.recorded is not None)  # labels and markers, the interventions row
        timeline_height = 1 + self.timeline_rows() * (2 if event.size.height >= 50 else 1) + extra
        self.query_one("#timeline").styles.height = timeline_height
        main_height = max(4, event.size.height - 1 - 1 - timeline_height - 1)
        self.query_one("#camera").styles.width = max(16, min(event.size.width // 2, 2 * main_height))

    def _title(self) -> str:
        meta = self.meta
        outcome = OUTCOME_NAMES[meta.failure_type]
        where = f"{outcome} at step {meta.failure_step}" if self.failed else "success"
        return f"episode {meta.episode_id} (seed {meta.seed}): {where}, {self.length} steps · {self.cameras[self.camera]}"

    # stepping -----------------------------------------------------------------------------------
    def go_to(self, step: int) -> None:
        step = min(max(int(step), 0), self.length - 1)
        if step != self.step:
            self.step = step
            self.show_step()

    def action_step(self, delta: int) -> None:
        self.go_to(self.step + delta)

    def action_first(self) -> None:
        self.go_to(0)

    def action_last(self) -> None:
        self.go_to(self.length - 1)

    def action_failure(self) -> None:
        if self.failed:
            self.go_to(self.meta.failure_step)
        else:
            self.notify("a successful episode: no failure step", severity="information")

    def action_alarm(self) -> None:
        """The next alarm the store's monitor recorded after the cursor (from the first again after
        the last), else the first alarm of the checkpoint's monitor."""
        recorded = self.recorded.alarm_steps if self.recorded is not None else ()
        if recorded:
            self.go_to(next((s for s in recorded if s > self.step), recorded[0]))
        elif self.alarm_step is not None:
            self.go_to(self.alarm_step)
        else:
            self.notify("no monitor alarm in this episode (or no evaluated predictor)")

    def action_cycle_group(self, delta: int) -> None:
        """Shows the next (delta 1) or previous (-1) signal group."""
        if len(self.groups) > 1:
            self.group = step_group(self.groups, self.group, delta)
            self.show_group()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cycle_group":
            return len(self.groups) > 1 or None
        return True

    def action_camera(self) -> None:
        self.camera = (self.camera + 1) % len(self.cameras)
        self._chunk_key = None
        self.query_one("#title", Label).update(self._title())
        self.show_step()

    def action_play(self) -> None:
        if self._play_timer is not None:
            self._stop_playing()
            return
        if self.step >= self.length - 1:
            self.step = -1
        self._play_timer = self.set_interval(1.0 / self.play_hz, self._advance)

    def _advance(self) -> None:
        if self.step >= self.length - 1:
            self._stop_playing()
            return
        self.go_to(self.step + 1)

    def _stop_playing(self) -> None:
        if self._play_timer is not None:
            self._play_timer.stop()
            self._play_timer = None

    def action_back(self) -> None:
        self._stop_playing()
        self.dismiss()

    def on_screen_suspend(self) -> None:
        self._stop_playing()

    # showing a step -----------------------------------------------------------------------------
    def frame(self, step: int) -> np.ndarray:
        """(H, W, 3) uint8 image of the current camera at `step`; reads the store chunk holding it once."""
        images = self.episode.array("images")
        chunk = images.chunks[0]
        start = step // chunk * chunk
        if self._chunk_key != (self.camera, start):
            self._chunk = np.asarray(images[start:start + chunk, self.camera])
            self._chunk_key = (self.camera, start)
        return self._chunk[step - start].transpose(1, 2, 0)

    def show_step(self) -> None:
        step = self.step
        with self.app.batch_update():
            camera = self.query_one("#camera")
            if isinstance(camera, CameraView):
                camera.set_frame(self.frame(step))
            else:
                from PIL import Image

                camera.image = Image.fromarray(self.frame(step))
            self.query_one("#timeline", SignalTimeline).set_cursor(step)
            self.query_one("#step-info", Static).update(self._step_info(step))
            self.query_one("#values", Static).update(self._values(step))
            self.query_one("#evidence", Static).update(self._evidence(step))
            grid = self.query_one("#probabilities", ProbabilityGrid)
            if self.probabilities is None and self.recorded is not None and len(self.recorded.horizons) == \
                    self.recorded.probabilities.shape[1]:
                alarm = self.recorded.alarm[step]
                grid.show(self.recorded.probabilities[step], self.recorded.horizons,
                          alarm=f"ALARM (recorded monitor, threshold {self.recorded.threshold:.3g})" if alarm else "")
            elif self.probabilities is None:
                grid.show(None, self.horizons)
            else:
                grid.show(self.probabilities[step], tuple(self.monitor.predictor.spec.horizons), alarm=self._alarm(step))
            self.set_class(self.failed and step == self.meta.failure_step, "failure-step")

    def _step_info(self, step: int) -> Text:
        meta = self.meta
        text = Text(f"step {step}/{self.length - 1}  t = {step / self.control_hz:.2f} s\n")
        if meta.failure_type == STOPPED:
            ahead = meta.failure_step - step
            if ahead == 0:
                text.append("STOPPED by the monitor at this step", style="bold reverse")
            elif ahead > 0:
                text.append(f"stopped by the monitor in {ahead} steps ({ahead / self.control_hz:.2f} s)")
            else:
                text.append(f"{-ahead} steps after the monitor's stop")
        elif self.failed:
            outcome = OUTCOME_NAMES[meta.failure_type]
            ahead = meta.failure_step - step
            if ahead == 0:
                text.append(f"FAILURE: {outcome} at this step", style="bold reverse")
            elif ahead > 0:
                text.append(f"{outcome} in {ahead} steps ({ahead / self.control_hz:.2f} s)")
            else:
                text.append(f"{-ahead} steps after the {outcome}")
        else:
            text.append("success episode")
        if self.recorded is not None and step < len(self.recorded.scores):
            text.append("\n")
            text.append_text(self.recorded.describe(step))
        return text

    def _evidence(self, step: int) -> Text:
        """Horizon labels of the step and the outcome's evidence (dim, below the rest)."""
        positive = [f"{FAILURE_TYPES[k]}<={self.horizons[h]}" for h in range(len(self.horizons))
                    for k in range(len(FAILURE_TYPES)) if self.labels[step, h, k]]
        text = Text("labels: " + (", ".join(positive[:4]) if positive else "none"))
        evidence = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                             for k, v in self.meta.evidence.items())
        if evidence:
            text.append(f"\nevidence: {evidence}")
        return text

    def _values(self, step: int) -> Text:
        state, action = self.states[step], self.actions[step]
        text = Text()
        text.append("state  ", style="bold")
        text.append("q " + " ".join(f"{v:+.2f}" for v in state[:7]) + f"  grip {state[7]:.3f}\n")
        text.append("action ", style="bold")
        text.append("dpos " + " ".join(f"{v:+.2f}" for v in action[:3]) + "  drot "
                    + " ".join(f"{v:+.2f}" for v in action[3:6]) + f"  grip {action[6]:+.2f}")
        return text

    def _alarm(self, step: int) -> str:
        if self.monitor is None or self.monitor.threshold is None:
            return ""
        if self.alarm_step is not None and step >= self.alarm_step:
            return f"ALARM since step {self.alarm_step} (threshold {self.monitor.threshold:.2f})"
        return ""
