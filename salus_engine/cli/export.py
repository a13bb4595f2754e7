"""`salus export --format lerobot STORE OUT`: a collection store written as a local LeRobotDataset.

`register(subparsers)` adds the command; the work is `salus_engine.store.lerobot_export.export_store`.
User mistakes (a missing or damaged store, an OUT that exists and is not empty) raise `StoreError`,
which the command line prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import threading

from salus_engine.store.lerobot_export import DEFAULT_IMAGE_WRITER_THREADS, EXPORT_FORMATS, check_export_paths


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop_on_signals(stop: threading.Event) -> dict:
    """First Ctrl-C, SIGTERM or SIGHUP: finish the current episode and keep the dataset so far; a
    second Ctrl-C interrupts and leaves no OUT. Returns the previous handlers, to restore."""
    def request(signum, _frame):
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, request) for sig in STOP_SIGNALS}


def cmd_export(args: argparse.Namespace) -> int:
    from salus_engine.store import EpisodeStore

    store = EpisodeStore.open(args.store)  # refused in one line before the heavy lerobot import
    check_export_paths(store.path, args.out)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from salus_engine.events import JobStarted, ProgressUpdate
    from salus_engine.store.lerobot_export import export_store

    console = Console()
    stop = threading.Event()
    previous = _stop_on_signals(stop)
    progress = Progress(TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console, disable=not console.is_terminal)
    task = progress.add_task("export", total=None)
    kind = "MP4 videos" if args.videos else "PNG images"

    def sink(event) -> None:
        if isinstance(event, JobStarted):
            progress.update(task, total=event.total)
            console.print(f"exporting {event.total} episodes of {args.store} to {args.out} "
                          f"(LeRobotDataset v3.0, cameras as {kind})", markup=False, soft_wrap=True)
        elif isinstance(event, ProgressUpdate):
            console.print(f"  {event.done:4d}/{event.total}  {event.message}", markup=False)
            progress.update(task, completed=event.done)

    try:
        with progress:
            summary = export_store(args.format, store.path, args.out, sink=sink, stop=stop, videos=args.videos,
                                   image_writer_threads=args.image_writer_threads)
    except KeyboardInterrupt:
        console.print(f"interrupted: nothing written to {args.out}")
        return 130
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler installed outside Python, which cannot be restored
                signal.signal(sig, handler)
    how = (f"stopped on request after {summary.episodes} of {summary.total_episodes} episodes"
           if summary.stopped else f"exported {summary.episodes} episodes")
    console.print(f"{how} ({summary.frames} frames) in {summary.seconds:.1f} s: {summary.out}; load it with "
                  f"LeRobotDataset('{summary.repo_id}', root='{summary.out}')", markup=False, soft_wrap=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `export` to the `salus` command's subparsers."""
    p = subparsers.add_parser("export", help="write a collection store as a local LeRobotDataset (no Hub upload)")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="lerobot",
                   help="lerobot: a LeRobotDataset v3.0 written by lerobot's own writer (default lerobot)")
    p.add_argument("--videos", action="store_true",
                   help="cameras as AV1 MP4 videos (lossy, several times smaller) instead of PNG images (lossless)")
    p.add_argument("--image-writer-threads", type=int, default=DEFAULT_IMAGE_WRITER_THREADS,
                   help=f"threads writing camera frames in the background (default {DEFAULT_IMAGE_WRITER_THREADS})")
    p.add_argument("store", help="collection store folder")
    p.add_argument("out", help="dataset folder to create (must not exist, or be empty)")
    p.set_defaults(func=cmd_export, log_kind="export")
