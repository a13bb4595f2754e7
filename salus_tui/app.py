"""The SALUS console application: four screens (Textual modes) over one engine.

Screens: collect, train, evaluate, episodes (with the episode player); `trial` opens the paired
table of a `salus trial` folder over the first screen (escape goes back). Keys 1-4 (F2-F5 while typing
in a form) switch screens; `?` lists the live key bindings; ctrl+p finds every action by name;
ctrl+q (or q) quits, asking first while a job runs. SIGHUP (an SSH hang-up) and SIGTERM stop every
running job after its current episode, epoch or scorer, wait for it, flush the session log and exit.
The session log is written to `logs/salus-tui-<time>.log` (or `--log FILE`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from salus_engine.config import CollectConfig
from salus_engine.session_log import close_session_log, default_log_path, open_session_log
from salus_tui.commands import SalusCommands
from salus_tui.screens.base import JobScreen
from salus_tui.screens.collect import CollectScreen
from salus_tui.screens.confirm_quit import ConfirmQuit
from salus_tui.screens.error_dialog import ErrorDialog
from salus_tui.screens.episodes import EpisodesScreen
from salus_tui.screens.evaluate import EvaluateScreen
from salus_tui.screens.help import HelpScreen, binding_rows
from salus_tui.screens.train import TrainScreen
from salus_tui.themes import DEFAULT_THEME, load_themes
from salus_tui.widgets.nav_bar import NavBar

log = logging.getLogger("salus_tui")
HANG_UP_EXIT_S = 5.0
"""After a hang-up and once every job has stopped, seconds allowed for Textual's own exit."""
MODES = ("collect", "train", "evaluate", "episodes")


def latest_checkpoint(folder: Path = Path("checkpoints")) -> str:
    """The newest `checkpoints/predictor-*` run folder holding a config.json, or ''."""
    runs = sorted((p for p in folder.glob("predictor-*") if (p / "config.json").is_file()),
                  key=lambda p: p.stat().st_mtime)
    return str(runs[-1]) if runs else ""


