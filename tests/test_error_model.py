"""One error model for both front ends: a `SalusError` is the user's mistake and ends in one line;
anything else is a bug whose whole traceback goes to the session log, named in one line, while the
console stays up."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from salus_engine.cli import EXIT_BUG, EXIT_USER_ERROR, main
from salus_engine.cli import collect as collect_commands
from salus_engine.config import ConfigError
from salus_engine.errors import SalusError
from salus_engine.predictor import PredictorError
from salus_engine.store import StoreError
from salus_tui.app import SalusApp
from salus_tui.screens.error_dialog import ErrorDialog
from tests.test_console_support import screen_text, settle, wait_for

ROOT = Path(__file__).resolve().parents[1]


def test_every_user_error_is_a_salus_error_and_no_value_error():
    from salus_engine.policy.checkpoint import PolicyLoadError

    for error in (ConfigError, StoreError, PredictorError, PolicyLoadError):
        assert issubclass(error, SalusError)
        assert not issubclass(error, ValueError)  # a numpy or torch ValueError is a bug, not a user's mistake


def test_a_user_error_is_one_line_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "salus_engine.cli", "--log", str(tmp_path / "s.log"), "collect",
                           "--episodes", "0", "--out", str(tmp_path / "store")], cwd=tmp_path, capture_output=True,
                          text=True)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salus: error: ") and "episodes=0" in lines[0], proc.stderr
    assert not (tmp_path / "store").exists()  # refused before anything was written
    assert "Traceback" not in proc.stderr


def test_a_bug_names_the_log_that_holds_its_traceback(tmp_path, monkeypatch, capsys):
    def verify_with_a_bug(args):
        return {}["no such key"]  # a bug inside a command: KeyError, not a SalusError

    monkeypatch.setattr(collect_commands, "cmd_verify", verify_with_a_bug)
    log = tmp_path / "session.log"
    code = main(["--log", str(log), "verify", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BUG
    assert len(err) == 1 and "internal error (KeyError" in err[0] and str(log) in err[0], err
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "verify_with_a_bug" in text and "KeyError" in text


def test_a_bug_in_a_console_job_is_a_dialog_the_log_has_its_traceback(tmp_path):
    log = tmp_path / "session.log"

    def job_with_a_bug(sink, stop):
        raise ZeroDivisionError("a bug in the job")

    async def scenario():
        app = SalusApp(log_path=log, theme="salus-dark", checkpoint="", start_screen="train")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            screen.start_job(job_with_a_bug)
            await wait_for(lambda: isinstance(app.screen, ErrorDialog), pilot)  # the job's result: its dialog
            await settle(pilot)  # ... composed and drawn
            shown = screen_text(app)
            assert "internal error" in shown and "ZeroDivisionError" in shown, shown
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is screen and app.is_running  # the console stays up
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "job_with_a_bug" in text

    asyncio.run(scenario())
