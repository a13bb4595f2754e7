"""The train, evaluate and episodes screens with the real predictor jobs (training, evaluation with
baselines trained on a local Ray, the numpy online predictor) on a small formula store (see
test_console_support). Every Ray process on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray
is imported)."""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported anywhere  # noqa: E402

import asyncio
import json
from pathlib import Path

import pytest

from textual.actions import parse
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable

from salus_engine.predictor.report import scorer_order
from salus_tui.app import SalusApp
from salus_tui.commands import palette_commands
from salus_tui.screens.episodes import EpisodesScreen
from salus_tui.screens.error_dialog import ErrorDialog
from salus_tui.screens.evaluate import EvaluateScreen
from salus_tui.screens.help import HelpScreen
from salus_tui.screens.player import EpisodePlayer
from salus_tui.screens.train import TrainScreen
from salus_tui.widgets.line_chart import LineChart
from salus_tui.widgets.signal_timeline import SignalTimeline
from tests.test_console_support import region_text, screen_text, settle, wait_for, wait_for_jobs, write_formula_store
from tests.test_predictor import FORMAT_1_METRICS, format_2_metrics, write_metrics

EPISODES = 48


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return write_formula_store(tmp_path_factory.mktemp("console") / "store", EPISODES)


def make_app(tmp_path: Path, **kwargs) -> SalusApp:
    kwargs.setdefault("checkpoint", "")
    return SalusApp(log_path=tmp_path / "session.log", theme="salus-dark", **kwargs)


def test_train_then_evaluate_then_step_to_the_failure(store, tmp_path):
    run_dir = tmp_path / "run"

    async def scenario():
        app = make_app(tmp_path, data=store, start_screen="train")
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.pause()
            train = app.screen
            assert isinstance(train, TrainScreen)
            for field, value in (("#epochs", "6"), ("#batch-size", "128"), ("#lr", "3e-3"), ("#out", str(run_dir))):
                train.query_one(field).value = value
            await pilot.press("s")
            await wait_for_jobs(pilot)  # the training's result: its worker has ended and its events are shown
            assert not train.running and train.run_dir == str(run_dir), screen_text(app)
            epochs = len(train.history)
            assert 1 <= epochs <= 6
            chart = train.query_one("#chart", LineChart)
            assert [len(s.x) for s in chart.series] == [epochs, epochs]
            assert [s.x[-1] for s in chart.series] == [epochs, epochs]
            text = screen_text(app)
            assert "best epoch" in text and "remaining" in text and "lr " in text
            assert (run_dir / "best.safetensors").is_file() and train.run_dir == str(run_dir)

            # e opens the evaluate screen with this run and store
            await pilot.press("e")
            await pilot.pause()
            evaluate = app.screen
            assert isinstance(evaluate, EvaluateScreen)
            assert evaluate.query_one("#checkpoint").value == str(run_dir)
            assert evaluate.query_one("#out").value == str(run_dir / "evaluation")
            evaluate.query_one("#plots").value = False
            # the form runs what `salus evaluate --fresh STORE --alpha 0.3 --delta 0.3 --workers 2` runs:
            # its networks train on a local Ray, started from the job's thread and stopped at its end
            for field, value in (("#fresh-store", store), ("#alpha", "0.3"), ("#delta", "0.3"), ("#workers", "2")):
                evaluate.query_one(field).value = value
            await pilot.press("s")
            await wait_for_jobs(pilot)  # the evaluation's result, however short the job was
            assert evaluate.metrics is not None, screen_text(app)
            import ray

            assert not ray.is_initialized()
            log = " ".join(" ".join(line.text for line in evaluate.query_one("#log").lines).split())
            assert "networks, 2 at a time on Ray" in log and "trained time-only control" in log
            metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
            assert (metrics["conformal"]["alpha"], metrics["conformal"]["delta"]) == (0.3, 0.3)
            assert metrics["fresh"]["scorers"].keys() == metrics["scorers"].keys()
            assert "training-conditional" in screen_text(app)
            scorers = evaluate.query_one("#scorers")
            assert scorers.row_count == len(metrics["scorers"]) >= 9
            assert evaluate.query_one("#per-class").row_count == 4 * len(metrics["scorers"])
            assert evaluate.query_one("#episode-types").row_count == 7
            summary = screen_text(app)
            assert "detection rate" in summary and "false-alarm rate" in summary and "lead time" in summary
            assert "episode AUROC" in summary and "re-splits (20)" in summary
            assert "episodes: true (rows) vs monitor" in summary
            roc = evaluate.query_one("#roc", LineChart)
            assert len(roc.series) >= 4 and roc.series[-1].label.startswith(metrics["scorers"]["model"]["short"])
            await pilot.press("t", "t")
            await pilot.pause()
            assert evaluate.query_one("#tabs").active == "roc-pane"
            assert "false-positive rate" in screen_text(app)

            # the episodes screen got the store and the checkpoint; filter, sort, play
            await pilot.press("4")
            episodes = app.screen
            assert isinstance(episodes, EpisodesScreen)
            await wait_for(lambda: len(episodes.rows) == EPISODES and not episodes.reading, pilot, 60)
            await wait_for_jobs(pilot)
            assert episodes.monitor is not None and episodes.monitor.threshold is not None
            await pilot.press("f")  # failures only
            table = episodes.query_one("#episodes")
            assert table.row_count == sum(1 for r in episodes.rows if r.failure_type >= 0)
            await pilot.press("o")  # sort by length, longest first
            lengths = [r.length for r in episodes.visible_rows()]
            assert lengths == sorted(lengths, reverse=True)
            await pilot.press("enter")
            await pilot.pause()
            player = app.screen
            assert isinstance(player, EpisodePlayer)
            first = episodes.visible_rows()[0]
            assert player.meta.episode_id == first.episode_id and player.step == 0
            assert player.probabilities.shape == (first.length, 4, 4)
            await pilot.press("f")
            await pilot.pause()
            assert player.step == first.failure_step
            text = screen_text(app)
            assert "FAILURE" in text and "P(fail within)" in text
            assert player.query_one("#timeline", SignalTimeline).cursor == first.failure_step
            await pilot.press("home", "right", "right", "down")
            assert player.step == 12
            await pilot.press("up", "left", "end")
            assert player.step == first.length - 1
            await pilot.press("home", "space")
            assert player.playing
            await wait_for(lambda: player.step >= 3, pilot, 10, 0.05)
            await pilot.press("space")
            assert not player.playing  # no timer left to move the step
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is episodes
            await pilot.press("q")
        assert "evaluate:" in (tmp_path / "session.log").read_text()

    asyncio.run(scenario())


