"""Per-step signals and horizon labels of a collection store, held in memory, and the episode split.

`signals` (T, 6), `horizon_labels` (T, H, 4), `states` (T, 8), `actions` (T, 7) and, in a format-3 store, the signal
families (`features` (T, F), `hidden_features` (T, D)) are read at load; the front camera's images
only when the `target_view` input family is asked for (`SignalData.inputs`). Rows of every array
are the steps of all episodes concatenated in episode-id order. Splits are made by episode, never by
step, stratified by outcome, and seeded, so that no episode contributes to two splits.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salus_engine import FAILURE_TYPES, OUTCOME_NAMES
from salus_engine.command import COMMAND, COMMAND_COLUMNS, CommandTracker
from salus_engine.predictor import SPLIT_NAMES
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.inputs import assemble, available_columns, resolve_families
from salus_engine.signals import SIGNAL_NAMES
from salus_engine.store import EpisodeStore, make_horizon_labels
from salus_engine.target_view import CAMERA, TARGET_VIEW, TargetView, recorded_frames

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.5, "val": 0.1, "calibration": 0.2, "test": 0.2}
"""Share of the successful episodes in each split. Failed episodes are not needed for calibration
(which uses successes only), so their calibration share goes to `train`: 0.7 / 0.1 / 0 / 0.2. A fifth
of the successes calibrates, so that a 2,000-episode store at a third successes calibrates on over
100 (a conformal threshold from fewer is coarse: its false-alarm rate varies by about 1 / n)."""

DEFAULT_CONTROL_HZ = 30.0
"""Control rate used for lead times in seconds when a store does not record `sim_config.control_hz`."""


@dataclass(frozen=True)
class EpisodeInfo:
    """The metadata of one episode that the predictor uses."""

    episode_id: int
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout."""
    failure_step: int
    """0-based step of the outcome."""
    length: int
    """Steps T."""


