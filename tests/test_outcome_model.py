"""The episode-outcome model (`--model outcome`, the default of `salus train`) and the robot-state
input families (state, motion, grasp, grip_depth, slip): history features, episode targets, the numpy
online path, and the evaluation's state-only baseline.

The store is written with the project's recorder from deterministic formulas, as in
tests/test_predictor.py; here the robot state drifts differently per outcome, so that the state
carries the outcome the way the arm's trajectory does in the simulator.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from salus_engine.cli import main as salus_main
from salus_engine.grasp import CLIP_MM, OBJECT_WIDTH_M, OPENING_COLUMN, grasp_columns, grasp_mm
from salus_engine.grip_depth import grip_depth_columns, grip_depth_mm
from salus_engine.predictor.checkpoint import load_model
from salus_engine.predictor.alarm_score import MIN_SUCCESSES
from salus_engine.predictor.conformal import conformal_rank, conformal_threshold
from salus_engine.predictor.dataset import history_features, load_signal_data
from salus_engine.predictor.evaluation import scores_of
from salus_engine.predictor.inputs import MotionTracker, state_motion
from salus_engine.predictor.models import ModelSpec, build_model
from salus_engine.predictor.online import OnlinePredictor
from salus_engine.predictor.alarm_score import alarm_scores
from salus_engine.predictor.dataset import split_episodes
from salus_engine.predictor.models import model_scores
from salus_engine.slip import SETTLE_STEPS, WINDOW_STEPS, SlipTracker, slip_columns
from salus_engine.predictor.training import (
    build_spec,
    episode_positive_weights,
    episode_weights,
    fit,
    model_inputs,
    prepare_inputs,
    restrict_member_features,
    success_peak_loss,
    targets_for,
    _SuccessPeaks,
    torch_threads,
    with_success_profile,
)
from salus_engine.store import EpisodeRecord, EpisodeStore
from salus_engine.store.layout import STATE_NAMES
from tests.test_predictor import HORIZONS, episode_record, one_thread, write_store  # noqa: F401 (one_thread: a fixture)


def drifting_record(i: int) -> EpisodeRecord:
    """Test episode i whose joint angles drift towards a direction that depends on the outcome."""
    record = episode_record(i, informative=False)
    t = np.arange(len(record.signals))[:, None]
    drift = 0.01 * (record.failure_type + 2) * t * np.linspace(0.5, 1.0, 8)[None, :]
    return replace(record, states=(np.sin(0.05 * t + i) * 0.1 + drift).astype(np.float32))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return write_store(tmp_path_factory.mktemp("outcome") / "store", 64, make=drifting_record)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> str:
    """A run trained through the CLI with the default model and features."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert salus_main(["train", "--data", store, "--out", str(out), "--epochs", "15", "--lr", "3e-3",
                       "--threads", "1"]) == 0
    return str(out)


def test_history_features_are_the_running_mean_and_max_within_each_episode():
    x = np.array([[1.0, 5.0], [3.0, 1.0], [2.0, 9.0], [7.0, 0.0], [1.0, 2.0]], dtype=np.float32)
    step = np.array([0, 1, 2, 0, 1])  # two episodes: rows 0-2 and 3-4
    h = history_features(x, step)
    assert h.shape == (5, 6) and h.dtype == np.float32
    np.testing.assert_allclose(h[:, :2], x)
    np.testing.assert_allclose(h[:, 2:4], [[1, 5], [2, 3], [2, 5], [7, 0], [4, 1]])
    np.testing.assert_allclose(h[:, 4:], [[1, 5], [3, 5], [3, 9], [7, 0], [7, 2]])


def test_outcome_targets_and_weights_count_every_episode_once():
    spec = ModelSpec(kind="outcome", signal_names=("a",), features=("time",))
    labels = np.zeros((5, 2, 4), np.uint8)
    labels[2, :, 1] = 1  # episode 0 (rows 0-2) ends in a drop at its last step
    offsets = np.array([0, 3, 5])  # episode 1 (rows 3-4) succeeds
    targets = targets_for(spec, labels, offsets)
    np.testing.assert_array_equal(targets, [[0, 1, 0, 0]] * 3 + [[0, 0, 0, 0]] * 2)
    weights = episode_weights(offsets)
    assert weights[:3].sum() == pytest.approx(weights[3:].sum()) and weights.mean() == pytest.approx(1.0)
    assert spec.n_inputs == 3 and spec.n_outputs == 4
    with pytest.raises(ValueError, match="offsets"):
        targets_for(spec, labels)


