"""Episodes screen: the recorded episodes of a store in a table (filter by outcome, sort by length or
maximum uncertainty); enter opens the episode player.

The table opens from the episodes' metadata alone (a 2,000-episode store in about a second); the
columns that need the per-step signals (maximum uncertainty, first alarm) fill in once the signals
of every episode have been read, concurrently, in the background.

With a predictor checkpoint, the player shows the 16 probabilities per step and, when the checkpoint
has an evaluation, the table gets the monitor's first alarm step per episode.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Label

from salus_engine import OUTCOME_NAMES, STOPPED
from salus_engine.errors import SalusError
from salus_engine.predictor.inputs import store_arrays
from salus_engine.predictor.alarm_score import alarm_scores
from salus_engine.target_view import TARGET_VIEW, recorded_frames
from salus_tui.screens.base import SalusScreen
from salus_tui.widgets.form_field import FormField
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.sized_table import fill_sized_table

FILTERS = ("all", "failures", "success", "collision", "drop", "miss", "timeout", "stopped")
"""Outcome filters (f cycles them): `failures` are the physics failures (collision, drop, miss,
timeout); `stopped` the episodes the runtime monitor stopped (outcome code 4, format-4 stores)."""
SORTS = ("id", "length", "max uncertainty")
EPISODE_COLUMNS = ("id", "seed", "outcome", "failure step", "length", "max uncertainty", "first alarm")


@dataclass(frozen=True)
class EpisodeRow:
    """What the table shows of one episode."""

    index: int
    """Position in the store (for `EpisodeStore.episode`)."""
    episode_id: int
    seed: int
    failure_type: int
    failure_step: int
    length: int
    max_uncertainty: float | None = None
    """Maximum of signal 1 (epistemic uncertainty) over the episode; None until the signals are read."""
    first_alarm: int | None = None
    """First step whose alarm score reaches the evaluation's conformal threshold, or None."""


@dataclass
class Monitor:
    """A loaded predictor for the player: `predictor` (OnlinePredictor) and, when the checkpoint has
    an evaluation, its conformal alarm threshold and alarm horizon (steps)."""

    checkpoint: str
    predictor: object
    threshold: float | None = None
    alarm_horizon: int | None = None

    def bind(self, store) -> None:
        """Declares the store's signal-family columns and cameras to the predictor.

        Raises:
            PredictorError: the predictor reads a family that the store does not record.
        """
        self.predictor.bind(store.feature_families, store.hidden_dim, store.cameras)

    @property
    def reads_frames(self) -> bool:
        """Whether the predictor reads the front camera's frames (the `target_view` family)."""
        return TARGET_VIEW in self.predictor.spec.features

    @property
    def arrays(self) -> tuple[str, ...]:
        """The episode arrays the predictor reads (`salus_engine.predictor.inputs.store_arrays`)."""
        return store_arrays(self.predictor.spec.features)

    def probabilities(self, signals: np.ndarray, features: np.ndarray | None = None,
                      hidden: np.ndarray | None = None, states: np.ndarray | None = None,
                      frames: np.ndarray | None = None, actions: np.ndarray | None = None) -> np.ndarray:
        """(T, H, 4) float64 probabilities for an episode's (T, 6) signals (and (T, F) family
        columns, (T, D) hidden features, (T, 8) robot states, (T, 3, S, S) front-camera frames, (T, 7)
        executed actions, for a predictor that reads them)."""
        if not len(signals):
            return np.zeros((0, 0, 4))
        return self.predictor.episode(signals, features, hidden, states, frames, actions)

    def alarm_scores(self, probabilities: np.ndarray) -> np.ndarray | None:
        """(T,) float64 running alarm score of an episode's (T, H, 4) probabilities: at step t the
        maximum over steps <= t of the step's alarm score at the alarm horizon (the checkpoint's rule,
        `salus_engine.predictor.alarm_score`; the episode's alarm score so far, as the conformal
        threshold is calibrated on); None without a threshold."""
        if self.threshold is None:
            return None
        if len(probabilities) == 0:
            return np.zeros(0)
        h = list(self.predictor.spec.horizons).index(self.alarm_horizon)
        spec = self.predictor.spec
        steps = np.arange(len(probabilities))
        return np.maximum.accumulate(alarm_scores(probabilities[:, h, :], spec.alarm_score, steps, spec.success_profile))

    def first_alarm(self, probabilities: np.ndarray) -> int | None:
        """First step whose alarm score reaches the threshold, or None."""
        scores = self.alarm_scores(probabilities)
        if scores is None:
            return None
        above = np.flatnonzero(scores >= self.threshold)
        return int(above[0]) if len(above) else None


