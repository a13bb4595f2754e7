"""`salus`: the headless twin of the console.

Commands: `collect`, `verify`, `tui`, `policy train`, `train`, `evaluate`, `report`. A user's mistake (bad path, wrong store,
missing checkpoint, bad config key) ends in one line on stderr and exit code 2; `--debug` shows the
traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from salus_engine import OUTCOME_NAMES
from salus_engine.config import CollectConfig, ConfigError, load_collect_config

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError, PermissionError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from salus_engine.store import StoreError

    errors = [StoreError, *USER_ERRORS]
    try:
        from salus_engine.policy import PolicyLoadError

        errors.append(PolicyLoadError)
    except ImportError:
        pass
    return tuple(errors)


def add_collect_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """Flags shared by `salus collect` and `salus tui --collect`."""
    parser.add_argument("--out", required=required, help="collection store folder (created; with --resume, continued)")
    parser.add_argument("--resume", action="store_true", help="continue the store at --out with the next episode id and seed")
    parser.add_argument("--seed", type=int, help="seed of episode 0 (episode i uses seed + i); default 0")
    parser.add_argument("--policy", help="ensemble: folder of member folders, a saved lerobot policy, or a hub id "
                        "such as lerobot/smolvla_base (default: the embedded ensemble)")
    parser.add_argument("--ensemble-size", type=int, help="ensemble members M (default 3)")
    parser.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--cameras", help="comma-separated cameras to render and record: front,side,wrist (default front)")
    parser.add_argument("--image-size", type=int, help="camera image side in pixels (default 256)")
    parser.add_argument("--max-steps", type=int, help="episode step limit (default 200)")
    parser.add_argument("--requery-every", type=int, help="steps between fresh action chunks (default 4)")
    parser.add_argument("--denoising-steps", type=int,
                        help="flow-matching steps per action chunk (default: the embedded ensemble's setting; 0: the checkpoint's own)")
    parser.add_argument("--gpu-budget-gb", type=float, help="GPU memory budget shown in the console (default 11)")
    parser.add_argument("--config", help="TOML file with [collect], [sim], [policy], [store] tables")


def collect_config_from_args(args: argparse.Namespace, episodes: int | None) -> CollectConfig:
    """Defaults < TOML file < SALUS_* environment < CLI flags."""
    config = load_collect_config(args.config)
    if episodes is not None:
        if episodes < 1:
            raise ConfigError(f"--episodes must be at least 1, got {episodes}")
        config.episodes = episodes
    for flag, target, name in (
        ("out", config, "out"), ("resume", config, "resume"), ("seed", config, "seed"),
        ("gpu_budget_gb", config, "gpu_budget_gb"),
        ("policy", config.policy, "path"), ("ensemble_size", config.policy, "ensemble_size"),
        ("device", config.policy, "device"), ("requery_every", config.policy, "requery_every"),
        ("denoising_steps", config.policy, "denoising_steps"), ("image_size", config.sim, "image_size"), ("max_steps", config.sim, "max_steps"),
    ):
        value = getattr(args, flag, None)
        if value is not None and value is not False:
            setattr(target, name, value)
    if getattr(args, "cameras", None):
        cams = tuple(c.strip() for c in args.cameras.split(",") if c.strip())
        unknown = [c for c in cams if c not in ("front", "side", "wrist")]
        if unknown or not cams:
            raise ConfigError(f"--cameras: unknown camera {unknown or args.cameras!r}; choose from front, side, wrist")
        config.sim.cameras = cams
    if config.policy.ensemble_size < 1:
        raise ConfigError(f"--ensemble-size must be at least 1, got {config.policy.ensemble_size}")
    if config.policy.requery_every < 1:
        raise ConfigError(f"--requery-every must be at least 1, got {config.policy.requery_every}")
    if config.policy.denoising_steps < 0:
        raise ConfigError(f"--denoising-steps must be 0 (the checkpoint's own) or more, got {config.policy.denoising_steps}")
    return config


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGHUP (an SSH hang-up) request a graceful stop after the current episode."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())


def cmd_collect(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from salus_engine.events import EpisodeFinished, JobStarted, LogLine
    from salus_engine.jobs import run_collection

    config = collect_config_from_args(args, args.episodes)
    console = Console(stderr=False)
    stop = threading.Event()
    install_stop_signals(stop)
    progress = Progress(TextColumn("[bold]collect"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    task = progress.add_task("collect", total=config.episodes, rate="")

    def sink(event) -> None:
        if isinstance(event, JobStarted):
            progress.update(task, completed=event.detail.get("first_episode", 0))
            console.print(f"collecting into {event.detail['out']} with {event.detail['ensemble_size']} ensemble members")
        elif isinstance(event, EpisodeFinished):
            name = OUTCOME_NAMES[event.failure_type]
            console.print(f"episode {event.episode_id:4d}  seed {event.seed:6d}  {name:9s}  step {event.failure_step:3d}/"
                          f"{event.length:3d}  max uncertainty {event.max_uncertainty:.4f}  {event.seconds:5.1f} s")
            progress.update(task, completed=event.done, rate=f"{event.seconds:.1f} s/episode")
        elif isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}")

    try:
        with progress:
            try:
                summary = run_collection(config, sink=sink, stop=stop)
            except KeyboardInterrupt:
                console.print("interrupted: the episode in progress was discarded; continue with --resume")
                return 130
    finally:
        pass
    table = Table(title=f"outcomes: {summary.episodes_written} new episodes, {summary.total_in_store} in {summary.out}")
    table.add_column("outcome")
    table.add_column("episodes", justify="right")
    table.add_column("share", justify="right")
    for code in (-1, 0, 1, 2, 3):
        n = summary.outcomes.get(OUTCOME_NAMES[code], 0)
        table.add_row(OUTCOME_NAMES[code], str(n), f"{n / max(1, summary.episodes_written):.0%}")
    console.print(table)
    console.print(f"{summary.seconds:.1f} s in all" + ("; stopped early, continue with --resume" if summary.stopped else ""))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from salus_engine.store.verify import verify_store

    report = verify_store(args.store)
    mix = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
    print(f"{report.path}: {report.episodes} episodes ({mix or 'none'})")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem}")
    print("verify: ok" if report.ok else f"verify: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def cmd_tui(args: argparse.Namespace) -> int:
    from salus_tui.app import run_app

    if args.collect is not None and not args.out:
        raise ConfigError("--collect needs --out DIR, the folder to collect into")
    if args.refresh_hz <= 0:
        raise ConfigError(f"--refresh-hz must be positive, got {args.refresh_hz}")
    episodes = args.collect if args.collect is not None else args.episodes
    config = collect_config_from_args(args, episodes)
    return run_app(collect_config=config, autostart=args.collect is not None, data=args.data,
                   checkpoint=args.checkpoint, refresh_hz=args.refresh_hz, theme=args.theme,
                   start_screen=args.screen, log_path=args.log)


def cmd_policy_train(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from salus_engine.events import LogLine, ProgressUpdate
    from salus_engine.policy import train_default_ensemble
    from salus_engine.policy.behaviour_cloning import TrainSettings

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
        given = {k: getattr(args, k) for k in ("members", "demos", "steps", "member_steps", "seed")
                 if getattr(args, k) is not None}
        result = train_default_ensemble(out_dir=args.out, sink=sink, stop=stop, settings=TrainSettings(**given))
    if result.stopped:
        console.print(f"stopped: {result.out_dir} left unchanged")
        return 1
    console.print(f"saved {result.members_saved} members to {result.out_dir} ({result.size_mb:.1f} MB) in "
                  f"{result.seconds:.0f} s; demonstrations {result.demo_episodes} episodes, expert success with "
                  f"noise {result.demo_success_rate:.0%}; final losses {', '.join(f'{x:.4f}' for x in result.final_losses)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="salus", description="SALUS: runtime failure prediction for VLA policies")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="collect episodes headless into a Zarr store")
    p.add_argument("--episodes", type=int, required=True, help="total episodes in the store when done")
    add_collect_arguments(p, required=True)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("verify", help="check a store's integrity and data quality; exit 1 on a problem")
    p.add_argument("store", help="collection store folder")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("tui", help="open the operator console")
    p.add_argument("--collect", type=int, metavar="N", help="start collecting N episodes at once (needs --out)")
    p.add_argument("--episodes", type=int, metavar="N", help="episodes in the collection form, not started")
    p.add_argument("--data", help="store for the train and episodes screens (default: the collection's --out)")
    p.add_argument("--checkpoint", help="predictor run folder for the evaluate and episodes screens "
                   "(default: the newest checkpoints/predictor-*)")
    p.add_argument("--screen", choices=("collect", "train", "evaluate", "episodes"), default="collect",
                   help="screen shown first (default collect)")
    p.add_argument("--refresh-hz", type=float, default=5.0,
                   help="live refresh rate of the signals while collecting, Hz; playback runs at twice it (default 5)")
    p.add_argument("--theme", help="console theme: dark, light or ansi (16 colours) from themes/; default dark, "
                   "ansi with NO_COLOR or on terminals without 256 colours")
    p.add_argument("--log", help="session log file (default logs/salus-tui-<time>.log)")
    add_collect_arguments(p, required=False)
    p.set_defaults(func=cmd_tui)

    p = sub.add_parser("policy", help="the monitored policy ensemble")
    psub = p.add_subparsers(dest="policy_command", required=True)
    pt = psub.add_parser("train", help="train the embedded default ensemble by behaviour cloning on expert demonstrations")
    from salus_engine.config import DEFAULT_POLICY_DIR

    pt.add_argument("--out", default=str(DEFAULT_POLICY_DIR), help="destination folder (default: the embedded default)")
    pt.add_argument("--members", type=int, help="ensemble members M (default: the embedded default's settings)")
    pt.add_argument("--demos", type=int, help="scripted-expert demonstration episodes")
    pt.add_argument("--steps", type=int, help="optimiser steps of member 0 (of every member with --member-steps 0)")
    pt.add_argument("--member-steps", type=int,
                    help="fine-tuning steps of members 1..M-1 from member 0 on bootstrap resamples; 0 trains each from scratch")
    pt.add_argument("--seed", type=int, help="seed of member 0; member i uses seed + i")
    pt.set_defaults(func=cmd_policy_train)

    from salus_engine.predictor.commands import register

    register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as err:
        if args.debug:
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"salus: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