def test_balance_weighs_a_rare_failure_type_by_its_episodes_not_its_steps():
    targets = np.zeros((12, 4), np.float32)
    targets[0:6, 1] = 1  # one long drop episode (6 rows), three short successes (2 rows each)
    offsets = np.array([0, 6, 8, 10, 12])
    np.testing.assert_allclose(episode_positive_weights(targets, offsets), [1, 1, 1, 1])
    np.testing.assert_allclose(episode_positive_weights(targets, offsets, 1.0), [1, 3, 1, 1])  # 3 others : 1 drop
    np.testing.assert_allclose(episode_positive_weights(targets, offsets, 0.5), [1, 3 ** 0.5, 1, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="balance"):
        episode_positive_weights(targets, offsets, 1.5)
    spec = ModelSpec(kind="multi-horizon", signal_names=("a",), features=("signals",), horizons=(5,))
    with pytest.raises(ValueError, match="outcome model only"):
        fit(spec, np.zeros((4, 1), np.float32), np.zeros((4, 4), np.float32), np.zeros((2, 1), np.float32),
            np.zeros((2, 4), np.float32), epochs=1, balance=0.5)


def test_motion_is_the_state_change_within_each_episode_offline_and_online():
    states = np.array([[0.0, 1.0], [0.5, 1.5], [0.25, 3.0], [4.0, 4.0], [5.0, 2.0]], dtype=np.float32)
    step = np.array([0, 1, 2, 0, 1])  # two episodes: rows 0-2 and 3-4
    motion = state_motion(states, step)
    assert motion.dtype == np.float32
    np.testing.assert_array_equal(motion, [[0, 0], [0.5, 0.5], [-0.25, 1.5], [0, 0], [1, -2]])
    assert_tracker_gives(MotionTracker(), states, step, motion)


def assert_tracker_gives(tracker, states, step, offline):
    """A per-step tracker (`reset()` at each episode's step 0, `update(state)` with float64 states, as a
    live observation gives them) yields exactly the offline rows."""
    online = []
    for row, t in zip(states, step):
        if t == 0:
            tracker.reset()
        online.append(tracker.update(row.astype(np.float64)))
    np.testing.assert_array_equal(np.stack(online), offline)


def test_grasp_is_the_opening_less_the_cube_width_in_millimetres_clipped():
    openings = np.array([0.085, 0.0398, 0.0385, 0.0, 0.0412], dtype=np.float32)
    states = np.zeros((5, 8), dtype=np.float32)
    states[:, 0] = 0.3  # joint angles do not enter
    states[:, 7] = openings
    grasp = grasp_columns(states)
    assert grasp.shape == (5, 1) and grasp.dtype == np.float32
    np.testing.assert_allclose(grasp[:, 0], [CLIP_MM, -0.2, -1.5, -CLIP_MM, 1.2], atol=1e-4)
    np.testing.assert_array_equal(grasp_columns(states[1].astype(np.float64)), grasp[1])  # one state online


def test_grip_depth_is_how_far_inside_the_cube_width_the_pads_hold_it():
    openings = np.array([0.085, 0.0409, 0.0398, 0.0393, 0.0385, 0.0, 0.0412], dtype=np.float32)
    states = np.zeros((len(openings), 8), dtype=np.float32)
    states[:, 7] = openings
    depth = grip_depth_columns(states)
    assert depth.shape == (len(openings), 1) and depth.dtype == np.float32
    # open: 0; at first contact (0.9 mm wide): 0; held 0.2 / 0.7 / 1.5 mm deep; closed on nothing: 0;
    # 1.2 mm wide, past the hold band: 0
    np.testing.assert_allclose(depth[:, 0], [0.0, 0.0, 0.2, 0.7, 1.5, 0.0, 0.0], atol=1e-4)
    np.testing.assert_array_equal(grip_depth_columns(states[3].astype(np.float64)), depth[3])  # one state online


def test_one_opening_online_gives_the_offline_grasp_and_grip_depth_to_the_bit():
    """The online step computes both columns from one float32 opening with Python's min and max; the
    offline path from arrays with numpy. Over openings from open to closed, and around the cube's width
    in steps of a float32 ulp (where the depth is +0 or -0), the values are the same, signs of zero too."""
    width = np.float32(OBJECT_WIDTH_M)
    around = np.nextafter(width, np.float32(np.inf), dtype=np.float32) - width
    openings = np.concatenate([np.linspace(0.0, 0.09, 9001), width + around * np.arange(-2000, 2001)]).astype(np.float32)
    states = np.zeros((len(openings), 8), dtype=np.float32)
    states[:, 7] = openings
    grasp, depth = grasp_columns(states)[:, 0], grip_depth_columns(states)[:, 0]
    online_grasp = [grasp_mm(np.float32(s[OPENING_COLUMN])) for s in states.astype(np.float64)]
    online_depth = [grip_depth_mm(g) for g in online_grasp]
    assert all(type(v) is np.float32 for v in online_grasp + online_depth)
    np.testing.assert_array_equal(np.array(online_grasp), grasp)
    np.testing.assert_array_equal(np.array(online_depth), depth)
    np.testing.assert_array_equal(np.signbit(online_depth), np.signbit(depth))
    assert (depth > 0).sum() > 1000 and (depth == 0).sum() > 1000  # both branches taken


def test_slip_is_how_far_the_pads_closed_on_a_held_object_over_the_window():
    """An open gripper closes onto the cube (first contact 1 mm wide), holds it 0.15 mm inside its width,
    then the pads slide shut by 0.04 mm per step; a second episode closes on nothing. Only the slide
    counts, once a whole window and its settling steps lie inside the hold band, and online gives the
    offline rows."""
    held = 0.040 - 0.00015
    first = np.concatenate([[0.085, 0.06, 0.041], np.full(30, held), held - 0.00004 * np.arange(1, 21)])
    second = np.concatenate([[0.085, 0.04], np.zeros(25)])
    openings = np.concatenate([first, second]).astype(np.float32)
    states = np.zeros((len(openings), 8), dtype=np.float32)
    states[:, 7] = openings
    step = np.concatenate([np.arange(len(first)), np.arange(len(second))])
    slip = slip_columns(states, step)
    assert slip.shape == (len(openings), 1) and slip.dtype == np.float32
    first_slip = slip[:len(first), 0]
    span = WINDOW_STEPS + SETTLE_STEPS
    np.testing.assert_array_equal(first_slip[:3 + span], 0.0)  # the contact at 1 mm falls in the settling steps
    np.testing.assert_allclose(first_slip[33 + WINDOW_STEPS:], 0.04 * WINDOW_STEPS, atol=1e-3)  # a full window of slide
    assert 0.0 < first_slip[33 + 2] < 0.04 * WINDOW_STEPS  # the slide entering the window
    np.testing.assert_array_equal(slip[len(first):, 0], 0.0)  # closed on nothing: no object held
    assert_tracker_gives(SlipTracker(), states, step, slip)


def test_default_training_is_the_outcome_model_on_state_time_the_target_view_the_grasp_and_its_depth(trained, store):
    model, config = load_model(trained)
    assert config["model"]["kind"] == "outcome"
    assert config["model"]["alarm_score"] == "noisy-or-excess"
    assert tuple(config["model"]["features"]) == ("target_view", "state", "grasp", "grip_depth", "time")
    assert len(config["model"]["signal_names"]) == 14 and model.spec.n_inputs == 42
    data = load_signal_data(store)
    scores = scores_of(model, data)
    assert scores.shape == (len(data.signals), len(HORIZONS), 4)
    np.testing.assert_array_equal(scores[:, 0], scores[:, -1])  # one outcome estimate for every horizon
    # the state carries the outcome here: the episode's last step scores its own failure type highest
    last = data.offsets[1:] - 1
    failed = data.outcomes >= 0
    right = scores[last[failed], -1].argmax(axis=1) == data.outcomes[failed]
    assert right.mean() > 0.6, right.mean()  # chance: 0.25 (four types equally often)


ONLINE_CHECKED = (0, 1, 5)


def assert_online_equals_offline(run: str, store: str):
    """Checks that the online path, step by step on a recorded episode's signals, states and front
    frames, gives the offline scores of episodes `ONLINE_CHECKED`; returns (online predictor, store,
    its SignalData, offline scores (N, H, 4))."""
    model, _ = load_model(run)
    data = load_signal_data(store)
    offline = scores_of(model, data)
    online = OnlinePredictor.load(run)
    episodes = EpisodeStore.open(store)
    online.bind(episodes.feature_families, episodes.hidden_dim, episodes.cameras)
    for index in ONLINE_CHECKED:
        episode = episodes.episode(index)
        rows = slice(data.offsets[index], data.offsets[index + 1])
        np.testing.assert_allclose(online.episode(episode.signals, None, None, episode.states, episode.images[:, 0],
                                                  episode.actions),
                                   offline[rows], atol=1e-5)
    return online, episodes, data, offline


def test_outcome_online_path_equals_offline_scores(trained, store):
    assert_online_equals_offline(trained, store)


def test_a_model_reading_the_motion_and_the_grip_families_gives_the_same_scores_online(store, tmp_path):
    out = tmp_path / "motion"
    assert salus_main(["train", "--data", store, "--out", str(out), "--features",
                       "state,motion,grasp,grip_depth,slip,time",
                       "--epochs", "3", "--threads", "1"]) == 0
    _, config = load_model(str(out))
    assert config["model"]["signal_names"][8:16] == [f"{name}_delta" for name in STATE_NAMES]
    assert config["model"]["signal_names"][16:20] == ["grasp_width_error_mm", "grip_depth_mm", "slip_closing_mm",
                                                      "step"]
    assert_online_equals_offline(str(out), store)


def test_members_train_side_by_side_and_their_mean_is_scored_online_as_offline(store, tmp_path):
    """`--members 3`: three independently initialised MLPs in one run; each member is exactly a
    one-member model with its weights, the model's probabilities are their mean, and the online path
    gives the offline scores."""
    out = tmp_path / "members"
    assert salus_main(["train", "--data", store, "--out", str(out), "--features", "state,time", "--members", "3",
                       "--epochs", "3", "--threads", "1"]) == 0
    model, config = load_model(str(out))
    assert config["model"]["members"] == 3
    first = model.net[0].weight.detach()
    assert first.shape[0] == 3 and not np.allclose(first[0], first[1])  # members start apart and stay apart
    data = load_signal_data(store)
    x = torch.from_numpy(model_inputs(model.spec, data)[:200])
    alone = []
    for m in range(3):
        single = build_model(replace(model.spec, members=1))
        state = {"input_mean": model.input_mean, "input_std": model.input_std}
        for i in range(0, len(model.net), 2):
            state[f"net.{i}.weight"], state[f"net.{i}.bias"] = model.net[i].weight[m].T, model.net[i].bias[m]
        single.load_state_dict(state)
        alone.append(single.probabilities(x).numpy())
    np.testing.assert_allclose(model.probabilities(x).numpy(), np.mean(alone, axis=0), atol=1e-6)
    assert not np.allclose(alone[0], alone[1], atol=1e-3)
    assert_online_equals_offline(str(out), store)
    assert salus_main(["train", "--data", store, "--out", str(tmp_path / "t"), "--model", "temporal",
                       "--members", "2"]) == 2


def test_members_with_their_own_input_families_read_only_those(store, tmp_path, capsys):
    """`--member-features state,time/time`: the sets are dealt to the members in turn; a member's weights
    of the inputs it does not read start at zero and stay zero through training, so changing those
    inputs leaves its probabilities as they were; the online path gives the offline scores."""
    out = tmp_path / "mixed"
    assert salus_main(["train", "--data", store, "--out", str(out), "--features", "state,time", "--members", "3",
                       "--member-features", "state,time/time", "--epochs", "3", "--threads", "1"]) == 0
    model, config = load_model(str(out))
    names = config["model"]["signal_names"]
    assert config["model"]["member_inputs"] == [names, ["step"], names]
    first = model.net[0].weight.detach().numpy()  # (members, 3 x columns, hidden)
    reads_step = np.tile(np.array(names) == "step", 3)
    assert np.all(first[1][~reads_step] == 0.0) and np.all(first[1][reads_step] != 0.0)
    assert np.count_nonzero(first[0][~reads_step]) == first[0][~reads_step].size
    data = load_signal_data(store)
    x = model_inputs(model.spec, data)[:300]
    moved = x.copy()
    moved[:, ~reads_step] += 1.0  # every state column, its running mean and maximum

    def member_probabilities(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(inputs))).numpy().reshape(len(inputs), 3, -1)

    before, after = member_probabilities(x), member_probabilities(moved)
    np.testing.assert_array_equal(before[:, 1], after[:, 1])
    assert not np.allclose(before[:, 0], after[:, 0], atol=1e-3)
    assert_online_equals_offline(str(out), store)
    capsys.readouterr()
    assert salus_main(["train", "--data", store, "--out", str(tmp_path / "outside"), "--features", "state,time",
                       "--member-features", "state,motion/time", "--epochs", "1"]) == 2
    assert "motion is not an input family of the model" in capsys.readouterr().err
    assert salus_main(["train", "--data", store, "--out", str(tmp_path / "one"), "--features", "state,time",
                       "--members", "1", "--member-features", "time", "--epochs", "1"]) == 2
    assert "two or more members" in capsys.readouterr().err


