"""The `command` input family: where the controller has been told to take the gripper, against where
the gripper is.

Almost every collision in the recorded stores is a finger pad pressing on the table (in the
2,000-episode store 517 of 543; the rest touch the obstacle or the bin). The policy does not move the
gripper: it moves the operational-space controller's end-effector *target* by its action's first three
values (`salus_engine.sim.env.POS_STEP_M` per unit per step), and the target may go down to
3 cm below the table top (`WORKSPACE_LOW_M`). While the target is below the fingers, the controller
pushes them down harder with every step; the joint angles show the gripper stopped at the table, not
how far below it the target already is. A runtime monitor knows the commands it passes to the
controller, so this family is not privileged information.

Per step t, from the robot state of the step's observation and the action executed at step t - 1:

- the target: the pinch point of the first observation (the controller's target at reset), then
  moved by each executed action as the environment moves it (`PickPlaceEnv.step`: the action clipped to
  [-1, 1], its first three values times `POS_STEP_M` added, the sum clipped to the workspace box);
- the pinch point: forward kinematics of the state's joint angles (`salus_engine.sim.kinematics`).

======================  ===============================================================================
 column                  definition
======================  ===============================================================================
 command_dz              target height minus pinch point height, m (negative: told to go lower than it is)
 command_dxy             horizontal distance between the target and the pinch point, m
 command_height          target height above the table top, m (-0.03 at the workspace floor)
 command_gripper         the gripper command executed at step t - 1, -1 open .. +1 closed (-1 at the first
                         step: the gripper starts open)
======================  ===============================================================================

Offline (`episode`, from a store's `states` and `actions`) and online (`update`, one step at a time)
run the same code, so a recorded episode gives the same columns both ways.
"""

from __future__ import annotations

import math

import numpy as np

from salus_engine.sim.env import POS_STEP_M, WORKSPACE_HIGH_M, WORKSPACE_LOW_M
from salus_engine.sim.kinematics import PinchPoint

COMMAND = "command"
COMMAND_COLUMNS: tuple[str, ...] = ("command_dz", "command_dxy", "command_height", "command_gripper")
_LOW = tuple(float(v) for v in WORKSPACE_LOW_M)
_HIGH = tuple(float(v) for v in WORKSPACE_HIGH_M)


def _clip(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


class CommandTracker:
    """Stateful per-episode tracker of the controller's target. Call `reset()` at the start of every
    episode, then `update(state, previous_action)` once per step."""

    def __init__(self) -> None:
        """Raises: RuntimeError / ValueError: as `scene.build_model` (gym-hil missing, scene not compiling)."""
        self._kinematics = PinchPoint()
        self.reset()

    def reset(self) -> None:
        """Forgets the target."""
        self._target: list[float] | None = None

    def update(self, state: np.ndarray, previous_action: np.ndarray | None) -> np.ndarray:
        """The columns of one step.

        Args:
            state: (8,) robot state of the step's observation (7 joint angles in rad, then the gripper
                opening).
            previous_action: (7,) the action executed at the previous step, env units (cast to float32,
                as the store records it), or None at an episode's first step.

        Returns:
            (4,) float32 in `COMMAND_COLUMNS` order.

        Raises:
            ValueError: `previous_action` is None after an episode's first step (the target would be lost).
        """
        x, y, z = self._kinematics.position(np.asarray(state)[:7])
        gripper = -1.0
        if self._target is None:
            self._target = [x, y, z]
        elif previous_action is None:
            raise ValueError("the command family needs the action executed at the previous step after an "
                             "episode's first step; pass previous_action (or reset() at a new episode)")
        else:
            action = np.asarray(previous_action, dtype=np.float32).tolist()
            target = self._target
            for i in range(3):
                step = _clip(action[i], -1.0, 1.0) if action[i] == action[i] else 0.0  # NaN: 0, as the env
                target[i] = _clip(target[i] + step * POS_STEP_M, _LOW[i], _HIGH[i])
            gripper = _clip(action[6], -1.0, 1.0) if action[6] == action[6] else 0.0
        tx, ty, tz = self._target
        return np.array([tz - z, math.hypot(tx - x, ty - y), tz, gripper], np.float32)

    def episode(self, states: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(T, 4) float32 columns of a recorded episode: `reset`, then `update` per step.

        Args:
            states: (T, 8) robot states.
            actions: (T, 7) executed actions (the store's `actions`); the last one is not read.
        """
        self.reset()
        rows = [self.update(states[t], actions[t - 1] if t else None) for t in range(len(states))]
        return np.stack(rows) if rows else np.zeros((0, len(COMMAND_COLUMNS)), np.float32)
