"""The runtime monitor in the console: the collection screen shows the live alarm score against the
threshold, the alarms as they fire and the intervention acting (a real monitored collection: the
simulator, the embedded ensemble and the predictor of tests/data/console_run with threshold 0.5,
which alarms at step 0); the episode player marks the recorded alarms and interventions on its
timeline and names them at the cursor (the same real store, and a hand-made monitored store with a
handover and a stop); the episodes filter knows "stopped"; `salus tui --trial DIR` shows a trial's
paired table (a known-answer trial.json from `paired_table` on hand-made arms).

Waiting: never on the clock. The collection's thread is held inside its own sink at a known point
(the first memory sample, right after step 0 was pushed to the snapshot) while the test waits,
with a bounded loop, for the screen's timer to have shown that step; then for the job's end
(`wait_for_jobs`), and for each screen to have settled (`settle`).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable

from salus_engine import STOPPED
from salus_engine.cli import main as salus_main
from salus_engine.events import EpisodeFinished, ResourceSample
from salus_engine.monitor.trial import TRIAL_FORMAT, paired_table
from salus_engine.store import EpisodeRecord, EpisodeStore, EpisodeWriter
from salus_engine.store.layout import INTERVENTION_KINDS
from salus_tui.app import SalusApp
from salus_tui.screens.collect import CollectScreen
from salus_tui.screens.episodes import EpisodesScreen
from salus_tui.screens.error_dialog import ErrorDialog
from salus_tui.screens.player import EpisodePlayer
from salus_tui.screens.trial import TrialScreen
from salus_tui.widgets.signal_timeline import NAME_WIDTH, VALUE_WIDTH, SignalTimeline, column_steps
from tests.conftest import tiny_settings
from tests.test_monitor import known_arms
from tests.test_console_support import (
    HORIZONS,
    IMAGE_SIZE,
    formula_episode,
    hold_job_after_first,
    region_text,
    screen_text,
    settle,
    wait_for,
    wait_for_jobs,
)

RUN = Path(__file__).resolve().parent / "data" / "console_run"
"""A six-signal multi-horizon predictor run; its evaluation has no finite threshold, so the tests set one."""
THRESHOLD = 0.5
LETTERS = {"none": " ", "slow": "s", "replan": "p", "retreat": "r", "handover": "h", "stop": "X"}
"""The interventions row's letters, as documented in salus_tui.widgets.signal_timeline."""


def expected_row(codes: np.ndarray, alarm_steps, columns: int, cursor: int | None = None) -> str:
    """The interventions row as specified: per column the letter of the largest intervention code of
    its steps, ! in the first column of each alarm step, · in the empty columns of the cursor's step."""
    lo, hi = column_steps(len(codes), columns)
    cells = [LETTERS[INTERVENTION_KINDS[int(np.max(codes[lo[c]:hi[c]]))]] for c in range(columns)]
    for step in alarm_steps:
        cells[next(c for c in range(columns) if lo[c] <= step < hi[c])] = "!"
    if cursor is not None:
        cells = ["·" if cell == " " and lo[c] <= cursor < hi[c] else cell for c, cell in enumerate(cells)]
    return "".join(cells)


def shown_row(app, timeline: SignalTimeline, label: str = "interv.") -> tuple[str, str]:
    """(cells, value) of the timeline row starting with `label`, as drawn on the screen."""
    columns = timeline.content_region.width - NAME_WIDTH - VALUE_WIDTH
    lines = region_text(app, timeline.content_region).splitlines()
    line = next(line for line in lines if line.startswith(label)).ljust(timeline.content_region.width)
    return line[NAME_WIDTH:NAME_WIDTH + columns], line[NAME_WIDTH + columns:].strip()


def recorded_scores(store: EpisodeStore, index: int) -> np.ndarray:
    """(T,) the store's monitor score: max over failure types at the monitor's horizon."""
    settings = store.attrs["monitor"]
    h = list(settings["horizons"]).index(settings["horizon"])
    return store.episode(index).array("monitor_probabilities")[:][:, h, :].max(axis=1)


# ------------------------------------------------------------------ a real monitored collection