def test_evaluate_form_refuses_what_salus_evaluate_refuses(tmp_path):
    async def scenario():
        app = make_app(tmp_path, start_screen="evaluate", checkpoint="run")
        async with app.run_test(size=(100, 32), notifications=True) as pilot:
            await pilot.pause()
            evaluate = app.screen
            evaluate.query_one("#data").value = "store"
            config = evaluate.read_form()  # the defaults: split conformal at alpha 0.1, no fresh store
            assert (config.alpha, config.delta, config.fresh, config.ablation, config.workers) == (0.1, None, None,
                                                                                                   False, 1)
            evaluate.query_one("#fresh-store").value = "fresh-store"
            evaluate.query_one("#delta").value = "0.05"
            evaluate.query_one("#run-ablation").value = True
            evaluate.query_one("#workers").value = "3"
            config = evaluate.read_form()
            assert (config.delta, config.fresh, config.ablation) == (0.05, "fresh-store", True)
            assert (config.workers, config.threads) == (3, 1)  # one torch thread per Ray task
            for field, value, said in (("#alpha", "1.5", "alpha=1.5"), ("#delta", "1", "delta=1"),
                                       ("#alpha", "-", "is not a number"), ("#workers", "0", "workers=0")):
                evaluate.query_one("#alpha").value, evaluate.query_one("#delta").value = "0.1", ""
                evaluate.query_one("#workers").value = "1"
                evaluate.query_one(field).value = value
                assert evaluate.read_form() is None
                await wait_for(lambda: said in screen_text(app), pilot, 30, 0.05)  # the notification, on screen
            await pilot.press("q")

    asyncio.run(scenario())


