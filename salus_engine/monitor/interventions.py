"""Graduated interventions: what the monitor does about an alarm, chosen by rules in a TOML file.

Kinds (codes of the store's `intervention` array, `salus_engine.store.layout.INTERVENTION_KINDS`):

- `slow`: the policy's translation and rotation are scaled by `factor` for `steps` steps (the
  gripper command is kept);
- `replan`: the ensemble discards its action chunks and re-queries now, with the next noise of the
  episode's sequence (fresh noise);
- `retreat`: the end effector rises `height_m` at `speed` (fraction of the largest position step,
  2 cm) with the gripper command held, then the policy resumes with fresh chunks;
- `handover`: the scripted expert (`salus_engine.sim.expert.ScriptedExpert`, re-planned from the
  current state) acts for `steps` steps (0: for the rest of the episode), then the policy resumes with
  fresh chunks. With `until_lift = 1` it hands back as soon as it holds the cube lifted 5 cm off the
  table (`ScriptedExpert.has_lifted`), `steps` being then the most it may take: a person who fixes
  the grasp and lets the policy carry on. It stands in for a person taking over by teleoperation; its
  steps are recorded with the actor "expert";
- `stop`: a safe stop: the episode ends at once with the outcome "stopped".

Rules (`--interventions FILE.toml`), tried in order; the first whose conditions hold picks the
intervention for an alarm:

```toml
[[rule]]
failure_types = ["collision"]    # optional, default: every type
horizon_at_most = 10             # optional: the alarm's predicted horizon, steps
probability_at_least = 0.5       # optional
step_at_most = 90                # optional: the latest control step (0-based) of an alarm it acts on
intervention = "retreat"         # slow | replan | retreat | handover | stop
height_m = 0.05                  # the kind's parameters, each optional (defaults in PARAMETERS)
```

An alarm that no rule matches is recorded and not acted on. `DEFAULT_RULES` is the documented
default. The kinds follow the graduated responses of the seed notes' adaptation module (slow down,
re-plan, back off, hand over, stop).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from salus_engine import FAILURE_TYPES
from salus_engine.errors import SalusError
from salus_engine.monitor.alarm import Alarm
from salus_engine.store.layout import INTERVENTION_KINDS

PARAMETERS: dict[str, dict[str, float]] = {
    "slow": {"factor": 0.5, "steps": 15},
    "replan": {},
    "retreat": {"height_m": 0.05, "speed": 0.5},
    "handover": {"steps": 45, "until_lift": 0.0},
    "stop": {},
}
"""Each intervention kind's parameters and their defaults (steps: control steps; height_m: m;
factor, speed: fractions; until_lift: 1 to end a handover once the cube is lifted, else 0)."""

LIMITS: dict[str, tuple[float, float]] = {
    "factor": (0.0, 1.0), "steps": (0, 10_000), "height_m": (0.0, 0.5), "speed": (0.05, 1.0),
    "until_lift": (0.0, 1.0),
}
"""Allowed range of each parameter (inclusive)."""


class InterventionError(SalusError):
    """An interventions file or rule is wrong; the message says which and what to do."""


@dataclass(frozen=True)
class InterventionRule:
    """One rule: conditions on an alarm and the intervention it picks."""

    intervention: str
    """One of `PARAMETERS`' kinds."""
    parameters: dict[str, float] = field(default_factory=dict)
    """The kind's parameters, defaults filled in."""
    failure_types: tuple[str, ...] = FAILURE_TYPES
    horizon_at_most: int | None = None
    probability_at_least: float = 0.0
    step_at_most: int | None = None
    """The latest control step (0-based) of an alarm that the rule acts on; None: any step."""

    def matches(self, alarm: Alarm) -> bool:
        return (alarm.failure_type in self.failure_types
                and (self.horizon_at_most is None or alarm.horizon <= self.horizon_at_most)
                and alarm.probability >= self.probability_at_least
                and (self.step_at_most is None or alarm.step <= self.step_at_most))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"intervention": self.intervention, **self.parameters}
        if self.failure_types != FAILURE_TYPES:
            out["failure_types"] = list(self.failure_types)
        if self.horizon_at_most is not None:
            out["horizon_at_most"] = self.horizon_at_most
        if self.probability_at_least:
            out["probability_at_least"] = self.probability_at_least
        if self.step_at_most is not None:
            out["step_at_most"] = self.step_at_most
        return out


