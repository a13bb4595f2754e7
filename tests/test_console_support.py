"""Helpers for the console tests (no tests here).

`write_formula_store` writes a store with the project's recorder from deterministic formulas (no
random numbers), like tests/test_predictor.py: failed episodes carry a rise of signal 0 and of one
type-specific signal over their last 25 steps, and every frame is a small picture whose red square
moves with the step. It exercises the train / evaluate / episodes screens on tiny data only and is
never presented as a result; the collection tests use the real simulator and ensemble.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
from rich.console import Console

from salus_engine.store import EpisodeRecord, EpisodeWriter

HORIZONS = (6, 10, 15, 20)
OUTCOME_CYCLE = (-1, 0, -1, 1, -1, 2, -1, 3)
MAX_STEPS = 60
IMAGE_SIZE = 16


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


def formula_episode(i: int) -> EpisodeRecord:
    """Episode i: outcome from OUTCOME_CYCLE, failure at the last step, deterministic signals."""
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
    return EpisodeRecord(
        episode_id=i, seed=1000 + i, images=formula_frames(length, i), states=states, actions=actions,
        member_actions=np.repeat(actions[:, None, :], 2, axis=1), signals=signals.astype(np.float32),
        failure_type=code, failure_step=length - 1, evidence={"source": "test formula"})


def write_formula_store(path: Path, episodes: int) -> str:
    """Writes `episodes` formula episodes into a new store at `path`; returns the path."""
    writer = EpisodeWriter.create(path, horizons=HORIZONS, cameras=("front",), image_size=IMAGE_SIZE, ensemble_size=2,
                                  base_seed=1000, policy="test formulas", sim_config={"control_hz": 30.0})
    for i in range(episodes):
        writer.write(formula_episode(i), durable=False)
    return str(path)


def screen_text(app) -> str:
    """The app's current screen as plain text (what a terminal would show, without colours)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system=None,
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for(predicate, pilot, timeout: float = 240.0, step: float = 0.2) -> None:
    """Pauses the pilot until `predicate()` is true; TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not reached")
        await pilot.pause(step)
