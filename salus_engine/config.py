"""Every setting of the project, validated where it is defined: simulation, policy, storage and
collection (`CollectConfig`), behaviour cloning of the embedded ensemble (`TrainSettings`), and the
failure predictor's training and evaluation (`TrainConfig`, `EvaluateConfig`).

Values come, in increasing precedence, from the defaults below, a TOML file (`[collect]`, `[sim]`,
`[policy]`, `[store]` tables), environment variables `SALUS_<SECTION>_<FIELD>` (e.g.
`SALUS_SIM_IMAGE_SIZE=64`) and command-line flags; pydantic-settings merges the sources and
pydantic validates the result (types, ranges, unknown keys) before anything runs.
"""

from __future__ import annotations

import contextvars
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError, TomlConfigSettingsSource

from salus_engine.errors import SalusError
from salus_engine.signal_families import DEFAULT_FAMILIES, parse_families

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_POLICY_DIR = PACKAGE_DIR / "policy" / "default_ensemble"
"""The embedded default ensemble, trained by `salus policy train` and installed with the package
(`checkpoints/policies/default` in a repository checkout points here)."""

POLICY_IMAGE_SIZE = 128
"""Image side, pixels, that the embedded tiny SmolVLA members take (`resize_imgs_with_padding`)."""
CAMERA_NAMES: tuple[str, ...] = ("front", "side", "wrist")
"""Cameras the scene defines (`salus_engine.sim.scene.CAMERA_NAMES`)."""



def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    return value


def _distinct(value: tuple) -> tuple:
    if len(set(value)) != len(value):
        raise ValueError("names a value twice")
    return value


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _known_camera(name: str) -> str:
    if name not in CAMERA_NAMES:
        raise ValueError(f"unknown camera {name!r}; choose from {', '.join(CAMERA_NAMES)}")
    return name


Camera = Annotated[str, AfterValidator(_known_camera)]
"""A camera of the scene: front, side or wrist."""
Count = Annotated[int, BeforeValidator(_refuse_bool)]
"""An integer setting: 64 or "64" (environment); never 64.9 or true."""
Real = Annotated[float, BeforeValidator(_refuse_bool)]
"""A real-valued setting: 0.5, 1 or "0.5"; never true."""
Text = str
T = TypeVar("T")
SECTION = ConfigDict(extra="forbid", validate_assignment=True)
"""Every settings section refuses unknown keys and validates on assignment."""


class ConfigError(SalusError):
    """A configuration value or file is wrong; the message says which and what to do."""


@dataclass(config=SECTION)
class SimConfig:
    """The pick-and-place task in MuJoCo (see `salus_engine.sim`).

    Thresholds follow the contact forces and heights measured in this scene (free motion peaks near
    0 N, real hits 55-170 N); see `salus_engine.sim.outcome` for the definitions.
    """

    image_size: Count = Field(256, ge=16, le=4096)
    """Height = width of every rendered camera, pixels."""
    cameras: Annotated[tuple[Camera, ...], NoDecode, BeforeValidator(_split_commas), AfterValidator(_distinct)] = (
        "front",)
    """Cameras rendered into observations and recorded (subset of front, side, wrist, each at most
    once). None renders nothing (bare physics); a collection needs at least one (`CollectConfig`):
    the monitored policy is a vision-language-action policy."""
    max_steps: Count = Field(200, ge=1)
    """Episode length limit, control steps; reaching it without success is a timeout."""
    control_hz: Real = Field(30.0, gt=0)
    """Control (policy) rate, Hz."""
    physics_hz: Real = Field(500.0, gt=0)
    """MuJoCo integration rate, Hz, rounded so that a whole number of substeps fills one control step:
    n = round(physics_hz / control_hz) substeps of 1 / (n * control_hz) s (default 17 x 1/510 s)."""
    collision_force_n: Real = Field(30.0, gt=0)
    """Collision threshold, N: free motion peaks near 0 N, real hits measured 55-170 N, so 30 N
    separates them with margin on both sides."""
    lift_height_m: Real = Field(0.02, gt=0)
    """Cube counts as lifted when grasped and this far above its start height, m (2 cm clears
    contact noise on the table but is reached within a few steps of a real lift)."""
    drop_distance_m: Real = Field(0.05, gt=0)
    """A lifted cube that is no longer grasped and this far from the gripper is dropped, m."""
    miss_close_steps: Count = Field(12, ge=1)
    """Gripper commanded closed for at least this many steps (0.4 s at 30 Hz, longer than the
    fingers need to close) while the arm rises and the cube never lifted: a miss."""
    miss_rise_m: Real = Field(0.05, gt=0)
    """How far the gripper must rise after closing, m, before a never-lifted cube is a miss."""
    success_speed_mps: Real = Field(0.05, gt=0)
    """Cube at rest for success: speed below this, m/s."""
    randomization_scale: Real = Field(1.0, ge=0)
    """Scales every randomisation range (cube, bin, obstacle pose; cube mass and friction)."""


