"""Helpers for the console tests (no tests here).

`write_formula_store` writes a store with the project's recorder from deterministic formulas (no
random numbers), like tests/test_predictor.py: failed episodes carry a rise of signal 0 and of one
type-specific signal over their last 25 steps, and every frame is a small picture whose red square
moves with the step; with `families` it also records signal-family columns and hidden features
(formulas too), and `as_format_2` turns a store into one of format version 2 (no families). It exercises the train / evaluate / episodes screens on tiny data only and is
never presented as a result; the collection tests use the real simulator and ensemble.
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
from pathlib import Path

import numpy as np
from rich.cells import cell_len
from textual.widgets import DataTable

from salus_engine.signal_families import FAMILY_COLUMNS
from salus_engine.store import EpisodeRecord, EpisodeWriter

HORIZONS = (6, 10, 15, 20)
OUTCOME_CYCLE = (-1, 0, -1, 1, -1, 2, -1, 3)
MAX_STEPS = 60
IMAGE_SIZE = 16
FORMULA_FAMILIES = {name: list(FAMILY_COLUMNS[name]) for name in ("chunk_consistency", "flow_disagreement",
                                                                   "action_jerk")}
"""Families of a formula store written with `families`: 12 feature columns, and 64 hidden dims."""
HIDDEN_DIM = 64


def formula_frames(length: int, episode: int) -> np.ndarray:
    """(T, 1, 3, S, S) uint8: a blue-green gradient with a red 4x4 square moving along the diagonal."""
    s = IMAGE_SIZE
    yy, xx = np.mgrid[0:s, 0:s]
    base = np.stack([np.zeros((s, s)), xx * 255 // (s - 1), yy * 255 // (s - 1)]).astype(np.uint8)
    frames = np.repeat(base[None], length, axis=0)
    for t in range(length):
        p = (t + episode) % (s - 4)
        frames[t, 0, p:p + 4, p:p + 4] = 255
        frames[t, 1:, p:p + 4, p:p + 4] = 0
    return frames[:, None]


def formula_episode(i: int, families: bool = False) -> EpisodeRecord:
    """Episode i: outcome from OUTCOME_CYCLE, failure at the last step, deterministic signals; with
    `families`, feature columns (T, 12) (column j a sine of its own frequency, with a step in the
    second half of the episode) and hidden features (T, 64) that change every 5 steps."""
    code = OUTCOME_CYCLE[i % len(OUTCOME_CYCLE)]
    length = MAX_STEPS if code == 3 else (40 + (i * 5) % 20 if code == -1 else 30 + (i * 7) % 25)
    t = np.arange(length, dtype=np.float64)
    phase = (i * 0.618) % 1.0 * 2 * np.pi
    signals = np.stack([0.1 + 0.03 * np.sin(t * (0.3 + 0.07 * j) + phase * (j + 1)) + 0.01 * j for j in range(6)], axis=1)
    if code >= 0:
        ramp = np.clip((t - (length - 25)) / 25.0, 0, None)
        signals[:, 0] += 0.08 * ramp
        signals[:, 1 + code] += 0.06 * ramp
    actions = np.tile(np.sin(t / 7.0)[:, None] * 0.5, (1, 7)).astype(np.float32)
    states = np.tile(np.cos(t / 9.0)[:, None] * 0.3, (1, 8)).astype(np.float32)
    features = hidden = None
    if families:
        width = sum(len(c) for c in FORMULA_FAMILIES.values())
        features = np.stack([1.0 + j + 0.5 * np.sin(t * (0.2 + 0.05 * j) + phase) + (t >= length // 2) * 0.3 * j
                             for j in range(width)], axis=1).astype(np.float32)
        hidden = np.cos((t // 5)[:, None] * 0.3 + np.arange(HIDDEN_DIM)[None, :] * 0.1).astype(np.float16)
    return EpisodeRecord(
        episode_id=i, seed=1000 + i, images=formula_frames(length, i), states=states, actions=actions,
        member_actions=np.repeat(actions[:, None, :], 2, axis=1), signals=signals.astype(np.float32),
        failure_type=code, failure_step=length - 1, evidence={"source": "test formula"},
        features=features, hidden_features=hidden)


def write_formula_store(path: Path, episodes: int, families: bool = False) -> str:
    """Writes `episodes` formula episodes into a new store at `path` (with `families`: the
    `FORMULA_FAMILIES` columns and `HIDDEN_DIM` hidden features); returns the path."""
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=IMAGE_SIZE, ensemble_size=2,
                                  base_seed=1000, policy="test formulas", sim_config={"control_hz": 30.0},
                                  feature_families=FORMULA_FAMILIES if families else None,
                                  hidden_dim=HIDDEN_DIM if families else 0)
    for i in range(episodes):
        writer.write(formula_episode(i, families), durable=False)
    writer.close()
    return str(path)


def as_format_2(path: str | Path) -> str:
    """Makes a store written without families one of format version 2, as collected before the
    signal families (its root attributes lose `feature_families` and `hidden_dim`)."""
    import zarr

    root = zarr.open_group(str(path), mode="r+", zarr_format=3)
    attrs = {k: v for k, v in root.attrs.asdict().items() if k not in ("feature_families", "hidden_dim")}
    attrs["format_version"] = 2
    root.attrs.put(attrs)
    return str(path)


_SVG_TEXT = re.compile(r'<text [^>]*?x="([0-9.e+-]+)"[^>]*?clip-path="url\(#[^)]*-line-(\d+)\)"[^>]*>(.*?)</text>')
_SVG_CELL_WIDTH = 20 * 0.61
"""Width of one terminal cell in Rich's SVG export (character height 20, font aspect ratio 0.61)."""


