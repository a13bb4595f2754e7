"""`salus report`: a run's training summary and evaluation as rich tables in the terminal.

The rows come from `salus_engine.predictor.report` (shared with `--markdown` and the console):
comparison of every scorer (episode-level first), the model per failure type, the conformal re-split
check, the model's alpha curve, the fresh store and the ablation (when present), then the step-level
tables and the episode confusion matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.cells import cell_len
from rich.table import Table

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.checkpoint import read_config
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.report import (
    ABLATION_COLUMNS,
    ABLATION_NOTE,
    ALPHA_COLUMNS,
    COMPARISON_SHORT,
    PER_TYPE_COLUMNS,
    ablation_rows,
    alpha_rows,
    comparison_cells,
    comparison_note,
    find_metrics,
    format_note,
    format_value,
    fresh_heading,
    load_metrics,
    markdown_report,
    per_type_rows,
    resplit_columns,
    resplit_note,
    resplit_rows,
    scorer_groups,
    scorer_kind,
    scorer_order,
    store_scorers,
    threshold_rule,
)


def _table(title: str, columns: tuple[str, ...] | list[str], rows: list[list[str]], caption: str | None = None,
           styles: list[str | None] | None = None, sections: set[int] = frozenset(), text_columns: int = 1) -> Table:
    """A table whose value columns never wrap (their headers are broken into lines as wide as their
    cells), the first `text_columns` columns wrapping instead, so that numbers stay whole at 80 columns."""
    table = Table(title=title, box=box.SIMPLE_HEAD, caption=caption, caption_justify="left", pad_edge=False,
                  show_edge=False, padding=(0, 0, 0, 1))  # the box's blank column rule plus one space
    for i, name in enumerate(columns):
        if i < text_columns:
            table.add_column(name, overflow="fold")
        else:
            width = max([cell_len(r[i]) for r in rows] + [1])
            table.add_column(_header_lines(name, width), justify="right", no_wrap=True)
    for j, row in enumerate(rows):
        if j in sections:
            table.add_section()
        table.add_row(*row, style=styles[j] if styles else None)
    return table


def _header_lines(name: str, width: int) -> str:
    """`name` broken into lines no wider than `width` where its words allow."""
    lines: list[str] = []
    for word in name.split():
        if lines and cell_len(lines[-1]) + 1 + cell_len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _row_style(name: str, kind: str) -> str | None:
    return "bold" if name == "model" else "dim" if kind == "control" else None


def comparison_table(metrics: dict[str, Any], scorers: dict[str, dict[str, Any]] | None = None,
                     title: str | None = None) -> Table:
    """Every scorer, grouped model / baselines / controls: episode-level AUROC and PR-AUC, detection,
    false alarms and median lead at the conformal threshold, step-level mean AUROC."""
    scorers = metrics["scorers"] if scorers is None else scorers
    horizon = metrics["alarm_horizon"]
    rows, styles, sections = [], [], set()
    for _, names in scorer_groups(scorers):
        sections.add(len(rows))
        for name in names:
            s = scorers[name]
            rows.append([s.get("short", name), *comparison_cells(s, compact=True)])
            styles.append(_row_style(name, scorer_kind(name, s)))
    sections.discard(0)
    return _table(title or (f"{metrics['split']} split, per episode: alarm at the conformal threshold (alpha "
                            f"{metrics['conformal']['alpha']}, failure within {horizon} steps = "
                            f"{horizon / metrics['control_hz']:.2f} s)"),
                  ("scorer", *COMPARISON_SHORT), rows, "ep: per episode; " + comparison_note(scorers, compact=True),
                  styles, sections)


def per_type_table(metrics: dict[str, Any], scorer: str = "model", store: str = "test") -> Table:
    """Episode-level detection and median lead per failure type of one scorer, with 95% CIs, on the
    evaluated split or (`store` "fresh") on the fresh store."""
    s = store_scorers(metrics, store)[scorer]
    where = f"{metrics['split']} split" if store == "test" else "fresh store"
    return _table(f"{s.get('short', scorer)} per failure type, {where}: detection (Clopper-Pearson "
                  "95% CI) and median lead (bootstrap 95% CI)", PER_TYPE_COLUMNS, per_type_rows(metrics, scorer, store))


def conformal_table(metrics: dict[str, Any], store: str = "test") -> Table:
    """The conformal re-split check of the model, the trained baselines and the controls, with the
    evaluated split's successes or (`store` "fresh") the fresh store's."""
    named = resplit_rows(metrics, store)
    conformal = metrics["conformal"]
    scorers = store_scorers(metrics, store)
    columns, rows = list(resplit_columns(metrics, store)), [cells for _, cells in named]
    # the number of re-splits and the calibration / test sizes are the same on every row: said once in
    # the title, so that the table fits 80 columns
    shared = {(cells[2], cells[3]) for cells in rows}
    sizes = ""
    if len(shared) == 1 and "–" not in next(iter(shared)):  # "–": metrics written before the re-splits
        (count, pair), = shared
        sizes = f"; {count} re-splits, {columns[3]} {pair}"
        columns, rows = columns[:2] + columns[4:], [cells[:2] + cells[4:] for cells in rows]
    return _table(f"conformal check{'' if store == 'test' else ', fresh store'}: false-alarm rate over re-splits "
                  f"(alpha {conformal['alpha']}"
                  + ("" if conformal.get("delta") is None else f", delta {conformal['delta']}") + f"{sizes})",
                  columns, rows, resplit_note(metrics, store),
                  [_row_style(name, scorer_kind(name, scorers[name])) for name, _ in named])


def alpha_table(metrics: dict[str, Any], scorer: str = "model") -> Table:
    """The detection vs lead-time curve of one scorer over the conformal level alpha."""
    return _table(f"{metrics['scorers'][scorer].get('short', scorer)}: detection vs lead time over alpha "
                  f"({metrics['split']} split)", ALPHA_COLUMNS,
                  alpha_rows(metrics, scorer) or [["–"] * len(ALPHA_COLUMNS)])


def fresh_table(metrics: dict[str, Any]) -> Table | None:
    """The comparison on the fresh store; None when `salus evaluate` ran without --fresh."""
    heading = fresh_heading(metrics)
    if heading is None:
        return None
    return comparison_table(metrics, metrics["fresh"]["scorers"], title=f"fresh store {heading}")


def ablation_tables(metrics: dict[str, Any]) -> list[Table]:
    """The model retrained per input family, on the test split and on the fresh store (when scored
    there); [] when `salus evaluate` ran without --ablation."""
    tables = []
    for store, where in (("test", "test split"), ("fresh", "fresh store")):
        rows = ablation_rows(metrics, store)
        if rows:
            tables.append(_table(f"ablation, {where}", ABLATION_COLUMNS, rows, ABLATION_NOTE,
                                 ["bold"] + [None] * (len(rows) - 1), text_columns=2))
    return tables


def step_table(metrics: dict[str, Any]) -> Table:
    """Per-step ranking quality of every scorer: mean AUROC/AUPRC over the 16 outputs and the AUROC
    of each failure type at the alarm horizon."""
    horizon = metrics["alarm_horizon"]
    names = scorer_order(metrics)
    scorers = metrics["scorers"]
    rows = [[scorers[n].get("short", n), *(format_value(scorers[n]["mean"][k]) for k in ("auroc", "auprc", "f1")),
             *(format_value(scorers[n]["per_type"][t]["auroc"]) for t in FAILURE_TYPES)] for n in names]
    return _table(f"per step, {metrics['split']} split: mean over types x horizons, and AUROC per type within "
                  f"{horizon} steps", ("scorer", "AUROC", "AUPRC", "F1", *FAILURE_TYPES), rows,
                  styles=[_row_style(n, scorer_kind(n, scorers[n])) for n in names])


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
    lines = [f"checkpoint {run_dir}: {model['kind']} model, window {model.get('window', 1)}, "
             f"{config.get('parameters')} parameters, trained on {config['store']['path']}"]
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
        target: a `salus train` run folder, a `salus evaluate` --out folder, or a `salus trial` --out
            folder (its paired table).
        markdown: print the evaluation as GitHub Markdown (for a README) instead of rich tables.

    Raises:
        PredictorError: neither a run folder nor an evaluation folder.
        TrialError: a damaged trial.json.
    """
    console = console or Console()
    target = Path(target)
    if not target.exists():
        raise PredictorError(f"{target}: no such folder; give a 'salus train' --out or 'salus evaluate' --out folder")
    if (target / "trial.json").is_file():
        from salus_engine.cli.trial import print_trial, trial_markdown
        from salus_engine.monitor.trial import read_trial

        table = read_trial(target)
        if markdown:
            print(trial_markdown(table))
        else:
            print_trial(table, console)
        return 0
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
                  f"({', '.join(f'{k} {v}' for k, v in episodes.items() if v)}); alarm threshold by "
                  f"{threshold_rule(conformal)} on {conformal['calibration_episodes']} successful calibration episodes: "
                  f"{conformal['guarantee']}"
                  + ("" if conformal["finite"] else " (too few calibration episodes: the threshold is infinite)"))
    note = format_note(metrics)
    if note:
        console.print(note, style="yellow")
    fresh = fresh_table(metrics)
    fresh_tables = [] if fresh is None else [fresh, per_type_table(metrics, store="fresh"),
                                             conformal_table(metrics, "fresh")]
    tables = [comparison_table(metrics), per_type_table(metrics), conformal_table(metrics), alpha_table(metrics),
              *fresh_tables, *ablation_tables(metrics), step_table(metrics),
              detail_table(metrics), confusion_table(metrics)]
    for table in tables:
        console.print()
        console.print(table)
    console.print("plots: " + ", ".join(str(metrics_path.parent / p) for p in metrics.get("plots", [])))
    return 0
