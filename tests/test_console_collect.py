"""The console's collection screen with the real engine (simulator + lerobot ensemble), tiny settings:
a collection at 80x24, the outcome bars, the finished episode's signals with horizon labels and its
signal families (g shows the next group), the memory warning, the recorded episodes in the player;
quitting while collecting asks first, and SIGTERM stops after the current episode without losing
what was recorded."""

from __future__ import annotations

import asyncio
import os
import signal

import numpy as np
import pytest
from textual.widgets import Static

from salus_engine.events import EpisodeFinished, ResourceSample
from salus_engine.signal_families import COLLECTED_FAMILIES, HIDDEN_STATE
from salus_engine.store import EpisodeStore
from salus_tui.app import SalusApp
from salus_tui.screens.collect import CollectScreen
from salus_tui.screens.confirm_quit import ConfirmQuit
from salus_tui.screens.episodes import EpisodesScreen
from salus_tui.screens.player import EpisodePlayer
from salus_tui.widgets.camera_view import CameraView
from salus_tui.widgets.outcome_bars import OutcomeBars
from salus_tui.widgets.signal_timeline import SIGNAL_LABELS, SignalTimeline, column_label
from tests.test_console_support import (
    hold_job_after_first,
    region_text,
    screen_text,
    settle,
    wait_for,
    wait_for_exit,
    wait_for_jobs,
)


