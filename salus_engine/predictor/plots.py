"""PNG plots of an evaluation (matplotlib, Agg backend, no display needed).

Files: roc_curves.png, pr_curves.png (per failure type at the alarm horizon, model vs baselines vs
control), auroc_by_horizon.png, reliability.png (with ECE), confusion_matrix.png (episode outcomes),
lead_time.png (first alarm to failure, s), alpha_curve.png (detection rate, false-alarm rate and
median lead time against the conformal level alpha, per episode), loss_curves.png (training history).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, precision_recall_curve, roc_curve  # noqa: E402

from salus_engine import FAILURE_TYPES  # noqa: E402

STYLE = {"model": ("C0", "-"), "logistic_regression": ("C1", "--"), "permutation_control": ("0.5", ":")}


def _compared(metrics: dict[str, Any]) -> list[str]:
    """Model, logistic regression, the best single signal (by any-failure AUROC) and the control."""
    scorers = metrics["scorers"]
    signals = [n for n in scorers if n.startswith("signal:")]
    best = max(signals, key=lambda n: scorers[n]["any_failure"]["auroc"] or 0.0) if signals else None
    return [n for n in ("model", "logistic_regression", best, "permutation_control") if n and n in scorers]


def _style(name: str) -> tuple[str, str]:
    return STYLE.get(name, ("C2", "-."))


def _curve_grid(path: Path, metrics, curves, labels, kind: str) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(9, 8))
    for k, (ax, type_name) in enumerate(zip(axes.ravel(), FAILURE_TYPES)):
        y = labels[:, k]
        for name in _compared(metrics):
            if not 0 < y.sum() < len(y):
                continue
            colour, line = _style(name)
            s = curves[name][:, k]
            if kind == "roc":
                x_values, y_values, _ = roc_curve(y, s)
            else:
                y_values, x_values, _ = precision_recall_curve(y, s)
            score = metrics["scorers"][name]["per_type"][type_name]["auroc" if kind == "roc" else "auprc"]
            ax.plot(x_values, y_values, color=colour, linestyle=line,
                    label=f"{metrics['scorers'][name]['label'][:34]} ({score:.2f})" if score is not None else name)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
            ax.set_xlabel("false-positive rate (steps)")
            ax.set_ylabel("true-positive rate (steps)")
        else:
            ax.axhline(y.mean() if len(y) else 0, color="0.8", linewidth=0.8)
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_title(f"{type_name} within {metrics['alarm_horizon']} steps ({int(y.sum())} positive steps)", fontsize=9)
        if ax.lines:
            ax.legend(fontsize=6, loc="lower right" if kind == "roc" else "upper right")
    fig.suptitle(f"{'ROC' if kind == 'roc' else 'precision-recall'} on the {metrics['split']} split "
                 f"({'AUROC' if kind == 'roc' else 'AUPRC'} in brackets)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _auroc_by_horizon(path: Path, metrics) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), sharey=True)
    for ax, type_name in zip(axes, FAILURE_TYPES):
        for name in _compared(metrics):
            rows = [r for r in metrics["scorers"][name]["per_type_horizon"] if r["type"] == type_name]
            colour, line = _style(name)
            ax.plot([r["horizon"] for r in rows], [np.nan if r["auroc"] is None else r["auroc"] for r in rows],
                    color=colour, linestyle=line, marker="o", label=metrics["scorers"][name]["label"][:30])
        ax.axhline(0.5, color="0.8", linewidth=0.8)
        ax.set_title(type_name)
        ax.set_xlabel("horizon (steps)")
    axes[0].set_ylabel("AUROC")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliability(path: Path, metrics) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="0.7", linewidth=0.8, label="perfectly calibrated")
    for name in ("model", "logistic_regression", "permutation_control"):
        rel = metrics["scorers"][name].get("reliability")
        if not rel or rel["ece"] is None:
            continue
        colour, line = _style(name)
        ax.plot(rel["mean_predicted"], rel["fraction_positive"], color=colour, linestyle=line, marker="o",
                label=f"{metrics['scorers'][name]['label'][:30]} (ECE {rel['ece']:.3f})")
    ax.set_xlabel("predicted probability (all 16 outputs)")
    ax.set_ylabel("fraction of positive steps")
    ax.set_title("reliability diagram")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _confusion(path: Path, metrics) -> None:
    confusion = metrics["scorers"]["model"]["episode"]["confusion"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay(np.array(confusion["matrix"]), display_labels=confusion["labels"]).plot(
        ax=ax, colorbar=False, cmap="Blues")
    ax.set_xlabel("monitor: no alarm = success, else type at first alarm")
    ax.set_ylabel("true outcome")
    ax.set_title(f"episodes, {metrics['split']} split, alpha = {metrics['conformal']['alpha']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lead_time(path: Path, metrics) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    hz = metrics["control_hz"]
    names = ("model", "logistic_regression")
    all_leads = np.concatenate([np.array(metrics["scorers"][n]["episode"]["lead_steps"], dtype=float) / hz
                                for n in names])
    edges = np.histogram_bin_edges(all_leads, bins=20) if len(all_leads) else 20
    for name in names:
        episode = metrics["scorers"][name]["episode"]
        leads = np.array(episode["lead_steps"], dtype=float) / hz
        if len(leads):
            colour, _ = _style(name)
            ax.hist(leads, bins=edges, alpha=0.5, color=colour,
                    label=f"{metrics['scorers'][name]['label'][:30]} "
                          f"(median {np.median(leads):.2f} s, {len(leads)} detected)")
    ax.set_xlabel("lead time: first alarm to failure (s)")
    ax.set_ylabel("failed episodes")
    ax.set_title("lead time at the conformal threshold", fontsize=9)
    if ax.patches:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _alpha_curve(path: Path, metrics) -> bool:
    """Detection and false-alarm rate (left) and median lead time (right) against alpha, for the model,
    logistic regression, the best single signal and the permutation control; False without a curve."""
    names = [n for n in _compared(metrics) if (metrics["scorers"][n].get("episode") or {}).get("alpha_curve")]
    if "model" not in names:
        return False
    hz = metrics["control_hz"]
    fig, (rates, leads) = plt.subplots(1, 2, figsize=(10, 4))
    top = 0.0
    for name in names:
        curve = metrics["scorers"][name]["episode"]["alpha_curve"]
        colour, line = _style(name)
        alphas = [p["alpha"] for p in curve]
        label = metrics["scorers"][name].get("short", name)
        rates.plot(alphas, [p["tpr"] for p in curve], color=colour, linestyle=line, marker="o",
                   label=f"{label}: detected")
        rates.plot(alphas, [p["far"] for p in curve], color=colour, linestyle=line, marker="x", alpha=0.5,
                   label=f"{label}: false alarms")
        lead = [np.nan if p["median_lead_steps"] is None else p["median_lead_steps"] / hz for p in curve]
        leads.plot(alphas, lead, color=colour, linestyle=line, marker="o", label=label)
        top = max([top, *alphas])
    rates.plot([0, top], [0, top], color="0.8", linewidth=0.8, label="false alarms = alpha")
    rates.set_xlabel("conformal level alpha")
    rates.set_ylabel("share of episodes")
    rates.set_ylim(0, 1.02)
    rates.set_title(f"detected failures and false alarms, {metrics['split']} split", fontsize=9)
    rates.legend(fontsize=6)
    leads.set_xlabel("conformal level alpha")
    leads.set_ylabel("median lead time (s), detected episodes")
    leads.set_title("first alarm to failure", fontsize=9)
    leads.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _loss_curves(path: Path, history_path: Path) -> bool:
    try:
        rows = [json.loads(line) for line in history_path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return False
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [r["epoch"] for r in rows]
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train")
    ax.plot(epochs, [r["val_loss"] for r in rows], label="val")
    best = [r["epoch"] for r in rows if r["best"]]
    if best:
        ax.axvline(best[-1], color="0.6", linestyle=":", label=f"best epoch {best[-1]}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted BCE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(out: Path, metrics: dict[str, Any], curves: dict[str, np.ndarray], labels: np.ndarray,
                history_path: Path) -> list[str]:
    """Writes the PNG plots into `out`.

    Args:
        metrics: the evaluation's metrics dict (as in metrics.json).
        curves: scorer name -> (n, 4) scores of the evaluated steps at the alarm horizon.
        labels: (n, 4) uint8 labels of those steps at the alarm horizon.
        history_path: the run's history.jsonl (for the loss curves; skipped when missing).

    Returns:
        Names of the files written.
    """
    written = []
    for name, draw in (("roc_curves.png", lambda p: _curve_grid(p, metrics, curves, labels, "roc")),
                       ("pr_curves.png", lambda p: _curve_grid(p, metrics, curves, labels, "pr")),
                       ("auroc_by_horizon.png", lambda p: _auroc_by_horizon(p, metrics)),
                       ("reliability.png", lambda p: _reliability(p, metrics)),
                       ("confusion_matrix.png", lambda p: _confusion(p, metrics)),
                       ("lead_time.png", lambda p: _lead_time(p, metrics))):
        draw(out / name)
        written.append(name)
    if _alpha_curve(out / "alpha_curve.png", metrics):
        written.append("alpha_curve.png")
    if _loss_curves(out / "loss_curves.png", history_path):
        written.append("loss_curves.png")
    return written