@dataclass(config=SECTION)
class PolicyConfig:
    """The monitored policy: an ensemble of lerobot policies (see `salus_engine.policy`)."""

    path: Text = str(DEFAULT_POLICY_DIR)
    """A folder of member folders (the embedded default), one saved policy folder, or a hub id
    such as `lerobot/smolvla_base` (needs the weights on this machine)."""
    ensemble_size: Count = Field(3, ge=1)
    """Number of ensemble members M."""
    device: Text = "cpu"
    """torch device for every member, e.g. `cpu`, `cuda`, `cuda:1`."""
    requery_every: Count = Field(6, ge=1)
    """Members predict a fresh action chunk every k steps (0.2 s at 30 Hz); per-step member actions
    are read from the current chunks. 6 of the embedded default's 8-action chunks: measured on this
    2-core CPU with 4 denoising steps, k = 6 keeps the full collection within 2x the bare simulator
    (3 members cost 54 ms a query, run one after another); k = 8 (with 5 steps) left misses as the only failure type in 20
    episodes, k = 6 gave collisions and misses."""
    denoising_steps: Count = Field(0, ge=0)
    """Flow-matching integration steps per action chunk (lerobot's `SmolVLAConfig.num_steps`, an
    inference-time setting); 0 keeps each checkpoint's own value (SmolVLA's default is 10, the
    embedded ensemble's 4). A query costs about 6 ms plus 3 ms per step and member on this CPU."""
    seed: Count = Field(0, ge=0)
    """Seed of the flow-matching noise shared by all members."""
    noise_scale: Real = Field(1.0, ge=0)
    """Scale of the shared flow-matching noise (sampling temperature): 1.0 samples the learned
    action distribution, 0.0 integrates from the distribution's centre (deterministic chunks)."""
    camera_map: Text = ""
    """Explicit policy-camera <- env-camera pairs, e.g. `camera1=front,camera2=wrist`, for checkpoints
    whose camera names differ from the env's. Empty: same names match, the rest pair up in order
    (logged)."""
    action_map: Text = ""
    """Explicit env action dim for each policy action dim, comma-separated, `-` to drop one, e.g.
    `0,1,2,3,4,6` for a 6-dim policy. Empty: identity when the sizes match, otherwise the documented
    default of `salus_engine.policy.ensemble` (logged); env dims no policy dim feeds are held at 0."""
    entropy_samples: Count = Field(0, ge=0)
    """Extra action chunks sampled per member per query, each with fresh noise, for the
    `chunk_entropy` signal family (FIPER's action-chunk entropy). Each costs one more query; 0 (the
    default) samples none. Needs 2 or more with `chunk_entropy` in the collection's `signals`."""
    batched_members: bool = True
    """Evaluate the M members as one batched computation per query: distinct SmolVLA members of one
    architecture stacked along a member dimension (`torch.func.vmap`), one checkpoint's M noises along
    the batch dimension. False runs them one after another (the same actions up to float rounding,
    slower; for comparisons). Members that cannot be stacked run one after another regardless (logged)."""


@dataclass(config=SECTION)
class StoreConfig:
    """Episode storage (see `salus_engine.store`)."""

    horizons: Annotated[tuple[Annotated[Count, Field(ge=1)], ...], NoDecode, BeforeValidator(_split_commas)] = Field(
        (6, 10, 15, 20), min_length=1)
    """Prediction horizons, steps: `horizon_labels[t, h, k]` = 1 when failure type k happens
    within `horizons[h]` steps of step t."""
    compression_level: Count = Field(3, ge=1, le=22)
    """zstd level for image and array chunks."""



