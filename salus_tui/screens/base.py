"""What every console screen shares: the navigation line, the footer, leaving a form with escape,
and (for screens that run an engine job) the thread worker with its stop token.

Engine jobs run in `@work(thread=True, exit_on_error=False)` workers. The worker never touches a
widget: the job's events reach the screen as `EngineEvent` messages (`post_message` is
thread-safe). A stop request sets the job's `stop_event`; the engine checks it between units of
work (episodes, epochs, scorers). `done_event` is set when the worker ends, however it ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from textual import on, work
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Label, Select
from textual.worker import Worker, WorkerState

from salus_engine.errors import SalusError
from salus_engine.events import Event, EventSink, JobFailed
from salus_tui.messages import EngineEvent

JobFunction = Callable[[EventSink, threading.Event], object]
"""An engine job: called in the worker thread with the event sink and the stop token."""


def format_duration(seconds: float) -> str:
    """`1h02m`, `3m07s` or `12s`."""
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def training_threads() -> int:
    """torch threads for training in the console: all cores but one, which stays with the UI."""
    return max(1, (os.cpu_count() or 2) - 1)


class SalusScreen(Screen):
    """A screen of one mode (collect, train, evaluate, episodes)."""

    MODE = ""
    """The Textual mode this screen is the base of."""
    BINDINGS = [Binding("escape", "leave_form", "leave field", show=False, id="leave-form")]

    def action_leave_form(self) -> None:
        """Moves focus from a form field to the screen's main panel, so letter keys work again."""
        focused = self.focused
        if isinstance(focused, (Input, Select)):
            target = self.main_panel()
            if target is not None:
                self.set_focus(target)

    def main_panel(self):
        """The widget that gets focus outside the form (a log or a table)."""
        return None

    def on_screen_resume(self) -> None:
        self.app.refresh_nav()


class JobScreen(SalusScreen):
    """A screen that runs one engine job at a time in a thread worker."""

    JOB = "job"
    """Name of the job (`collect`, `train`, `evaluate`), as in `JobStarted.job`."""
    STOP_STATUS = ("#status-text", "stopping after the current unit of work")
    """(label selector, text) shown once a stop was requested."""

    def __init__(self) -> None:
        super().__init__()
        self.stop_event = threading.Event()
        self.done_event = threading.Event()
        self.done_event.set()
        self._live_timers: list[Timer] = []

    @property
    def running(self) -> bool:
        """True from `start_job` until the worker has ended."""
        return not self.done_event.is_set()

    def start_job(self, job: JobFunction) -> None:
        """Runs `job(sink, stop_event)` in a thread worker."""
        self.stop_event.clear()
        self.done_event.clear()
        self.app.set_job_status(self.JOB, f"{self.JOB} starting")
        self._job_worker(job)
        for timer in self._live_timers:
            if self.is_current:
                timer.resume()
        self.refresh_bindings()

    def action_stop(self) -> bool:
        """Asks the running job to stop after its current unit of work and says so in the status
        label; False when there was nothing to stop."""
        if not self.request_stop():
            return False
        selector, text = self.STOP_STATUS
        self.query_one(selector, Label).update(text)
        self.refresh_bindings()
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`start` only while idle, `stop` only while a job runs and no stop was asked yet (None
        greys the key out in the footer); subclasses add their own actions and call this."""
        if action == "start":
            return not self.running or None
        if action == "stop":
            return self.running and not self.stop_event.is_set() or None
        return True

    @on(Input.Submitted, "#form Input")
    def _form_submitted(self) -> None:
        """Enter in a field of the screen's form starts the job."""
        self.action_start()

    def action_start(self) -> None:
        """Starts the screen's job from its form (each job screen defines it)."""
        raise NotImplementedError

    def request_stop(self) -> bool:
        """Asks the job to stop after its current unit of work; False when none is running."""
        if not self.running or self.stop_event.is_set():
            return False
        self.stop_event.set()
        self.app.log_to_file(f"{self.JOB}: stop requested")
        return True

    def live_timer(self, interval: float, callback: Callable[[], None]) -> Timer:
        """A timer that runs only while a job runs and this screen is shown (idle screens and
        hidden screens run no timers)."""
        timer = self.set_interval(interval, callback, pause=True)
        self._live_timers.append(timer)
        return timer

    def _pause_live_timers(self) -> None:
        for timer in self._live_timers:
            timer.pause()

    def on_screen_suspend(self) -> None:
        self._pause_live_timers()

    def on_screen_resume(self) -> None:
        # Textual calls the handler of every class in the MRO: no super() call here
        if self.running:
            for timer in self._live_timers:
                timer.resume()

    def sink(self, event: Event) -> None:
        """The engine's event sink: forwards to the UI thread (called in the worker thread)."""
        self.post_message(EngineEvent(event))

    @work(thread=True, exit_on_error=False, group="job")
    def _job_worker(self, job: JobFunction) -> None:
        try:
            job(self.sink, self.stop_event)
        except SalusError as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.sink(JobFailed(job=self.JOB, message=message))
        finally:
            self.done_event.set()

    @on(Worker.StateChanged)
    def _worker_state(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "job" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                 WorkerState.CANCELLED):
            return
        self._pause_live_timers()
        self.app.set_job_status(self.JOB, "")
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.job_ended(failed=True)
            self.app.show_bug(f"the {self.JOB} job", error)
        else:
            self.job_ended(failed=False)

    def job_ended(self, failed: bool) -> None:
        """Called on the UI thread after the worker ended (after every event it sent)."""
