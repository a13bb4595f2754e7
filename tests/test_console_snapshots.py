"""Snapshot tests of every screen at 80x24 and 120x40 (pytest-textual-snapshot; sync tests).

The clock is frozen (`SalusApp(clock=...)`) and every path shown is relative, so the pictures do not
depend on when or where they are taken. The training curves come from the events of a real
`salus train` run and the evaluation from its real metrics.json (tests/data/console_run: a run
on the formula store of test_console_support, `salus train --epochs 25 --batch-size 128 --lr 3e-3
--threads 1` then `salus evaluate --no-plots`); the episodes screens read a formula store written
at test time. Every picture is taken once the screen has settled: after the store's load worker has
ended, the screen has handled every pending message and its tables have measured their rows
(`settle`), never after a fixed time. Update the pictures with `pytest tests/test_console_snapshots.py
--snapshot-update` after checking the differences (pytest writes an HTML report of them); textual is
pinned in pyproject.toml because its rendering changes between versions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import pytest_textual_snapshot
from syrupy.extensions.base import SnapshotCollectionStorage

from salus_engine.events import EpochFinished, TrainingStarted
from salus_tui.app import SalusApp
from salus_tui.messages import EngineEvent
from tests.test_console_support import settle, wait_for, wait_for_jobs, write_formula_store

# Keep the pictures as tests/snapshots/<this file>/<test>.svg: syrupy 7 reads the folder name from its
# storage class (option --snapshot-dirname, default __snapshots__) and the suffix from `file_extension`
# (pytest-textual-snapshot 1.0 still sets the older `_file_extension`).
if str(SnapshotCollectionStorage.snapshot_dirname) == "__snapshots__":
    SnapshotCollectionStorage.snapshot_dirname = "snapshots"
pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

REPO = Path(__file__).resolve().parent.parent
RUN = Path("tests/data/console_run")
SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
FROZEN = 1000.0


def make_app(**kwargs) -> SalusApp:
    kwargs.setdefault("checkpoint", "")
    kwargs.setdefault("theme", "salus-dark")
    return SalusApp(clock=lambda: FROZEN, **kwargs)


@pytest.fixture
def in_repo(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    return tmp_path


@pytest.fixture
def episode_dir(monkeypatch, tmp_path):
    """A folder holding `store` (formula store, 16 episodes) and `run` (the snapshot run), as cwd."""
    write_formula_store(tmp_path / "store", 16)
    shutil.copytree(REPO / RUN, tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("size", SIZES)
def test_collect_idle(snap_compare, in_repo, size):
    app = make_app(log_path=in_repo / "session.log")
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settle)


def test_collect_idle_16_colours(snap_compare, in_repo):
    app = make_app(log_path=in_repo / "session.log", theme="salus-ansi")
    assert snap_compare(app, terminal_size=(80, 24), run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_train_curves(snap_compare, in_repo, size):
    history = [json.loads(line) for line in (REPO / RUN / "history.jsonl").read_text().splitlines()][:14]
    config = json.loads((REPO / RUN / "config.json").read_text())

    async def run_before(pilot):
        screen = pilot.app.screen
        screen.query_one("#out").value = "checkpoints/predictor-example"
        screen.query_one("#form").display = False
        screen.post_message(EngineEvent(TrainingStarted(
            job="train", total=25, out="checkpoints/predictor-example", data="data/collection", model="multi-horizon",
            parameters=config["parameters"], samples=config["samples"],
            episodes={name: sum(c.values()) for name, c in config["splits"].items()})))
        patience_left = 10
        for h in history:
            patience_left = 10 if h["best"] else patience_left - 1
            screen.post_message(EngineEvent(EpochFinished(
                epoch=h["epoch"], total=25, train_loss=h["train_loss"], val_loss=h["val_loss"], lr=h["lr"],
                best=h["best"], patience_left=patience_left, seconds=0.5)))
        await settle(pilot)

    app = make_app(log_path=in_repo / "session.log", start_screen="train", data="data/collection")
    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_evaluate_summary(snap_compare, in_repo, size):
    app = make_app(log_path=in_repo / "session.log", start_screen="evaluate", checkpoint=str(RUN))
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settle)  # the metrics tables measured


def test_evaluate_roc(snap_compare, in_repo):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("t", "t")
        await settle(pilot)

    app = make_app(log_path=in_repo / "session.log", start_screen="evaluate", checkpoint=str(RUN))
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


async def episodes_loaded(pilot) -> None:
    """Waits until the episodes screen has read the store (its load worker's result) and has settled."""
    screen = pilot.app.screen
    await wait_for(lambda: not screen.reading and screen.rows, pilot, 60, 0.05)
    await wait_for_jobs(pilot)  # settles, the table measured
    assert screen.query_one("#episodes").row_count == len(screen.rows)


@pytest.mark.parametrize("size", SIZES)
def test_episodes_table(snap_compare, episode_dir, size):
    async def run_before(pilot):
        await episodes_loaded(pilot)

    app = make_app(log_path=episode_dir / "session.log", start_screen="episodes", data="store", checkpoint="run")
    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_episode_player_at_the_failure(snap_compare, episode_dir, size):
    async def run_before(pilot):
        await episodes_loaded(pilot)
        await pilot.press("down", "enter")  # episode 1, a collision
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)

    app = make_app(log_path=episode_dir / "session.log", start_screen="episodes", data="store", checkpoint="run")
    assert snap_compare(app, terminal_size=SIZES[size], run_before=run_before)


def test_episode_player_light_theme(snap_compare, episode_dir):
    async def run_before(pilot):
        await episodes_loaded(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("down", "down", "right")
        await settle(pilot)

    app = make_app(log_path=episode_dir / "session.log", start_screen="episodes", data="store", checkpoint="run",
                   theme="salus-light")
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_help(snap_compare, in_repo):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)  # the key table measured

    app = make_app(log_path=in_repo / "session.log")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