@pytest.mark.slow
def test_collect_screen_shows_the_monitor_and_the_player_marks_its_interventions(tmp_path):
    config = tiny_settings(tmp_path / "store", episodes=1, seed=11)
    config.monitor.run = str(RUN)
    config.monitor.threshold = THRESHOLD
    # a short intervention by the policy's own arm, so that the 23-step episode also has quiet steps
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nintervention = "retreat"\n')
    config.monitor.interventions = str(rules)

    async def scenario():
        app = SalusApp(config, checkpoint="", log_path=tmp_path / "session.log", theme="salus-dark")
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, CollectScreen)
            monitor_text = screen.query_one("#monitor-text")
            assert monitor_text.display  # a monitored collection shows the monitor's lines from the start
            # hold the job in its sink at the first memory sample: step 0 is then in the snapshot
            sampled, go_on = hold_job_after_first(screen, ResourceSample)
            try:
                await pilot.press("s")
                await wait_for(sampled.is_set, pilot)
                await wait_for(lambda: screen.alarms == 1, pilot, 60, 0.05)  # the timer pulled step 0
                await settle(pilot)
                live = str(monitor_text.render())
                live_log = "\n".join(str(line.text) for line in screen.query_one("#log").lines)
                timeline = screen.query_one("#signals", SignalTimeline)
                live_labels, live_codes = timeline.labels, timeline.interventions
                live_screen = screen_text(app)
            finally:
                go_on.set()
            await wait_for_jobs(pilot)
            assert not screen.running

            store = EpisodeStore.open(config.out)
            episode = store.episode(0)
            alarm, codes = episode.array("alarm")[:], episode.array("intervention")[:]
            items = episode.meta.interventions
            assert alarm[0] == 1 and codes[0] > 0 and items, "the console run no longer alarms at step 0"
            kind = INTERVENTION_KINDS[codes[0]]
            # live: the score against the threshold, the intervention acting, the alarm as it fired
            assert re.search(rf"monitor \d\.\d{{3}} ≥ 0\.5 · intervention {kind} · ALARM", live), live
            assert "alarms 1 · last ep 0 step 0: score" in live, live
            fired = rf"ep    0 step   0: ALARM score \d\.\d{{3}} \(threshold 0\.5\), intervention {kind}"
            assert re.search(fired, live_log), live_log
            assert live_labels[-1] == "mon≥0.5" and list(live_codes) == [codes[0]]
            assert "interv." in live_screen and "mon≥0.5" in live_screen, live_screen

            # the finished episode: its interventions logged with their alarm, the counts, its trace
            log_text = "\n".join(str(line.text) for line in screen.query_one("#log").lines)
            first = items[0]
            why = first["alarm"]
            assert (f"ep    0 step   0: {first['intervention']} for {first['steps']} steps (alarm {why['failure_type']} "
                    f"≤{why['horizon']} steps p {why['probability']:.2f})") in log_text, log_text
            assert f"alarms {int(alarm.sum())}" in log_text
            text = str(monitor_text.render())
            assert f"alarms {int(alarm.sum())}" in text
            last = f"last ep 0 step {why['step']}: {why['failure_type']} ≤{why['horizon']} p {why['probability']:.2f}"
            assert last in text, text
            assert np.array_equal(timeline.interventions, codes)
            assert timeline.alarm_steps == tuple(np.flatnonzero(alarm))
            assert timeline.labels[-1] == "mon≥0.5"
            assert np.allclose(timeline.signals[:, -1], recorded_scores(store, 0), atol=1e-6)
            cells, _ = shown_row(app, timeline)
            assert cells == expected_row(codes, np.flatnonzero(alarm), len(cells)), cells
            assert cells[0] == "!" and LETTERS[kind] in cells

            # the player: the recorded score row, the interventions row at the right steps, the cursor's details
            await pilot.press("4")
            episodes = app.screen
            assert isinstance(episodes, EpisodesScreen)
            await wait_for(lambda: len(episodes.rows) == 1 and not episodes.reading, pilot, 30, 0.05)
            await wait_for_jobs(pilot)
            await pilot.press("enter")
            await settle(pilot)
            player = app.screen
            assert isinstance(player, EpisodePlayer) and player.recorded is not None
            timeline = player.query_one("#timeline", SignalTimeline)
            assert timeline.labels[-1] == "mon≥0.5"
            assert np.allclose(timeline.signals[:, -1], recorded_scores(store, 0))
            cells, value = shown_row(app, timeline)
            assert cells == expected_row(codes, np.flatnonzero(alarm), len(cells), cursor=0), cells
            lo, hi = column_steps(len(codes), len(cells))
            for c, cell in enumerate(cells):  # the kind's letter exactly over the steps it acted
                acting = codes[lo[c]:hi[c]].max() > 0
                assert (cell != " ") == (acting or any(lo[c] <= s < hi[c] for s in np.flatnonzero(alarm))), c
            assert value == kind  # the cursor (step 0) is under the intervention
            info = str(player.query_one("#step-info").render())
            assert "ALARM" in info and f"intervention {kind} ({LETTERS[kind]}) since step 0" in info, info
            assert f"alarm {why['failure_type']} ≤{why['horizon']} steps" in info and "actor policy" in info, info
            assert "P(fail within)" in screen_text(app)  # the recorded probabilities, no checkpoint needed
            quiet = int(np.flatnonzero(codes == 0)[-1])
            player.go_to(quiet)
            await settle(pilot)
            info = str(player.query_one("#step-info").render())
            assert "intervention none · actor policy" in info and "ALARM" not in info, info
            assert shown_row(app, timeline)[1] == "–"
            await pilot.press("a")  # the next recorded alarm (from the first again)
            assert player.step == int(np.flatnonzero(alarm)[0])
            await pilot.press("escape", "q")

    asyncio.run(scenario())


