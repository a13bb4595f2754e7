"""`salus export --format lerobot`: a SALUS episode store written as a local LeRobotDataset.

The dataset is written by lerobot 0.6.1's own writer (`LeRobotDataset.create`, `add_frame`,
`save_episode`, `finalize`; dataset format v3.0) into a local folder; nothing is pushed to the Hub
and nothing is downloaded. Load it back with
`LeRobotDataset("salus/<store folder name>", root=OUT)` (the repo id is only a name here).

Per frame (one store step = one frame, at the store's control rate, `sim_config.control_hz`, 30 fps):

    observation.images.<camera>  (S, S, 3) uint8   every recorded camera, dtype "image" (PNG frames
                                                   in the parquet files: lossless); with videos=True
                                                   dtype "video" (AV1 MP4 through PyAV: lossy, about
                                                   4x smaller at 256 px)
    observation.state            (8,)  float32     7 joint angles (rad) + gripper opening (m)
    action                       (7,)  float32     executed action, env units in [-1, 1]
    intervention                 (1,)  bool        an intervention was active at the step (lerobot's
                                                   DAgger rollouts use this key and dtype)
    intervention_kind            (1,)  int64       its `layout.INTERVENTION_KINDS` code (0 none, 1 slow,
                                                   2 replan, 3 retreat, 4 handover, 5 stop)
    actor                        (1,)  int64       who chose the action: 0 policy, 1 expert (`layout.ACTORS`)
    task                         str               the task instruction (`salus_engine.sim.env.INSTRUCTION`)

plus lerobot's own `timestamp`, `frame_index`, `episode_index`, `index`, `task_index`. Stores
without a runtime monitor (format 1-3, or format 4 with root attribute `monitor` null) have every
frame `intervention` False, `intervention_kind` 0, `actor` 0.

LeRobotDataset has no per-episode user fields, so SALUS's episode-level facts (outcome, failure
step, seed, interventions, the source store) go into the sidecar `meta/salus.json`, which lerobot
ignores; its `episodes[i]` belongs to lerobot episode_index i.

Images are the default because they round-trip exactly and need no video encoder. Video encoding
needs PyAV with SVT-AV1 (lerobot[dataset] installs it); decoding falls back from torchcodec to
PyAV where torchcodec cannot load the system FFmpeg.

The dataset is built in a locked sibling folder `.salus-creating-<OUT name>-<random>` and renamed to
OUT when complete: an interrupted export (an error, a second Ctrl-C, a kill) leaves no OUT, and the
next export to the same OUT removes the abandoned build folder. A stop request (`stop` set) finishes
the current episode and keeps the episodes written so far: OUT is then a valid, shorter dataset.

This module never imports Textual, rich or the command line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from salus_engine import OUTCOME_NAMES
from salus_engine.events import Event, JobStarted, ProgressUpdate
from salus_engine.store.layout import ACTORS, INTERVENTION_KINDS, STATE_NAMES, StoreError, array_dtypes
from salus_engine.store.reader import Episode, EpisodeStore
from salus_engine.store.writer import _new_build_folder, _remove_abandoned_builds

log = logging.getLogger(__name__)

__all__ = [
    "EXPORT_FORMATS", "ExportError", "ExportSummary", "check_export_paths", "episode_flags", "export_lerobot",
    "export_store", "lerobot_features", "repo_id_for",
]

EXPORT_FORMATS: tuple[str, ...] = ("lerobot",)
"""Formats `salus export` writes."""

ACTION_NAMES: tuple[str, ...] = ("delta_x", "delta_y", "delta_z", "delta_rx", "delta_ry", "delta_rz", "gripper")
"""Names of the 7 `action` columns (end-effector delta position, delta rotation, gripper -1 open / +1 closed)."""
ROBOT_TYPE = "franka_panda"
"""`robot_type` of the dataset's info.json."""
SIDECAR = "meta/salus.json"
"""SALUS's episode-level facts inside the dataset folder (lerobot ignores the file)."""
DEFAULT_IMAGE_WRITER_THREADS = 2
"""Threads writing the PNG frames while the next frames are read (lerobot's AsyncImageWriter)."""