def make_rule(table: dict[str, Any], where: str = "rule") -> InterventionRule:
    """One rule from a TOML table (see the module docstring).

    Raises:
        InterventionError: an unknown kind, key, failure type or a value out of range.
    """
    table = dict(table)
    kind = table.pop("intervention", None)
    if kind not in PARAMETERS:
        raise InterventionError(f"{where}: intervention {kind!r} is not one of {', '.join(PARAMETERS)}; fix the rule")
    types = table.pop("failure_types", list(FAILURE_TYPES))
    if isinstance(types, str):
        types = [types]
    unknown = [t for t in types if t not in FAILURE_TYPES]
    if unknown or not types:
        raise InterventionError(f"{where}: failure_types {types} must be among {', '.join(FAILURE_TYPES)}; fix the rule")
    horizon = table.pop("horizon_at_most", None)
    probability = table.pop("probability_at_least", 0.0)
    latest = table.pop("step_at_most", None)
    if horizon is not None and (isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1):
        raise InterventionError(f"{where}: horizon_at_most {horizon!r} must be a whole number of steps >= 1")
    if latest is not None and (isinstance(latest, bool) or not isinstance(latest, int) or latest < 0):
        raise InterventionError(f"{where}: step_at_most {latest!r} must be a whole number of steps >= 0")
    if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise InterventionError(f"{where}: probability_at_least {probability!r} must be in [0, 1]")
    parameters = dict(PARAMETERS[kind])
    for key, value in table.items():
        if key not in parameters:
            allowed = ", ".join(parameters) or "none"
            raise InterventionError(f"{where}: {kind} has no parameter {key!r} (its parameters: {allowed}); fix the rule")
        low, high = LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise InterventionError(f"{where}: {key} = {value!r} must be a number in [{low}, {high}]")
        parameters[key] = float(value)
    return InterventionRule(intervention=kind, parameters=parameters, failure_types=tuple(types),
                            horizon_at_most=horizon, probability_at_least=float(probability), step_at_most=latest)


DEFAULT_RULES: tuple[InterventionRule, ...] = (
    make_rule({"intervention": "handover", "steps": 120, "until_lift": 1, "step_at_most": 55}),
)
"""The default rules: an alarm up to control step 55 (1.8 s at 30 Hz), whatever failure type it
names, hands over to the expert until it has lifted the cube (at most 120 steps, 4 s), then the
policy carries on; a later alarm is recorded and not acted on. Used with the monitor's default alarm
level (`salus_engine.config.DEFAULT_MONITOR_ALPHA`, 0.3).

Chosen on tuning trials (seeds 300000-300079), not on the README's evaluation seeds: most
collisions are fingertips pressed into the table at the grasp, which a retreat did not change; a
45-step handover after a failed close left the policy too little time; a handover that starts late
leaves the policy too little time to carry the cube to the bin, and a placebo that starts earlier
beats it; 55 is the latest limit whose handover share stayed under 20 % of the steps. Measured in
the README ("Measured", the paired trials): seeds 200000-200299 and, unused before, 600000-600299."""


def load_rules(path: str | Path | None) -> tuple[InterventionRule, ...]:
    """The rules of an interventions TOML file (`[[rule]]` tables), or `DEFAULT_RULES` for None / "".

    Raises:
        InterventionError: the file is missing, not TOML, has no rules or a wrong rule.
    """
    if not path:
        return DEFAULT_RULES
    path = Path(path)
    try:
        tables = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InterventionError(f"interventions file {path} not found; give an existing TOML file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InterventionError(f"interventions file {path} is not valid TOML ({err}); fix it") from None
    unknown = [k for k in tables if k != "rule"]
    rules = tables.get("rule")
    if unknown or not isinstance(rules, list) or not rules:
        raise InterventionError(f"interventions file {path} must hold [[rule]] tables only (found "
                                f"{', '.join(unknown) or 'no rule'}); see 'salus collect --help'")
    return tuple(make_rule(table, f"{path} rule {i + 1}") for i, table in enumerate(rules))


def choose(rules: tuple[InterventionRule, ...], alarm: Alarm) -> InterventionRule | None:
    """The first rule that matches the alarm, or None."""
    return next((rule for rule in rules if rule.matches(alarm)), None)


def retreat_steps(parameters: dict[str, float], position_step_m: float) -> int:
    """Steps a retreat takes: height_m / (speed x the largest position step), rounded up."""
    return max(1, math.ceil(parameters["height_m"] / (parameters["speed"] * position_step_m) - 1e-9))


def code_of(kind: str) -> int:
    """The `intervention` array's code of an intervention kind ("none" is 0)."""
    return INTERVENTION_KINDS.index(kind)
