"""Reading an evaluation back: metrics.json, number formatting shared by the front ends, and the
Markdown section for a README. Computes nothing new. The rich tables of `salus report` are in
`salus_engine.cli.report`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.errors import PredictorError


def find_metrics(target: str | Path) -> Path | None:
    """metrics.json of an evaluation folder, or of a run folder's `evaluation/` subfolder."""
    target = Path(target)
    for candidate in (target / "metrics.json", target / "evaluation" / "metrics.json", target):
        if candidate.is_file() and candidate.name == "metrics.json":
            return candidate
    return None


METRICS_ENTRIES: dict[str, type | tuple[type, ...]] = {
    "split": str, "store": str, "checkpoint": str, "alarm_horizon": int, "control_hz": (int, float),
    "horizons": list, "conformal": dict, "episodes": dict, "scorers": dict,
}
"""The top-level entries of metrics.json that the report reads, and their JSON types."""


def load_metrics(path: Path) -> dict[str, Any]:
    """Reads an evaluation's metrics.json and checks its top-level structure.

    Raises:
        PredictorError: unreadable, not a SALUS evaluation, or an entry the report needs is missing
            or of the wrong type (a damaged file, or one from another SALUS version).
    """
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PredictorError(f"{path} is unreadable ({err}); run 'salus evaluate' again") from None
    if not isinstance(metrics, dict) or metrics.get("format") != "salus-predictor-metrics":
        raise PredictorError(f"{path} is not a SALUS evaluation; give the --out folder of 'salus evaluate'")
    for name, kind in METRICS_ENTRIES.items():
        if not isinstance(metrics.get(name), kind) or isinstance(metrics.get(name), bool):
            raise PredictorError(f"{path} is damaged (entry {name!r} missing or not a {_json_type(kind)}); run "
                                 "'salus evaluate' again")
    scorers = metrics["scorers"]
    if not all(isinstance(scorers.get(n), dict) for n in ("model", "logistic_regression")) or not all(
            isinstance(v, dict) for v in scorers.values()):
        raise PredictorError(f"{path} is damaged (the model's or a baseline's scores are missing); run "
                             "'salus evaluate' again")
    if not isinstance(metrics["episodes"].get(metrics["split"]), dict):
        raise PredictorError(f"{path} is damaged (no episode counts of the {metrics['split']!r} split); run "
                             "'salus evaluate' again")
    return metrics


def _json_type(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", float: "number", list: "list", dict: "JSON object"}
    return names[kind[-1] if isinstance(kind, tuple) else kind]


def format_value(value: float | None, digits: int = 3) -> str:
    """A metric with `digits` decimals; an en dash for an undefined one (None)."""
    return "–" if value is None else f"{value:.{digits}f}"


def format_rate(entry: dict[str, Any] | None) -> str:
    """An episode-level rate entry of metrics.json as `0.80 (8/10)`; an en dash when n is 0."""
    if not entry or not entry.get("n"):
        return "–"
    return f"{entry['rate']:.2f} ({entry['k']}/{entry['n']})"


def scorer_order(metrics: dict[str, Any]) -> list[str]:
    """Model, logistic regression, the single-signal baselines, the permutation control last."""
    names = list(metrics["scorers"])
    head = [n for n in ("model", "logistic_regression") if n in names]
    tail = [n for n in ("permutation_control",) if n in names]
    return head + [n for n in names if n not in head and n not in tail] + tail


def _ci(entry: dict[str, Any]) -> str:
    if not entry or not entry.get("n"):
        return "–"
    low, high = entry["ci95"]
    return f"{entry['rate']:.2f} ({entry['k']}/{entry['n']}; 95% CI {low:.2f}-{high:.2f})"


def markdown_report(metrics: dict[str, Any]) -> str:
    """The README section: setting, comparison table, per-type episode detection, calibration and
    the permutation control, as GitHub Markdown."""
    conformal = metrics["conformal"]
    horizon = metrics["alarm_horizon"]
    model, logistic = metrics["scorers"]["model"], metrics["scorers"]["logistic_regression"]
    control = metrics["scorers"].get("permutation_control")
    split = metrics["split"]
    lines = [
        f"Evaluated on the {split} split of `{metrics['store']}` ("
        + ", ".join(f"{k} {v}" for k, v in metrics["episodes"][split].items() if v) + " episodes). "
        f"Alarm: the first step whose max-over-types score for failure within {horizon} steps "
        f"({horizon / metrics['control_hz']:.2f} s) exceeds a split-conformal threshold calibrated on "
        f"{conformal['calibration_episodes']} successful calibration episodes for a false-alarm rate of "
        f"{conformal['alpha']}. Step metrics: mean over the 4 types x {len(metrics['horizons'])} horizons; "
        "decision thresholds (for F1) chosen on the val split.",
        "",
        markdown_table(metrics),
        "",
        "| outcome | model: detected | model: median lead (steps) | logistic: detected | logistic: median lead (steps) |",
        "|---|---|---|---|---|",
    ]
    for t in FAILURE_TYPES:
        a, b = model["episode"]["per_type"][t], logistic["episode"]["per_type"][t]
        lines.append(f"| {t} | {_ci(a)} | {format_value(a['median_lead_steps'], 1)} | {_ci(b)} | {format_value(b['median_lead_steps'], 1)} |")
    lines.append(f"| success: false alarms | {_ci(model['episode']['far'])} | | {_ci(logistic['episode']['far'])} | |")
    ep = model["episode"]
    lines += ["",
              f"Model: detected {_ci(ep['tpr'])} of failed episodes, {_ci(ep['tpr_actionable'])} at least "
              f"{ep['min_lead_steps']} steps ahead; false alarms {_ci(ep['far'])} (conformal bound {conformal['alpha']}); "
              f"median lead {format_value(ep['median_lead_steps'], 1)} steps = {format_value(ep['median_lead_s'], 2)} s. "
              f"Expected calibration error (16 outputs): model {format_value((model.get('reliability') or {}).get('ece'))}, "
              f"logistic regression {format_value((logistic.get('reliability') or {}).get('ece'))}."]
    if control:
        lines.append(f"Permutation control (labels shuffled across episodes): mean AUROC {format_value(control['mean']['auroc'])}, "
                     f"any-failure AUROC {format_value(control['any_failure']['auroc'])}.")
    return "\n".join(lines)


def markdown_table(metrics: dict[str, Any]) -> str:
    """The comparison table as GitHub Markdown (for the README)."""
    horizon = metrics["alarm_horizon"]
    head = ["scorer", "mean AUROC", "mean AUPRC", "mean F1", f"any-failure AUROC @{horizon}",
            *(f"{t} AUROC" for t in FAILURE_TYPES), "detected (TPR)", "false alarms (FAR)", "median lead (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in scorer_order(metrics):
        s = metrics["scorers"][name]
        ep = s["episode"]
        cells = [s["label"], format_value(s["mean"]["auroc"]), format_value(s["mean"]["auprc"]), format_value(s["mean"]["f1"]),
                 format_value(s["any_failure"]["auroc"]), *(format_value(s["per_type"][t]["auroc"]) for t in FAILURE_TYPES),
                 format_rate(ep["tpr"]), format_rate(ep["far"]), format_value(ep["median_lead_s"], 2)]
        if name == "model":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
