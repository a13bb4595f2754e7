"""Evaluation screen: choose a checkpoint and a split, run `salus evaluate` from the keyboard, then
read what `salus report` prints, in tabs:
- summary: the model's episode-level figures (ranking AUROC / PR-AUC, detection rate, false-alarm
  rate, lead time, the conformal re-split check), the confusion matrix, every scorer grouped model /
  baselines / controls, and the model per failure type with 95% CIs;
- per class: step-level metrics per failure type of every scorer;
- ROC: any-failure ROC curves at the alarm horizon;
- alpha: detection rate against median lead time as the conformal level alpha varies (model and the
  main baselines), and the model's alpha table;
- checks: the conformal re-split check of every trained scorer, the fresh store (its comparison, the
  model per failure type and its own re-split check) and the ablation (when `salus evaluate` ran with
  --fresh / --ablation).

Everything shown comes from the evaluation's metrics.json (`salus_engine.predictor.evaluation`);
this screen computes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import (
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    ProgressBar,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
    Tabs,
)

from salus_engine import FAILURE_TYPES
from salus_engine.config import ConfigError, EvaluateConfig, build_settings, default_of
from salus_engine.events import EvaluationFinished, EvaluationStarted, JobFailed, JobFinished, LogLine, ProgressUpdate
from salus_engine.predictor import SPLIT_NAMES
from salus_engine.predictor.report import (
    ALPHA_COLUMNS,
    COMPARISON_SHORT,
    PER_TYPE_COLUMNS as EPISODE_TYPE_COLUMNS,
    ablation_rows,
    alpha_rows,
    comparison_cells,
    episode_ranking,
    format_note,
    format_rate,
    format_value,
    fresh_heading,
    per_type_rows,
    resplit_columns,
    resplit_note,
    resplit_rows,
    scorer_kind,
    scorer_order,
    store_scorers,
    threshold_rule,
)
from salus_tui.messages import EngineEvent
from salus_tui.screens.base import JobScreen, training_threads
from salus_tui.widgets.form_field import FormField
from salus_tui.widgets.line_chart import LineChart, Series
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.sized_table import fill_sized_table

TABS = ("summary", "classes", "roc-pane", "alpha-pane", "checks")
"""Tab pane ids in the order `t` cycles through them."""
SCORER_COLUMNS = ("scorer", *COMPARISON_SHORT)
PER_TYPE_COLUMNS = ("scorer", "type", "precision", "recall", "F1", "AUROC", "AUPRC", "support")
ABLATION_TABLE_COLUMNS = ("variant", "store", "inputs", "ep AUROC", "ep PR-AUC", "detected", "false alarms",
                          "lead steps")


def default_evaluation_dir(checkpoint: str, split: str) -> str:
    """`RUN/evaluation` for the test split, `RUN/evaluation-<split>` for the others."""
    if not checkpoint:
        return ""
    return str(Path(checkpoint) / ("evaluation" if split == "test" else f"evaluation-{split}"))


class EvaluateScreen(JobScreen):
    """Runs `salus_engine.predictor.evaluation.run_evaluation` and shows its metrics.json."""

    MODE = "evaluate"
    JOB = "evaluate"
    STOP_STATUS = ("#status-text", "stopping after the current scorer; nothing is written")
    AUTO_FOCUS = "#scorers"
    BINDINGS = [
        Binding("s", "start", "evaluate", id="evaluate-start"),
        Binding("x", "stop", "stop", id="evaluate-stop"),
        Binding("l", "load", "load metrics.json", id="evaluate-load"),
        Binding("t", "next_tab", "next tab", id="evaluate-tab"),
    ]
    DEFAULT_CSS = """
    EvaluateScreen .form { grid-size: 2; grid-rows: 1; grid-gutter: 0 2; height: auto; padding: 0 1; }
    EvaluateScreen #status-box { height: 2; padding: 0 1; background: $panel; }
    EvaluateScreen #status-box ProgressBar Bar { width: 1fr; }
    EvaluateScreen TabbedContent { height: 1fr; }
    EvaluateScreen TabPane { padding: 0; }
    EvaluateScreen #summary-top { height: auto; }
    EvaluateScreen #episode-summary { width: 1fr; min-width: 38; height: auto; padding: 0 1; }
    EvaluateScreen #confusion { width: auto; height: auto; padding: 0 1; }
    EvaluateScreen DataTable { height: auto; max-height: 100%; }
    EvaluateScreen #roc { height: 1fr; }
    EvaluateScreen #alpha-chart { height: 1fr; min-height: 8; }
    EvaluateScreen #alpha-curve { max-height: 50%; }
    EvaluateScreen .section { padding: 0 1; margin-top: 1; text-style: bold; }
    EvaluateScreen .note { padding: 0 1; color: $text-muted; }
    EvaluateScreen #log { height: 4; border: round $primary; display: none; }
    EvaluateScreen.-running #log { display: block; }
    """

    def __init__(self, checkpoint: str = "", data: str = "") -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.data = data
        self.metrics: dict[str, Any] | None = None
        self.metrics_path: Path | None = None

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        with Grid(classes="form", id="form"):
            yield FormField("checkpoint", Input(self.checkpoint, id="checkpoint", compact=True,
                                                tooltip="run folder of a training"))
            yield FormField("store", Input(self.data, id="data", compact=True,
                                           tooltip="the store it was trained on (empty: the checkpoint's)"))
            yield FormField("split", Select([(name, name) for name in SPLIT_NAMES], value="test", allow_blank=False,
                                            id="split", compact=True),
                            Checkbox("PNG plots", True, id="plots", tooltip="also write the PNG plots"))
            yield FormField("out", Input(default_evaluation_dir(self.checkpoint, "test"), id="out", compact=True,
                                         tooltip="folder for metrics.json and the PNG plots"))
            yield FormField("fresh", Input("", id="fresh-store", compact=True, placeholder="none",
                                           tooltip="a store from other seeds, scored whole with the same "
                                                   "thresholds (salus evaluate --fresh)"),
                            Checkbox("ablation", False, id="run-ablation",
                                     tooltip="also retrain the model without / with only each input family"))
            yield FormField("alpha", Input(f"{default_of(EvaluateConfig, 'alpha'):g}", id="alpha", type="number",
                                           compact=True, tooltip="conformal level: the false-alarm rate allowed"),
                            Label("delta"),
                            Input("", id="delta", type="number", compact=True, placeholder="split conformal",
                                  tooltip="empty: split conformal (the rate is at most alpha on average); a "
                                          "probability: the rate exceeds alpha for at most this share of "
                                          "calibration sets (salus evaluate --delta)"))
            yield FormField("workers", Input(str(default_of(EvaluateConfig, "workers")), id="workers", type="integer",
                                             compact=True, tooltip="networks trained at a time (baselines, controls, "
                                             "ablation rows) as Ray tasks; 1: one after another in the console's "
                                             "process (salus evaluate --workers)"))
        with Vertical(id="status-box"):
            yield ProgressBar(total=1, show_eta=False, id="scorer-progress")
            yield Label("idle: s evaluates the checkpoint on the split, l loads an existing metrics.json", id="status-text")
        yield RichLog(id="log", max_lines=300, markup=False, wrap=True)
        with TabbedContent(id="tabs", initial="summary"):
            with TabPane("summary", id="summary"):
                with VerticalScroll(id="summary-scroll"):
                    with Horizontal(id="summary-top"):
                        yield Static("no evaluation loaded", id="episode-summary")
                        yield Static("", id="confusion")
                    yield DataTable(id="scorers", cursor_type="row", zebra_stripes=True)
                    yield Label("model per failure type (episodes; 95% CIs)", classes="section")
                    yield DataTable(id="episode-types", cursor_type="row", zebra_stripes=True)
            with TabPane("per class", id="classes"):
                yield DataTable(id="per-class", cursor_type="row", zebra_stripes=True)
            with TabPane("ROC", id="roc-pane"):
                yield LineChart(id="roc", x_label="false-positive rate", x_range=(0.0, 1.0), y_range=(0.0, 1.0),
                                empty_text="ROC curves appear after an evaluation")
            with TabPane("alpha", id="alpha-pane"):
                with Vertical():
                    yield LineChart(id="alpha-chart", x_label="median lead time (steps); y: detection rate",
                                    y_range=(0.0, 1.0), empty_text="detection vs lead time over alpha appears "
                                                                   "after an evaluation")
                    yield DataTable(id="alpha-curve", cursor_type="row", zebra_stripes=True)
            with TabPane("checks", id="checks"):
                with VerticalScroll():
                    yield Label("conformal check: false alarms over re-splits", classes="section")
                    yield Static("", id="resplit-note", classes="note")
                    yield DataTable(id="resplits", cursor_type="row", zebra_stripes=True)
                    yield Label("fresh store", classes="section")
                    yield Static("", id="fresh-note", classes="note")
                    yield DataTable(id="fresh", cursor_type="row", zebra_stripes=True)
                    yield Label("fresh store: the model per failure type", id="fresh-types-label", classes="section")
                    yield DataTable(id="fresh-types", cursor_type="row", zebra_stripes=True)
                    yield Label("fresh store: conformal check (the calibration successes re-split with the fresh "
                                "store's)", id="fresh-resplits-label", classes="section")
                    yield DataTable(id="fresh-resplits", cursor_type="row", zebra_stripes=True)
                    yield Label("ablation", classes="section")
                    yield Static("", id="ablation-note", classes="note")
                    yield DataTable(id="ablation", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        for table, columns in self._table_columns(None).items():
            fill_sized_table(self.query_one(table, DataTable), columns, [])
        out = self.query_one("#out", Input).value.strip()
        if out and (Path(out) / "metrics.json").is_file():
            self.load_metrics(Path(out) / "metrics.json", quiet=True)

    def main_panel(self):
        return self.query_one("#scorers")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "load":
            return not self.running or None
        return super().check_action(action, parameters)

    def suggest(self, checkpoint: str | None = None, store: str | None = None) -> None:
        """Fills the form (after a training) unless a job runs."""
        if self.running:
            return
        split = str(self.query_one("#split", Select).value)
        if checkpoint:
            self.query_one("#checkpoint", Input).value = checkpoint
            self.query_one("#out", Input).value = default_evaluation_dir(checkpoint, split)
        if store:
            self.query_one("#data", Input).value = store

    @on(Select.Changed, "#split")
    def _split_changed(self, event: Select.Changed) -> None:
        checkpoint = self.query_one("#checkpoint", Input).value.strip()
        out = self.query_one("#out", Input)
        if out.value.strip() in ("", *(default_evaluation_dir(checkpoint, s) for s in SPLIT_NAMES)):
            out.value = default_evaluation_dir(checkpoint, str(event.value))

    # actions ------------------------------------------------------------------------------------
    def read_form(self):
        """The form as an `EvaluateConfig`; None (with a notification) when a field is missing."""
        checkpoint = self.query_one("#checkpoint", Input).value.strip()
        data = self.query_one("#data", Input).value.strip()
        split = str(self.query_one("#split", Select).value)
        out = self.query_one("#out", Input).value.strip() or default_evaluation_dir(checkpoint, split)
        if not checkpoint:
            self.notify("give a checkpoint: the out folder of a training", severity="error")
            return None
        if not data:
            from salus_engine.predictor import PredictorError
            from salus_engine.predictor.checkpoint import read_config

            try:
                data = read_config(checkpoint)["store"]["path"]
            except (PredictorError, KeyError, TypeError) as err:
                self.app.show_error(str(err).splitlines()[0], title="cannot evaluate")
                return None
            self.query_one("#data", Input).value = data
        numbers = {}
        for name in ("alpha", "delta"):
            text = self.query_one(f"#{name}", Input).value.strip()
            try:
                numbers[name] = float(text) if text else None
            except ValueError:
                self.notify(f"{name} {text!r} is not a number; give a probability such as 0.1", severity="error")
                return None
        text = self.query_one("#workers", Input).value.strip()
        try:
            workers = int(text) if text else None
        except ValueError:
            self.notify(f"workers {text!r} is not a whole number; give 1 or more", severity="error")
            return None
        try:
            return build_settings(EvaluateConfig, checkpoint=checkpoint, data=data, out=out, split=split,
                                  plots=self.query_one("#plots", Checkbox).value, workers=workers,
                                  threads=1 if workers and workers > 1 else training_threads(),
                                  fresh=self.query_one("#fresh-store", Input).value.strip() or None,
                                  ablation=self.query_one("#run-ablation", Checkbox).value, **numbers)
        except ConfigError as err:
            self.notify(str(err), severity="error")
            return None

    def action_start(self) -> None:
        if self.running:
            self.notify("an evaluation is already running", severity="warning")
            return
        config = self.read_form()
        if config is None:
            return
        self.query_one("#status-text", Label).update(f"loading {config.checkpoint} and {config.data} ...")
        self.query_one("#scorer-progress", ProgressBar).update(total=1, progress=0)
        self.query_one("#log", RichLog).clear()
        self.add_class("-running")
        self.query_one("#form").display = False
        self._log(f"evaluate {config.checkpoint} on the {config.split} split of {config.data} -> {config.out}")

        def job(sink, stop) -> None:
            from salus_engine.predictor.evaluation import run_evaluation

            run_evaluation(config, sink=sink, stop=stop)

        self.start_job(job)

    def action_load(self) -> None:
        from salus_engine.predictor.report import find_metrics

        target = self.query_one("#out", Input).value.strip() or self.query_one("#checkpoint", Input).value.strip()
        path = find_metrics(target) if target else None
        if path is None:
            self.notify(f"no metrics.json in {target or 'the out folder'}; s runs an evaluation", severity="warning")
            return
        self.load_metrics(path)

    def action_next_tab(self) -> None:
        """Shows the next tab and focuses its first table (else the tab bar): a focused widget left in
        a hidden pane would be refocused on the next one of its pane, which switches back to it."""
        tabs = self.query_one("#tabs", TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)] if tabs.active in TABS else TABS[0]
        pane = tabs.get_pane(tabs.active)
        target = next((w for w in pane.query("*") if w.focusable), None)
        (target or tabs.query_one(Tabs)).focus()

    # engine events ------------------------------------------------------------------------------
    @on(EngineEvent)
    def _on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        if isinstance(event, EvaluationStarted):
            self.query_one("#scorer-progress", ProgressBar).update(total=event.total, progress=0)
            self.query_one("#status-text", Label).update(f"scoring the {event.split} split ...")
            self.app.set_job_status(self.JOB, f"evaluate 0/{event.total}")
        elif isinstance(event, ProgressUpdate):
            self.query_one("#scorer-progress", ProgressBar).update(total=event.total, progress=event.done)
            self.query_one("#status-text", Label).update(f"{event.done}/{event.total}: {event.message}")
            self.app.set_job_status(self.JOB, f"evaluate {event.done}/{event.total}")
            self._log(event.message)
        elif isinstance(event, LogLine):
            self._log(f"[{event.level}] {event.text}")
        elif isinstance(event, EvaluationFinished):
            self.load_metrics(Path(event.out) / "metrics.json")
            self.app.suggest(checkpoint=self.query_one("#checkpoint", Input).value.strip())
        elif isinstance(event, JobFinished):
            self.query_one("#status-text", Label).update("stopped on request; nothing written")
        elif isinstance(event, JobFailed):
            self.query_one("#status-text", Label).update("failed: see the log")
            self._log(f"error: {event.message}")
            self.app.show_error(event.message, title="evaluation failed")

    def job_ended(self, failed: bool) -> None:
        self.remove_class("-running")
        self.query_one("#form").display = True
        self.refresh_bindings()

    def _log(self, text: str) -> None:
        self.query_one("#log", RichLog).write(text)
        self.app.log_to_file(f"evaluate: {text}")

    # showing metrics.json -----------------------------------------------------------------------
    def load_metrics(self, path: Path, quiet: bool = False) -> None:
        """Reads an evaluation's metrics.json and fills the tabs."""
        from salus_engine.predictor import PredictorError
        from salus_engine.predictor.report import load_metrics

        try:
            metrics = load_metrics(path)
        except PredictorError as err:
            if not quiet:
                self.app.show_error(str(err), title="cannot load the evaluation")
            return
        self.metrics, self.metrics_path = metrics, path
        self.show_metrics(metrics)
        episodes = metrics["episodes"][metrics["split"]]
        self.query_one("#status-text", Label).update(
            f"{path.parent}: {metrics['split']} split, {sum(episodes.values())} episodes; t switches tabs")

    @staticmethod
    def _table_columns(metrics: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
        """Columns of every table of the screen (the re-split table names alpha)."""
        alpha = metrics["conformal"]["alpha"] if metrics else 0.1
        split = metrics["split"] if metrics else "test"
        resplits = resplit_columns({"conformal": {"alpha": alpha}, "split": split})
        fresh_resplits = resplit_columns({"conformal": {"alpha": alpha}, "split": split}, "fresh")
        return {"#scorers": SCORER_COLUMNS, "#episode-types": EPISODE_TYPE_COLUMNS, "#per-class": PER_TYPE_COLUMNS,
                "#alpha-curve": ALPHA_COLUMNS, "#resplits": resplits, "#fresh": SCORER_COLUMNS,
                "#fresh-types": EPISODE_TYPE_COLUMNS, "#fresh-resplits": fresh_resplits,
                "#ablation": ABLATION_TABLE_COLUMNS}

    def show_metrics(self, metrics: dict[str, Any]) -> None:
        model = metrics["scorers"]["model"]
        episode = model["episode"]
        conformal = metrics["conformal"]
        hz = metrics["control_hz"]
        horizon = metrics["alarm_horizon"]
        ranking = episode_ranking(model)
        resplits = episode.get("resplits") or {}
        summary = Text()
        summary.append(f"{model['label']}, {metrics['split']} split\n", style="bold")
        note = format_note(metrics)
        if note:
            summary.append(f"{note}\n", style="italic")
        failed = (f" ({ranking['failed']} of {ranking['episodes']} failed)" if ranking.get("episodes") else "")
        summary.append(f"episode AUROC    {format_value(ranking.get('auroc'))}  PR-AUC "
                       f"{format_value(ranking.get('auprc'))}{failed}\n")
        summary.append(f"detection rate   {format_rate(episode['tpr'])}\n")
        summary.append(f"false-alarm rate {format_rate(episode['far'])}\n")
        lead_steps = episode["median_lead_steps"]
        summary.append("median lead time " + ("–" if lead_steps is None else
                                                f"{lead_steps:.0f} steps = {episode['median_lead_s']:.2f} s") + "\n")
        summary.append(f"actionable (>= {episode['min_lead_steps']} steps) {format_rate(episode['tpr_actionable'])}\n")
        summary.append(f"re-splits ({resplits.get('resplits', '–')}): mean false alarms "
                       f"{format_value(resplits.get('mean'), 2)}, share > alpha+0.05 "
                       f"{format_value(resplits.get('share_above_alpha_plus_0.05'), 2)}, > 0.15 "
                       f"{format_value(resplits.get('share_above_0.15'), 2)}\n")
        rule = (metrics.get("model") or {}).get("alarm_score", "max")  # metrics written before the rule: max
        summary.append(f"alarm: {rule} over types of P(fail within {horizon} steps = {horizon / hz:.2f} s) "
                       f">= {format_value(episode['threshold'])}\n", style="dim")
        summary.append(f"threshold by {threshold_rule(conformal)} on {conformal['calibration_episodes']} successful "
                       f"episodes: {conformal['guarantee']}; ep: per episode (running max); model - this: the "
                       "model's ep AUROC minus the scorer's, * where its paired-bootstrap 95% CI excludes 0",
                       style="dim")
        self.query_one("#episode-summary", Static).update(summary)
        self.query_one("#confusion", Static).update(self._confusion_table(episode.get("confusion")))

        columns = self._table_columns(metrics)
        scorer_rows, scorer_keys, type_rows, type_keys = [], [], [], []
        for name in scorer_order(metrics):
            s = metrics["scorers"][name]
            label = self._scorer_label(name, s)
            scorer_rows.append((label, *comparison_cells(s, compact=True)))
            scorer_keys.append(name)
            for t in FAILURE_TYPES:
                r = s["per_type"][t]
                type_rows.append((label, t, format_value(r["precision"]), format_value(r["recall"]), format_value(r["f1"]),
                                  format_value(r["auroc"]), format_value(r["auprc"]), str(r["support"])))
                type_keys.append(f"{name}/{t}")
        fill_sized_table(self.query_one("#scorers", DataTable), SCORER_COLUMNS, scorer_rows, scorer_keys)
        fill_sized_table(self.query_one("#episode-types", DataTable), EPISODE_TYPE_COLUMNS, per_type_rows(metrics))
        fill_sized_table(self.query_one("#per-class", DataTable), PER_TYPE_COLUMNS, type_rows, type_keys)
        self.query_one("#roc", LineChart).set_series(self._roc_series(metrics))
        alpha_chart = self.query_one("#alpha-chart", LineChart)
        alpha_chart.empty_text = ("no detection at any alpha" if episode.get("alpha_curve") else
                                  "no alpha curve in this metrics.json (format 1): run the evaluation again")
        alpha_chart.set_series(self._alpha_series(metrics))
        fill_sized_table(self.query_one("#alpha-curve", DataTable), ALPHA_COLUMNS, alpha_rows(metrics))
        self._show_checks(metrics, columns)
        # the headline figures first: focusing the scorer table may have scrolled them away
        self.call_after_refresh(self.query_one("#summary-scroll", VerticalScroll).scroll_home, animate=False)

    def _show_checks(self, metrics: dict[str, Any], columns: dict[str, tuple[str, ...]]) -> None:
        """The re-split check, the fresh store and the ablation (notes say when one was not run)."""
        self.query_one("#resplit-note", Static).update(resplit_note(metrics))
        self._fill_resplits("#resplits", metrics, "test", columns)
        heading = fresh_heading(metrics)
        fresh_rows, fresh_keys, fresh_types = [], [], []
        if heading is not None:
            scorers = store_scorers(metrics, "fresh")
            for name in scorer_order(metrics, scorers):
                fresh_rows.append((self._scorer_label(name, scorers[name]),
                                   *comparison_cells(scorers[name], compact=True)))
                fresh_keys.append(name)
            fresh_types = per_type_rows(metrics, store="fresh")
        self.query_one("#fresh-note", Static).update(
            f"fresh store {heading}" if heading
            else "not run: evaluate with --fresh STORE (a store from unseen seeds) to fill this table")
        fill_sized_table(self.query_one("#fresh", DataTable), SCORER_COLUMNS, fresh_rows, fresh_keys)
        fill_sized_table(self.query_one("#fresh-types", DataTable), columns["#fresh-types"], fresh_types)
        self._fill_resplits("#fresh-resplits", metrics, "fresh" if heading is not None else None, columns)
        for widget in ("#fresh", "#fresh-types-label", "#fresh-types", "#fresh-resplits-label", "#fresh-resplits"):
            self.query_one(widget).display = bool(fresh_rows)
        ablation = []
        for store in ("test", "fresh"):
            for variant, inputs, *scores in ablation_rows(metrics, store):
                ablation.append((Text(variant, style="bold" if variant == "full" else ""), store, inputs, *scores))
        self.query_one("#ablation-note", Static).update(
            "the model's network retrained without / with only each input family (same settings and splits)"
            if ablation else "not run: evaluate with --ablation to retrain the model per input family")
        fill_sized_table(self.query_one("#ablation", DataTable), ABLATION_TABLE_COLUMNS, ablation)
        self.query_one("#ablation", DataTable).display = bool(ablation)

    def _fill_resplits(self, table: str, metrics: dict[str, Any], store: str | None,
                       columns: dict[str, tuple[str, ...]]) -> None:
        """One re-split table: `resplit_rows` of `store` ("test" or "fresh"; None: empty) keyed by scorer."""
        named = [] if store is None else resplit_rows(metrics, store)
        scorers = {} if store is None else store_scorers(metrics, store)
        fill_sized_table(self.query_one(table, DataTable), columns[table],
                         [(self._scorer_label(n, scorers[n]), *cells[1:]) for n, cells in named],
                         [n for n, _ in named])

    @staticmethod
    def _scorer_label(name: str, entry: dict[str, Any]) -> Text:
        kind = scorer_kind(name, entry)
        return Text(entry.get("short", name), style="bold" if name == "model" else "dim" if kind == "control" else "")

    @staticmethod
    def _alpha_series(metrics: dict[str, Any]) -> list[Series]:
        """Detection rate (y) against median lead time in steps (x), one point per alpha with a
        detection, for the model, logistic regression, the best other baseline and the best
        thresholded signal column (by episode AUROC), and the time-only control; the model on top."""
        scorers = metrics["scorers"]

        def best(names: list[str]) -> str | None:
            return max(names, key=lambda n: episode_ranking(scorers[n]).get("auroc") or 0.0) if names else None

        baselines = [n for n in scorers if scorer_kind(n, scorers[n]) == "baseline" and n != "logistic_regression"]
        chosen = ["model", "logistic_regression", best([n for n in baselines if not n.startswith("signal:")]),
                  best([n for n in baselines if n.startswith("signal:")]), "time_only"]
        names = list(dict.fromkeys(n for n in chosen if n in scorers))
        series = []
        for style, name in reversed(list(enumerate(names))):
            curve = [p for p in (scorers[name].get("episode") or {}).get("alpha_curve") or []
                     if p.get("median_lead_steps") is not None]
            if curve:
                series.append(Series(scorers[name].get("short", name), [p["median_lead_steps"] for p in curve],
                                     [p["tpr"] for p in curve], style))
        return series

    @staticmethod
    def _confusion_table(confusion: dict[str, Any] | None) -> Table | str:
        if not confusion:
            return ""
        table = Table(title="episodes: true (rows) vs monitor", title_justify="left", box=None, padding=(0, 1),
                      show_edge=False)
        table.add_column("")
        for label in confusion["labels"]:
            table.add_column(label[:4], justify="right")
        for label, row in zip(confusion["labels"], confusion["matrix"]):
            table.add_row(label, *(Text(str(v), style="bold" if v and label == col else "")
                                   for v, col in zip(row, confusion["labels"])))
        return table

    @staticmethod
    def _roc_series(metrics: dict[str, Any]) -> list[Series]:
        """Any-failure ROC at the alarm horizon: model, logistic regression, the best single signal,
        the permutation control, and the chance diagonal."""
        scorers = metrics["scorers"]
        signals = [n for n in scorers if n.startswith("signal:")]
        best = max(signals, key=lambda n: scorers[n]["any_failure"]["auroc"] or 0.0) if signals else None
        series = [Series("", [0.0, 1.0], [0.0, 1.0], -1)]
        for style, name in ((3, "permutation_control"), (2, best), (1, "logistic_regression"), (0, "model")):
            if name is None or name not in scorers:
                continue
            roc = scorers[name]["any_failure"].get("roc")
            if roc:
                auroc = scorers[name]["any_failure"]["auroc"]
                series.append(Series(f"{scorers[name]['short']} {format_value(auroc, 2)}", roc["fpr"], roc["tpr"], style))
        return series