def load_monitor(checkpoint: str) -> Monitor:
    """Loads a `salus train` run for the player (numpy only).

    Raises:
        PredictorError: not a checkpoint, or damaged weights.
    """
    from salus_engine.predictor import PredictorError
    from salus_engine.predictor.online import OnlinePredictor, alarm_settings
    from salus_engine.predictor.report import find_metrics

    predictor = OnlinePredictor.load(checkpoint)
    monitor = Monitor(checkpoint, predictor)
    metrics = find_metrics(checkpoint)
    if metrics is not None:
        try:
            monitor.threshold, monitor.alarm_horizon = alarm_settings(metrics)
        except PredictorError:
            pass
    if monitor.alarm_horizon not in predictor.spec.horizons:
        monitor.threshold = monitor.alarm_horizon = None
    return monitor


class StoreLoaded(Message):
    """The load worker read a store's episode table from its metadata (and the checkpoint, when one
    was given); the signal columns follow in `SignalsRead`."""

    def __init__(self, store, rows: list[EpisodeRow], monitor: Monitor | None, error: str | None) -> None:
        super().__init__()
        self.store = store
        self.rows = rows
        self.monitor = monitor
        self.error = error


class SignalsRead(Message):
    """The load worker read every episode's signals: `rows` with maximum uncertainty and first alarm."""

    def __init__(self, store, rows: list[EpisodeRow], error: str | None, bug: BaseException | None = None) -> None:
        super().__init__()
        self.store = store
        self.rows = rows
        self.error = error
        self.bug = bug


def signal_columns(rows: list[EpisodeRow], arrays: list[dict[str, np.ndarray]], monitor: Monitor | None,
                   store=None) -> list[EpisodeRow]:
    """`rows` with `max_uncertainty` (and, with a monitor that has a threshold, `first_alarm`) from
    each episode's arrays (`EpisodeStore.read_arrays`: (T, 6) float32 `signals`, and the family
    arrays a monitor reads); a monitor that reads frames reads them from `store`, one episode at a
    time."""
    filled = []
    for row, read in zip(rows, arrays):
        episode_signals = read["signals"]
        first_alarm = None
        if monitor is not None and monitor.threshold is not None:
            frames = recorded_frames(store, row.episode_id) if monitor.reads_frames else None
            first_alarm = monitor.first_alarm(monitor.probabilities(
                episode_signals, read.get("features"), read.get("hidden_features"), read.get("states"), frames,
                read.get("actions")))
        top = float(episode_signals[:, 0].max()) if len(episode_signals) else 0.0
        filled.append(replace(row, max_uncertainty=top, first_alarm=first_alarm))
    return filled


