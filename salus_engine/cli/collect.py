"""`salus collect` and `salus verify`, and the collection flags that `salus tui` shares."""

from __future__ import annotations

import argparse
import signal
import threading

from salus_engine import OUTCOME_NAMES, STOPPED
from salus_engine.config import (DEFAULT_MONITOR_ALPHA, CollectConfig, MonitorConfig, PolicyConfig, SimConfig, default_of,
                                 load_collect_config)


def add_collect_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """Flags shared by `salus collect` and `salus tui --collect`; every default is the settings class's
    own (`salus_engine.config`), so an absent flag leaves the TOML file or environment value in force."""
    parser.add_argument("--out", required=required, help="collection store folder (created; with --resume, continued)")
    parser.add_argument("--resume", action="store_true", default=None,
                        help="continue the store at --out with the next episode id and seed")
    parser.add_argument("--seed", type=int, help=f"seed of episode 0 (episode i uses seed + i); default "
                        f"{default_of(CollectConfig, 'seed')}")
    parser.add_argument("--policy", help="ensemble: folder of member folders, a saved lerobot policy, or a hub id "
                        "such as lerobot/smolvla_base (default: the embedded ensemble)")
    parser.add_argument("--ensemble-size", type=int,
                        help=f"ensemble members M (default {default_of(PolicyConfig, 'ensemble_size')})")
    parser.add_argument("--device", help=f"torch device, e.g. cpu, cuda, cuda:1 (default {default_of(PolicyConfig, 'device')})")
    parser.add_argument("--cameras", help="comma-separated cameras to render and record: front,side,wrist (default "
                        f"{','.join(default_of(SimConfig, 'cameras'))})")
    parser.add_argument("--image-size", type=int,
                        help=f"camera image side in pixels (default {default_of(SimConfig, 'image_size')})")
    parser.add_argument("--max-steps", type=int, help=f"episode step limit (default {default_of(SimConfig, 'max_steps')})")
    parser.add_argument("--requery-every", type=int, help="steps between fresh action chunks (default "
                        f"{default_of(PolicyConfig, 'requery_every')})")
    parser.add_argument("--denoising-steps", type=int,
                        help="flow-matching steps per action chunk (default: each checkpoint's own; the embedded "
                        "ensemble's is 4)")
    parser.add_argument("--signals", help="signal families recorded beside the six signals, comma-separated: "
                        "chunk_consistency, flow_disagreement, chunk_entropy, hidden_state, action_jerk (default "
                        f"{','.join(default_of(CollectConfig, 'signals'))}; chunk_entropy costs --entropy-samples "
                        "more queries)")
    parser.add_argument("--entropy-samples", type=int, help="extra chunks sampled per member per query for "
                        f"chunk_entropy (default {default_of(PolicyConfig, 'entropy_samples')}: none)")
    parser.add_argument("--gpu-budget-gb", type=float, help="GPU memory budget shown in the console, GB (default "
                        f"{default_of(CollectConfig, 'gpu_budget_gb')})")
    parser.add_argument("--workers", type=int, help="rollout workers: 1 runs in this process; N > 1 runs N Ray actors, "
                        "each with its own simulator and ensemble, on a local Ray or the cluster at --address (default "
                        f"{default_of(CollectConfig, 'workers')})")
    parser.add_argument("--address", help="Ray cluster for the workers: auto (started with 'ray start' on this machine) "
                        "or HOST:PORT of its head node (default: a local Ray started for the collection)")
    parser.add_argument("--gpus-per-worker", type=float, help="GPUs each Ray worker reserves, e.g. 1 or 0.5 (default: 1 "
                        "with a CUDA --device, else 0)")
    parser.add_argument("--threads", type=int, help="torch CPU threads per worker (and cores each Ray worker reserves); "
                        f"the same count keeps episodes identical (default {default_of(CollectConfig, 'threads')})")
    parser.add_argument("--monitor", metavar="RUN", help="run folder of 'salus train': its predictor watches every step "
                        "and its alarms start interventions (threshold and alarm horizon from RUN/evaluation, see "
                        "'salus evaluate'); the store records the monitor (format 4)")
    parser.add_argument("--interventions", metavar="FILE.toml", help="intervention rules, [[rule]] tables: failure_types, "
                        "horizon_at_most, probability_at_least, step_at_most, intervention = slow | replan | retreat | handover | "
                        "stop and its parameters (default: an alarm up to step 55, whatever its type -> handover until "
                        "the expert has lifted the cube, at most 120 steps; later alarms are not acted on)")
    parser.add_argument("--monitor-threshold", type=float, help="alarm threshold on the monitor's score (default: the "
                        "conformal threshold of RUN/evaluation)")
    parser.add_argument("--monitor-alpha", type=float, help="false-alarm rate the monitor accepts: its threshold is "
                        "RUN/evaluation's conformal threshold for this alpha, one of 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, "
                        "0.5; larger alarms earlier, and on more successful episodes (default "
                        f"{DEFAULT_MONITOR_ALPHA}, chosen with the default interventions)")
    parser.add_argument("--cooldown-steps", type=int, help="steps after an alarm without a new one (default "
                        f"{default_of(MonitorConfig, 'cooldown_steps')})")
    parser.add_argument("--hysteresis", type=float, help="re-arm once the score falls below threshold - "
                        f"hysteresis x |threshold| (default {default_of(MonitorConfig, 'hysteresis')})")
    parser.add_argument("--config", help="TOML file with [collect], [sim], [policy], [store], [monitor] tables")


