"""`salus`: the command line, the headless twin of the console.

Commands: `collect`, `verify`, `tui`, `policy train`, `train`, `evaluate`, `report`, `trial`, `export`. This subpackage
is a front end beside the console: the computing modules of `salus_engine` never import it, and it
imports the console only to launch it (`salus_engine.cli.console`), the one exception the layer
contracts in pyproject.toml name.

Errors: a user's mistake (a `SalusError`: bad path, wrong store, missing checkpoint, bad setting)
ends in one line on stderr and exit code 2. Anything else is a bug: its whole traceback goes to the
session log (`logs/salus-<command>-<time>.log`, or `--log FILE`), the user sees one line naming the
log, and the exit code is 3. `--debug` also shows tracebacks on the terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from salus_engine.errors import SalusError
from salus_engine.session_log import close_session_log, default_log_path, open_session_log

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
"""Exit code of a user's mistake (one line on stderr)."""
EXIT_BUG = 3
"""Exit code of a bug (one line on stderr naming the log that holds the traceback)."""


def build_parser() -> argparse.ArgumentParser:
    """The `salus` parser with every subcommand."""
    from salus_engine.cli import collect, console, export, policy, predictor, trial

    parser = argparse.ArgumentParser(prog="salus", description="SALUS: runtime failure prediction for VLA policies")
    parser.add_argument("--debug", action="store_true", help="also show tracebacks on the terminal")
    parser.add_argument("--log", dest="log_path", metavar="FILE",
                        help="session log file (default logs/salus-<command>-<time>.log)")
    sub = parser.add_subparsers(dest="command", required=True)
    collect.register(sub)
    console.register(sub)
    policy.register(sub)
    predictor.register(sub)
    trial.register(sub)
    export.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one `salus` command; returns its exit code."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    log_path = Path(args.log_path) if args.log_path else default_log_path(args.log_kind)
    args.log_path = str(log_path)
    try:
        handler = open_session_log(log_path)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        blocking = next((p for p in log_path.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            reason = f"{blocking} is a file, not a folder"  # mkdir says only "File exists"
        print(f"salus: error: cannot write the session log {log_path} ({reason}); give a writable --log FILE",
              file=sys.stderr)
        return EXIT_USER_ERROR
    log.info("salus %s", " ".join(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except SalusError as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        log.info("user error: %s", message)
        if args.debug:
            raise
        print(f"salus: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        log.info("interrupted")
        print("salus: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        log.exception("bug in 'salus %s'", args.command)
        if args.debug:
            raise
        print(f"salus: internal error ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
              f"this is a bug, its traceback is in {log_path}", file=sys.stderr)
        return EXIT_BUG
    finally:
        close_session_log(handler)
