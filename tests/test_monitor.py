"""The monitor in the loop (`salus_engine.monitor`): the alarm rule, the intervention rules, each
intervention's effect on a real rollout (real simulator, real embedded ensemble, the trained predictor
of tests/data/console_run), paired trials that replay identically up to the first intervention, and
the command line's one-line errors."""

from __future__ import annotations

import os

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before Ray is imported anywhere  # noqa: E402

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from salus_engine import STOPPED
from salus_engine.cli import main as salus_main
from salus_engine.config import DEFAULT_MONITOR_ALPHA, MonitorConfig
from salus_engine.jobs import StepExtractors, family_layout, load_monitor, run_collection, run_episode
from salus_engine.predictor.alarm_score import alarm_scores, success_profile
from salus_engine.monitor import (Alarm, AlarmMonitor, ClosedLoop, InterventionError, MonitorSetup, ScheduledIntervention,
                                  load_rules)
from salus_engine.monitor.interventions import DEFAULT_RULES, choose, code_of
from salus_engine.monitor.trial import ArmEpisodes, paired_table, parse_arms, placebo_schedules, read_trial, run_trial
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.online import alarm_settings
from salus_engine.predictor.dataset import load_signal_data
from salus_engine.signal_families import FamilyExtractor
from salus_engine.signals import SignalExtractor
from salus_engine.store import EpisodeStore
from salus_engine.store.layout import ACTORS
from salus_engine.store.verify import verify_store
from tests.conftest import tiny_flags, tiny_settings

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tests" / "data" / "console_run"
"""A predictor trained by `salus train` on a small store (six signals, multi-horizon)."""
SEED = 11
START = 4
"""The step at which the scheduled interventions start."""


def monitored(out, trigger: str, episodes: int = 2, threshold: float = 0.5, max_steps: int = 30, **values):
    config = tiny_settings(out, episodes=episodes, seed=SEED, **values)
    config.sim.max_steps = max_steps
    config.monitor.run = str(RUN)
    config.monitor.threshold = threshold
    config.monitor.trigger = trigger
    return config


# ------------------------------------------------------------------ the alarm rule


def test_alarm_rule_threshold_hysteresis_and_cooldown():
    horizons = (6, 10, 15, 20)
    monitor = AlarmMonitor(threshold=0.5, horizons=horizons, alarm_horizon=20, hysteresis=0.2, cooldown_steps=3)

    def probs(score, kind=2, short=0.0):
        p = np.zeros((4, 4))
        p[3, kind] = score
        p[1, kind] = short  # horizon 10
        return p

    scores = [0.1, 0.6, 0.7, 0.45, 0.6, 0.3, 0.6, 0.2, 0.2, 0.2, 0.2, 0.9]
    alarms = [monitor.update(t, probs(s, short=0.8 if t == 1 else 0.0)) for t, s in enumerate(scores)]
    fired = [t for t, a in enumerate(alarms) if a is not None]
    # step 1 crosses; 2 is still above (disarmed); 3 at 0.45 is above 0.5 * 0.8 = 0.4 (stays disarmed);
    # 4 cannot fire; 5 re-arms (0.3 < 0.4) and 6 crosses but lies within the cooldown of step 1 (3 steps):
    # 6 - 1 = 5 > 3, so it fires; 11 fires after re-arming at 7.
    assert fired == [1, 6, 11]
    first = alarms[1]
    assert (first.failure_type, first.horizon, first.probability) == ("miss", 10, pytest.approx(0.6))
    assert alarms[6].horizon == 20  # only the alarm horizon is over the threshold

    cooled = AlarmMonitor(threshold=0.5, horizons=horizons, alarm_horizon=20, hysteresis=0.0, cooldown_steps=5)
    fired = [t for t, s in enumerate([0.6, 0.1, 0.6, 0.1, 0.6, 0.1, 0.6, 0.1]) if cooled.update(t, probs(s))]
    assert fired == [0, 6]  # re-armed at once, but no alarm within 5 steps of the previous one
    with pytest.raises(ValueError, match="not one of the predictor's horizons"):
        AlarmMonitor(0.5, horizons, 7)