class SalusApp(App):
    """Operator console: collect, train, evaluate, step through episodes.

    Args:
        collect_config: settings of the collection form (None: defaults).
        autostart: start collecting at once (`salus tui --collect N`).
        data: store folder for the train and episodes screens (default: the collection's out).
        checkpoint: predictor run folder for the evaluate and episodes screens (default: the newest
            `checkpoints/predictor-*`).
        refresh_hz: live refresh rate of the collection signals and of episode playback, Hz.
        log_path: session log file.
        theme: Textual theme name (see `salus_tui.themes`).
        start_screen: the mode shown first.
        clock: monotonic clock in seconds for elapsed/remaining times (tests freeze it).
        trial: a `salus trial` folder whose paired table opens over the first screen (`--trial DIR`).
    """

    TITLE = "SALUS"
    SUB_TITLE = "failure prediction for VLA policies"
    COMMANDS = App.COMMANDS | {SalusCommands}
    BINDINGS = [
        Binding("1,f2", "show_screen('collect')", "collect", show=False, id="screen-collect"),
        Binding("2,f3", "show_screen('train')", "train", show=False, id="screen-train"),
        Binding("3,f4", "show_screen('evaluate')", "evaluate", show=False, id="screen-evaluate"),
        Binding("4,f5", "show_screen('episodes')", "episodes", show=False, id="screen-episodes"),
        Binding("question_mark,f1", "help", "help", id="help"),
        Binding("q", "quit", "quit", id="quit"),
        Binding("ctrl+q", "quit", "quit", show=False, priority=True, id="quit-ctrl"),
        Binding("ctrl+t", "next_theme", "next theme", show=False, id="theme"),
    ]

    def __init__(self, collect_config: CollectConfig | None = None, *, autostart: bool = False,
                 data: str | None = None, checkpoint: str | None = None, refresh_hz: float = 5.0,
                 log_path: Path | None = None, theme: str | None = None, start_screen: str = "collect",
                 clock: Callable[[], float] = time.monotonic, graphics: str | None = None,
                 trial: str | None = None) -> None:
        super().__init__()
        self.graphics = graphics
        """Pixel protocol of the terminal for camera images ("tgp", "sixel") or None: half-block cells."""
        if refresh_hz <= 0:
            raise ValueError(f"refresh rate must be positive, got {refresh_hz}")
        self.collect_config = collect_config or CollectConfig()
        self.autostart = autostart
        self.data = data or self.collect_config.out
        self.checkpoint = latest_checkpoint() if checkpoint is None else checkpoint
        self.refresh_hz = refresh_hz
        self.clock = clock
        self.start_screen = start_screen
        self.trial = trial
        self.log_path = Path(log_path) if log_path else default_log_path("tui")
        self._log_handler: logging.Handler | None = None
        self._quitting = False
        self.job_status: dict[str, str] = {}
        self.screens_by_mode: dict = {}
        self.salus_theme_names: list[str] = []
        for salus_theme in load_themes():
            self.register_theme(salus_theme)
            self.salus_theme_names.append(salus_theme.name)
        self.theme = theme or (DEFAULT_THEME if DEFAULT_THEME in self.salus_theme_names else "textual-dark")
        for mode in MODES:
            self.add_mode(mode, partial_factory(self, mode))

    # screens ------------------------------------------------------------------------------------
    def make_screen(self, mode: str):
        """Creates the base screen of a mode (Textual calls this the first time a mode is shown)."""
        if mode == "collect":
            screen = CollectScreen(self.collect_config, refresh_hz=self.refresh_hz, autostart=self.autostart)
        elif mode == "train":
            screen = TrainScreen(self.data)
        elif mode == "evaluate":
            screen = EvaluateScreen(self.checkpoint, "")
        else:
            screen = EpisodesScreen(self.data if Path(self.data).exists() else "", self.checkpoint,
                                    play_hz=self.refresh_hz * 2)
        self.screens_by_mode[mode] = screen
        return screen

    def on_mount(self) -> None:
        self.log_to_file(f"session started; log {self.log_path}; camera images as "
                         f"{self.graphics or 'half-block cells'}")
        # The first screen is shown by switching away from Textual's blank default mode: `App.run` uses
        # eager tasks, so a mode's base screen composes before it is on its stack, and a widget that
        # reads `app.screen` while composing (Input does) needs the previous mode's screen there.
        self.switch_mode(self.start_screen)
        if self.trial:
            self.call_after_refresh(self.show_trial, self.trial)
        try:
            import asyncio

            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self._on_signal, "SIGTERM")
            loop.add_signal_handler(signal.SIGHUP, self._on_signal, "SIGHUP")
            self._signals_installed = True
        except (NotImplementedError, RuntimeError, ValueError):
            self._signals_installed = False

    def action_show_screen(self, mode: str) -> None:
        if self.screen.is_modal:
            return
        self.switch_mode(mode)

    def show_trial(self, folder: str) -> None:
        """Opens the paired table of the trial in `folder` over the screen shown."""
        from salus_tui.screens.trial import TrialScreen

        self.push_screen(TrialScreen(folder))

    def refresh_nav(self) -> None:
        """Redraws the navigation line of the shown screen (on job state changes, no timer)."""
        for bar in self.screen.query(NavBar):
            bar.refresh()

    def set_job_status(self, job: str, text: str) -> None:
        """Short status of a job for every screen's navigation line ('' when it is not running)."""
        if self.job_status.get(job) != text:
            self.job_status[job] = text
            self.refresh_nav()

    def suggest(self, store: str | None = None, checkpoint: str | None = None) -> None:
        """Passes a new store (after a collection) or checkpoint (after a training) to the screens
        that use them, so that the next step needs no typing."""
        if store:
            self.data = store
        if checkpoint:
            self.checkpoint = checkpoint
        for mode, screen in self.screens_by_mode.items():
            if mode == "train" and store:
                screen.suggest(store=store)
            elif mode == "evaluate" and checkpoint:
                screen.suggest(checkpoint=checkpoint, store=store)
            elif mode == "episodes":
                screen.suggest(store=store, checkpoint=checkpoint)

    def job_screens(self) -> list[JobScreen]:
        return [s for s in self.screens_by_mode.values() if isinstance(s, JobScreen)]

    @property
    def job_running(self) -> bool:
        return any(s.running for s in self.job_screens())

    # help, themes, errors -----------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        screen = self.screen
        title = getattr(screen, "MODE", "") or type(screen).__name__
        self.push_screen(HelpScreen(binding_rows(screen), title))

    def action_next_theme(self) -> None:
        names = self.salus_theme_names or [self.theme]
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        self.notify(f"theme {self.theme}")

    def open_log(self) -> None:
        """Starts writing the session log (`salus_engine.session_log`; shared with the command line
        that launched the console)."""
        if self._log_handler is None:
            self._log_handler = open_session_log(self.log_path)

    def log_to_file(self, text: str) -> None:
        """Appends a time-stamped line to the session log (any thread)."""
        self.open_log()
        log.info(text)

    def log_bug(self, where: str, error: BaseException) -> None:
        """Writes a bug's whole traceback to the session log (any thread)."""
        self.open_log()
        log.error("%s: bug", where, exc_info=error)

    def show_error(self, message: str, title: str = "error") -> None:
        """A dialog with the message and the log path; the console stays up."""
        self.log_to_file(f"error: {title}: {message}")
        self.push_screen(ErrorDialog(title, message, str(self.log_path)))

    def show_bug(self, where: str, error: BaseException | None) -> None:
        """A bug (any exception that is not a `SalusError`): its whole traceback goes to the session
        log, and a dialog says that it is a bug and names the log; the console stays up."""
        if error is not None:
            self.log_bug(where, error)
        summary = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}" if error else "unknown"
        self.show_error(f"{where} failed on a bug ({summary}); the traceback is in the session log",
                        title="internal error")

    # quitting -----------------------------------------------------------------------------------
    async def action_quit(self) -> None:
        """Quits; while a job runs, asks first and then stops it gracefully."""
        if self._quitting:
            return
        running = [s.JOB for s in self.job_screens() if s.running]
        if not running:
            self.log_to_file("quit")
            self.exit()
            return
        if isinstance(self.screen, ConfirmQuit):
            return

        def answer(quit_now: bool | None) -> None:
            if quit_now:
                self.graceful_exit("quit")

        self.push_screen(ConfirmQuit(running), answer)

    def _on_signal(self, name: str) -> None:
        self.log_to_file(f"{name} received: stopping after the current unit of work")
        self.graceful_exit(name)

    def graceful_exit(self, reason: str) -> None:
        """Stops every running job after its current unit of work, waits for the engine's done
        events, flushes the log and exits."""
        if self._quitting:
            return
        self._quitting = True
        waiting = [s for s in self.job_screens() if s.running]
        for screen in waiting:
            screen.request_stop()
        if waiting:
            self.notify("quitting after the current unit of work; nothing recorded is lost", timeout=60)
        self.log_to_file(f"exit ({reason}); waiting for {', '.join(s.JOB for s in waiting) or 'nothing'}")
        self.run_worker(partial_wait(self, waiting, reason), thread=True, exit_on_error=False, group="exit")

    def _wait_and_exit(self, screens: list[JobScreen], reason: str) -> None:
        for screen in screens:
            screen.done_event.wait()
        self.log_to_file("every job stopped; exiting")
        if reason == "SIGHUP":
            # After a hang-up the terminal is gone and restoring it can block Textual's exit forever
            # (its output queue never drains); the jobs have stopped and the store is complete, so a
            # watchdog ends the process if the normal exit has not within a few seconds.
            threading.Thread(target=self._exit_if_stuck, args=(HANG_UP_EXIT_S,), daemon=True,
                             name="salus-exit-watchdog").start()
        self.call_from_thread(self.exit)

    def _exit_if_stuck(self, delay: float) -> None:
        time.sleep(delay)
        self._close_log("session ended (the terminal was gone; exited without restoring it)")
        os._exit(0)

    def on_unmount(self) -> None:
        if getattr(self, "_signals_installed", False):
            import asyncio

            try:
                loop = asyncio.get_running_loop()
                loop.remove_signal_handler(signal.SIGTERM)
                loop.remove_signal_handler(signal.SIGHUP)
            except (RuntimeError, ValueError):
                pass
        self._close_log("session ended")

    def _close_log(self, last_line: str) -> None:
        if self._log_handler is not None:
            log.info(last_line)
            close_session_log(self._log_handler)
            self._log_handler = None


