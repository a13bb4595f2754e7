"""What a predictor reads at each step: input families and their columns, assembled alike offline
(a store's arrays) and online (one live step).

Input families (`--features`):

- `six`: the seeds' six signals (`salus_engine.signals`);
- the recorded signal families of a format-3 store (`salus_engine.signal_families`):
  `chunk_consistency`, `flow_disagreement`, `chunk_entropy`, `action_jerk` (their `features` columns)
  and `hidden_state` (the 64 `hidden_features` columns, float16 in the store, float32 here);
- `state`: the robot's proprioceptive state at the step, the store's `states` array (7 arm joint
  angles in rad, then the gripper opening in m; `salus_engine.store.layout.STATE_NAMES`). Every
  store records it, and a runtime monitor reads it from the same observation the policy gets;
- `motion`: the change of the robot state since the previous step, state(t) - state(t - 1) (0 at an
  episode's first step; rad per control step for the joints, m per control step for the gripper),
  from the same `states` array, so every store offers it. The state says where the arm is, not how
  fast it moves (the descent onto the cube, a stall); with it the outcome model ranked the
  validation split's episodes slightly better and detected more of their failures (README "Measured");
- `target_view`: the gripper's offset from the target object as the front camera sees it
  (`salus_engine.target_view`), computed from the recorded front-camera frames and states; offered by
  every store that records the `front` camera;
- `command`: the controller's end-effector target against the gripper's pinch point, and the
  gripper command (`salus_engine.command`), from the recorded `states` and `actions`, so every store
  offers it. Most collisions are the fingers pressed onto the table by a target already below them;
- `grasp`: the gripper opening against the target object's width, in mm (`salus_engine.grasp`), from
  the same `states` array, so every store offers it. Most drops begin as the cube turning between the
  finger pads, a millimetre that the `state` family's metres hide;
- `grip_depth`: how far inside the target object's width the finger pads hold it, in mm, 0 when
  they hold nothing (`salus_engine.grip_depth`), from the same `states` array, so every store offers
  it: most dropped cubes sit deeper between the pads than a held one, from soon after the pads close;
- `slip`: how far the finger pads closed on a held object over the last 10 steps, in mm
  (`salus_engine.slip`), from the same `states` array, so every store offers it: the slow slide
  before most drops;
- `time`: the step index within the episode (steps), as its own input; alone it is the time-only
  control of the evaluation.

Columns of the assembled matrix follow `INPUT_FAMILIES` order, each family's columns in store order.
"""

from __future__ import annotations

import numpy as np

from salus_engine.command import COMMAND, COMMAND_COLUMNS
from salus_engine.grasp import GRASP, GRASP_COLUMNS, grasp_columns
from salus_engine.grip_depth import GRIP_DEPTH, GRIP_DEPTH_COLUMNS, grip_depth_columns
from salus_engine.predictor.errors import PredictorError
from salus_engine.signal_families import ACTION_JERK, CHUNK_CONSISTENCY, CHUNK_ENTROPY, FLOW_DISAGREEMENT, HIDDEN_STATE
from salus_engine.signals import SIGNAL_NAMES
from salus_engine.slip import SLIP, SLIP_COLUMNS, slip_columns
from salus_engine.store.layout import STATE_NAMES
from salus_engine.target_view import CAMERA, TARGET_VIEW, TARGET_VIEW_COLUMNS

SIX = "six"
STATE = "state"
MOTION = "motion"
TIME = "time"
INPUT_FAMILIES: tuple[str, ...] = (SIX, CHUNK_CONSISTENCY, FLOW_DISAGREEMENT, CHUNK_ENTROPY, HIDDEN_STATE,
                                   ACTION_JERK, TARGET_VIEW, STATE, MOTION, COMMAND, GRASP, GRIP_DEPTH, SLIP,
                                   TIME)
"""Every input family, in column order."""
ALL = "all"


def available_columns(feature_families: dict[str, list[str]], hidden_dim: int,
                      cameras: tuple[str, ...] | list[str] = ()) -> dict[str, list[str]]:
    """Family -> column names that a store with these families and recorded cameras offers (always
    `six`, `state`, `motion`, `command`, `grasp`, `grip_depth`, `slip` and `time`; `target_view` when
    `cameras` holds the front camera)."""
    columns: dict[str, list[str]] = {SIX: list(SIGNAL_NAMES)}
    for name in INPUT_FAMILIES:
        if name in feature_families:
            columns[name] = list(feature_families[name])
        elif name == HIDDEN_STATE and hidden_dim:
            columns[name] = [f"hidden_{i:02d}" for i in range(hidden_dim)]
    if CAMERA in cameras:
        columns[TARGET_VIEW] = list(TARGET_VIEW_COLUMNS)
    columns[STATE] = list(STATE_NAMES)
    columns[MOTION] = [f"{name}_delta" for name in STATE_NAMES]
    columns[COMMAND] = list(COMMAND_COLUMNS)
    columns[GRASP] = list(GRASP_COLUMNS)
    columns[GRIP_DEPTH] = list(GRIP_DEPTH_COLUMNS)
    columns[SLIP] = list(SLIP_COLUMNS)
    columns[TIME] = ["step"]
    return {name: columns[name] for name in INPUT_FAMILIES if name in columns}


STORE_ARRAYS = ("signals", "features", "hidden_features", "states", "actions")
"""The per-step arrays of a store that input families read, in `store_arrays` order."""
_ARRAYS_OF = {SIX: ("signals",), HIDDEN_STATE: ("hidden_features",), TARGET_VIEW: ("states",), STATE: ("states",),
              MOTION: ("states",), COMMAND: ("states", "actions"), GRASP: ("states",), GRIP_DEPTH: ("states",),
              SLIP: ("states",), TIME: ()}