class EpisodesScreen(SalusScreen):
    """The table of recorded episodes; the player opens on enter."""

    MODE = "episodes"
    AUTO_FOCUS = "#episodes"
    BINDINGS = [
        Binding("enter", "open", "play episode", id="episodes-open", show=False),
        Binding("f", "cycle_filter", "filter", id="episodes-filter"),
        Binding("o", "cycle_sort", "sort", id="episodes-sort"),
        Binding("r", "reload", "reload", id="episodes-reload"),
    ]
    DEFAULT_CSS = """
    EpisodesScreen .form { grid-size: 2; grid-rows: 1; grid-gutter: 0 2; height: auto; padding: 0 1; }
    EpisodesScreen #summary { height: 2; padding: 0 1; color: $foreground 80%; }
    EpisodesScreen #episodes { height: 1fr; }
    """

    def __init__(self, data: str = "", checkpoint: str = "", play_hz: float = 10.0) -> None:
        super().__init__()
        self.data = data
        self.checkpoint = checkpoint
        self.play_hz = play_hz
        self.store = None
        self.rows: list[EpisodeRow] = []
        self.monitor: Monitor | None = None
        self.filter = "all"
        self.sort = "id"
        self.reading = False
        self._table_shown = threading.Event()
        """Set once the table of the latest load is drawn (or the screen goes): the signals are read
        after that, so that reading them does not hold up the table."""

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Grid(classes="form", id="form"):
            yield FormField("store", Input(self.data, id="data", compact=True, tooltip="collection store folder"))
            yield FormField("checkpoint", Input(self.checkpoint, id="checkpoint", compact=True,
                                                tooltip="predictor run folder (optional): per-step probabilities"))
        yield Label("", id="summary")
        yield DataTable(id="episodes", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        fill_sized_table(self.query_one("#episodes", DataTable), EPISODE_COLUMNS, [])
        if self.data:
            self.action_reload()
        else:
            self._summary("give a store folder above (tab, type, enter)")

    def main_panel(self):
        return self.query_one("#episodes")

    def suggest(self, store: str | None = None, checkpoint: str | None = None) -> None:
        """Fills the form after a collection or a training and reloads."""
        changed = False
        if store and self.query_one("#data", Input).value.strip() != store:
            self.query_one("#data", Input).value = store
            changed = True
        if checkpoint and self.query_one("#checkpoint", Input).value.strip() != checkpoint:
            self.query_one("#checkpoint", Input).value = checkpoint
            changed = True
        if changed or store:
            self.action_reload()

    # loading ------------------------------------------------------------------------------------
    @on(Input.Submitted, "#form Input")
    def _submitted(self) -> None:
        self.action_reload()
        self.set_focus(self.query_one("#episodes"))

    def action_reload(self) -> None:
        data = self.query_one("#data", Input).value.strip()
        checkpoint = self.query_one("#checkpoint", Input).value.strip()
        if not data:
            self.notify("give a store folder", severity="warning")
            return
        self.reading = True
        self._table_shown.clear()
        self._summary(f"reading {data} ...")
        self._load(data, checkpoint)

    @work(thread=True, exit_on_error=False, group="load", exclusive=True)
    def _load(self, data: str, checkpoint: str) -> None:
        from salus_engine.store import EpisodeStore

        listed = None  # the store, once its table has been posted
        try:
            store = EpisodeStore.open(data)
            monitor = load_monitor(checkpoint) if checkpoint else None
            if monitor is not None:
                monitor.bind(store)
            rows = [EpisodeRow(index, meta.episode_id, meta.seed, meta.failure_type, meta.failure_step,
                               meta.episode_length) for index, meta in enumerate(store.listing())]
            self.post_message(StoreLoaded(store, rows, monitor, None))
            listed = store
            self._table_shown.wait()
            read = store.read_arrays(monitor.arrays if monitor is not None else ("signals",),
                                     [row.episode_id for row in rows])
            rows = signal_columns(rows, read, monitor, store)
        except SalusError as err:
            error = str(err).splitlines()[0]
            self.post_message(StoreLoaded(None, [], None, error) if listed is None else SignalsRead(listed, [], error))
            return
        except Exception as err:  # a bug: its traceback goes to the session log, the console stays up
            self.post_message(SignalsRead(listed, [], f"{type(err).__name__}: {err}", bug=err))
            return
        self.post_message(SignalsRead(store, rows, None))

    @on(StoreLoaded)
    def _loaded(self, message: StoreLoaded) -> None:
        if message.error:
            self.reading = False
            self._summary(f"error: {message.error}")
            self.app.show_error(message.error, title="cannot open the store")
            return
        self.store, self.rows, self.monitor = message.store, message.rows, message.monitor
        self.app.log_to_file(f"episodes: {len(self.rows)} episodes in {self.store.path}"
                             + (f", checkpoint {self.monitor.checkpoint}" if self.monitor else ""))
        self.fill_table()
        self.call_after_refresh(self._table_shown.set)

    def on_unmount(self) -> None:
        self._table_shown.set()  # a load still running goes on to its end instead of waiting

    @on(SignalsRead)
    def _signals_read(self, message: SignalsRead) -> None:
        if message.store is not None and message.store is not self.store:
            return  # a reload replaced this store
        self.reading = False
        if message.error:
            self._summary(f"error: {message.error}")
            if message.bug is not None:
                self.app.show_bug("reading the store", message.bug)
            else:
                self.app.show_error(message.error, title="cannot read the episodes' signals")
            return
        self.rows = message.rows
        self.fill_table()

    # table --------------------------------------------------------------------------------------
    def visible_rows(self) -> list[EpisodeRow]:
        """Rows after the outcome filter, in the chosen order."""
        rows = self.rows
        if self.filter == "failures":
            rows = [r for r in rows if 0 <= r.failure_type < STOPPED]
        elif self.filter != "all":
            rows = [r for r in rows if OUTCOME_NAMES[r.failure_type] == self.filter]
        if self.sort == "length":
            rows = sorted(rows, key=lambda r: (-r.length, r.episode_id))
        elif self.sort == "max uncertainty":
            rows = sorted(rows, key=lambda r: (-(r.max_uncertainty or 0.0), r.episode_id))
        return rows

    def fill_table(self) -> None:
        cells, keys = [], []
        for r in self.visible_rows():
            name = OUTCOME_NAMES[r.failure_type]
            outcome = Text(name, style="bold" if r.failure_type >= 0 else "")
            cells.append((str(r.episode_id), str(r.seed), outcome,
                          str(r.failure_step) if r.failure_type >= 0 else "–", str(r.length),
                          "…" if r.max_uncertainty is None else f"{r.max_uncertainty:.4f}",
                          "…" if r.max_uncertainty is None and self.monitor is not None
                          else "–" if r.first_alarm is None else str(r.first_alarm)))
            keys.append(str(r.index))
        fill_sized_table(self.query_one("#episodes", DataTable), EPISODE_COLUMNS, cells, keys)
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[OUTCOME_NAMES[r.failure_type]] = counts.get(OUTCOME_NAMES[r.failure_type], 0) + 1
        mix = ", ".join(f"{name} {n}" for name, n in counts.items())
        predictor = (f"; predictor {Path(self.monitor.checkpoint).name}" + ("" if self.monitor.threshold is not None
                     else " (no evaluation: no alarms)")) if self.monitor else "; no predictor"
        reading = " · reading the signals ..." if self.reading else ""
        self._summary(f"{len(self.rows)} episodes ({mix or 'none'}){predictor}{reading}\n"
                      f"filter {self.filter} (f) · sort {self.sort} (o) · enter plays the episode")

    def _summary(self, text: str) -> None:
        self.query_one("#summary", Label).update(text)

    def action_cycle_filter(self) -> None:
        self.filter = FILTERS[(FILTERS.index(self.filter) + 1) % len(FILTERS)]
        self.fill_table()

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.fill_table()

    @on(DataTable.RowSelected, "#episodes")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_episode(int(event.row_key.value))

    def action_open(self) -> None:
        table = self.query_one("#episodes", DataTable)
        if table.row_count:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
            self.open_episode(int(row_key.value))

    def open_episode(self, index: int) -> None:
        from salus_tui.screens.player import EpisodePlayer

        if self.store is None:
            return
        self.app.push_screen(EpisodePlayer(self.store, index, self.monitor, play_hz=self.play_hz))