def test_the_noisy_or_alarm_score_fires_on_belief_spread_over_failure_types():
    """Two types at 0.4 each: no failure type reaches 0.5, but the probability of either,
    1 - 0.6 * 0.6 = 0.64, does; the alarm names the likelier type."""
    p = np.zeros((2, 4))
    p[:, 0], p[:, 2] = 0.4, 0.41
    np.testing.assert_allclose(alarm_scores(p, "noisy-or"), [1 - 0.6 * 0.59] * 2)
    np.testing.assert_allclose(alarm_scores(p, "max"), [0.41, 0.41])
    assert AlarmMonitor(0.5, (10, 20), 20).update(0, p) is None
    alarm = AlarmMonitor(0.5, (10, 20), 20, alarm_score="noisy-or").update(0, p)
    assert (alarm.failure_type, alarm.horizon, alarm.probability) == ("miss", 10, pytest.approx(1 - 0.6 * 0.59))
    with pytest.raises(ValueError, match="alarm score 'mean' is unknown"):
        alarm_scores(p, "mean")
    with pytest.raises(ValueError, match="alarm score 'mean' is unknown"):
        AlarmMonitor(0.5, (10, 20), 20, alarm_score="mean")


def test_the_success_profile_is_the_mean_per_step_over_the_successes_still_running():
    """Twelve episodes: ten of 3 steps, two of 5. Steps 0-2 have 12 running (>= MIN_SUCCESSES = 10):
    their means; steps 3-4 have two, so they keep step 2's mean."""
    runs = [np.array([0.1, 0.2, 0.3]) + i / 100 for i in range(10)] + [np.array([0.5, 0.5, 0.5, 0.9, 0.9])] * 2
    scores = np.concatenate(runs)
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in runs])])
    profile = success_profile(scores, offsets)
    means = [np.mean([r[t] for r in runs]) for t in range(3)]
    np.testing.assert_allclose(profile, [*means, means[2], means[2]])
    with pytest.raises(ValueError, match="needs one or more successful episodes"):
        success_profile(np.zeros(0), np.array([0]))


def test_the_excess_alarm_score_is_the_noisy_or_less_half_the_profile_online_and_offline():
    profile = (0.2, 0.6, 0.4)
    p = np.zeros((5, 4))
    p[:, 2] = [0.1, 0.5, 0.5, 0.4, 0.8]
    steps = np.arange(5)
    excess = alarm_scores(p, "noisy-or-excess", steps, profile)
    # steps 3 and 4 are past the profile's end: they take its last value
    np.testing.assert_allclose(excess, [0.1 - 0.1, 0.5 - 0.3, 0.5 - 0.2, 0.4 - 0.2, 0.8 - 0.2], atol=1e-12)
    with pytest.raises(ValueError, match="needs each row's step and a success profile"):
        alarm_scores(p, "noisy-or-excess")
    # the monitor scores each step the same way
    monitor = AlarmMonitor(0.25, (20,), 20, hysteresis=0.0, cooldown_steps=0, alarm_score="noisy-or-excess",
                           success_profile=profile)
    fired = [t for t in steps if monitor.update(int(t), p[t][None, :])]
    assert fired == [2, 4]  # 0.3 at step 2 crosses 0.25 (step 1: 0.2 does not); 0.2 at step 3 re-arms; 0.6 at 4
    assert monitor.score == pytest.approx(0.6)
    # an excess can be negative, so can its threshold; a probability rule's cannot
    assert AlarmMonitor(-0.1, (20,), 20, alarm_score="noisy-or-excess", success_profile=profile).threshold == -0.1
    with pytest.raises(ValueError, match=r"outside \(0, 1\)"):
        AlarmMonitor(-0.1, (20,), 20, alarm_score="noisy-or")
    with pytest.raises(ValueError, match="needs the checkpoint's success profile"):
        AlarmMonitor(0.25, (20,), 20, alarm_score="noisy-or-excess")