def collect_config_from_args(args: argparse.Namespace, episodes: int | None) -> CollectConfig:
    """Defaults < TOML file < SALUS_* environment < the flags given (see `load_collect_config`).

    Raises:
        ConfigError: a wrong flag, file or variable value.
    """
    return load_collect_config(
        args.config, episodes=episodes, out=args.out, resume=args.resume, seed=args.seed,
        gpu_budget_gb=args.gpu_budget_gb, workers=args.workers, address=args.address,
        gpus_per_worker=args.gpus_per_worker, threads=args.threads, signals=args.signals,
        sim={"image_size": args.image_size, "max_steps": args.max_steps, "cameras": args.cameras},
        policy={"path": args.policy, "ensemble_size": args.ensemble_size, "device": args.device,
                "requery_every": args.requery_every, "denoising_steps": args.denoising_steps,
                "entropy_samples": args.entropy_samples},
        monitor={"run": args.monitor, "interventions": args.interventions, "threshold": args.monitor_threshold,
                 "alpha": args.monitor_alpha,
                 "cooldown_steps": args.cooldown_steps, "hysteresis": args.hysteresis},
    )


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGHUP (an SSH hang-up) request a graceful stop after the current unit of work."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())


def cmd_collect(args: argparse.Namespace) -> int:
    config = collect_config_from_args(args, args.episodes)  # a wrong setting is refused before the heavy imports
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.table import Table

    from salus_engine.events import CollectionStarted, EpisodeFinished, LogLine, WorkerStateChanged
    from salus_engine.jobs import run_collection

    console = Console(stderr=False)
    stop = threading.Event()
    install_stop_signals(stop)
    progress = Progress(TextColumn("[bold]collect"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    task = progress.add_task("collect", total=config.episodes, rate="")

    def sink(event) -> None:
        if isinstance(event, CollectionStarted):
            progress.update(task, completed=event.first_episode)
            console.print(f"collecting into {event.out} with {event.ensemble_size} ensemble members")
        elif isinstance(event, EpisodeFinished):
            name = OUTCOME_NAMES[event.failure_type]
            acted = ""
            if event.interventions is not None:
                kinds = ",".join(item["intervention"] for item in event.interventions) or "-"
                acted = f"  alarms {event.alarms}  interventions {kinds}"
            console.print(f"episode {event.episode_id:4d}  seed {event.seed:6d}  {name:9s}  step {event.failure_step:3d}/"
                          f"{event.length:3d}  max uncertainty {event.max_uncertainty:.4f}  {event.seconds:5.1f} s{acted}")
            progress.update(task, completed=event.done, rate=f"{event.seconds:.1f} s/episode")
        elif isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}", markup=False)
        elif isinstance(event, WorkerStateChanged) and event.state == "idle" and event.episodes_done == 0:
            console.print(f"worker {event.worker_index} ready on {event.host} (pid {event.pid})")

    with progress:
        try:
            summary = run_collection(config, sink=sink, stop=stop)
        except KeyboardInterrupt:
            console.print("interrupted: the episode in progress was discarded; continue with --resume")
            return 130
    table = Table(title=f"outcomes: {summary.episodes_written} new episodes, {summary.total_in_store} in {summary.out}")
    table.add_column("outcome")
    table.add_column("episodes", justify="right")
    table.add_column("share", justify="right")
    for code in sorted(OUTCOME_NAMES):
        n = summary.outcomes.get(OUTCOME_NAMES[code], 0)
        if code == STOPPED and not n:
            continue
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


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `collect` and `verify` to the `salus` command's subparsers."""
    p = subparsers.add_parser("collect", help="collect episodes headless into a Zarr store")
    p.add_argument("--episodes", type=int, required=True, help="total episodes in the store when done")
    add_collect_arguments(p, required=True)
    p.set_defaults(func=cmd_collect, log_kind="collect")

    p = subparsers.add_parser("verify", help="check a store's integrity and data quality; exit 1 on a problem")
    p.add_argument("store", help="collection store folder")
    p.set_defaults(func=cmd_verify, log_kind="verify")
