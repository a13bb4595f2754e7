"""Trial screen: the paired table of a `salus trial` (`salus tui --trial DIR`).

It reads DIR/trial.json (`salus_engine.monitor.trial.read_trial`; the numbers are the trial's own,
computed by `paired_table`) and shows it as tables, as `salus report DIR` prints it:

- every arm against `none` on the same seeds: success rate, failures prevented, successes lost, the
  net change of the success rate and the exact McNemar p-value;
- the 95 % confidence intervals of those shares (Wilson) and of the net change (paired Wald);
- what the interventions cost: intervention steps per episode, the handover share of the steps and
  the episodes stopped;
- the monitor against each placebo arm (random, blind): seeds only one of them succeeded on, McNemar p;
- the monitor arm per failure type of the `none` arm: prevented, stopped, missed;
- the targets (`salus_engine.monitor.trial.TARGETS`) with met or MISSED.

Pushed over the screen shown first; escape goes back, r reads the file again, tab moves between
the tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from salus_engine.errors import SalusError
from salus_engine.monitor.trial import format_acted, format_share
from salus_tui.widgets.nav_bar import NavBar
from salus_tui.widgets.sized_table import fill_sized_table

ARM_COLUMNS = ("arm", "episodes", "success", "prevented", "lost", "net change", "McNemar p")
CI_COLUMNS = ("arm", "prevented share", "lost share", "net change")
COST_COLUMNS = ("arm", "intervention steps/episode", "handover share", "stopped", "acted on: failed · succeeded alone")
PLACEBO_COLUMNS = ("monitor vs", "pairs", "only monitor succeeded", "only placebo succeeded", "McNemar p")
TYPE_COLUMNS = ("failure type", "failures", "prevented", "stopped", "missed")
TARGET_COLUMNS = ("target", "value", "goal", "verdict")
TARGET_GOALS = {"prevented_share": "≥ {:.0%}", "lost_share": "≤ {:.0%}",
                "p_value_vs_random": "< {:g} vs random, monitor better", "handover_share": "≤ {:.0%}"}
"""How each target of `TARGETS` is met (its direction), formatted with the target value."""
TABLES = ("arms", "cis", "cost", "placebo", "per-type", "targets")
"""Ids of the screen's tables, top to bottom."""


def share(value: float | None, ci: list | tuple | None = None) -> str:
    """`66.7%`, with ` [30.0%, 90.3%]` when a confidence interval is given; `-` for None."""
    return format_share(value, ci)


def signed(value: float | None, ci: list | tuple | None = None) -> str:
    """`+30.0%` (with ` [+1.2%, +58.8%]` given an interval); `-` for None."""
    return format_share(value, ci, sign=True)