def test_the_ablation_keeps_the_members_inputs_within_the_remaining_families():
    assert restrict_member_features("state,time,target_view/state,time", ("state", "time")) is None
    assert restrict_member_features("state,time,target_view/state,time", ("state", "target_view")) == \
        "target_view,state/state"
    assert restrict_member_features("target_view/state,time", ("state", "time")) is None
    assert restrict_member_features("target_view/time", ("target_view", "state", "time")) == "target_view/time"
    assert restrict_member_features(None, ("state",)) is None


def test_the_success_profile_is_the_mean_noisy_or_of_the_training_successes_per_step(trained, store):
    data = load_signal_data(store)
    config = json.loads((Path(trained) / "config.json").read_text())
    train = set(json.loads((Path(trained) / "splits.json").read_text())["train"])
    for which in ("best", "final"):
        model, _ = load_model(trained, which)
        profile = model.spec.success_profile
        assert list(profile) == config["success_profiles"][which]
        noisy_or = 1.0 - np.prod(1.0 - scores_of(model, data)[:, -1, :].astype(np.float64), axis=1)
        runs = [noisy_or[data.rows([e.episode_id])] for e in data.episodes if e.episode_id in train
                and e.failure_type == -1]
        assert len(profile) == max(len(r) for r in runs)
        expected, kept = [], None
        for t in range(len(profile)):
            alive = [r[t] for r in runs if len(r) > t]
            if len(alive) >= MIN_SUCCESSES or kept is None:
                kept = float(np.mean(alive))
            expected.append(kept)
        np.testing.assert_allclose(profile, expected, rtol=1e-5)
    assert load_model(trained)[0].spec.success_profile == tuple(config["model"]["success_profile"])  # best's
    # online, the monitor's predictor reads the same profile
    assert OnlinePredictor.load(trained, "final").spec.success_profile == tuple(config["success_profiles"]["final"])


