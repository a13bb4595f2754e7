"""The `target_view` input family: the front camera's view of the cube, relative to the gripper.

The locator runs on frames rendered by the real simulator; the predictor tests use a store written
with the project's recorder whose frames show a red square at a position set by the episode's
outcome (deterministic formulas, as in tests/test_predictor.py), so that the family carries the
outcome.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest

from salus_engine.cli import main as salus_main
from salus_engine.config import SimConfig
from salus_engine.predictor.checkpoint import load_model
from salus_engine.predictor.dataset import load_signal_data
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.evaluation import scores_of
from salus_engine.predictor.inputs import available_columns
from salus_engine.predictor.online import OnlinePredictor
from salus_engine.sim import PickPlaceEnv
from salus_engine.store import EpisodeRecord
from salus_engine.target_view import TARGET_VIEW, TARGET_VIEW_COLUMNS, TargetView
from tests.test_outcome_model import ONLINE_CHECKED, assert_online_equals_offline, monitored_episode
from tests.test_predictor import episode_record, one_thread, write_store  # noqa: F401 (one_thread: a fixture)

TABLE = np.array([150, 120, 90], np.uint8)


def true_offset(env: PickPlaceEnv) -> np.ndarray:
    """(3,) pinch point minus cube centre, m, from the simulator's own state."""
    return env.data.site_xpos[env.ids.pinch_site] - env.data.xpos[env.ids.cube_body]


@pytest.mark.parametrize("size, tolerance_m", [(256, 0.01), (64, 0.02)])
def test_the_cube_is_located_where_the_simulator_put_it(size, tolerance_m):
    env = PickPlaceEnv(SimConfig(cameras=("front",), image_size=size))
    view = TargetView(size)
    try:
        for seed in range(4):
            observation, _ = env.reset(seed=seed)
            view.reset()
            distance, dz, visible = view.update(observation["images"]["front"], observation["state"])
            truth = true_offset(env)
            assert distance == pytest.approx(np.hypot(truth[0], truth[1]), abs=tolerance_m), (seed, distance, truth)
            assert dz == pytest.approx(truth[2], abs=tolerance_m) and visible == 1.0
    finally:
        env.close()


def test_moving_the_gripper_moves_the_offset_with_it():
    """The cube stays put; distance and height follow the pinch point that forward kinematics
    computes from the joint angles of the observation."""
    env = PickPlaceEnv(SimConfig(cameras=("front",), image_size=128))
    view = TargetView(128)
    try:
        observation, _ = env.reset(seed=3)
        before = view.update(observation["images"]["front"], observation["state"])
        truth_before = true_offset(env)
        for _ in range(8):
            observation, *_ = env.step(np.array([0.0, 1.0, -0.5, 0.0, 0.0, 0.0, -1.0]))
        after = view.update(observation["images"]["front"], observation["state"])
        truth = true_offset(env)
        assert np.linalg.norm(truth - truth_before) > 0.05
        assert after[0] - before[0] == pytest.approx(np.hypot(*truth[:2]) - np.hypot(*truth_before[:2]), abs=0.005)
        assert after[1] - before[1] == pytest.approx(truth[2] - truth_before[2], abs=0.005)
    finally:
        env.close()


