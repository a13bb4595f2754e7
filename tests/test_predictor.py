"""Failure predictor: labels, episode split, conformal threshold, permutation control, train ->
evaluate -> report round trip, online path, and the one-line user errors.

The stores here are written with the project's recorder from deterministic formulas (no random
numbers): failed episodes carry a rise of signal 0 and of one type-specific signal over their last
25 steps. They exercise the code on tiny data only and are never presented as results.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from salus_engine.cli import main as salus_main
from salus_engine.events import EpochFinished
from salus_engine.predictor import PredictorError
from salus_engine.predictor.baselines import permuted_labels
from salus_engine.predictor.checkpoint import load_model
from salus_engine.predictor.conformal import conformal_threshold, episode_max_scores, first_alarms
from salus_engine.predictor.dataset import load_signal_data, split_episodes, window_features
from salus_engine.predictor.evaluation import model_scores
from salus_engine.predictor.metrics import episode_metrics
from salus_engine.predictor.models import ModelSpec, SignalMLP, count_parameters
from salus_engine.predictor.online import OnlinePredictor
from salus_engine.predictor.training import TrainConfig, fit, run_training, targets_for
from salus_engine.store import EpisodeRecord, EpisodeWriter, make_horizon_labels

HORIZONS = (6, 10, 15, 20)
OUTCOME_CYCLE = (-1, 0, -1, 1, -1, 2, -1, 3)
MAX_STEPS = 80


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def episode_record(i: int, failure_type: int | None = None, informative: bool = True) -> EpisodeRecord:
    """Episode i of a deterministic test store: outcome from OUTCOME_CYCLE, failure at the last step."""
    code = OUTCOME_CYCLE[i % len(OUTCOME_CYCLE)] if failure_type is None else failure_type
    if code == -1:
        length = 55 + (i * 5) % 25
    elif code == 3:
        length = MAX_STEPS
    else:
        length = 40 + (i * 7) % 35
    t = np.arange(length, dtype=np.float64)
    phase = (i * 0.618) % 1.0 * 2 * np.pi
    signals = np.stack([0.1 + 0.03 * np.sin(t * (0.3 + 0.07 * j) + phase * (j + 1)) + 0.01 * j for j in range(6)], axis=1)
    if informative and code >= 0:
        ramp = np.clip((t - (length - 25)) / 25.0, 0, None)
        signals[:, 0] += 0.08 * ramp
        signals[:, 1 + code] += 0.06 * ramp
    actions = np.tile(signals[:, :1], (1, 7)).astype(np.float32)
    return EpisodeRecord(
        episode_id=i, seed=i, images=np.zeros((length, 1, 3, 1, 1), np.uint8), states=np.zeros((length, 8), np.float32),
        actions=actions, member_actions=np.repeat(actions[:, None, :], 2, axis=1), signals=signals.astype(np.float32),
        failure_type=code, failure_step=length - 1, evidence={})


def write_store(path, episodes: int, **kwargs) -> str:
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=1, ensemble_size=2,
                                  base_seed=0, policy="test formulas", sim_config={"control_hz": 30.0})
    for i in range(episodes):
        writer.write(episode_record(i, **kwargs), durable=False)
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return write_store(tmp_path_factory.mktemp("predictor") / "store", 96)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> str:
    """A run trained through the CLI on the module's store."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert salus_main(["train", "--data", store, "--out", str(out), "--epochs", "25", "--batch-size", "128",
                       "--lr", "3e-3", "--threads", "1"]) == 0
    return str(out)


# ---------------------------------------------------------------- labels and dataset


def test_labels_come_from_failure_step(store):
    data = load_signal_data(store)
    episode = data.episodes[1]  # a collision at its last step
    assert episode.failure_type == 0 and episode.failure_step == episode.length - 1
    rows = data.rows([episode.episode_id])
    labels = data.labels[rows]
    np.testing.assert_array_equal(labels, make_horizon_labels(0, episode.failure_step, episode.length, HORIZONS))
    for h, horizon in enumerate(HORIZONS):
        # exactly the steps within `horizon` steps of the failure are positive, only for its type
        assert labels[:, h, 0].sum() == horizon + 1 and labels[-(horizon + 1):, h, 0].all()
        assert labels[:, h, 1:].sum() == 0
    success_rows = data.rows([data.episodes[0].episode_id])
    assert data.labels[success_rows].sum() == 0
    # training targets: column h * 4 + k for the multi-horizon model, the longest horizon for the single-horizon model
    y = targets_for(ModelSpec(), labels)
    assert y.shape == (episode.length, 16) and np.array_equal(y[:, 1 * 4 + 0], labels[:, 1, 0])
    np.testing.assert_array_equal(targets_for(ModelSpec(kind="single-horizon"), labels), labels[:, -1, :])