@pytest.mark.slow
def test_collect_screen_runs_a_collection_then_plays_an_episode(tiny_collect_config, tmp_path):
    async def scenario():
        app = SalusApp(tiny_collect_config, checkpoint="", log_path=tmp_path / "session.log", theme="salus-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, CollectScreen)
            # The job's thread is held after its first episode's event, so the screen is seen while the
            # collection provably runs, however fast the episodes are.
            first_episode, go_on = hold_job_after_first(screen, EpisodeFinished)
            try:
                await pilot.press("s")
                await wait_for(first_episode.is_set, pilot)
                await settle(pilot)
                assert screen.running
                # the job shows in the navigation line of every screen
                assert "collect 1/2" in screen_text(app).splitlines()[0], screen_text(app)
            finally:
                go_on.set()
            await wait_for_jobs(pilot)  # the collection's result: its worker has ended, its events are shown
            assert not screen.running
            text = screen_text(app)
            assert "collection complete" in text
            log_text = "\n".join(str(line.text) for line in screen.query_one("#log").lines)
            assert "ep    0" in log_text and "ep    1" in log_text
            # outcome bars count both episodes
            assert sum(screen.query_one("#outcome-bars", OutcomeBars).counts.values()) == 2
            # the last episode's six signals stay in view with its horizon labels
            timeline = screen.query_one("#signals", SignalTimeline)
            assert timeline.horizon_labels is not None
            assert timeline.signals.shape == (len(timeline.horizon_labels), 6)
            assert np.ptp(timeline.signals[:, 0]) > 0
            assert "fail<=20" in text
            # ... and the signal families the store records, one group at a time (g / G)
            store = EpisodeStore.open(tiny_collect_config.out)
            recorded = [name for name in COLLECTED_FAMILIES
                        if name in store.feature_families or (name == HIDDEN_STATE and store.hidden_dim)]
            assert [g.key for g in screen.groups] == ["signals", *recorded], screen.groups
            assert recorded[0] == "chunk_consistency" and "action_jerk" in recorded  # need no sampling loop
            columns = store.feature_families["chunk_consistency"]
            last = store.episode(len(store) - 1)
            await pilot.press("g")
            assert timeline.labels == tuple(column_label(c) for c in columns)
            assert np.array_equal(timeline.signals, last.features[:, :len(columns)])
            assert "chunk consistency" in screen.query_one("#signals-box").border_title
            await pilot.press("G")
            assert timeline.labels == SIGNAL_LABELS
            # memory gauge: warning style above 90 % of the budget, normal below
            memory_box = screen.query_one("#memory-box")
            screen.show_memory(ResourceSample(used_gb=9.5, budget_gb=10.0, kind="ram"))
            await settle(pilot)
            assert memory_box.has_class("memory-warning") and "ABOVE 90 %" in screen_text(app)
            screen.show_memory(ResourceSample(used_gb=8.5, budget_gb=10.0, kind="ram"))
            await pilot.pause()
            assert not memory_box.has_class("memory-warning")

            # the episodes screen already points at the new store: open one, step through it
            await pilot.press("4")
            episodes = app.screen
            assert isinstance(episodes, EpisodesScreen)
            await wait_for(lambda: len(episodes.rows) == 2 and not episodes.reading, pilot, 30)
            await wait_for_jobs(pilot)
            await pilot.press("enter")
            await settle(pilot)
            player = app.screen
            assert isinstance(player, EpisodePlayer)
            camera = player.query_one("#camera", CameraView)
            size = tiny_collect_config.sim.image_size
            assert camera.frame.shape == (size, size, 3) and camera.frame.std() > 0  # a rendered image
            first = camera.frame.copy()
            await pilot.press("end")
            assert player.step == player.length - 1
            assert not np.array_equal(camera.frame, first)  # the robot moved
            await pilot.press("f")
            assert player.step == (player.meta.failure_step if player.failed else player.length - 1)
            assert [g.key for g in player.groups] == ["signals", *recorded]
            await pilot.press("g")
            assert player.query_one("#timeline", SignalTimeline).labels == tuple(column_label(c) for c in columns)
            assert "P(fail within)" not in screen_text(app)  # no checkpoint: no probabilities
            await pilot.press("escape", "q")
        assert len(EpisodeStore.open(tiny_collect_config.out)) == 2
        assert "ep    1" in (tmp_path / "session.log").read_text()

    asyncio.run(scenario())


@pytest.mark.slow
def test_quit_asks_while_collecting_and_sigterm_stops_after_the_episode(tiny_collect_config, tmp_path):
    # far more than can run before the signal (a tiny episode takes ~0.3 s: 50 once all finished first)
    tiny_collect_config.episodes = 100_000

    async def scenario():
        app = SalusApp(tiny_collect_config, autostart=True, checkpoint="", log_path=tmp_path / "session.log",
                       theme="salus-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            # wait until the first episode is under way (past model loading)
            await wait_for(lambda: screen.snapshot.read()[2] > 0, pilot)
            await pilot.press("q")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmQuit)
            # the whole question is on screen at 80x24 (wrapped, not cut at the dialog's edge)
            box = app.screen.query_one(Static)
            shown = " ".join(region_text(app, box.content_region).split())
            assert "Quit once it has stopped? Everything recorded so far is kept." in shown, screen_text(app)
            assert app.screen.region.contains_region(box.region)
            await pilot.press("n")
            await settle(pilot)
            assert app.screen is screen and screen.running and not screen.stop_event.is_set()
            await pilot.press("ctrl+q")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmQuit)
            await pilot.press("escape")
            await settle(pilot)
            assert app.screen is screen and screen.running
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` or a hang-up (SIGHUP) would
            await wait_for(lambda: screen.stop_event.is_set(), pilot, 10)
            # the exit worker waits for the collection to stop after its episode, then exits the app; wait
            # on those results (the worker itself may be gone by now)
            assert await asyncio.to_thread(screen.done_event.wait, 240), "the collection did not stop"
            await wait_for_exit(app)
            assert not screen.running and app.return_code is not None
        store = EpisodeStore.open(tiny_collect_config.out)
        assert 1 <= len(store) < 100_000
        assert store.episode_ids == list(range(len(store)))
        log = (tmp_path / "session.log").read_text()
        assert "SIGTERM received" in log and "every job stopped; exiting" in log and "session ended" in log

    asyncio.run(scenario())
