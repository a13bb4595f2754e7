"""`ModelSpec`: what defines a predictor network (kind, input window, layers, horizons, signal set).

Stored as the `model` entry of a checkpoint's config.json; light to import (no torch), so that reading
a checkpoint's settings and the numpy online path do not load torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from salus_engine import FAILURE_TYPES
from salus_engine.predictor import MODEL_KINDS
from salus_engine.predictor.alarm_score import ALARM_SCORES
from salus_engine.predictor.errors import PredictorError
from salus_engine.signals import SIGNAL_NAMES


TEMPORAL_KERNEL = 3
"""Kernel size of every convolution of the `temporal` model; layer i is dilated by 2**i."""
DEFAULT_HIDDEN = {"outcome": (64, 64), "multi-horizon": (64, 64), "single-horizon": (64, 64),
                  "temporal": (32, 32, 32, 32)}
"""Hidden widths (or channels) per model kind when none are given."""
DEFAULT_MEMBERS = 5
"""Members of the outcome model when none are given (`TrainConfig.members`); the other kinds have
one unless told otherwise, the temporal model exactly one."""
DEFAULT_ALARM_SCORE = {"outcome": "noisy-or-excess"}
"""Alarm-score rule (`salus_engine.predictor.alarm_score`) per model kind when none is given; `max` for
the kinds not named."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a network; stored in a checkpoint's `config.json`."""

    kind: str = "multi-horizon"
    window: int = 1
    """Steps of signals per input (current step plus window - 1 previous ones); 1 for `single-horizon`,
    `outcome` (which reads the running mean and maximum of the episode so far) and `temporal` (whose
    convolutions see `receptive_field` steps)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths (MLPs) or channels of each dilated convolution (`temporal`)."""
    horizons: tuple[int, ...] = (6, 10, 15, 20)
    signal_names: tuple[str, ...] = SIGNAL_NAMES
    """The input columns, in order (`salus_engine.predictor.inputs.input_names`)."""
    failure_types: tuple[str, ...] = FAILURE_TYPES
    features: tuple[str, ...] = ("six",)
    """The input families (`salus_engine.predictor.inputs.INPUT_FAMILIES`) whose columns are the inputs."""
    members: int = 1
    """Independently initialised copies of an MLP trained side by side whose probabilities are
    averaged (a deep ensemble, Lakshminarayanan et al. 2017, "Simple and Scalable Predictive
    Uncertainty Estimation using Deep Ensembles"); 1 for `temporal`."""
    alarm_score: str = "max"
    """How a step's failure-type probabilities become its alarm score (`salus_engine.predictor.alarm_score`);
    `max` for checkpoints that do not name one."""
    success_profile: tuple[float, ...] = ()
    """For an alarm-score rule with a profile (`noisy-or-excess`): per step, the mean of the rule's base
    score over the training split's successful episodes (`salus_engine.predictor.alarm_score.success_profile`),
    set after training; () otherwise."""
    member_inputs: tuple[tuple[str, ...], ...] = ()
    """Per member (M entries), the input columns (names of `signal_names`) that member reads; () when
    every member reads every column. A member's first-layer weights of the other columns are zero and
    stay zero in training, so the members' averaged probabilities mix models of different inputs (one
    reading the front camera's view of the cube, one not) and the online path needs nothing of this."""

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise PredictorError(f"model kind {self.kind!r} is unknown; choose one of {', '.join(MODEL_KINDS)}")
        if not _is_count(self.window) or self.window < 1 or (self.kind != "multi-horizon" and self.window != 1):
            raise PredictorError(f"window must be >= 1 (exactly 1 for the outcome, single-horizon and temporal "
                                 f"models), got {self.window!r}")
        if not isinstance(self.hidden, tuple) or not all(_is_count(h) and h >= 1 for h in self.hidden):
            raise PredictorError(f"hidden layer widths must be positive integers, got {self.hidden!r}")
        if not isinstance(self.horizons, tuple) or not self.horizons or not all(
                _is_count(h) and h >= 1 for h in self.horizons):
            raise PredictorError(f"horizons must be one or more positive step counts, got {self.horizons!r}")
        if not _is_count(self.members) or self.members < 1 or (self.kind == "temporal" and self.members != 1):
            raise PredictorError(f"members must be >= 1 (exactly 1 for the temporal model), got {self.members!r}")
        if self.alarm_score not in ALARM_SCORES:
            raise PredictorError(f"alarm score {self.alarm_score!r} is unknown; choose one of {', '.join(ALARM_SCORES)}")
        if not isinstance(self.success_profile, tuple) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in self.success_profile):
            raise PredictorError(f"the success profile must be a list of finite numbers, got {self.success_profile!r}")
        for name in ("signal_names", "failure_types", "features"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise PredictorError(f"{name} must be a list of names, got {value!r}")
        if self.member_inputs:
            if self.kind == "temporal" or self.members < 2 or len(self.member_inputs) != self.members:
                raise PredictorError(f"member inputs need an MLP of two or more members and one column list per "
                                     f"member ({self.members}), got {len(self.member_inputs)}")
            known = set(self.signal_names)
            for columns in self.member_inputs:
                if not isinstance(columns, tuple) or not columns or not set(columns) <= known:
                    raise PredictorError(f"each member must read one or more of the model's input columns, got "
                                         f"{columns!r}")

    @property
    def n_inputs(self) -> int:
        """Network inputs: the columns x window (MLPs), or x 3 for `outcome` (step, running mean, running max)."""
        if self.kind == "outcome":
            return 3 * len(self.signal_names)
        return self.window * len(self.signal_names)

    @property
    def receptive_field(self) -> int:
        """Steps a `temporal` model's output depends on: 1 + (kernel - 1) * sum of the dilations."""
        if self.kind != "temporal":
            return self.window
        return 1 + (TEMPORAL_KERNEL - 1) * sum(2 ** i for i in range(len(self.hidden)))

    @property
    def same_at_every_horizon(self) -> bool:
        """True for the kinds with one output per failure type that stands for every horizon
        (`single-horizon`, `outcome`); False for those with an output per horizon and type."""
        return self.kind in ("single-horizon", "outcome")

    @property
    def n_outputs(self) -> int:
        """Outputs of one member: a probability per failure type (and per horizon unless
        `same_at_every_horizon`)."""
        types = len(self.failure_types)
        return types if self.same_at_every_horizon else len(self.horizons) * types

    def input_mask(self) -> np.ndarray | None:
        """(M, n_inputs) bool: which network inputs each member reads (every column's step value,
        running mean and running maximum for `outcome`, every window step otherwise); None when every
        member reads every input (`member_inputs` empty)."""
        if not self.member_inputs:
            return None
        reads = [set(member) for member in self.member_inputs]
        columns = np.array([[name in member for name in self.signal_names] for member in reads])
        return np.tile(columns, (1, self.n_inputs // len(self.signal_names)))

    def to_json(self) -> dict:
        return {k: [list(m) for m in v] if k == "member_inputs" else list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> ModelSpec:
        """The spec stored in a checkpoint's config.json.

        Raises:
            PredictorError: `data` is not a JSON object or holds an impossible value.
        """
        if not isinstance(data, dict):
            raise PredictorError(f"the model settings are {type(data).__name__}, not a JSON object")
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
                  if k in cls.__dataclass_fields__}
        if isinstance(fields.get("member_inputs"), tuple):
            fields["member_inputs"] = tuple(tuple(m) if isinstance(m, list) else m for m in fields["member_inputs"])
        return cls(**fields)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