@dataclass
class SignalData:
    """Every step of every episode of a store, in memory.

    N = total steps, E = episodes, H = horizons.
    """

    path: Path
    signals: np.ndarray
    """(N, 6) float32, order of `SIGNAL_NAMES`."""
    labels: np.ndarray
    """(N, H, 4) uint8 horizon labels (docs/data-format.md)."""
    episode_index: np.ndarray
    """(N,) int32: position of the row's episode in `episodes`."""
    step: np.ndarray
    """(N,) int32: 0-based step of the row within its episode."""
    episodes: list[EpisodeInfo]
    horizons: tuple[int, ...]
    control_hz: float
    """Control rate, Hz, from the store's `sim_config` (lead times in seconds = steps / control_hz)."""
    identity: dict[str, Any]
    """What identifies the store (`created`, `base_seed`): a checkpoint's split applies only to it."""
    features: np.ndarray | None = None
    """(N, F) float32 the store's signal-family columns (`feature_names`), None before format 3."""
    hidden: np.ndarray | None = None
    """(N, D) float32 hidden features, None when not recorded."""
    states: np.ndarray | None = None
    """(N, 8) float32 robot states (`salus_engine.store.layout.STATE_NAMES`): joint angles (rad), gripper
    opening (m)."""
    feature_names: list[str] = dataclasses.field(default_factory=list)
    columns: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Input family -> columns this store offers (`salus_engine.predictor.inputs.available_columns`)."""
    cameras: tuple[str, ...] = ()
    """The store's recorded cameras, in the order of its `images` camera axis."""
    image_size: int = 0
    """The store's camera image side, pixels."""
    views: np.ndarray | None = None
    """(N, 3) float32 `target_view` columns, computed from the front camera's frames on first use."""
    actions: np.ndarray | None = None
    """(N, 7) float32 executed actions (env units)."""
    commands: np.ndarray | None = None
    """(N, 4) float32 `command` columns, computed from the states and actions on first use."""

    def inputs(self, families: tuple[str, ...]) -> np.ndarray:
        """(N, F_in) float32 the given input families' columns (`salus_engine.predictor.inputs`).

        Raises:
            StoreError: a damaged image chunk, when `target_view` is among `families`.
        """
        views = self.target_views() if TARGET_VIEW in families else None
        commands = self.command_columns() if COMMAND in families else None
        return assemble(families, self.columns, self.signals, self.features, self.hidden, self.step, self.feature_names,
                        self.states, views, commands)

    def command_columns(self) -> np.ndarray:
        """(N, 4) float32 the `command` columns of every row (`salus_engine.command`), computed from the
        states and executed actions once (about 2 s per 100,000 steps) and kept."""
        if self.commands is None:
            tracker = CommandTracker()
            offsets = self.offsets
            parts = [tracker.episode(self.states[offsets[e]:offsets[e + 1]], self.actions[offsets[e]:offsets[e + 1]])
                     for e in range(len(self.episodes))]
            self.commands = (np.concatenate(parts) if parts else np.zeros((0, len(COMMAND_COLUMNS)))).astype(np.float32)
        return self.commands

    def target_views(self) -> np.ndarray:
        """(N, 3) float32 the `target_view` columns of every row (`salus_engine.target_view`), read from
        the store's front-camera frames once (two reader threads; about 45 s for 230,000 steps on
        2 CPU cores) and kept.

        Raises:
            PredictorError: the store does not record the front camera.
            StoreError: a damaged image chunk (one line naming the episode).
        """
        if self.views is not None:
            return self.views
        if CAMERA not in self.cameras:
            raise PredictorError(f"{self.path} does not record the {CAMERA} camera, which the target_view family "
                                 f"reads; collect with --cameras {CAMERA} or leave target_view out of --features")
        store = EpisodeStore.open(self.path)
        offsets = self.offsets
        log.info("target_view: reading the %s camera of %d episodes in %s", CAMERA, len(self.episodes), self.path)

        def one(chunk: list[int]) -> list[np.ndarray]:
            view = TargetView(self.image_size)
            out = []
            for e in chunk:
                frames = recorded_frames(store, self.episodes[e].episode_id)
                out.append(view.episode(frames, self.states[offsets[e]:offsets[e + 1]]))
            return out

        order = np.arange(len(self.episodes))
        halves = [list(order[: len(order) // 2]), list(order[len(order) // 2:])]
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="target-view") as pool:
            parts = [rows for result in pool.map(one, halves) for rows in result]
        self.views = np.concatenate(parts).astype(np.float32)
        return self.views

    def resolve(self, families: tuple[str, ...]) -> tuple[str, ...]:
        """`--features` resolved against this store (`all`: every family it offers).

        Raises:
            PredictorError: a family the store does not record.
        """
        return resolve_families(families, self.columns, str(self.path))

    @property
    def offsets(self) -> np.ndarray:
        """(E + 1,) int64 row offsets: episode e holds rows offsets[e]:offsets[e + 1]."""
        return np.concatenate([[0], np.cumsum([e.length for e in self.episodes])]).astype(np.int64)

    @property
    def episode_ids(self) -> np.ndarray:
        return np.array([e.episode_id for e in self.episodes], dtype=np.int64)

    @property
    def outcomes(self) -> np.ndarray:
        """(E,) int failure type per episode (-1 success)."""
        return np.array([e.failure_type for e in self.episodes], dtype=np.int64)

    def offsets_of(self, episode_ids: np.ndarray | list[int]) -> np.ndarray:
        """(E' + 1,) int64 row offsets of the given episodes' rows as `rows` returns them (episode order)."""
        wanted = np.isin(self.episode_ids, np.asarray(episode_ids, dtype=np.int64))
        lengths = [e.length for e, keep in zip(self.episodes, wanted) if keep]
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)

    def rows(self, episode_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row indices (int64, ascending) of the given episodes' steps."""
        wanted = np.isin(self.episode_ids, np.asarray(episode_ids, dtype=np.int64))
        return np.flatnonzero(wanted[self.episode_index])

    def outcome_counts(self, episode_ids: np.ndarray | list[int] | None = None) -> dict[str, int]:
        """Episodes per outcome name (`success`, `collision`, ...)."""
        outcomes = self.outcomes
        if episode_ids is not None:
            outcomes = outcomes[np.isin(self.episode_ids, np.asarray(episode_ids, dtype=np.int64))]
        return {OUTCOME_NAMES[c]: int((outcomes == c).sum()) for c in sorted(OUTCOME_NAMES)}


def load_signal_data(path: str | Path) -> SignalData:
    """Reads the signals, horizon labels and metadata of every complete episode of a store.

    Args:
        path: a collection store folder (docs/data-format.md).

    Returns:
        `SignalData` with N = total steps.

    Raises:
        StoreError: missing or damaged store: anything `salus verify` finds in the metadata (gaps in
            the episode ids, an episode folder without `zarr.json`, wrong-typed or impossible episode
            attributes, arrays that disagree with the episode length) or a damaged chunk (checksum,
            truncated, missing); one line naming the episode and telling to run `salus verify`.
        PredictorError: a store recorded with another signal set or with other failure types, or
            with the runtime monitor acting on the rollouts, no
            episodes, NaN/inf signals, or stored labels that disagree with `failure_step` (one line
            naming the episode and what to do).
    """
    store = EpisodeStore.open(path)
    names = tuple(store.attrs.get("signal_names", ()))
    if names != SIGNAL_NAMES:
        raise PredictorError(f"{store.path}: recorded with signals {list(names)}, this SALUS predicts from "
                             f"{list(SIGNAL_NAMES)}; re-collect the store with this version")
    if tuple(store.attrs.get("failure_types", ())) != FAILURE_TYPES:
        raise PredictorError(f"{store.path}: failure types {store.attrs.get('failure_types')} differ from "
                             f"{list(FAILURE_TYPES)}; re-collect the store with this version")
    monitor = store.attrs.get("monitor") or {}
    if monitor and monitor.get("trigger") != "none":
        raise PredictorError(f"{store.path}: recorded with the runtime monitor acting ({monitor.get('trigger')} trigger), "
                             "so its rollouts and outcomes are not the policy's own; train on a collection without "
                             "--monitor (or a trial's 'none' arm)")
    store.check()  # the structural checks of 'salus verify': refuses a damaged store in one line
    if len(store) == 0:
        raise PredictorError(f"{store.path}: the store holds no complete episode; collect episodes first")
    horizons = store.horizons
    metas = store.metas()
    feature_names = store.feature_names
    extra = (("features",) if feature_names else ()) + (("hidden_features",) if store.hidden_dim else ())
    arrays = store.read_arrays(("signals", "horizon_labels", "states", "actions", *extra), [m.episode_id for m in metas])
    signals, labels, episodes = [], [], []
    for meta, read in zip(metas, arrays):
        sig = np.asarray(read["signals"], dtype=np.float32)
        lab = np.asarray(read["horizon_labels"], dtype=np.uint8)
        length = meta.episode_length  # the structural check matched every array's shape to it
        for name in ("states", "actions", *extra):
            if not np.isfinite(np.asarray(read[name], dtype=np.float32)).all():
                raise PredictorError(f"{store.path}: episode {meta.episode_id} has NaN or inf {name}; re-collect it "
                                     "or remove the episode before training")
        if not np.isfinite(sig).all():
            bad_step = int(np.flatnonzero(~np.isfinite(sig).all(axis=1))[0])
            raise PredictorError(f"{store.path}: episode {meta.episode_id} has NaN or inf signals (first at step "
                                 f"{bad_step}); re-collect it or remove the episode before training")
        expected = make_horizon_labels(meta.failure_type, meta.failure_step, length, horizons)
        if not np.array_equal(expected, lab):
            raise PredictorError(f"{store.path}: episode {meta.episode_id}'s horizon labels disagree with its "
                                 f"failure_step {meta.failure_step}; run 'salus verify {store.path}'")
        signals.append(sig)
        labels.append(lab)
        episodes.append(EpisodeInfo(int(meta.episode_id), int(meta.failure_type), int(meta.failure_step), length))
    lengths = np.array([e.length for e in episodes])
    sim_config = store.attrs.get("sim_config") or {}
    return SignalData(
        path=store.path,
        signals=np.concatenate(signals),
        labels=np.concatenate(labels),
        episode_index=np.repeat(np.arange(len(episodes), dtype=np.int32), lengths),
        step=np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
        episodes=episodes,
        horizons=horizons,
        control_hz=float(sim_config.get("control_hz", DEFAULT_CONTROL_HZ)),
        identity={"created": store.attrs.get("created"), "base_seed": store.attrs.get("base_seed")},
        features=np.concatenate([r["features"] for r in arrays]).astype(np.float32) if feature_names else None,
        hidden=np.concatenate([r["hidden_features"] for r in arrays]).astype(np.float32) if store.hidden_dim else None,
        states=np.concatenate([r["states"] for r in arrays]).astype(np.float32),
        actions=np.concatenate([r["actions"] for r in arrays]).astype(np.float32),
        feature_names=list(feature_names),
        columns=available_columns(store.feature_families, store.hidden_dim, store.cameras),
        cameras=store.cameras,
        image_size=int(store.attrs.get("image_size", 0)),
    )


def require_failures(data: SignalData) -> None:
    """Checks that the store holds at least one failed episode.

    Raises:
        PredictorError: every episode succeeded.
    """
    counts = data.outcome_counts()
    if counts["success"] == sum(counts.values()):
        raise PredictorError(f"{data.path}: all {counts['success']} episodes succeeded, so there is no failure to "
                             "learn; collect more episodes (or raise sim randomization_scale)")


def _largest_remainder(n: int, fractions: list[float]) -> np.ndarray:
    """Integer counts summing to n, proportional to fractions; remainders go first to the later splits
    (test, calibration, val) so that a small class still reaches the held-out splits."""
    raw = np.asarray(fractions, dtype=float) / sum(fractions) * n
    counts = np.floor(raw).astype(int)
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), -i))
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    return counts


