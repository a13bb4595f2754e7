"""Training a failure predictor on a store's train split: `run_training` (the `salus train` job) and
`fit` (the loop itself, also used for the permutation control).

Loss: binary cross-entropy on the sigmoid outputs. For the horizon models each output's positives
are weighted by n_negative / n_positive of the training split (clipped to [1, 1000]) because failures
are rare steps. The `outcome` model's targets are the episode's outcome at every step, not rare; its
outputs are unweighted and each step is weighted by 1 / (its episode's length), so that every
episode counts the same whatever its length; with `peak_weight` (`fit`) the success-peak term
(`success_peak_loss`) is added to every mini-batch, over a share of the successful training episodes.
Optimiser: AdamW; learning rate: cosine decay over the
planned epochs to 5 % of `lr`; early stopping when the validation loss has not improved for
`patience` epochs. The whole training split
is held as one tensor and shuffled once per epoch; mini-batches are slices of it (no DataLoader).
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from salus_engine.config import TrainConfig
from salus_engine.events import EpochFinished, EventSink, LogLine, TrainingFinished, TrainingStarted, TrainSummary, discard
from salus_engine.predictor.checkpoint import WEIGHT_FILES, check_out_folder, folder_writes, save_weights, write_config
from salus_engine.predictor.dataset import (
    SignalData,
    load_signal_data,
    require_failures,
    save_splits,
    split_episodes,
    history_features,
    window_features,
)
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.inputs import input_names, parse_input_families
from salus_engine.predictor.spec import DEFAULT_ALARM_SCORE, DEFAULT_HIDDEN, DEFAULT_MEMBERS
from salus_engine.predictor.alarm_score import (
    PROFILE_RULES,
    PROFILE_WEIGHT,
    alarm_scores,
    needs_profile,
    success_profile,
)
from salus_engine.predictor.models import ModelSpec, build_model, count_parameters, model_scores, temporal_scores

MAX_POS_WEIGHT = 1000.0
DEFAULT_PEAK_WEIGHT = 1.0
"""The success-peak weight of an outcome model scored by `noisy-or-excess` when `--peak-weight` is not
given (`peak_weight_for`)."""
MIN_LR_FRACTION = 0.05


@dataclass
class EpochRecord:
    epoch: int
    """1-based."""
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    """Wall-clock time of the epoch, s."""
    best: bool


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor] | None
    """State dict with the lowest validation loss (None when stopped before the first epoch)."""
    final_state: dict[str, torch.Tensor]
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    stopped: bool = False
    """True when the stop event ended training."""
    early_stopped: bool = False
    pos_weight: list[float] = field(default_factory=list)


def targets_for(spec: ModelSpec, labels: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Training targets of a model kind from horizon labels.

    Args:
        labels: (N, H, 4) uint8 horizon labels of whole episodes.
        offsets: (E + 1,) row offsets of the episodes; needed by `outcome`.

    Returns:
        (N, 16) float32 (`multi-horizon` and `temporal`, column h*4+k), (N, 4) float32 (`single-horizon`:
        the longest horizon) or (N, 4) float32 (`outcome`: at every step of an episode, 1 for the failure
        type its last step is labelled with, all 0 for a success).
    """
    if spec.kind == "outcome":
        if offsets is None:
            raise ValueError("the outcome model's targets need the episodes' row offsets")
        lengths = np.diff(offsets)
        last = labels[offsets[1:][lengths > 0] - 1, -1, :].astype(np.float32)
        return np.repeat(last, lengths[lengths > 0], axis=0)
    if spec.kind == "single-horizon":
        return labels[:, -1, :].astype(np.float32)
    return labels.reshape(len(labels), -1).astype(np.float32)


def output_name(spec: ModelSpec, index: int) -> str:
    """Readable name of output `index`, e.g. `drop@10` (failure type @ horizon in steps)."""
    types = len(spec.failure_types)
    if spec.kind == "outcome":
        return f"{spec.failure_types[index]}@episode"
    if spec.kind == "single-horizon":
        return f"{spec.failure_types[index]}@{spec.horizons[-1]}"
    return f"{spec.failure_types[index % types]}@{spec.horizons[index // types]}"


