"""The signal groups of the collection screen and the episode player: the six signals and each
signal family the store (or the collection) records, one group at a time, switched with g / G; the
hidden state as one row (the change of its vector per step); only the six for a format-2 store; the
player's row of the running alarm score against the conformal threshold with an evaluated monitor.
The stores are formula stores (test_console_support); the events are built by the engine's own
`episode_finished` from written records."""

from __future__ import annotations

import asyncio
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from salus_engine.events import SignalSnapshot, hidden_change
from salus_engine.jobs import episode_finished
from salus_engine.store import EpisodeStore, EpisodeWriter
from salus_tui.app import SalusApp
from salus_tui.commands import palette_commands
from salus_tui.messages import EngineEvent
from salus_tui.screens.collect import CollectScreen
from salus_tui.screens.episodes import EpisodesScreen
from salus_tui.screens.help import HelpScreen
from salus_tui.screens.player import EpisodePlayer
from salus_tui.widgets.signal_timeline import (
    HIDDEN_LABEL,
    NAME_WIDTH,
    SIGNAL_LABELS,
    VALUE_WIDTH,
    SignalTimeline,
    column_steps,
)
from tests.test_console_support import (
    FORMULA_FAMILIES,
    HORIZONS,
    IMAGE_SIZE,
    as_format_2,
    formula_episode,
    region_text,
    screen_text,
    settle,
    wait_for,
    wait_for_jobs,
    write_formula_store,
)

RUN = Path(__file__).resolve().parent / "data" / "console_run"
"""A predictor run with an evaluation (its thresholds are +inf: too few calibration episodes)."""
THRESHOLD = 0.5
"""A finite alarm threshold set on the loaded monitor, so that the alarm row has steps above it."""
FAMILY_LABELS = {
    "chunk_consistency": ("stac mean", "stac max", "tce mean", "tce max", "chunk mag"),
    "flow_disagreement": ("vfd mean", "vfd first", "vfd last"),
    "hidden_state": (HIDDEN_LABEL,),
    "action_jerk": ("jerk", "jerk mean", "reversals", "grip toggle"),
}
"""Row labels of the formula store's groups after the six signals, in the order g shows them."""
COLUMNS = {"chunk_consistency": slice(0, 5), "flow_disagreement": slice(5, 8), "action_jerk": slice(8, 12)}
"""Their columns of the `features` array."""


@pytest.fixture(scope="module")
def family_store(tmp_path_factory) -> str:
    return write_formula_store(tmp_path_factory.mktemp("families") / "store", 6, families=True)


@pytest.fixture(scope="module")
def format_2_store(tmp_path_factory) -> str:
    return as_format_2(write_formula_store(tmp_path_factory.mktemp("format2") / "store", 4))


def make_app(tmp_path: Path, **kwargs) -> SalusApp:
    kwargs.setdefault("checkpoint", "")
    return SalusApp(log_path=tmp_path / "session.log", theme="salus-dark", **kwargs)


def new_writer(path: Path, families: bool) -> EpisodeWriter:
    return EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=IMAGE_SIZE, ensemble_size=2,
                                base_seed=1000, policy="test formulas", sim_config={},
                                feature_families=FORMULA_FAMILIES if families else None,
                                hidden_dim=64 if families else 0)


