"""`salus tui`: opens the operator console.

The one place where the command line imports the console (`salus_tui.app.run_app`): the layer
contracts in pyproject.toml name this import as their single exception.
"""

from __future__ import annotations

import argparse

from salus_engine.cli.collect import add_collect_arguments, collect_config_from_args
from salus_engine.config import ConfigError


def cmd_tui(args: argparse.Namespace) -> int:
    if args.collect is not None and not args.out:
        raise ConfigError("--collect needs --out DIR, the folder to collect into")
    if args.refresh_hz <= 0:
        raise ConfigError(f"--refresh-hz must be positive, got {args.refresh_hz}")
    episodes = args.collect if args.collect is not None else args.episodes
    config = collect_config_from_args(args, episodes)
    from salus_tui.app import run_app

    return run_app(collect_config=config, autostart=args.collect is not None, data=args.data,
                   checkpoint=args.checkpoint, refresh_hz=args.refresh_hz, theme=args.theme,
                   start_screen=args.screen, log_path=args.log_path, trial=args.trial)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `tui` to the `salus` command's subparsers."""
    p = subparsers.add_parser("tui", help="open the operator console")
    p.add_argument("--collect", type=int, metavar="N", help="start collecting N episodes at once (needs --out)")
    p.add_argument("--episodes", type=int, metavar="N", help="episodes in the collection form, not started")
    p.add_argument("--data", help="store for the train and episodes screens (default: the collection's --out)")
    p.add_argument("--checkpoint", help="predictor run folder for the evaluate and episodes screens "
                   "(default: the newest checkpoints/predictor-*)")
    p.add_argument("--trial", metavar="DIR", help="open the paired table of a 'salus trial' folder (its trial.json) "
                   "over the first screen; escape goes back")
    p.add_argument("--screen", choices=("collect", "train", "evaluate", "episodes"), default="collect",
                   help="screen shown first (default collect)")
    p.add_argument("--refresh-hz", type=float, default=5.0,
                   help="live refresh rate of the signals while collecting, Hz; playback runs at twice it (default 5)")
    p.add_argument("--theme", help="console theme: dark, light or ansi (16 colours); default dark, "
                   "ansi with NO_COLOR or on terminals without 256 colours")
    p.add_argument("--log", dest="log_path", metavar="FILE", default=argparse.SUPPRESS,
                   help="session log file (default logs/salus-tui-<time>.log)")
    add_collect_arguments(p, required=False)
    p.set_defaults(func=cmd_tui, log_kind="tui")
