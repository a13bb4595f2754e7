"""`ScriptedExpert`: waypoint pick-and-place through the environment's own 7-D action interface.

It reads privileged simulator state (`PickPlaceEnv.task_state()`), so it is the demonstrator and the
reference in tests, never the monitored policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from salus_engine.sim import scene
from salus_engine.sim.env import POS_STEP_M, ROT_STEP_RAD, PickPlaceEnv, TaskState

TRANSIT_SPEED = 0.8
"""Fraction of the largest position step used when moving in free space."""
APPROACH_SPEED = 0.25
"""Fraction of the largest position step used for the last centimetres to the cube (5 mm per step:
a policy imitating the descent that stops one step late is still above the table)."""
SAFE_CLEARANCE_M = 0.10
"""Height of the pinch point above the obstacle's top while carrying (the cube hangs ~2 cm below it
and the fingertips ~1 cm further)."""
GRASP_HEIGHT_M = 0.012
"""Pinch point above the cube's centre when closing, m. The fingertips touch the table when the pinch
point is about 5 mm below this (measured: a pad pressed the table with 32 N at 1 mm below the cube's
centre), so 12 mm leaves an imitating policy about a centimetre of margin; the pads still hold the
upper two thirds of the 4 cm cube."""
RELEASE_HEIGHT_M = 0.045
"""Cube bottom above the bin's wall top at release, m."""
CLOSE_STEPS = 12
"""Steps the gripper is held closed before lifting (it closes in ~8 steps)."""
OPEN_STEPS = 8
"""Steps the gripper is held open after release before retreating."""
TARGET_TOLERANCE_M = 0.004
"""The end-effector target counts as at a waypoint within this distance, m (action noise widens it,
see `_waypoint_done`)."""
TARGET_TOLERANCE_RAD = 0.05
"""... and within this yaw, rad."""
HAND_BACK_LIFT_M = 0.05
"""A handover `until_lift` hands back once the expert holds the cube this far above the table (its
bottom face), m: high enough that the fingers clear the table, low enough that the policy does the
rest of the lift and the carry (`ScriptedExpert.has_lifted`)."""
NEAR_CUBE_M = 0.08
"""A take-over re-grasps from straight above the gripper when its pinch point is this close to the
cube horizontally, m (see `ScriptedExpert.take_over`)."""
MAX_WAYPOINT_STEPS = 60
"""After this many steps at one waypoint the expert moves on even if the arm has not arrived."""
PHASES = ("above_cube", "pre_grasp", "grasp", "close", "lift", "above_bin", "lower", "open", "retreat")
"""The expert's waypoints, in order (`ScriptedExpert.phase` indexes this)."""
_DOWN = np.array([0.0, 1.0, 0.0, 0.0])
"""Gripper pointing down at yaw 0 (half turn about x), quaternion (w, x, y, z)."""


@dataclass
class _Waypoint:
    pos: np.ndarray
    yaw: float
    grip: float
    speed: float
    tolerance_m: float
    hold_steps: int = 0


HELD_DISTANCE_M = 0.03
"""The cube counts as held when both fingers touch it, its centre lies within this distance of the
pinch point, m, ..."""
HELD_MIN_OPENING_M = 2 * scene.CUBE_HALF_M - 0.005
"""... and the fingers are open at least this much, m: across two faces (the expert's grasp leaves
them 0.040 m apart), not pinching an edge or a corner, which slips when lifted."""


def holds_cube(s: TaskState) -> bool:
    """True when the gripper holds the cube (from the privileged state: both fingers on the cube, as
    the outcome detector's "grasped", the cube at the pinch point and the fingers across two faces).
    Fingers still closing beside the cube, or pinching its edge, do not hold it: a take-over then
    re-grasps instead of lifting into a miss."""
    return (s.cube_pinched and s.gripper_opening_m >= HELD_MIN_OPENING_M
            and float(np.linalg.norm(s.cube_pos - s.pinch_pos)) < HELD_DISTANCE_M)


def _wrap_quarter(angle: float) -> float:
    """Wraps an angle to [-pi/4, pi/4) (the cube looks the same every quarter turn)."""
    return (angle + math.pi / 4) % (math.pi / 2) - math.pi / 4


