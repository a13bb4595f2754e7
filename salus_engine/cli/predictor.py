"""`salus train`, `salus evaluate` and `salus report`: argparse wiring over the predictor jobs.

`register(subparsers)` adds the three subcommands to the `salus` parser; each sets `func` to a
function returning the exit code. User mistakes raise `PredictorError` (a `SalusError`), which the
command line prints as one line.
"""

from __future__ import annotations

import argparse
import signal
import threading

from salus_engine.config import EvaluateConfig, TrainConfig, build_settings, default_of
from salus_engine.predictor import MODEL_KINDS, SPLIT_NAMES
from salus_engine.predictor.checkpoint import default_run_dir
from salus_engine.predictor.alarm_score import ALARM_SCORES
from salus_engine.predictor.spec import DEFAULT_MEMBERS


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

    from salus_engine.events import EpochFinished, LogLine, TrainingStarted
    from salus_engine.predictor.training import run_training

    console = Console()
    config = build_settings(TrainConfig, data=args.data, out=args.out or default_run_dir(), epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                            patience=args.patience, seed=args.seed, model=args.model, window=args.window,
                            threads=args.threads, features=args.features, members=args.members,
                            alarm_score=args.alarm_score, member_features=args.member_features,
                            peak_weight=args.peak_weight)
    stop = threading.Event()
    _stop_on_signals(stop)

    def sink(event) -> None:
        if isinstance(event, TrainingStarted):
            console.print(f"training a {event.model} predictor ({event.parameters} parameters) on {event.data}: "
                          f"{event.samples['train']} train / {event.samples['val']} val steps from "
                          f"{event.episodes['train']} / {event.episodes['val']} episodes -> {event.out}")
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

    from salus_engine.events import EvaluationStarted, LogLine, ProgressUpdate
    from salus_engine.predictor.evaluation import run_evaluation
    from salus_engine.cli.report import print_report

    console = Console()
    config = build_settings(EvaluateConfig, checkpoint=args.checkpoint, data=args.data, out=args.out,
                            split=args.split, alpha=args.alpha, delta=args.delta, weights=args.weights, horizon=args.horizon,
                            threads=args.threads, plots=not args.no_plots, fresh=args.fresh,
                            ablation=args.ablation or None, workers=args.workers)
    stop = threading.Event()
    _stop_on_signals(stop)

    def sink(event) -> None:
        if isinstance(event, EvaluationStarted):
            console.print(f"evaluating {event.checkpoint} on the {event.split} split of {event.data} "
                          f"(alpha {event.alpha}" + ("" if config.delta is None else f", delta {config.delta}") + ")")
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
    from salus_engine.cli.report import print_report

    return print_report(args.run, markdown=args.markdown)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `train`, `evaluate` and `report` to the `salus` command's subparsers; the defaults shown
    are the settings classes' own (`salus_engine.config`)."""
    def train_default(name: str) -> object:
        return default_of(TrainConfig, name)

    p = subparsers.add_parser("train", help="train the failure predictor on a collection store")
    p.add_argument("--data", required=True, help="collection store folder")
    p.add_argument("--epochs", type=int, help=f"maximum epochs (default {train_default('epochs')})")
    p.add_argument("--batch-size", type=int, help=f"steps per mini-batch (default {train_default('batch_size')})")
    p.add_argument("--lr", type=float, help=f"AdamW learning rate, cosine-decayed (default {train_default('lr')})")
    p.add_argument("--out", help="run folder to create (default checkpoints/predictor-<UTC time>)")
    p.add_argument("--model", choices=MODEL_KINDS,
                   help="outcome: an MLP over each step with the episode's running mean and maximum, trained on "
                   "the episode's outcome, 4 outputs (default); "
                   "temporal: causal dilated convolutions over the episode so far, 16 outputs; "
                   "multi-horizon: an MLP over the current step (or --window steps), 16 outputs; single-horizon: "
                   "the seeds' 4-output network (failure within the longest horizon)")
    p.add_argument("--features", help="input families, comma-separated: six, chunk_consistency, flow_disagreement, "
                   "chunk_entropy, hidden_state, action_jerk, target_view (needs the front camera), state, motion (the state's "
                   "change since the previous step), command (the controller's target against the gripper), grasp (the "
                   "gripper opening against the cube's width, mm), time, or "
                   f"all (every family the store offers; default {train_default('features')})")
    p.add_argument("--window", type=int, help=f"steps of signals per input, multi-horizon only (default {train_default('window')})")
    p.add_argument("--members", type=int, help="MLP members trained side by side from independent initialisations, "
                   f"their probabilities averaged (default {DEFAULT_MEMBERS} for the outcome model, 1 for the others; "
                   "exactly 1 for temporal)")
    p.add_argument("--member-features", help="input families per member: family sets separated by '/', dealt to the "
                   "members in turn, each within --features (e.g. 'state,time,target_view/state,time'; default: every "
                   "member reads all of --features)")
    p.add_argument("--alarm-score", choices=ALARM_SCORES,
                   help="how a step's failure-type probabilities become the alarm score the threshold is calibrated "
                   "on: max (the largest), noisy-or (the probability of any failure type) or noisy-or-excess (the "
                   "noisy-or minus half the successful training episodes' mean at the same step; default for the "
                   "outcome model; max for the others)")
    p.add_argument("--peak-weight", type=float, help="weight of the success-peak term in the outcome model's loss: "
                   "the successful training episodes' highest noisy-or-excess score, pushed down "
                   "(default 1 for the outcome model scored by noisy-or-excess, 0 for the others; 0 leaves it out)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a lower validation loss; 0 never "
                   f"(default {train_default('patience')})")
    p.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {train_default('weight_decay')})")
    p.add_argument("--seed", type=int, help="seed of the episode split, initialisation and shuffling "
                   f"(default {train_default('seed')})")
    p.add_argument("--threads", type=int,
                   help=f"torch CPU threads; the network is tiny, one is fastest (default {train_default('threads')})")
    p.set_defaults(func=cmd_train, log_kind="train")

    p = subparsers.add_parser("evaluate",
                              help="score a trained predictor against baselines; write metrics.json and plots")
    p.add_argument("--checkpoint", required=True, help="run folder of 'salus train'")
    p.add_argument("--data", required=True, help="the store the checkpoint was trained on")
    p.add_argument("--split", choices=SPLIT_NAMES, help=f"split to evaluate (default {default_of(EvaluateConfig, 'split')})")
    p.add_argument("--out", required=True, help="folder for metrics.json and PNG plots")
    p.add_argument("--alpha", type=float, help="false-alarm rate on successful episodes for the conformal alarm "
                   f"threshold (default {default_of(EvaluateConfig, 'alpha')})")
    p.add_argument("--delta", type=float, help="make the false-alarm bound hold for this calibration set with "
                   "probability 1 - DELTA (a higher, training-conditional threshold; e.g. 0.1); default: the "
                   "split-conformal bound, which holds on average over calibration sets")
    p.add_argument("--horizon", type=int, help="alarm horizon in steps, one of the store's (default the longest)")
    p.add_argument("--weights", choices=("best", "final"), help="which weights (default best)")
    p.add_argument("--no-plots", action="store_true", help="write metrics.json only")
    p.add_argument("--fresh", help="a second store from a seed range never trained on (same signal families): every "
                   "episode is also scored, with the thresholds calibrated on --data")
    p.add_argument("--ablation", action="store_true", help="also retrain the model with each input family removed "
                   "and each family alone (slow)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 per network on Ray workers)")
    p.add_argument("--workers", type=int, help="networks trained at a time (baselines, controls, ablation rows): N > 1 "
                   "trains them as Ray tasks on a local Ray, one CPU each; the figures do not change "
                   f"(default {default_of(EvaluateConfig, 'workers')}: one after another in this process)")
    p.set_defaults(func=cmd_evaluate, log_kind="evaluate")

    p = subparsers.add_parser("report", help="print a run's training summary and evaluation tables")
    p.add_argument("run", help="run folder of 'salus train' (with evaluation/) or an evaluate --out folder")
    p.add_argument("--markdown", action="store_true", help="print the evaluation as a Markdown section for a README")
    p.set_defaults(func=cmd_report, log_kind="report")
