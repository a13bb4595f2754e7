"""Episode outcome labels from the simulator's own contact and pose data.

Definitions (from the simulator's contacts and poses, measured in this scene; thresholds in `SimConfig`):

- collision (code 0): a robot geom (links 1-7, gripper) presses on the table, the bin or the obstacle
  with a normal contact force above `collision_force_n`, N, at any physics substep
  (`mujoco.mj_contactForce`, max over the substeps of a control step).
- grasped: the cube touches at least one left-finger geom and one right-finger geom.
- lifted (latched): grasped and the cube's centre at least `lift_height_m` above its start height.
- drop (code 1): was lifted, now not grasped, cube more than `drop_distance_m` from the pinch point,
  and the cube is not above the bin's footprint (falling into the bin is a release, not a drop).
- miss (code 2): the gripper has been commanded closed for at least `miss_close_steps` consecutive
  steps, the pinch point rose at least `miss_rise_m` above its lowest point since closing, and the
  cube is neither grasped nor lifted above `lift_height_m`.
- success (code -1): cube centre inside the bin's inner walls and below their top, no finger touching
  it, cube speed below `success_speed_mps`.
- timeout (code 3): none of the above within `max_steps` steps.
- stopped (code 4): the runtime monitor stopped the episode (`PickPlaceEnv.stop`) before any of the
  above; the evidence is the physics at that step. Not a physics label: a stopped episode neither
  succeeded nor failed.

Collision is checked first, then success, drop and miss, once per control step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from salus_engine import OUTCOME_NAMES
from salus_engine.config import SimConfig

SUCCESS, COLLISION, DROP, MISS, TIMEOUT, STOPPED = -1, 0, 1, 2, 3, 4
"""Outcome codes (`salus_engine.OUTCOME_NAMES`)."""


@dataclass
class EpisodeOutcome:
    """How an episode ended, with the physics evidence behind the label.

    Attributes:
        failure_type: -1 success, 0 collision, 1 drop, 2 miss, 3 timeout, 4 stopped by the monitor.
        failure_step: 0-based control step at which the outcome was detected (for timeout, the last
            step; for success, the step at which the cube came to rest in the bin).
        success: failure_type == -1.
        evidence: JSON-serialisable values (float, int, bool, str) that support the label: units are
            in the key names (`_n` newtons, `_m` metres, `_mps` metres per second).
    """

    failure_type: int
    failure_step: int
    success: bool
    evidence: dict[str, float | int | bool | str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """"success", "collision", "drop", "miss", "timeout" or "stopped"."""
        return OUTCOME_NAMES[self.failure_type]

    def to_dict(self) -> dict[str, object]:
        """Plain dict (JSON-serialisable) with failure_type, failure_step, success, evidence."""
        return {
            "failure_type": self.failure_type,
            "failure_step": self.failure_step,
            "success": self.success,
            "evidence": dict(self.evidence),
        }


@dataclass
class StepPhysics:
    """What the environment measured during one control step (all in world frame, SI units)."""

    max_force_n: float
    """Largest robot-vs-environment normal contact force over the step's substeps, N."""
    force_robot_geom: str
    """Robot geom of that contact ("" when there was none)."""
    force_other_geom: str
    """Table / bin / obstacle geom of that contact ("" when there was none)."""
    force_substep: int
    """Substep index (0-based) of that contact, -1 when there was none."""
    cube_pos: np.ndarray
    """(3,) cube centre, m."""
    cube_speed_mps: float
    """Linear speed of the cube, m/s."""
    pinch_pos: np.ndarray
    """(3,) gripper pinch point, m."""
    left_touch: bool
    """Cube touches a left-finger geom."""
    right_touch: bool
    """Cube touches a right-finger geom."""
    close_commanded: bool
    """The step's gripper action was > 0 (close)."""


