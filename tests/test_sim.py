"""The pick-and-place environment on the real MuJoCo simulator (tiny images, short episodes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from salus_engine.config import ConfigError, SimConfig, build_settings
from salus_engine.sim import INSTRUCTION, EpisodeOutcome, PickPlaceEnv, ScriptedExpert, run_expert_episode
from salus_engine.sim.env import HOME_QPOS, POS_STEP_M
from salus_engine.sim.expert import PHASES
from salus_engine.sim.outcome import COLLISION, DROP, MISS, SUCCESS, TIMEOUT


@pytest.fixture(scope="module")
def env():
    """A physics-only environment (no camera) shared by the outcome tests."""
    environment = PickPlaceEnv(SimConfig(cameras=(), image_size=64))
    yield environment
    environment.close()


def drive(env: PickPlaceEnv, goal: np.ndarray, grip: float, steps: int, speed: float = 0.8) -> dict:
    """Moves the end-effector target toward `goal` (m) with gripper command `grip` for `steps` steps.

    Returns the last step's info; stops early when the episode ends.
    """
    info: dict = {}
    for _ in range(steps):
        delta = goal - env.task_state().target_pos
        norm = float(np.linalg.norm(delta))
        if norm > speed * POS_STEP_M:
            delta *= speed * POS_STEP_M / norm
        action = np.zeros(7, dtype=np.float32)
        action[:3] = delta / POS_STEP_M
        action[6] = grip
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return info


def test_spaces_shapes_and_dtypes():
    env = PickPlaceEnv(SimConfig(cameras=("front", "wrist"), image_size=64, max_steps=3))
    try:
        obs, info = env.reset(seed=1)
        assert env.instruction == INSTRUCTION == info["instruction"]
        assert env.action_space.shape == (7,) and env.action_space.dtype == np.float32
        assert float(env.action_space.low.min()) == -1.0 and float(env.action_space.high.max()) == 1.0
        assert env.observation_space.contains(obs)
        assert set(obs["images"]) == {"front", "wrist"} and env.render_cameras == ("front", "wrist")
        for image in obs["images"].values():
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            assert image.std() > 5.0  # a rendered scene, not a blank buffer
        assert not np.array_equal(obs["images"]["front"], obs["images"]["wrist"])
        assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
        np.testing.assert_allclose(obs["state"][:7], HOME_QPOS, atol=1e-6)
        assert 0.08 < obs["state"][7] < 0.09  # gripper fully open, m
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
        assert info["instruction"] == INSTRUCTION and info["step"] == 0
        with pytest.raises(ValueError, match="7 values"):
            env.step(np.zeros(6))
    finally:
        env.close()
        env.close()  # closing twice is harmless


def test_unknown_camera_is_a_config_error():
    with pytest.raises(ConfigError, match=r"cameras.0='top': unknown camera 'top'; choose from front, side, wrist"):
        PickPlaceEnv(build_settings(SimConfig, cameras=("top",), image_size=64))


def test_reset_is_reproducible_from_the_seed(env):
    actions = np.random.default_rng(0).uniform(-1, 1, size=(8, 7)).astype(np.float32)

    def rollout(seed: int):
        _, info = env.reset(seed=seed)
        for action in actions:
            env.step(action)
        return info["initial"], env.data.qpos.copy()

    initial_a, qpos_a = rollout(5)
    initial_b, qpos_b = rollout(5)
    initial_c, _ = rollout(6)
    assert initial_a == initial_b
    np.testing.assert_array_equal(qpos_a, qpos_b)
    assert initial_a["cube_x_m"] != initial_c["cube_x_m"]
    assert initial_a["cube_mass_kg"] != initial_c["cube_mass_kg"]
    assert initial_a["cube_friction"] != initial_c["cube_friction"]


def test_randomization_scale_zero_gives_the_nominal_scene():
    env = PickPlaceEnv(SimConfig(cameras=(), image_size=64, randomization_scale=0.0))
    try:
        _, first = env.reset(seed=1)
        _, second = env.reset(seed=2)
    finally:
        env.close()
    assert first == second
    assert first["initial"]["cube_x_m"] == pytest.approx(0.5)
    assert first["initial"]["cube_mass_kg"] == pytest.approx(0.1)


def test_reduced_visual_meshes_keep_the_robot_dynamics(env):
    import mujoco

    from salus_engine.sim.meshes import gym_hil_assets_dir

    original = mujoco.MjModel.from_xml_path(str(gym_hil_assets_dir() / "panda.xml"))
    model = env.model
    for body in range(1, original.nbody):
        name = original.body(body).name
        np.testing.assert_allclose(model.body(name).mass, original.body_mass[body], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(model.body(name).inertia, original.body_inertia[body], rtol=1e-6, err_msg=name)

    def visual_faces(m: mujoco.MjModel) -> int:
        return sum(
            int(m.mesh_facenum[m.geom_dataid[g]])
            for g in range(m.ngeom)
            if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and m.geom_group[g] == 2
        )

    assert visual_faces(model) < 0.3 * visual_faces(original)


def test_controller_matches_gym_hil_opspace(env):
    from gym_hil.controllers.opspace import opspace

    env.reset(seed=2)
    rng = np.random.default_rng(1)
    env.data.qpos[:7] += rng.normal(0, 0.1, 7)
    env.data.qvel[:7] = rng.normal(0, 0.3, 7)
    import mujoco

    mujoco.mj_forward(env.model, env.data)
    pos = env.data.site_xpos[env.ids.pinch_site] + [0.03, -0.02, 0.05]
    quat = np.array([0.05, 0.99, 0.02, -0.1])
    quat /= np.linalg.norm(quat)
    expected = opspace(env.model, env.data, env.ids.pinch_site, env.ids.arm_dof, pos=pos, ori=quat, joint=HOME_QPOS)
    got = env._controller.torque(env.model, env.data, pos, quat, HOME_QPOS)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 11, 23])
def test_expert_succeeds(env, seed):
    expert = ScriptedExpert(env)
    outcome, steps = run_expert_episode(env, expert, seed)
    assert outcome.failure_type == SUCCESS and outcome.success, outcome.evidence
    assert steps < env.config.max_steps
    assert outcome.evidence["lifted"] is True
    assert outcome.evidence["max_contact_force_n"] < env.config.collision_force_n
    json.dumps(outcome.to_dict())


def test_driving_into_the_table_is_a_collision(env):
    env.reset(seed=0)
    cube = env.task_state().cube_pos
    beside = np.array([cube[0] - 0.08, cube[1], 0.15])  # a clear patch of table beside the cube
    # Closed fingers are stiff (open ones bend on their linkage): full speed down onto the table.
    drive(env, beside, grip=1.0, steps=25)
    info = drive(env, beside + [0, 0, -0.3], grip=1.0, steps=25, speed=1.0)
    outcome: EpisodeOutcome = info["outcome"]
    assert outcome.failure_type == COLLISION and not outcome.success
    assert outcome.evidence["other_geom"] == "table"
    assert outcome.evidence["force_n"] > env.config.collision_force_n
    assert outcome.failure_step == info["step"]
    json.dumps(outcome.to_dict())


def test_closing_beside_the_cube_and_rising_is_a_miss(env):
    env.reset(seed=3)
    s = env.task_state()
    # 6 cm off along the gripper's x axis (its fingers close along y): the fingers close on air.
    beside = np.array([s.cube_pos[0] + 0.06, s.cube_pos[1], 0.15])
    drive(env, beside, grip=-1.0, steps=30)
    drive(env, beside - [0, 0, 0.125], grip=-1.0, steps=25)
    drive(env, beside - [0, 0, 0.125], grip=1.0, steps=14)
    info = drive(env, beside, grip=1.0, steps=30)
    outcome: EpisodeOutcome = info["outcome"]
    assert outcome.failure_type == MISS, outcome
    assert outcome.evidence["lifted"] is False
    assert outcome.evidence["rise_m"] >= env.config.miss_rise_m
    assert outcome.evidence["closed_steps"] >= env.config.miss_close_steps


def finish_with(env: PickPlaceEnv, expert: ScriptedExpert) -> EpisodeOutcome:
    """Steps the expert until the episode ends; returns its outcome."""
    observation = None
    while True:
        observation, _, terminated, truncated, info = env.step(expert.act(observation))
        if terminated or truncated:
            return info["outcome"]


@pytest.mark.parametrize("offset, close_steps, pinched", [((0.025, 0.0), 3, False), ((0.0, 0.03), 8, True)])
def test_take_over_after_a_bad_close_by_the_cube_re_grasps(env, offset, close_steps, pinched):
    """A handover that starts while the fingers close on air next to the cube (half shut, the pinch
    point within 3 cm), or pinch one of its edges, re-grasps from straight above, not from the lift:
    lifting there is a miss."""
    env.reset(seed=3)
    s = env.task_state()
    beside = np.array([s.cube_pos[0] + offset[0], s.cube_pos[1] + offset[1], 0.15])
    drive(env, beside, grip=-1.0, steps=30)
    low = np.array([beside[0], beside[1], s.cube_pos[2] + 0.012])
    drive(env, low, grip=-1.0, steps=25)
    drive(env, low, grip=1.0, steps=close_steps)
    t = env.task_state()
    assert t.gripper_opening_m < 0.04 and np.linalg.norm(t.cube_pos - t.pinch_pos) < 0.03
    assert t.cube_pinched is pinched
    expert = ScriptedExpert(env)
    expert.take_over()
    assert expert.phase == PHASES.index("above_cube")
    assert finish_with(env, expert).failure_type == SUCCESS


def expert_until(env: PickPlaceEnv, seed: int, phase: str) -> None:
    """Resets the episode at `seed` and lets the expert act until it reaches waypoint `phase`."""
    expert = ScriptedExpert(env)
    obs, _ = env.reset(seed=seed)
    expert.reset()
    while expert.phase < PHASES.index(phase):
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        assert not (terminated or truncated)


def test_take_over_with_the_cube_held_carries_it_on(env):
    expert_until(env, 4, "lift")
    assert env.task_state().cube_pinched
    handover = ScriptedExpert(env)
    handover.take_over()
    assert handover.phase == PHASES.index("lift")
    assert finish_with(env, handover).failure_type == SUCCESS


def test_opening_after_lifting_away_from_the_bin_is_a_drop(env):
    expert_until(env, 4, "above_bin")  # until it carries the lifted cube toward the bin
    info = drive(env, env.task_state().target_pos, grip=-1.0, steps=30)
    outcome: EpisodeOutcome = info["outcome"]
    assert outcome.failure_type == DROP, outcome
    assert outcome.evidence["lifted"] is True
    assert outcome.evidence["cube_to_pinch_m"] > env.config.drop_distance_m


def test_doing_nothing_times_out():
    env = PickPlaceEnv(SimConfig(cameras=(), image_size=64, max_steps=5))
    try:
        env.reset(seed=0)
        for step in range(5):
            _, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32))
        assert truncated and not terminated and reward == 0.0
        outcome: EpisodeOutcome = info["outcome"]
        assert outcome.failure_type == TIMEOUT and outcome.failure_step == 4 and not outcome.success
        with pytest.raises(RuntimeError, match="reset"):
            env.step(np.zeros(7))
    finally:
        env.close()
