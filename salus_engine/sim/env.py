"""`PickPlaceEnv`: "Pick up the red cube and place it in the blue bin" with a Panda in MuJoCo."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from salus_engine.config import ConfigError, SimConfig
from salus_engine.sim import scene
from salus_engine.sim.controller import OpspaceController
from salus_engine.sim.outcome import EpisodeOutcome, OutcomeDetector, StepPhysics

INSTRUCTION = "Pick up the red cube and place it in the blue bin"
"""The task's language instruction (also `PickPlaceEnv.instruction` and `info["instruction"]`)."""

POS_STEP_M = 0.02
"""Action 1.0 on a position axis moves the end-effector target 2 cm in one control step (0.6 m/s
at 30 Hz)."""
ROT_STEP_RAD = 0.1
"""Action 1.0 on a rotation axis turns the end-effector target 0.1 rad in one control step (3 rad/s
at 30 Hz)."""
WORKSPACE_LOW_M = np.array([0.15, -0.45, -0.03])
"""Lower corner of the box that clips the end-effector target, m (world frame). The floor lies 3 cm
below the table top: a policy can push the fingers into the table, which is a collision to detect."""
WORKSPACE_HIGH_M = np.array([0.80, 0.45, 0.55])
"""Upper corner of the box that clips the end-effector target, m."""
HOME_QPOS = np.array([0.0, -0.4, 0.0, -2.2, 0.0, 1.8, 0.785])
"""Arm joint angles at reset, rad: pinch point at (0.43, 0, 0.39) m, fingers pointing down. Also the
opspace controller's null-space posture."""
GRIPPER_CTRL_MAX = 255.0
OBSTACLE_CUBE_CLEARANCE_M = 0.10
"""Least distance from the cube's centre to the obstacle's centre along the cube-to-bin line, m."""
OBSTACLE_BIN_CLEARANCE_M = 0.04
"""Least distance from the bin's outer wall to the obstacle's centre along that line, m."""
"""Robotiq 2F-85 actuator command for fully closed (0 is fully open)."""


@dataclass(frozen=True)
class TaskState:
    """Privileged simulator state (world frame, m, rad) for the scripted expert and for tests.

    Never part of the policy's observation.
    """

    cube_pos: np.ndarray
    """(3,) cube centre."""
    cube_yaw: float
    """Cube rotation about z."""
    bin_pos: np.ndarray
    """(3,) bin centre on the table."""
    bin_yaw: float
    obstacle_pos: np.ndarray
    """(3,) obstacle centre on the table (its base)."""
    obstacle_yaw: float
    obstacle_top_m: float
    """Height of the obstacle's top above the table."""
    pinch_pos: np.ndarray
    """(3,) gripper pinch point (between the fingertips)."""
    pinch_yaw: float
    """Rotation of the gripper about the world z axis."""
    target_pos: np.ndarray
    """(3,) end-effector target that actions move."""
    target_yaw: float
    target_quat: np.ndarray
    """(4,) end-effector target orientation, unit quaternion (w, x, y, z)."""
    gripper_opening_m: float
    cube_pinched: bool
    """Both fingers touch the cube (the outcome detector's "grasped")."""
    step: int


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def _yaw_of_mat(mat: np.ndarray) -> float:
    """Rotation about world z of a frame whose z axis points down: angle of its x axis in the xy plane."""
    return math.atan2(mat[1, 0], mat[0, 0])


