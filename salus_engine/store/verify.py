"""`salus verify`: integrity and data-quality checks of a collection store.

Integrity: every episode complete, array dtypes and shapes consistent with the store's attributes
and the episode length, ids contiguous with seeds = base seed + id, labels consistent with the
recorded outcome and its physics evidence. Data quality (the seeds' checks): signals and actions
vary over time and are finite, not frozen or all zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from salus_engine import OUTCOME_NAMES
from salus_engine.signals import SIGNAL_NAMES
from salus_engine.store.horizon_labels import make_horizon_labels
from salus_engine.store.layout import ARRAY_DTYPES, STAGING_DIR, StoreError
from salus_engine.store.reader import EpisodeStore


@dataclass
class VerifyReport:
    path: Path
    episodes: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(path: str | Path) -> VerifyReport:
    """Checks the store at `path`; never raises for a damaged store, it reports the problem.

    Returns:
        A `VerifyReport`; `report.ok` is False when any problem was found.
    """
    report = VerifyReport(Path(path))
    try:
        store = EpisodeStore.open(path)
    except StoreError as err:
        report.problems.append(str(err))
        return report
    attrs = store.attrs
    if (store.path / STAGING_DIR).exists():
        report.warnings.append("a partial episode from an interrupted run is in .staging; 'salus collect --resume' discards it")
    ids = store.episode_ids
    report.episodes = len(ids)
    if not ids:
        report.problems.append("the store holds no complete episode")
        return report
    if ids != list(range(len(ids))):
        missing = sorted(set(range(max(ids) + 1)) - set(ids))
        report.problems.append(f"episode ids have gaps: missing {missing[:10]}")
    cams, size, members = len(attrs["cameras"]), int(attrs["image_size"]), int(attrs["ensemble_size"])
    horizons = store.horizons
    threshold = float(attrs.get("sim_config", {}).get("collision_force_n", 0.0))
    all_signals, all_actions = [], []
    for index, episode_id in enumerate(ids):
        where = f"episode {episode_id}"
        try:
            episode = store.episode(index)
        except StoreError as err:
            report.problems.append(str(err))
            continue
        meta = episode.meta
        name = OUTCOME_NAMES.get(meta.failure_type, "?")
        report.outcomes[name] = report.outcomes.get(name, 0) + 1
        t = meta.episode_length
        expected = {
            "images": (t, cams, 3, size, size),
            "states": (t, 8),
            "actions": (t, 7),
            "member_actions": (t, members, 7),
            "signals": (t, len(SIGNAL_NAMES)),
            "horizon_labels": (t, len(horizons), 4),
        }
        arrays_ok = True
        for key, shape in expected.items():
            try:
                arr = episode.array(key)
            except Exception:
                report.problems.append(f"{where}: array '{key}' is missing")
                arrays_ok = False
                continue
            if tuple(arr.shape) != shape or str(arr.dtype) != ARRAY_DTYPES[key]:
                report.problems.append(f"{where}: '{key}' is {tuple(arr.shape)} {arr.dtype}, expected {shape} {ARRAY_DTYPES[key]}")
                arrays_ok = False
        if meta.episode_id != episode_id:
            report.problems.append(f"{where}: attribute episode_id is {meta.episode_id}")
        if meta.seed != int(attrs["base_seed"]) + episode_id:
            report.problems.append(f"{where}: seed {meta.seed} is not base seed + id")
        if meta.success != (meta.failure_type == -1):
            report.problems.append(f"{where}: success={meta.success} contradicts failure_type={meta.failure_type}")
        if not 0 <= meta.failure_step < t:
            report.problems.append(f"{where}: failure_step {meta.failure_step} outside its {t} steps")
        if meta.failure_type == 0 and "max_contact_force_n" in meta.evidence:
            if float(meta.evidence["max_contact_force_n"]) < threshold:
                report.problems.append(f"{where}: labelled collision but the recorded force "
                                       f"{meta.evidence['max_contact_force_n']:.1f} N is below {threshold:.1f} N")
        if meta.failure_type >= 0 and not meta.evidence:
            report.problems.append(f"{where}: a failure without physics evidence")
        if not arrays_ok:
            continue
        try:
            expected_labels = make_horizon_labels(meta.failure_type, meta.failure_step, t, horizons)
            if not np.array_equal(episode.horizon_labels, expected_labels):
                report.problems.append(f"{where}: horizon_labels disagree with failure_type/failure_step")
        except ValueError as err:
            report.problems.append(f"{where}: {err}")
        signals, actions = episode.signals, episode.actions
        if not (np.all(np.isfinite(signals)) and np.all(np.isfinite(actions))):
            report.problems.append(f"{where}: NaN or inf in signals or actions")
            continue
        if t > 2 and float(actions.std(axis=0).max()) == 0.0:
            report.problems.append(f"{where}: actions are frozen (identical at every step)")
        all_signals.append(signals)
        all_actions.append(actions)
    if all_signals:
        signals = np.concatenate(all_signals)
        stds = signals.std(axis=0)
        checked = range(len(SIGNAL_NAMES)) if members > 1 else (1, 3)
        for k in checked:
            if stds[k] == 0.0:
                report.problems.append(f"signal '{SIGNAL_NAMES[k]}' never varies (std 0 over {len(signals)} steps)")
        if float(np.abs(signals).max()) == 0.0:
            report.problems.append("all signals are zero")
    return report
