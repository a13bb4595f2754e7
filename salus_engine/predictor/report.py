"""Reading an evaluation back: metrics.json, the rows of every table shared by the front ends
(`salus report`, its `--markdown`, the console's evaluate screen), and the Markdown section for a
README. Pure formatting: computes nothing new. The rich tables of `salus report` are in
`salus_engine.cli.report`.

Tables (each a list of columns and rows of strings; an en dash where metrics.json holds no value, e.g.
a format-1 file without the episode-level ranking):
- comparison: every scorer grouped model / baselines / controls, led by the episode-level AUROC of the
  running-max alarm score with its bootstrap 95% CI, the model's AUROC minus the scorer's with the
  paired bootstrap 95% CI of that difference, and the PR-AUC, then detection and false alarms at the
  conformal threshold, median lead, and the step-level mean AUROC;
- per failure type (one scorer, the model by default): detection with its 95% CI, median lead with its
  bootstrap 95% CI;
- conformal check: the false-alarm rate over random re-splits of the held-out successes;
- alpha curve (one scorer): detection, false alarms and median lead at several conformal levels;
- fresh store (when `salus evaluate --fresh` ran): the comparison on a store from unseen seeds, the
  model per failure type there and the conformal check with its successes;
- ablation (when `salus evaluate --ablation` ran): the model retrained without / with only each input family.
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
OPTIONAL_ENTRIES: dict[str, type] = {"fresh": dict, "ablation": list}
"""Top-level entries of format 2 that may be null (or absent in format 1)."""


def load_metrics(path: Path) -> dict[str, Any]:
    """Reads an evaluation's metrics.json (format 1 or 2) and checks its top-level structure.

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
    for name, kind in OPTIONAL_ENTRIES.items():
        if metrics.get(name) is not None and not isinstance(metrics[name], kind):
            raise PredictorError(f"{path} is damaged (entry {name!r} not a {_json_type(kind)}); run "
                                 "'salus evaluate' again")
    scorers = metrics["scorers"]
    if not all(isinstance(scorers.get(n), dict) for n in ("model", "logistic_regression")) or not all(
            isinstance(v, dict) for v in scorers.values()):
        raise PredictorError(f"{path} is damaged (the model's or a baseline's scores are missing); run "
                             "'salus evaluate' again")
    fresh = metrics.get("fresh")
    if fresh is not None and not (isinstance(fresh.get("scorers"), dict)
                                  and all(isinstance(v, dict) for v in fresh["scorers"].values())):
        raise PredictorError(f"{path} is damaged (the fresh store's scores are missing); run 'salus evaluate' again")
    if not all(isinstance(row, dict) for row in metrics.get("ablation") or []):
        raise PredictorError(f"{path} is damaged (an ablation row is not a JSON object); run 'salus evaluate' again")
    if not isinstance(metrics["episodes"].get(metrics["split"]), dict):
        raise PredictorError(f"{path} is damaged (no episode counts of the {metrics['split']!r} split); run "
                             "'salus evaluate' again")
    return metrics


def _json_type(kind: type | tuple[type, ...]) -> str:
    names = {str: "string", int: "integer", float: "number", list: "list", dict: "JSON object"}
    return names[kind[-1] if isinstance(kind, tuple) else kind]


# ---------------------------------------------------------------- numbers


def format_value(value: float | None, digits: int = 3) -> str:
    """A metric with `digits` decimals; an en dash for an undefined one (None)."""
    return "–" if value is None else f"{value:.{digits}f}"


def format_rate(entry: dict[str, Any] | None) -> str:
    """An episode-level rate entry of metrics.json as `0.80 (8/10)`; an en dash when n is 0."""
    if not entry or not entry.get("n"):
        return "–"
    return f"{entry['rate']:.2f} ({entry['k']}/{entry['n']})"


def format_rate_ci(entry: dict[str, Any] | None, label: str = "") -> str:
    """A rate entry with its 95% CI as `0.80 (8/10; 0.44-0.97)` (`label` goes before the interval,
    e.g. "95% CI "); an en dash when n is 0."""
    if not entry or not entry.get("n"):
        return "–"
    if not entry.get("ci95"):
        return format_rate(entry)
    low, high = entry["ci95"]
    return f"{entry['rate']:.2f} ({entry['k']}/{entry['n']}; {label}{low:.2f}-{high:.2f})"


