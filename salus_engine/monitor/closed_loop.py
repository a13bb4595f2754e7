"""`ClosedLoop`: the monitor acting inside one rollout, step by step.

Per control step, after the ensemble has proposed its action and the step's signals are computed
(`salus_engine.jobs.run_episode`):

1. the predictor scores the step (`OnlinePredictor.step`, the same numbers as offline) and the alarm
   rule (`AlarmMonitor`) may raise an alarm;
2. when no intervention is running, a trigger may start one: the alarm through the first matching
   rule (trigger `monitor`), or the episode's schedule (`random` and `blind`, the placebo arms of a
   paired trial, `salus_engine.monitor.trial`);
3. the running intervention turns the policy's action into the executed one
   (`salus_engine.monitor.interventions` defines each kind), or stops the episode.

An alarm raised while an intervention runs is recorded and not acted on. The physics outcome is
never changed: a stopped episode ends with its own outcome, "stopped".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salus_engine.monitor.alarm import Alarm
from salus_engine.monitor.interventions import InterventionRule, choose, code_of, retreat_steps
from salus_engine.monitor.setup import MonitorSetup
from salus_engine.sim.env import POS_STEP_M
from salus_engine.store.layout import ACTORS
from salus_engine.target_view import CAMERA as TARGET_CAMERA


@dataclass(frozen=True)
class ScheduledIntervention:
    """An intervention a placebo arm starts at a fixed step, whatever the monitor says."""

    step: int
    """Control step at which it starts (deferred while another intervention runs)."""
    intervention: str
    parameters: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "intervention": self.intervention, **self.parameters}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ScheduledIntervention:
        rest = {k: float(v) for k, v in value.items() if k not in ("step", "intervention")}
        return cls(step=int(value["step"]), intervention=str(value["intervention"]), parameters=rest)


@dataclass
class StepDecision:
    """What the closed loop decided at one step."""

    action: np.ndarray
    """(7,) float32, the action to execute (zeros at a stop)."""
    probabilities: np.ndarray
    """(H_m, 4) float32, the predictor's output."""
    alarm: bool
    intervention: int
    """`INTERVENTION_KINDS` code of the intervention acting at this step (0: none)."""
    actor: int
    """`ACTORS` code of who chose the action."""
    stop: bool = False
    """True: the episode ends here as stopped by the monitor."""


@dataclass
class _Running:
    kind: str
    parameters: dict[str, float]
    remaining: float
    record: dict[str, Any]
    grip: float = 0.0