def test_a_hidden_cube_keeps_its_last_position_and_reports_what_is_visible():
    env = PickPlaceEnv(SimConfig(cameras=("front",), image_size=128))
    view = TargetView(128)
    try:
        observation, _ = env.reset(seed=1)
        frame, state = observation["images"]["front"], observation["state"]
        seen = view.update(frame, state)
        red = (frame[..., 0] > 90) & (frame[..., 0] > 2 * frame[..., 1].astype(int) + 20)
        hidden = frame.copy()
        hidden[red] = TABLE
        held = view.update(hidden, state)
        np.testing.assert_array_equal(held[:2], seen[:2])
        assert held[2] == 0.0
        half = frame.copy()
        rows = np.flatnonzero(red.any(axis=1))
        half[rows[: len(rows) // 2]] = np.where(red[rows[: len(rows) // 2], :, None], TABLE, frame[rows[: len(rows) // 2]])
        assert 0.2 < view.update(half, state)[2] < 0.8
        # the channels-first frame of a store gives the same columns
        view.reset()
        np.testing.assert_array_equal(view.update(frame.transpose(2, 0, 1), state), seen)
    finally:
        env.close()


def test_no_target_in_view_gives_zero_offsets():
    view = TargetView(64)
    empty = np.broadcast_to(TABLE, (64, 64, 3)).copy()
    np.testing.assert_array_equal(view.update(empty, np.zeros(8)), np.zeros(len(TARGET_VIEW_COLUMNS)))


# ---------------------------------------------------------------- the family in the predictor

SIZE = 64


def square_frames(length: int, column: int) -> np.ndarray:
    """(T, 1, 3, SIZE, SIZE) frames of a table with a 4-pixel red square whose left edge is `column`
    and that slides one pixel to the right every 10 steps."""
    frames = np.empty((length, 1, 3, SIZE, SIZE), np.uint8)
    frames[:] = TABLE[None, None, :, None, None]
    for t in range(length):
        left = column + t // 10
        frames[t, 0, :, 40:44, left:left + 4] = np.array([210, 20, 20], np.uint8)[:, None, None]
    return frames


def seen_record(i: int) -> EpisodeRecord:
    """Test episode i whose square sits further right the later the outcome code (success leftmost)."""
    record = episode_record(i, informative=False)
    column = 8 + 8 * (record.failure_type + 1)
    return replace(record, images=square_frames(len(record.signals), column))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("target-view") / "store"
    return write_store(path, 48, make=seen_record, image_size=SIZE)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("run") / "run"
    assert salus_main(["train", "--data", store, "--out", str(out), "--features", "target_view,time",
                       "--epochs", "30", "--lr", "3e-3", "--threads", "1"]) == 0
    return str(out)


def test_the_family_is_offered_only_with_the_front_camera(store, tmp_path):
    assert TARGET_VIEW in available_columns({}, 0, ("front",))
    assert TARGET_VIEW not in available_columns({}, 0, ("side", "wrist"))
    data = load_signal_data(store)
    assert data.columns[TARGET_VIEW] == list(TARGET_VIEW_COLUMNS)
    side = write_store(tmp_path / "side", 6, make=seen_record, image_size=SIZE, cameras=("side",))
    data = load_signal_data(side)
    with pytest.raises(PredictorError, match="front camera"):
        data.target_views()
    assert salus_main(["train", "--data", side, "--out", str(tmp_path / "run"), "--features", "target_view",
                       "--epochs", "1"]) == 2


def test_the_trained_model_reads_the_view_and_the_online_path_matches(trained, store):
    model, config = load_model(trained)
    assert tuple(config["model"]["features"]) == (TARGET_VIEW, "time")
    data = load_signal_data(store)
    views = data.target_views()
    assert views.shape == (len(data.signals), len(TARGET_VIEW_COLUMNS))
    offline = scores_of(model, data)
    # the square's column carries the outcome: the last step scores the episode's own type highest
    last = data.offsets[1:] - 1
    failed = data.outcomes >= 0
    assert (offline[last[failed], -1].argmax(axis=1) == data.outcomes[failed]).mean() > 0.6
    online, episodes, _, _ = assert_online_equals_offline(trained, store)
    for index in ONLINE_CHECKED:  # the frames matter: blank ones give other probabilities
        episode = episodes.episode(index)
        frames = episode.images[:, 0]
        blank = np.broadcast_to(TABLE[None, :, None, None], frames.shape)
        rows = slice(data.offsets[index], data.offsets[index + 1])
        assert not np.allclose(online.episode(episode.signals, None, None, episode.states, blank), offline[rows],
                               atol=1e-3)
    with pytest.raises(PredictorError, match="target_view"):
        online.bind(episodes.feature_families, episodes.hidden_dim, ("side",))


def test_evaluation_scores_the_view_family(trained, store, tmp_path):
    out = tmp_path / "evaluation"
    assert salus_main(["evaluate", "--checkpoint", trained, "--data", store, "--out", str(out), "--alpha", "0.2",
                       "--no-plots", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["scorers"]["model"]["episode"]["ranking"]["auroc"]
    assert model > metrics["scorers"]["time_only"]["episode"]["ranking"]["auroc"] + 0.2, model


def test_a_monitored_rollout_gives_the_predictor_the_live_front_frame(trained, tmp_path):
    """In a real rollout the probabilities recorded live equal the same predictor run afterwards on
    the recorded frames and states, and blank frames would have given others."""
    episode = monitored_episode(trained, tmp_path / "monitored")
    recorded = np.asarray(episode.array("monitor_probabilities")[:], dtype=np.float64)
    online = OnlinePredictor.load(trained)
    online.bind({}, 0, ("front",))
    frames, states = episode.images[:, 0], np.asarray(episode.states)
    np.testing.assert_allclose(recorded, online.episode(episode.signals, None, None, states, frames), atol=1e-6)
    blank = np.broadcast_to(TABLE[None, :, None, None], frames.shape)
    assert not np.allclose(recorded, online.episode(episode.signals, None, None, states, blank), atol=1e-3)


def test_the_episode_player_gives_the_predictor_the_recorded_front_frames(trained, store, tmp_path):
    from salus_tui.app import SalusApp
    from tests.test_console_signal_groups import open_player

    async def scenario():
        app = SalusApp(data=store, checkpoint=trained, start_screen="episodes", log_path=tmp_path / "session.log",
                       theme="salus-dark")
        async with app.run_test(size=(100, 30)) as pilot:
            player = await open_player(app, pilot, 2, threshold=None)  # not evaluated: no alarm row
            episode = player.episode
            online = OnlinePredictor.load(trained)
            online.bind({}, 0, ("front",))
            frames = episode.images[:, 0]
            np.testing.assert_allclose(player.probabilities,
                                       online.episode(episode.signals, None, None, episode.states, frames), atol=1e-9)
            blank = np.broadcast_to(TABLE[None, :, None, None], frames.shape)
            assert not np.allclose(player.probabilities,
                                   online.episode(episode.signals, None, None, episode.states, blank), atol=1e-3)

    asyncio.run(scenario())