def positive_weights(targets: np.ndarray) -> np.ndarray:
    """Per-output n_negative / n_positive, clipped to [1, 1000]; 1 for an output with no positive."""
    pos = targets.sum(axis=0)
    neg = len(targets) - pos
    weights = np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)
    return np.clip(weights, 1.0, MAX_POS_WEIGHT).astype(np.float32)


def episode_positive_weights(targets: np.ndarray, offsets: np.ndarray, balance: float = 0.0) -> np.ndarray:
    """Per-output positive weights of the outcome model: (n_negative / n_positive) ** `balance`, counted
    over episodes (the targets are constant within an episode, and `episode_weights` gives every episode
    the same weight), clipped to [1, MAX_POS_WEIGHT]; 1 for an output with no positive episode.

    Args:
        targets: (N, C) 0/1 targets of every row; offsets: (E + 1,) row offsets of the episodes.
        balance: the exponent b in [0, 1]; 0 gives all ones.

    Raises:
        ValueError: `balance` outside [0, 1].
    """
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"the balance must be in [0, 1], got {balance}")
    starts = np.asarray(offsets)[:-1]
    firsts = targets[starts[starts < len(targets)]]
    return (positive_weights(firsts) ** balance).astype(np.float32)  # in [1, MAX_POS_WEIGHT] as they are


def episode_weights(offsets: np.ndarray) -> np.ndarray:
    """(N,) float32 row weights 1 / (episode length), scaled to mean 1: every episode weighs the same."""
    lengths = np.diff(np.asarray(offsets))
    weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths)
    return (weights / weights.mean()).astype(np.float32) if len(weights) else weights.astype(np.float32)


@contextmanager
def torch_threads(threads: int | None):
    """Temporarily sets torch's CPU thread count."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _adamw(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # a torch without the fused CPU kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=False)


def _padded(x: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Episodes as padded sequences: x (E, T_max, in), y (E, T_max, out), mask (E, T_max) bool."""
    lengths = np.diff(offsets)
    count, longest = len(lengths), int(lengths.max()) if len(lengths) else 0
    xs = np.zeros((count, longest, x.shape[1]), np.float32)
    ys = np.zeros((count, longest, y.shape[1]), np.float32)
    mask = np.zeros((count, longest), bool)
    for e, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])):
        n = end - start
        xs[e, :n], ys[e, :n], mask[e, :n] = x[start:end], y[start:end], True
        xs[e, n:] = x[end - 1]  # padding after the end never reaches earlier steps (causal)
    return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(mask)


