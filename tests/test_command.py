"""The `command` input family: the controller's end-effector target against the gripper's pinch point.

The tracker is checked against the real simulator's own target, and a model that reads the family
gives the same scores online as offline, in a store and in a monitored rollout.
"""

from __future__ import annotations

import numpy as np

from salus_engine.cli import main as salus_main
from salus_engine.command import COMMAND, COMMAND_COLUMNS, CommandTracker
from salus_engine.config import SimConfig
from salus_engine.predictor.checkpoint import load_model
from salus_engine.predictor.dataset import load_signal_data
from salus_engine.predictor.inputs import store_arrays
from salus_engine.predictor.online import OnlinePredictor
from salus_engine.sim import PickPlaceEnv
from salus_engine.sim.env import WORKSPACE_LOW_M
from tests.test_outcome_model import assert_online_equals_offline, monitored_episode, store  # noqa: F401 (store: a fixture)
from tests.test_predictor import one_thread  # noqa: F401 (a fixture)


def pressing_actions(steps: int) -> np.ndarray:
    """(steps, 7) float32 actions that drive the target sideways, then down past the table to the
    workspace floor, with the gripper closing; a few values lie outside [-1, 1] or are NaN, which the
    environment clips or zeroes."""
    actions = np.zeros((steps, 7), np.float32)
    actions[:8, 1] = 1.0  # first sideways, away from the cube, the obstacle and the bin
    actions[8:, 2] = -1.0
    actions[:, 6] = np.linspace(-1.0, 1.0, steps)
    actions[12, 2] = -2.5  # clipped to -1
    actions[4, 1] = np.nan  # no move in y
    actions[5, 6] = 3.0  # clipped to +1
    return actions


def test_the_tracked_target_is_the_simulators_own_target():
    env = PickPlaceEnv(SimConfig(cameras=(), image_size=64, max_steps=40))
    observation, _ = env.reset(seed=1)
    tracker = CommandTracker()
    actions = pressing_actions(36)
    rows, states, previous = [], [], None
    for action in actions:
        states.append(observation["state"])
        row = tracker.update(observation["state"], previous)
        truth = env.task_state()
        target, pinch = truth.target_pos, truth.pinch_pos
        # the env's pinch site lags its joint angles by one physics substep; the tracker reads the
        # observed joint angles, so the pinch point agrees to a fraction of a millimetre
        assert abs(row[2] - target[2]) < 1e-6  # command_height
        assert abs(row[0] - (target[2] - pinch[2])) < 2e-3  # command_dz
        assert abs(row[1] - np.hypot(*(target[:2] - pinch[:2]))) < 2e-3  # command_dxy
        assert row[3] == (-1.0 if previous is None else np.clip(previous[6], -1.0, 1.0))
        rows.append(row)
        observation, _reward, terminated, truncated, _info = env.step(action)
        previous = action
        if terminated or truncated:
            break
    rows = np.stack(rows)
    assert rows.dtype == np.float32 and rows.shape[1] == len(COMMAND_COLUMNS)
    # the target went down to the workspace floor, below the table top, and the fingers could not follow
    assert rows[:, 2].min() == np.float32(WORKSPACE_LOW_M[2])
    assert rows[:, 0].min() < -0.01
    # offline, from the recorded states and actions, the same rows
    np.testing.assert_array_equal(CommandTracker().episode(np.stack(states), actions[:len(rows)]), rows)


def test_every_store_offers_the_command_family_from_states_and_actions(store):
    data = load_signal_data(store)
    assert COMMAND in data.columns and data.columns[COMMAND] == list(COMMAND_COLUMNS)
    columns = data.inputs((COMMAND,))
    first = data.offsets[:-1]
    np.testing.assert_array_equal(columns[first, 3], -1.0)  # the gripper starts open
    np.testing.assert_array_equal(columns[first + 1, 3], np.clip(data.actions[first, 6], -1, 1))
    assert store_arrays((COMMAND, "time")) == ("signals", "states", "actions")


def test_a_model_reading_the_command_gives_the_same_scores_online(store, tmp_path):  # noqa: F811
    out = tmp_path / "command"
    assert salus_main(["train", "--data", store, "--out", str(out), "--features", "state,command,time", "--epochs", "3",
                       "--threads", "1"]) == 0
    _, config = load_model(str(out))
    assert config["model"]["signal_names"][8:12] == list(COMMAND_COLUMNS)
    assert_online_equals_offline(str(out), store)


def test_a_monitored_rollout_feeds_the_executed_actions_to_the_command_family(store, tmp_path):  # noqa: F811
    """The closed loop gives the predictor the action executed at the previous step: the probabilities
    recorded live equal the same predictor run afterwards on the recorded states and actions."""
    run = tmp_path / "command"
    assert salus_main(["train", "--data", store, "--out", str(run), "--features", "command,time", "--epochs", "3",
                       "--threads", "1"]) == 0
    episode = monitored_episode(str(run), tmp_path / "monitored")
    recorded = np.asarray(episode.array("monitor_probabilities")[:], dtype=np.float64)
    online = OnlinePredictor.load(str(run))
    online.bind({}, 0, ())
    states, actions = np.asarray(episode.states), np.asarray(episode.actions)
    np.testing.assert_allclose(recorded, online.episode(episode.signals, None, None, states, None, actions), atol=1e-6)
    # without the actions the target stays where the gripper started: other inputs, other probabilities
    assert not np.array_equal(online.episode(episode.signals, None, None, states, None, actions),
                              online.episode(episode.signals, None, None, states, None, np.zeros_like(actions)))