EventSink = Callable[[Event], None]


class ExportError(StoreError):
    """An export that cannot start: bad OUT, unusable store, missing lerobot dataset support. One line:
    what is wrong and what to do."""


@dataclass
class ExportSummary:
    """What `export_lerobot` wrote."""

    episodes: int
    """Episodes in the dataset."""
    frames: int
    """Frames (steps) in the dataset."""
    out: str
    """The dataset folder."""
    seconds: float
    """Wall-clock time of the export."""
    total_episodes: int = 0
    """Episodes in the store (more than `episodes` when stopped)."""
    stopped: bool = False
    """A stop request ended the export early; the dataset holds the first `episodes` episodes."""
    videos: bool = False
    """Cameras were written as MP4 videos (otherwise as PNG images)."""
    repo_id: str = ""
    """The dataset's repo id, the name to load it by: `LeRobotDataset(repo_id, root=out)`."""


def repo_id_for(store_path: str | Path) -> str:
    """The local repo id of a store's export: `salus/<store folder name>` (characters other than
    letters, digits, `-`, `_` and `.` become `-`)."""
    name = Path(os.path.abspath(store_path)).name or "store"
    return "salus/" + (re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "store")


def check_export_paths(store_path: str | Path, out: str | Path) -> None:
    """Refuses an OUT that cannot become the dataset: an existing non-empty folder, a file, a folder
    under a file, the store itself or a folder inside it (or one holding it).

    Raises:
        ExportError: one line naming the path and what to do.
    """
    out, store_path = Path(out), Path(store_path)
    if out.is_dir():
        try:
            empty = not any(out.iterdir())
        except OSError as err:
            raise ExportError(f"{out}: cannot read the folder ({err.strerror or type(err).__name__}); "
                              "choose another OUT") from None
        if not empty:
            raise ExportError(f"{out} already exists and is not empty; choose a new OUT folder, or delete it first")
    elif out.exists() or out.is_symlink():
        raise ExportError(f"{out} is a file, not a folder; choose a new OUT folder")
    for ancestor in out.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ExportError(f"cannot create {out}: {ancestor} is a file, not a folder; choose another OUT")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise ExportError(f"cannot create {out}: {ancestor} is not writable; choose another OUT")
            break
    real_out, real_store = Path(os.path.realpath(out)), Path(os.path.realpath(store_path))
    if real_out == real_store or real_store in real_out.parents or real_out in real_store.parents:
        raise ExportError(f"{out}: the dataset cannot be written inside the store or around it; "
                          "choose an OUT folder outside the store")