def fit(
    spec: ModelSpec,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    patience: int = 10,
    seed: int = 0,
    stop: threading.Event | None = None,
    on_epoch: Callable[[EpochRecord, nn.Module], None] | None = None,
    train_offsets: np.ndarray | None = None,
    val_offsets: np.ndarray | None = None,
    episodes_per_batch: int = 16,
    peak_weight: float = 0.0,
    balance: float = 0.0,
) -> FitResult:
    """Trains the network of `spec` on in-memory arrays.

    Args:
        spec: the network (`build_model`).
        x_train, x_val: (N, spec.n_inputs) float32 raw inputs (window-stacked for an MLP).
        y_train, y_val: (N, spec.n_outputs) float32 0/1 targets (see `targets_for`).
        train_offsets, val_offsets: (E + 1,) row offsets of the episodes, required by a `temporal`
            model, which trains on whole episodes (`episodes_per_batch` per mini-batch, padding
            masked out of the loss); an MLP trains on shuffled steps (`batch_size` per mini-batch).
        stop: checked between epochs; when set, training ends after the current epoch.
        on_epoch: called after every epoch with its record and the model (in eval mode).
        peak_weight: for an `outcome` model whose alarm score has a success profile: the weight of
            the success-peak term (`success_peak_loss`) added to every mini-batch's loss; 0 (default)
            leaves the step loss alone. `train_loss` in the history is the step loss without it.
        balance: for an `outcome` model: the exponent b of each failure type's positive weight
            (n_negative / n_positive)^b, counted in training episodes (`episode_positive_weights`);
            0 (default) leaves the outputs unweighted, 1 weighs a rare type's episodes as much as all
            the others together.

    Raises:
        ValueError: missing offsets for a temporal or outcome model; a peak weight for another model
            kind or rule, or a negative one; a balance outside [0, 1] or for another model kind.

    Returns:
        `FitResult` with the best and final weights and the per-epoch history.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(spec)
    sequences = spec.kind == "temporal"
    if sequences and (train_offsets is None or val_offsets is None):
        raise ValueError("a temporal model trains on whole episodes: pass train_offsets and val_offsets")
    x_rows = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    model.set_normalisation(x_rows.mean(dim=0), x_rows.std(dim=0))
    per_episode = spec.kind == "outcome"
    if per_episode and (train_offsets is None or val_offsets is None):
        raise ValueError("the outcome model weights each episode equally: pass train_offsets and val_offsets")
    if balance and not per_episode:
        raise ValueError(f"a balance applies to the outcome model only, not to a {spec.kind} model")
    pos_weight = episode_positive_weights(y_train, train_offsets, balance) if per_episode else positive_weights(y_train)
    members = spec.members  # each member's outputs follow the previous member's, each with its own loss
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.from_numpy(np.tile(pos_weight, members)), reduction="none")
    wt = torch.from_numpy(episode_weights(train_offsets)) if per_episode else None
    peaks = _SuccessPeaks(spec, x_rows, y_train, train_offsets, peak_weight) if peak_weight else None
    wv = torch.from_numpy(episode_weights(val_offsets)) if per_episode else None
    if sequences:
        xt, yt, mt = _padded(x_train, y_train, train_offsets)
        xv, yv, mv = _padded(x_val, y_val, val_offsets)
        step = max(1, int(episodes_per_batch))
    else:
        xt, yt = x_rows, torch.from_numpy(np.ascontiguousarray(y_train, dtype=np.float32))
        xv = torch.from_numpy(np.ascontiguousarray(x_val, dtype=np.float32))
        yv = torch.from_numpy(np.ascontiguousarray(y_val, dtype=np.float32))
        mt = mv = None
        step = batch_size

    def loss_of(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                weight: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        per_output = criterion(model(x), y if members == 1 else y.repeat(1, members))  # members: MLPs, y (N, out)
        if weight is not None:
            return (per_output.mean(dim=1) * weight).sum() / weight.sum(), len(x)
        if mask is None:
            return per_output.mean(), len(x)
        valid = mask[..., None].to(per_output.dtype)
        count = int(mask.sum())
        return (per_output * valid).sum() / max(1, count * per_output.shape[-1]), count

    optimizer = _adamw(model.parameters(), lr, weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs), eta_min=lr * MIN_LR_FRACTION)
    result = FitResult(best_state=None, final_state=model.state_dict(), pos_weight=pos_weight.tolist())
    n = len(xt)
    bad_epochs = 0
    for epoch in range(1, epochs + 1):
        if stop is not None and stop.is_set():
            result.stopped = True
            break
        started = time.perf_counter()
        current_lr = optimizer.param_groups[0]["lr"]
        model.train()
        order = torch.randperm(n, generator=generator)
        if peaks is not None:
            peaks.start_epoch(model, -(-n // step), generator)
            model.train()
        total, seen = 0.0, 0
        for batch, start in enumerate(range(0, n, step)):
            index = order[start:start + step]
            optimizer.zero_grad(set_to_none=True)
            loss, count = loss_of(xt[index], yt[index], None if mt is None else mt[index],
                                  None if wt is None else wt[index])
            total_loss = loss if peaks is None else loss + peak_weight * peaks.loss(model, batch)
            total_loss.backward()
            optimizer.step()
            total += float(loss.detach()) * count
            seen += count
        schedule.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_of(xv, yv, mv, wv)[0]) if len(xv) else float("nan")
        train_loss = total / max(1, seen)
        is_best = val_loss < result.best_val_loss - 1e-7 or (result.best_state is None)
        if is_best:
            result.best_val_loss = val_loss
            result.best_epoch = epoch
            result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            bad_epochs = 0
        else:
            bad_epochs += 1
        record = EpochRecord(epoch, train_loss, val_loss, current_lr, time.perf_counter() - started, is_best)
        result.history.append(record)
        if on_epoch is not None:
            on_epoch(record, model)
        if patience and bad_epochs >= patience:
            result.early_stopped = True
            break
    result.final_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return result


def success_peak_loss(probabilities: torch.Tensor, mask: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """The success-peak term: the mean over successful episodes of their highest `noisy-or-excess`
    alarm score, the score whose running maximum the conformal threshold is set on
    (`salus_engine.predictor.alarm_score`). A multiple-instance term on the negative bags: an episode
    raises a false alarm through its highest step alone, so that step, not the mean step, is pushed
    down (as in multiple-instance learning for anomaly detection, Sultani, Chen and Shah, "Real-world
    Anomaly Detection in Surveillance Videos", CVPR 2018, arXiv 1801.04264, there with a ranking loss).

    Args:
        probabilities: (E, T, C) failure-type probabilities (members averaged) of E padded successful
            episodes.
        mask: (E, T) bool, True on real steps.
        profile: (T,) the success profile at each step (`success_profile`, held fixed).

    Returns:
        A scalar tensor: mean over episodes of max over steps of noisy-or(p) - PROFILE_WEIGHT * profile.
    """
    return _masked_excess(probabilities, mask, profile).max(dim=1).values.mean()


def _excess(probabilities: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """noisy-or(p) - PROFILE_WEIGHT * profile: (..., C) probabilities and a profile of their shape less C."""
    return 1.0 - torch.prod(1.0 - probabilities, dim=-1) - PROFILE_WEIGHT * profile


def _masked_excess(probabilities: torch.Tensor, mask: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """(E, T) `_excess` of padded episodes, -inf on padding."""
    return _excess(probabilities, profile[None, :]).masked_fill(~mask, float("-inf"))


class _SuccessPeaks:
    """The successful training episodes of an outcome model and the success-peak term of each
    mini-batch: every epoch, the success profile of the current weights is recomputed (held fixed for
    the epoch) and the episodes are shuffled and dealt out over the epoch's mini-batches.

    A term's value and gradient are those of `success_peak_loss`, computed in two passes: the episodes'
    steps without gradient, padded to the longest episode of the mini-batch only, to find each one's
    highest step; then that step alone with gradient (the maximum's gradient reaches that step alone).
    The backward pass then costs one row per episode instead of one per step."""

    def __init__(self, spec: ModelSpec, x_rows: torch.Tensor, y_train: np.ndarray, offsets: np.ndarray | None,
                 weight: float) -> None:
        if weight < 0:
            raise ValueError(f"the success-peak weight must be 0 or more, got {weight}")
        if spec.kind != "outcome" or PROFILE_RULES.get(spec.alarm_score) != "noisy-or" or offsets is None:
            raise ValueError("the success-peak term needs an outcome model with the noisy-or-excess alarm score "
                             "and its episodes' row offsets")
        offsets = np.asarray(offsets)
        lengths = np.diff(offsets)
        ends = offsets[1:] - 1
        success = (lengths > 0) & ~np.asarray(y_train)[np.maximum(ends, 0)].any(axis=1)
        starts, lengths = offsets[:-1][success], lengths[success]
        self.types = len(spec.failure_types)
        self.members = spec.members
        self.x_rows = x_rows
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.lengths = torch.from_numpy(lengths.astype(np.int64))
        longest = int(lengths.max()) if len(lengths) else 0
        index = np.zeros((len(lengths), longest), np.int64)
        mask = np.zeros((len(lengths), longest), bool)
        for e, (a, n) in enumerate(zip(starts, lengths)):
            index[e, :n], mask[e, :n] = np.arange(a, a + n), True
        self.index = torch.from_numpy(index)  # (E, T_max) rows of x_rows; padding points at row 0, masked out
        self.mask = torch.from_numpy(mask)
        self.rows = self.index[self.mask]  # the real steps' rows, episode after episode
        self.profile = torch.zeros(longest)
        self.order = torch.zeros(0, dtype=torch.int64)
        self.per_batch = 0

    def _probabilities(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(..., C) members' mean probabilities of (..., n_inputs) inputs."""
        p = torch.sigmoid(model(x.reshape(-1, x.shape[-1])))
        return p.reshape(*x.shape[:-1], self.members, self.types).mean(dim=-2)

    def start_epoch(self, model: nn.Module, batches: int, generator: torch.Generator) -> None:
        """Recomputes the profile with the current weights (eval mode) and deals the episodes out."""
        count = len(self.lengths)
        if not count:
            return
        model.eval()
        with torch.no_grad():
            p = self._probabilities(model, self.x_rows[self.rows])
        noisy_or = (1.0 - torch.prod(1.0 - p, dim=-1)).numpy()
        self.profile = torch.tensor(success_profile(noisy_or, self.offsets), dtype=torch.float32)
        self.order = torch.randperm(count, generator=generator)
        self.per_batch = -(-count // max(1, batches))

    def loss(self, model: nn.Module, batch: int) -> torch.Tensor:
        """The success-peak term of mini-batch `batch` (0 when no episode is dealt to it)."""
        chosen = self.order[batch * self.per_batch:(batch + 1) * self.per_batch]
        if not len(chosen):
            return torch.zeros(())
        steps = int(self.lengths[chosen].max())
        index, mask = self.index[chosen, :steps], self.mask[chosen, :steps]
        with torch.no_grad():
            peak = _masked_excess(self._probabilities(model, self.x_rows[index]), mask,
                                  self.profile[:steps]).argmax(dim=1)
        at_peak = self._probabilities(model, self.x_rows[index[torch.arange(len(chosen)), peak]])
        return _excess(at_peak, self.profile[peak]).mean()


def _check_config(config: TrainConfig) -> None:
    if config.model != "multi-horizon" and config.window != 1:
        raise PredictorError(f"--window must be 1 for --model {config.model} (only the multi-horizon MLP stacks "
                             f"past steps), got {config.window}")
    if config.model == "temporal" and config.members not in (None, 1):
        raise PredictorError(f"--members must be 1 for --model temporal (members are MLPs), got {config.members}")
    if config.peak_weight and (config.model != "outcome" or config.alarm_score not in (None, "noisy-or-excess")):
        raise PredictorError(f"--peak-weight needs --model outcome with the noisy-or-excess alarm score (got --model "
                             f"{config.model}, --alarm-score {config.alarm_score or 'its default'}); "
                             "leave --peak-weight out")
    parse_input_families(config.features)
    for part in (config.member_features or "").split("/"):
        if part.strip():
            parse_input_families(part)
    out = Path(config.out)
    check_out_folder(out)
    if out.exists() and any(out.iterdir()):
        raise PredictorError(f"{out} already exists and is not empty; choose another --out or remove it")


def takes_peak_term(spec: ModelSpec) -> bool:
    """True for the networks that a success-peak weight applies to: outcome models scored by
    `noisy-or-excess` (`salus train`'s model, and in `salus evaluate` the state-only baseline, the
    controls and the ablation of such a model)."""
    return spec.kind == "outcome" and spec.alarm_score == "noisy-or-excess"


def peak_weight_for(spec: ModelSpec, weight: float | None = None) -> float:
    """The success-peak weight that `spec` trains with: `weight` when given, else `DEFAULT_PEAK_WEIGHT`
    for the networks of `takes_peak_term` and 0 for every other network."""
    if weight is not None:
        return float(weight)
    return DEFAULT_PEAK_WEIGHT if takes_peak_term(spec) else 0.0


def build_spec(data: SignalData, kind: str, features: str | tuple[str, ...], window: int = 1,
               hidden: tuple[int, ...] | None = None, members: int = 1, alarm_score: str | None = None,
               member_features: str | None = None) -> ModelSpec:
    """The network for a store: its input columns are the store's columns of `features`; `alarm_score`
    None takes the kind's default (`DEFAULT_ALARM_SCORE`); `member_features` (`TrainConfig.member_features`:
    family sets separated by `/`, dealt to the members in turn) gives each member its own inputs.

    Raises:
        PredictorError: an unknown family, or one the store does not record; a member family that is
            not among `features`; member sets on a model of one member; an unknown alarm score.
    """
    families = data.resolve(parse_input_families(features))
    columns = input_names(families, data.columns)
    member_inputs: tuple[tuple[str, ...], ...] = ()
    if member_features:
        sets = [data.resolve(parse_input_families(part)) for part in member_features.split("/") if part.strip()]
        outside = [f for family_set in sets for f in family_set if f not in families]
        if outside:
            raise PredictorError(f"--member-features: {outside[0]} is not an input family of the model "
                                 f"({','.join(families)}); add it to --features or leave it out")
        if members < 2 or kind == "temporal":
            raise PredictorError("--member-features needs an MLP of two or more members (--members 2 or more)")
        member_inputs = tuple(input_names(sets[m % len(sets)], data.columns) for m in range(members))
        if all(set(m) == set(columns) for m in member_inputs):
            member_inputs = ()
    return ModelSpec(kind=kind, window=window, hidden=tuple(hidden or DEFAULT_HIDDEN[kind]), horizons=data.horizons,
                     signal_names=columns, features=families, members=members,
                     alarm_score=alarm_score or DEFAULT_ALARM_SCORE.get(kind, "max"), member_inputs=member_inputs)


def restrict_member_features(member_features: str | None, families: tuple[str, ...]) -> str | None:
    """`member_features` (`/`-separated family sets) with every family outside `families` removed and the
    sets left empty dropped; None when no set remains or every set is `families` (all members alike)."""
    if not member_features:
        return None
    sets = [[f for f in parse_input_families(part) if f in families]
            for part in member_features.split("/") if part.strip()]
    sets = [family_set for family_set in sets if family_set]
    if not sets or all(set(family_set) == set(families) for family_set in sets):
        return None
    return "/".join(",".join(family_set) for family_set in sets)


def model_inputs(spec: ModelSpec, data: SignalData) -> np.ndarray:
    """(N, spec.n_inputs) float32 inputs of every row (window-stacked for an MLP with window > 1, with the
    running mean and maximum for `outcome`)."""
    if spec.kind == "outcome":
        return history_features(data.inputs(spec.features), data.step)
    return window_features(data.inputs(spec.features), data.step, spec.window)


def prepare_inputs(spec: ModelSpec, data: SignalData, episode_ids: np.ndarray, x_all: np.ndarray | None = None,
                   labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (n, spec.n_inputs) float32, targets (n, spec.n_outputs) float32, (E + 1,) row offsets)
    of the given episodes' steps, in episode order. `x_all` / `labels`: precomputed `model_inputs` /
    other labels (the permutation control) of every row."""
    rows = data.rows(episode_ids)
    x = (model_inputs(spec, data) if x_all is None else x_all)[rows]
    offsets = data.offsets_of(episode_ids)
    return x, targets_for(spec, (data.labels if labels is None else labels)[rows], offsets), offsets


def with_success_profile(spec: ModelSpec, network: nn.Module, data: SignalData, episode_ids: np.ndarray,
                         x_all: np.ndarray | None = None, labels: np.ndarray | None = None) -> ModelSpec:
    """`spec` with the success profile of a trained `network` when its alarm-score rule needs one
    (`salus_engine.predictor.alarm_score.PROFILE_RULES`), `spec` unchanged otherwise.

    Args:
        spec: the network's spec.
        network: the trained network (eval mode).
        data: the store it was trained on.
        episode_ids: the episodes it was trained on (the training split); their successes give the profile.
        x_all: precomputed `model_inputs(spec, data)` of every row, or None.
        labels: (N, H, 4) the labels it was trained on when not the store's (the permutation control):
            a success is an episode whose last step is labelled with no failure, as `targets_for` reads it.

    Returns:
        The spec with `success_profile` set: per step, the mean of the rule's base score (at the longest
        horizon) over those successful episodes (`salus_engine.predictor.alarm_score.success_profile`).

    Raises:
        PredictorError: the episodes hold no success.
    """
    if not needs_profile(spec.alarm_score):
        return spec
    labels = data.labels if labels is None else labels
    ids = np.sort(np.asarray(episode_ids))
    last_rows = data.offsets[1:][np.isin(data.episode_ids, ids)] - 1
    successes = ids[~labels[last_rows].any(axis=(1, 2))]
    if not len(successes):
        raise PredictorError(f"the {spec.alarm_score!r} alarm score needs successful episodes in the training split; "
                             "collect more episodes or choose --alarm-score noisy-or")
    x, _, offsets = prepare_inputs(spec, data, successes, x_all)
    p = temporal_scores(network, x, offsets) if spec.kind == "temporal" else model_scores(network, x)
    base = alarm_scores(p[:, -1, :], PROFILE_RULES[spec.alarm_score])
    return dataclasses.replace(spec, success_profile=success_profile(base, offsets))


def run_training(config: TrainConfig, sink: EventSink = discard, stop: threading.Event | None = None) -> TrainSummary:
    """The `salus train` job: loads the store, splits it by episode, trains and writes the run folder
    (layout in `salus_engine.predictor.checkpoint`).

    Args:
        config: settings.
        sink: receives `JobStarted`, `LogLine`, one `EpochFinished` per epoch, `JobFinished`.
        stop: checked between epochs; a stop keeps the best weights so far and writes `final`.

    Returns:
        `TrainSummary`.

    Raises:
        PredictorError: bad settings, an existing non-empty --out, a missing or unusable store (no
            failures, NaN signals, other signal set), too few episodes to split; an --out under a
            file, or a run folder that cannot be written (read-only, full disk).
    """
    _check_config(config)
    started = time.perf_counter()
    data = load_signal_data(config.data)
    load_seconds = time.perf_counter() - started
    require_failures(data)
    splits = split_episodes(data.episode_ids, data.outcomes, seed=config.seed)
    train_counts = data.outcome_counts(splits["train"])
    if train_counts["success"] == sum(train_counts.values()):
        raise PredictorError(f"{data.path}: the training split holds no failed episode; collect more episodes")
    members = config.members or (DEFAULT_MEMBERS if config.model == "outcome" else 1)
    spec = build_spec(data, config.model, config.features, config.window, config.hidden, members, config.alarm_score,
                      config.member_features)
    peak_weight = peak_weight_for(spec, config.peak_weight)
    started = time.perf_counter()
    x_all = model_inputs(spec, data)  # reads the front camera's frames when target_view is an input
    inputs_seconds = time.perf_counter() - started
    x_train, y_train, train_offsets = prepare_inputs(spec, data, splits["train"], x_all)
    x_val, y_val, val_offsets = prepare_inputs(spec, data, splits["val"], x_all)
    out = Path(config.out)
    with folder_writes(out):
        out.mkdir(parents=True, exist_ok=True)
        save_splits(out / "splits.json", splits, config.seed, data.identity)
        parameters = count_parameters(build_model(spec))
        samples = {"train": len(x_train), "val": len(x_val)}
        episodes = {name: len(ids) for name, ids in splits.items()}
        base_config: dict[str, Any] = {
            "model": spec.to_json(),
            "parameters": parameters,
            "train": {**dataclasses.asdict(config), "hidden": list(spec.hidden), "peak_weight": peak_weight},
            "store": {"path": str(data.path.resolve()), **data.identity, "episodes": len(data.episodes),
                      "control_hz": data.control_hz, "load_seconds": round(load_seconds, 3),
                      "inputs_seconds": round(inputs_seconds, 3)},
            "splits": {name: data.outcome_counts(ids) for name, ids in splits.items()},
            "samples": samples,
            "result": None,
        }
        write_config(out, base_config)
        sink(TrainingStarted(job="train", total=config.epochs, out=str(out), data=str(data.path), model=spec.kind,
                             parameters=parameters, samples=samples, episodes=episodes))
        sink(LogLine("info", f"read the signals and labels of {len(data.episodes)} episodes ({len(data.signals)} "
                             f"steps) in {load_seconds:.1f} s, the inputs in {inputs_seconds:.1f} s"))
        if data.outcome_counts()["success"] == 0:
            sink(LogLine("warning", f"{data.path} holds no successful episode: training works, but 'salus evaluate' "
                                    "needs successes to calibrate alarms"))
        for k in np.flatnonzero(y_train.sum(axis=0) == 0):
            sink(LogLine("warning", f"output {output_name(spec, int(k))} has no positive step in the training split; "
                                    "it cannot be learned"))
        history_file = (out / "history.jsonl").open("w")

        epochs_since_best = {"n": 0}

        def on_epoch(record: EpochRecord, model: nn.Module) -> None:
            history_file.write(json.dumps(dataclasses.asdict(record)) + "\n")
            history_file.flush()
            if record.best:
                save_weights(model, out / WEIGHT_FILES["best"])
            epochs_since_best["n"] = 0 if record.best else epochs_since_best["n"] + 1
            left = config.patience - epochs_since_best["n"] if config.patience else config.epochs - record.epoch
            sink(EpochFinished(epoch=record.epoch, total=config.epochs, train_loss=record.train_loss,
                               val_loss=record.val_loss, lr=record.lr, best=record.best,
                               patience_left=max(0, left), seconds=record.seconds))

        try:
            with torch_threads(config.threads):
                result = fit(spec, x_train, y_train, x_val, y_val, epochs=config.epochs, batch_size=config.batch_size,
                             lr=config.lr, weight_decay=config.weight_decay, patience=config.patience,
                             seed=config.seed, stop=stop, on_epoch=on_epoch, train_offsets=train_offsets,
                             val_offsets=val_offsets, episodes_per_batch=config.episodes_per_batch,
                             peak_weight=peak_weight)
        finally:
            history_file.close()
        final_model = build_model(spec)
        final_model.load_state_dict(result.final_state)
        final_model.eval()
        profiles: dict[str, list[float]] = {}
        if needs_profile(spec.alarm_score) and result.history:
            profiles["final"] = list(with_success_profile(spec, final_model, data, splits["train"], x_all).success_profile)
            best_model = build_model(spec)
            best_model.load_state_dict(result.best_state if result.best_state is not None else result.final_state)
            best_model.eval()
            spec = with_success_profile(spec, best_model, data, splits["train"], x_all)
            profiles["best"] = list(spec.success_profile)
            base_config["model"] = spec.to_json()  # the best weights' profile; "final" in success_profiles
            base_config["success_profiles"] = profiles
        if result.history:
            save_weights(final_model, out / WEIGHT_FILES["final"])
        seconds = time.perf_counter() - started
        summary = TrainSummary(out=str(out), epochs_run=len(result.history), best_epoch=result.best_epoch,
                               best_val_loss=result.best_val_loss, stopped=result.stopped,
                               early_stopped=result.early_stopped, seconds=seconds, parameters=parameters,
                               samples=samples, episodes=episodes)
        write_config(out, {**base_config, "pos_weight": result.pos_weight, "result": dataclasses.asdict(summary)})
    sink(TrainingFinished(job="train", stopped=result.stopped, summary=summary))
    return summary
