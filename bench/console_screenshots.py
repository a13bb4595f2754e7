"""Exports SVG screenshots of every console screen into docs/screenshots/ for the README, each taken
while the console runs the real job on real data:

- collect.svg: a live collection (`--collect-episodes` episodes into a temporary store shown as
  data/collection, with the given policy), taken while its last episode runs;
- train.svg: a training on `--data`, taken when it has finished;
- evaluate.svg, evaluate-roc.svg: the evaluation of that run (summary tab, ROC tab);
- episodes.svg: the episodes of `--data` with that run loaded;
- player.svg: the player at the failure step of the first failed episode;
- help.svg: the key help of the player.

    .venv/bin/python bench/console_screenshots.py [--data data/collection] [--size 120x40] [--epochs 30]
        [--policy DIR --ensemble-size M] [--image-size 128] [--collect-episodes 3]

`--data` should hold failed and successful episodes (a training needs both); without successes the
train and evaluate screenshots are skipped (said on stderr) and the player shows no probabilities.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "egl")

from salus_engine.config import CollectConfig  # noqa: E402
from salus_tui.app import SalusApp  # noqa: E402


LIVE_STORE = "data/collection"
"""Where the live collection writes, relative to the temporary working folder (as on a user's screen)."""


async def until(predicate, pilot, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise SystemExit(f"console_screenshots: timed out waiting for {what}")
        await pilot.pause(0.25)


async def take(args: argparse.Namespace, work: Path) -> list[str]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = CollectConfig(episodes=args.collect_episodes, out=LIVE_STORE, seed=args.seed)
    if args.policy:
        config.policy.path = args.policy
    if args.ensemble_size:
        config.policy.ensemble_size = args.ensemble_size
    if args.image_size:
        config.sim.image_size = args.image_size
    run_dir = Path("checkpoints/predictor-example")
    data = args.data or config.out
    app = SalusApp(config, data=data, checkpoint="", log_path=work / "session.log", theme=args.theme)
    written = []

    def shot(name: str) -> None:
        app.save_screenshot(f"{name}.svg", path=str(out))
        written.append(str(out / f"{name}.svg"))

    async with app.run_test(size=args.size) as pilot:
        await pilot.pause()
        collect = app.screen
        await pilot.press("s")
        await until(lambda: sum(collect.outcomes.values()) >= args.collect_episodes - 1, pilot, 3600,
                    "the live collection")
        await until(lambda: collect.snapshot.read()[2] >= 20 or not collect.running, pilot, 600, "live signals")
        shot("collect")
        await until(lambda: not collect.running, pilot, 3600, "the end of the collection")

        await pilot.press("2")
        train = app.screen
        train.query_one("#data").value = data
        for field, value in (("#epochs", str(args.epochs)), ("#out", str(run_dir))):
            train.query_one(field).value = value
        await pilot.press("s")  # the job runs from here until `running` is False again
        await until(lambda: not train.running, pilot, 3600, "the training")
        await pilot.pause(0.5)
        trained = bool(train.history)
        if not trained:
            dialog = app.screen
            print(f"train and evaluate screenshots skipped: {getattr(dialog, 'message', 'the training failed')}",
                  file=sys.stderr)
            await pilot.press("escape")
        else:
            shot("train")
            await pilot.press("e")
            await pilot.pause(0.5)
            evaluate = app.screen
            evaluate.query_one("#plots").value = False
            await pilot.press("s")
            await until(lambda: not evaluate.running, pilot, 3600, "the evaluation")
            await pilot.pause(0.5)
            if evaluate.metrics is None:
                print(f"evaluate screenshots skipped: {getattr(app.screen, 'message', 'the evaluation failed')}",
                      file=sys.stderr)
                await pilot.press("escape")
            else:
                shot("evaluate")
                await pilot.press("t", "t")
                await pilot.pause(0.5)
                shot("evaluate-roc")

        await pilot.press("4")
        episodes = app.screen
        episodes.query_one("#data").value = data
        episodes.query_one("#checkpoint").value = str(run_dir) if trained else ""
        episodes.action_reload()
        await until(lambda: episodes.rows and not episodes.reading, pilot, 600, "the episode table")
        await pilot.pause(0.5)
        shot("episodes")
        failed = [r for r in episodes.visible_rows() if r.failure_type >= 0]
        if failed:
            episodes.open_episode(failed[0].index)
            await pilot.pause(0.5)
            await pilot.press("f")
            await pilot.pause(0.5)
            shot("player")
            await pilot.press("question_mark")
            await pilot.pause(0.5)
            shot("help")
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a collection store with failed and successful episodes for the train, "
                        "evaluate and episodes screens (default: the live collection's)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="folder for the SVG files")
    parser.add_argument("--size", default="120x40", help="terminal size WxH (default 120x40)")
    parser.add_argument("--theme", default="salus-dark")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--collect-episodes", type=int, default=3, help="episodes of the live collection (default 3)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the live collection")
    parser.add_argument("--policy", help="policy ensemble of the live collection (default: the embedded one)")
    parser.add_argument("--ensemble-size", type=int)
    parser.add_argument("--image-size", type=int, help="camera image side of the live collection")
    args = parser.parse_args()
    args.size = tuple(int(v) for v in args.size.lower().split("x"))
    args.out = str(Path(args.out).resolve())
    args.data = str(Path(args.data).resolve()) if args.data else None
    with tempfile.TemporaryDirectory(prefix="salus-screenshots-") as tmp:
        os.chdir(tmp)  # the live store and the run get short relative paths on screen
        if args.data:  # shown as data/<name>, like a store in the repository
            name = Path(args.data).name
            if name == Path(LIVE_STORE).name:  # else the live collection would resume it and collect nothing
                name += "-recorded"
            link = Path(tmp) / "data" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(args.data, target_is_directory=True)
            args.data = str(link.relative_to(tmp))
        for path in asyncio.run(take(args, Path(tmp))):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