def test_window_repeats_the_first_step():
    signals = np.arange(12, dtype=np.float32).reshape(6, 2).repeat(3, axis=1)[:, :6]
    step = np.array([0, 1, 2, 0, 1, 2])
    x = window_features(signals, step, 3)
    assert x.shape == (6, 18)
    np.testing.assert_array_equal(x[0].reshape(3, 6), signals[[0, 0, 0]])
    np.testing.assert_array_equal(x[2].reshape(3, 6), signals[[0, 1, 2]])
    np.testing.assert_array_equal(x[4].reshape(3, 6), signals[[3, 3, 4]])  # never reaches into the previous episode


def test_split_is_by_episode_stratified_and_seeded():
    ids = np.arange(300)
    outcomes = np.array([OUTCOME_CYCLE[i % 8] for i in ids])
    splits = split_episodes(ids, outcomes, seed=3)
    together = np.concatenate(list(splits.values()))
    assert len(together) == len(ids) and set(together) == set(ids)  # every episode in exactly one split
    assert all(outcomes[splits["calibration"]] == -1)  # calibration holds successes only
    for code in (-1, 0, 1, 2, 3):
        n = (outcomes == code).sum()
        test_share = (outcomes[splits["test"]] == code).sum() / n
        assert abs(test_share - 0.15) < 0.03, (code, test_share)
    again = split_episodes(ids, outcomes, seed=3)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    other = split_episodes(ids, outcomes, seed=4)
    assert not np.array_equal(splits["test"], other["test"])
    # a small class still reaches the test split
    small = split_episodes(np.arange(23), np.array([-1] * 20 + [1, 1, 1]), seed=0)
    assert (np.isin([20, 21, 22], small["test"])).any()


# ---------------------------------------------------------------- conformal thresholds and episode metrics


def test_conformal_threshold_known_quantile():
    scores = np.arange(100, dtype=float)  # 0, 1, ..., 99
    # k = ceil((n + 1)(1 - alpha)) = ceil(101 * 0.9) = 91 -> the 91st smallest score, 90
    assert conformal_threshold(scores, 0.1) == 90.0
    assert (scores > 90.0).mean() == 0.09
    assert conformal_threshold(scores, 0.5) == 50.0  # ceil(101 * 0.5) = 51 -> 50
    assert conformal_threshold(scores, 0.005) == float("inf")  # alpha < 1 / (n + 1): no finite threshold
    # on fresh scores from the same (evenly spaced) distribution the false-alarm rate is about alpha
    calibration = np.linspace(0, 1, 1000)
    fresh = np.linspace(0.0005, 0.9995, 999)
    threshold = conformal_threshold(calibration, 0.1)
    assert 0.09 <= (fresh > threshold).mean() <= 0.1
    with pytest.raises(PredictorError):
        conformal_threshold(scores, 1.5)
    with pytest.raises(PredictorError):
        conformal_threshold(np.array([]), 0.1)


def test_first_alarm_lead_time_and_false_alarms():
    from salus_engine.predictor.dataset import EpisodeInfo

    # episode 0 fails (collision) at step 4, alarm at step 2; episode 1 succeeds, alarm at step 1;
    # episode 2 fails (drop) at step 2 with no alarm.
    scores = np.array([0, 0, 5, 6, 7, 0, 9, 0, 0, 1, 1])
    offsets = np.array([0, 5, 8, 11])
    episodes = [EpisodeInfo(0, 0, 4, 5), EpisodeInfo(1, -1, 2, 3), EpisodeInfo(2, 1, 2, 3)]
    np.testing.assert_array_equal(first_alarms(scores, offsets, 4.0), [2, 1, -1])
    np.testing.assert_array_equal(episode_max_scores(scores, offsets), [7, 9, 1])
    types = np.zeros((11, 4))
    types[2, 0] = 1.0
    result = episode_metrics(scores, types, episodes, offsets, 4.0, control_hz=30.0, min_lead_steps=2)
    assert result["tpr"]["k"] == 1 and result["tpr"]["n"] == 2
    assert result["far"]["rate"] == 1.0
    assert result["lead_steps"] == [2] and result["median_lead_s"] == pytest.approx(2 / 30)
    assert result["per_type"]["collision"]["rate"] == 1.0 and result["per_type"]["drop"]["rate"] == 0.0
    assert result["confusion"]["matrix"][1][1] == 1  # the collision, predicted as collision
    assert result["confusion"]["matrix"][0][1] == 1  # the success, alarmed as a collision