def partial_factory(app: SalusApp, mode: str) -> Callable[[], object]:
    return lambda: app.make_screen(mode)


def partial_wait(app: SalusApp, screens: list[JobScreen], reason: str) -> Callable[[], None]:
    return lambda: app._wait_and_exit(screens, reason)


def run_app(collect_config: CollectConfig | None = None, *, autostart: bool = False, data: str | None = None,
            checkpoint: str | None = None, refresh_hz: float = 5.0, theme: str | None = None,
            start_screen: str = "collect", log_path: str | None = None, trial: str | None = None) -> int:
    """Runs the console until the user quits; returns the exit code.

    Raises:
        ValueError: an unknown theme or a non-positive refresh rate.
    """
    import sys

    from salus_tui.themes import theme_name

    # Textual sizes the screen with shutil.get_terminal_size, which prefers exported COLUMNS / LINES over the
    # terminal itself; exported values (some shells, test runners) would pin the size and ignore resizes.
    for variable in ("COLUMNS", "LINES"):
        os.environ.pop(variable, None)
    available = [t.name for t in load_themes()]
    name = theme_name(theme, available) if available else None
    from salus_tui.widgets.terminal_graphics import detect_protocol

    app = SalusApp(collect_config, autostart=autostart, data=data, checkpoint=checkpoint, refresh_hz=refresh_hz,
                   log_path=Path(log_path) if log_path else None, theme=name, start_screen=start_screen,
                   graphics=detect_protocol(), trial=trial)
    app.run()
    print(f"session log: {app.log_path}", file=sys.stderr)
    return app.return_code or 0
