"""The SALUS console application."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from salus_engine.config import CollectConfig
from salus_tui.screens.collect import CollectScreen
from salus_tui.screens.confirm_quit import ConfirmQuit

LOG_DIR = Path("logs")


class SalusApp(App):
    """Operator console: supervises collection; quits gracefully, also on SIGHUP / SIGTERM."""

    TITLE = "SALUS"
    SUB_TITLE = "failure prediction for VLA policies"
    BINDINGS = [
        Binding("q", "request_quit", "quit", id="quit"),
        Binding("ctrl+q", "request_quit", "quit", show=False, id="quit-ctrl", priority=True),
    ]

    def __init__(self, collect_config: CollectConfig | None = None, refresh_hz: float = 5.0,
                 log_path: Path | None = None) -> None:
        super().__init__()
        self.collect_config = collect_config
        self.refresh_hz = refresh_hz
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.log_path = log_path or LOG_DIR / f"salus-tui-{stamp}.log"
        self._log_file = None
        self._quitting = False

    def on_mount(self) -> None:
        self.collect_screen = CollectScreen(self.collect_config, refresh_hz=self.refresh_hz)
        self.push_screen(self.collect_screen)
        try:
            import asyncio

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._graceful_exit)
        except (NotImplementedError, RuntimeError):
            pass

    # session log --------------------------------------------------------------------------------
    def log_to_file(self, text: str) -> None:
        if self._log_file is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log_path, "a", buffering=1)
        self._log_file.write(f"{dt.datetime.now().isoformat(timespec='seconds')} {text}\n")

    def show_error(self, message: str) -> None:
        self.log_to_file(f"error: {message}")
        self.notify(f"{message}\nlog: {self.log_path}", title="error", severity="error", timeout=30)

    # quitting -----------------------------------------------------------------------------------
    @property
    def job_running(self) -> bool:
        return self.collect_screen.running

    def action_request_quit(self) -> None:
        if not self.job_running:
            self.exit()
            return

        def answer(quit_now: bool | None) -> None:
            if quit_now:
                self._graceful_exit()

        self.push_screen(ConfirmQuit("collection"), answer)

    def _graceful_exit(self) -> None:
        """Stops the job after the current episode, waits for the engine's done event, exits."""
        if self._quitting:
            return
        self._quitting = True
        self.collect_screen.action_stop()
        self.run_worker(self._wait_and_exit, thread=True, exit_on_error=False)

    def _wait_and_exit(self) -> None:
        self.collect_screen.done_event.wait()
        self.call_from_thread(self.exit)

    def on_unmount(self) -> None:
        if self._log_file is not None:
            self._log_file.close()


def run_app(collect_config: CollectConfig | None = None, theme: str | None = None) -> int:
    """Runs the console until the user quits; returns the exit code."""
    app = SalusApp(collect_config)
    if theme:
        app.theme = theme
    elif os.environ.get("NO_COLOR"):
        app.theme = "textual-ansi"
    app.run()
    return 0
