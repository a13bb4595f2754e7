"""Failure predictor: labels, episode split, conformal threshold, permutation control, train ->
evaluate -> report round trip, online path, and the one-line user errors.

The stores here are written with the project's recorder from deterministic formulas (no random
numbers): failed episodes carry a rise of signal 0 and of one type-specific signal over their last
25 steps. They exercise the code on tiny data only and are never presented as results.
"""

from __future__ import annotations

import copy
import json
import threading
from pathlib import Path

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
from salus_engine.predictor.models import model_scores
from salus_engine.predictor.metrics import (episode_metrics, expected_resplit_rate, false_alarm_check,
                                           resplit_count_distribution, resplit_false_alarms, resplit_mean_spread)
from salus_engine.predictor.report import format_auroc
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


def write_store(path, episodes: int, make=episode_record, image_size: int = 1, cameras: tuple[str, ...] = ("front",),
                **kwargs) -> str:
    """A test store of `episodes` records `make(i, **kwargs)` (default `episode_record`)."""
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=cameras, image_size=image_size, ensemble_size=2,
                                  base_seed=0, policy="test formulas", sim_config={"control_hz": 30.0})
    for i in range(episodes):
        writer.write(make(i, **kwargs), durable=False)
    return str(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return write_store(tmp_path_factory.mktemp("predictor") / "store", 96)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> str:
    """A run trained through the CLI on the module's store."""
    out = tmp_path_factory.mktemp("run") / "run"
    assert salus_main(["train", "--data", store, "--out", str(out), "--model", "temporal", "--features", "six,time",
                       "--epochs", "25", "--batch-size", "128", "--lr", "3e-3", "--threads", "1"]) == 0
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
        assert abs(test_share - 0.2) < 0.03, (code, test_share)
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


def test_training_conditional_threshold_bounds_the_share_of_bad_calibration_sets():
    from scipy.stats import binom

    from salus_engine.predictor.conformal import conformal_rank

    # n = 141 successes, alpha = 0.1: the marginal rank 128 (ceil(142 * 0.9)); with delta = 0.1 the smallest
    # k with P(Binomial(141, 0.9) >= k) <= 0.1, one rank lower giving more than 0.1
    k = conformal_rank(141, 0.1, 0.1)
    assert conformal_rank(141, 0.1) == 128 and k > 128
    assert binom.sf(k - 1, 141, 0.9) <= 0.1 < binom.sf(k - 2, 141, 0.9)
    # over many calibration sets of uniform scores, a threshold's false-alarm rate is 1 - threshold:
    # the marginal rule exceeds alpha about half the time, the training-conditional one at most delta
    rng = np.random.default_rng(0)
    sets = rng.uniform(size=(4000, 141))
    marginal = np.array([1 - conformal_threshold(c, 0.1) for c in sets])
    conditional = np.array([1 - conformal_threshold(c, 0.1, 0.1) for c in sets])
    assert 0.35 < (marginal > 0.1).mean() < 0.65
    assert (conditional > 0.1).mean() == pytest.approx(binom.sf(k - 1, 141, 0.9), abs=0.02)
    assert marginal.mean() == pytest.approx(1 - 128 / 142, abs=0.005)  # the mean stays under alpha for both
    assert conditional.mean() < marginal.mean()
    # too few calibration episodes for the guarantee: no finite threshold (never alarm), not an error
    assert conformal_rank(10, 0.1, 0.1) is None  # 0.9 ** 10 = 0.35 > 0.1 even for the largest score
    assert conformal_threshold(np.arange(10.0), 0.1, 0.1) == float("inf")
    with pytest.raises(PredictorError, match="--delta"):
        conformal_threshold(np.arange(10.0), 0.1, 1.0)
    # the re-split check applies the same rule
    pooled = rng.uniform(size=400)
    marginal_check = resplit_false_alarms(pooled[:141], pooled[141:], alpha=0.1, resplits=20)
    conditional_check = resplit_false_alarms(pooled[:141], pooled[141:], alpha=0.1, resplits=20, delta=0.1)
    assert conditional_check["mean"] < marginal_check["mean"]


def test_the_false_alarm_check_gives_the_exact_resplit_mean_and_the_chance_of_a_high_rate():
    rng = np.random.default_rng(1)
    pooled = rng.uniform(size=282)
    # without ties the mean over every re-split is (n + 1 - k) / (n + 1) = 14 / 142 for n = 141, whatever
    # the scores; many random re-splits agree, and the training-conditional rule's is lower
    exact = expected_resplit_rate(pooled, 141, 0.1)
    assert exact == pytest.approx(14 / 142, abs=1e-9)
    many = resplit_false_alarms(pooled[:141], pooled[141:], 0.1, resplits=4000, seed=3)
    assert many["mean"] == pytest.approx(exact, abs=0.003) and many["expected_mean"] == exact
    assert expected_resplit_rate(pooled, 141, 0.1, delta=0.1) < exact
    # ties lower it: every score equal never alarms ('score > threshold'); with two values the exact
    # mean is still the mean over random re-splits
    assert expected_resplit_rate(np.ones(50), 20, 0.1) == 0.0
    two = rng.permutation(np.repeat([0.0, 1.0], [170, 30]))
    tied = expected_resplit_rate(two, 100, 0.2)
    assert 0.1 < tied < 0.2 - 0.02
    assert tied == pytest.approx(resplit_false_alarms(two[:100], two[100:], 0.2, resplits=4000)["mean"], abs=0.005)
    assert expected_resplit_rate(pooled, 0, 0.1) is None and expected_resplit_rate(pooled[:5], 3, 0.1) is None
    # one re-split's false-alarm count (whose mean gives the exact rate above) has the spread of random
    # re-splits, ties or not; a mean of 20 re-splits exceeds alpha about 4 times in 10
    for scores, n, alpha in ((pooled, 141, 0.1), (two, 100, 0.2)):
        counts = resplit_count_distribution(scores, n, alpha)
        rates = np.arange(len(counts)) / (len(scores) - n)
        assert len(counts) == len(scores) - n + 1 and counts.sum() == pytest.approx(1.0)
        drawn = np.array(resplit_false_alarms(scores[:n], scores[n:], alpha, resplits=4000, seed=5)["rates"])
        assert drawn.std() == pytest.approx(np.sqrt(counts @ rates**2 - (counts @ rates) ** 2), rel=0.1)
        assert (drawn > 0.15).mean() == pytest.approx(counts[rates > 0.15].sum(), abs=0.03)
    spread = resplit_mean_spread(pooled, 141, 0.1, 20)
    means = np.array(resplit_false_alarms(pooled[:141], pooled[141:], 0.1, resplits=8000, seed=6)["rates"])
    means = means.reshape(400, 20).mean(axis=1)
    assert spread["sd"] == pytest.approx(means.std(), rel=0.15)
    assert spread["chance_mean_above_alpha"] == pytest.approx((means > 0.1).mean(), abs=0.08)
    assert 0.3 < spread["chance_mean_above_alpha"] < 0.5  # split conformal's exact mean, 0.0986, sits just under alpha
    assert resplit_mean_spread(pooled, 141, 0.1, 20, delta=0.1)["chance_mean_above_alpha"] < 0.01
    assert resplit_false_alarms(pooled[:141], pooled[141:], 0.1)["chance_mean_above_alpha"] == spread[
        "chance_mean_above_alpha"]
    assert resplit_count_distribution(pooled, 0, 0.1) is None and resplit_mean_spread(pooled[:5], 3, 0.1, 20) is None
    # the chance of at least the observed false alarms: over many exchangeable calibration and test
    # draws, the share with at least 20 of 141 test alarms matches the beta-binomial tail
    draws = [false_alarm_check(rng.uniform(size=141), rng.uniform(size=141), 0.1) for _ in range(3000)]
    assert {d["rank"] for d in draws} == {128} and draws[0]["expected_rate"] == pytest.approx(14 / 142)
    share = np.mean([d["alarms"] >= 20 for d in draws])
    p20 = next(d["p_value"] for d in draws if d["alarms"] == 20)
    assert share == pytest.approx(p20, abs=0.025) and 0.05 < p20 < 0.3
    # test successes that score higher than the calibration ones: both p-values small
    shifted = false_alarm_check(rng.uniform(size=141), rng.uniform(size=704) + 0.1, 0.1)
    assert shifted["p_value"] < 0.01 and shifted["mann_whitney_p"] < 0.05 and shifted["successes"] == 704
    assert false_alarm_check(pooled[:5], pooled[5:], 0.1)["p_value"] is None  # too few for a finite threshold


def test_ranking_intervals_tell_a_real_lead_from_the_draw_of_episodes():
    from sklearn.metrics import roc_auc_score

    from salus_engine.predictor.dataset import EpisodeInfo
    from salus_engine.predictor.metrics import ranking_intervals

    # 300 episodes, a third successful; "sharp" separates failures well, "blunt" less, "same" is sharp's copy
    rng = np.random.default_rng(0)
    failed = np.arange(300) % 3 != 0
    episodes = [EpisodeInfo(i, 0 if f else -1, 9 if f else 0, 10) for i, f in enumerate(failed)]
    sharp = rng.normal(size=300) + 2.0 * failed
    blunt = rng.normal(size=300) + 0.5 * failed
    out = ranking_intervals({"model": sharp, "blunt": blunt, "same": sharp.copy()}, episodes)
    assert set(out) == {"model", "blunt", "same"} and "versus_reference" not in out["model"]
    for name, scores in (("model", sharp), ("blunt", blunt)):
        low, high = out[name]["auroc_ci95"]
        assert low < roc_auc_score(failed, scores) < high and high - low < 0.2
    gap = out["blunt"]["versus_reference"]
    assert gap["difference"] == pytest.approx(roc_auc_score(failed, sharp) - roc_auc_score(failed, blunt))
    assert gap["ci95"][0] > 0  # a lead of about 0.2 on 300 episodes is beyond the draw
    assert out["same"]["versus_reference"]["difference"] == 0 and out["same"]["versus_reference"]["ci95"] == [0, 0]
    # a terminal's table stars the gap whose interval excludes 0
    from salus_engine.predictor.report import format_gap

    assert format_gap(gap, compact=True) == f"{gap['difference']:+.3f}*"
    assert format_gap(out["same"]["versus_reference"], compact=True) == "+0.000"
    assert format_gap(None) == "–"
    # one class only: nothing to rank
    assert ranking_intervals({"model": sharp[failed]}, [e for e in episodes if e.failure_type >= 0]) == {}


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

    from salus_engine.predictor.evaluation import scores_of

    run = Path(trained)
    config = json.loads((run / "config.json").read_text())
    assert config["format"] == "salus-predictor" and config["model"]["kind"] == "temporal"
    # a store without signal families: the six signals and the step index, 7 inputs, 4 x 32 channels
    assert config["model"]["features"] == ["six", "time"] and len(config["model"]["signal_names"]) == 7
    assert config["parameters"] == 10544 and config["result"]["epochs_run"] >= 1
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
    inputs = data.inputs(("six", "time"))
    np.testing.assert_allclose(model.input_mean.numpy(), inputs[train_rows].mean(axis=0), rtol=1e-4, atol=1e-6)
    online = OnlinePredictor.load(run)
    reference = scores_of(model, data)
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
    assert {"roc_curves.png", "reliability.png", "lead_time.png", "confusion_matrix.png",
            "alpha_curve.png"} <= set(metrics["plots"])
    capsys.readouterr()
    assert salus_main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "logistic regression" in printed and "permutation control" in printed and "detected" in printed
    assert "conformal check" in printed and "detection vs lead time over alpha" in printed
    assert salus_main(["report", str(out), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    comparison = markdown_section(markdown, "Comparison")
    assert comparison.count("| permutation control") == 1
    assert f"| **model** | **{model['label']}** | **{format_auroc(model['episode']['ranking'])}** | **–** |" in comparison
    # every other scorer carries the model's lead over it, the same difference the two AUROCs give
    for name, entry in scorers.items():
        ranking = entry["episode"]["ranking"]
        if name == "model" or ranking["auroc"] is None:
            continue
        versus = ranking["versus_reference"]
        assert versus["reference"] == "model"
        assert versus["difference"] == pytest.approx(model["episode"]["ranking"]["auroc"] - ranking["auroc"])
        assert versus["ci95"] is None or versus["ci95"][0] <= versus["ci95"][1]


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


# ---------------------------------------------------------------- report of a format-2 metrics.json

FORMAT_1_METRICS = Path(__file__).resolve().parent / "data" / "console_run" / "evaluation" / "metrics.json"
"""A real format-1 metrics.json (the console snapshots' run; see test_console_snapshots)."""


def _add_episode_entries(episode: dict, auroc: float, detect: bool = False) -> None:
    """Format 2's episode entries, made up, in the structure `run_evaluation` writes."""
    episode["ranking"] = {"auroc": auroc, "auprc": auroc - 0.05, "failed": 8, "episodes": 15}
    episode["alpha_curve"] = [{"alpha": a, "threshold": 0.9 - a, "tpr": min(1.0, round(auroc * (0.3 + 2 * a), 3)),
                               "far": round(0.8 * a, 3), "median_lead_steps": None if a == 0.02 else 10 + 60 * a}
                              for a in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)]
    episode["resplits"] = {"resplits": 20, "calibration_episodes": 7, "test_episodes": 7, "rates": [0.09] * 20,
                           "mean": 0.09, "share_above_alpha_plus_0.05": 0.15, "share_above_0.15": 0.05}
    for entry in episode["per_type"].values():
        entry["median_lead_ci95"] = None
        if detect:
            entry.update(k=1, rate=0.5, ci95=[0.0126, 0.9874], median_lead_steps=14.0, median_lead_ci95=[9.0, 19.0])
    if detect:
        episode["tpr"] = {"k": 4, "n": 8, "rate": 0.5, "ci95": [0.157, 0.843]}
        episode["median_lead_steps"], episode["median_lead_s"] = 14.0, 14.0 / episode["control_hz"]


def format_2_metrics(fresh: bool = True, ablation: bool = True) -> dict:
    """FORMAT_1_METRICS with format 2's entries added by hand (made-up numbers): the episode-level
    ranking, alpha curve and re-splits of every scorer (the model's detecting one episode of each
    type), a family column and the time-only control, and optionally a fresh store and an ablation."""
    metrics = json.loads(FORMAT_1_METRICS.read_text())
    metrics["format_version"] = 2
    metrics["conformal"]["resplits"] = 20
    scorers = metrics["scorers"]
    scorers["signal:tce_mse_mean"] = {**copy.deepcopy(scorers["signal:action_variance"]),
                                      "label": "tce_mse_mean thresholded", "short": "tce_mse_mean"}
    scorers["time_only"] = {**copy.deepcopy(scorers["permutation_control"]),
                            "label": "time-only control (an MLP on the step index)", "short": "time only"}
    for i, (name, entry) in enumerate(scorers.items()):
        _add_episode_entries(entry["episode"], round(0.95 - 0.04 * i, 2), detect=name == "model")
    scorers["signal:tce_mse_mean"]["episode"]["ranking"]["auroc"] = 0.9  # the best signal column
    scorers["model"]["episode"]["ranking"]["auroc_ci95"] = [0.9, 0.99]
    scorers["logistic_regression"]["episode"]["ranking"]["versus_reference"] = {
        "reference": "model", "difference": 0.04, "ci95": [-0.01, 0.09]}
    if fresh:
        fresh_scorers = copy.deepcopy(scorers)
        for entry in fresh_scorers.values():
            entry.pop("reliability", None)
            entry["episode"]["ranking"]["auroc"] = round(entry["episode"]["ranking"]["auroc"] - 0.1, 2)
            entry["episode"]["ranking"].pop("auroc_ci95", None)
            entry["episode"]["resplits"]["test_episodes"] = 10  # the fresh store's 10 successes, every scorer
        fresh_scorers["model"]["episode"]["resplits"]["mean"] = 0.11
        fresh_scorers["model"]["episode"]["far"] = {"k": 2, "n": 10, "rate": 0.2, "ci95": [0.025, 0.556]}
        metrics["fresh"] = {"store": "data/fresh", "base_seed": 100000,
                            "episodes": {"success": 10, "collision": 3, "drop": 3, "miss": 2, "timeout": 2},
                            "scorers": fresh_scorers, "note": "every episode of a store the predictor never "
                                                              "trained on"}
    else:
        metrics["fresh"] = None
    if ablation:
        def scores(auroc: float) -> dict:
            return {"ranking": {"auroc": auroc, "auprc": auroc - 0.1, "failed": 8, "episodes": 15},
                    "tpr": {"k": 6, "n": 8, "rate": 0.75, "ci95": [0.35, 0.97]},
                    "far": {"k": 1, "n": 7, "rate": 1 / 7, "ci95": [0.004, 0.58]}, "median_lead_steps": 12.0}

        metrics["ablation"] = [
            {"variant": variant, "features": features, "test": scores(auroc),
             **({"fresh": scores(auroc - 0.1)} if fresh else {})}
            for variant, features, auroc in (("full", ["six", "chunk_consistency"], 0.91),
                                             ("without chunk_consistency", ["six"], 0.82),
                                             ("chunk_consistency alone", ["chunk_consistency"], 0.77))]
    else:
        metrics["ablation"] = None
    return metrics


def write_metrics(folder: Path, metrics: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def markdown_section(markdown: str, title: str) -> str:
    """The text from the bold `title` to the next bold section title."""
    start = markdown.index(f"**{title}")
    end = markdown.find("\n**", start + 1)
    return markdown[start:] if end < 0 else markdown[start:end]


def test_report_of_format_2_shows_every_section(tmp_path, capsys):
    from salus_engine.predictor.plots import _alpha_curve

    metrics = format_2_metrics()
    out = write_metrics(tmp_path / "evaluation", metrics)
    assert salus_main(["report", str(out), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "format 1" not in markdown
    # comparison: episode-level columns first, grouped model / baselines / controls, signals by episode AUROC
    comparison = markdown_section(markdown, "Comparison")
    header = next(line for line in comparison.splitlines() if line.startswith("|  | scorer"))
    assert header.split(" | ")[2:6] == ["episode AUROC (95% CI)", "model - this (95% CI)", "episode PR-AUC",
                                        "detected (TPR)"]
    assert header.rstrip(" |").endswith("step AUROC (mean)")
    rows = [line for line in comparison.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(metrics["scorers"])
    assert rows[0].startswith("| **model** | **MLP multi-horizon** | **0.950 (0.900-0.990)** | **–** | **0.900** | "
                              "**0.50 (4/8)** |")
    assert rows[1].startswith("| baselines | logistic regression (6 signals) | 0.910 | +0.040 (-0.010 to +0.090) |")
    assert "| controls | permutation control" in rows[-2] and rows[-1].startswith("|  | time-only control")
    signals = [r for r in rows if "thresholded" in r]
    aurocs = [float(r.split(" | ")[2]) for r in signals]
    assert aurocs == sorted(aurocs, reverse=True) and "tce_mse_mean" in signals[0]
    assert "chance: the share of failed episodes, 8/15 = 0.53" in comparison
    # the model per failure type with its intervals
    per_type = markdown_section(markdown, "Model per failure type")
    assert "| collision | 2 | 0.50 (1/2; 0.01-0.99) | 14.0 (9.0-19.0) | 0.47 |" in per_type
    assert "| success: false alarms | 7 | 0.00 (0/7; 0.00-0.41) |" in per_type
    # conformal re-splits, alpha curve, fresh store, ablation on both stores
    resplits = markdown_section(markdown, "Conformal check")
    assert "| **MLP** | **0.00 (0/7)** | **20** | **7 / 7** | **0.090** | **0.15** | **0.05** |" in resplits
    assert "share > α+0.05 (0.15)" in resplits
    alpha = markdown_section(markdown, "Detection vs lead time over alpha")
    assert "| 0.02 | 0.880 | 0.32 | 0.02 | – | – |" in alpha and "| 0.5 | 0.400 | 1.00 | 0.40 | 40.0 | 1.33 |" in alpha
    fresh = markdown_section(markdown, "Fresh store")
    assert "data/fresh (base seed 100000; 20 episodes" in fresh and "| **model** | **MLP multi-horizon** | **0.850** |" in fresh
    # the fresh store's own per-type figures and re-split check, not the test split's
    fresh_types = markdown_section(markdown, "Model per failure type, fresh store")
    assert "| success: false alarms | 10 | 0.20 (2/10; 0.03-0.56) |" in fresh_types
    fresh_resplits = markdown_section(markdown, "Conformal check, fresh store")
    assert "| **MLP** | **0.20 (2/10)** | **20** | **7 / 10** | **0.110** |" in fresh_resplits
    assert "calibration / fresh successes" in fresh_resplits and "calibration and fresh successes" in fresh_resplits
    test_ablation = markdown_section(markdown, "Ablation, test split")
    assert "| **full** | **six + chunk_consistency** | **0.910** |" in test_ablation
    assert "| without chunk_consistency | six | 0.820 | 0.720 | 0.75 (6/8) | 0.14 (1/7) | 12.0 |" in test_ablation
    assert "| chunk_consistency alone | chunk_consistency | 0.670 |" in markdown_section(markdown, "Ablation, fresh store")
    # the rich tables hold the same sections
    assert salus_main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    for title in ("per episode: alarm at the conformal threshold", "per failure type", "conformal check",
                  "detection vs lead time over alpha", "fresh store data/fresh", "per failure type, fresh store",
                  "conformal check, fresh store", "ablation, test split", "ablation, fresh store", "per step"):
        assert title in printed, title
    assert "0.950" in printed and "14.0 (9.0-19.0)" in printed
    # the re-split checks fit 80 columns: the sizes shared by every row move into the title, no cell is cut
    assert "20 re-splits, calibration / fresh successes 7 / 10" in " ".join(printed.split())
    assert any(line.split()[:4] == ["MLP", "0.20", "(2/10)", "0.110"] for line in printed.splitlines()), printed
    # the alpha-curve plot
    assert _alpha_curve(tmp_path / "alpha.png", metrics) and (tmp_path / "alpha.png").stat().st_size > 1000


def test_report_of_format_1_shows_dashes(tmp_path, capsys):
    from salus_engine.predictor.plots import _alpha_curve

    out = write_metrics(tmp_path / "old", json.loads(FORMAT_1_METRICS.read_text()))
    assert salus_main(["report", str(out), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "format 1" in markdown and "Fresh store" not in markdown and "Ablation" not in markdown
    assert "| **model** | **MLP multi-horizon** | **–** | **–** | **–** | **0.00 (0/8)** |" in markdown
    assert "| – | – | – | – | – | – |" in markdown_section(markdown, "Detection vs lead time over alpha")
    assert "| **MLP** | **0.00 (0/7)** | **–** | **–** | **–** | **–** | **–** |" in markdown
    assert salus_main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "format 1" in printed and "conformal check" in printed and "ablation, test split" not in printed
    assert "– re-splits" not in " ".join(printed.split())  # no sizes to put in the title: the columns stay
    assert not _alpha_curve(tmp_path / "alpha.png", json.loads(FORMAT_1_METRICS.read_text()))
    # format 2 without --fresh / --ablation: those sections are left out
    out = write_metrics(tmp_path / "plain", format_2_metrics(fresh=False, ablation=False))
    assert salus_main(["report", str(out), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "Fresh store" not in markdown and "Ablation" not in markdown and "format 1" not in markdown
    # a damaged optional entry is a one-line error
    damaged = format_2_metrics()
    damaged["fresh"] = ["not", "an", "object"]
    write_metrics(tmp_path / "damaged", damaged)
    assert "entry 'fresh'" in one_line_error(capsys, ["report", str(tmp_path / "damaged")])


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
    for flags in (["--model", "multi-horizon"], ["--alarm-score", "noisy-or"]):
        err = one_line_error(capsys, ["train", "--data", store, "--out", str(tmp_path / "r4"), "--peak-weight", "1",
                                      *flags])
        assert "--peak-weight needs --model outcome" in err
    assert "peak_weight" in one_line_error(capsys, ["train", "--data", store, "--out", str(tmp_path / "r5"),
                                                    "--peak-weight", "-1"])

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
    assert "delta" in one_line_error(capsys, ["evaluate", "--checkpoint", trained, "--data", store, "--out",
                                              str(tmp_path / "e5"), "--delta", "1.5"])
    assert Path(trained, "config.json").is_file()