def format_lead(steps: float | None, ci95: list[float] | None = None) -> str:
    """A median lead in steps, with its 95% CI when known: `12.0 (8.0-20.5)`."""
    if steps is None:
        return "–"
    return f"{steps:.1f}" + (f" ({ci95[0]:.1f}-{ci95[1]:.1f})" if ci95 else "")


def threshold_rule(conformal: dict[str, Any]) -> str:
    """How metrics.json's conformal threshold was chosen, in words: split conformal, or the
    training-conditional rule of `salus evaluate --delta` (metrics written before it: split conformal)."""
    delta = conformal.get("delta")
    return "split conformal" if delta is None else f"the training-conditional rule (delta {delta:g})"


def format_auroc(ranking: dict[str, Any]) -> str:
    """An episode-level ROC-AUC with its bootstrap 95% CI when known: `0.918 (0.890-0.943)`."""
    interval = ranking.get("auroc_ci95")
    return format_value(ranking.get("auroc")) + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


def format_gap(versus: dict[str, Any] | None, compact: bool = False) -> str:
    """How far the model's episode-level ROC-AUC lies above a scorer's, with the paired bootstrap 95% CI
    of that difference: `+0.007 (-0.012 to +0.026)`, or `compact`ly `+0.204*`, the star where the
    interval excludes 0; an en dash for the model itself or without one."""
    if not versus:
        return "–"
    interval = versus.get("ci95")
    gap = f"{versus['difference']:+.3f}"
    if compact:
        return gap + ("*" if interval and (interval[0] > 0 or interval[1] < 0) else "")
    return gap + (f" ({interval[0]:+.3f} to {interval[1]:+.3f})" if interval else "")


def _seconds(steps: float | None, hz: float) -> str:
    return "–" if steps is None else f"{steps / hz:.2f}"


def _ci(entry: dict[str, Any]) -> str:
    return format_rate_ci(entry, "95% CI ")


# ---------------------------------------------------------------- scorers and their order

GROUPS: tuple[tuple[str, str], ...] = (("model", "model"), ("baseline", "baselines"), ("control", "controls"))
"""Scorer kinds in table order, with their group titles."""
CONTROLS = ("permutation_control", "time_only")


def scorer_kind(name: str, entry: dict[str, Any]) -> str:
    """"model", "baseline" or "control" (format-1 files may lack `kind`)."""
    kind = entry.get("kind")
    if kind in ("model", "baseline", "control"):
        return kind
    return "model" if name == "model" else "control" if name in CONTROLS else "baseline"


def episode_ranking(entry: dict[str, Any]) -> dict[str, Any]:
    """The `episode.ranking` of a scorer entry ({} in format 1)."""
    return (entry.get("episode") or {}).get("ranking") or {}