def test_intervention_rules_from_toml_and_their_errors(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nfailure_types = ["collision"]\nhorizon_at_most = 10\nintervention = "stop"\n\n'
                    '[[rule]]\nintervention = "slow"\nfactor = 0.25\nstep_at_most = 40\n')
    rules = load_rules(path)
    assert [r.intervention for r in rules] == ["stop", "slow"]
    assert rules[1].parameters == {"factor": 0.25, "steps": 15}
    assert rules[1].to_dict()["step_at_most"] == 40
    miss = Alarm(step=40, failure_type="miss", horizon=6, probability=0.9)
    assert choose(rules, miss) is rules[1]
    assert choose(rules, replace(miss, step=41)) is None  # too late for the only rule that covers misses
    assert load_rules("") == DEFAULT_RULES
    # the default rules: every failure type up to step 55 a handover until the cube is lifted, later nothing
    for kind in ("collision", "miss", "drop", "timeout"):
        early = Alarm(step=55, failure_type=kind, horizon=6, probability=0.9)
        assert choose(DEFAULT_RULES, early).intervention == "handover"
        assert choose(DEFAULT_RULES, replace(early, step=56)) is None
    assert DEFAULT_RULES[0].parameters == {"steps": 120, "until_lift": 1.0}
    for text, match in [('[[rule]]\nintervention = "pray"\n', "not one of slow"),
                        ('[[rule]]\nintervention = "slow"\nfactor = 3\n', "factor = 3 must be a number in"),
                        ('[[rule]]\nintervention = "replan"\nsteps = 3\n', "replan has no parameter 'steps'"),
                        ('[[rule]]\nfailure_types = ["fall"]\nintervention = "stop"\n', "must be among"),
                        ('[[rule]]\nintervention = "stop"\nstep_at_most = -1\n', "step_at_most -1 must be a whole"),
                        ('[rules]\n', "must hold \\[\\[rule\\]\\] tables only")]:
        path.write_text(text)
        with pytest.raises(InterventionError, match=match):
            load_rules(path)


def test_the_monitor_threshold_for_another_alpha_comes_from_the_evaluation_curve(tmp_path):
    metrics = json.loads((RUN / "evaluation" / "metrics.json").read_text())
    metrics["scorers"]["model"]["episode"]["threshold"] = 0.8
    metrics["scorers"]["model"]["episode"]["alpha_curve"] = [{"alpha": 0.1, "threshold": 0.8},
                                                             {"alpha": 0.3, "threshold": 0.6}]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    horizon = int(metrics["alarm_horizon"])
    assert alarm_settings(tmp_path) == (0.8, horizon)
    assert alarm_settings(tmp_path, alpha=0.3) == (0.6, horizon)
    with pytest.raises(PredictorError, match=r"no threshold calibrated for alpha 0.2 \(it has: 0.1, 0.3\)"):
        alarm_settings(tmp_path, alpha=0.2)
    # the monitor in the loop alarms at DEFAULT_MONITOR_ALPHA unless told otherwise, and records it
    config = MonitorConfig(run=str(RUN), evaluation=str(tmp_path))
    assert DEFAULT_MONITOR_ALPHA == 0.3
    setup = MonitorSetup.load(config)
    assert (setup.threshold, setup.alpha, setup.store_attrs()["alpha"]) == (0.6, 0.3, 0.3)
    assert MonitorSetup.load(replace(config, alpha=0.1)).threshold == 0.8
    given = MonitorSetup.load(replace(config, threshold=0.55))
    assert (given.threshold, given.alpha) == (0.55, None) and "alpha" not in given.store_attrs()
    # a threshold is checked against the run's alarm rule: a probability rule refuses a negative one,
    # the excess rule (whose score may be negative) takes it
    with pytest.raises(PredictorError, match=r"outside \(0, 1\), the range of the 'max' alarm score"):
        MonitorSetup.load(replace(config, threshold=-0.2))
    excess_run = tmp_path / "excess_run"
    shutil.copytree(RUN, excess_run)
    run_config = json.loads((excess_run / "config.json").read_text())
    run_config["model"].update(alarm_score="noisy-or-excess", success_profile=[0.3, 0.2, 0.1])
    (excess_run / "config.json").write_text(json.dumps(run_config))
    negative = MonitorSetup.load(replace(config, run=str(excess_run), threshold=-0.2))
    assert negative.threshold == -0.2 and negative.predictor.spec.alarm_score == "noisy-or-excess"
    with pytest.raises(PredictorError, match=r"outside \(-0.5, 1\)"):
        MonitorSetup.load(replace(config, run=str(excess_run), threshold=-0.7))


