"""Prints how long reading a large collection store takes, for what each front end reads:

(a) the episode table's metadata (`EpisodeStore.open` + `listing()`: each episode's attributes, no
    array), and the fully checked metadata (`metas()`: also every array's metadata);
(b) the console's episodes screen, headless at 120x40: from the store's path given to the time its
    table lists every episode, and to the time the signal columns (maximum uncertainty) are filled;
(c) the signals of every episode (`EpisodeStore.read_arrays(("signals",))`, concurrent);
(d) what `salus train` and `salus evaluate` load (`load_signal_data`: structural check, signals and
    horizon labels of every episode, label check).

Each is timed `--repeats` times; the median is printed (the first read of a store after a
collection may come from the disk, later ones from the page cache: both are shown).

    .venv/bin/python bench/read_store.py --data data/large [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's packages, however installed

from salus_engine.predictor.dataset import load_signal_data  # noqa: E402
from salus_engine.store import EpisodeStore  # noqa: E402


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def console_table(path: Path, log_folder: Path) -> tuple[float, float]:
    """Seconds from opening the episodes screen on `path` until its table lists every episode, and
    until the signal columns are filled (the headless console, as a user's terminal would get it)."""
    from salus_tui.app import SalusApp
    from salus_tui.screens.episodes import EpisodesScreen

    episodes = len(EpisodeStore.open(path))  # a store still being written may hold more when the screen reads it

    async def scenario() -> tuple[float, float]:
        app = SalusApp(log_path=log_folder / "session.log", theme="salus-dark", checkpoint="",
                       start_screen="episodes")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, EpisodesScreen)
            screen.query_one("#data").value = str(path)
            start = time.perf_counter()
            screen.action_reload()
            listed = None
            while screen.reading or listed is None:
                if listed is None and screen.query_one("#episodes").row_count >= episodes:
                    listed = time.perf_counter() - start
                await asyncio.sleep(0.005)
            filled = time.perf_counter() - start
            if listed is None or any(row.max_uncertainty is None for row in screen.rows):
                raise SystemExit(f"the episodes screen did not read {path}: {screen.query_one('#summary').render()}")
            await pilot.press("q")
        return listed, filled

    return asyncio.run(scenario())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a collection store (e.g. data/large, 2,000 episodes)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.data)
    store = EpisodeStore.open(path)
    metas = store.metas()
    print(f"{path}: {len(metas)} episodes, {sum(m.episode_length for m in metas)} steps")

    rows: dict[str, list[float]] = {name: [] for name in ("metadata", "checked metadata", "table listed", "table filled", "signals",
                                                          "train/evaluate load")}
    with tempfile.TemporaryDirectory(prefix="salus-bench-read-") as tmp:
        for _ in range(args.repeats):
            rows["metadata"].append(timed(lambda: EpisodeStore.open(path).listing()))
            rows["checked metadata"].append(timed(lambda: EpisodeStore.open(path).metas()))
            listed, filled = console_table(path, Path(tmp))
            rows["table listed"].append(listed)
            rows["table filled"].append(filled)
            rows["signals"].append(timed(lambda: EpisodeStore.open(path).read_arrays(("signals",))))
            rows["train/evaluate load"].append(timed(lambda: load_signal_data(path)))
    labels = {
        "metadata": "(a) metadata (open + listing)",
        "checked metadata": "(a) checked metadata (open + metas)",
        "table listed": "(b) console table lists every episode",
        "table filled": "(b) console table with signal columns",
        "signals": "(c) signals of every episode",
        "train/evaluate load": "(d) train/evaluate load (signals + labels)",
    }
    for name, values in rows.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{labels[name]:45s} median {statistics.median(values):6.2f} s   (runs: {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