def scorer_groups(scorers: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(group title, scorer names) for the model, the baselines and the controls, empty groups left
    out. Within the baselines the trained and novelty detectors come first (in file order), then the
    thresholded signal columns (`signal:*`) by episode-level AUROC, best first, undefined last."""
    groups = []
    for kind, title in GROUPS:
        names = [n for n, s in scorers.items() if scorer_kind(n, s) == kind]
        if kind == "baseline":
            signals = [n for n in names if n.startswith("signal:")]
            signals.sort(key=lambda n: (episode_ranking(scorers[n]).get("auroc") is None,
                                        -(episode_ranking(scorers[n]).get("auroc") or 0.0)))
            names = [n for n in names if not n.startswith("signal:")] + signals
        if names:
            groups.append((title, names))
    return groups


def scorer_order(metrics: dict[str, Any], scorers: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Every scorer name in table order (see `scorer_groups`)."""
    return [n for _, names in scorer_groups(metrics["scorers"] if scorers is None else scorers) for n in names]


# ---------------------------------------------------------------- table rows

COMPARISON_COLUMNS = ("episode AUROC (95% CI)", "model - this (95% CI)", "episode PR-AUC", "detected (TPR)",
                      "false alarms (FAR)", "median lead (steps)", "median lead (s)", "step AUROC (mean)")
"""Columns after the scorer's name in the comparison (and fresh-store) table."""
COMPARISON_SHORT = ("ep AUROC", "model - this", "ep PR-AUC", "detected", "false alarms", "lead steps", "lead s",
                    "step AUROC")
"""The same columns named for a terminal (`salus report`, the console)."""


def comparison_cells(entry: dict[str, Any], compact: bool = False) -> list[str]:
    """One scorer's cells under COMPARISON_COLUMNS (`compact`: under COMPARISON_SHORT, for a terminal:
    no interval, the gap to the model starred where its interval excludes 0)."""
    episode = entry.get("episode") or {}
    ranking = episode_ranking(entry)
    auroc = format_value(ranking.get("auroc")) if compact else format_auroc(ranking)
    return [auroc, format_gap(ranking.get("versus_reference"), compact), format_value(ranking.get("auprc")),
            format_rate(episode.get("tpr")),
            format_rate(episode.get("far")), format_lead(episode.get("median_lead_steps")),
            format_value(episode.get("median_lead_s"), 2), format_value((entry.get("mean") or {}).get("auroc"))]


def comparison_note(scorers: dict[str, dict[str, Any]], compact: bool = False) -> str:
    """What the comparison's columns mean, with the PR-AUC of chance (the share of failed episodes)
    (`compact`: for the cells of `comparison_cells(..., compact=True)`)."""
    ranking = episode_ranking(scorers.get("model") or {})
    chance = ""
    if ranking.get("episodes"):
        chance = (f" (chance: the share of failed episodes, {ranking['failed']}/{ranking['episodes']} = "
                  f"{ranking['failed'] / ranking['episodes']:.2f})")
    gap = ("* where the 95% CI of that difference (a paired bootstrap over the same episodes; in metrics.json and "
           "the Markdown report) excludes 0" if compact else
           "its 95% CI from a paired bootstrap over the same episodes (an interval above 0: the model ranks higher "
           "beyond the choice of episodes)")
    return ("episode AUROC / PR-AUC: failed vs successful episodes ranked by the running maximum of the alarm "
            f"score{chance}; model - this: the model's episode AUROC minus this scorer's, {gap}; detected / false "
            "alarms: failed / successful episodes with an alarm at the conformal threshold; median lead: first alarm "
            "to failure over detected episodes; step AUROC: mean over failure types x horizons, per step")


PER_TYPE_COLUMNS = ("outcome", "episodes", "detected (95% CI)", "median lead, steps (95% CI)", "median lead (s)")


def store_scorers(metrics: dict[str, Any], store: str = "test") -> dict[str, dict[str, Any]]:
    """The scorers' entries of the evaluated split (`store` "test") or of the fresh store ("fresh").

    Raises:
        KeyError: "fresh" when `salus evaluate` ran without --fresh (check `fresh_heading` first).
    """
    return metrics["scorers"] if store == "test" else metrics["fresh"]["scorers"]


def store_label(metrics: dict[str, Any], store: str = "test") -> str:
    """How the tables name the successes scored: the evaluated split's name, or "fresh"."""
    return metrics["split"] if store == "test" else "fresh"


def per_type_rows(metrics: dict[str, Any], scorer: str = "model", store: str = "test") -> list[list[str]]:
    """Episode-level detection per failure type of one scorer, then all failures, failures flagged
    at least `min_lead_steps` ahead, and the false alarms on successful episodes; on the evaluated
    split, or with `store` "fresh" on every episode of the fresh store."""
    episode = store_scorers(metrics, store)[scorer].get("episode") or {}
    hz = metrics["control_hz"]
    per_type = episode.get("per_type") or {}
    rows = []
    for t in FAILURE_TYPES:
        entry = per_type.get(t) or {}
        rows.append([t, str(entry.get("n", "–")), format_rate_ci(entry),
                     format_lead(entry.get("median_lead_steps"), entry.get("median_lead_ci95")),
                     _seconds(entry.get("median_lead_steps"), hz)])
    tpr = episode.get("tpr") or {}
    rows.append(["all failures", str(tpr.get("n", "–")), format_rate_ci(tpr),
                 format_lead(episode.get("median_lead_steps")), format_value(episode.get("median_lead_s"), 2)])
    actionable = episode.get("tpr_actionable")
    if actionable:
        rows.append([f"failures >= {episode.get('min_lead_steps')} steps ahead", str(actionable.get("n", "–")),
                     format_rate_ci(actionable), "", ""])
    far = episode.get("far") or {}
    rows.append(["success: false alarms", str(far.get("n", "–")), format_rate_ci(far), "", ""])
    return rows


def resplit_columns(metrics: dict[str, Any], store: str = "test") -> tuple[str, ...]:
    alpha = metrics["conformal"]["alpha"]
    return ("scorer", f"false alarms, {store_label(metrics, store)}", "re-splits", f"calibration / {store} successes",
            f"mean {store} FAR", f"share > α+0.05 ({alpha + 0.05:.2f})", "share > 0.15", "exact mean",
            "P(mean > alpha)", "P(as many false alarms)", "MW p")


def resplit_rows(metrics: dict[str, Any], store: str = "test") -> list[tuple[str, list[str]]]:
    """(scorer name, cells under `resplit_columns`) for the model, the trained and novelty baselines
    and the controls (the thresholded signal columns are left out: there are many); the calibration
    successes pooled with the evaluated split's, or with `store` "fresh" with the fresh store's."""
    rows = []
    scorers = store_scorers(metrics, store)
    for name in scorer_order(metrics, scorers):
        if name.startswith("signal:"):
            continue
        s = scorers[name]
        episode = s.get("episode") or {}
        r = episode.get("resplits") or {}
        check = episode.get("false_alarm_check") or {}  # metrics written before the check: none
        sizes = (f"{r['calibration_episodes']} / {r['test_episodes']}"
                 if r.get("calibration_episodes") is not None and r.get("test_episodes") is not None else "–")
        rows.append((name, [s.get("short", name), format_rate(episode.get("far")), str(r.get("resplits", "–")), sizes,
                            format_value(r.get("mean")), format_value(r.get("share_above_alpha_plus_0.05"), 2),
                            format_value(r.get("share_above_0.15"), 2), format_value(r.get("expected_mean")),
                            format_value(r.get("chance_mean_above_alpha"), 2), format_value(check.get("p_value"), 2),
                            format_value(check.get("mann_whitney_p"), 2)]))
    return rows


def resplit_note(metrics: dict[str, Any], store: str = "test") -> str:
    conformal = metrics["conformal"]
    split = store_label(metrics, store)
    return (f"the held-out successful episodes (calibration and {split}) are re-split at random "
            f"{conformal.get('resplits', 'several')} times; each re-split calibrates the threshold for alpha "
            f"{conformal['alpha']} on one part and measures the false-alarm rate on the other. "
            + ("Split conformal bounds the mean by alpha; single re-splits scatter around it"
               if conformal.get("delta") is None else
               f"With delta {conformal['delta']}, at most that share of re-splits should exceed alpha")
            + ". 'exact mean': the mean over every possible re-split; 'P(mean > alpha)': the chance that "
            "the mean of this many random re-splits exceeds alpha by their draw alone, about 0.4 for split conformal "
            "without ties; 'P(as many false alarms)': the chance, "
            f"for exchangeable calibration and {split} successes, of at least the {split} "
            "successes' false alarms (small: they score higher than the calibration draw explains); "
            f"'MW p': a Mann-Whitney test of whether calibration and {split} successes score alike")


ALPHA_COLUMNS = ("alpha", "threshold", "detected (TPR)", "false alarms (FAR)", "median lead (steps)", "median lead (s)")


def alpha_rows(metrics: dict[str, Any], scorer: str = "model") -> list[list[str]]:
    """The detection vs lead-time curve of one scorer: one row per conformal level alpha (none in format 1)."""
    hz = metrics["control_hz"]
    curve = (metrics["scorers"][scorer].get("episode") or {}).get("alpha_curve") or []
    return [[f"{p['alpha']:g}", format_value(p.get("threshold")), format_value(p.get("tpr"), 2),
             format_value(p.get("far"), 2), format_lead(p.get("median_lead_steps")),
             _seconds(p.get("median_lead_steps"), hz)] for p in curve]


def fresh_heading(metrics: dict[str, Any]) -> str | None:
    """One line on the fresh store (path, seed, episodes, note), or None when `salus evaluate` ran
    without --fresh."""
    fresh = metrics.get("fresh")
    if not fresh:
        return None
    counts = fresh.get("episodes") or {}
    return (f"{fresh.get('store')} (base seed {fresh.get('base_seed')}; {sum(counts.values())} episodes: "
            + ", ".join(f"{k} {v}" for k, v in counts.items() if v) + f"): {fresh.get('note', '')}")


ABLATION_COLUMNS = ("variant", "inputs", "episode AUROC", "episode PR-AUC", "detected (TPR)", "false alarms (FAR)",
                    "median lead (steps)")


def ablation_rows(metrics: dict[str, Any], store: str = "test") -> list[list[str]]:
    """One row per retrained variant (full, without X, X alone) under ABLATION_COLUMNS, scored on the
    evaluated split (`store` "test") or on the fresh store ("fresh"); [] when none was scored there."""
    out = []
    for row in metrics.get("ablation") or []:
        entry = row.get(store)
        if not entry:
            continue
        ranking = entry.get("ranking") or {}
        out.append([str(row.get("variant", "–")), " + ".join(row.get("features") or []) or "–",
                    format_value(ranking.get("auroc")), format_value(ranking.get("auprc")),
                    format_rate(entry.get("tpr")), format_rate(entry.get("far")),
                    format_lead(entry.get("median_lead_steps"))])
    return out


ABLATION_NOTE = ("the model's network retrained with each input family removed and with each family alone; same "
                 "settings, splits and alarm rule (thresholds calibrated on the training store)")


def format_note(metrics: dict[str, Any]) -> str | None:
    """A line for a metrics.json older than format 2 (what it lacks and what to do), else None."""
    if int(metrics.get("format_version", 1) or 1) >= 2:
        return None
    return ("this metrics.json is format 1: it holds no episode-level ranking, alpha curve, conformal re-splits, "
            "fresh store or ablation (shown as dashes); run 'salus evaluate' again for them")


# ---------------------------------------------------------------- Markdown


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _md_table(columns: tuple[str, ...] | list[str], rows: list[list[str]], bold: set[int] = frozenset()) -> str:
    lines = [_md_row(list(columns)), "|" + "---|" * len(columns)]
    for i, row in enumerate(rows):
        lines.append(_md_row([f"**{c}**" if i in bold and c else c for c in row]))
    return "\n".join(lines)


def _md_comparison(scorers: dict[str, dict[str, Any]]) -> str:
    rows, bold = [], set()
    for title, names in scorer_groups(scorers):
        for j, name in enumerate(names):
            s = scorers[name]
            if name == "model":
                bold.add(len(rows))
            rows.append([title if j == 0 else "", s.get("label", name), *comparison_cells(s)])
    return _md_table(("", "scorer", *COMPARISON_COLUMNS), rows, bold)


def markdown_table(metrics: dict[str, Any]) -> str:
    """The comparison table as GitHub Markdown (for the README)."""
    return _md_comparison(metrics["scorers"])


def markdown_report(metrics: dict[str, Any]) -> str:
    """The README section as GitHub Markdown: setting, comparison of every scorer, the model per
    failure type, the conformal re-split check, the model's alpha curve, the fresh store and the
    ablation (when present), the step-level AUROC per type, and calibration notes."""
    conformal = metrics["conformal"]
    horizon = metrics["alarm_horizon"]
    hz = metrics["control_hz"]
    scorers = metrics["scorers"]
    model = scorers["model"]
    split = metrics["split"]
    lines = [
        f"Evaluated on the {split} split of `{metrics['store']}` ("
        + ", ".join(f"{k} {v}" for k, v in metrics["episodes"][split].items() if v) + " episodes). "
        f"Alarm: the first step whose max-over-types score for failure within {horizon} steps "
        f"({horizon / hz:.2f} s) exceeds a split-conformal threshold calibrated on "
        f"{conformal['calibration_episodes']} successful calibration episodes for a false-alarm rate of "
        f"{conformal['alpha']}. Every scorer is treated alike (thresholds from the same splits).",
    ]
    note = format_note(metrics)
    if note:
        lines += ["", f"*{note[0].upper() + note[1:]}.*"]
    lines += ["", f"**Comparison** ({comparison_note(scorers)}).", "", markdown_table(metrics)]
    lines += ["", f"**Model per failure type** ({model.get('short', 'model')}, {split} split; detection with a 95% "
              "Clopper-Pearson interval, median lead with a bootstrap 95% interval).", "",
              _md_table(PER_TYPE_COLUMNS, per_type_rows(metrics))]
    lines += ["", f"**Conformal check** ({resplit_note(metrics)}).", "",
              _md_table(resplit_columns(metrics), [cells for _, cells in resplit_rows(metrics)], {0})]
    alpha = alpha_rows(metrics) or [["–"] * len(ALPHA_COLUMNS)]
    lines += ["", f"**Detection vs lead time over alpha** (model, {split} split; each alpha calibrates its own "
              "threshold on the calibration successes).", "", _md_table(ALPHA_COLUMNS, alpha)]
    heading = fresh_heading(metrics)
    if heading:
        lines += ["", f"**Fresh store** {heading}; same columns as the comparison.", "",
                  _md_comparison(metrics["fresh"]["scorers"])]
        lines += ["", f"**Model per failure type, fresh store** ({model.get('short', 'model')}; as above).", "",
                  _md_table(PER_TYPE_COLUMNS, per_type_rows(metrics, store="fresh"))]
        lines += ["", f"**Conformal check, fresh store** ({resplit_note(metrics, 'fresh')}).", "",
                  _md_table(resplit_columns(metrics, "fresh"),
                            [cells for _, cells in resplit_rows(metrics, "fresh")], {0})]
    for store, where in (("test", "test split"), ("fresh", "fresh store")):
        rows = ablation_rows(metrics, store)
        if rows:
            lines += ["", f"**Ablation, {where}** ({ABLATION_NOTE}).", "", _md_table(ABLATION_COLUMNS, rows, {0})]
    lines += ["", f"**Per step** (AUROC of each failure type within {horizon} steps; mean over the 4 types x "
              f"{len(metrics['horizons'])} horizons; decision thresholds for F1 chosen on the val split).", "",
              _md_table(("scorer", "mean AUROC", "mean AUPRC", "mean F1", *(f"{t} AUROC" for t in FAILURE_TYPES)),
                        [[scorers[n].get("label", n), format_value(scorers[n]["mean"]["auroc"]),
                          format_value(scorers[n]["mean"]["auprc"]), format_value(scorers[n]["mean"]["f1"]),
                          *(format_value(scorers[n]["per_type"][t]["auroc"]) for t in FAILURE_TYPES)]
                         for n in scorer_order(metrics)], {0})]
    ep = model["episode"]
    logistic = scorers["logistic_regression"]
    lines += ["",
              f"Model: detected {_ci(ep['tpr'])} of failed episodes, {_ci(ep['tpr_actionable'])} at least "
              f"{ep['min_lead_steps']} steps ahead; false alarms {_ci(ep['far'])} (conformal bound {conformal['alpha']}); "
              f"median lead {format_value(ep['median_lead_steps'], 1)} steps = {format_value(ep['median_lead_s'], 2)} s. "
              f"Expected calibration error (16 outputs): model {format_value((model.get('reliability') or {}).get('ece'))}, "
              f"logistic regression {format_value((logistic.get('reliability') or {}).get('ece'))}."]
    for name in CONTROLS:
        control = scorers.get(name)
        if control:
            label = control.get("label", name)
            lines[-1] += (f" {label[0].upper() + label[1:]}: episode AUROC "
                          f"{format_value(episode_ranking(control).get('auroc'))}, step mean AUROC "
                          f"{format_value(control['mean']['auroc'])}.")
    return "\n".join(lines)
