"""Predictor over the signal families: input families, the temporal model (causal, online equal to
offline), the episode-level metrics with known answers, RND and the FIPER gate, and `salus
evaluate --fresh --ablation` end to end, in this process and on Ray workers (every Ray process on
127.0.0.1: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 before Ray is imported).

The stores are written with the project's recorder from deterministic formulas (no random numbers),
as in `tests/test_predictor.py`; they exercise the code on tiny data and are never results.
"""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported anywhere  # noqa: E402

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from salus_engine.cli import main as salus_main
from salus_engine.predictor import PredictorError
from salus_engine.predictor.baselines import RNDNovelty, fiper_gate
from salus_engine.predictor.checkpoint import load_model
from salus_engine.predictor.dataset import EpisodeInfo, load_signal_data
from salus_engine.predictor.evaluation import scores_of
from salus_engine.predictor.inputs import parse_input_families, store_arrays
from salus_engine.predictor.metrics import alpha_curve, episode_alarm_maxima, episode_ranking, resplit_false_alarms
from salus_engine.predictor.models import TemporalConvNet
from salus_engine.predictor.online import OnlinePredictor
from salus_engine.predictor.spec import ModelSpec
from salus_engine.store import EpisodeWriter
from tests.test_predictor import HORIZONS, episode_record, one_thread  # noqa: F401 (autouse fixture: 1 torch thread)

FAMILIES = {"chunk_consistency": ["stac_l2_mean", "stac_l2_max", "tce_mse_mean", "tce_mse_max", "chunk_magnitude"],
            "action_jerk": ["jerk", "jerk_mean", "reversals", "gripper_toggles"]}
HIDDEN = 4


