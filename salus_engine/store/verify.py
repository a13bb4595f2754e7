"""`salus verify`: integrity and data-quality checks of a collection store.

Integrity: every episode complete, array dtypes and shapes consistent with the store's attributes
and the episode length, ids contiguous with seeds = base seed + id, labels consistent with the
recorded outcome and its physics evidence. Data quality (the seeds' checks): signals and actions
vary over time and are finite, not frozen or all zero.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from salus_engine import OUTCOME_NAMES
from salus_engine.signals import SIGNAL_NAMES
from salus_engine.store.horizon_labels import make_horizon_labels
from salus_engine.store.layout import STAGING_DIR, StoreError
from salus_engine.store.reader import Episode, EpisodeStore, damage

KEPT_ARRAYS = ("actions", "signals", "horizon_labels", "features", "hidden_features")
"""Arrays whose values the data-quality checks use; the others are read chunk by chunk and dropped."""


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


def _read_every_chunk(array: zarr.Array, where: str, name: str, keep: bool, problems: list[str]) -> np.ndarray | None:
    """Reads `array` one chunk at a time: a checksum mismatch, a truncated or a missing chunk is a
    problem naming the chunk. Returns the whole array when `keep` and every chunk was readable."""
    shape, chunks = tuple(array.shape), tuple(array.chunks)
    out = np.empty(shape, dtype=array.dtype) if keep else None
    ok = True
    for coords in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunks))):
        selection = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, chunks, shape))
        try:
            block = array[selection]
        except Exception as err:  # zarr and the codecs raise several types for a damaged chunk
            problems.append(f"{where}: array '{name}' chunk {array.metadata.encode_chunk_key(coords)} is damaged "
                            f"({damage(err)})")
            ok = False
            continue
        if out is not None:
            out[selection] = block
    return out if ok else None


def verify_store(path: str | Path) -> VerifyReport:
    """Checks the store at `path`; never raises for a damaged store, it reports the problem.

    Structure (the same checks the reader and --resume refuse a store for, from
    `salus_engine.store.checks`), then every chunk of every array (images too) is read, which checks
    its crc32c checksum, then the data quality.

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
    if not store.has_checksums:
        report.warnings.append(f"the store has no checksums (format version {store.format_version}): a damaged "
                               "chunk can go unnoticed; re-collect it to get checksums")
    if (store.path / STAGING_DIR).exists():
        report.warnings.append("a partial episode from an interrupted run is in .staging; 'salus collect --resume' discards it")
    scan = store.scan()
    report.warnings.extend(scan.warnings)
    report.problems.extend(text if episode_id is None else f"episode {episode_id}: {text}"
                           for episode_id, text in scan.problems)
    ids = scan.ids
    report.episodes = len(ids)
    if not ids:
        # intact but empty (e.g. stopped or killed before its first episode was complete): not damage
        report.warnings.append("the store holds no complete episode yet; continue it with 'salus collect --resume'")
        return report
    members = int(attrs["ensemble_size"])
    horizons = store.horizons
    threshold = float(attrs.get("sim_config", {}).get("collision_force_n", 0.0))
    all_signals, all_actions = [], []
    for episode_id in ids:
        where = f"episode {episode_id}"
        meta = scan.metas.get(episode_id)
        if meta is None:
            continue  # its structural problems are reported above
        name = OUTCOME_NAMES.get(meta.failure_type, "?")
        report.outcomes[name] = report.outcomes.get(name, 0) + 1
        episode = store.episode_by_id(episode_id)
        data: dict[str, np.ndarray | None] = {}
        for key in store.array_names():
            try:
                array = episode.open_zarr_array(key)
            except Exception as err:  # zarr raises several types for damaged metadata
                report.problems.append(f"{where}: array '{key}' is unreadable ({damage(err)})")
                data[key] = None
                continue
            data[key] = _read_every_chunk(array, where, key, key in KEPT_ARRAYS, report.problems)
        _check_episode_data(episode, data, threshold, int(attrs["base_seed"]), horizons, report)
        if data["signals"] is not None and data["actions"] is not None:
            all_signals.append(data["signals"])
            all_actions.append(data["actions"])
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


def _check_episode_data(episode: Episode, data: dict[str, np.ndarray | None], threshold: float, base_seed: int,
                        horizons: tuple[int, ...], report: VerifyReport) -> None:
    """Data quality of one structurally sound episode: seed, labels against the evidence and the
    stored horizon labels, finite and moving signals and actions. Drops unusable arrays from `data`."""
    meta = episode.meta
    where = f"episode {meta.episode_id}"
    t = meta.episode_length
    if meta.seed != base_seed + meta.episode_id:
        report.problems.append(f"{where}: seed {meta.seed} is not base seed + id")
    if meta.failure_type == 0 and "max_contact_force_n" in meta.evidence:
        try:
            force = float(meta.evidence["max_contact_force_n"])
        except (TypeError, ValueError):
            report.problems.append(f"{where}: evidence max_contact_force_n is not a number")
        else:
            if force < threshold:
                report.problems.append(f"{where}: labelled collision but the recorded force "
                                       f"{force:.1f} N is below {threshold:.1f} N")
    if meta.failure_type >= 0 and not meta.evidence:
        report.problems.append(f"{where}: a failure without physics evidence")
    labels = data["horizon_labels"]
    if labels is not None:
        expected_labels = make_horizon_labels(meta.failure_type, meta.failure_step, t, horizons)
        if not np.array_equal(labels, expected_labels):
            report.problems.append(f"{where}: horizon_labels disagree with failure_type/failure_step")
    for key in ("features", "hidden_features"):
        if data.get(key) is not None and not np.all(np.isfinite(data[key])):
            report.problems.append(f"{where}: NaN or inf in {key} (the signal families)")
    signals, actions = data["signals"], data["actions"]
    if signals is None or actions is None:
        return
    if not (np.all(np.isfinite(signals)) and np.all(np.isfinite(actions))):
        report.problems.append(f"{where}: NaN or inf in signals or actions")
        data["signals"] = data["actions"] = None
        return
    if t > 2 and float(actions.std(axis=0).max()) == 0.0:
        report.problems.append(f"{where}: actions are frozen (identical at every step)")