def test_command_line_mistakes_about_the_monitor_end_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nintervention = "pray"\n')
    cases = [
        (["--monitor", str(tmp_path / "no-run")], "no such checkpoint folder"),
        (["--monitor", str(RUN), "--monitor-threshold", "0.5", "--interventions", str(bad)], "not one of slow"),
        (["--monitor", str(RUN), "--monitor-threshold", "1.5"], "monitor.threshold"),
        (["--monitor", str(RUN), "--monitor-threshold", "-0.2"], "outside (0, 1)"),
        (["--monitor", str(RUN), "--monitor-alpha", "0.2"], "no threshold calibrated for alpha 0.2 (it has: none)"),
        (["--monitor", str(RUN), "--monitor-alpha", "0.2", "--monitor-threshold", "0.5"], "not both"),
    ]
    for i, (flags, message) in enumerate(cases):
        out = tmp_path / f"store{i}"
        code = salus_main(["collect", "--episodes", "1", "--out", str(out), *tiny_flags(), *flags])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (flags, err)
        assert not out.exists()  # nothing created for a refused setting
    code = salus_main(["trial", "--episodes", "1", "--out", str(tmp_path / "t"), *tiny_flags()])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--monitor RUN" in err[0]
    assert salus_main(["trial", "--episodes", "1", "--arms", "random", "--monitor", str(RUN),
                       "--out", str(tmp_path / "t"), *tiny_flags()]) == 2
    assert "add the monitor arm" in capsys.readouterr().err


# ------------------------------------------------------------------ interventions on real rollouts


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    """One simulator, one ensemble and one closed loop per trigger, built as a collection builds them."""
    from salus_engine.policy import PolicyEnsemble
    from salus_engine.sim import PickPlaceEnv

    config = monitored(tmp_path_factory.mktemp("rollout") / "store", "random")
    ensemble = PolicyEnsemble(config.policy, cameras=config.sim.cameras)
    env = PickPlaceEnv(config.sim)
    layout = family_layout(config, ensemble)
    setup = load_monitor(config, layout)
    extractors = StepExtractors(SignalExtractor(), FamilyExtractor(layout, config.policy.requery_every))

    def run(schedule=None, trigger="random", max_steps=None):
        setup.config.trigger = trigger
        loop = ClosedLoop(setup, env, ensemble)
        usual = env.config.max_steps
        env.config.max_steps = max_steps or usual
        try:
            return run_episode(env, ensemble, extractors, 0, SEED, config, loop=loop, schedule=schedule), env
        finally:
            env.config.max_steps = usual

    yield run
    env.close()
    ensemble.close()


def _scheduled(kind, **parameters):
    return [ScheduledIntervention(step=START, intervention=kind, parameters=parameters)]


def _same_until(a, b, step):
    for name in ("states", "actions", "member_actions", "signals", "monitor_probabilities"):
        np.testing.assert_array_equal(getattr(a, name)[:step], getattr(b, name)[:step], err_msg=name)


def test_each_intervention_changes_the_rollout_as_specified(rollout):
    base, _ = rollout(None, trigger="none")
    assert not base.intervention.any() and not base.actor.any() and base.interventions == []
    policy = base.member_actions.mean(axis=1)
    np.testing.assert_allclose(base.actions, policy, atol=1e-6)  # without interventions the policy acts

    slow, _ = rollout(_scheduled("slow", factor=0.5, steps=5))
    _same_until(slow, base, START)
    codes = slow.intervention
    assert list(codes[START:START + 6]) == [code_of("slow")] * 5 + [0] and not codes[:START].any()
    proposed = slow.member_actions.mean(axis=1)
    np.testing.assert_allclose(slow.actions[START:START + 5, :6], 0.5 * proposed[START:START + 5, :6], atol=1e-6)
    np.testing.assert_allclose(slow.actions[START:START + 5, 6], proposed[START:START + 5, 6], atol=1e-6)
    assert slow.interventions[0]["steps"] == 5 and slow.interventions[0]["step"] == START

    replan, _ = rollout(_scheduled("replan"))
    _same_until(replan, base, START)
    assert list(replan.intervention[START:START + 2]) == [code_of("replan"), 0]
    # a fresh chunk, from the next noise of the episode's sequence, replaces the planned actions
    assert not np.allclose(replan.actions[START], base.actions[START])
    assert not np.allclose(replan.member_actions[START + 1], base.member_actions[START + 1])

    retreat, _ = rollout(_scheduled("retreat", height_m=0.04, speed=0.5))
    _same_until(retreat, base, START)
    steps = 4  # 4 cm at 0.5 x 2 cm per step
    lift = np.zeros((steps, 7), np.float32)
    lift[:, 2] = 0.5
    lift[:, 6] = policy[START, 6]  # the gripper command held
    np.testing.assert_allclose(retreat.actions[START:START + steps], lift, atol=1e-6)
    assert list(retreat.intervention[START:START + steps + 1]) == [code_of("retreat")] * steps + [0]

    handover, _ = rollout(_scheduled("handover", steps=6))
    _same_until(handover, base, START)
    expert = ACTORS.index("expert")
    assert list(handover.actor[START:START + 7]) == [expert] * 6 + [0]
    assert list(handover.intervention[START:START + 6]) == [code_of("handover")] * 6
    assert not np.allclose(handover.actions[START:START + 6], handover.member_actions[START:START + 6].mean(axis=1))

    stopped, env = rollout(_scheduled("stop"))
    _same_until(stopped, base, START)
    assert (stopped.failure_type, stopped.failure_step, stopped.length) == (STOPPED, START, START + 1)
    assert stopped.evidence["stopped_by"] == "monitor" and "cube_to_bin_m" in stopped.evidence
    assert stopped.intervention[-1] == code_of("stop") and not stopped.actions[-1].any()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(7))  # the stopped episode is over