def hold_job_after_first(screen, event_type: type) -> tuple[threading.Event, threading.Event]:
    """Wraps a job screen's sink so that the job's thread, after forwarding its first `event_type`
    event, waits (at most 600 s) until the test releases it: the screen can then be looked at while
    the job provably runs, however fast it is.

    Returns:
        (reached: set once that event was forwarded, release: set it to let the job go on).
    """
    reached, release = threading.Event(), threading.Event()
    forward = screen.sink

    def held_sink(event) -> None:
        forward(event)
        if isinstance(event, event_type) and not reached.is_set():
            reached.set()
            release.wait(timeout=600)

    screen.sink = held_sink
    return reached, release


def screen_text(app) -> str:
    """The app's current screen as plain text (what a terminal would show, without colours), read
    from `App.export_screenshot()`: Rich writes every run of text as a `<text>` element at its cell
    column and terminal line."""
    width, height = app.size
    cells = [[" "] * width for _ in range(height)]
    for x, line, text in _SVG_TEXT.findall(app.export_screenshot()):
        column, row = round(float(x) / _SVG_CELL_WIDTH), int(line)
        for char in html.unescape(text).replace("\xa0", " "):
            span = cell_len(char)
            if row < height and column + span <= width:
                cells[row][column:column + span] = [char] + [""] * (span - 1)
            column += span
    return "\n".join("".join(row).rstrip() for row in cells)


def region_text(app, region) -> str:
    """The text on screen inside `region` (a `textual.geometry.Region`, e.g. a widget's
    `content_region`), as `screen_text` reads it, one line per row."""
    lines = screen_text(app).splitlines() + [""] * region.bottom
    return "\n".join(line[region.x:region.right] for line in lines[region.y:region.bottom])


def tables_measured(screen) -> bool:
    """True when every DataTable on `screen` has measured its rows and columns. A DataTable sizes
    new rows (column widths, its virtual size) only when its message queue is next idle, so a table
    just filled can be drawn for a moment with the columns as wide as their labels."""
    for table in screen.query(DataTable):
        header = table.header_height if table.show_header else 0
        if table.virtual_size.height != header + sum(row.height for row in table.rows.values()):
            return False
    return True


async def settle(pilot, timeout: float = 30.0) -> None:
    """Waits until the screen shown now has handled every pending message (a screen pushed meanwhile
    included), animations too, and its tables have measured their rows: results, not a fixed time."""
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await wait_for(lambda: tables_measured(pilot.app.screen), pilot, timeout, 0.05)
    await pilot.pause()


async def wait_for_jobs(pilot) -> None:
    """Waits until every worker of the app has ended (a job's result, not a transient state), then
    until the screen has handled the events they sent."""
    await pilot.app.workers.wait_for_complete()
    await settle(pilot)


async def wait_for(predicate, pilot, timeout: float = 240.0, step: float = 0.2) -> None:
    """Pauses the pilot until `predicate()` is true; TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await pilot.pause(step)


async def wait_for_exit(app, timeout: float = 60.0) -> None:
    """Waits until `app.exit()` has been called (its return code is set); TimeoutError after `timeout`
    seconds. Sleeps on the event loop rather than through the pilot, which an exiting app stops serving."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while app.return_code is None:
        if loop.time() > end:
            raise TimeoutError("the app did not exit")
        await asyncio.sleep(0.05)