def test_collect_screen_at_80x24_live_and_an_episode_without_its_trace(tmp_path):
    """The monitor's lines fit an 80x24 terminal (cut with an ellipsis, never wrapped away); an
    episode whose trace the snapshot does not hold (a Ray worker's) still shows its interventions."""
    config = tiny_settings(tmp_path / "store")
    config.monitor.run = str(RUN)
    config.monitor.threshold = THRESHOLD
    record = formula_episode(1)
    go_on, finished = threading.Event(), threading.Event()
    codes = np.zeros(record.length, np.uint8)
    codes[5:9] = INTERVENTION_KINDS.index("slow")
    ray_episode = EpisodeFinished(
        episode_id=4, seed=1004, failure_type=-1, failure_step=record.length - 1, length=record.length, seconds=1.0,
        done=1, total=2, max_uncertainty=0.2, signals=record.signals, alarms=2, intervention=codes,
        interventions=[{"step": 5, "intervention": "slow", "factor": 0.5, "steps": 4, "trigger": "monitor",
                        "alarm": {"step": 5, "failure_type": "miss", "horizon": 10, "probability": 0.75}}])

    async def scenario():
        app = SalusApp(config, checkpoint="", log_path=tmp_path / "session.log", theme="salus-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen

            def job(sink, stop) -> None:
                """Episode 3's first 30 steps into the snapshot (an alarm at 12, a replan from 12 to 19),
                then, on the test's word, the end of episode 4 from another worker."""
                screen.snapshot.reset(3, None, monitor_threshold=THRESHOLD)
                for t in range(30):
                    screen.snapshot.push(t, record.signals[t], monitor=(0.3 + t / 50, t == 12, 2 if 12 <= t < 20 else 0))
                go_on.wait(60)
                sink(ray_episode)
                finished.set()

            try:
                screen.start_job(job)
                await wait_for(lambda: screen.alarms == 1, pilot, 60, 0.05)
                await settle(pilot)
                text = screen_text(app)
                assert "monitor 0.880 ≥ 0.5 · policy acti…" in text, text
                assert "alarms 1 · last ep 3 step 12: sco…" in text, text
                timeline = screen.query_one("#signals", SignalTimeline)
                cells, value = shown_row(app, timeline)
                assert cells == expected_row(np.array([2 if 12 <= t < 20 else 0 for t in range(30)]), [12], len(cells))
                assert value == "–" and timeline.labels[-1] == "mon≥0.5"
            finally:
                go_on.set()
            await wait_for_jobs(pilot)
            assert finished.is_set()
            log_text = "\n".join(str(line.text) for line in screen.query_one("#log").lines)
            assert "ep    3 step  12: ALARM score 0.540 (threshold 0.5), intervention replan" in log_text, log_text
            assert "ep    4 step   5: slow for 4 steps (alarm miss ≤10 steps p 0.75)" in log_text, log_text
            assert screen.alarms == 2  # the written episodes' alarms: episode 3 never ended in this job
            assert "last ep 4 step 5: miss ≤10 p 0.75" in str(screen.query_one("#monitor-text").render())
            timeline = screen.query_one("#signals", SignalTimeline)
            assert "mon≥0.5" not in timeline.labels  # no score trace for this episode
            assert np.array_equal(timeline.interventions, codes) and timeline.alarm_steps == (5,)
            await pilot.press("q")

    asyncio.run(scenario())


# ------------------------------------------------------------------ a hand-made monitored store


def monitored_episode(i: int, code: int, length: int, acting: tuple[str, int, int] | None, alarms: list[int],
                      scores: np.ndarray) -> EpisodeRecord:
    """Formula episode i with a monitor record: `acting` = (kind, first step, steps) of one
    intervention started by the alarm at its first step."""
    record = formula_episode(i)
    cut = lambda a: a[:length]  # noqa: E731
    record.images, record.states, record.actions = cut(record.images), cut(record.states), cut(record.actions)
    record.member_actions, record.signals = cut(record.member_actions), cut(record.signals)
    record.failure_type, record.failure_step = code, length - 1
    probabilities = np.zeros((length, len(HORIZONS), 4), np.float32)
    probabilities[:, -1, 1] = scores  # drop, at the monitor's horizon (the last)
    probabilities[:, 0, 1] = scores / 2
    record.monitor_probabilities = probabilities
    record.alarm = np.zeros(length, np.uint8)
    record.alarm[alarms] = 1
    record.intervention = np.zeros(length, np.uint8)
    record.actor = np.zeros(length, np.uint8)
    record.interventions = []
    if acting is not None:
        kind, start, steps = acting
        record.intervention[start:start + steps] = INTERVENTION_KINDS.index(kind)
        if kind == "handover":
            record.actor[start:start + steps] = 1
        record.interventions = [{"step": start, "intervention": kind, "steps": steps, "trigger": "monitor",
                                 "alarm": {"step": start, "failure_type": "drop", "horizon": HORIZONS[-1],
                                           "probability": float(scores[start])}}]
    return record


def write_monitored_store(path: Path) -> str:
    """Three episodes: 0 a success with a handover from step 10 to 24 (alarms at 10 and 30), 1 stopped
    at step 19 by the monitor, 2 a collision without alarms."""
    settings = {"run": "hand-made", "threshold": THRESHOLD, "horizon": HORIZONS[-1], "horizons": list(HORIZONS),
                "hysteresis": 0.2, "cooldown_steps": 15, "trigger": "monitor", "rules": []}
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=IMAGE_SIZE, ensemble_size=2,
                                  base_seed=1000, policy="test formulas", sim_config={"control_hz": 30.0},
                                  monitor=settings)
    ramp = lambda n, up: np.clip(np.arange(n) / up, 0, 0.95).astype(np.float32)  # noqa: E731
    writer.write(monitored_episode(0, -1, 40, ("handover", 10, 15), [10, 30], ramp(40, 11)), durable=False)
    writer.write(monitored_episode(1, STOPPED, 20, ("stop", 19, 1), [19], ramp(20, 20)), durable=False)
    writer.write(monitored_episode(2, 0, 30, None, [], np.full(30, 0.1, np.float32)), durable=False)
    writer.close()
    return str(path)