def test_a_handover_until_lift_hands_back_once_the_expert_has_lifted_the_cube(rollout):
    """`until_lift = 1`: the expert grasps and lifts the cube, then the policy carries on; `steps` is
    only the most it may take. The record counts the steps the expert really acted."""
    record, _ = rollout(_scheduled("handover", steps=150, until_lift=1), max_steps=120)
    expert = ACTORS.index("expert")
    acted = np.flatnonzero(record.actor == expert)
    assert acted[0] == START and np.array_equal(acted, np.arange(START, acted[-1] + 1))
    back = acted[-1] + 1
    assert back < START + 150 and back < record.length  # handed back early, the episode went on
    assert record.interventions[0]["steps"] == back - START
    assert record.interventions[0]["until_lift"] == 1.0
    opening = record.states[back, 7]
    assert 0.03 < opening < 0.05  # the fingers hold the 4 cm cube


def test_alarms_start_the_first_matching_rule(rollout, tmp_path):
    """A threshold the collision probability of this predictor always exceeds: the alarm comes at step
    0 and the default rules answer an early alarm, whatever its type, with a handover."""
    record, _ = rollout(None, trigger="monitor")
    assert record.alarm.any()
    first = record.interventions[0]
    assert first["trigger"] == "monitor" and first["alarm"]["step"] == first["step"]
    assert first["intervention"] == "handover" and first["until_lift"] == 1.0
    assert choose(DEFAULT_RULES, Alarm(**first["alarm"])).intervention == first["intervention"]
    assert record.intervention[first["step"]] == code_of(first["intervention"])


# ------------------------------------------------------------------ paired trials


def test_paired_trial_arms_replay_identically_until_their_first_intervention(tmp_path):
    config = monitored(tmp_path / "unused", "monitor", episodes=2, threshold=0.5)
    table = run_trial(config, parse_arms("none,monitor,random,blind"), tmp_path / "trial")
    assert read_trial(tmp_path / "trial") == json.loads(json.dumps(table))
    stores = {arm: EpisodeStore.open(tmp_path / "trial" / arm) for arm in ("none", "monitor", "random", "blind")}
    for arm, store in stores.items():
        assert verify_store(store.path).ok
        assert [m.seed for m in store.metas()] == [SEED, SEED + 1]
        assert store.attrs["monitor"]["trigger"] == arm
    none = stores["none"]
    compared = 0
    for arm in ("monitor", "random", "blind"):
        for i, meta in enumerate(stores[arm].metas()):
            got, want = stores[arm].episode(i), none.episode(i)
            first = meta.interventions[0]["step"] if meta.interventions else min(meta.episode_length, want.meta.episode_length)
            for name in ("states", "actions", "member_actions", "signals"):
                np.testing.assert_array_equal(getattr(got, name)[:first], getattr(want, name)[:first],
                                              err_msg=f"{arm} {name}")
            if meta.interventions:
                assert got.array("intervention")[first] > 0
            compared += first
    assert compared > 0  # the blind arm's first intervention comes after step 0
    # the placebo arms copy the monitor arm's interventions (kinds and parameters) on each seed
    monitor = ArmEpisodes.read(stores["monitor"].path)
    for arm in ("random", "blind"):
        placebo = ArmEpisodes.read(stores[arm].path)
        for made, copied in zip(monitor.interventions, placebo.interventions):
            assert [m["intervention"] for m in made] == [c["intervention"] for c in copied][:len(made)]
    none_arm = ArmEpisodes.read(none.path)
    lengths = dict(zip(none_arm.seeds.tolist(), none_arm.lengths.tolist()))
    for arm in ("random", "blind"):
        for seed, planned in placebo_schedules(arm, none_arm, monitor).items():
            assert all(0 <= p.step < lengths[seed] for p in planned)
    # the table counts what the stores hold
    rows = table["vs_none"]["monitor"]
    none_outcomes = [m.failure_type for m in none.metas()]
    assert rows["base_failures"] == sum(o != -1 for o in none_outcomes) and rows["pairs"] == 2
    assert set(table["targets"]) == {"prevented_share", "lost_share", "p_value_vs_random", "handover_share"}
    # the predictor refuses to train on rollouts the monitor changed, and accepts the none arm
    with pytest.raises(PredictorError, match="runtime monitor acting"):
        load_signal_data(stores["monitor"].path)
    assert len(load_signal_data(none.path).episodes) == 2
    # salus report prints the trial
    assert salus_main(["report", str(tmp_path / "trial")]) == 0


