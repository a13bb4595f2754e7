"""Structural checks of a collection store, the one implementation shared by the reader
(`EpisodeStore.open`, `EpisodeStore.meta`, `EpisodeStore.check`), `--resume`
(`EpisodeWriter.open_for_resume`), the predictor's dataset loading and `salus verify`.

Structural means what can be checked from the metadata files alone, without reading chunks: the
root attributes, the episode folders (no gaps in the ids, no folder without `zarr.json`), every
episode's attributes (types and values), and every array's shape and dtype against the episode
length and the store's attributes (plus the crc32c checksum codec in format version 2).
`chunk_checksum_problems` adds the chunks' own checksums, read from the raw chunk files without
decoding them (what `--resume` checks before it appends). Decoding the chunks is `salus verify`'s and
the readers' part; data-quality checks (frozen actions, signals that never vary, labels against the
physics evidence) are `salus verify`'s.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from salus_engine import FAILURE_TYPES, STOPPED
from salus_engine.signals import NUM_SIGNALS
from salus_engine.store.layout import (
    CHECKSUM_VERSION,
    EPISODE_NAME,
    EPISODES_GROUP,
    FAMILIES_VERSION,
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    array_dtypes,
    episode_name,
    feature_names,
)


@dataclass(frozen=True)
class EpisodeMeta:
    """An episode's metadata (the group's attributes), checked by `episode_problems`."""

    episode_id: int
    seed: int
    success: bool
    failure_type: int
    """-1 success, 0 collision, 1 drop, 2 miss, 3 timeout, 4 stopped by the monitor."""
    failure_step: int
    episode_length: int
    timestamp: str
    """ISO 8601, UTC."""
    evidence: dict[str, Any]
    interventions: list[dict[str, Any]] = field(default_factory=list)
    """Format 4: the monitor's interventions in the episode, in order (`salus_engine.monitor`), each
    with `step`, `kind`, `steps` (steps it was active) and the alarm behind it; empty before format 4."""


OPTIONAL_EPISODE_ATTRS = ("interventions",)
"""Episode attributes that older stores lack."""


@dataclass
class StoreScan:
    """What `scan_store` found. A problem names its episode (or None for the whole store)."""

    ids: list[int] = field(default_factory=list)
    """Ids of the episode folders that hold a `zarr.json`, ascending."""
    metas: dict[int, EpisodeMeta] = field(default_factory=dict)
    """Metadata of the episodes without a structural problem."""
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def first_problem(self) -> str | None:
        """The first problem as 'episode N: what' (or 'what'), with a count of the others."""
        if not self.problems:
            return None
        episode_id, text = self.problems[0]
        line = text if episode_id is None else f"episode {episode_id}: {text}"
        if len(self.problems) > 1:
            line += f" (and {len(self.problems) - 1} more problem(s))"
        return line


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def format_version(attrs: dict[str, Any]) -> int:
    """The store's format version (root attribute), assumed readable (checked by `root_problems`)."""
    return int(attrs.get("format_version", FORMAT_VERSION))


