"""Dataclass configurations for simulation, policy, collection and storage.

Values come, in increasing precedence, from the defaults below, a TOML file (`[sim]`, `[policy]`,
`[collect]` tables), environment variables `SALUS_<SECTION>_<FIELD>` and CLI flags.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "policies" / "default"
"""The embedded default ensemble, trained by `salus policy train` and committed with the project."""


class ConfigError(ValueError):
    """A configuration value or file is wrong; the message says which and what to do."""


@dataclass
class SimConfig:
    """The pick-and-place task in MuJoCo (see `salus_engine.sim`).

    Thresholds follow the prototype measurements in DESIGN.md ("Failure evidence that worked").
    """

    image_size: int = 256
    """Height = width of every rendered camera, pixels."""
    cameras: tuple[str, ...] = ("front",)
    """Cameras rendered into observations and recorded (subset of front, side, wrist)."""
    max_steps: int = 200
    """Episode length limit, control steps; reaching it without success is a timeout."""
    control_hz: float = 30.0
    """Control (policy) rate, Hz."""
    physics_hz: float = 500.0
    """MuJoCo integration rate, Hz, rounded so that a whole number of substeps fills one control step:
    n = round(physics_hz / control_hz) substeps of 1 / (n * control_hz) s (default 17 x 1/510 s)."""
    collision_force_n: float = 30.0
    """Collision threshold, N: free motion peaks near 0 N, real hits measured 55-170 N, so 30 N
    separates them with margin on both sides."""
    lift_height_m: float = 0.02
    """Cube counts as lifted when grasped and this far above its start height, m (2 cm clears
    contact noise on the table but is reached within a few steps of a real lift)."""
    drop_distance_m: float = 0.05
    """A lifted cube that is no longer grasped and this far from the gripper is dropped, m."""
    miss_close_steps: int = 12
    """Gripper commanded closed for at least this many steps (0.4 s at 30 Hz, longer than the
    fingers need to close) while the arm rises and the cube never lifted: a miss."""
    miss_rise_m: float = 0.05
    """How far the gripper must rise after closing, m, before a never-lifted cube is a miss."""
    success_speed_mps: float = 0.05
    """Cube at rest for success: speed below this, m/s."""
    randomization_scale: float = 1.0
    """Scales every randomisation range (cube, bin, obstacle pose; cube mass and friction)."""


@dataclass
class PolicyConfig:
    """The monitored policy: an ensemble of lerobot policies (see `salus_engine.policy`)."""

    path: str = str(DEFAULT_POLICY_DIR)
    """A folder of member folders (the embedded default), one saved policy folder, or a hub id
    such as `lerobot/smolvla_base` (needs the weights on this machine)."""
    ensemble_size: int = 3
    """Number of ensemble members M."""
    device: str = "cpu"
    """torch device for every member, e.g. `cpu`, `cuda`, `cuda:1`."""
    requery_every: int = 6
    """Members predict a fresh action chunk every k steps (0.2 s at 30 Hz); per-step member actions
    are read from the current chunks. 6 of the embedded default's 8-action chunks: measured on this
    2-core CPU with 4 denoising steps, k = 6 keeps the full collection within 2x the bare simulator
    (3 members cost 54 ms a query); k = 8 (with 5 steps) left misses as the only failure type in 20
    episodes, k = 6 gave collisions and misses."""
    denoising_steps: int = 0
    """Flow-matching integration steps per action chunk (lerobot's `SmolVLAConfig.num_steps`, an
    inference-time setting); 0 keeps each checkpoint's own value (SmolVLA's default is 10, the
    embedded ensemble's 4). A query costs about 6 ms plus 3 ms per step and member on this CPU."""
    seed: int = 0
    """Seed of the flow-matching noise shared by all members."""
    noise_scale: float = 1.0
    """Scale of the shared flow-matching noise (sampling temperature): 1.0 samples the learned
    action distribution, 0.0 integrates from the distribution's centre (deterministic chunks)."""
    camera_map: str = ""
    """Explicit policy-camera <- env-camera pairs, e.g. `camera1=front,camera2=wrist`, for checkpoints
    whose camera names differ from the env's. Empty: same names match, the rest pair up in order
    (logged)."""
    action_map: str = ""
    """Explicit env action dim for each policy action dim, comma-separated, `-` to drop one, e.g.
    `0,1,2,3,4,6` for a 6-dim policy. Empty: identity when the sizes match, otherwise the documented
    default of `salus_engine.policy.ensemble` (logged); env dims no policy dim feeds are held at 0."""


@dataclass
class StoreConfig:
    """Episode storage (see `salus_engine.store`)."""

    horizons: tuple[int, ...] = (6, 10, 15, 20)
    """Prediction horizons, steps: `horizon_labels[t, h, k]` = 1 when failure type k happens
    within `horizons[h]` steps of step t."""
    compression_level: int = 3
    """zstd level for image and array chunks."""


@dataclass
class CollectConfig:
    """A collection job."""

    episodes: int = 50
    out: str = "data/collection"
    seed: int = 0
    """Seed of the first episode; episode i uses seed + i."""
    resume: bool = False
    gpu_budget_gb: float = 11.0
    sim: SimConfig = field(default_factory=SimConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


def _coerce(value: Any, current: Any, name: str) -> Any:
    """Converts a TOML or environment value to the type of the field's current value."""
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(current, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            kind = type(current[0]) if current else str
            return tuple(kind(v.strip() if isinstance(v, str) else v) for v in items)
        return type(current)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config value {name}={value!r} is not a {type(current).__name__}; fix it") from None


def apply_overrides(obj: Any, values: dict[str, Any], section: str) -> None:
    """Sets fields of dataclass `obj` from `values`.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key [{section}] {key}; known keys: {', '.join(sorted(names))}")
        setattr(obj, key, _coerce(value, getattr(obj, key), f"{section}.{key}"))


def load_collect_config(toml_path: str | Path | None = None, environ: dict[str, str] | None = None) -> CollectConfig:
    """Builds a `CollectConfig` from defaults, an optional TOML file and `SALUS_*` variables.

    Raises:
        ConfigError: the file is missing or not valid TOML, or a key or value is wrong.
    """
    config = CollectConfig()
    sections = {"collect": config, "sim": config.sim, "policy": config.policy, "store": config.store}
    if toml_path is not None:
        path = Path(toml_path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found; give an existing TOML file") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config file {path} is not valid TOML ({err}); fix it") from None
        for section, values in data.items():
            if section not in sections or not isinstance(values, dict):
                raise ConfigError(f"unknown config section [{section}] in {path}; use {', '.join(sections)}")
            apply_overrides(sections[section], values, section)
    env = os.environ if environ is None else environ
    for section, obj in sections.items():
        prefix = f"SALUS_{section.upper()}_"
        values = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)}
        if values:
            apply_overrides(obj, values, section)
    return config