@dataclass(config=SECTION)
class TrainSettings:
    """Behaviour-cloning settings of one ensemble (defaults: the committed embedded default)."""

    members: Count = Field(3, ge=1)
    """Ensemble members M, each trained with seed `seed + i`."""
    demos: Count = Field(120, ge=1)
    """Scripted-expert demonstration episodes (shared by all members)."""
    steps: Count = Field(4000, ge=1)
    """Optimiser steps of member 0 (and of every member when `member_steps` is 0)."""
    member_steps: Count = Field(1500, ge=0)
    """Members 1..M-1 start from member 0's trained weights and are fine-tuned for this many steps,
    each with its own seed on its own bootstrap resample of the demonstration episodes (bagging,
    Breiman 1996; members of a deep ensemble that share a pretrained start, as in fine-tuned
    ensembles). 0 trains every member from scratch for `steps`. Why: from-scratch members of the
    same recipe differed far more than their losses did (measured over 16-20 episodes each: 62 %,
    0 % and 12 % success, final losses 0.307-0.309), and the mean action of such members failed
    (5 % success): the ensemble then monitored a policy that no member is."""
    batch_size: Count = Field(32, ge=1)
    """Samples (steps of demonstrations with their action chunks) per optimiser step."""
    lr: Real = Field(1e-3, gt=0)
    """Peak AdamW learning rate (linear warm-up over `warmup_steps`, cosine decay to 10 %)."""
    warmup_steps: Count = Field(100, ge=0)
    weight_decay: Real = Field(1e-4, ge=0)
    chunk_size: Count = Field(8, ge=1)
    """Actions per predicted chunk (also lerobot's `n_action_steps`)."""
    image_size: Count = Field(POLICY_IMAGE_SIZE, ge=16)
    """Policy image input size, pixels (`resize_imgs_with_padding`)."""
    noise_std: Real = Field(0.15, ge=0)
    """DART noise std added to the executed expert position actions while recording (labels stay
    clean). 0.15 keeps the expert at 100 % success; at 0.2 and above it times out (measured)."""
    shift_px: Count = Field(0, ge=0)
    """Random image shift augmentation, pixels (pad and random crop); 0 disables it. Off by
    default: the cameras are fixed, so absolute image position encodes world position, and a
    4-pixel shift at 128 px is several centimetres on the table."""
    aux_weight: Real = Field(1.0, ge=0)
    """Weight of the auxiliary scene-position loss (see `SceneProbe`); 0 disables it."""
    member_lr: Real = Field(3e-4, gt=0)
    """Peak learning rate of that fine-tuning (same warm-up and cosine decay)."""
    denoising_steps: Count = Field(4, ge=1)
    """Flow-matching integration steps written into each saved member's config (`num_steps`, used
    only at inference; SmolVLA's default is 10). A query costs about 6 ms plus 3 ms per step and
    member on this CPU; with 4 steps the default ensemble succeeded in 40 % (re-query every 6) and
    45 % (every 5) of 20 episodes."""
    seed: Count = Field(0, ge=0)
    """Seed of member 0 (member i uses seed + i: initialisation or bootstrap resample, batch order,
    flow-matching noise); demonstrations use env seeds from `demo_seed`."""
    demo_seed: Count = Field(1_000_000, ge=0)
    """First env seed of the demonstrations (collections use seeds from 0; kept apart)."""
    threads: Count = Field(2, ge=1)
    """torch CPU threads while training."""


