"""`AlarmMonitor`: the runtime monitor's alarm rule over the predictor's per-step probabilities.

At each control step the monitor reads the predictor's (H, 4) failure probabilities and scores the
step from the failure types' probabilities at the alarm horizon by the checkpoint's alarm-score rule
(`salus_engine.predictor.alarm_score`: the largest, the probability of any failure type, or that
probability's excess over the successful training episodes' at the same step), exactly
the score that `salus evaluate` calibrates its conformal threshold on (`salus_engine.predictor.evaluation`: an
episode alarms when its score exceeds the threshold). Online, two rules keep one episode from
ringing at every step:

- hysteresis: after an alarm the monitor re-arms only once the score has fallen below
  `threshold - hysteresis * |threshold|`;
- cooldown: no alarm within `cooldown_steps` steps of the previous one.

Each alarm names the failure type with the highest probability at the alarm horizon, the shortest
of the predictor's horizons at which the score exceeds the threshold (the predicted time to failure,
steps), and the score itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.alarm_score import ALARM_SCORES, alarm_scores, needs_profile, score_range


@dataclass(frozen=True)
class Alarm:
    """One alarm of the runtime monitor."""

    step: int
    """Control step (0-based) at which the score crossed the threshold."""
    failure_type: str
    """Predicted failure type (one of `FAILURE_TYPES`)."""
    horizon: int
    """Predicted time to failure, steps: the shortest predictor horizon whose probability for
    `failure_type` exceeds the threshold (the alarm horizon when none but it does)."""
    probability: float
    """The probability of `failure_type` at the alarm horizon (the step's score)."""

    def to_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


class AlarmMonitor:
    """The alarm rule of one episode at a time: call `reset()` per episode, `update()` per step.

    Args:
        threshold: conformal alarm threshold on the score, inside the rule's range (`score_range`: (0, 1)
            for a probability).
        horizons: the predictor's horizons, steps, in the order of its outputs' first axis.
        alarm_horizon: the horizon the threshold was calibrated at (one of `horizons`).
        hysteresis: fraction in [0, 1): re-arm once the score falls below threshold - hysteresis * |threshold|.
        cooldown_steps: steps after an alarm during which no new alarm is raised (>= 0).
        alarm_score: the rule that combines the failure types' probabilities into the score, one of
            `salus_engine.predictor.alarm_score.ALARM_SCORES` (the checkpoint's `ModelSpec.alarm_score`).
        success_profile: the checkpoint's `ModelSpec.success_profile`, for a rule that needs one.

    Raises:
        ValueError: a threshold outside the rule's range, an alarm horizon that is not one of `horizons`,
            a hysteresis / cooldown out of range, an unknown alarm score, or a rule that needs a success
            profile without one.
    """

    def __init__(self, threshold: float, horizons: tuple[int, ...], alarm_horizon: int,
                 hysteresis: float = 0.2, cooldown_steps: int = 15, alarm_score: str = "max",
                 success_profile: tuple[float, ...] = ()) -> None:
        if alarm_score not in ALARM_SCORES:
            raise ValueError(f"alarm score {alarm_score!r} is unknown; choose one of {', '.join(ALARM_SCORES)}")
        low, high = score_range(alarm_score)
        if not low < threshold < high:
            raise ValueError(f"alarm threshold {threshold} is outside ({low:g}, {high:g}), the range of the "
                             f"{alarm_score!r} alarm score; run 'salus evaluate' again or give --monitor-threshold")
        if needs_profile(alarm_score) and not success_profile:
            raise ValueError(f"the {alarm_score!r} alarm score needs the checkpoint's success profile; train the "
                             "predictor again with this version of salus")
        if alarm_horizon not in horizons:
            raise ValueError(f"alarm horizon {alarm_horizon} is not one of the predictor's horizons "
                             f"{list(horizons)}; choose one of them")
        if not 0.0 <= hysteresis < 1.0 or cooldown_steps < 0:
            raise ValueError(f"hysteresis {hysteresis} must be in [0, 1) and cooldown {cooldown_steps} >= 0")
        self.threshold = float(threshold)
        self.horizons = tuple(int(h) for h in horizons)
        self.alarm_horizon = int(alarm_horizon)
        self.hysteresis = float(hysteresis)
        self.cooldown_steps = int(cooldown_steps)
        self.alarm_score = alarm_score
        self.success_profile = tuple(float(v) for v in success_profile)
        self._h = self.horizons.index(self.alarm_horizon)
        self.reset()

    def reset(self) -> None:
        """Starts a new episode: armed, no alarm yet."""
        self._armed = True
        self._last_alarm: int | None = None
        self.score = 0.0

    def update(self, step: int, probabilities: np.ndarray) -> Alarm | None:
        """Scores one step; returns the alarm raised at it, or None.

        Args:
            step: the control step (0-based).
            probabilities: (H, 4) float, the predictor's output for this step (`OnlinePredictor.step`).
        """
        p = np.asarray(probabilities, dtype=np.float64)
        scores = alarm_scores(p, self.alarm_score, step, self.success_profile)  # (H,)
        kind = int(np.argmax(p[self._h]))
        self.score = float(scores[self._h])
        if not self._armed and self.score < self.threshold - self.hysteresis * abs(self.threshold):
            self._armed = True
        cooling = self._last_alarm is not None and step - self._last_alarm <= self.cooldown_steps
        if not self._armed or cooling or self.score <= self.threshold:
            return None
        self._armed = False
        self._last_alarm = step
        over = [h for h, score in zip(self.horizons, scores) if score > self.threshold]
        return Alarm(step=int(step), failure_type=FAILURE_TYPES[kind],
                     horizon=min(over) if over else self.alarm_horizon, probability=self.score)
