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
    features        (T, F)          float32 the signal families' columns (format 3, when F > 0)
    hidden_features (T, D)          float16 the policy's pooled prefix embedding (format 3, when D > 0)
    monitor_probabilities (T, H_m, 4) float32 the runtime monitor's failure probabilities (format 4,
                                    monitored collections and trial arms: root attribute `monitor`)
    alarm           (T,)            uint8   1 at the steps where the monitor raised an alarm (format 4)
    intervention    (T,)            uint8   intervention active at the step, `INTERVENTION_KINDS` code (format 4)
    actor           (T,)            uint8   who chose the executed action, `ACTORS` code (format 4)
DIR/hidden_projection        (D_policy, D) float32, format 3: the fixed random projection of the
                             embedding, only when the policy's width exceeds 64
DIR/.staging/                transient: the episode being written, renamed into episodes/ once complete
```

Format version 2: every chunk of every array ends in a crc32c checksum (zarr's `crc32c` codec after
Blosc) and every chunk is stored, also one equal to the fill value, so a missing chunk is damage.
Version 1 stores (no checksums, chunks equal to the fill value left out) are still read.
Format version 3 adds the signal families (`salus_engine.signal_families`): root attributes
`feature_families` and `hidden_dim`, episode arrays `features` and `hidden_features`. Version 1 and 2
stores hold neither and are still read.
Format version 4 adds the runtime monitor (`salus_engine.monitor`): a root attribute `monitor` (its
run, threshold, horizon, hysteresis, cooldown, interventions and trial arm; null for a collection
without one), episode arrays `monitor_probabilities`, `alarm`, `intervention` and `actor` when it is
set, an episode attribute `interventions` (one entry per intervention), and the outcome code 4,
"stopped" (the monitor stopped the episode). Versions 1-3 hold none of these and are still read.
"""

from __future__ import annotations

import re

from salus_engine.errors import SalusError

FORMAT_NAME = "salus-episodes"
FORMAT_VERSION = 4
"""Written into new stores (root attribute `format_version`)."""
READABLE_VERSIONS = (1, 2, 3, 4)
"""Store format versions this SALUS reads (and appends to with --resume)."""
CHECKSUM_VERSION = 2
"""First format version whose chunks all carry a crc32c checksum and are all stored."""
FAMILIES_VERSION = 3
"""First format version that records the signal families (`features`, `hidden_features`)."""
MONITOR_VERSION = 4
"""First format version that can record a runtime monitor and its interventions."""
HIDDEN_PROJECTION = "hidden_projection"
"""Root array of a format-3 store whose policy embedding is wider than the stored one."""

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
"""The arrays of every episode group and their dtypes."""

FAMILY_ARRAY_DTYPES: dict[str, str] = {"features": "float32", "hidden_features": "float16"}
"""The arrays a format-3 store adds where its root attributes record columns for them."""

MONITOR_ARRAY_DTYPES: dict[str, str] = {"monitor_probabilities": "float32", "alarm": "uint8",
                                        "intervention": "uint8", "actor": "uint8"}
"""The arrays a format-4 store adds when its root attribute `monitor` is set."""

INTERVENTION_KINDS: tuple[str, ...] = ("none", "slow", "replan", "retreat", "handover", "stop")
"""Codes of the `intervention` array: index = code (0 = none)."""

ACTORS: tuple[str, ...] = ("policy", "expert")
"""Codes of the `actor` array: 0 the monitored policy, 1 the scripted expert (a stand-in for a
person taking over by teleoperation)."""


STATE_NAMES: tuple[str, ...] = tuple(f"joint_{i}" for i in range(1, 8)) + ("gripper_opening",)
"""Columns of the `states` array: 7 arm joint angles (rad), then the gripper opening (m)."""


def feature_names(root_attrs: dict) -> list[str]:
    """The columns of the `features` array, in order: the families' columns concatenated (empty
    before format 3 or when no family with columns was collected)."""
    families = root_attrs.get("feature_families") or {}
    return [name for columns in families.values() for name in columns]


def array_dtypes(root_attrs: dict) -> dict[str, str]:
    """Every array of an episode group of a store with these root attributes, and its dtype."""
    dtypes = dict(ARRAY_DTYPES)
    if feature_names(root_attrs):
        dtypes["features"] = FAMILY_ARRAY_DTYPES["features"]
    if int(root_attrs.get("hidden_dim") or 0) > 0:
        dtypes["hidden_features"] = FAMILY_ARRAY_DTYPES["hidden_features"]
    if root_attrs.get("monitor"):
        dtypes.update(MONITOR_ARRAY_DTYPES)
    return dtypes

ROOT_ATTRS = (
    "format", "format_version", "horizons", "failure_types", "signal_names", "cameras", "image_size",
    "ensemble_size", "action_dim", "state_dim", "base_seed", "policy", "sim_config", "created",
    "feature_families", "hidden_dim", "monitor",
)
"""Attributes of the root group, written once when the store is created."""

EPISODE_ATTRS = (
    "episode_id", "seed", "success", "failure_type", "failure_step", "episode_length", "timestamp", "evidence",
    "interventions",
)
"""Attributes of an episode group."""


def episode_name(episode_id: int) -> str:
    """Group name of an episode: zero-padded to six digits, e.g. 7 -> '000007'."""
    return f"{episode_id:06d}"


class StoreError(SalusError):
    """A store is missing, damaged or not a SALUS store; the message names the path and what to do."""