def test_finished_event_and_live_snapshot_carry_the_family_columns(tmp_path):
    writer = new_writer(tmp_path / "families", families=True)
    writer.write(formula_episode(0, families=True), durable=False)
    record = formula_episode(1, families=True)
    writer.write(record, durable=False)
    event = episode_finished(record, writer, seconds=1.5, total=4)
    writer.close()
    t = record.length
    assert (event.episode_id, event.done, event.total, event.seconds) == (1, 2, 4, 1.5)
    assert event.feature_families == FORMULA_FAMILIES
    assert event.features.dtype == np.float32 and np.array_equal(event.features, record.features)
    assert event.signals.shape == (t, 6) and event.horizon_labels.shape == (t, len(HORIZONS), 4)
    # the hidden vector (64 dims) travels as one number per step: the L2 norm of its change
    assert event.hidden_change.shape == (t,) and event.hidden_change[0] == 0
    expected = np.linalg.norm(np.diff(record.hidden_features.astype(np.float32), axis=0), axis=1)
    assert np.allclose(event.hidden_change[1:], expected)
    moved = np.flatnonzero(event.hidden_change)
    assert len(moved) and np.all(moved % 5 == 0)  # the formula's hidden state changes every 5 steps
    copy = pickle.loads(pickle.dumps(event))
    assert copy.feature_families == event.feature_families and np.array_equal(copy.features, event.features)

    plain = new_writer(tmp_path / "plain", families=False)
    record = formula_episode(0)
    plain.write(record, durable=False)
    event = episode_finished(record, plain, seconds=1.0, total=1)
    plain.close()
    assert event.features is None and event.feature_families == {} and event.hidden_change is None

    # the live snapshot: per step the six signals, the family columns and the hidden vector's change
    snapshot = SignalSnapshot(history=4)
    snapshot.reset(7, FORMULA_FAMILIES)
    full = formula_episode(2, families=True)
    for step in range(6):
        snapshot.push(step, full.signals[step], full.features[step], full.hidden_features[step])
    reading = snapshot.read()
    assert (reading.episode_id, reading.step, reading[2]) == (7, 5, 5)
    assert np.array_equal(reading.signals, full.signals[2:6]) and np.array_equal(reading.features, full.features[2:6])
    assert np.allclose(reading.hidden_change, hidden_change(full.hidden_features[:6])[2:6])
    assert reading.feature_families == FORMULA_FAMILIES
    snapshot.reset(8)
    snapshot.push(0, full.signals[0])
    reading = snapshot.read()
    assert reading.features is None and reading.hidden_change is None and reading.feature_families == {}
    assert reading.signals.shape == (1, 6)


async def open_player(app, pilot, index: int, threshold: float | None = THRESHOLD) -> EpisodePlayer:
    """Waits for the episodes screen's store (and monitor), sets the monitor's threshold and opens
    the episode at table position `index`."""
    episodes = app.screen
    assert isinstance(episodes, EpisodesScreen)
    await wait_for(lambda: episodes.rows and not episodes.reading, pilot, 60, 0.05)
    await wait_for_jobs(pilot)
    if episodes.monitor is not None:
        episodes.monitor.threshold = threshold
    episodes.open_episode(episodes.visible_rows()[index].index)
    await settle(pilot)
    player = app.screen
    assert isinstance(player, EpisodePlayer)
    return player


def cell_colours(timeline: SignalTimeline, y: int) -> list:
    """The foreground colour of every cell of line `y` of the timeline as drawn, after its label
    column (bars and value)."""
    colours = []
    for segment in timeline.render_line(y):
        colours += [segment.style.color if segment.style else None] * len(segment.text)
    return colours[NAME_WIDTH:]