# ---------------------------------------------------------------- permutation control


def test_permuted_labels_move_whole_sequences():
    offsets = np.array([0, 10, 30, 45])
    labels = np.zeros((45, 4, 4), np.uint8)
    labels[5:10, :, 0] = 1  # episode 0: a collision at its end
    labels[40:45, :, 2] = 1  # episode 2: a miss at its end
    shuffled = permuted_labels(labels, offsets, seed=0)
    assert shuffled.shape == labels.shape
    np.testing.assert_array_equal(shuffled, permuted_labels(labels, offsets, seed=0))
    for e in range(3):  # each episode holds at most one failure type (one donor)
        types = shuffled[offsets[e]:offsets[e + 1]].any(axis=(0, 1))
        assert types.sum() <= 1


def test_permutation_control_is_near_chance(store):
    from sklearn.metrics import roc_auc_score

    data = load_signal_data(store)
    splits = split_episodes(data.episode_ids, data.outcomes, seed=0)
    spec = ModelSpec()
    x = window_features(data.signals, data.step, 1)
    tr, va, te = (data.rows(splits[k]) for k in ("train", "val", "test"))
    train_offsets = np.concatenate([[0], np.cumsum([e.length for e in data.episodes if e.episode_id in splits["train"]])])
    val_offsets = np.concatenate([[0], np.cumsum([e.length for e in data.episodes if e.episode_id in splits["val"]])])
    test_labels = data.labels[te]

    def mean_test_auroc(labels_train, labels_val):
        """Mean over the 16 (horizon, type) outputs of the AUROC on the real test labels."""
        result = fit(spec, x[tr], targets_for(spec, labels_train), x[va], targets_for(spec, labels_val),
                     epochs=15, batch_size=128, lr=3e-3, patience=0, seed=0)
        model = SignalMLP(spec)
        model.load_state_dict(result.best_state)
        scores = model_scores(model, x[te])
        return np.mean([roc_auc_score(test_labels[:, h, k], scores[:, h, k]) for h in range(4) for k in range(4)])

    real = mean_test_auroc(data.labels[tr], data.labels[va])
    control = mean_test_auroc(permuted_labels(data.labels[tr], train_offsets, 1),
                              permuted_labels(data.labels[va], val_offsets, 1))
    assert real > 0.85
    assert abs(control - 0.5) < 0.1, control


# ---------------------------------------------------------------- train -> evaluate -> report


def test_train_writes_a_complete_run(trained, store):
    from pathlib import Path

    run = Path(trained)
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "salus-predictor" and config["model"]["kind"] == "multi-horizon"
    assert config["parameters"] == 5648 and config["result"]["epochs_run"] >= 1
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == config["result"]["epochs_run"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    splits = json.loads((run / "splits.json").read_text())
    ids = [i for name in ("train", "val", "calibration", "test") for i in splits[name]]
    assert len(ids) == len(set(ids)) == 96
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "lr", "seconds", "best"}
    # the saved model reloads with its training-split standardisation; the numpy path agrees with torch
    model, _ = load_model(run)
    data = load_signal_data(store)
    train_rows = data.rows(splits["train"])
    np.testing.assert_allclose(model.input_mean.numpy(), data.signals[train_rows].mean(axis=0), rtol=1e-4, atol=1e-6)
    online = OnlinePredictor.load(run)
    reference = model_scores(model, data.signals[:150])
    for r in range(150):
        if data.step[r] == 0:
            online.reset()
        np.testing.assert_allclose(online.step(data.signals[r]), reference[r], atol=1e-5)
    assert (run / "final.safetensors").is_file()