def root_problems(attrs: dict[str, Any]) -> list[str]:
    """Problems of a store's root attributes: format, version, and the types the readers rely on."""
    if attrs.get("format") != FORMAT_NAME:
        return [f"a Zarr store, but not a SALUS episode store (attribute format={attrs.get('format')!r})"]
    version = attrs.get("format_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        return [f"store format version {_shown(version)} is not supported (this SALUS reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade SALUS or re-collect"]
    problems = []

    def int_list(name: str, minimum: int) -> None:
        value = attrs.get(name)
        if not isinstance(value, list) or not value or not all(_is_int(v) and v >= minimum for v in value):
            problems.append(f"root attribute {name} is {_shown(value)}, expected a list of integers >= {minimum}")

    def str_list(name: str) -> None:
        value = attrs.get(name)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            problems.append(f"root attribute {name} is {_shown(value)}, expected a list of names")

    def integer(name: str, minimum: int | None) -> None:
        value = attrs.get(name)
        if not _is_int(value) or (minimum is not None and value < minimum):
            expected = "an integer" if minimum is None else f"an integer >= {minimum}"
            problems.append(f"root attribute {name} is {_shown(value)}, expected {expected}")

    int_list("horizons", 0)
    str_list("failure_types")
    str_list("signal_names")
    str_list("cameras")
    integer("image_size", 1)
    integer("ensemble_size", 1)
    integer("base_seed", None)
    if not isinstance(attrs.get("sim_config", {}), dict):
        problems.append(f"root attribute sim_config is {_shown(attrs.get('sim_config'))}, expected a table")
    if version >= FAMILIES_VERSION:
        families = attrs.get("feature_families")
        if not isinstance(families, dict) or not all(
                isinstance(columns, list) and all(isinstance(c, str) for c in columns) for columns in families.values()):
            problems.append(f"root attribute feature_families is {_shown(families)}, expected a table of column-name lists")
        integer("hidden_dim", 0)
    return [f"damaged store, {text}; restore its zarr.json or re-collect" for text in problems]


def meta_problems(attrs: dict[str, Any], episode_id: int) -> list[str]:
    """Problems of one episode's attributes (docs/data-format.md): types and possible values."""
    problems = []
    missing = [name for name in EpisodeMeta.__dataclass_fields__ if name not in attrs and name not in OPTIONAL_EPISODE_ATTRS]
    if missing:
        return [f"attribute(s) {', '.join(missing)} missing"]

    def bad(name: str, expected: str) -> None:
        problems.append(f"attribute {name} is {_shown(attrs[name])}, expected {expected}")

    for name in ("episode_id", "seed", "failure_type", "failure_step", "episode_length"):
        if not _is_int(attrs[name]):
            bad(name, "an integer")
    if not isinstance(attrs["success"], bool):
        bad("success", "true or false")
    if not isinstance(attrs["timestamp"], str):
        bad("timestamp", "an ISO 8601 string")
    if not isinstance(attrs["evidence"], dict):
        bad("evidence", "a table")
    if problems:
        return problems
    if attrs["episode_id"] != episode_id:
        bad("episode_id", f"{episode_id} (the folder name)")
    if not -1 <= attrs["failure_type"] <= STOPPED:
        bad("failure_type", f"-1 (success) to {len(FAILURE_TYPES) - 1}, or {STOPPED} (stopped by the monitor)")
    if attrs["episode_length"] < 1:
        bad("episode_length", "at least 1 step")
    elif not 0 <= attrs["failure_step"] < attrs["episode_length"]:
        bad("failure_step", f"a step in 0..{attrs['episode_length'] - 1}")
    if attrs["success"] != (attrs["failure_type"] == -1):
        problems.append(f"success={attrs['success']} contradicts failure_type={attrs['failure_type']}")
    return problems


def _read_json(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def expected_shapes(root_attrs: dict[str, Any], length: int) -> dict[str, tuple[int, ...]]:
    """Shape of every array of an episode of `length` steps in a store with these root attributes."""
    size = int(root_attrs["image_size"])
    return {
        "images": (length, len(root_attrs["cameras"]), 3, size, size),
        "states": (length, 8),
        "actions": (length, 7),
        "member_actions": (length, int(root_attrs["ensemble_size"]), 7),
        "signals": (length, NUM_SIGNALS),
        "horizon_labels": (length, len(root_attrs["horizons"]), len(FAILURE_TYPES)),
        "features": (length, len(feature_names(root_attrs))),
        "hidden_features": (length, int(root_attrs.get("hidden_dim") or 0)),
        "monitor_probabilities": (length, len((root_attrs.get("monitor") or {}).get("horizons", ())), len(FAILURE_TYPES)),
        "alarm": (length,),
        "intervention": (length,),
        "actor": (length,),
    }


def episode_attributes(path: Path, episode_id: int) -> tuple[EpisodeMeta | None, list[str]]:
    """One episode's metadata from its group's attributes alone (one small file; no array's metadata).

    Returns:
        The metadata and no problem, or None and the problems of its `zarr.json` or attributes.
    """
    try:
        group = _read_json(path / EPISODES_GROUP / episode_name(episode_id) / "zarr.json")
    except FileNotFoundError:
        return None, ["episode folder without zarr.json (incomplete copy or damage)"]
    except (OSError, ValueError) as err:
        return None, [f"unreadable zarr.json ({type(err).__name__})"]
    attrs = group.get("attributes")
    if group.get("node_type") != "group" or not isinstance(attrs, dict):
        return None, ["zarr.json is not a Zarr v3 group with attributes"]
    problems = meta_problems(attrs, episode_id)
    if problems:
        return None, problems
    return EpisodeMeta(**{name: attrs[name] for name in EpisodeMeta.__dataclass_fields__ if name in attrs}), []


def episode_problems(path: Path, episode_id: int, root_attrs: dict[str, Any]) -> tuple[EpisodeMeta | None, list[str]]:
    """Structural problems of one episode of the store at `path` (root attributes already checked).

    Returns:
        The episode's metadata (None when its attributes are unusable) and its problems.
    """
    folder = path / EPISODES_GROUP / episode_name(episode_id)
    meta, problems = episode_attributes(path, episode_id)
    if meta is None:
        return None, problems
    checksums = format_version(root_attrs) >= CHECKSUM_VERSION
    dtypes = array_dtypes(root_attrs)
    arrays: dict[str, dict[str, Any]] = {}
    for name in dtypes:
        try:
            array = _read_json(folder / name / "zarr.json")
        except FileNotFoundError:
            problems.append(f"array '{name}' is missing")
            continue
        except (OSError, ValueError) as err:
            problems.append(f"array '{name}' has unreadable metadata ({type(err).__name__})")
            continue
        shape = array.get("shape")
        if array.get("node_type") != "array" or not isinstance(shape, list) or not all(_is_int(n) for n in shape):
            problems.append(f"array '{name}' has damaged metadata (not a Zarr v3 array with a shape)")
            continue
        arrays[name] = array
    steps = {array["shape"][0] for array in arrays.values() if array["shape"]}
    if len(arrays) == len(dtypes) and len(steps) == 1 and meta.episode_length not in steps:
        # one wrong number, not six wrong arrays
        problems.append(f"attribute episode_length is {meta.episode_length}, but the arrays hold {steps.pop()} steps")
        return None, problems
    for name, shape in expected_shapes(root_attrs, meta.episode_length).items():
        if name not in arrays or name not in dtypes:
            continue
        array = arrays[name]
        got = tuple(array["shape"])
        dtype = array.get("data_type")
        if got != shape or dtype != dtypes[name]:
            problems.append(f"array '{name}' is {got} {_shown(dtype)}, expected {shape} {dtypes[name]} "
                            f"(episode_length {meta.episode_length})")
            continue
        codecs = array.get("codecs")
        if checksums and not (isinstance(codecs, list) and codecs and isinstance(codecs[-1], dict)
                              and codecs[-1].get("name") == "crc32c"):
            problems.append(f"array '{name}' has no crc32c checksum, which format version {CHECKSUM_VERSION} requires")
    return (meta if not problems else None), problems


def scan_store(path: Path, root_attrs: dict[str, Any]) -> StoreScan:
    """Every structural problem of the store at `path` whose root attributes passed `root_problems`:
    the episode folders (gaps in the ids, folders without `zarr.json`) and each episode's metadata."""
    scan = StoreScan()
    folder = path / EPISODES_GROUP
    named, stray = [], []
    for entry in sorted(folder.iterdir()):
        if EPISODE_NAME.match(entry.name) and entry.is_dir():
            named.append(int(entry.name))
        elif entry.name != "zarr.json":
            stray.append(entry.name)
    if stray:
        scan.warnings.append(f"'{EPISODES_GROUP}' holds entries that are not episodes: {stray[:5]}")
    present = set(named)
    missing = [i for i in range(max(named) + 1) if i not in present] if named else []
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
        scan.problems.append((None, f"episode {missing[0]} is missing (the ids have {len(missing)} gap(s): {shown})"))
    for episode_id in named:
        meta, problems = episode_problems(path, episode_id, root_attrs)
        if (folder / episode_name(episode_id) / "zarr.json").is_file():
            scan.ids.append(episode_id)
        if meta is not None:
            scan.metas[episode_id] = meta
        scan.problems.extend((episode_id, text) for text in problems)
    return scan


def chunk_checksum_problems(path: Path, episode_id: int, root_attrs: dict[str, Any]) -> list[str]:
    """Damaged chunks of one structurally sound episode of a format-2 store, found from the raw chunk
    files alone: every chunk of every array must exist and end in the crc32c of the bytes before it
    (zarr v3's `crc32c` codec, the last codec of every array in format version 2), so a missing,
    truncated or altered chunk is found without decompressing anything.

    Args:
        path: the store's root folder.
        episode_id: an episode that passed `episode_problems`.
        root_attrs: the store's root attributes (which arrays an episode holds).

    Returns:
        One problem per damaged chunk, naming the array and the chunk key; empty when all are intact.
    """
    folder = path / EPISODES_GROUP / episode_name(episode_id)
    problems: list[str] = []
    for name in array_dtypes(root_attrs):
        array = _read_json(folder / name / "zarr.json")
        shape = array["shape"]
        try:
            chunk_shape = array["chunk_grid"]["configuration"]["chunk_shape"]
            encoding = array.get("chunk_key_encoding", {})
            separator = encoding.get("configuration", {}).get("separator", "/")
            prefix = "c" if encoding.get("name", "default") == "default" else None
        except (KeyError, TypeError, AttributeError):
            problems.append(f"array '{name}' has damaged metadata (no chunk grid)")
            continue
        counts = [-(-int(n) // int(c)) for n, c in zip(shape, chunk_shape)]
        for coords in itertools.product(*(range(n) for n in counts)):
            parts = [str(i) for i in coords] or ["0"]
            key = separator.join(([prefix] if prefix else []) + parts)
            try:
                raw = (folder / name / key).read_bytes()
            except FileNotFoundError:
                problems.append(f"array '{name}' chunk {key} is missing")
                continue
            except OSError as err:
                problems.append(f"array '{name}' chunk {key} is unreadable ({type(err).__name__})")
                continue
            body = raw[:-4]
            if len(raw) < 4 or np.uint32(google_crc32c.value(body)).tobytes() != raw[-4:]:
                problems.append(f"array '{name}' chunk {key} is damaged (checksum mismatch)")
    return problems
