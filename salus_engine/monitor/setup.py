"""`MonitorSetup`: a monitor's predictor, conformal threshold, alarm rule and intervention rules,
loaded from its settings (`MonitorConfig`) and checked against the collection it will watch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salus_engine.config import DEFAULT_MONITOR_ALPHA, MonitorConfig
from salus_engine.monitor.alarm import AlarmMonitor
from salus_engine.monitor.interventions import InterventionRule, load_rules
from salus_engine.predictor.alarm_score import score_range
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.online import OnlinePredictor, alarm_settings


@dataclass
class MonitorSetup:
    """Everything a closed-loop episode needs from the monitor's settings."""

    config: MonitorConfig
    predictor: OnlinePredictor
    threshold: float
    """Alarm threshold on the score (`salus_engine.predictor.alarm_score.score_range`)."""
    horizon: int
    """Alarm horizon, steps."""
    rules: tuple[InterventionRule, ...]
    alpha: float | None = None
    """The false-alarm rate whose conformal threshold is `threshold`; None: a threshold given as such."""

    @classmethod
    def load(cls, config: MonitorConfig) -> MonitorSetup:
        """Loads the run's predictor, the evaluation's conformal threshold for `config.alpha`
        (`DEFAULT_MONITOR_ALPHA` when unset) and its alarm horizon (unless `config` sets them) and the
        intervention rules.

        Raises:
            PredictorError: the run or its evaluation is missing or damaged, the horizon is not one of
                the predictor's, an alpha the evaluation did not calibrate, or both a threshold and an
                alpha.
            InterventionError: a wrong interventions file.
        """
        predictor = OnlinePredictor.load(config.run, config.weights)
        threshold, horizon = config.threshold, config.horizon
        if threshold is not None and config.alpha is not None:
            raise PredictorError("give the monitor either a threshold or an alpha, not both")
        alpha = None if threshold is not None else (DEFAULT_MONITOR_ALPHA if config.alpha is None else config.alpha)
        if threshold is None or horizon is None:
            evaluation = Path(config.evaluation or Path(config.run) / "evaluation")
            calibrated, calibrated_horizon = alarm_settings(evaluation, alpha=alpha)
            threshold = calibrated if threshold is None else threshold
            horizon = calibrated_horizon if horizon is None else horizon
        horizons = tuple(int(h) for h in predictor.spec.horizons)
        if horizon not in horizons:
            raise PredictorError(f"monitor horizon {horizon} is not one of the predictor's horizons {list(horizons)}; "
                                 "choose one of them")
        low, high = score_range(predictor.spec.alarm_score)
        if not low < threshold < high:
            raise PredictorError(f"monitor threshold {threshold} is outside ({low:g}, {high:g}), the range of the "
                                 f"{predictor.spec.alarm_score!r} alarm score; run 'salus evaluate' again or set "
                                 "monitor.threshold")
        return cls(config=config, predictor=predictor, threshold=float(threshold), horizon=int(horizon),
                   rules=load_rules(config.interventions), alpha=alpha)

    def bind(self, feature_families: dict[str, list[str]], hidden_dim: int, cameras: tuple[str, ...] = ()) -> None:
        """Declares the collection's signal families and rendered cameras to the predictor.

        Raises:
            PredictorError: the predictor reads a family that the collection does not record.
        """
        try:
            self.predictor.bind(feature_families, hidden_dim, cameras)
        except PredictorError as err:
            raise PredictorError(f"the monitor's predictor cannot run on this collection: {err}; collect with the "
                                 "signal families and cameras it was trained on (--signals, --cameras)") from None

    def alarm_monitor(self) -> AlarmMonitor:
        """A fresh alarm rule with these settings."""
        return AlarmMonitor(self.threshold, tuple(self.predictor.spec.horizons), self.horizon,
                            self.config.hysteresis, self.config.cooldown_steps, self.predictor.spec.alarm_score,
                            self.predictor.spec.success_profile)

    def store_attrs(self) -> dict[str, Any]:
        """The store's root attribute `monitor` (JSON-serialisable)."""
        return {
            "run": str(Path(self.config.run).resolve()),
            "weights": self.config.weights,
            "model": self.predictor.spec.kind,
            "features": list(self.predictor.spec.features),
            "horizons": [int(h) for h in self.predictor.spec.horizons],
            "threshold": self.threshold,
            "alarm_score": self.predictor.spec.alarm_score,
            **({"success_profile": list(self.predictor.spec.success_profile)}
               if self.predictor.spec.success_profile else {}),
            **({} if self.alpha is None else {"alpha": self.alpha}),
            "horizon": self.horizon,
            "hysteresis": self.config.hysteresis,
            "cooldown_steps": self.config.cooldown_steps,
            "trigger": self.config.trigger,
            "rules": [rule.to_dict() for rule in self.rules],
        }