def test_player_names_handover_and_stop_and_the_filter_knows_stopped(tmp_path):
    data = write_monitored_store(tmp_path / "store")

    async def scenario():
        app = SalusApp(data=data, checkpoint="", start_screen="episodes", log_path=tmp_path / "session.log",
                       theme="salus-dark")
        async with app.run_test(size=(100, 30)) as pilot:
            episodes = app.screen
            await wait_for(lambda: episodes.rows and not episodes.reading, pilot, 60, 0.05)
            await wait_for_jobs(pilot)
            table = episodes.query_one("#episodes", DataTable)
            outcomes = [str(table.get_row_at(r)[2]) for r in range(table.row_count)]
            assert outcomes == ["success", "stopped", "collision"]
            seen = {}
            for _ in range(len(("all", "failures", "success", "collision", "drop", "miss", "timeout", "stopped"))):
                await pilot.press("f")
                seen[episodes.filter] = [r.episode_id for r in episodes.visible_rows()]
            assert seen["stopped"] == [1] and seen["failures"] == [2] and seen["success"] == [0]
            assert seen["all"] == [0, 1, 2] and episodes.filter == "all"

            # episode 0: a handover (expert acting) from step 10 for 15 steps, alarms at 10 and 30
            episodes.open_episode(0)
            await settle(pilot)
            player = app.screen
            assert isinstance(player, EpisodePlayer)
            timeline = player.query_one("#timeline", SignalTimeline)
            cells, _ = shown_row(app, timeline)
            codes = np.zeros(40, np.uint8)
            codes[10:25] = INTERVENTION_KINDS.index("handover")
            assert cells == expected_row(codes, [10, 30], len(cells), cursor=0), cells
            lo, hi = column_steps(40, len(cells))
            assert cells[int(np.flatnonzero((lo <= 10) & (10 < hi))[0])] == "!"
            assert cells[int(np.flatnonzero((lo <= 30) & (30 < hi))[0])] == "!"
            assert set(cells) == {"·", " ", "!", "h"} and cells.count("h") >= 14
            await pilot.press("a")
            assert player.step == 10
            await settle(pilot)
            info = str(player.query_one("#step-info").render())
            assert "monitor 0.909 ≥ 0.5 (max P(fail ≤20))  ALARM" in info, info
            assert "intervention handover (h) since step 10, alarm drop ≤20 steps p 0.91 · actor expert" in info, info
            assert shown_row(app, timeline)[1] == "handover"
            await pilot.press("a")
            assert player.step == 30
            await settle(pilot)
            info = str(player.query_one("#step-info").render())
            assert "ALARM" in info and "intervention none · actor policy" in info, info
            await pilot.press("left")
            await settle(pilot)
            assert "monitor 0.950 ≥ 0.5" in str(player.query_one("#step-info").render())
            await pilot.press("escape")
            await settle(pilot)

            # episode 1: stopped by the monitor at its last step
            episodes.open_episode(1)
            await settle(pilot)
            player = app.screen
            assert "stopped at step 19, 20 steps" in str(player.query_one("#title").render())
            await pilot.press("f")
            await settle(pilot)
            info = str(player.query_one("#step-info").render())
            assert "STOPPED by the monitor at this step" in info and "intervention stop (X) since step 19" in info, info
            cells, value = shown_row(app, player.query_one("#timeline", SignalTimeline))
            lo, hi = column_steps(20, len(cells))
            at_stop = np.flatnonzero((lo <= 19) & (19 < hi))
            assert cells[at_stop[0]] == "!" and set(cells[at_stop[1]:]) <= {"X"} and value == "stop", cells
            assert set(cells[:at_stop[0]]) == {" "}  # the cursor is at the stop
            await pilot.press("home")
            await settle(pilot)
            assert "stopped by the monitor in 19 steps" in str(player.query_one("#step-info").render())
            await pilot.press("escape")
            await settle(pilot)

            # episode 2: no alarm, no intervention: an empty interventions row, the score row below 0.5
            episodes.open_episode(2)
            await settle(pilot)
            timeline = app.screen.query_one("#timeline", SignalTimeline)
            assert set(shown_row(app, timeline)[0]) <= {" ", "·"}
            assert timeline.labels[-1] == "mon≥0.5" and np.allclose(timeline.signals[:, -1], 0.1)
            await pilot.press("escape", "q")

    asyncio.run(scenario())


