"""The runtime monitor in the loop: alarms from the trained predictor, graduated interventions, and
paired trials that count what the monitor prevents (`salus collect --monitor`, `salus trial`).

- `alarm`: the alarm rule (conformal threshold, hysteresis, cooldown);
- `interventions`: the intervention kinds and the rules that choose them;
- `setup`: loads a monitor from its settings;
- `closed_loop`: the monitor acting inside one rollout;
- `trial`: paired trials on identical seeds and their table.
"""

from salus_engine.monitor.alarm import Alarm, AlarmMonitor
from salus_engine.monitor.closed_loop import ClosedLoop, ScheduledIntervention, StepDecision
from salus_engine.monitor.interventions import DEFAULT_RULES, InterventionError, InterventionRule, load_rules
from salus_engine.monitor.setup import MonitorSetup

__all__ = [
    "Alarm", "AlarmMonitor", "ClosedLoop", "DEFAULT_RULES", "InterventionError", "InterventionRule", "MonitorSetup",
    "ScheduledIntervention", "StepDecision", "load_rules",
]
