"""`salus policy train`: rebuilds the embedded default ensemble by behaviour cloning."""

from __future__ import annotations

import argparse
import threading

from salus_engine.cli.collect import install_stop_signals
from salus_engine.config import DEFAULT_POLICY_DIR, build_settings, default_of


def cmd_policy_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from salus_engine.events import LogLine, ProgressUpdate
    from salus_engine.policy import train_default_ensemble
    from salus_engine.policy.behaviour_cloning import TrainSettings

    settings = build_settings(TrainSettings, members=args.members, demos=args.demos, steps=args.steps,
                              member_steps=args.member_steps, seed=args.seed)
    console = Console()
    stop = threading.Event()
    install_stop_signals(stop)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=console, disable=not console.is_terminal)
    tasks: dict[str, int] = {}

    def sink(event) -> None:
        if isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}")
        elif isinstance(event, ProgressUpdate):
            phase = event.message.split(":")[0] if event.message else "policy train"
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=event.total, info="")
            info = "  ".join(f"{k} {v:.4g}" for k, v in event.values.items())
            progress.update(tasks[phase], completed=event.done, total=event.total, info=info)

    with progress:
        result = train_default_ensemble(out_dir=args.out, sink=sink, stop=stop, settings=settings)
    if result.stopped:
        console.print(f"stopped: {result.out_dir} left unchanged")
        return 1
    console.print(f"saved {result.members_saved} members to {result.out_dir} ({result.size_mb:.1f} MB) in "
                  f"{result.seconds:.0f} s; demonstrations {result.demo_episodes} episodes, expert success with "
                  f"noise {result.demo_success_rate:.0%}; final losses {', '.join(f'{x:.4f}' for x in result.final_losses)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `policy train` to the `salus` command's subparsers. Its defaults come from the settings
    class in `salus_engine.config`: importing `salus_engine.policy` here would load torch on every
    `salus` command (20 s on a busy 2-core machine before `salus verify` or a one-line error)."""
    from salus_engine.config import TrainSettings

    p = subparsers.add_parser("policy", help="the monitored policy ensemble")
    psub = p.add_subparsers(dest="policy_command", required=True)
    pt = psub.add_parser("train", help="train the embedded default ensemble by behaviour cloning on expert demonstrations")
    pt.add_argument("--out", default=str(DEFAULT_POLICY_DIR), help="destination folder (default: the embedded default)")
    pt.add_argument("--members", type=int, help=f"ensemble members M (default {default_of(TrainSettings, 'members')})")
    pt.add_argument("--demos", type=int, help=f"scripted-expert demonstration episodes (default {default_of(TrainSettings, 'demos')})")
    pt.add_argument("--steps", type=int, help="optimiser steps of member 0 (of every member with --member-steps 0; "
                    f"default {default_of(TrainSettings, 'steps')})")
    pt.add_argument("--member-steps", type=int,
                    help="fine-tuning steps of members 1..M-1 from member 0 on bootstrap resamples; 0 trains each "
                    f"from scratch (default {default_of(TrainSettings, 'member_steps')})")
    pt.add_argument("--seed", type=int, help="seed of member 0; member i uses seed + i (default 0)")
    pt.set_defaults(func=cmd_policy_train, log_kind="policy-train")