# ------------------------------------------------------------------ a trial's paired table


def known_trial(folder: Path) -> Path:
    """trial.json of test_monitor's known answer (`known_arms`)."""
    table = paired_table(known_arms())
    table["settings"] = {"episodes": 10, "seed": 0, "monitor": {"run": "checkpoints/run1", "threshold": 0.25}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps({"format": TRIAL_FORMAT, "format_version": 1, **table},
                                                  default=float))
    return folder


def cells(screen, table_id: str) -> list[tuple[str, ...]]:
    table = screen.query_one(f"#{table_id}", DataTable)
    return [tuple(str(c) for c in table.get_row_at(r)) for r in range(table.row_count)]


def test_trial_screen_shows_the_known_paired_table(tmp_path, monkeypatch):
    folder = known_trial(tmp_path / "trial")

    async def scenario():
        app = SalusApp(checkpoint="", log_path=tmp_path / "session.log", theme="salus-dark", trial=str(folder))
        async with app.run_test(size=(100, 40)) as pilot:
            await wait_for(lambda: isinstance(app.screen, TrialScreen), pilot, 30, 0.05)
            await settle(pilot)
            screen = app.screen
            assert screen.focused is screen.query_one("#arms")
            assert cells(screen, "arms") == [
                ("none", "10", "40.0%", "", "", "", ""),
                ("monitor", "10", "70.0%", "4/6", "1/4", "+30.0%", "0.375"),  # p = 2 * 6/32
                ("random", "10", "40.0%", "0/6", "0/4", "+0.0%", "1")]
            monitor_ci = cells(screen, "cis")[0]
            assert monitor_ci[0] == "monitor"
            assert monitor_ci[1].startswith("66.7% [") and monitor_ci[2].startswith("25.0% [")
            low, high = (float(v.rstrip("%")) for v in monitor_ci[1][len("66.7% ["):-1].split(", "))
            assert low < 66.7 < high
            assert monitor_ci[3].startswith("+30.0% [")
            assert cells(screen, "cost") == [("none", "0.0", "0.0%", "0", ""),
                                             ("monitor", "5.0", "20.0%", "1", "4/6 · 1/4"),
                                             ("random", "10.0", "0.0%", "0", "6/6 · 4/4")]
            assert cells(screen, "placebo") == [("random", "10", "4", "1", "0.375")]
            assert cells(screen, "per-type") == [("collision", "2", "2", "0", "0"), ("drop", "1", "1", "0", "0"),
                                                 ("miss", "2", "1", "0", "1"), ("timeout", "1", "0", "1", "0")]
            assert cells(screen, "targets") == [
                ("prevented share", "66.7%", "≥ 50%", "met"), ("lost share", "25.0%", "≤ 2%", "MISSED"),
                ("p value vs random", "0.375", "< 0.01 vs random, monitor better", "MISSED"),
                ("handover share", "20.0%", "≤ 20%", "met")]
            text = screen_text(app)
            assert "paired trial" in text and "10 seeds from 0" in text and "monitor run1, threshold 0.25" in text, text
            assert "+30.0%" in text and "0.375" in text
            await pilot.press("tab")  # keyboard only: the next table
            assert screen.focused is screen.query_one("#cis")
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, CollectScreen)  # back to the first screen

            # a folder without a trial: a dialog, the console stays up
            app.show_trial(str(tmp_path))
            await wait_for(lambda: isinstance(app.screen, ErrorDialog), pilot, 30, 0.05)
            assert "run 'salus trial' first" in screen_text(app)
            await pilot.press("escape")
            await settle(pilot)
            assert isinstance(app.screen, TrialScreen) and app.screen.table is None
            await pilot.press("escape", "q")

    asyncio.run(scenario())

    # `salus tui --trial DIR` passes the folder to the console
    launched = {}
    monkeypatch.setattr("salus_tui.app.run_app", lambda **kwargs: launched.update(kwargs) or 0)
    assert salus_main(["--log", str(tmp_path / "cli.log"), "tui", "--trial", str(folder)]) == 0
    assert launched["trial"] == str(folder)
