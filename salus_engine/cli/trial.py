"""`salus trial`: paired trials of the monitor on identical seeds, and the printed paired table."""

from __future__ import annotations

import argparse
import threading

from salus_engine.cli.collect import add_collect_arguments, collect_config_from_args, install_stop_signals
from salus_engine.monitor.trial import ARMS, format_acted, format_share


def print_trial(table: dict, console) -> None:
    """Prints a trial's paired table (`salus_engine.monitor.trial.paired_table`) with rich."""
    from rich.table import Table

    settings = table.get("settings", {})
    title = (f"paired trial: {table['episodes'].get('none', 0)} seeds from {settings.get('seed', '?')}, "
             f"arms {', '.join(table['arms'])}")
    rows = Table(title=title)
    for column in ("arm", "success", "prevented", "lost", "net change", "McNemar p"):
        rows.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    rows.add_row("none", format_share(table["success_rate"].get("none")), "", "", "", "")
    cost = Table(title="what the interventions cost")
    for column in ("arm", "intervention steps/episode", "handover share of steps", "stopped",
                   "acted on: failed · succeeded alone"):
        cost.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    cis = Table(title="95 % confidence intervals against none")
    for column in ("arm", "prevented", "lost", "net change"):
        cis.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    for arm, row in table["vs_none"].items():
        net, net_ci = row["net_success_change"], row["net_success_change_ci"]
        rows.add_row(
            arm, format_share(table["success_rate"].get(arm)),
            f"{row['prevented']}/{row['base_failures']}", f"{row['lost']}/{row['base_successes']}",
            format_share(net, sign=True), f"{row['mcnemar_p']:.3g}")
        cost.add_row(arm, "-" if row["intervention_steps_per_episode"] is None
                     else f"{row['intervention_steps_per_episode']:.1f}", format_share(row["handover_share"]), str(row["stopped"]),
                     format_acted(row))
        cis.add_row(arm, format_share(row["prevented_share"], row["prevented_ci"]), format_share(row["lost_share"], row["lost_ci"]),
                    format_share(net, net_ci, sign=True))
    console.print(rows)
    console.print(cis)
    console.print(cost)
    for placebo, row in table.get("monitor_vs", {}).items():
        console.print(f"monitor vs {placebo}: {row['monitor_only_success']} seeds only the monitor arm succeeded, "
                      f"{row['placebo_only_success']} only {placebo}; exact McNemar p = {row['mcnemar_p']:.3g}")
    if "monitor" in table["vs_none"]:
        per_type = Table(title="monitor arm per failure type of the none arm")
        for column in ("failure type", "failures", "prevented", "stopped", "missed"):
            per_type.add_column(column, justify="left" if column == "failure type" else "right")
        for name, row in table["vs_none"]["monitor"]["per_type"].items():
            per_type.add_row(name, str(row["failures"]), str(row["prevented"]), str(row["stopped"]), str(row["missed"]))
        console.print(per_type)
    for name, row in (table.get("targets") or {}).items():
        value = row["value"]
        shown = "-" if value is None else (f"{value:.3g}" if name == "p_value_vs_random" else f"{value:.1%}")
        verdict = "n/a" if row["met"] is None else ("met" if row["met"] else "MISSED")
        console.print(f"target {name}: {shown} (target {row['target']}) {verdict}")


def trial_markdown(table: dict) -> str:
    """The paired table as GitHub Markdown (for a README)."""
    def pct(value, ci=None, sign=False):
        return "–" if value is None else format_share(value, ci, sign)

    lines = ["| arm | success | prevented (of none's failures) | successes lost | net change [95 % CI] | "
             "McNemar p | intervention steps / episode | handover share | stopped | acted on: failed · succeeded alone |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| none | {pct(table['success_rate'].get('none'))} | | | | | 0 | 0 | 0 | |"]
    for arm, row in table["vs_none"].items():
        net, ci = row["net_success_change"], row["net_success_change_ci"]
        lines.append(
            f"| {arm} | {pct(table['success_rate'].get(arm))} | {row['prevented']}/{row['base_failures']} "
            f"({pct(row['prevented_share'], row['prevented_ci'])}) | {row['lost']}/{row['base_successes']} "
            f"({pct(row['lost_share'], row['lost_ci'])}) | "
            + pct(net, ci, sign=True)
            + f" | {row['mcnemar_p']:.3g} | {row['intervention_steps_per_episode'] or 0:.1f} | "
            f"{pct(row['handover_share'])} | {row['stopped']} | {format_acted(row)} |")
    for placebo, row in table.get("monitor_vs", {}).items():
        lines.append("")
        lines.append(f"Monitor vs {placebo}: {row['monitor_only_success']} seeds succeeded only with the monitor, "
                     f"{row['placebo_only_success']} only with {placebo}; exact McNemar p = {row['mcnemar_p']:.3g}.")
    return "\n".join(lines)


def cmd_trial(args: argparse.Namespace) -> int:
    config = collect_config_from_args(args, args.episodes)
    from rich.console import Console

    from salus_engine.events import CollectionStarted, EpisodeFinished, LogLine
    from salus_engine.monitor.trial import parse_arms, run_trial
    from salus_engine import OUTCOME_NAMES

    arms = parse_arms(args.arms)
    console = Console()
    stop = threading.Event()
    install_stop_signals(stop)

    def sink(event) -> None:
        if isinstance(event, CollectionStarted):
            console.print(f"  -> {event.out} (from episode {event.first_episode})")
        elif isinstance(event, EpisodeFinished):
            kinds = ",".join(i["intervention"] for i in event.interventions or []) or "-"
            console.print(f"  episode {event.episode_id:4d}  seed {event.seed:6d}  "
                          f"{OUTCOME_NAMES[event.failure_type]:9s}  {event.length:3d} steps  alarms {event.alarms}  "
                          f"interventions {kinds}")
        elif isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}", markup=False)

    try:
        table = run_trial(config, arms, args.out, sink=sink, stop=stop)
    except KeyboardInterrupt:
        console.print("interrupted: the episode in progress was discarded; continue with the same command")
        return 130
    if table is None:
        console.print("stopped on request; continue with the same command")
        return 130
    print_trial(table, console)
    console.print(f"wrote {args.out}/trial.json")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `trial` to the `salus` command's subparsers."""
    p = subparsers.add_parser("trial", help="paired trials: the same seeds with and without the monitor's interventions")
    p.add_argument("--episodes", type=int, required=True, help="seeds (episodes per arm)")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms: none (the policy alone), monitor "
                   "(alarms -> interventions), random (the monitor's interventions at random steps), blind (at a "
                   f"fixed schedule); default {','.join(ARMS)}")
    add_collect_arguments(p, required=True)
    p.set_defaults(func=cmd_trial, log_kind="trial")