def test_evaluate_screen_shows_every_table_of_a_format_2_evaluation(tmp_path):
    """A format-2 metrics.json with a fresh store and an ablation (made-up numbers, see test_predictor)
    fills the summary, alpha and checks tabs; a format-1 one shows dashes and says what it lacks."""
    metrics = format_2_metrics()
    run = tmp_path / "run"
    write_metrics(run / "evaluation", metrics)
    old = write_metrics(tmp_path / "old", json.loads(FORMAT_1_METRICS.read_text()))

    async def scenario():
        app = make_app(tmp_path, checkpoint=str(run), start_screen="evaluate")
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            evaluate = app.screen
            assert isinstance(evaluate, EvaluateScreen) and evaluate.metrics is not None
            # summary: the episode-level headline, every scorer in group order, the model per type with CIs
            text = screen_text(app)
            assert "episode AUROC    0.950  PR-AUC 0.900 (8 of 15 failed)" in text, text
            assert "re-splits (20): mean false alarms 0.09" in text
            scorers = evaluate.query_one("#scorers", DataTable)
            keys = [row.key.value for row in scorers.ordered_rows]
            assert keys == scorer_order(metrics) and keys[0] == "model"
            assert keys.index("logistic_regression") < keys.index("signal:tce_mse_mean") < keys.index(
                "signal:epistemic_uncertainty") and keys[-2:] == ["permutation_control", "time_only"]
            assert [str(c.label) for c in scorers.ordered_columns][1:4] == ["ep AUROC", "model - this", "ep PR-AUC"]
            assert scorers.get_row_at(0)[1:6] == ["0.950", "–", "0.900", "0.50 (4/8)", "0.00 (0/7)"]
            assert scorers.get_row_at(1)[1:3] == ["0.910", "+0.040"]  # its interval holds 0: no star
            types = evaluate.query_one("#episode-types", DataTable)
            assert types.row_count == 7
            assert types.get_row_at(0)[:4] == ["collision", "2", "0.50 (1/2; 0.01-0.99)", "14.0 (9.0-19.0)"]
            # alpha: detection against median lead time, one point per alpha with a lead, model on top
            await pilot.press("t", "t", "t")
            await settle(pilot)
            assert evaluate.query_one("#tabs").active == "alpha-pane"
            chart = evaluate.query_one("#alpha-chart", LineChart)
            model = chart.series[-1]
            assert model.label == "MLP" and model.style == 0 and len(chart.series) == 4
            assert list(model.x) == pytest.approx([13, 16, 19, 22, 28, 40])
            assert list(model.y) == [p["tpr"] for p in metrics["scorers"]["model"]["episode"]["alpha_curve"][1:]]
            assert evaluate.query_one("#alpha-curve", DataTable).row_count == 7
            assert "median lead time (steps)" in screen_text(app)
            # checks: re-splits of the trained scorers, the fresh store, the ablation on both stores
            await pilot.press("t")
            await settle(pilot)
            assert evaluate.query_one("#tabs").active == "checks"
            resplits = evaluate.query_one("#resplits", DataTable)
            assert [r.key.value for r in resplits.ordered_rows] == [
                "model", "logistic_regression", "permutation_control", "time_only"]
            assert resplits.get_row_at(0)[1:5] == ["0.00 (0/7)", "20", "7 / 7", "0.090"]
            fresh = evaluate.query_one("#fresh", DataTable)
            assert fresh.display and fresh.row_count == len(metrics["fresh"]["scorers"])
            assert fresh.get_row_at(0)[1] == "0.850"
            assert all(evaluate.query_one(label).display for label in ("#fresh-types-label", "#fresh-resplits-label"))
            fresh_types = evaluate.query_one("#fresh-types", DataTable)
            assert fresh_types.display and fresh_types.get_row_at(fresh_types.row_count - 1)[:3] == [
                "success: false alarms", "10", "0.20 (2/10; 0.03-0.56)"]
            fresh_resplits = evaluate.query_one("#fresh-resplits", DataTable)
            assert [r.key.value for r in fresh_resplits.ordered_rows] == [r.key.value for r in resplits.ordered_rows]
            assert fresh_resplits.get_row_at(0)[1:5] == ["0.20 (2/10)", "20", "7 / 10", "0.110"]
            ablation = evaluate.query_one("#ablation", DataTable)
            assert ablation.display and ablation.row_count == 6
            assert [ablation.get_row_at(i)[1] for i in range(6)] == ["test"] * 3 + ["fresh"] * 3
            assert "fresh store data/fresh (base seed 100000" in screen_text(app)
            # format 1: dashes, notes instead of the fresh and ablation tables, no alpha curve
            evaluate.load_metrics(old / "metrics.json")
            await settle(pilot)
            assert scorers.get_row_at(0)[1:3] == ["–", "–"]
            assert resplits.get_row_at(0)[2:5] == ["–", "–", "–"]
            assert not fresh.display and not ablation.display
            assert not fresh_types.display and not fresh_resplits.display
            assert not any(evaluate.query_one(label).display for label in ("#fresh-types-label", "#fresh-resplits-label"))
            text = screen_text(app)
            assert "not run: evaluate with --fresh" in text and "not run: evaluate with --ablation" in text
            assert evaluate.query_one("#alpha-curve", DataTable).row_count == 0 and not chart.series
            assert "format 1" in chart.empty_text
            await pilot.press("q")

    asyncio.run(scenario())