@dataclass(config=SECTION)
class TrainConfig:
    """Settings of `salus train` (flags of the same names) and of the console's train form; validated
    at construction (`salus_engine.config.build_settings` turns a failure into a `ConfigError`)."""

    data: Annotated[str, Field(min_length=1)]
    """Collection store folder."""
    out: Annotated[str, Field(min_length=1)]
    """Run folder to create (must not exist or be empty)."""
    epochs: Count = Field(50, ge=1)
    """Maximum epochs."""
    batch_size: Count = Field(256, ge=1)
    """Steps per mini-batch."""
    lr: Real = Field(1e-3, gt=0)
    """AdamW learning rate, cosine-decayed."""
    weight_decay: Real = Field(1e-2, ge=0)
    """AdamW weight decay."""
    patience: Count = Field(10, ge=0)
    """Epochs without a lower validation loss before stopping; 0 never stops early."""
    seed: Count = Field(0, ge=0)
    """Seeds the episode split, the weight initialisation and the shuffling."""
    model: Literal["outcome", "temporal", "multi-horizon", "single-horizon"] = "outcome"
    """`outcome` (an MLP over each step with the episode's running mean and maximum, trained on the
    episode's outcome, 4 outputs), `temporal` (causal dilated convolutions over the episode so far, 16
    outputs), `multi-horizon` (an MLP over the current step, or `window` steps, 16 outputs) or
    `single-horizon` (the seeds' 6-64-64-4 MLP, failure within the longest horizon)."""
    features: Annotated[str, Field(min_length=1)] = "state,time,target_view,grasp,grip_depth"
    """Input families, comma-separated (`salus_engine.predictor.inputs`): six, chunk_consistency,
    flow_disagreement, chunk_entropy, hidden_state, action_jerk, target_view, state, motion, command,
    grasp, grip_depth, slip, time; `all`: every family the store offers (older stores: six, state,
    motion, command, grasp, grip_depth, slip, time and, with the front camera, target_view). The
    default adds `grip_depth` (how far inside the cube's width the pads hold it, mm) to the previous
    one: in 5-fold cross-validation over the training and validation episodes of the 2,000-episode
    store, training seed 0, it detected 17 of 22 drops instead of 14, a median 26 steps ahead instead
    of 19, with ROC-AUC 0.940 against 0.939 and more false alarms (0.083 against 0.059; README
    "Measured", `bench/feature_choice.py`). The previous default added `grasp` (the gripper opening
    against the cube's width, mm) to the one before: in the same cross-validation it detected 14 of 22
    drops instead of 9, with fewer false alarms (0.059 against 0.083) and ROC-AUC 0.939 against 0.935
    on training seed 0, and caught more drops with fewer false alarms and a higher ROC-AUC on seeds 1
    and 2 too. The earlier default, the robot state, the step index and the front
    camera's view of the cube relative to the gripper, ranked episodes best on the validation split of
    the 2,000-episode store (README "Measured"); adding the policy's signals made the outcome model
    overfit there, and neither `motion` nor `command` ranked the test and fresh episodes better (for
    `command`, 5-fold cross-validation over the training and validation episodes agreed:
    `bench/feature_choice.py`). Without the front camera's view (`state,time`), the same cross-validation
    ranks episodes slightly higher (ROC-AUC 0.905 against 0.899 with the noisy-or alarm score) but alarms
    on misses 9 steps ahead instead of 25, under the 15 the issue asks for; the view stays in the default
    for that lead. A store without the front camera needs `--features state,time,grasp,grip_depth`."""
    window: Count = Field(1, ge=1)
    """Steps of signals per input of the multi-horizon MLP (1 for the other models)."""
    hidden: tuple[Annotated[Count, Field(ge=1)], ...] | None = None
    """Hidden layer widths (MLPs) or channels per convolution (temporal); None: 64, 64 for the MLPs,
    32, 32, 32, 32 for the temporal model."""
    members: Annotated[Count, Field(ge=1)] | None = None
    """MLP members trained side by side from independent initialisations, whose probabilities are
    averaged (a deep ensemble); None: 5 for the outcome model, 1 for the other kinds (the temporal
    model has exactly 1). Five ranked the training and validation episodes of the 2,000-episode store
    better than one on every seed of a 5-fold cross-validation (ROC-AUC 0.891 against 0.882), and
    ten no better than five (README "Measured", `bench/feature_choice.py --members`)."""
    alarm_score: Literal["max", "noisy-or", "noisy-or-excess"] | None = None
    """How a step's failure-type probabilities become the alarm score that the conformal threshold is
    calibrated on and the monitor watches (`salus_engine.predictor.alarm_score`): `max`, the largest,
    `noisy-or`, the probability of any failure type, or `noisy-or-excess`, the noisy-or minus half the
    training split's successful episodes' mean noisy-or at the same step; None: `noisy-or-excess` for
    the outcome model, `max` for the other kinds. For the outcome model, `noisy-or` ranked the training
    and validation episodes of the 2,000-episode store higher than `max` on every seed of a 5-fold
    cross-validation (ROC-AUC 0.899 against 0.891), and `noisy-or-excess` higher than `noisy-or` (README
    "Measured", `bench/feature_choice.py --alarm-scores`)."""
    member_features: str | None = None
    """Input families per member of the MLP: family sets, each comma-separated as `features`, separated by
    `/` and dealt to the members in turn (`state,time,target_view/state,time` with 5 members: members
    0, 2 and 4 read all three, 1 and 3 the state and step index); each set within `features`. None:
    every member reads all of `features`."""
    peak_weight: Annotated[Real, Field(ge=0)] | None = None
    """Weight of the success-peak term in the outcome model's loss (`noisy-or-excess` only): the mean
    over the successful training episodes of their highest alarm score, the step that would raise a
    false alarm (`salus_engine.predictor.training.success_peak_loss`); 0 leaves it out. None: 1 for the
    outcome model scored by `noisy-or-excess`, 0 otherwise (`salus_engine.predictor.training.
    DEFAULT_PEAK_WEIGHT`). 5-fold cross-validation over the training and validation episodes of the
    2,000-episode store ranked episodes higher with it (README "Measured", `bench/feature_choice.py
    --peak-weights`)."""
    episodes_per_batch: Count = Field(16, ge=1)
    """Episodes per mini-batch of the temporal model (the MLPs use `batch_size` steps)."""
    threads: Annotated[Count, Field(ge=1)] | None = 1
    """torch CPU threads during training. The network is so small that one thread is fastest (more
    threads only add synchronisation, badly so on a busy machine); None keeps torch's setting."""