def lerobot_features(attrs: dict[str, Any], videos: bool = False) -> dict[str, dict]:
    """The LeRobotDataset `features` of a store with root attributes `attrs` (see the module
    docstring): {key: {"dtype", "shape", "names"}}, lerobot's own defaults (`timestamp`, ...) left
    out. Images are (S, S, 3) HWC, dtype "video" when `videos`, else "image"."""
    size = int(attrs["image_size"])
    kind = "video" if videos else "image"
    features: dict[str, dict] = {
        f"observation.images.{camera}": {"dtype": kind, "shape": (size, size, 3),
                                         "names": ["height", "width", "channels"]}
        for camera in attrs["cameras"]
    }
    features["observation.state"] = {"dtype": "float32", "shape": (len(STATE_NAMES),), "names": list(STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": (len(ACTION_NAMES),), "names": list(ACTION_NAMES)}
    features["intervention"] = {"dtype": "bool", "shape": (1,), "names": None}
    features["intervention_kind"] = {"dtype": "int64", "shape": (1,), "names": None}
    features["actor"] = {"dtype": "int64", "shape": (1,), "names": None}
    return features


def episode_flags(episode: Episode, attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The episode's per-step (intervention code, actor code), each (T,) int64: the store's
    `intervention` and `actor` arrays where it records them (format 4 with a monitor), else zeros
    (no intervention, the policy acting).

    Raises:
        StoreError: an array is damaged, or holds a code outside `INTERVENTION_KINDS` / `ACTORS`.
    """
    length = episode.meta.episode_length
    dtypes = array_dtypes(attrs)
    codes = []
    for name, names in (("intervention", INTERVENTION_KINDS), ("actor", ACTORS)):
        if name not in dtypes:
            codes.append(np.zeros(length, dtype=np.int64))
            continue
        values = np.asarray(episode.array(name)[:], dtype=np.int64).reshape(-1)
        if values.shape != (length,) or (values.size and (values.min() < 0 or values.max() >= len(names))):
            raise StoreError(f"episode {episode.meta.episode_id}: array '{name}' holds values outside 0..{len(names) - 1} "
                             f"or not one per step; run 'salus verify'")
        codes.append(values)
    return codes[0], codes[1]


def _frames(episode: Episode, attrs: dict[str, Any], task: str, intervention: np.ndarray,
            actor: np.ndarray) -> Iterator[dict[str, Any]]:
    """The episode's frames as `LeRobotDataset.add_frame` dicts (see `lerobot_features`), given its
    per-step intervention and actor codes (`episode_flags`)."""
    images = np.asarray(episode.images)  # (T, C, 3, S, S) uint8
    hwc = np.ascontiguousarray(images.transpose(0, 1, 3, 4, 2))  # (T, C, S, S, 3)
    del images
    states = np.asarray(episode.states, dtype=np.float32)
    actions = np.asarray(episode.actions, dtype=np.float32)
    keys = [f"observation.images.{camera}" for camera in attrs["cameras"]]
    for t in range(len(states)):
        frame: dict[str, Any] = {key: hwc[t, c] for c, key in enumerate(keys)}
        frame["observation.state"] = states[t]
        frame["action"] = actions[t]
        frame["intervention"] = np.array([intervention[t] != 0], dtype=bool)
        frame["intervention_kind"] = np.array([intervention[t]], dtype=np.int64)
        frame["actor"] = np.array([actor[t]], dtype=np.int64)
        frame["task"] = task
        yield frame


def _task_instruction(attrs: dict[str, Any]) -> str:
    """The instruction the policy was given: the store's own where it records one, else the task's."""
    stored = attrs.get("instruction")
    if isinstance(stored, str) and stored.strip():
        return stored
    from salus_engine.sim.env import INSTRUCTION

    return INSTRUCTION


def _control_fps(store: EpisodeStore) -> int:
    hz = float((store.attrs.get("sim_config") or {}).get("control_hz", 30.0))
    fps = round(hz)
    if fps <= 0 or abs(hz - fps) > 1e-6:
        raise ExportError(f"{store.path}: control rate {hz} Hz is not a whole number of frames per second, "
                          "which a LeRobotDataset needs; this store cannot be exported")
    return fps


def _import_lerobot_dataset():
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as err:
        raise ExportError(f"lerobot's dataset support is not installed ({str(err).splitlines()[0]}); "
                          "install 'lerobot[dataset]==0.6.1' into this environment") from None
    return LeRobotDataset


def _episode_record(index: int, episode: Episode, intervention: np.ndarray, actor: np.ndarray) -> dict[str, Any]:
    meta = episode.meta
    return {
        "episode_index": index,
        "salus_episode_id": meta.episode_id,
        "seed": meta.seed,
        "success": meta.success,
        "failure_type": meta.failure_type,
        "outcome": OUTCOME_NAMES.get(meta.failure_type, str(meta.failure_type)),
        "failure_step": meta.failure_step,
        "length": meta.episode_length,
        "intervention_steps": int(np.count_nonzero(intervention)),
        "expert_steps": int(np.count_nonzero(actor)),
        "interventions": meta.interventions,
        "evidence": meta.evidence,
    }


def _write_sidecar(root: Path, store: EpisodeStore, task: str, records: list[dict[str, Any]]) -> None:
    attrs = store.attrs
    sidecar = {
        "source_store": str(Path(os.path.abspath(store.path))),
        "format_version": store.format_version,
        "task": task,
        "cameras": list(attrs["cameras"]),
        "image_size": int(attrs["image_size"]),
        "failure_types": list(attrs.get("failure_types") or []),
        "outcome_names": {str(code): name for code, name in OUTCOME_NAMES.items()},
        "intervention_kinds": list(INTERVENTION_KINDS),
        "actors": list(ACTORS),
        "policy": attrs.get("policy"),
        "monitor": attrs.get("monitor"),
        "episodes": records,
    }
    path = root / SIDECAR
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sidecar, indent=1, default=float) + "\n", encoding="utf-8")


def export_lerobot(
    store_path: str | Path,
    out: str | Path,
    sink: EventSink | None = None,
    stop: threading.Event | None = None,
    *,
    videos: bool = False,
    repo_id: str | None = None,
    image_writer_threads: int = DEFAULT_IMAGE_WRITER_THREADS,
) -> ExportSummary:
    """Writes every episode of the store at `store_path` as a LeRobotDataset in the new folder `out`.

    Args:
        store_path: a SALUS episode store (any readable format version, 1-4).
        out: the dataset folder to create: missing or empty.
        sink: receives `JobStarted(job="export", total=episodes)` once, then one `ProgressUpdate` per
            episode (`done`, `total`, a message, values `episode_id`, `frames`, `failure_type`).
        stop: when set, the export ends after the current episode and keeps what it wrote.
        videos: cameras as AV1 MP4 videos (lossy, small) instead of PNG images (lossless).
        repo_id: the dataset's name; default `repo_id_for(store_path)` (`salus/<store folder name>`).
        image_writer_threads: threads writing PNG frames in the background (0: the calling thread).

    Returns:
        `ExportSummary`: episodes and frames written, the folder, seconds, whether stopped.

    Raises:
        ExportError (a `StoreError`): `out` exists and is not empty, is a file or not writable, lies in
            the store; the store holds no episode; lerobot's dataset support is missing.
        StoreError: the store is missing, not a SALUS store, or damaged (one line, 'run salus verify').
    """
    started = time.monotonic()
    emit = sink or (lambda event: None)
    out = Path(out)
    store = EpisodeStore.open(store_path)
    check_export_paths(store.path, out)
    store.check()
    total = len(store)
    if total == 0:
        raise ExportError(f"{store.path} holds no episode yet; collect some first ('salus collect --out {store.path}')")
    fps = _control_fps(store)
    task = _task_instruction(store.attrs)
    repo_id = repo_id or repo_id_for(store.path)
    features = lerobot_features(store.attrs, videos)
    LeRobotDataset = _import_lerobot_dataset()
    if videos:
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its settings to stderr per episode; errors only

    target = Path(os.path.abspath(out))
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_builds(parent, target.name)
        build, guard = _new_build_folder(parent, target.name)
    except OSError as err:
        raise ExportError(f"cannot create {out}: {err.strerror or type(err).__name__} in {parent}; "
                          "choose a writable OUT") from None
    dataset = None
    progress = _Progress()
    try:
        root = build / "dataset"
        # video_backend only decodes, which the export never does: naming it skips lerobot's probe of torchcodec
        dataset = LeRobotDataset.create(repo_id, fps, features, root=root, robot_type=ROBOT_TYPE, use_videos=videos,
                                        image_writer_threads=max(0, int(image_writer_threads)), video_backend="pyav")
        emit(JobStarted(job="export", total=total))
        with _quiet_progress_bars():
            _write_episodes(dataset, store, task, progress, emit, stop)
            if progress.episodes == 0:
                raise ExportError(f"stopped before the first episode; nothing written to {out}")
            dataset.finalize()
        _remove_empty_folders(root / "images")  # lerobot's staging folder of PNG frames, emptied
        _write_sidecar(root, store, task, progress.records)
        try:
            os.rename(root, target)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise ExportError(f"{out} was created meanwhile by another process and is not empty; "
                                  "choose a new OUT folder") from None
            raise
    except BaseException as err:
        if dataset is not None:
            try:
                dataset.finalize()  # stops lerobot's image writer threads
            except Exception:  # noqa: BLE001 - the first error is the one to report
                log.debug("finalize after a failed export", exc_info=True)
        if isinstance(err, OSError):
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ExportError(f"cannot write {out}: disk full; free space and export again") from None
            raise ExportError(f"cannot write {out}: {err.strerror or type(err).__name__}; "
                              "choose a writable OUT") from None
        raise
    finally:
        os.close(guard)
        shutil.rmtree(build, ignore_errors=True)
    log.info("exported %d of %d episodes (%d frames) of %s to %s", progress.episodes, total, progress.frames,
             store.path, out)
    return ExportSummary(episodes=progress.episodes, frames=progress.frames, out=str(out),
                         seconds=time.monotonic() - started, total_episodes=total, stopped=progress.stopped,
                         videos=videos, repo_id=repo_id)


@dataclass
class _Progress:
    episodes: int = 0
    frames: int = 0
    stopped: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)


def _write_episodes(dataset: Any, store: EpisodeStore, task: str, progress: _Progress, emit: EventSink,
                    stop: threading.Event | None) -> None:
    """Adds every episode of the store to the dataset, in id order, until `stop` is set."""
    total = len(store)
    for index in range(total):
        if stop is not None and stop.is_set():
            progress.stopped = True
            return
        episode = store.episode(index)
        intervention, actor = episode_flags(episode, store.attrs)
        for frame in _frames(episode, store.attrs, task, intervention, actor):
            dataset.add_frame(frame)
        # the cameras' videos one after the other: lerobot's parallel encoding forks this process while
        # its image writer threads run (a deadlock risk); SVT-AV1 uses every core for one video anyway
        dataset.save_episode(parallel_encoding=False)
        meta = episode.meta
        progress.records.append(_episode_record(index, episode, intervention, actor))
        progress.episodes += 1
        progress.frames += meta.episode_length
        outcome = OUTCOME_NAMES.get(meta.failure_type, str(meta.failure_type))
        emit(ProgressUpdate(done=progress.episodes, total=total,
                            message=f"episode {meta.episode_id} ({outcome}): {meta.episode_length} frames",
                            values={"episode_id": float(meta.episode_id), "frames": float(meta.episode_length),
                                    "failure_type": float(meta.failure_type)}))


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hides the `datasets` library's per-episode "Map" progress bars (lerobot's own helper)."""
    from lerobot.utils.utils import SuppressProgressBars

    with SuppressProgressBars():
        yield


def _remove_empty_folders(folder: Path) -> None:
    """Removes `folder` and its subfolders where they are empty (never a file)."""
    if not folder.is_dir():
        return
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        folder.rmdir()


def export_store(
    fmt: str,
    store_path: str | Path,
    out: str | Path,
    sink: EventSink | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> ExportSummary:
    """Exports the store in format `fmt` (one of `EXPORT_FORMATS`); `options` go to the format's
    exporter (`export_lerobot`).

    Raises:
        ExportError: unknown format; and whatever the exporter raises.
    """
    if fmt != "lerobot":
        raise ExportError(f"unknown export format '{fmt}'; choose one of: {', '.join(EXPORT_FORMATS)}")
    return export_lerobot(store_path, out, sink=sink, stop=stop, **options)