@pytest.mark.slow
def test_monitored_collection_on_ray_workers_equals_in_process(tmp_path):
    """Two Ray workers run the same closed loop, with the placebo schedules shipped per episode."""
    schedules = {SEED: [ScheduledIntervention(3, "slow", {"factor": 0.5, "steps": 4})],
                 SEED + 1: [ScheduledIntervention(5, "handover", {"steps": 6})]}
    local = monitored(tmp_path / "local", "random")
    run_collection(local, schedules=schedules)
    on_ray = monitored(tmp_path / "ray", "random", workers=2)
    run_collection(on_ray, schedules=schedules)
    a, b = EpisodeStore.open(local.out), EpisodeStore.open(on_ray.out)
    assert a.attrs["monitor"] == b.attrs["monitor"]
    for i in range(2):
        got, want = b.episode(i), a.episode(i)
        assert got.meta.interventions == want.meta.interventions and want.meta.interventions
        for name in ("intervention", "actor", "alarm"):
            np.testing.assert_array_equal(got.array(name)[:], want.array(name)[:])
        np.testing.assert_allclose(got.signals, want.signals, atol=1e-6)
        np.testing.assert_allclose(got.array("monitor_probabilities")[:], want.array("monitor_probabilities")[:],
                                   atol=1e-5)


def known_arms() -> dict[str, ArmEpisodes]:
    """10 seeds with a known table: none fails 6 (2 collisions, 2 misses, a timeout, a drop) and
    succeeds on 4; the monitor prevents 4, loses 1 and stops the timeout, acting on 4 of the 6 seeds
    that fail alone and 1 of the 4 that succeed; the random arm repeats none."""
    def arm(outcomes, handover=0, steps=10):
        n = len(outcomes)
        return ArmEpisodes(seeds=np.arange(n), outcomes=np.array(outcomes), lengths=np.full(n, 100),
                           intervention_steps=np.broadcast_to(steps, n), handover_steps=np.full(n, handover),
                           interventions=[[] for _ in range(n)])

    none = [0, 0, 2, 2, 3, 1, -1, -1, -1, -1]
    return {"none": arm(none),
            "monitor": arm([-1, -1, -1, 2, STOPPED, -1, -1, -1, -1, 0], handover=20,
                           steps=np.array([10, 10, 10, 0, 10, 0, 0, 0, 0, 10])),
            "random": arm(none)}


def test_paired_table_known_answer():
    table = paired_table(known_arms())
    row = table["vs_none"]["monitor"]
    assert (row["prevented"], row["base_failures"], row["lost"], row["base_successes"]) == (4, 6, 1, 4)
    assert row["net_success_change"] == pytest.approx(0.3) and row["stopped"] == 1
    assert row["mcnemar_p"] == pytest.approx(0.375)  # 2 * P(X <= 1), X ~ Bin(5, 1/2) = 2 * 6/32
    assert row["handover_share"] == pytest.approx(0.2)
    assert (row["acted_on_failures"], row["acted_on_successes"]) == (4, 1)
    assert row["intervention_steps_per_episode"] == pytest.approx(5.0)
    assert row["per_type"]["timeout"] == {"failures": 1, "prevented": 0, "stopped": 1, "missed": 0}
    assert row["per_type"]["collision"] == {"failures": 2, "prevented": 2, "stopped": 0, "missed": 0}
    low, high = row["prevented_ci"]
    assert low < 4 / 6 < high
    assert table["monitor_vs"]["random"]["monitor_only_success"] == 4
    assert table["targets"]["prevented_share"]["met"] is True and table["targets"]["lost_share"]["met"] is False
