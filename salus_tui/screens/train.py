"""Training screen: a form for the store and hyper-parameters, live train/validation loss curves,
learning rate, early-stopping state, elapsed and remaining time; stop after the current epoch."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Footer, Input, Label, ProgressBar, RichLog

from salus_engine.config import ConfigError, TrainConfig, build_settings, default_of
from salus_engine.events import EpochFinished, JobFailed, LogLine, TrainingFinished, TrainingStarted
from salus_tui.messages import EngineEvent
from salus_tui.screens.base import JobScreen, format_duration, training_threads
from salus_tui.widgets.form_field import FormField
from salus_tui.widgets.line_chart import LineChart, Series
from salus_tui.widgets.nav_bar import NavBar


class TrainScreen(JobScreen):
    """Runs `salus_engine.predictor.training.run_training` (the `salus train` job)."""

    MODE = "train"
    JOB = "train"
    STOP_STATUS = ("#status-text", "stopping after the current epoch (the best weights are kept)")
    AUTO_FOCUS = "#log"
    BINDINGS = [
        Binding("s", "start", "start", id="train-start"),
        Binding("x", "stop", "stop after epoch", id="train-stop"),
        Binding("e", "evaluate", "evaluate run", id="train-evaluate"),
    ]
    DEFAULT_CSS = """
    TrainScreen .form { grid-size: 2; grid-rows: 1; grid-gutter: 0 2; height: auto; padding: 0 1; }
    TrainScreen #status-box { height: 6; border: round $primary; padding: 0 1; }
    TrainScreen #status-box ProgressBar Bar { width: 1fr; }
    TrainScreen #chart-box { height: 1fr; min-height: 8; border: round $primary; }
    TrainScreen #log { height: 5; border: round $primary; }
    """

    def __init__(self, data: str, out: str | None = None) -> None:
        super().__init__()
        from salus_engine.predictor.checkpoint import default_run_dir

        self.data = data
        self.out = out or default_run_dir()
        self.history: list[EpochFinished] = []
        self.run_dir: str | None = None
        self.epochs_planned = 0
        self.patience = 10
        self._started_at = 0.0

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Grid(classes="form", id="form"):
            yield FormField("store", Input(self.data, id="data", compact=True, tooltip="collection store folder"))
            yield FormField("out", Input(self.out, id="out", compact=True, tooltip="run folder to create"))
            yield FormField("epochs", Input(str(default_of(TrainConfig, "epochs")), id="epochs", type="integer",
                                            compact=True))
            yield FormField("batch", Input(str(default_of(TrainConfig, "batch_size")), id="batch-size", type="integer",
                                           compact=True))
            yield FormField("lr", Input(f"{default_of(TrainConfig, 'lr'):g}", id="lr", type="number", compact=True))
            yield FormField("patience", Input(str(default_of(TrainConfig, "patience")), id="patience", type="integer",
                                              compact=True, tooltip="epochs without a lower validation loss before stopping"))
        with Vertical(id="status-box") as box:
            box.border_title = "training"
            yield ProgressBar(total=1, show_eta=False, id="epoch-progress")
            yield Label("idle: s trains a predictor on the store (tab edits the form)", id="status-text")
            yield Label("", id="time-text")
        with Vertical(id="chart-box") as box:
            box.border_title = "loss per epoch"
            yield LineChart(id="chart", x_label="epoch", empty_text="train and validation loss appear here per epoch")
        yield RichLog(id="log", max_lines=500, markup=False, wrap=True)
        yield Footer()

    def main_panel(self):
        return self.query_one("#log")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "evaluate":
            return (self.run_dir is not None and not self.running) or None
        return super().check_action(action, parameters)

    def suggest(self, store: str | None = None) -> None:
        """Fills the store field (after a collection) unless a job runs."""
        if store and not self.running:
            self.query_one("#data", Input).value = store

    # actions ------------------------------------------------------------------------------------
    def read_form(self):
        """The form as a `TrainConfig`; None (with a notification) when a field is wrong."""
        values = {name: self.query_one(f"#{name}", Input).value.strip()
                  for name in ("data", "out", "epochs", "batch-size", "lr", "patience")}
        if not values["data"] or not values["out"]:
            self.notify("give the store and the out folder", severity="error")
            return None
        try:
            return build_settings(TrainConfig, data=values["data"], out=values["out"], epochs=values["epochs"],
                                  batch_size=values["batch-size"], lr=values["lr"], patience=values["patience"],
                                  threads=training_threads())
        except ConfigError as err:
            self.notify(str(err), severity="error")
            return None

    def action_start(self) -> None:
        if self.running:
            self.notify("training is already running", severity="warning")
            return
        config = self.read_form()
        if config is None:
            return
        self.history = []
        self.run_dir = None
        self.epochs_planned = config.epochs
        self.patience = config.patience
        self.query_one("#chart", LineChart).set_series([])
        self.query_one("#epoch-progress", ProgressBar).update(total=config.epochs, progress=0)
        self.query_one("#status-text", Label).update(f"loading {config.data} ...")
        self.query_one("#time-text", Label).update("")
        self.query_one("#form").display = False
        self.set_focus(self.query_one("#log"))
        self._log(f"train on {config.data} -> {config.out}: {config.epochs} epochs, batch {config.batch_size}, "
                  f"lr {config.lr:g}, patience {config.patience}")
        self._started_at = self.app.clock()

        def job(sink, stop) -> None:
            from salus_engine.predictor.training import run_training

            run_training(config, sink=sink, stop=stop)

        self.start_job(job)

    def action_evaluate(self) -> None:
        """Opens the evaluate screen with this run and its store."""
        if self.run_dir is None:
            self.notify("train a predictor first", severity="warning")
            return
        self.app.suggest(checkpoint=self.run_dir, store=self.query_one("#data", Input).value.strip())
        self.app.switch_mode("evaluate")

    # engine events ------------------------------------------------------------------------------
    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, TrainingStarted):
            self.epochs_planned = event.total
            self.run_dir = event.out
            self._started_at = self.app.clock()
            self.query_one("#status-text", Label).update(
                f"{event.model} model, {event.parameters} parameters; {event.samples['train']} train / "
                f"{event.samples['val']} val steps; epoch 1 running ...")
            self._log(f"training {event.model} ({event.parameters} parameters) on {event.data}; "
                      f"episodes per split {event.episodes}")
            self.app.set_job_status(self.JOB, f"train 0/{event.total}")
        elif isinstance(event, EpochFinished):
            self.add_epoch(event)
        elif isinstance(event, LogLine):
            self._log(f"[{event.level}] {event.text}")
        elif isinstance(event, TrainingFinished):
            summary = event.summary
            how = ("stopped on request" if summary.stopped else
                   "stopped early (patience)" if summary.early_stopped else "done")
            text = (f"{how}: {summary.epochs_run} epochs in {format_duration(summary.seconds)}, best epoch "
                    f"{summary.best_epoch} (val {summary.best_val_loss:.4f}); e evaluates it")
            self.query_one("#status-text", Label).update(text)
            self._log(f"{text}; saved {summary.out}")
            self.run_dir = summary.out
            self.app.suggest(checkpoint=self.run_dir, store=self.query_one("#data", Input).value.strip())
        elif isinstance(event, JobFailed):
            self.query_one("#status-text", Label).update("failed: see the log")
            self._log(f"error: {event.message}")
            self.app.show_error(event.message, title="training failed")

    def add_epoch(self, event: EpochFinished) -> None:
        """One epoch: chart, status line (lr, best, patience), elapsed and remaining time."""
        self.history.append(event)
        epochs = [e.epoch for e in self.history]
        self.query_one("#chart", LineChart).set_series([
            Series(f"train {event.train_loss:.4f}", epochs, [e.train_loss for e in self.history], 0),
            Series(f"val {event.val_loss:.4f}", epochs, [e.val_loss for e in self.history], 1),
        ])
        self.query_one("#epoch-progress", ProgressBar).update(total=event.total, progress=event.epoch)
        best = min(self.history, key=lambda e: e.val_loss)
        if self.patience:
            stopping = f"early stop in {event.patience_left} epochs without a better val loss"
        else:
            stopping = "no early stopping"
        self.query_one("#status-text", Label).update(
            f"epoch {event.epoch}/{event.total}  lr {event.lr:.2e}  best epoch {best.epoch} (val {best.val_loss:.4f})"
            f"{'  NEW BEST' if event.best else ''}\n{stopping}")
        elapsed = self.app.clock() - self._started_at
        per_epoch = sum(e.seconds for e in self.history) / len(self.history)
        remaining = per_epoch * (event.total - event.epoch)
        self.query_one("#time-text", Label).update(
            f"elapsed {format_duration(elapsed)}  remaining <= {format_duration(remaining)}  ({per_epoch:.2f} s/epoch)")
        self.app.set_job_status(self.JOB, f"train {event.epoch}/{event.total}")

    def job_ended(self, failed: bool) -> None:
        self.query_one("#form").display = True
        if self.run_dir and not failed:
            self.query_one("#out", Input).value = _next_run_dir(self.run_dir)
        self.refresh_bindings()

    def _log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)
        self.app.log_to_file(f"train: {text}")


def _next_run_dir(previous: str) -> str:
    """A fresh default run folder for the next training (the previous one now holds a run)."""
    from salus_engine.predictor.checkpoint import default_run_dir

    candidate = default_run_dir()
    if Path(candidate).resolve() == Path(previous).resolve():
        candidate += "-2"
    return candidate
