"""`salus train`, `salus evaluate` and `salus report`: argparse wiring over the predictor jobs.

`register(subparsers)` adds the three subcommands to the `salus` parser; each sets `func` to a
function returning the exit code. User mistakes raise `PredictorError` (a `ValueError`), which the
CLI prints as one line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading
from pathlib import Path

from salus_engine.predictor import MODEL_KINDS, SPLIT_NAMES


def default_run_dir() -> str:
    """checkpoints/predictor-YYYYmmdd-HHMMSS (UTC)."""
    return str(Path("checkpoints") / f"predictor-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}")


def _stop_on_signals(stop: threading.Event) -> None:
    """First Ctrl-C, SIGTERM or SIGHUP: finish the current epoch and save; a second Ctrl-C interrupts."""
    def request(signum, _frame):
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request)


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from salus_engine.events import EpochFinished, JobStarted, LogLine
    from salus_engine.predictor.training import TrainConfig, run_training

    console = Console()
    config = TrainConfig(data=args.data, out=args.out or default_run_dir(), epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         patience=args.patience, seed=args.seed, model=args.model, window=args.window,
                         threads=args.threads)
    stop = threading.Event()
    _stop_on_signals(stop)

    def sink(event) -> None:
        if isinstance(event, JobStarted):
            d = event.detail
            console.print(f"training a {d['model']} predictor ({d['parameters']} parameters) on {d['data']}: "
                          f"{d['samples']['train']} train / {d['samples']['val']} val steps from "
                          f"{d['episodes']['train']} / {d['episodes']['val']} episodes -> {d['out']}")
        elif isinstance(event, EpochFinished):
            console.print(f"epoch {event.epoch:3d}/{event.total}  train {event.train_loss:.4f}  "
                          f"val {event.val_loss:.4f}  lr {event.lr:.2e}  {event.seconds:5.2f} s"
                          + ("  best" if event.best else ""))
        elif isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}")

    summary = run_training(config, sink=sink, stop=stop)
    how = "stopped on request" if summary.stopped else "stopped early" if summary.early_stopped else "done"
    console.print(f"{how}: {summary.epochs_run} epochs in {summary.seconds:.1f} s, best epoch {summary.best_epoch} "
                  f"(val loss {summary.best_val_loss:.4f}); saved {summary.out}")
    console.print(f"next: salus evaluate --checkpoint {summary.out} --data {config.data} "
                  f"--out {summary.out}/evaluation")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from salus_engine.events import JobStarted, LogLine, ProgressUpdate
    from salus_engine.predictor.evaluation import EvaluateConfig, run_evaluation
    from salus_engine.predictor.report import print_report

    console = Console()
    config = EvaluateConfig(checkpoint=args.checkpoint, data=args.data, out=args.out, split=args.split,
                            alpha=args.alpha, weights=args.weights, horizon=args.horizon, threads=args.threads,
                            plots=not args.no_plots)
    stop = threading.Event()
    _stop_on_signals(stop)

    def sink(event) -> None:
        if isinstance(event, JobStarted):
            console.print(f"evaluating {event.detail['checkpoint']} on the {event.detail['split']} split of "
                          f"{event.detail['data']} (alpha {event.detail['alpha']})")
        elif isinstance(event, ProgressUpdate):
            console.print(f"  {event.message}")
        elif isinstance(event, LogLine):
            console.print(f"[{event.level}] {event.text}")

    metrics = run_evaluation(config, sink=sink, stop=stop)
    if metrics is None:
        console.print("stopped on request; nothing written")
        return 130
    print_report(args.out, console)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from salus_engine.predictor.report import print_report

    return print_report(args.run, markdown=args.markdown)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `train`, `evaluate` and `report` to the `salus` command's subparsers."""
    p = subparsers.add_parser("train", help="train the failure predictor on a collection store")
    p.add_argument("--data", required=True, help="collection store folder")
    p.add_argument("--epochs", type=int, default=50, help="maximum epochs (default 50)")
    p.add_argument("--batch-size", type=int, default=256, help="steps per mini-batch (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate, cosine-decayed (default 1e-3)")
    p.add_argument("--out", help="run folder to create (default checkpoints/predictor-<UTC time>)")
    p.add_argument("--model", choices=MODEL_KINDS, default="multi-horizon",
                   help="multi-horizon: 16 outputs (default); mvp: the seeds' 4-output network")
    p.add_argument("--window", type=int, default=1, help="steps of signals per input, multi-horizon only (default 1)")
    p.add_argument("--patience", type=int, default=10,
                   help="stop after this many epochs without a lower validation loss; 0 never (default 10)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode split, initialisation and shuffling")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; the network is tiny, one is fastest (default 1)")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("evaluate",
                              help="score a trained predictor against baselines; write metrics.json and plots")
    p.add_argument("--checkpoint", required=True, help="run folder of 'salus train'")
    p.add_argument("--data", required=True, help="the store the checkpoint was trained on")
    p.add_argument("--split", choices=SPLIT_NAMES, default="test", help="split to evaluate (default test)")
    p.add_argument("--out", required=True, help="folder for metrics.json and PNG plots")
    p.add_argument("--alpha", type=float, default=0.1,
                   help="false-alarm rate on successful episodes for the conformal alarm threshold (default 0.1)")
    p.add_argument("--horizon", type=int, help="alarm horizon in steps, one of the store's (default the longest)")
    p.add_argument("--weights", choices=("best", "final"), default="best", help="which weights (default best)")
    p.add_argument("--no-plots", action="store_true", help="write metrics.json only")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser("report", help="print a run's training summary and evaluation tables")
    p.add_argument("run", help="run folder of 'salus train' (with evaluation/) or an evaluate --out folder")
    p.add_argument("--markdown", action="store_true", help="print the evaluation as a Markdown section for a README")
    p.set_defaults(func=cmd_report)
