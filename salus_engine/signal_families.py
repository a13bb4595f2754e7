"""Signal families: named groups of per-step features recorded beside the six signals (store format 3).

Each family has a definition from the failure-detection literature, computed here from what the
ensemble produced at the step (`salus_engine.policy.ChunkQuery`) and the executed actions. Values
that come from a re-query (every `PolicyConfig.requery_every` steps) are held until the next one.
Action units are the env's normalised 7-D action (`salus_engine.sim`); M members, chunk length L,
action size A, S denoising steps, K entropy samples. Statistics are population ones (ddof 0).

======================  ===================  ==================================================================
 family                  column               definition
======================  ===================  ==================================================================
 chunk_consistency       stac_l2_mean         per member, mean over the overlapping steps of the L2 distance
                                              between the new chunk and the previous chunk (the previous
                                              chunk's steps k..L-1 against the new chunk's 0..L-k-1, k =
                                              requery_every); mean over members. STAC-single: Sentinel's
                                              temporal action consistency with one sample per chunk (Agia et
                                              al., "Unpacking Failure Modes of Generative Policies", CoRL 2024,
                                              github.com/agiachris/sentinel). 0 at the first query.
                         stac_l2_max          the same, max over members
                         tce_mse_mean         per member, mean squared difference over the overlap (ActProbe's
                                              temporal chunk error, TCE); mean over members
                         tce_mse_max          the same, max over members
                         chunk_magnitude      mean over members and chunk steps of the action's L2 norm (ACM)
 flow_disagreement       vfd_mean             per denoising step s, mean over (L, A) of the std across members
                                              of the flow-matching velocity v_t (normalised action units per
                                              unit of flow time); mean over s. VFD: velocity-field
                                              disagreement inside the flow. Needs SmolVLA's sampling loop.
                         vfd_first            the same at the first step (pure noise, t = 1)
                         vfd_last             the same at the last step
 chunk_entropy           ace_mean             per member, mean over (L, A) of the std across K extra chunks
                                              sampled with fresh noise (action-chunk entropy, FIPER: Römer et
                                              al. 2025); mean over members. Costs K more queries per query;
                                              off by default, on with `--signals ...,chunk_entropy` and
                                              `policy.entropy_samples` K >= 2.
                         ace_max              the same, max over members
 hidden_state            (hidden_features)    the policy's pooled prefix embedding (mean over the valid prefix
                                              tokens of the VLM's last-layer output, the first output of the
                                              prefix forward of `VLAFlowMatching.sample_actions`), mean over
                                              members, projected to 64 dims by a fixed Gaussian matrix when
                                              wider (stored as the root array `hidden_projection`), float16.
                                              The input of SAFE's probe (Gu et al., "SAFE: Multitask Failure
                                              Detection for Vision-Language-Action Models", 2025,
                                              github.com/vla-safe/SAFE). Needs SmolVLA's sampling loop.
 action_jerk             jerk                 || a_t - 2 a_{t-1} + a_{t-2} ||_2 of the executed action (0 for t < 2)
                         jerk_mean            mean of jerk over the last `JERK_WINDOW` steps
                         reversals            sign reversals of the executed translation and rotation dims
                                              (0..5) over the last `JERK_WINDOW` steps, counting a dim only
                                              where both values exceed `REVERSAL_DEADBAND` (SafeContract-style
                                              direction reversals)
                         gripper_toggles      sign changes of the gripper command over the last `JERK_WINDOW`
                                              steps
======================  ===================  ==================================================================

The `time` family (step index) is not recorded: the predictor computes it from the step.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CHUNK_CONSISTENCY = "chunk_consistency"
FLOW_DISAGREEMENT = "flow_disagreement"
CHUNK_ENTROPY = "chunk_entropy"
HIDDEN_STATE = "hidden_state"
ACTION_JERK = "action_jerk"

FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {
    CHUNK_CONSISTENCY: ("stac_l2_mean", "stac_l2_max", "tce_mse_mean", "tce_mse_max", "chunk_magnitude"),
    FLOW_DISAGREEMENT: ("vfd_mean", "vfd_first", "vfd_last"),
    CHUNK_ENTROPY: ("ace_mean", "ace_max"),
    ACTION_JERK: ("jerk", "jerk_mean", "reversals", "gripper_toggles"),
    HIDDEN_STATE: (),
}
"""Columns of the `features` array per family, in storage order (`hidden_state` has its own array)."""

COLLECTED_FAMILIES: tuple[str, ...] = (CHUNK_CONSISTENCY, FLOW_DISAGREEMENT, CHUNK_ENTROPY, HIDDEN_STATE, ACTION_JERK)
"""Every family a collection can record, in storage order."""
DEFAULT_FAMILIES: tuple[str, ...] = (CHUNK_CONSISTENCY, FLOW_DISAGREEMENT, HIDDEN_STATE, ACTION_JERK)
"""Recorded by default: all but `chunk_entropy`, which costs extra inference."""
NEEDS_SAMPLER = frozenset({FLOW_DISAGREEMENT, HIDDEN_STATE})
"""Families read inside SmolVLA's sampling loop (not available for other policy types)."""
HIDDEN_DIM = 64
"""Stored width of the hidden features; a wider embedding is projected to it."""
PROJECTION_SEED = 0
JERK_WINDOW = 10
"""Steps over which jerk is averaged and reversals are counted (1/3 s at 30 Hz)."""
REVERSAL_DEADBAND = 0.05
"""An action dim counts for a reversal only where its value exceeds this (action units)."""