def split_episodes(episode_ids: np.ndarray, outcomes: np.ndarray, seed: int = 0,
                   fractions: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Splits episodes into `SPLIT_NAMES`, stratified by outcome, reproducibly from `seed`.

    Within each outcome (success and each failure type) the episodes are shuffled with
    `numpy.random.default_rng(seed)` and dealt out by the largest-remainder rule. Successes use
    `fractions`; failures use the same with the calibration share moved to train (calibration uses
    successful episodes only).

    Args:
        episode_ids: (E,) int episode ids.
        outcomes: (E,) int failure type per episode (-1 success).
        seed: split seed.
        fractions: share per split name (default `DEFAULT_FRACTIONS`).

    Returns:
        split name -> sorted int64 array of episode ids; every id is in exactly one split.

    Raises:
        PredictorError: fewer episodes than needed to give train, val and test an episode each.
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    episode_ids = np.asarray(episode_ids, dtype=np.int64)
    outcomes = np.asarray(outcomes, dtype=np.int64)
    if len(episode_ids) < 4:
        raise PredictorError(f"only {len(episode_ids)} episodes; train, val, calibration and test need at least "
                             "4 (collect 200 or more for meaningful results)")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for code in sorted(set(outcomes.tolist())):
        ids = rng.permutation(np.sort(episode_ids[outcomes == code]))
        shares = [fractions[name] for name in SPLIT_NAMES]
        if code != -1:
            shares = [shares[0] + shares[2], shares[1], 0.0, shares[3]]
        counts = _largest_remainder(len(ids), shares)
        start = 0
        for name, count in zip(SPLIT_NAMES, counts):
            parts[name].extend(ids[start:start + count].tolist())
            start += count
    return {name: np.sort(np.array(parts[name], dtype=np.int64)) for name in SPLIT_NAMES}


def save_splits(path: Path, splits: dict[str, np.ndarray], seed: int, identity: dict[str, Any]) -> None:
    """Writes `splits.json`: the seed, the store identity and the episode ids of every split."""
    payload = {"seed": seed, "store": identity, **{name: [int(i) for i in splits[name]] for name in SPLIT_NAMES}}
    path.write_text(json.dumps(payload, indent=1) + "\n")


def load_splits(path: Path) -> dict[str, np.ndarray]:
    """Reads `splits.json`.

    Raises:
        PredictorError: missing or unreadable file.
    """
    try:
        payload = json.loads(path.read_text())
        return {name: np.asarray(payload[name], dtype=np.int64) for name in SPLIT_NAMES}
    except FileNotFoundError:
        raise PredictorError(f"{path} not found; the checkpoint is incomplete, train it again with "
                             "'salus train'") from None
    except (ValueError, KeyError, TypeError) as err:
        raise PredictorError(f"{path} is damaged ({err!s}); train the checkpoint again with 'salus train'") from None


def window_features(signals: np.ndarray, step: np.ndarray, window: int) -> np.ndarray:
    """Stacks each step's signals with those of the `window - 1` previous steps of the same episode.

    Before an episode's first step the first step is repeated (the online monitor does the same).

    Args:
        signals: (N, 6) float32 rows of whole episodes, consecutive within an episode.
        step: (N,) int step of each row within its episode.
        window: steps per input, >= 1.

    Returns:
        (N, window * 6) float32, oldest step first: columns [j*6:(j+1)*6] hold step t - (window-1-j).
    """
    if window == 1:
        return np.ascontiguousarray(signals, dtype=np.float32)
    lags = np.arange(window - 1, -1, -1)
    rows = np.arange(len(signals))[:, None] - np.minimum(lags[None, :], np.asarray(step)[:, None])
    return signals[rows].reshape(len(signals), window * signals.shape[1]).astype(np.float32, copy=False)


def history_features(inputs: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Each step's inputs with their running mean and running maximum over the episode so far.

    This is what the `outcome` model reads (`salus_engine.predictor.models`): the whole history of the
    episode, summarised causally, as SAFE's episode-level failure probe sees the rollout so far
    ("SAFE: Multitask Failure Detection for Vision-Language-Action Models", NeurIPS 2025,
    github.com/vla-safe/SAFE). The online monitor keeps the same running sums (`OnlinePredictor`).

    Args:
        inputs: (N, F) float32 rows of whole episodes, consecutive within an episode.
        step: (N,) int step of each row within its episode (0 at each episode's first row).

    Returns:
        (N, 3 * F) float32: columns [0:F] the step's inputs, [F:2F] their mean over steps 0..t of the
        episode, [2F:3F] their maximum over steps 0..t.
    """
    x = np.asarray(inputs, dtype=np.float64)
    starts = np.flatnonzero(np.asarray(step) == 0)
    ends = np.append(starts[1:], len(x))
    mean = np.empty_like(x)
    peak = np.empty_like(x)
    for start, end in zip(starts, ends):
        block = x[start:end]
        mean[start:end] = np.cumsum(block, axis=0) / np.arange(1, end - start + 1)[:, None]
        peak[start:end] = np.maximum.accumulate(block, axis=0)
    return np.concatenate([x, mean, peak], axis=1).astype(np.float32)