class OutcomeDetector:
    """Turns per-step physics measurements into an `EpisodeOutcome` (definitions in the module docstring).

    Args:
        config: thresholds (`collision_force_n`, `lift_height_m`, `drop_distance_m`,
            `miss_close_steps`, `miss_rise_m`, `success_speed_mps`) and `max_steps`.
        bin_inner_half_m: half inner width of the bin, m.
        bin_outer_half_m: half outer width of the bin, m (its footprint, for "above the bin").
        bin_wall_height_m: wall height above the table, m.
    """

    def __init__(
        self, config: SimConfig, bin_inner_half_m: float, bin_outer_half_m: float, bin_wall_height_m: float
    ) -> None:
        self._config = config
        self._inner = bin_inner_half_m
        self._outer = bin_outer_half_m
        self._wall_height = bin_wall_height_m
        self.reset(np.zeros(3), np.zeros(2), 0.0)

    def reset(self, cube_start: np.ndarray, bin_xy: np.ndarray, bin_yaw: float) -> None:
        """Starts a new episode: cube start position (3,) m, bin centre (2,) m and yaw, rad."""
        self._cube_start = np.array(cube_start, dtype=float)
        self._bin_xy = np.array(bin_xy, dtype=float)
        cos, sin = math.cos(bin_yaw), math.sin(bin_yaw)
        self._bin_rot_t = np.array([[cos, sin], [-sin, cos]])  # world -> bin frame
        self.lifted = False
        self.max_force_n = 0.0
        self.max_lift_m = 0.0
        self._close_steps = 0
        self._lowest_closed_z = math.inf
        self.outcome: EpisodeOutcome | None = None

    def _in_bin_frame(self, pos: np.ndarray) -> np.ndarray:
        return self._bin_rot_t @ (pos[:2] - self._bin_xy)

    def _common(self, physics: StepPhysics) -> dict[str, float | int | bool | str]:
        return {
            "max_contact_force_n": round(self.max_force_n, 3),
            "threshold_n": self._config.collision_force_n,
            "lifted": self.lifted,
            "max_lift_m": round(self.max_lift_m, 4),
            "cube_x_m": round(float(physics.cube_pos[0]), 4),
            "cube_y_m": round(float(physics.cube_pos[1]), 4),
            "cube_z_m": round(float(physics.cube_pos[2]), 4),
            "cube_to_pinch_m": round(float(np.linalg.norm(physics.cube_pos - physics.pinch_pos)), 4),
            "cube_to_bin_m": round(float(np.linalg.norm(physics.cube_pos[:2] - self._bin_xy)), 4),
            "cube_speed_mps": round(physics.cube_speed_mps, 4),
        }

    def _end(self, code: int, step: int, physics: StepPhysics, **extra: float | int | bool | str) -> EpisodeOutcome:
        evidence = self._common(physics)
        evidence.update(extra)
        self.outcome = EpisodeOutcome(
            failure_type=code, failure_step=step, success=code == SUCCESS, evidence=evidence
        )
        return self.outcome

    def update(self, step: int, physics: StepPhysics) -> EpisodeOutcome | None:
        """Checks the step's measurements; returns the outcome when the episode ends here, else None.

        Args:
            step: 0-based control step index.
            physics: the step's measurements.
        """
        cfg = self._config
        self.max_force_n = max(self.max_force_n, physics.max_force_n)
        if physics.max_force_n > cfg.collision_force_n:
            return self._end(
                COLLISION,
                step,
                physics,
                force_n=round(physics.max_force_n, 3),
                robot_geom=physics.force_robot_geom,
                other_geom=physics.force_other_geom,
                substep=physics.force_substep,
            )
        grasped = physics.left_touch and physics.right_touch
        lift = float(physics.cube_pos[2] - self._cube_start[2])
        self.max_lift_m = max(self.max_lift_m, lift)
        if grasped and lift >= cfg.lift_height_m:
            self.lifted = True
        in_bin_xy = self._in_bin_frame(physics.cube_pos)
        touched = physics.left_touch or physics.right_touch
        if (
            np.all(np.abs(in_bin_xy) < self._inner)
            and physics.cube_pos[2] < self._wall_height
            and not touched
            and physics.cube_speed_mps < cfg.success_speed_mps
        ):
            return self._end(SUCCESS, step, physics, grasped=grasped)
        distance = float(np.linalg.norm(physics.cube_pos - physics.pinch_pos))
        above_bin = bool(np.all(np.abs(in_bin_xy) < self._outer))
        if self.lifted and not grasped and distance > cfg.drop_distance_m and not above_bin:
            return self._end(DROP, step, physics, grasped=grasped, above_bin=above_bin)
        if physics.close_commanded:
            self._close_steps += 1
            self._lowest_closed_z = min(self._lowest_closed_z, float(physics.pinch_pos[2]))
        else:
            self._close_steps = 0
            self._lowest_closed_z = math.inf
        rise = float(physics.pinch_pos[2]) - self._lowest_closed_z
        if (
            self._close_steps >= cfg.miss_close_steps
            and rise >= cfg.miss_rise_m
            and not grasped
            and lift < cfg.lift_height_m
        ):
            return self._end(
                MISS, step, physics, grasped=grasped, closed_steps=self._close_steps, rise_m=round(rise, 4)
            )
        return None

    def timeout(self, step: int, physics: StepPhysics) -> EpisodeOutcome:
        """The outcome of an episode that reached `max_steps` (step = the last step index)."""
        return self._end(TIMEOUT, step, physics, max_steps=self._config.max_steps)

    def stopped(self, step: int, physics: StepPhysics, **extra: float | int | bool | str) -> EpisodeOutcome:
        """The outcome of an episode that the runtime monitor stopped at `step` (code 4)."""
        return self._end(STOPPED, step, physics, **extra)