"""The store arrays of each family that is not a signal-family column of `features` (`target_view` reads
the states for the gripper and the front camera's images for the cube)."""


def store_arrays(families: tuple[str, ...]) -> tuple[str, ...]:
    """The per-step store arrays that a predictor reading these input families needs for a recorded
    episode: `signals` always (they set the episode's length), then those of `STORE_ARRAYS` the
    families read (`target_view`'s front-camera frames come separately, `target_view.recorded_frames`)."""
    needed = {"signals"} | {array for name in families for array in _ARRAYS_OF.get(name, ("features",))}
    return tuple(name for name in STORE_ARRAYS if name in needed)


def parse_input_families(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Input family names from `--features` (comma-separated, or `all`), in `INPUT_FAMILIES` order;
    `("all",)` stands for every family the store offers.

    Raises:
        PredictorError: an unknown family, or none.
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {s.strip() for s in items if s.strip()}
    if ALL in names:
        return (ALL,)
    unknown = sorted(names - set(INPUT_FAMILIES))
    if unknown or not names:
        raise PredictorError(f"--features {','.join(sorted(names)) or '(none)'}: unknown family "
                             f"{unknown[0] if unknown else '(none)'}; choose from all, {', '.join(INPUT_FAMILIES)}")
    return tuple(name for name in INPUT_FAMILIES if name in names)


def resolve_families(requested: tuple[str, ...], columns: dict[str, list[str]], where: str) -> tuple[str, ...]:
    """The requested families (`all`: every available one) checked against a store's columns.

    Raises:
        PredictorError: a requested family that the store does not record (one line naming the store
            and what it offers).
    """
    if requested == (ALL,):
        return tuple(columns)
    missing = [name for name in requested if name not in columns]
    if missing:
        raise PredictorError(f"{where} does not record the input family {missing[0]} (it offers "
                             f"{', '.join(columns)}); collect with this SALUS or choose --features among those")
    return tuple(requested)


def assemble(families: tuple[str, ...], columns: dict[str, list[str]], signals: np.ndarray,
             features: np.ndarray | None, hidden: np.ndarray | None, step: np.ndarray,
             feature_names: list[str], states: np.ndarray | None = None,
             views: np.ndarray | None = None, commands: np.ndarray | None = None) -> np.ndarray:
    """The input matrix of the given families.

    Args:
        families: families to use (resolved, in `INPUT_FAMILIES` order).
        columns: the store's `available_columns`.
        signals: (N, 6) the six signals.
        features: (N, F) the store's `features` (columns `feature_names`), or None.
        hidden: (N, D) hidden features, or None.
        step: (N,) step index of each row within its episode.
        feature_names: the columns of `features`, in order.
        states: (N, 8) the robot states (`STATE_NAMES`), or None when none of `state`, `motion`,
            `grasp`, `grip_depth` and `slip` is among `families`.
        views: (N, 3) the `target_view` columns, or None when it is not among `families`.
        commands: (N, 4) the `command` columns, or None when it is not among `families`.

    Returns:
        (N, sum of the families' widths) float32.
    """
    parts = []
    for name in families:
        if name == SIX:
            parts.append(np.asarray(signals, dtype=np.float32))
        elif name == TIME:
            parts.append(np.asarray(step, dtype=np.float32).reshape(-1, 1))
        elif name == HIDDEN_STATE:
            parts.append(np.asarray(hidden, dtype=np.float32))
        elif name == STATE:
            parts.append(np.asarray(states, dtype=np.float32))
        elif name == MOTION:
            parts.append(state_motion(states, step))
        elif name == TARGET_VIEW:
            parts.append(np.asarray(views, dtype=np.float32))
        elif name == COMMAND:
            parts.append(np.asarray(commands, dtype=np.float32))
        elif name == GRASP:
            parts.append(grasp_columns(states))
        elif name == GRIP_DEPTH:
            parts.append(grip_depth_columns(states))
        elif name == SLIP:
            parts.append(slip_columns(states, step))
        else:
            index = [feature_names.index(c) for c in columns[name]]
            parts.append(np.asarray(features, dtype=np.float32)[:, index])
    return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)


def state_motion(states: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The `motion` columns of consecutive episodes' rows: (N, 8) float32 state(t) - state(t - 1), 0 where
    `step` is 0 (an episode's first step), the subtraction in float32 as online (`MotionTracker`).

    Args:
        states: (N, 8) robot states of the rows, each episode's rows consecutive and in step order.
        step: (N,) step index of each row within its episode.
    """
    states = np.asarray(states, dtype=np.float32)
    motion = np.zeros_like(states)
    motion[1:] = states[1:] - states[:-1]
    motion[np.asarray(step) == 0] = 0.0
    return motion


class MotionTracker:
    """The `motion` columns online: call `reset()` at each episode's start, then `update(state)` per
    step; gives the rows `state_motion` gives for the recorded episode."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None

    def reset(self) -> None:
        self._previous = None

    def update(self, state: np.ndarray) -> np.ndarray:
        """(8,) float32 the step's state change; state: (8,) robot state (`STATE_NAMES`)."""
        now = np.asarray(state, dtype=np.float32)
        motion = np.zeros_like(now) if self._previous is None else now - self._previous
        self._previous = now.copy()
        return motion


def input_names(families: tuple[str, ...], columns: dict[str, list[str]]) -> tuple[str, ...]:
    """Column names of `assemble`'s matrix."""
    return tuple(c for name in families for c in columns[name])