def test_job_error_is_a_dialog_and_the_console_stays_up(tmp_path):
    async def scenario():
        app = make_app(tmp_path, data=str(tmp_path / "missing-store"), start_screen="train")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            train = app.screen
            train.query_one("#out").value = str(tmp_path / "run")
            await pilot.press("s")
            await wait_for_jobs(pilot)
            dialog = app.screen
            assert isinstance(dialog, ErrorDialog), screen_text(app)
            assert "missing-store" in dialog.message and dialog.log_path == str(tmp_path / "session.log")
            # the whole message (what is wrong and what to do) and the log path are on the screen, wrapped
            # inside the dialog's box at 80x24
            box = dialog.query_one("#dialog")
            shown = "".join(region_text(app, box.content_region).split())
            assert "".join(dialog.message.split()) in shown, screen_text(app)
            assert "sessionlog:" + str(tmp_path / "session.log") in shown, screen_text(app)
            assert "no such store" in dialog.message
            assert app.screen.region.contains_region(box.region)
            await pilot.press("enter")
            await pilot.pause()
            assert app.screen is train and not train.running
            assert train.query_one("#form").display
            await pilot.press("q")
        assert "missing-store" in (tmp_path / "session.log").read_text()

    asyncio.run(scenario())


def test_help_and_palette_cover_every_binding(store, tmp_path):
    async def scenario():
        app = make_app(tmp_path, data=store)
        async with app.run_test(size=(80, 24)) as pilot:
            for key, mode in (("1", "collect"), ("2", "train"), ("3", "evaluate"), ("4", "episodes")):
                await pilot.press(key)
                await pilot.pause()
                screen = app.screen
                assert screen.MODE == mode
                commands = {title for title, _, _ in palette_commands(app, screen)}
                for binding in type(screen).BINDINGS:
                    if binding.action == "leave_form":
                        continue
                    _, action, parameters = parse(binding.action)
                    enabled = bool(screen.check_action(action, parameters))
                    assert not enabled or f"{mode}: {binding.description}" in commands, (mode, binding.description)
                assert {f"screen: {m}" for m in ("collect", "train", "evaluate", "episodes")} <= commands
                assert {"theme: salus-dark", "theme: salus-light", "theme: salus-ansi"} <= commands
                await pilot.press("question_mark")
                await pilot.pause()
                assert isinstance(app.screen, HelpScreen)
                keys = {row[1] for row in app.screen.rows}
                assert {b.description for b in type(screen).BINDINGS if b.action != "leave_form"} <= {
                    k.removesuffix(" (not now)") for k in keys}
                assert "help" in keys and "quit" in keys
                await pilot.press("escape")
                await pilot.pause()
                assert app.screen is screen
            # a palette command runs its action: the episodes filter
            episodes = app.screen
            await wait_for(lambda: len(episodes.rows) == EPISODES, pilot, 60)
            await pilot.press("ctrl+p")
            await wait_for(lambda: isinstance(app.screen, CommandPalette), pilot, 10, 0.05)
            palette = app.screen
            await pilot.press(*"filter")
            hits = palette.query_one(CommandList)

            def highlighted() -> str:
                if hits.highlighted is None:
                    return ""
                return str(hits.get_option_at_index(hits.highlighted).prompt)

            # the search runs in the palette's worker: wait for its result, the filter command highlighted
            await wait_for(lambda: highlighted().startswith("episodes: filter"), pilot, 10, 0.05)
            await pilot.press("enter")
            await wait_for(lambda: episodes.filter == "failures", pilot, 10, 0.05)
            assert app.screen is episodes
            # themes cycle with ctrl+t; each is one of ours
            for _ in range(3):
                await pilot.press("ctrl+t")
                assert app.theme in app.salus_theme_names
            await pilot.press("q")

    asyncio.run(scenario())