class PickPlaceEnv(gym.Env):
    """Franka Panda + Robotiq 2F-85 picks a red cube and places it in a blue bin (MuJoCo).

    Control at `config.control_hz` (30 Hz); physics at about `config.physics_hz`: each control step
    runs n = round(physics_hz / control_hz) substeps (17) of 1 / (n * control_hz) s, so one step is
    exactly 1 / control_hz s. At every substep the operational-space controller (gym-hil's law,
    `salus_engine.sim.controller`) computes joint torques toward the end-effector target.

    Observation (dict):
        "images": {camera: (S, S, 3) uint8 RGB} for camera in `config.cameras` (S = image_size);
            empty when no camera is configured.
        "state": (8,) float32: 7 arm joint angles (rad), then the gripper opening (m, distance between
            the two finger pads, ~0.085 fully open, ~0 closed on nothing).
    The instruction is `env.instruction` and `info["instruction"]`.

    Action: (7,) float32 in [-1, 1] (LIBERO / Open X-Embodiment convention), values outside are clipped:
        [0:3] end-effector target delta position, world frame, x `POS_STEP_M` (0.02 m) per step;
        [3:6] end-effector target delta rotation, axis-angle in the world frame, x `ROT_STEP_RAD`
            (0.1 rad) per step;
        [6] gripper: -1 fully open, +1 fully closed (linear in between); > 0 counts as "close".
        The target is clipped to the box `WORKSPACE_LOW_M`..`WORKSPACE_HIGH_M`.

    Episode: `reset(seed=...)` randomises cube pose, bin pose, obstacle pose, cube mass and friction
    from the seed (ranges x `config.randomization_scale`). `step` returns terminated=True at the first
    failure (collision, drop, miss) or at success, truncated=True at `config.max_steps` (timeout);
    then `info["outcome"]` is an `EpisodeOutcome` (see `salus_engine.sim.outcome`). Reward: 1.0 on the
    success step, else 0.0.

    Raises:
        ConfigError: an unknown camera name or a non-positive size, rate or step limit.
    """

    metadata = {"render_modes": ["rgb_array"]}
    instruction = INSTRUCTION
    available_cameras = scene.CAMERA_NAMES
    """Cameras the scene defines: front, side, wrist."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config = config if config is not None else SimConfig()
        unknown = [c for c in config.cameras if c not in scene.CAMERA_NAMES]
        if unknown:
            raise ConfigError(
                f"unknown camera(s) {', '.join(unknown)}; choose from {', '.join(scene.CAMERA_NAMES)}"
            )
        if config.image_size <= 0 or config.max_steps <= 0 or config.control_hz <= 0 or config.physics_hz <= 0:
            raise ConfigError("sim image_size, max_steps, control_hz and physics_hz must be positive; fix the config")
        self.n_substeps = max(1, round(config.physics_hz / config.control_hz))
        self.model = scene.build_model(config.image_size, 1.0 / (self.n_substeps * config.control_hz))
        self.data = mujoco.MjData(self.model)
        self.ids = scene.scene_ids(self.model)
        self._controller = OpspaceController(self.model, self.ids.pinch_site, self.ids.arm_dof)
        self._detector = OutcomeDetector(
            config,
            bin_inner_half_m=scene.BIN_INNER_HALF_M,
            bin_outer_half_m=scene.BIN_INNER_HALF_M + 2 * scene.BIN_WALL_HALF_THICKNESS_M,
            bin_wall_height_m=scene.BIN_WALL_HEIGHT_M,
        )
        size = config.image_size
        self.observation_space = spaces.Dict(
            {
                "images": spaces.Dict(
                    {cam: spaces.Box(0, 255, (size, size, 3), dtype=np.uint8) for cam in config.cameras}
                ),
                "state": spaces.Box(-np.inf, np.inf, (8,), dtype=np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (7,), dtype=np.float32)
        ngeom = self.model.ngeom
        self._collision_pairs = np.zeros((ngeom, ngeom), dtype=bool)
        robot, other = self.ids.robot_geoms, self.ids.environment_geoms
        self._collision_pairs[np.ix_(robot, other)] = True
        self._collision_pairs[np.ix_(other, robot)] = True
        self._left = np.zeros(ngeom, dtype=bool)
        self._left[self.ids.left_finger_geoms] = True
        self._right = np.zeros(ngeom, dtype=bool)
        self._right[self.ids.right_finger_geoms] = True
        self._force = np.zeros(6)
        self._renderer: mujoco.Renderer | None = None
        self._renderer_thread = 0
        self._scene_option = mujoco.MjvOption()
        self._camera_ids = [self.ids.cameras[c] for c in config.cameras]
        self._target_pos = np.zeros(3)
        self._target_quat = np.array([1.0, 0.0, 0.0, 0.0])
        self._delta_quat = np.zeros(4)
        self._new_quat = np.zeros(4)
        self._pinch_quat = np.zeros(4)
        self._step = 0
        self._done = True
        self._obstacle_top = 2 * scene.OBSTACLE_HALF_M[2]
        self.episode_seed: int | None = None

    @property
    def render_cameras(self) -> tuple[str, ...]:
        """Cameras rendered into every observation (`config.cameras`), in order."""
        return tuple(self.config.cameras)

    # ------------------------------------------------------------------ randomisation

    def _randomise(self, rng: np.random.Generator) -> dict[str, float]:
        """Samples and applies the initial conditions; returns them (for `info["initial"]`)."""
        s = float(self.config.randomization_scale)
        m, ids = self.model, self.ids

        def uniform(center: float, half: float) -> float:
            return float(center + s * rng.uniform(-half, half))

        # Nominal layout: cube at the robot's right (-y), bin at its left (+y), obstacle between.
        cube_x, cube_y, cube_yaw = uniform(0.50, 0.07), uniform(-0.15, 0.05), uniform(0.0, 0.5)
        bin_x, bin_y, bin_yaw = uniform(0.50, 0.06), uniform(0.23, 0.04), uniform(0.0, 0.3)
        # Obstacle: a wall across the cube-to-bin line, between the cube and the bin's near wall.
        line = np.array([bin_x - cube_x, bin_y - cube_y])
        length = float(np.linalg.norm(line))
        direction = line / length
        bin_outer = scene.BIN_INNER_HALF_M + 2 * scene.BIN_WALL_HALF_THICKNESS_M
        # Obstacle centre >= 10 cm from the cube (the open fingers reach ~5.5 cm from the cube centre,
        # the wall is 2 cm half thick) and >= 4 cm beyond the bin's outer wall.
        free_start, free_end = OBSTACLE_CUBE_CLEARANCE_M, length - bin_outer - OBSTACLE_BIN_CLEARANCE_M
        fraction = float(np.clip(uniform(0.5, 0.25), 0.0, 1.0))
        if free_end > free_start:
            along = free_start + fraction * (free_end - free_start)
        else:  # only with a widened randomisation: cube and bin too close for both clearances
            along = (free_start + free_end) / 2
        lateral = uniform(0.0, 0.04)
        normal = np.array([-direction[1], direction[0]])
        obstacle_xy = np.array([cube_x, cube_y]) + along * direction + lateral * normal
        obstacle_yaw = math.atan2(direction[1], direction[0]) + uniform(0.0, 0.25)
        mass = uniform(0.10, 0.05)
        friction = uniform(1.0, 0.3)

        m.body_pos[ids.bin_body] = (bin_x, bin_y, 0.0)
        m.body_quat[ids.bin_body] = _yaw_quat(bin_yaw)
        m.body_pos[ids.obstacle_body] = (obstacle_xy[0], obstacle_xy[1], 0.0)
        m.body_quat[ids.obstacle_body] = _yaw_quat(obstacle_yaw)
        m.body_mass[ids.cube_body] = mass
        edge = 2 * scene.CUBE_HALF_M
        m.body_inertia[ids.cube_body] = mass * edge * edge / 6.0
        m.geom_friction[ids.cube_geom, 0] = friction
        q = ids.cube_qpos
        self.data.qpos[q : q + 3] = (cube_x, cube_y, scene.CUBE_HALF_M)
        self.data.qpos[q + 3 : q + 7] = _yaw_quat(cube_yaw)
        return {
            "cube_x_m": cube_x,
            "cube_y_m": cube_y,
            "cube_yaw_rad": cube_yaw,
            "bin_x_m": bin_x,
            "bin_y_m": bin_y,
            "bin_yaw_rad": bin_yaw,
            "obstacle_x_m": float(obstacle_xy[0]),
            "obstacle_y_m": float(obstacle_xy[1]),
            "obstacle_yaw_rad": obstacle_yaw,
            "cube_mass_kg": mass,
            "cube_friction": friction,
        }

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Starts an episode; returns (observation, info) with info["instruction"], info["initial"].

        Args:
            seed: episode seed; the same seed gives the same initial conditions. None draws from the
                environment's generator (seeded by the previous seed, gymnasium convention).
        """
        super().reset(seed=seed)
        self.episode_seed = seed
        m, d, ids = self.model, self.data, self.ids
        mujoco.mj_resetData(m, d)
        d.qpos[ids.arm_qpos] = HOME_QPOS
        d.ctrl[:] = 0.0
        initial = self._randomise(self.np_random)
        mujoco.mj_forward(m, d)
        self._target_pos[:] = d.site_xpos[ids.pinch_site]
        mujoco.mju_mat2Quat(self._target_quat, d.site_xmat[ids.pinch_site])
        self._step = 0
        self._done = False
        self._detector.reset(
            d.xpos[ids.cube_body].copy(), m.body_pos[ids.bin_body][:2].copy(), initial["bin_yaw_rad"]
        )
        return self._observation(), {"instruction": self.instruction, "initial": initial, "step": 0}

    def step(self, action: np.ndarray):
        """Applies one action for 1 / control_hz s; returns (obs, reward, terminated, truncated, info).

        Raises:
            RuntimeError: the episode has ended (or `reset` was never called); call reset().
            ValueError: the action does not have 7 values.
        """
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,):
            raise ValueError(f"action must have 7 values (dx dy dz rx ry rz gripper), got {a.shape[0]}")
        a = np.clip(np.nan_to_num(a), -1.0, 1.0)
        m, d, ids = self.model, self.data, self.ids
        np.clip(self._target_pos + a[:3] * POS_STEP_M, WORKSPACE_LOW_M, WORKSPACE_HIGH_M, out=self._target_pos)
        rotvec = a[3:6] * ROT_STEP_RAD
        angle = float(np.linalg.norm(rotvec))
        if angle > 0.0:
            mujoco.mju_axisAngle2Quat(self._delta_quat, rotvec / angle, angle)
            mujoco.mju_mulQuat(self._new_quat, self._delta_quat, self._target_quat)
            mujoco.mju_normalize4(self._new_quat)
            self._target_quat[:] = self._new_quat
        d.ctrl[ids.gripper_actuator] = GRIPPER_CTRL_MAX * 0.5 * (a[6] + 1.0)

        max_force, pair, force_substep = 0.0, (-1, -1), -1
        controller, pos, quat = self._controller, self._target_pos, self._target_quat
        arm_act, pairs, force = ids.arm_actuators, self._collision_pairs, self._force
        for sub in range(self.n_substeps):
            d.ctrl[arm_act] = controller.torque(m, d, pos, quat, HOME_QPOS)
            mujoco.mj_step(m, d)
            if d.ncon:
                geoms = d.contact.geom
                hits = pairs[geoms[:, 0], geoms[:, 1]]
                if hits.any():
                    for i in np.flatnonzero(hits):
                        mujoco.mj_contactForce(m, d, int(i), force)
                        if force[0] > max_force:
                            max_force, force_substep = float(force[0]), sub
                            pair = (int(geoms[i, 0]), int(geoms[i, 1]))
        physics = self._measure(max_force, pair, force_substep, a[6] > 0.0)
        step = self._step
        outcome = self._detector.update(step, physics)
        truncated = False
        if outcome is None and step + 1 >= self.config.max_steps:
            outcome = self._detector.timeout(step, physics)
            truncated = True
        terminated = outcome is not None and not truncated
        self._step += 1
        info: dict[str, Any] = {"instruction": self.instruction, "step": step, "max_force_n": max_force}
        if outcome is not None:
            self._done = True
            info["outcome"] = outcome
        reward = 1.0 if outcome is not None and outcome.success else 0.0
        return self._observation(), reward, terminated, truncated, info

    def stop(self, **evidence: float | int | bool | str) -> EpisodeOutcome:
        """Ends the running episode as stopped by the runtime monitor, before the action of the current
        step is applied; returns the `EpisodeOutcome` (code 4, "stopped", at the current step) with the
        physics of the current state and `evidence` as its evidence.

        Raises:
            RuntimeError: the episode has ended (or `reset` was never called).
        """
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before stop()")
        physics = self._measure(0.0, (-1, -1), -1, False)
        self._done = True
        return self._detector.stopped(self._step, physics, **evidence)

    def close(self) -> None:
        """Releases the renderer (its OpenGL context); a later observation creates a new one."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def render(self) -> np.ndarray:
        """(S, S, 3) uint8 image of the first configured camera (`front` if none is configured)."""
        camera = self._camera_ids[0] if self._camera_ids else self.ids.cameras["front"]
        return self._render_camera(camera)

    # ------------------------------------------------------------------ internals

    def _render_camera(self, camera: int) -> np.ndarray:
        thread = threading.get_ident()
        if self._renderer is not None and self._renderer_thread != thread:
            # An OpenGL context is current in the thread that created it: stepping the episode from
            # another thread (e.g. a console worker) gets a renderer of its own.
            self.close()
        if self._renderer is None:
            size = self.config.image_size
            self._renderer = mujoco.Renderer(self.model, height=size, width=size)
            self._renderer_thread = thread
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._scene_option)
        return self._renderer.render()

    def _observation(self) -> dict[str, Any]:
        state = np.empty(8, dtype=np.float32)
        state[:7] = self.data.qpos[self.ids.arm_qpos]
        state[7] = self.gripper_opening_m()
        images = {cam: self._render_camera(cid) for cam, cid in zip(self.config.cameras, self._camera_ids)}
        return {"images": images, "state": state}

    def gripper_opening_m(self) -> float:
        """Distance between the inner faces of the two finger pads, m."""
        d, ids = self.data, self.ids
        gap = float(np.linalg.norm(d.geom_xpos[ids.left_pad_geom] - d.geom_xpos[ids.right_pad_geom]))
        return max(0.0, gap - 2 * float(self.model.geom_size[ids.left_pad_geom][1]))

    def finger_touches(self) -> tuple[bool, bool]:
        """(left, right): whether a left-finger and a right-finger geom touch the cube now."""
        d, cube = self.data, self.ids.cube_geom
        if not d.ncon:
            return False, False
        geoms = d.contact.geom[: d.ncon]
        with_cube = (geoms[:, 0] == cube) | (geoms[:, 1] == cube)
        if not with_cube.any():
            return False, False
        others = np.where(geoms[with_cube, 0] == cube, geoms[with_cube, 1], geoms[with_cube, 0])
        return bool(self._left[others].any()), bool(self._right[others].any())

    def _measure(self, max_force: float, pair: tuple[int, int], force_substep: int, close: bool) -> StepPhysics:
        m, d, ids = self.model, self.data, self.ids
        left, right = self.finger_touches()
        robot_name = other_name = ""
        if pair[0] >= 0:
            a, b = pair
            if a in set(ids.environment_geoms.tolist()):
                a, b = b, a
            robot_name, other_name = self._geom_label(a), self._geom_label(b)
        q = ids.cube_dof
        return StepPhysics(
            max_force_n=max_force,
            force_robot_geom=robot_name,
            force_other_geom=other_name,
            force_substep=force_substep,
            cube_pos=d.xpos[ids.cube_body].copy(),
            cube_speed_mps=float(np.linalg.norm(d.qvel[q : q + 3])),
            pinch_pos=d.site_xpos[ids.pinch_site].copy(),
            left_touch=left,
            right_touch=right,
            close_commanded=bool(close),
        )

    def _geom_label(self, geom: int) -> str:
        """A geom's name, or "<body name>/geom<id>" for the robot's unnamed geoms."""
        name = self.model.geom(geom).name
        return name or f"{self.model.body(int(self.model.geom_bodyid[geom])).name}/geom{geom}"

    def task_state(self) -> TaskState:
        """Privileged state for the scripted expert and tests (not an observation)."""
        m, d, ids = self.model, self.data, self.ids
        cube_mat = d.xmat[ids.cube_body].reshape(3, 3)
        target_mat = np.zeros(9)
        mujoco.mju_quat2Mat(target_mat, self._target_quat)
        bin_quat, obstacle_quat = m.body_quat[ids.bin_body], m.body_quat[ids.obstacle_body]
        return TaskState(
            cube_pos=d.xpos[ids.cube_body].copy(),
            cube_yaw=math.atan2(cube_mat[1, 0], cube_mat[0, 0]),
            bin_pos=m.body_pos[ids.bin_body].copy(),
            bin_yaw=2 * math.atan2(bin_quat[3], bin_quat[0]),
            obstacle_pos=m.body_pos[ids.obstacle_body].copy(),
            obstacle_yaw=2 * math.atan2(obstacle_quat[3], obstacle_quat[0]),
            obstacle_top_m=self._obstacle_top,
            pinch_pos=d.site_xpos[ids.pinch_site].copy(),
            pinch_yaw=_yaw_of_mat(d.site_xmat[ids.pinch_site].reshape(3, 3)),
            target_pos=self._target_pos.copy(),
            target_yaw=_yaw_of_mat(target_mat.reshape(3, 3)),
            target_quat=self._target_quat.copy(),
            gripper_opening_m=self.gripper_opening_m(),
            cube_pinched=all(self.finger_touches()),
            step=self._step,
        )