def test_evaluation_adds_the_state_only_baseline_and_outcome_controls(trained, store, tmp_path):
    out = tmp_path / "evaluation"
    assert salus_main(["evaluate", "--checkpoint", trained, "--data", store, "--out", str(out), "--alpha", "0.2",
                       "--delta", "0.3", "--ablation", "--no-plots", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scorers = metrics["scorers"]
    assert {"model", "state_only", "time_only", "permutation_control"} <= set(scorers)
    assert not any(name.startswith("signal:joint") for name in scorers)  # the state is not thresholded as a signal
    assert metrics["model"]["kind"] == "outcome"
    variants = [row["variant"] for row in metrics["ablation"]]
    assert variants == ["full", "without target_view", "without state", "without grasp", "without grip_depth",
                        "without time", "target_view alone", "state alone", "grasp alone", "grip_depth alone",
                        "time alone"]
    ranking = scorers["model"]["episode"]["ranking"]["auroc"]
    assert ranking > scorers["time_only"]["episode"]["ranking"]["auroc"], ranking
    # the model and the networks of its kind are scored by its alarm score, the other scorers by the maximum
    assert [scorers[name]["alarm_score"] for name in ("model", "state_only", "time_only", "permutation_control")] == \
        ["noisy-or-excess"] * 4
    assert scorers["seeds_mlp"]["alarm_score"] == "max"
    # the episode ranking is that of the running maximum of the noisy-or of the four types' probabilities
    # minus half the success profile at the step
    model, _ = load_model(trained)
    data = load_signal_data(store)
    test_ids = np.asarray(json.loads((Path(trained) / "splits.json").read_text())["test"])
    test = [e for e in data.episodes if e.episode_id in set(test_ids.tolist())]
    noisy_or = 1.0 - np.prod(1.0 - scores_of(model, data)[:, -1, :].astype(np.float64), axis=1)
    profile = np.array(model.spec.success_profile)
    any_failure = noisy_or - 0.5 * profile[np.minimum(data.step, len(profile) - 1)]
    maxima = [any_failure[data.rows([e.episode_id])].max() for e in test]
    assert ranking == pytest.approx(roc_auc_score([e.failure_type >= 0 for e in test], maxima))
    # --delta: the threshold is the training-conditional one of the calibration successes' maxima
    calibration_ids = set(json.loads((Path(trained) / "splits.json").read_text())["calibration"])
    calibration = np.array([any_failure[data.rows([e.episode_id])].max() for e in data.episodes
                            if e.episode_id in calibration_ids and e.failure_type == -1])
    conformal = metrics["conformal"]
    assert conformal["delta"] == 0.3 and conformal["rank"] == conformal_rank(len(calibration), 0.2, 0.3)
    assert "<= 0.3" in conformal["guarantee"]
    threshold = scorers["model"]["episode"]["threshold"]
    assert threshold == pytest.approx(conformal_threshold(calibration, 0.2, 0.3))
    assert threshold >= conformal_threshold(calibration, 0.2)


def monitored_episode(run: str, out):
    """The recorded episode of a one-episode tiny collection (seed 11) with the predictor `run` as a
    monitor that scores and records every step and never acts."""
    from salus_engine.jobs import run_collection
    from tests.conftest import tiny_settings

    config = tiny_settings(out, episodes=1, seed=11)
    config.monitor.run = run
    config.monitor.threshold = 0.5
    config.monitor.horizon = HORIZONS[-1]
    config.monitor.trigger = "none"
    run_collection(config)
    return EpisodeStore.open(config.out).episode(0)


def test_a_monitored_rollout_feeds_the_robot_state_to_the_outcome_model(trained, tmp_path):
    """The closed loop gives the predictor each observation's state: the probabilities recorded live
    in a real rollout equal the same predictor run afterwards on the recorded signals and states."""
    episode = monitored_episode(trained, tmp_path / "monitored")
    recorded = np.asarray(episode.array("monitor_probabilities")[:], dtype=np.float64)
    online = OnlinePredictor.load(trained)
    online.bind({}, 0, ("front",))
    states, frames, actions = np.asarray(episode.states), episode.images[:, 0], np.asarray(episode.actions)
    np.testing.assert_allclose(recorded, online.episode(episode.signals, None, None, states, frames, actions),
                               atol=1e-6)
    assert not np.allclose(recorded, online.episode(episode.signals, None, None, np.zeros_like(states), frames, actions),
                           atol=1e-3)


def test_the_success_peak_term_is_the_mean_of_each_successful_episodes_highest_excess():
    p = torch.tensor([[[0.5, 0.0], [0.2, 0.5], [0.9, 0.9]],  # episode 0: 3 steps
                      [[0.1, 0.1], [0.0, 0.0], [1.0, 1.0]]])  # episode 1: 2 steps, the third is padding
    mask = torch.tensor([[True, True, True], [True, True, False]])
    profile = torch.tensor([0.4, 0.2, 1.6])
    # noisy-or: episode 0 [0.5, 0.6, 0.99], episode 1 [0.19, 0.0]; less half the profile:
    # episode 0 [0.3, 0.5, 0.19] -> 0.5; episode 1 [-0.01, -0.1] -> -0.01 (padding never counts)
    assert float(success_peak_loss(p, mask, profile)) == pytest.approx((0.5 - 0.01) / 2)


def test_the_success_peak_term_of_a_mini_batch_has_the_value_and_gradient_of_its_definition(store):
    """The training loop's two-pass term (highest step found without gradient, then that step alone with
    it) equals `success_peak_loss` over the whole padded episodes, value and every parameter's gradient."""
    data = load_signal_data(store)
    spec = build_spec(data, "outcome", "state,time", members=2, alarm_score="noisy-or-excess")
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    x, y, offsets = prepare_inputs(spec, data, splits["train"])
    x_rows = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    model = build_model(spec)
    model.set_normalisation(x_rows.mean(dim=0), x_rows.std(dim=0))
    peaks = _SuccessPeaks(spec, x_rows, y, offsets, 1.0)
    assert len(peaks.lengths) >= 3 and len(set(peaks.lengths.tolist())) > 1  # episodes of several lengths
    peaks.start_epoch(model, 1, torch.Generator().manual_seed(0))  # one mini-batch: every successful episode
    model.train()
    fast = peaks.loss(model, 0)
    fast_grads = torch.autograd.grad(fast, list(model.parameters()))
    padded = x_rows[peaks.index]
    p = torch.sigmoid(model(padded.reshape(-1, padded.shape[-1]))).reshape(*padded.shape[:2], spec.members, -1)
    full = success_peak_loss(p.mean(dim=2)[peaks.order], peaks.mask[peaks.order], peaks.profile)
    full_grads = torch.autograd.grad(full, list(model.parameters()))
    assert float(fast) == pytest.approx(float(full), rel=1e-5, abs=1e-6)
    for a, b in zip(fast_grads, full_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in fast_grads)


def test_training_with_the_success_peak_term_lowers_the_successes_highest_excess(store):
    data = load_signal_data(store)
    spec = build_spec(data, "outcome", "state,time", members=2, alarm_score="noisy-or-excess")
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    train = prepare_inputs(spec, data, splits["train"])
    val = prepare_inputs(spec, data, splits["val"])
    successes = np.array([e.episode_id for e in data.episodes
                          if e.failure_type == -1 and e.episode_id in set(splits["train"].tolist())])
    peaks = {}
    for weight in (0.0, 3.0):
        with torch_threads(1):
            result = fit(spec, *train[:2], *val[:2], epochs=8, lr=3e-3, seed=0, patience=0, train_offsets=train[2],
                         val_offsets=val[2], peak_weight=weight)
        model = build_model(spec)
        model.load_state_dict(result.final_state)
        model.eval()
        profiled = with_success_profile(spec, model, data, splits["train"])
        x, _, offsets = prepare_inputs(spec, data, successes)
        excess = alarm_scores(model_scores(model, x)[:, -1, :], "noisy-or-excess",
                              np.concatenate([np.arange(n) for n in np.diff(offsets)]), profiled.success_profile)
        peaks[weight] = np.mean([excess[a:b].max() for a, b in zip(offsets[:-1], offsets[1:])])
    assert peaks[3.0] < peaks[0.0] - 0.02, peaks
    with pytest.raises(ValueError, match="outcome model with the noisy-or-excess"):
        fit(replace(spec, alarm_score="noisy-or"), *train[:2], *val[:2], epochs=1, train_offsets=train[2],
            val_offsets=val[2], peak_weight=1.0)