@dataclass(config=SECTION)
class EvaluateConfig:
    """Settings of `salus evaluate` (flags of the same names) and of the console's evaluate screen;
    validated at construction (`salus_engine.config.build_settings` turns a failure into a `ConfigError`)."""

    checkpoint: Annotated[str, Field(min_length=1)]
    """Run folder of `salus train` (or one of its .safetensors files)."""
    data: Annotated[str, Field(min_length=1)]
    """The store the checkpoint was trained on."""
    out: Annotated[str, Field(min_length=1)]
    """Folder for metrics.json and the PNG plots (created)."""
    split: Literal["train", "val", "calibration", "test"] = "test"
    """Split to evaluate."""
    alpha: Real = Field(0.1, gt=0, lt=1)
    """False-alarm rate on successful episodes for the conformal alarm threshold."""
    delta: Annotated[Real, Field(gt=0, lt=1)] | None = None
    """None: the split-conformal threshold, whose false-alarm rate is at most alpha on average over
    calibration sets. A probability: the threshold whose false-alarm rate exceeds alpha for at most this
    share of calibration sets (training-conditional; `salus_engine.predictor.conformal`)."""
    weights: Literal["best", "final"] = "best"
    """Which weights of the run."""
    horizon: Annotated[Count, Field(ge=1)] | None = None
    """Alarm horizon, steps (one of the store's horizons); default the longest."""
    threads: Annotated[Count, Field(ge=1)] | None = None
    """torch CPU threads; None keeps torch's setting."""
    plots: bool = True
    """Write the PNG plots beside metrics.json."""
    fresh: str | None = None
    """A second store (another seed range, the same signal families) whose every episode is also scored,
    with the thresholds calibrated on `data`: how the monitor generalises to unseen seeds."""
    ablation: bool = False
    """Also retrain the model with each input family removed and each family alone (slow: 2F trainings)."""
    workers: Count = Field(1, ge=1)
    """Networks trained at a time (the baselines, the controls, the ablation's rows). 1 trains them one
    after another in this process; N > 1 trains up to N at a time as Ray tasks of one CPU each, on a
    local Ray that the evaluation starts and stops (bound to 127.0.0.1). The figures are the same
    either way (with `threads` = 1, to the bit)."""