def family_store(path, episodes: int, base_seed: int = 0, families=FAMILIES, hidden: int = HIDDEN) -> str:
    """A format-3 store whose family columns and hidden features follow the six signals by formula."""
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=1, ensemble_size=2,
                                  base_seed=base_seed, policy="test formulas", sim_config={"control_hz": 30.0},
                                  feature_families=families, hidden_dim=hidden)
    width = sum(len(c) for c in families.values())
    for i in range(episodes):
        record = episode_record(i)
        s = record.signals.astype(np.float64)
        t = np.arange(len(s))[:, None]
        features = np.concatenate([s[:, :1] * (1 + j) + 0.01 * np.cos(0.2 * t + j) for j in range(width)], axis=1)
        hidden_features = np.concatenate([np.sin(0.1 * t + j) + s[:, 1:2] for j in range(hidden)], axis=1) if hidden else None
        writer.write(replace(record, seed=base_seed + i, features=features.astype(np.float32),
                             hidden_features=None if hidden_features is None else hidden_features.astype(np.float16)),
                     durable=False)
    return str(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("families")
    return family_store(folder / "store", 64), family_store(folder / "fresh", 24, base_seed=1000)


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("run") / "run"
    assert salus_main(["train", "--data", stores[0], "--out", str(out), "--model", "temporal",
                       "--features", "six,chunk_consistency,hidden_state,action_jerk,time",
                       "--epochs", "6", "--lr", "3e-3", "--threads", "1"]) == 0
    return str(out)


def test_input_families_are_parsed_and_checked_against_the_store(stores):
    assert parse_input_families("time, six") == ("six", "time")  # storage order, not the order given
    assert parse_input_families("all") == ("all",)
    with pytest.raises(PredictorError, match="unknown family hidden; choose from all, six"):
        parse_input_families("six,hidden")
    data = load_signal_data(stores[0])
    assert data.resolve(("all",)) == ("six", "chunk_consistency", "hidden_state", "action_jerk", "target_view", "state",
                                      "motion", "command", "grasp", "grip_depth", "slip",
                                      "time")
    with pytest.raises(PredictorError, match="does not record the input family flow_disagreement"):
        data.resolve(("six", "flow_disagreement"))
    x = data.inputs(("six", "hidden_state", "time"))
    assert x.shape == (len(data.signals), 6 + HIDDEN + 1)
    np.testing.assert_array_equal(x[:, -1], data.step)
    np.testing.assert_array_equal(data.inputs(("state",)), data.states)  # every store records the robot state


def test_temporal_model_is_causal_and_sees_31_steps():
    spec = ModelSpec(kind="temporal", hidden=(8, 8, 8, 8), signal_names=("a", "b"), features=("six",))
    assert spec.receptive_field == 31
    torch.manual_seed(0)
    model = TemporalConvNet(spec).eval()
    t = torch.arange(60, dtype=torch.float32)
    x = torch.stack([torch.sin(0.3 * t), torch.cos(0.2 * t)], dim=1)
    changed = x.clone()
    changed[40:] += 5.0
    a, b = model.probabilities(x), model.probabilities(changed)
    torch.testing.assert_close(a[:40], b[:40])  # the past does not see the future
    assert not torch.allclose(a[40:], b[40:])
    early = x.clone()
    early[:9] -= 3.0  # steps 0..8 are more than 30 steps before step 39: outside its receptive field
    torch.testing.assert_close(model.probabilities(early)[39:], a[39:])


def test_temporal_online_path_equals_offline_scores(trained, stores):
    model, config = load_model(trained)
    assert config["model"]["kind"] == "temporal"
    assert tuple(config["model"]["features"]) == ("six", "chunk_consistency", "hidden_state", "action_jerk", "time")
    data = load_signal_data(stores[0])
    offline = scores_of(model, data)
    online = OnlinePredictor.load(trained)
    from salus_engine.store import EpisodeStore

    store = EpisodeStore.open(stores[0])
    online.bind(store.feature_families, store.hidden_dim)
    for index in (0, 3):
        episode = store.episode(index)
        rows = slice(data.offsets[index], data.offsets[index + 1])
        np.testing.assert_allclose(online.episode(episode.signals, episode.features, episode.hidden_features),
                                   offline[rows], atol=1e-5)
    with pytest.raises(PredictorError, match="does not record the input family chunk_consistency"):
        online.bind({}, 0)


def test_episode_metrics_known_answers():
    episodes = [EpisodeInfo(0, -1, 9, 10), EpisodeInfo(1, 0, 4, 10), EpisodeInfo(2, 2, 9, 10), EpisodeInfo(3, -1, 9, 10)]
    offsets = np.array([0, 10, 20, 30, 40])
    scores = np.zeros(40)
    scores[3] = 0.3   # success 0 peaks at 0.3
    scores[10 + 2] = 0.9  # collision alarm 2 steps before its failure at step 4
    scores[10 + 7] = 5.0  # after the failure: must not count
    scores[20 + 5] = 0.8
    scores[30 + 1] = 0.2
    maxima = episode_alarm_maxima(scores, episodes, offsets)
    np.testing.assert_allclose(maxima, [0.3, 0.9, 0.8, 0.2])
    assert episode_ranking(maxima, episodes)["auroc"] == 1.0
    curve = alpha_curve(np.array([0.1, 0.2, 0.3, 0.4, 0.5]), scores, episodes, offsets, (0.2, 0.5))
    assert [row["tpr"] for row in curve] == [1.0, 1.0] and curve[0]["median_lead_steps"] == 3.0  # (2 + 4) / 2
    check = resplit_false_alarms(np.linspace(0, 1, 50), np.linspace(0, 1, 50), alpha=0.1, resplits=20)
    assert check["resplits"] == 20 and len(check["rates"]) == 20
    assert 0.0 <= check["mean"] <= 0.25 and 0.0 <= check["share_above_0.15"] <= 1.0


def test_rnd_finds_novel_inputs_and_the_fiper_gate_needs_both():
    t = np.arange(3000, dtype=np.float64)
    familiar = np.stack([np.sin(0.01 * t), np.cos(0.013 * t), np.sin(0.007 * t + 1)], axis=1)
    rnd = RNDNovelty(seed=0, epochs=10).fit(familiar)
    novel = familiar[:200] + 4.0
    assert np.median(rnd.scores(novel)) > 5 * np.median(rnd.scores(familiar[:200]))
    reference = np.linspace(0, 1, 101)
    gate = fiper_gate(np.array([0.95, 0.95, 0.2]), np.array([0.95, 0.1, 0.95]), reference, reference)
    np.testing.assert_allclose(gate, [0.95, 0.11, 0.21], atol=0.011)  # high only where both are high


EVALUATE_FRESH_ABLATION = ["--alpha", "0.2", "--no-plots", "--threads", "1", "--ablation"]


@pytest.fixture(scope="module")
def evaluated(trained, stores, tmp_path_factory) -> dict:
    """metrics.json of `salus evaluate --fresh --ablation`, every network trained in this process."""
    out = tmp_path_factory.mktemp("evaluation") / "in-process"
    assert salus_main(["evaluate", "--checkpoint", trained, "--data", stores[0], "--fresh", stores[1],
                       "--out", str(out), *EVALUATE_FRESH_ABLATION]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_evaluate_fresh_store_and_ablation(evaluated):
    metrics = evaluated
    scorers = metrics["scorers"]
    assert {"model", "seeds_mlp", "logistic_regression", "safe_probe", "rnd", "permutation_control", "time_only",
            "signal:epistemic_uncertainty", "signal:stac_l2_mean", "signal:jerk"} <= set(scorers)
    assert "fiper" not in scorers  # no chunk entropy recorded
    episode = scorers["model"]["episode"]
    assert 0.0 <= episode["ranking"]["auroc"] <= 1.0 and episode["resplits"]["resplits"] == 20
    assert [row["alpha"] for row in episode["alpha_curve"]][:3] == [0.02, 0.05, 0.1]
    fresh = metrics["fresh"]
    assert fresh["base_seed"] == 1000 and sum(fresh["episodes"].values()) == 24
    assert set(fresh["scorers"]) == set(scorers)
    assert fresh["scorers"]["model"]["episode"]["tpr"]["n"] == sum(v for k, v in fresh["episodes"].items()
                                                                   if k != "success")
    variants = [row["variant"] for row in metrics["ablation"]]
    assert variants[0] == "full" and "without hidden_state" in variants and "time alone" in variants
    assert len(variants) == 1 + 2 * 5 and all("fresh" in row and "test" in row for row in metrics["ablation"])


def test_evaluate_on_ray_workers_gives_the_same_figures(trained, stores, evaluated, tmp_path, capsys):
    """`--workers 2` trains the baselines, the controls and the ablation's rows as tasks on a local Ray
    (started and stopped by the evaluation); with one torch thread per network, as in this process,
    every figure of metrics.json is the same as the in-process evaluation's."""
    import ray

    assert not ray.is_initialized()
    out = tmp_path / "on-ray"
    assert salus_main(["evaluate", "--checkpoint", trained, "--data", stores[0], "--fresh", stores[1],
                       "--out", str(out), "--workers", "2", *EVALUATE_FRESH_ABLATION]) == 0
    assert not ray.is_initialized(), "the evaluation shuts down the Ray it started"
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps the lines
    # seeds' MLP, SAFE probe, state only and the two controls; then the ablation's rows
    assert "training 5 networks, 2 at a time on Ray" in printed and "trained time-only control" in printed
    assert "training 11 networks, 2 at a time on Ray" in printed and "trained ablation: time alone" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics.pop("seconds") > 0 and len(metrics["ablation"]) == 1 + 2 * 5
    assert metrics == {key: value for key, value in evaluated.items() if key != "seconds"}


def test_a_stop_cancels_the_ray_tasks_and_writes_nothing(trained, stores, tmp_path):
    """A stop while networks train on Ray (the console's stop key, SIGTERM on the command line) cancels
    the running tasks, shuts the evaluation's Ray down and writes nothing."""
    import threading

    import ray

    from salus_engine.config import EvaluateConfig
    from salus_engine.events import JobFinished, ProgressUpdate
    from salus_engine.predictor.evaluation import run_evaluation

    stop = threading.Event()
    events = []

    def sink(event):
        events.append(event)
        if isinstance(event, ProgressUpdate) and event.message.startswith("trained "):
            stop.set()  # after the first network, while others run

    out = tmp_path / "stopped"
    config = EvaluateConfig(checkpoint=trained, data=stores[0], out=str(out), plots=False, threads=1, workers=2)
    assert run_evaluation(config, sink=sink, stop=stop) is None
    assert not ray.is_initialized() and not out.exists()
    trained_lines = [e.message for e in events if isinstance(e, ProgressUpdate) and e.message.startswith("trained ")]
    assert len(trained_lines) == 1 and isinstance(events[-1], JobFinished) and events[-1].stopped


def test_fresh_store_with_other_families_is_refused_in_one_line(trained, stores, tmp_path, capsys):
    other = family_store(tmp_path / "other", 8, base_seed=500, families={"action_jerk": FAMILIES["action_jerk"]}, hidden=0)
    code = salus_main(["evaluate", "--checkpoint", trained, "--data", stores[0], "--fresh", other, "--no-plots",
                       "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "does not record the input family chunk_consistency" in err[0]


def test_the_store_arrays_a_predictor_reads_follow_its_input_families():
    assert store_arrays(("time",)) == ("signals",)
    assert store_arrays(("target_view",)) == ("signals", "states")  # the gripper's position needs the joint angles
    assert store_arrays(("motion", "time")) == ("signals", "states")
    assert store_arrays(("command",)) == ("signals", "states", "actions")  # the executed actions move the target
    assert store_arrays(("six", "hidden_state", "action_jerk")) == ("signals", "features", "hidden_features")
    assert store_arrays(("chunk_consistency", "state")) == ("signals", "features", "states")
