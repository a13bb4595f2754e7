"""`salus report`: a run's training summary and evaluation as rich tables in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.checkpoint import read_config
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.report import find_metrics, format_rate, format_value, load_metrics, markdown_report, scorer_order


def step_table(metrics: dict[str, Any]) -> Table:
    """Per-step ranking quality of every scorer: mean AUROC/AUPRC over the 16 outputs and the AUROC
    of each failure type at the alarm horizon."""
    horizon = metrics["alarm_horizon"]
    table = Table(title=f"per step, {metrics['split']} split: mean over types x horizons, and AUROC per type "
                        f"within {horizon} steps", box=box.SIMPLE_HEAD)
    table.add_column("scorer", no_wrap=True)
    for name in ("AUROC", "AUPRC", *FAILURE_TYPES):
        table.add_column(name, justify="right")
    for name in scorer_order(metrics):
        s = metrics["scorers"][name]
        table.add_row(s["short"], format_value(s["mean"]["auroc"]), format_value(s["mean"]["auprc"]),
                      *(format_value(s["per_type"][t]["auroc"]) for t in FAILURE_TYPES), style=_row_style(name))
    return table


def monitor_table(metrics: dict[str, Any]) -> Table:
    """Episode-level monitor quality of every scorer at its conformal alarm threshold."""
    horizon = metrics["alarm_horizon"]
    hz = metrics["control_hz"]
    table = Table(title=f"per episode, {metrics['split']} split: first alarm at the conformal threshold "
                        f"(alpha {metrics['conformal']['alpha']}, horizon {horizon} steps = {horizon / hz:.2f} s)",
                  box=box.SIMPLE_HEAD)
    table.add_column("scorer", no_wrap=True)
    for name in ("AUROC any", "F1", "detected", "false alarms", "lead s"):
        table.add_column(name, justify="right")
    for name in scorer_order(metrics):
        s = metrics["scorers"][name]
        ep = s["episode"]
        table.add_row(s["short"], format_value(s["any_failure"]["auroc"]), format_value(s["mean"]["f1"]), format_rate(ep["tpr"]),
                      format_rate(ep["far"]), format_value(ep["median_lead_s"], 2), style=_row_style(name))
    table.caption = ("AUROC any: any failure within the horizon, max-over-types score; F1: mean over outputs; "
                     "lead s: median seconds from first alarm to failure, detected episodes")
    return table


def _row_style(name: str) -> str | None:
    return "bold" if name == "model" else "dim" if name == "permutation_control" else None


def detail_table(metrics: dict[str, Any], scorer: str = "model") -> Table:
    """Per failure type and horizon metrics of one scorer."""
    s = metrics["scorers"][scorer]
    table = Table(title=f"{s['label']}: per failure type and horizon (steps)", box=box.SIMPLE_HEAD)
    for name in ("type", "horizon", "precision", "recall", "F1", "AUROC", "AUPRC", "support"):
        table.add_column(name, justify="left" if name == "type" else "right")
    for r in s["per_type_horizon"]:
        table.add_row(r["type"], str(r["horizon"]), format_value(r["precision"]), format_value(r["recall"]), format_value(r["f1"]),
                      format_value(r["auroc"]), format_value(r["auprc"]), str(r["support"]))
    table.caption = (f"exact match (all {len(s['per_type_horizon'])} decisions right): {format_value(s['exact_match'])}; "
                     f"ECE {format_value((s.get('reliability') or {}).get('ece'))}")
    return table


def episode_table(metrics: dict[str, Any]) -> Table:
    """Episode-level detection per failure type for the model and logistic regression."""
    table = Table(title="episodes detected before failure, per type (first alarm at the conformal threshold)",
                  box=box.SIMPLE_HEAD)
    table.add_column("outcome")
    for name in ("model", "logistic_regression"):
        table.add_column(f"{metrics['scorers'][name]['short']} detected", justify="right")
        table.add_column("lead steps", justify="right")
    for t in FAILURE_TYPES:
        cells = []
        for name in ("model", "logistic_regression"):
            entry = metrics["scorers"][name]["episode"]["per_type"][t]
            cells += [format_rate(entry), format_value(entry["median_lead_steps"], 1)]
        table.add_row(t, *cells)
    cells = []
    for name in ("model", "logistic_regression"):
        ep = metrics["scorers"][name]["episode"]
        cells += [format_rate(ep["far"]), ""]
    table.add_row("success: false alarms", *cells)
    model_ep = metrics["scorers"]["model"]["episode"]
    table.caption = (f"model: {format_rate(model_ep['tpr_actionable'])} of failures flagged at least "
                     f"{model_ep['min_lead_steps']} steps ahead; lead quartiles (s) "
                     f"{', '.join(format_value(q, 2) for q in model_ep['lead_quartiles_s'] or [])}")
    return table


def confusion_table(metrics: dict[str, Any]) -> Table:
    confusion = metrics["scorers"]["model"]["episode"]["confusion"]
    table = Table(title="episode outcomes: true (rows) vs monitor (no alarm = success, else type at first alarm)",
                  box=box.SIMPLE_HEAD)
    table.add_column("true \\ monitor")
    for label in confusion["labels"]:
        table.add_column(label, justify="right")
    for label, row in zip(confusion["labels"], confusion["matrix"]):
        table.add_row(label, *(str(v) for v in row))
    return table


def training_lines(run_dir: Path) -> list[str]:
    try:
        config = read_config(run_dir)
    except PredictorError:
        return []
    result = config.get("result") if isinstance(config.get("result"), dict) else {}
    model = config["model"]
    lines = [f"checkpoint {run_dir}: {model['kind']} model, window {model['window']}, {config.get('parameters')} "
             f"parameters, trained on {config['store']['path']}"]
    if result:
        lines.append(f"  {result['epochs_run']} epochs in {result['seconds']:.1f} s, best epoch {result['best_epoch']} "
                     f"(val loss {result['best_val_loss']:.4f})" + (", stopped early" if result.get("stopped") else ""))
    lines.append("  episodes per split: " + "; ".join(
        f"{name} {sum(c.values())} ({', '.join(f'{k} {v}' for k, v in c.items() if v)})"
        for name, c in config.get("splits", {}).items()))
    return lines


def print_report(target: str | Path, console: Console | None = None, markdown: bool = False) -> int:
    """Prints a run's training summary and evaluation tables.

    Args:
        target: a `salus train` run folder, or a `salus evaluate` --out folder.
        markdown: print the evaluation as GitHub Markdown (for a README) instead of rich tables.

    Raises:
        PredictorError: neither a run folder nor an evaluation folder.
    """
    console = console or Console()
    target = Path(target)
    if not target.exists():
        raise PredictorError(f"{target}: no such folder; give a 'salus train' --out or 'salus evaluate' --out folder")
    metrics_path = find_metrics(target)
    metrics = load_metrics(metrics_path) if metrics_path else None
    run_dir = Path(metrics["checkpoint"]) if metrics else target
    lines = training_lines(run_dir) or training_lines(target)
    if not lines and metrics is None:
        if (target / "config.json").is_file():
            read_config(target)  # a damaged config.json: its own one-line error, not "holds neither"
        raise PredictorError(f"{target} holds neither config.json nor metrics.json; give a 'salus train' --out or "
                             "'salus evaluate' --out folder")
    if markdown and metrics is not None:
        print(markdown_report(metrics))
        return 0
    for line in lines:
        console.print(line)
    if metrics is None:
        console.print(f"no evaluation found; run: salus evaluate --checkpoint {target} --data STORE --out "
                      f"{target / 'evaluation'}")
        return 0
    conformal = metrics["conformal"]
    episodes = metrics["episodes"][metrics["split"]]
    console.print(f"evaluation {metrics_path.parent}: split {metrics['split']} "
                  f"({', '.join(f'{k} {v}' for k, v in episodes.items() if v)}); alarm threshold by split conformal "
                  f"on {conformal['calibration_episodes']} successful calibration episodes: {conformal['guarantee']}"
                  + ("" if conformal["finite"] else " (too few calibration episodes: the threshold is infinite)"))
    console.print(step_table(metrics))
    console.print(monitor_table(metrics))
    console.print(detail_table(metrics))
    console.print(episode_table(metrics))
    console.print(confusion_table(metrics))
    console.print("plots: " + ", ".join(str(metrics_path.parent / p) for p in metrics.get("plots", [])))
    return 0