class ClosedLoop:
    """The monitor in one rollout worker's loop (one env, one ensemble).

    Args:
        setup: the loaded monitor (`MonitorSetup.load`), bound to the collection's signal families.
        env: the `PickPlaceEnv` the episodes run in (the expert and the stop read it).
        ensemble: the `PolicyEnsemble` (replan re-queries it; handover and retreat discard its chunks).
    """

    def __init__(self, setup: MonitorSetup, env, ensemble) -> None:
        from salus_engine.sim.expert import ScriptedExpert

        self.setup = setup
        self.trigger = setup.config.trigger
        self._env = env
        self._ensemble = ensemble
        self._expert = ScriptedExpert(env)
        self._alarms = setup.alarm_monitor()
        self.reset()

    def reset(self, schedule: list[ScheduledIntervention] | None = None) -> None:
        """Starts an episode (after the env's and the ensemble's reset).

        Args:
            schedule: the interventions of a `random` or `blind` arm, by start step; ignored by the
                other triggers.
        """
        self.setup.predictor.reset()
        self._alarms.reset()
        self._running: _Running | None = None
        self._pending = sorted(schedule or [], key=lambda s: s.step) if self.trigger in ("random", "blind") else []
        self.interventions: list[dict[str, Any]] = []
        self.alarms: list[Alarm] = []
        self._previous_action: np.ndarray | None = None  # executed at the previous step (the `command` family)

    @property
    def score(self) -> float:
        """The latest step's alarm score (the failure types' probabilities at the alarm horizon combined by
        the checkpoint's alarm-score rule)."""
        return self._alarms.score

    def step(self, step: int, observation: dict, action: np.ndarray, signals: np.ndarray,
             features: np.ndarray | None, hidden: np.ndarray | None) -> StepDecision:
        """One control step of the closed loop.

        Args:
            step: 0-based control step.
            observation: the env's observation of this step (a replan re-queries the ensemble on it; a
                predictor reading `target_view` reads its front-camera frame).
            action: (7,) the policy's action (ensemble mean).
            signals, features, hidden: the step's six signals (6,), family columns (F,) and hidden
                features (D,) or None, as the predictor was bound.
        """
        probabilities = self.setup.predictor.step(signals, features, hidden, observation["state"],
                                                  observation["images"].get(TARGET_CAMERA), self._previous_action)
        alarm = self._alarms.update(step, probabilities)
        if alarm is not None:
            self.alarms.append(alarm)
        if self._running is None:
            self._start_next(step, alarm, observation, action)
        executed, intervention, actor, stop = self._act(observation, np.asarray(action, dtype=np.float32))
        self._previous_action = executed
        return StepDecision(action=executed, probabilities=probabilities.astype(np.float32), alarm=alarm is not None,
                            intervention=intervention, actor=actor, stop=stop)

    def _start_next(self, step: int, alarm: Alarm | None, observation: dict, action: np.ndarray) -> None:
        if self.trigger == "monitor" and alarm is not None:
            rule = choose(self.setup.rules, alarm)
            if rule is not None:
                self._start(step, rule.intervention, rule.parameters, {"alarm": alarm.to_dict()}, action)
        elif self._pending and self._pending[0].step <= step:
            planned = self._pending.pop(0)
            self._start(step, planned.intervention, planned.parameters, {"scheduled_step": planned.step}, action)

    def _start(self, step: int, kind: str, parameters: dict[str, float], why: dict[str, Any],
               action: np.ndarray) -> None:
        if kind == "slow":
            remaining = parameters["steps"]
        elif kind == "retreat":
            remaining = retreat_steps(parameters, POS_STEP_M)
        elif kind == "handover":
            remaining = parameters["steps"] or math.inf
            self._expert.take_over()
        else:  # replan, stop: this step only
            remaining = 1
        record = {"step": int(step), "intervention": kind, **parameters, "steps": 0, "trigger": self.trigger, **why}
        self.interventions.append(record)
        self._running = _Running(kind=kind, parameters=dict(parameters), remaining=remaining, record=record,
                                 grip=float(action[6]))

    def _act(self, observation: dict, action: np.ndarray) -> tuple[np.ndarray, int, int, bool]:
        """The running intervention applied to the policy's action: (executed action (7,) float32,
        `INTERVENTION_KINDS` code, `ACTORS` code, stop)."""
        running = self._running
        policy = ACTORS.index("policy")
        if running is None or running.remaining <= 0:
            return action, 0, policy, False
        kind, parameters = running.kind, running.parameters
        actor, stop = policy, False
        if kind == "slow":
            action = action.copy()
            action[:6] *= parameters["factor"]
        elif kind == "replan":
            action, _members = self._ensemble.requery(observation)
        elif kind == "retreat":
            action = np.zeros(7, dtype=np.float32)
            action[2] = parameters["speed"]
            action[6] = running.grip
        elif kind == "handover":
            action = self._expert.act(observation)
            actor = ACTORS.index("expert")
            if parameters.get("until_lift") and self._expert.has_lifted():
                running.remaining = 1  # the cube is lifted: hand back after this step
        elif kind == "stop":
            action, stop = np.zeros(7, dtype=np.float32), True
        running.remaining -= 1
        running.record["steps"] += 1
        if running.remaining <= 0:
            if kind in ("retreat", "handover"):
                self._ensemble.discard_chunks()
            self._running = None
        return np.asarray(action, dtype=np.float32), code_of(kind), actor, stop
