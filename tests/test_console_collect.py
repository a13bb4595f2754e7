"""The console's collection screen with the real engine (simulator + lerobot ensemble), tiny settings."""

import asyncio

import pytest

from salus_engine.store import EpisodeStore
from salus_tui.app import SalusApp
from salus_tui.screens.collect import CollectScreen


async def wait_for(predicate, pilot, timeout=240.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await pilot.pause(0.2)


@pytest.mark.slow
def test_collect_screen_runs_a_collection_and_quits(tiny_collect_config, tmp_path):
    async def scenario():
        app = SalusApp(tiny_collect_config, log_path=tmp_path / "session.log")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.collect_screen
            assert isinstance(app.screen, CollectScreen)
            await wait_for(lambda: screen.running, pilot, 30)
            await wait_for(lambda: not screen.running, pilot)
            await pilot.pause(0.3)
            log_text = "\n".join(str(line.text) for line in screen.query_one("#log").lines)
            assert "ep    0" in log_text and "ep    1" in log_text
            progress = str(screen.query_one("#progress-text").render())
            assert "complete" in progress
            # the signals panel shows the last episode's values
            assert str(screen.query_one("#signal-value-0").render()) != "-"
            await pilot.press("q")
            await pilot.pause(0.2)
        assert len(EpisodeStore.open(tiny_collect_config.out)) == 2
        assert "ep    1" in (tmp_path / "session.log").read_text()

    asyncio.run(scenario())


@pytest.mark.slow
def test_quit_while_running_asks_then_stops_after_the_episode(tiny_collect_config, tmp_path):
    tiny_collect_config.episodes = 5

    async def scenario():
        app = SalusApp(tiny_collect_config, log_path=tmp_path / "session.log")
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.collect_screen
            # wait until the first episode is under way (past model loading)
            await wait_for(lambda: screen.snapshot.read()[2] > 0, pilot)
            await pilot.press("q")
            await pilot.pause(0.2)
            assert app.screen.__class__.__name__ == "ConfirmQuit"
            await pilot.press("n")
            await pilot.pause(0.2)
            assert screen.running and not screen.stop_event.is_set()
            await pilot.press("ctrl+q")
            await pilot.pause(0.2)
            await pilot.press("y")
            await wait_for(lambda: not screen.running, pilot)
            await pilot.pause(0.5)
        store = EpisodeStore.open(tiny_collect_config.out)
        assert 1 <= len(store) < 5
        assert store.episode_ids == list(range(len(store)))

    asyncio.run(scenario())