def test_evaluate_and_report(trained, store, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert salus_main(["evaluate", "--checkpoint", trained, "--data", store, "--out", str(out), "--alpha", "0.2",
                       "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    scorers = metrics["scorers"]
    assert set(scorers) >= {"model", "logistic_regression", "permutation_control", "signal:epistemic_uncertainty"}
    model = scorers["model"]
    assert len(model["per_type_horizon"]) == 16
    assert model["mean"]["auroc"] > 0.8 and model["any_failure"]["auroc"] > 0.8
    assert abs(scorers["permutation_control"]["mean"]["auroc"] - 0.5) < 0.15
    episode = model["episode"]
    assert episode["tpr"]["n"] == sum(v for k, v in metrics["episodes"]["test"].items() if k != "success")
    assert episode["far"]["n"] == metrics["episodes"]["test"]["success"]
    assert np.array(episode["confusion"]["matrix"]).sum() == sum(metrics["episodes"]["test"].values())
    assert 0.0 <= model["reliability"]["ece"] <= 1.0
    assert metrics["conformal"]["calibration_episodes"] == metrics["episodes"]["calibration"]["success"]
    for name in metrics["plots"]:
        assert (out / name).stat().st_size > 1000
    assert {"roc_curves.png", "reliability.png", "lead_time.png", "confusion_matrix.png"} <= set(metrics["plots"])
    capsys.readouterr()
    assert salus_main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "logistic regression" in printed and "permutation control" in printed and "detected" in printed
    assert salus_main(["report", str(out), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.count("| permutation control") == 1 and "| **MLP" in markdown


def test_stop_between_epochs(store, tmp_path):
    stop = threading.Event()
    seen = []

    def sink(event):
        if isinstance(event, EpochFinished):
            seen.append(event.epoch)
            stop.set()

    summary = run_training(TrainConfig(data=store, out=str(tmp_path / "run"), epochs=20, threads=1), sink=sink, stop=stop)
    assert seen == [1] and summary.stopped and summary.epochs_run == 1
    assert (tmp_path / "run" / "best.safetensors").is_file() and (tmp_path / "run" / "final.safetensors").is_file()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["result"]["stopped"] is True


def test_single_horizon_model_has_the_seeds_size():
    assert count_parameters(SignalMLP(ModelSpec(kind="single-horizon"))) == 4868


# ---------------------------------------------------------------- one-line user errors


def one_line_error(capsys, argv) -> str:
    assert salus_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("salus: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_user_errors_are_one_line(store, trained, tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r1")])
    assert "no such store" in err
    successes = tmp_path / "successes"
    writer = EpisodeWriter.create(successes, horizons=HORIZONS, cameras=("front",), image_size=1, ensemble_size=2,
                                  base_seed=0, policy="test formulas", sim_config={})
    for i in range(6):
        writer.write(episode_record(i, failure_type=-1), durable=False)
    assert "no failure" in one_line_error(capsys, ["train", "--data", str(successes), "--out", str(tmp_path / "r2")])

    nan_store = tmp_path / "nan"
    writer = EpisodeWriter.create(nan_store, horizons=HORIZONS, cameras=("front",), image_size=1, ensemble_size=2,
                                  base_seed=0, policy="test formulas", sim_config={})
    for i in range(6):
        record = episode_record(i)
        if i == 3:
            record.signals[7, 2] = np.nan
        writer.write(record, durable=False)
    err = one_line_error(capsys, ["train", "--data", str(nan_store), "--out", str(tmp_path / "r3")])
    assert "episode 3" in err and "NaN" in err

    assert "not empty" in one_line_error(capsys, ["train", "--data", store, "--out", trained])

    # a checkpoint trained on another signal set
    from pathlib import Path
    import shutil

    foreign = tmp_path / "foreign"
    shutil.copytree(trained, foreign)
    config = json.loads((foreign / "config.json").read_text())
    config["model"]["signal_names"] = ["entropy", *config["model"]["signal_names"][1:]]
    (foreign / "config.json").write_text(json.dumps(config))
    err = one_line_error(capsys, ["evaluate", "--checkpoint", str(foreign), "--data", store, "--out", str(tmp_path / "e")])
    assert "signals" in err and "train a new predictor" in err
    with pytest.raises(PredictorError):
        OnlinePredictor.load(foreign)

    # evaluating on a store other than the training store
    err = one_line_error(capsys, ["evaluate", "--checkpoint", trained, "--data", str(nan_store), "--out",
                                  str(tmp_path / "e2")])
    assert "NaN" in err or "not the store" in err
    other = write_store(tmp_path / "other", 12)
    err = one_line_error(capsys, ["evaluate", "--checkpoint", trained, "--data", other, "--out", str(tmp_path / "e3")])
    assert "not the store" in err or "lacks" in err

    assert "no such folder" in one_line_error(capsys, ["report", str(tmp_path / "nothing")])
    assert "no such checkpoint" in one_line_error(
        capsys, ["evaluate", "--checkpoint", str(tmp_path / "nothing"), "--data", store, "--out", str(tmp_path / "e4")])
    assert Path(trained, "config.json").is_file()