def _rotation_to(quat: np.ndarray, yaw: float) -> np.ndarray:
    """World-frame rotation vector (3,), rad, from orientation `quat` to "pointing down at `yaw`"."""
    desired = np.zeros(4)
    mujoco.mju_mulQuat(desired, np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]), _DOWN)
    inverse, error = np.zeros(4), np.zeros(4)
    mujoco.mju_negQuat(inverse, quat)
    mujoco.mju_mulQuat(error, desired, inverse)
    if error[0] < 0:
        error *= -1.0
    rotvec = np.zeros(3)
    mujoco.mju_quat2Vel(rotvec, error, 1.0)
    return rotvec


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


class ScriptedExpert:
    """Scripted pick-and-place: above cube, descend, close, lift over the obstacle, above bin, lower, open.

    Args:
        env: the environment it acts in (it reads `env.task_state()` every step).
        noise_std: standard deviation of gaussian noise added to every action dimension (in action
            units, before clipping to [-1, 1]); 0 for clean demonstrations.
        seed: seed of the noise generator (`reset(seed)` can reseed it per episode).

    `act(observation)` returns a (7,) float32 action in [-1, 1]; the observation argument is accepted
    for interface symmetry with a learned policy and is not used. Succeeds on >= 95 % of default
    seeds without noise (measured in the sim engineer's report).
    """

    def __init__(self, env: PickPlaceEnv, noise_std: float = 0.0, seed: int | None = None) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}; give a non-negative value")
        self.env = env
        self.noise_std = float(noise_std)
        self._rng = np.random.default_rng(seed)
        self._plan: list[_Waypoint] = []
        self._index = 0
        self._held = 0
        self._waited = 0
        self._arrived = False

    @property
    def phase(self) -> int:
        """Index of the current waypoint in `PHASES` (it stays at the last one, "retreat")."""
        return self._index

    def reset(self, seed: int | None = None) -> None:
        """Plans the waypoints for the episode the environment has just reset; reseeds the noise if given."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._plan = self._make_plan(self.env.task_state())
        self._index = 0
        self._held = 0
        self._waited = 0
        self._arrived = False

    def take_over(self) -> None:
        """Plans from the current state in the middle of an episode (the monitor's handover): from the
        lift onwards when the cube is held between the fingers (`holds_cube`), else from above the
        cube with the gripper open. When the gripper is already down by the cube (pinch point within
        `NEAR_CUBE_M` of it horizontally and below the pre-grasp height), the first waypoint is not the
        transit height but straight up to the pre-grasp height: a re-grasp after a failed close then
        takes about 25 steps fewer."""
        s = self.env.task_state()
        self._plan = self._make_plan(s)
        self._index = PHASES.index("lift") if holds_cube(s) else 0
        pre_grasp = self._plan[PHASES.index("pre_grasp")]
        near = float(np.linalg.norm(s.pinch_pos[:2] - s.cube_pos[:2])) < NEAR_CUBE_M
        if self._index == 0 and near and s.pinch_pos[2] < pre_grasp.pos[2]:
            first = self._plan[0]
            clear = np.array([s.pinch_pos[0], s.pinch_pos[1], pre_grasp.pos[2]])
            self._plan[0] = _Waypoint(clear, first.yaw, first.grip, first.speed, first.tolerance_m)
        self._held = 0
        self._waited = 0
        self._arrived = False

    def has_lifted(self) -> bool:
        """True when the expert is at its lift waypoint or later and holds the cube (`holds_cube`) with
        its bottom face at least `HAND_BACK_LIFT_M` above the table."""
        s = self.env.task_state()
        return (self._index >= PHASES.index("lift") and holds_cube(s)
                and float(s.cube_pos[2]) - scene.CUBE_HALF_M >= HAND_BACK_LIFT_M)

    def _make_plan(self, s: TaskState) -> list[_Waypoint]:
        cube, bin_pos = s.cube_pos, s.bin_pos
        grasp_yaw = s.target_yaw + _wrap_quarter(s.cube_yaw - s.target_yaw)
        safe_z = max(s.obstacle_top_m + SAFE_CLEARANCE_M, scene.BIN_WALL_HEIGHT_M + 0.15)
        release_z = scene.BIN_WALL_HEIGHT_M + RELEASE_HEIGHT_M + scene.CUBE_HALF_M
        # Carry the cube with its faces along the bin's walls.
        place_yaw = grasp_yaw + _wrap_quarter(s.bin_yaw - grasp_yaw)
        grasp = np.array([cube[0], cube[1], cube[2] + GRASP_HEIGHT_M])
        above_cube = np.array([cube[0], cube[1], safe_z])
        above_bin = np.array([bin_pos[0], bin_pos[1], safe_z])
        release = np.array([bin_pos[0], bin_pos[1], release_z])
        open_, close = -1.0, 1.0
        return [
            _Waypoint(above_cube, grasp_yaw, open_, TRANSIT_SPEED, 0.02),
            _Waypoint(grasp + [0, 0, 0.06], grasp_yaw, open_, TRANSIT_SPEED, 0.01),
            _Waypoint(grasp, grasp_yaw, open_, APPROACH_SPEED, 0.006),
            _Waypoint(grasp, grasp_yaw, close, APPROACH_SPEED, 0.01, hold_steps=CLOSE_STEPS),
            _Waypoint(above_cube, grasp_yaw, close, TRANSIT_SPEED, 0.02),
            _Waypoint(above_bin, place_yaw, close, TRANSIT_SPEED, 0.02),
            _Waypoint(release, place_yaw, close, TRANSIT_SPEED * 0.6, 0.01),
            _Waypoint(release, place_yaw, open_, TRANSIT_SPEED, 0.02, hold_steps=OPEN_STEPS),
            _Waypoint(above_bin, place_yaw, open_, TRANSIT_SPEED, 0.02),
        ]

    def act(self, observation: object = None) -> np.ndarray:
        """Next action (7,) float32 in [-1, 1] (layout in `PickPlaceEnv`).

        Raises:
            RuntimeError: `reset()` was not called after the environment's reset.
        """
        if not self._plan:
            raise RuntimeError("ScriptedExpert.reset() must be called after env.reset()")
        s = self.env.task_state()
        if self._index < len(self._plan) - 1 and self._waypoint_done(self._plan[self._index], s):
            self._index += 1
            self._arrived = False
            self._held = 0
            self._waited = 0
        wp = self._plan[self._index]
        action = np.zeros(7)
        delta = wp.pos - s.target_pos
        limit = wp.speed * POS_STEP_M
        norm = float(np.linalg.norm(delta))
        if norm > limit:
            delta *= limit / norm
        action[:3] = delta / POS_STEP_M
        action[3:6] = np.clip(_rotation_to(s.target_quat, wp.yaw) / ROT_STEP_RAD, -0.6, 0.6)
        action[6] = wp.grip
        if self.noise_std > 0:
            action += self._rng.normal(0.0, self.noise_std, size=7)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _waypoint_done(self, wp: _Waypoint, s: TaskState) -> bool:
        """True once the target and the pinch point have reached `wp` and its hold steps have passed."""
        self._waited += 1
        # Noise moves the target ~noise_std * POS_STEP_M per axis and step: widen the tolerances.
        margin_m = 1.5 * self.noise_std * POS_STEP_M * math.sqrt(3)
        margin_rad = 1.5 * self.noise_std * ROT_STEP_RAD
        near = (
            np.linalg.norm(wp.pos - s.target_pos) < TARGET_TOLERANCE_M + margin_m
            and abs(_wrap(wp.yaw - s.target_yaw)) < TARGET_TOLERANCE_RAD + margin_rad
            and np.linalg.norm(wp.pos - s.pinch_pos) < wp.tolerance_m + margin_m
        )
        # The arm can lag a target that sits inside an object: after a while, move on regardless.
        if near or self._waited > MAX_WAYPOINT_STEPS:
            self._arrived = True
        if self._arrived:
            self._held += 1
        return self._arrived and self._held > wp.hold_steps