def test_training_stops_after_the_current_epoch(store, tmp_path):
    async def scenario():
        app = make_app(tmp_path, data=store, start_screen="train")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            train = app.screen
            for field, value in (("#epochs", "500"), ("#patience", "0"), ("#out", str(tmp_path / "run"))):
                train.query_one(field).value = value
            await pilot.press("s")
            # the first epoch's result: the job is provably running (500 epochs, no early stopping)
            await wait_for(lambda: len(train.history) >= 1, pilot, 60, 0.05)
            await pilot.press("x")
            assert train.stop_event.is_set(), "x did not reach the running job"  # set only while it runs
            await wait_for_jobs(pilot)
            assert not train.running and 1 <= len(train.history) < 500
            assert "stopped on request" in screen_text(app)
            assert (tmp_path / "run" / "final.safetensors").is_file()
            await pilot.press("q")

    asyncio.run(scenario())


def test_unexpected_worker_error_is_a_dialog(tmp_path):
    """An exception that is no user error (a bug) still ends as a dialog; the traceback goes to the log."""

    def failing_job(sink, stop):
        raise RuntimeError("a defect inside the job")

    async def scenario():
        app = make_app(tmp_path, start_screen="train")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            train = app.screen
            train.start_job(failing_job)
            await wait_for(lambda: isinstance(app.screen, ErrorDialog), pilot, 30)
            assert "RuntimeError: a defect inside the job" in app.screen.message
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is train and not train.running and app.job_status.get("train") == ""
            await pilot.press("q")
        log = (tmp_path / "session.log").read_text()
        assert "Traceback" in log and "a defect inside the job" in log

    asyncio.run(scenario())


def test_episode_table_comes_from_metadata_and_damaged_signals_are_one_dialog(tmp_path):
    """The table lists every episode from its metadata even when one episode's signals cannot be
    read; the signal columns then stay empty and a dialog names the damaged episode."""
    from tests.test_store_faults import episode_dir, write_store

    path = write_store(tmp_path / "store", episodes=5)
    chunk = episode_dir(path, 3) / "signals" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])

    async def scenario():
        app = make_app(tmp_path, data=str(path), start_screen="episodes")
        async with app.run_test(size=(100, 32)) as pilot:
            episodes = app.screen
            assert isinstance(episodes, EpisodesScreen)
            await wait_for(lambda: isinstance(app.screen, ErrorDialog), pilot, 60)
            dialog = app.screen
            assert "episode 3: array 'signals' is damaged" in dialog.message and "salus verify" in dialog.message
            assert [r.episode_id for r in episodes.rows] == [0, 1, 2, 3, 4]
            assert [r.failure_type for r in episodes.rows] == [-1, 0, 0, 0, 0]
            assert all(r.max_uncertainty is None for r in episodes.rows) and not episodes.reading
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is episodes and episodes.query_one("#episodes").row_count == 5
            await pilot.press("q")

    asyncio.run(scenario())