DEFAULT_MONITOR_ALPHA = 0.3
"""The false-alarm rate at which the monitor in the loop alarms by default: with the default
intervention rules (`salus_engine.monitor.interventions.DEFAULT_RULES`) an alarm costs a handover of
at most a few seconds, and a lower threshold catches more failing episodes early enough to act.
Chosen with those rules on tuning trials (seeds 300000-300079); the evaluation's own alpha (0.1 by
default) stays the alpha of `salus evaluate`'s figures."""


@dataclass(config=SECTION)
class MonitorConfig:
    """The runtime monitor in the loop (`salus collect --monitor RUN`, `salus trial`; `[monitor]` table;
    see `salus_engine.monitor`)."""

    run: Text = ""
    """Run folder of `salus train` whose predictor watches the rollout; empty: no monitor."""
    evaluation: Text = ""
    """Folder of the `salus evaluate` metrics.json that holds the conformal threshold and alarm
    horizon; empty: RUN/evaluation."""
    weights: Literal["best", "final"] = "best"
    """Which weights of the run."""
    threshold: Annotated[Real, Field(gt=-1, lt=1)] | None = None
    """Alarm threshold on the score; None: the model's conformal threshold from the evaluation (at
    `alpha` when set). It must lie inside the range of the predictor's alarm rule, checked when the
    monitor loads it (`salus_engine.predictor.alarm_score.score_range`: (0, 1) for a probability,
    (-0.5, 1) for `noisy-or-excess`, whose score may be negative)."""
    alpha: Annotated[Real, Field(gt=0, lt=1)] | None = None
    """False-alarm rate the monitor accepts: the threshold is the evaluation's conformal threshold for
    this alpha, one of the alphas of its detection-vs-lead-time curve (0.02, 0.05, 0.1, 0.15, 0.2,
    0.3, 0.5). A larger alpha alarms earlier and on more successful episodes. None:
    `DEFAULT_MONITOR_ALPHA` (0.3), unless `threshold` is set. Not together with `threshold`."""
    horizon: Annotated[Count, Field(ge=1)] | None = None
    """Alarm horizon, steps (one of the predictor's); None: the evaluation's."""
    hysteresis: Real = Field(0.2, ge=0, lt=1)
    """After an alarm the monitor re-arms once the score falls below threshold - hysteresis x |threshold|."""
    cooldown_steps: Count = Field(15, ge=0)
    """No new alarm within this many steps of the previous one (0.5 s at 30 Hz)."""
    interventions: Text = ""
    """TOML file of intervention rules (`salus_engine.monitor.interventions`); empty: the default rules."""
    trigger: Literal["monitor", "random", "blind", "none"] = "monitor"
    """What starts interventions: the monitor's alarms; `random` / `blind`: a per-episode schedule
    given by `salus trial` (the placebo arms); `none`: nothing (the monitor only records)."""

    @property
    def enabled(self) -> bool:
        """True when a predictor run is set."""
        return bool(self.run)


_TOML_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("salus_config_toml", default=None)
"""The TOML file `load_collect_config` reads, for the settings sources of the call in progress."""


def _collect_alias(name: str) -> AliasChoices:
    """A collection field is set as NAME (flags, code) or as `SALUS_COLLECT_NAME` (environment)."""
    return AliasChoices(name, f"salus_collect_{name}")