def p_value(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def trial_rows(table: dict[str, Any]) -> dict[str, list[tuple]]:
    """The cells of every table of the screen (key: table id in `TABLES`) from a trial table
    (`paired_table` plus `settings`, as `trial.json` holds it)."""
    rates, episodes, vs_none = table.get("success_rate", {}), table.get("episodes", {}), table.get("vs_none", {})
    arms = [("none", str(episodes.get("none", "-")), share(rates.get("none")), "", "", "", "")]
    cis, cost = [], [("none", "0.0", share(0.0), "0", "")]
    for arm, row in vs_none.items():
        arms.append((arm, str(episodes.get(arm, "-")), share(rates.get(arm)),
                     f"{row['prevented']}/{row['base_failures']}", f"{row['lost']}/{row['base_successes']}",
                     signed(row.get("net_success_change")), p_value(row.get("mcnemar_p"))))
        cis.append((arm, share(row.get("prevented_share"), row.get("prevented_ci")),
                    share(row.get("lost_share"), row.get("lost_ci")),
                    signed(row.get("net_success_change"), row.get("net_success_change_ci"))))
        steps = row.get("intervention_steps_per_episode")
        cost.append((arm, "-" if steps is None else f"{steps:.1f}", share(row.get("handover_share")),
                     str(row.get("stopped", 0)), format_acted(row)))
    placebo = [(name, str(row["pairs"]), str(row["monitor_only_success"]), str(row["placebo_only_success"]),
                p_value(row.get("mcnemar_p"))) for name, row in (table.get("monitor_vs") or {}).items()]
    per_type = [(name, str(row["failures"]), str(row["prevented"]), str(row["stopped"]), str(row["missed"]))
                for name, row in (vs_none.get("monitor", {}).get("per_type") or {}).items()]
    targets = []
    for name, row in (table.get("targets") or {}).items():
        value = row.get("value")
        shown = "-" if value is None else (f"{value:.3g}" if name == "p_value_vs_random" else f"{value:.1%}")
        goal = TARGET_GOALS.get(name, "{}").format(row.get("target"))
        verdict = Text("n/a", style="dim") if row.get("met") is None else (
            Text("met", style="bold green") if row["met"] else Text("MISSED", style="bold red"))
        targets.append((name.replace("_", " "), shown, goal, verdict))
    return {"arms": arms, "cis": cis, "cost": cost, "placebo": placebo, "per-type": per_type, "targets": targets}


class TrialScreen(Screen):
    """The paired table of the trial in `folder` (its trial.json)."""

    MODE = "trial"
    """Name in the help screen and the command palette."""
    AUTO_FOCUS = "#arms"
    BINDINGS = [
        Binding("escape", "back", "back", id="trial-back"),
        Binding("r", "reload", "reload", id="trial-reload"),
    ]
    DEFAULT_CSS = """
    TrialScreen #trial-title { height: auto; padding: 0 1; text-style: bold; }
    TrialScreen #trial-tables { height: 1fr; }
    TrialScreen DataTable { height: auto; border: round $primary; margin: 0 0; }
    TrialScreen DataTable:focus { border: round $accent; }
    """
    TITLES = {"arms": "against none (the policy alone), same seeds", "cis": "95 % confidence intervals against none",
              "cost": "what the interventions cost", "placebo": "monitor against the placebo arms",
              "per-type": "monitor arm per failure type of the none arm", "targets": "targets"}

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = str(folder)
        self.table: dict[str, Any] | None = None
        """The trial table read (trial.json), or None before or after a failed read."""
        self.error = ""

    def compose(self) -> ComposeResult:
        yield NavBar(self.MODE)
        yield Static(f"reading {self.folder} ...", id="trial-title")
        with VerticalScroll(id="trial-tables") as scroll:
            scroll.can_focus = False  # tab moves between the tables
            for key in TABLES:
                table = DataTable(id=key, cursor_type="row", zebra_stripes=True)
                table.border_title = self.TITLES[key]
                yield table
        yield Footer()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        """Reads trial.json again and fills the tables (a dialog on a missing or wrong file)."""
        from salus_engine.monitor.trial import read_trial

        try:
            self.table = read_trial(self.folder)
        except SalusError as err:
            self.table, self.error = None, str(err).splitlines()[0]
            self.query_one("#trial-title", Static).update(f"no trial: {self.error}")
            for key in TABLES:
                fill_sized_table(self.query_one(f"#{key}", DataTable), ("-",), [])
            self.app.show_error(self.error, title="cannot read the trial")
            return
        self.error = ""
        self.show_table(self.table)

    def show_table(self, table: dict[str, Any]) -> None:
        """Fills the title line and every table from a trial table."""
        settings = table.get("settings") or {}
        monitor = settings.get("monitor") or {}
        run = Path(str(monitor.get("run", ""))).name or "?"
        threshold = monitor.get("threshold")
        self.query_one("#trial-title", Static).update(
            f"paired trial: {table.get('episodes', {}).get('none', 0)} seeds from {settings.get('seed', '?')}, "
            f"arms {', '.join(table.get('arms', []))} · monitor {run}"
            + ("" if threshold is None else f", threshold {threshold:.3g}") + f"\n{self.folder}")
        rows = trial_rows(table)
        columns = {"arms": ARM_COLUMNS, "cis": CI_COLUMNS, "cost": COST_COLUMNS, "placebo": PLACEBO_COLUMNS,
                   "per-type": TYPE_COLUMNS, "targets": TARGET_COLUMNS}
        for key in TABLES:
            widget = self.query_one(f"#{key}", DataTable)
            fill_sized_table(widget, columns[key], rows[key], [str(i) for i in range(len(rows[key]))])
            widget.display = bool(rows[key]) or key == "arms"

    def action_back(self) -> None:
        self.dismiss()
