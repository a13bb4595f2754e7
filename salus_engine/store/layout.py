"""Names, dtypes and attributes of the Zarr v3 episode store (documented in docs/data-format.md).

```
DIR/                         zarr group, attrs: see ROOT_ATTRS
DIR/episodes/                zarr group
DIR/episodes/000000/         one group per complete episode, attrs: see EPISODE_ATTRS
    images          (T, C, 3, H, W) uint8   C = number of recorded cameras
    states          (T, 8)          float32 7 joint positions (rad) + gripper opening
    actions         (T, 7)          float32 executed action (mean of members), env units in [-1, 1]
    member_actions  (T, M, 7)       float32 each ensemble member's action
    signals         (T, 6)          float32 the six signals (salus_engine.signals)
    horizon_labels  (T, H, 4)       uint8   1 when failure type k happens within horizons[h] steps of t
DIR/.staging/                transient: the episode being written, renamed into episodes/ once complete
```

Format version 2: every chunk of every array ends in a crc32c checksum (zarr's `crc32c` codec after
Blosc) and every chunk is stored, also one equal to the fill value, so a missing chunk is damage.
Version 1 stores (no checksums, chunks equal to the fill value left out) are still read.
"""

from __future__ import annotations

import re

from salus_engine.errors import SalusError

FORMAT_NAME = "salus-episodes"
FORMAT_VERSION = 2
"""Written into new stores (root attribute `format_version`)."""
READABLE_VERSIONS = (1, 2)
"""Store format versions this SALUS reads (and appends to with --resume)."""
CHECKSUM_VERSION = 2
"""First format version whose chunks all carry a crc32c checksum and are all stored."""

EPISODES_GROUP = "episodes"
STAGING_DIR = ".staging"
CREATING_PREFIX = ".salus-creating-"
"""A new store is built in the sibling folder `.salus-creating-<name>-<random>` and renamed into place."""
EPISODE_NAME = re.compile(r"^\d{6}$")

ARRAY_DTYPES: dict[str, str] = {
    "images": "uint8",
    "states": "float32",
    "actions": "float32",
    "member_actions": "float32",
    "signals": "float32",
    "horizon_labels": "uint8",
}
"""Every array of an episode group and its dtype."""

ROOT_ATTRS = (
    "format", "format_version", "horizons", "failure_types", "signal_names", "cameras", "image_size",
    "ensemble_size", "action_dim", "state_dim", "base_seed", "policy", "sim_config", "created",
)
"""Attributes of the root group, written once when the store is created."""

EPISODE_ATTRS = (
    "episode_id", "seed", "success", "failure_type", "failure_step", "episode_length", "timestamp", "evidence",
)
"""Attributes of an episode group."""


def episode_name(episode_id: int) -> str:
    """Group name of an episode: zero-padded to six digits, e.g. 7 -> '000007'."""
    return f"{episode_id:06d}"


class StoreError(SalusError):
    """A store is missing, damaged or not a SALUS store; the message names the path and what to do."""