def test_player_switches_signal_groups_and_shows_the_alarm_score(family_store, tmp_path):
    async def scenario():
        app = make_app(tmp_path, data=family_store, checkpoint=str(RUN), start_screen="episodes")
        async with app.run_test(size=(80, 24)) as pilot:
            player = await open_player(app, pilot, 1)  # episode 1, a collision
            timeline = player.query_one("#timeline", SignalTimeline)
            episode = player.episode
            scores = player.alarm_scores
            alarm_label = f"alarm≥{THRESHOLD:.3g}"
            assert [g.key for g in player.groups] == ["signals", *FAMILY_LABELS]

            def shown() -> tuple[str, ...]:
                return timeline.labels

            # the six signals first, with the alarm row; every group's rows, labels and markers fit
            assert shown() == (*SIGNAL_LABELS, alarm_label)
            assert timeline.border_title.startswith("six signals (1/5, g)")
            assert np.array_equal(timeline.signals[:, :6], player.signals)
            for key, labels in FAMILY_LABELS.items():
                await pilot.press("g")
                assert player.group == key and shown() == (*labels, alarm_label), (key, shown())
                assert timeline.border_title.startswith(player.groups[[g.key for g in player.groups].index(key)].title)
                values = timeline.signals[:, :-1]
                if key == "hidden_state":
                    assert np.allclose(values[:, 0], hidden_change(episode.hidden_features))
                else:
                    assert np.array_equal(values, episode.features[:, COLUMNS[key]])
                await settle(pilot)
                text = region_text(app, timeline.content_region)
                assert labels[0] in text and "fail<=20" in text and f"0/{player.length - 1}" in text, text
            await pilot.press("g")
            assert player.group == "signals" and shown()[:6] == SIGNAL_LABELS
            await pilot.press("G")
            assert player.group == "action_jerk"
            await pilot.press("G", "G", "G", "G")
            assert player.group == "signals"

            # the alarm row: the running maximum of the alarm-horizon probabilities, marked from the
            # first step at the threshold on (the monitor's first alarm)
            h = list(player.monitor.predictor.spec.horizons).index(player.monitor.alarm_horizon)
            assert np.allclose(scores, np.maximum.accumulate(player.probabilities[:, h, :].max(axis=1)))
            assert np.allclose(timeline.signals[:, -1], scores)
            assert scores[0] < THRESHOLD <= scores[-1], scores  # the collision episode crosses it
            assert player.alarm_step == int(np.flatnonzero(scores >= THRESHOLD)[0])
            await pilot.press("end")  # the cursor away from the alarm's columns
            await settle(pilot)
            colours = cell_colours(timeline, timeline.labels.index(alarm_label))  # one line per row at 80x24
            alarm = timeline.get_component_rich_style("signal-timeline--alarm").color
            bar = timeline.get_component_rich_style("signal-timeline--bar").color
            assert alarm != bar
            lo, hi = column_steps(player.length, timeline.size.width - NAME_WIDTH - VALUE_WIDTH)
            checked = {"bar": 0, "alarm": 0}
            for c in range(len(lo)):
                if hi[c] - 1 < player.alarm_step:
                    assert colours[c] == bar, c
                    checked["bar"] += 1
                elif lo[c] >= player.alarm_step and hi[c] <= player.meta.failure_step:
                    assert colours[c] == alarm, c
                    checked["alarm"] += 1
            assert checked["bar"] and checked["alarm"], checked
            assert alarm_label in screen_text(app)

            # g and G are in the help screen and the command palette
            commands = {title for title, _, _ in palette_commands(app, player)}
            assert {"player: next signal group", "player: previous signal group"} <= commands
            await pilot.press("question_mark")
            await settle(pilot)
            assert isinstance(app.screen, HelpScreen)
            assert {("g", "next signal group", "player"), ("G", "previous signal group", "player")} <= set(
                app.screen.rows)
            await pilot.press("escape", "escape")
            await settle(pilot)

            # a monitor without a threshold (no evaluation): no alarm row
            player = await open_player(app, pilot, 1, threshold=None)
            assert player.query_one("#timeline", SignalTimeline).labels == SIGNAL_LABELS
            assert "alarm" not in player.query_one("#timeline").border_title
            await pilot.press("escape", "q")

    asyncio.run(scenario())


def test_format_2_store_offers_the_six_signals_only(format_2_store, tmp_path):
    assert EpisodeStore.open(format_2_store).format_version == 2

    async def scenario():
        app = make_app(tmp_path, data=format_2_store, start_screen="episodes")
        async with app.run_test(size=(80, 24)) as pilot:
            player = await open_player(app, pilot, 1)
            timeline = player.query_one("#timeline", SignalTimeline)
            assert [g.key for g in player.groups] == ["signals"]
            assert timeline.labels == SIGNAL_LABELS and timeline.border_title == "six signals"  # no monitor: no alarm
            await pilot.press("g", "G")
            assert player.group == "signals" and timeline.labels == SIGNAL_LABELS
            assert player.check_action("cycle_group", (1,)) is None  # greyed out: one group
            assert not {"player: next signal group"} & {t for t, _, _ in palette_commands(app, player)}
            await pilot.press("question_mark")
            await settle(pilot)
            assert ("g", "next signal group (not now)", "player") in app.screen.rows
            await pilot.press("escape", "escape", "q")

    asyncio.run(scenario())