def parse_families(value: Any) -> tuple[str, ...]:
    """Family names from a comma-separated string or a sequence, in `COLLECTED_FAMILIES` order.

    Raises:
        ValueError: an unknown family name (the message lists the known ones).
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {str(s).strip() for s in items if str(s).strip()}
    unknown = sorted(names - set(COLLECTED_FAMILIES))
    if unknown:
        raise ValueError(f"unknown signal family {unknown[0]!r}; choose from {', '.join(COLLECTED_FAMILIES)}")
    return tuple(name for name in COLLECTED_FAMILIES if name in names)


def hidden_projection(width: int) -> np.ndarray | None:
    """The fixed projection (width, HIDDEN_DIM) float32 with N(0, 1 / HIDDEN_DIM) entries (seed
    `PROJECTION_SEED`), or None when `width` <= HIDDEN_DIM (stored as is)."""
    if width <= HIDDEN_DIM:
        return None
    rng = np.random.default_rng(PROJECTION_SEED)
    return (rng.standard_normal((width, HIDDEN_DIM)) / np.sqrt(HIDDEN_DIM)).astype(np.float32)


@dataclass(frozen=True)
class FamilyLayout:
    """What a collection records: its families, the hidden width and projection.

    Attributes:
        families: recorded families, in `COLLECTED_FAMILIES` order.
        hidden_dim: stored hidden width D (0 without `hidden_state`).
        projection: (D_policy, D) float32, or None (embedding stored as is, or not recorded).
        entropy_samples: K chunks sampled per member per query for `chunk_entropy` (0 without it).
    """

    families: tuple[str, ...]
    hidden_dim: int = 0
    projection: np.ndarray | None = field(default=None, compare=False)
    entropy_samples: int = 0

    @property
    def feature_families(self) -> dict[str, list[str]]:
        """Family -> columns of the `features` array, for the families that have columns."""
        return {name: list(FAMILY_COLUMNS[name]) for name in self.families if FAMILY_COLUMNS[name]}

    @property
    def feature_names(self) -> list[str]:
        return [c for columns in self.feature_families.values() for c in columns]

    @classmethod
    def build(cls, requested: tuple[str, ...], entropy_samples: int, sampler_reason: str | None,
              embedding_width: int) -> FamilyLayout:
        """The layout for a policy ensemble.

        Args:
            requested: families asked for (`CollectConfig.signals`).
            entropy_samples: `PolicyConfig.entropy_samples` K.
            sampler_reason: why the ensemble cannot run SmolVLA's sampling loop, or None when it can;
                the `NEEDS_SAMPLER` families are then left out (logged).
            embedding_width: the policy's prefix embedding width (0 when unknown).

        Raises:
            ValueError: `chunk_entropy` asked for with fewer than 2 entropy samples.
        """
        families = tuple(requested)
        if CHUNK_ENTROPY in families and entropy_samples < 2:
            raise ValueError(f"signal family chunk_entropy needs policy.entropy_samples >= 2 (got {entropy_samples}); "
                             "set --entropy-samples 4, or leave chunk_entropy out of --signals")
        if sampler_reason is not None and NEEDS_SAMPLER & set(families):
            left = [f for f in families if f in NEEDS_SAMPLER]
            log.warning("signal families %s are not recorded: %s", ", ".join(left), sampler_reason)
            families = tuple(f for f in families if f not in NEEDS_SAMPLER)
        hidden = HIDDEN_STATE in families and embedding_width > 0
        projection = hidden_projection(embedding_width) if hidden else None
        dim = (HIDDEN_DIM if projection is not None else embedding_width) if hidden else 0
        return cls(families=families, hidden_dim=dim, projection=projection,
                   entropy_samples=int(entropy_samples) if CHUNK_ENTROPY in families else 0)


# numpy's reductions without the Python layers of `np.mean`, `np.std` and `np.linalg.norm`; each computes
# as those do (sum, then divide by the count; squared deviations from the mean; root of the summed
# squares), so the columns equal theirs bit for bit
_sum, _max = np.add.reduce, np.maximum.reduce


def _mean(x: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """`x.mean(axis=axes)` (all axes when None)."""
    count = x.size if axes is None else math.prod(x.shape[a] for a in axes)
    return _sum(x, axes) / count


def _std(x: np.ndarray, axis: int) -> np.ndarray:
    """`x.std(axis=axis)`, population (ddof 0)."""
    count = x.shape[axis]
    deviation = x - _sum(x, axis, keepdims=True) / count
    deviation *= deviation
    return np.sqrt(_sum(deviation, axis) / count)


def _norm(x: np.ndarray) -> np.ndarray:
    """`np.linalg.norm(x, axis=-1)`."""
    return np.sqrt(_sum(x * x, -1))


def _sign(x: float) -> float:
    """`np.sign` of a float: -1.0, 0.0 or 1.0, and NaN for NaN (which differs from every sign)."""
    return float((x > 0) - (x < 0)) if x == x else x


class FamilyExtractor:
    """Stateful per-episode extractor of the recorded families' columns and hidden features.

    Call `reset()` at the start of every episode and `update()` once per step.

    The held columns live in one float32 row in `layout.feature_names` order, rewritten where a
    query or the executed action changes them. `action_jerk` keeps, per consecutive pair of executed
    actions in its window, the pair's reversals and gripper toggle, so a step adds one pair and drops
    the oldest instead of re-reading the window; its 7-D arithmetic is on Python floats, which costs
    less than numpy calls on arrays this small (`bench/predict.py` times a control step).
    """

    def __init__(self, layout: FamilyLayout, requery_every: int) -> None:
        self.layout = layout
        self.requery_every = int(requery_every)
        self._columns: dict[str, slice] = {}  # family -> its columns in the features row
        start = 0
        for name in layout.families:
            width = len(FAMILY_COLUMNS[name])
            if width:
                self._columns[name] = slice(start, start + width)
                start += width
        self._width = start
        self.reset()

    def reset(self) -> None:
        """Forgets the previous chunk, hidden state and action history."""
        self._previous_chunks: np.ndarray | None = None
        self._features = np.zeros(self._width, np.float32)
        self._hidden = np.zeros(self.layout.hidden_dim, np.float16)
        self._last: list[float] | None = None  # the executed actions of the two previous steps
        self._before_last: list[float] | None = None
        self._last_directions: list[int] = []
        self._jerks: deque[float] = deque(maxlen=JERK_WINDOW)
        # per consecutive pair of the last JERK_WINDOW + 1 actions: reversals, gripper toggle (0 or 1)
        self._reversals: deque[int] = deque(maxlen=JERK_WINDOW)
        self._toggles: deque[int] = deque(maxlen=JERK_WINDOW)

    def update(self, action: np.ndarray, query: Any | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The columns of one step.

        Args:
            action: (A,) executed action of the step (A >= 7: translation and rotation dims 0..5, then
                the gripper command).
            query: the step's `ChunkQuery` when the ensemble re-queried at this step, else None
                (the query-based columns keep their values).

        Returns:
            (features (F,) float32 in `layout.feature_names` order, hidden (D,) float16 or None
            without `hidden_state`).
        """
        families, columns = self.layout.families, self._columns
        if query is not None:
            chunks = np.asarray(query.chunks, dtype=np.float64)
            if CHUNK_CONSISTENCY in families:
                self._features[columns[CHUNK_CONSISTENCY]] = self._consistency(chunks)
            if FLOW_DISAGREEMENT in families and query.velocities is not None:
                per_step = _mean(_std(np.asarray(query.velocities, dtype=np.float64), 1), (1, 2))  # (S,)
                self._features[columns[FLOW_DISAGREEMENT]] = (_mean(per_step), per_step[0], per_step[-1])
            if CHUNK_ENTROPY in families and query.entropy_samples is not None:
                per_member = _mean(_std(np.asarray(query.entropy_samples, dtype=np.float64), 0), (1, 2))  # (M,)
                self._features[columns[CHUNK_ENTROPY]] = (_mean(per_member), _max(per_member))
            if self.layout.hidden_dim and query.prefix_embedding is not None:
                pooled = np.asarray(query.prefix_embedding, dtype=np.float32).mean(axis=0)
                if self.layout.projection is not None:
                    pooled = pooled @ self.layout.projection
                self._hidden = pooled.astype(np.float16)
            self._previous_chunks = chunks
        if ACTION_JERK in families:
            self._features[columns[ACTION_JERK]] = self._jerk(np.asarray(action, dtype=np.float64).tolist())
        return self._features.copy(), (self._hidden.copy() if self.layout.hidden_dim else None)

    def _consistency(self, chunks: np.ndarray) -> tuple[float, ...]:
        """STAC-single / TCE against the previous chunk, and the chunk's magnitude (ACM)."""
        magnitude = float(_mean(_norm(chunks)))
        previous, k = self._previous_chunks, self.requery_every
        overlap = chunks.shape[1] - k
        if previous is None or overlap <= 0 or previous.shape != chunks.shape:
            return 0.0, 0.0, 0.0, 0.0, magnitude
        diff = chunks[:, :overlap] - previous[:, k:]  # (M, overlap, A)
        l2 = _mean(_norm(diff), (1,))  # (M,)
        mse = _mean(diff * diff, (1, 2))
        return _mean(l2), _max(l2), _mean(mse), _max(mse), magnitude

    def _jerk(self, action: list[float]) -> tuple[float, float, int, int]:
        """(jerk, jerk_mean, reversals, gripper_toggles) after the executed action `action` (A floats)."""
        last, before = self._last, self._before_last
        directions = [(x > REVERSAL_DEADBAND) - (x < -REVERSAL_DEADBAND) for x in action[:6]]  # -1, 0 or 1
        if before is None:
            jerk = 0.0
        else:  # || a_t - 2 a_{t-1} + a_{t-2} ||_2, the root of the summed squares as np.linalg.norm
            second = [a - 2 * b + c for a, b, c in zip(action, last, before)]
            jerk = math.sqrt(math.sumprod(second, second))
        if last is not None:
            # a reversal: the dim's sign flips between the two steps, beyond the deadband at both
            self._reversals.append(sum([d * e < 0 for d, e in zip(directions, self._last_directions)]))
            self._toggles.append(int(_sign(action[6]) != _sign(last[6])))
        self._jerks.append(jerk)
        self._before_last, self._last, self._last_directions = last, action, directions
        return jerk, sum(self._jerks) / len(self._jerks), sum(self._reversals), sum(self._toggles)