class CollectConfig(BaseSettings):
    """A collection job: its own settings (`[collect]` table, `SALUS_COLLECT_*`) and its sections.

    Constructing it validates every value; `load_collect_config` adds a TOML file and turns a
    validation failure into a one-line `ConfigError`.
    """

    model_config = SettingsConfigDict(env_prefix="SALUS_", env_nested_delimiter="_", env_nested_max_split=1,
                                      extra="forbid", validate_assignment=True, populate_by_name=True)

    episodes: Count = Field(50, ge=1, validation_alias=_collect_alias("episodes"))
    """Episodes in the store when the collection is done."""
    out: Text = Field("data/collection", validation_alias=_collect_alias("out"))
    """Store folder."""
    seed: Count = Field(0, ge=0, validation_alias=_collect_alias("seed"))
    """Seed of the first episode; episode i uses seed + i."""
    resume: bool = Field(False, validation_alias=_collect_alias("resume"))
    """Continue the store at `out` with the next episode id and seed."""
    gpu_budget_gb: Real = Field(11.0, gt=0, validation_alias=_collect_alias("gpu_budget_gb"))
    """GPU memory budget shown in the console, GB."""
    workers: Count = Field(1, ge=1, validation_alias=_collect_alias("workers"))
    """Rollout workers. 1 runs the episodes one after another in this process (no Ray). N > 1 runs
    N Ray actors, each with its own simulator and policy ensemble, on a local Ray that the collection
    starts and stops (bound to 127.0.0.1) or on the cluster at `address`; the store is the same
    (`salus_engine.distributed`)."""
    address: Text = Field("", validation_alias=_collect_alias("address"))
    """Ray cluster for the workers: `auto` (the cluster that `ray start` set up on this machine) or
    HOST:PORT of its head node (the GCS port, 6379 by default). Empty: a local Ray started for this
    collection. Setting it runs the workers on Ray even with `workers` = 1."""
    gpus_per_worker: Annotated[Real, Field(ge=0)] | None = Field(None, validation_alias=_collect_alias("gpus_per_worker"))
    """GPUs each Ray worker reserves (Ray `num_gpus`; 0.5 puts two workers on one GPU). Default
    (None): 1 when `policy.device` is CUDA, else 0. Each worker also reserves `threads` CPU cores."""
    signals: Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_families)] = Field(
        DEFAULT_FAMILIES, validation_alias=_collect_alias("signals"))
    """Signal families recorded beside the six signals (`salus_engine.signal_families`), comma-separated:
    chunk_consistency, flow_disagreement, chunk_entropy, hidden_state, action_jerk. Default: all but
    chunk_entropy, which costs `policy.entropy_samples` more queries per query."""
    threads: Count = Field(1, ge=1, validation_alias=_collect_alias("threads"))
    """torch CPU threads of each rollout worker, the in-process collection included. Float sums
    depend on the thread count (signals differed by up to 2.6e-6 between 1 and 2 threads on the
    embedded ensemble), so the same count keeps a store's episodes identical whichever way they are
    collected; 1 was also the fastest on this 2-core CPU (0.4-0.8 s against 3-3.6 s for a
    24-step, 64 px episode, measured while a test suite ran)."""
    sim: SimConfig = Field(default_factory=SimConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="before")
    @classmethod
    def _collect_table(cls, data: Any) -> Any:
        """The `[collect]` table and `SALUS_COLLECT_*` set this object's own fields; values given
        directly (flags) come first."""
        if isinstance(data, dict) and isinstance(data.get("collect"), dict):
            data = dict(data)
            data = {**data.pop("collect"), **data}
        return data

    @model_validator(mode="after")
    def _a_camera_for_the_policy(self) -> CollectConfig:
        if not self.sim.cameras:
            raise ValueError("sim.cameras is empty; a collection needs at least one camera (front, side, wrist) "
                             "for the vision-language-action policy")
        return self

    @model_validator(mode="after")
    def _entropy_samples_for_chunk_entropy(self) -> CollectConfig:
        samples = self.policy.entropy_samples
        if samples == 1:
            raise ValueError("policy.entropy_samples is 1; chunk entropy is a spread over samples, use 2 or more "
                             "(or 0 for none)")
        if samples and "chunk_entropy" not in self.signals:
            self.signals = parse_families((*self.signals, "chunk_entropy"))
        if "chunk_entropy" in self.signals and not samples:
            raise ValueError("signal family chunk_entropy needs policy.entropy_samples >= 2; set --entropy-samples 4, "
                             "or leave chunk_entropy out of --signals")
        return self

    @field_validator("address")
    @classmethod
    def _ray_address(cls, value: str) -> str:
        value = value.strip()
        if value in ("", "auto"):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or "/" in value or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected auto or HOST:PORT of a Ray head node (e.g. 10.0.0.5:6379)")
        return value

    @property
    def uses_ray(self) -> bool:
        """True when the episodes run on Ray workers (`workers` > 1 or an `address`), False in-process."""
        return self.workers > 1 or bool(self.address)

    @property
    def worker_gpus(self) -> float:
        """GPUs each Ray worker reserves: `gpus_per_worker`, or 1 with a CUDA `policy.device`, else 0."""
        if self.gpus_per_worker is not None:
            return float(self.gpus_per_worker)
        return 1.0 if self.policy.device.startswith("cuda") else 0.0

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) < ... precedence, highest first: flags, SALUS_* environment, the TOML file."""
        toml_file = _TOML_FILE.get()
        if toml_file is None:
            return init_settings, env_settings
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_file)


    def with_values(self, **changes: Any) -> CollectConfig:
        """A validated copy with `changes` applied (a console form's values), e.g. `episodes=20`.

        Raises:
            ConfigError: a changed value is wrong.
        """
        try:
            return type(self).model_validate({**self.model_dump(), **changes})
        except ValidationError as err:
            raise ConfigError(f"invalid settings: {describe_validation_error(err)}") from None


def build_settings(cls: type[T], **values: Any) -> T:
    """Constructs and validates a settings dataclass (e.g. `TrainConfig`) from `values`; None values
    keep the field's default.

    Raises:
        ConfigError: a value has the wrong type or is out of range, or a key is unknown.
    """
    try:
        return cls(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {describe_validation_error(err)}") from None


def default_of(cls: type, name: str) -> Any:
    """The default value of field `name` of a settings class (for help texts and form fields)."""
    if isinstance(cls, type) and issubclass(cls, BaseSettings):
        return cls.model_fields[name].get_default(call_default_factory=True)
    field = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
    default = field.default
    if hasattr(default, "get_default"):  # a pydantic Field(...) as the dataclass default
        return default.get_default(call_default_factory=True)
    return default


def describe_validation_error(err: ValidationError) -> str:
    """One line from a pydantic validation error: each wrong setting, its value and why."""
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        why = item["msg"].removeprefix("Value error, ").rstrip(".")
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown setting {where}")
        elif not where:  # a check across settings: its message names them
            parts.append(why)
        else:
            parts.append(f"{where}={item.get('input')!r}: {why}")
    return "; ".join(parts)


CONFIG_SECTIONS = ("collect", "sim", "policy", "store", "monitor")
"""The tables of a collection's TOML file."""


def load_collect_config(toml_path: str | Path | None = None, **flags: Any) -> CollectConfig:
    """Builds a `CollectConfig` from defaults < a TOML file < `SALUS_*` variables < `flags`.

    Args:
        toml_path: TOML file with `[collect]`, `[sim]`, `[policy]`, `[store]`, `[monitor]` tables, or None.
        flags: values given on the command line or in a form, e.g. `episodes=20, sim={"image_size": 64}`;
            None values are left out.

    Raises:
        ConfigError: the file is missing or not valid TOML, or a key or value is wrong.
    """
    path = None
    if toml_path is not None:
        path = Path(toml_path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; give an existing TOML file")
        try:
            sections = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"config file {path} is not valid TOML ({err}); fix it") from None
        unknown = [name for name, value in sections.items() if name not in CONFIG_SECTIONS or not isinstance(value, dict)]
        if unknown:
            raise ConfigError(f"unknown config section [{unknown[0]}] in {path}; use tables "
                              f"{', '.join(f'[{name}]' for name in CONFIG_SECTIONS)}")
        misplaced = [name for name in sections.get("collect", {}) if name in CONFIG_SECTIONS]
        if misplaced:  # would be dropped silently whenever a [sim] table, a flag or a variable sets that section
            raise ConfigError(f"[collect] in {path} holds '{misplaced[0]}', a section of its own; move its settings "
                              f"into a [{misplaced[0]}] table")
    given = _drop_none(flags)
    token = _TOML_FILE.set(path)
    try:
        return CollectConfig(**given)
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {describe_validation_error(err)}; fix the flag, config file or "
                          "SALUS_* variable") from None
    except SettingsError as err:
        raise ConfigError(f"invalid settings: {err}; fix the SALUS_* variable or the config file") from None
    finally:
        _TOML_FILE.reset(token)


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out