def test_collect_screen_switches_groups_of_finished_and_live_episodes(tmp_path):
    writer = new_writer(tmp_path / "families", families=True)
    records = [formula_episode(i, families=True) for i in range(2)]
    events = []
    for record in records:
        writer.write(record, durable=False)
        events.append(episode_finished(record, writer, seconds=1.0, total=4))
    writer.close()
    plain = new_writer(tmp_path / "plain", families=False)
    bare = formula_episode(0)
    plain.write(bare, durable=False)
    bare_event = episode_finished(bare, plain, seconds=1.0, total=4)
    plain.close()

    now = [1000.0]
    go_on = threading.Event()

    async def scenario():
        app = make_app(tmp_path, clock=lambda: now[0])
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, CollectScreen)
            box, timeline = screen.query_one("#signals-box"), screen.query_one("#signals", SignalTimeline)
            assert box.border_title == "six signals: current episode"
            assert screen.check_action("cycle_group", (1,)) is None  # no episode yet: the six only
            screen.post_message(EngineEvent(events[1]))
            await settle(pilot)
            assert box.border_title == "six signals (1/5, g): episode 1 (collision at step 36)"
            assert timeline.labels == SIGNAL_LABELS and np.array_equal(timeline.signals, records[1].signals)
            await pilot.press("g")
            assert box.border_title.startswith("chunk consistency (2/5, g): episode 1")
            assert timeline.labels == FAMILY_LABELS["chunk_consistency"]
            assert np.array_equal(timeline.signals, records[1].features[:, COLUMNS["chunk_consistency"]])
            assert timeline.horizon_labels is not None  # the finished episode keeps its labels
            await pilot.press("G", "G")
            assert screen.group == "action_jerk" and timeline.labels == FAMILY_LABELS["action_jerk"]
            await pilot.press("G")
            assert timeline.labels == FAMILY_LABELS["hidden_state"]
            await settle(pilot)
            text = region_text(app, timeline.content_region)
            assert HIDDEN_LABEL in text and "fail<=20" in text and "step" in text, text

            # the live episode (the snapshot the screen's timer pulls while a job runs, once the
            # finished episode has been in view for its hold time) keeps the chosen group
            def live_episode(sink, stop) -> None:
                """Episode 2's first 10 steps into the screen's snapshot, then wait."""
                screen.snapshot.reset(2, FORMULA_FAMILIES)
                for step in range(10):
                    screen.snapshot.push(step, records[0].signals[step], records[0].features[step],
                                         records[0].hidden_features[step])
                go_on.wait(120)

            now[0] += 60.0
            try:
                screen.start_job(live_episode)
                await wait_for(lambda: box.border_title.endswith("episode 2, step 9"), pilot, 60, 0.05)
                assert box.border_title == "hidden state (change) (4/5, g): episode 2, step 9"
                assert np.allclose(timeline.signals[:, 0], hidden_change(records[0].hidden_features[:10]))
                assert timeline.horizon_labels is None
                await pilot.press("g")
                assert timeline.labels == FAMILY_LABELS["action_jerk"]
                assert np.array_equal(timeline.signals, records[0].features[:10, COLUMNS["action_jerk"]])
            finally:
                go_on.set()
            await wait_for_jobs(pilot)

            # an episode without families (a format-2 store continued): the six only, the choice kept
            screen.post_message(EngineEvent(bare_event))
            await settle(pilot)
            assert box.border_title == f"six signals: episode 0 (success at step {bare.failure_step})"
            assert timeline.labels == SIGNAL_LABELS and screen.check_action("cycle_group", (1,)) is None
            await pilot.press("g")
            assert timeline.labels == SIGNAL_LABELS
            screen.post_message(EngineEvent(events[0]))
            await settle(pilot)
            assert timeline.labels == FAMILY_LABELS["action_jerk"]  # offered again: shown again
            await pilot.press("q")

    asyncio.run(scenario())
