"""Behaviour cloning of tiny SmolVLA ensemble members on scripted-expert demonstrations.

`train_default_ensemble` is what `salus policy train` runs: it writes the tiny SmolVLM backbone
(`tiny_backbone`), records DART-noised scripted-expert demonstrations (`demonstrations`), trains M
SmolVLA members that differ only in their seed (weight initialisation, batch order, flow-matching
noise and time samples, image augmentation) with lerobot's own `SmolVLAPolicy.forward` loss and
processors, and saves each with `save_pretrained` under `<out_dir>/member_<i>/`.

The members are trained on the same demonstrations, like a deep ensemble (Lakshminarayanan et al.,
NeurIPS 2017): their disagreement grows away from the demonstrated states, which is what the
epistemic-uncertainty signal reads.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salus_engine.config import DEFAULT_POLICY_DIR, SimConfig, TrainSettings
from salus_engine.events import EventSink, LogLine, ProgressUpdate, discard
from salus_engine.policy.checkpoint import quiet, save_member
from salus_engine.policy.demonstrations import Demonstrations, record_demonstrations
from salus_engine.policy.tiny_backbone import write_tiny_backbone

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
TRAINING_FILE = "training.json"
"""Summary of the run written next to the member folders (settings, demo outcomes, final losses)."""


@dataclass
class TrainResult:
    """What `train_default_ensemble` did."""

    out_dir: str
    members_saved: int
    stopped: bool
    seconds: float
    demo_episodes: int
    demo_steps: int
    demo_success_rate: float
    final_losses: list[float] = field(default_factory=list)
    """Mean training loss over the last 10 % of steps, per member."""
    size_mb: float = 0.0
    """Total size of the saved folder, MB."""


def smolvla_config(backbone_dir: str | Path, cameras: tuple[str, ...], image_size: int, chunk_size: int,
                   device: str = "cpu", state_dim: int = 8, action_dim: int = 7, lr: float = 1e-3) -> Any:
    """A lerobot `SmolVLAConfig` for the tiny backbone, training the whole model.

    Inputs `observation.images.<cam>` (3, image_size, image_size) per camera and `observation.state`
    (state_dim,); output `action` (action_dim,). The VLM is cut to its 2 layers, the vision encoder
    and VLM are trainable (`freeze_vision_encoder=False`, `train_expert_only=False`; lerobot still
    freezes the VLM's last layer and lm_head, which the action expert does not read).
    """
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.smolvla import SmolVLAConfig

    inputs = {f"{IMAGE_PREFIX}{cam}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, image_size, image_size))
              for cam in cameras}
    inputs[STATE_KEY] = PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))
    return SmolVLAConfig(
        vlm_model_name=str(Path(backbone_dir).resolve()),
        load_vlm_weights=False,
        num_vlm_layers=2,
        resize_imgs_with_padding=(image_size, image_size),
        freeze_vision_encoder=False,
        train_expert_only=False,
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        optimizer_lr=lr,
        device=device,
        push_to_hub=False,
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
    )


def dataset_stats(demos: Demonstrations) -> dict[str, dict[str, torch.Tensor]]:
    """Normalisation statistics (mean, std, min, max) of states and actions for lerobot's normaliser.

    A std below 1e-3 (e.g. an action dim the expert never moves) is replaced by 1.0, so a constant
    dim is centred but not blown up.
    """
    def stats(x: np.ndarray) -> dict[str, torch.Tensor]:
        std = x.std(axis=0)
        std = np.where(std < 1e-3, 1.0, std)
        return {"mean": torch.from_numpy(x.mean(axis=0)).float(), "std": torch.from_numpy(std).float(),
                "min": torch.from_numpy(x.min(axis=0)).float(), "max": torch.from_numpy(x.max(axis=0)).float()}

    return {STATE_KEY: stats(demos.states), "action": stats(demos.actions)}


def _shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pixels` (replicate-pad then random crop), per sample (B, 3, s, s)."""
    if pixels <= 0:
        return images
    b, _, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pixels, pixels, pixels, pixels), mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (b, 2), generator=generator)
    return torch.stack([padded[i, :, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets.tolist())])


def _batch(demos: Demonstrations, index: np.ndarray, chunk_size: int, shift_px: int,
           generator: torch.Generator) -> dict[str, Any]:
    """Raw lerobot training batch for demonstration steps `index`."""
    actions, is_pad = demos.action_chunks(index, chunk_size)
    batch: dict[str, Any] = {
        STATE_KEY: torch.from_numpy(demos.states[index]),
        "action": torch.from_numpy(actions),
        "action_is_pad": torch.from_numpy(is_pad),
        "task": [demos.instruction] * len(index),
    }
    for cam, frames in demos.images.items():
        images = torch.from_numpy(frames[index]).float().div_(255.0)
        batch[f"{IMAGE_PREFIX}{cam}"] = _shift(images, shift_px, generator)
    return batch


class SceneProbe(torch.nn.Module):
    """Auxiliary training head: regresses privileged scene positions from each camera's image tokens.

    A tiny vision encoder trained from scratch by the flow-matching loss alone barely learns where
    the cube is (measured: predicted actions hardly change between images of different scenes, and
    the policy repeats one average trajectory). This head reads the SmolVLM connector's output
    (B, 16, 64) per camera, captured by a forward hook during `SmolVLAPolicy.forward`, and is
    trained with an MSE loss against the normalised cube xyz, bin xy and pinch xyz of
    `Demonstrations.positions` (an auxiliary task with privileged labels, as in asymmetric
    actor-critic / privileged-information training). It exists only during training: the saved
    member is a plain `SmolVLAPolicy` whose inputs are the image, state and instruction.
    """

    def __init__(self, policy: Any, cameras: int, targets: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        vlm = policy.model.vlm_with_expert.get_vlm_model()
        self.heads = torch.nn.ModuleList(torch.nn.LazyLinear(targets) for _ in range(cameras))
        self.register_buffer("mean", torch.from_numpy(mean).float())
        self.register_buffer("std", torch.from_numpy(std).float())
        self._captured: list[torch.Tensor] = []
        self._hook = vlm.connector.register_forward_hook(lambda _m, _i, out: self._captured.append(out))

    def loss(self, positions: np.ndarray) -> torch.Tensor:
        """MSE between predicted and true normalised positions over the images captured since the
        last call (one tensor per camera, in camera order); clears the capture."""
        captured, self._captured = self._captured, []
        target = (torch.from_numpy(positions).float() - self.mean) / self.std
        losses = [torch.nn.functional.mse_loss(head(tokens.flatten(1)), target)
                  for head, tokens in zip(self.heads, captured)]
        return torch.stack(losses).mean()

    def discard(self) -> None:
        """Drops captured activations (e.g. after an inference call)."""
        self._captured = []

    def remove(self) -> None:
        """Detaches the hook from the policy."""
        self._hook.remove()
        self._captured = []


def bootstrap_steps(demos: Demonstrations, rng: np.random.Generator) -> np.ndarray:
    """Step indices of a bootstrap resample of the demonstration episodes: E episodes drawn with
    replacement, each contributing all its steps (an episode drawn twice appears twice).

    Returns:
        (N',) int64 indices into the demonstration arrays.
    """
    episodes = rng.integers(0, len(demos.outcomes), len(demos.outcomes))
    starts = np.concatenate([[0], demos.episode_end[:-1]])
    return np.concatenate([np.arange(starts[e], demos.episode_end[e]) for e in episodes]).astype(np.int64)


def train_member(demos: Demonstrations, backbone_dir: str | Path, settings: TrainSettings, member: int,
                 sink: EventSink = discard, stop: threading.Event | None = None,
                 progress_offset: int = 0, progress_total: int | None = None,
                 init_state: dict[str, torch.Tensor] | None = None,
                 steps: int | None = None) -> tuple[Any, Any, Any, list[float]]:
    """Trains one SmolVLA member by behaviour cloning (flow-matching loss of `SmolVLAPolicy.forward`).

    Args:
        init_state: a trained member's `state_dict` to start from (fine-tuning on a bootstrap
            resample of the demonstration episodes, see `TrainSettings.member_steps`); None trains
            from a fresh initialisation on every demonstration step.
        steps: optimiser steps (default `settings.steps`).

    Returns:
        (policy, preprocessor, postprocessor, losses per step). If `stop` is set the loop ends early
        and the partly trained policy is returned.
    """
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.policies.smolvla import SmolVLAPolicy

    seed = settings.seed + member
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    cameras = tuple(demos.images)
    config = smolvla_config(backbone_dir, cameras, settings.image_size, settings.chunk_size, lr=settings.lr)
    policy = quiet(SmolVLAPolicy, config)
    pool = None
    if init_state is not None:
        policy.load_state_dict(init_state)
        pool = bootstrap_steps(demos, rng)
    steps = settings.steps if steps is None else int(steps)
    preprocessor, postprocessor = quiet(make_pre_post_processors, config, dataset_stats=dataset_stats(demos))
    probe = None
    if settings.aux_weight > 0:
        mean, std = demos.positions.mean(axis=0), demos.positions.std(axis=0)
        probe = SceneProbe(policy, len(cameras), demos.positions.shape[1], mean, np.where(std < 1e-4, 1.0, std))
        # materialise the lazy heads with one image batch
        with torch.no_grad():
            sample = torch.zeros(1, 3, settings.image_size, settings.image_size)
            tokens = policy.model.vlm_with_expert.embed_image(sample)
            for head in probe.heads:
                head(tokens.flatten(1))
        probe.discard()
    params = [p for p in policy.parameters() if p.requires_grad]
    if probe is not None:
        params += list(probe.heads.parameters())
    lr = settings.lr if init_state is None else settings.member_lr
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=settings.weight_decay)

    def lr_factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, steps - settings.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    total = progress_total if progress_total is not None else steps
    losses: list[float] = []
    aux_losses: list[float] = []
    policy.train()
    report_every = max(1, steps // 100)
    for step in range(steps):
        if stop is not None and stop.is_set():
            break
        if pool is None:
            index = rng.integers(0, len(demos), settings.batch_size)
        else:
            index = pool[rng.integers(0, len(pool), settings.batch_size)]
        batch = preprocessor(_batch(demos, index, settings.chunk_size, settings.shift_px, generator))
        loss, _ = policy.forward(batch)
        total_loss = loss
        aux = None
        if probe is not None:
            aux = probe.loss(demos.positions[index])
            total_loss = loss + settings.aux_weight * aux
        optimizer.zero_grad(set_to_none=True)
        total_loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.optimizer_grad_clip_norm)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        aux_losses.append(float(aux.detach()) if aux is not None else 0.0)
        if (step + 1) % report_every == 0 or step + 1 == steps:
            values = {"loss": float(np.mean(losses[-report_every:])), "lr": float(scheduler.get_last_lr()[0])}
            if probe is not None:
                values["aux_loss"] = float(np.mean(aux_losses[-report_every:]))
            sink(ProgressUpdate(done=progress_offset + step + 1, total=total,
                                message=f"member {member}: step {step + 1}/{steps}", values=values))
    if probe is not None:
        probe.remove()
    policy.eval()
    return policy, preprocessor, postprocessor, losses


def _folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def train_default_ensemble(
    out_dir: str | Path = DEFAULT_POLICY_DIR,
    sim_config: SimConfig | None = None,
    settings: TrainSettings | None = None,
    sink: EventSink = discard,
    stop: threading.Event | None = None,
) -> TrainResult:
    """Builds the embedded default ensemble: backbone, demonstrations, M members, saved to `out_dir`.

    `salus policy train` calls this. Work happens in `<out_dir>.staging/`; the finished folder
    replaces `out_dir` only when every member is trained, so a stopped or failed run leaves the
    previous ensemble intact.

    Args:
        out_dir: destination folder; receives `member_0` .. `member_<M-1>` and `training.json`.
        sim_config: env settings for the demonstrations (default `SimConfig()`: the default task
            distribution and cameras).
        settings: the behaviour-cloning settings (default `TrainSettings()`: the committed default).
        sink: receives `LogLine` and `ProgressUpdate` events (demonstrations, then training steps
            counted over all members).
        stop: when set, the job stops after the current demonstration episode or training step and
            `out_dir` is left unchanged.

    Returns:
        `TrainResult` (members saved, timings, demonstration success rate, losses, size in MB).

    Raises:
        ConfigError: from `build_settings(TrainSettings, ...)`, before this is called: members, demos
            or steps below 1, member_steps below 0.
    """
    settings = settings if settings is not None else TrainSettings()
    sim_config = sim_config if sim_config is not None else SimConfig()
    out = Path(out_dir).expanduser().resolve()
    staging = out.with_name(out.name + ".staging")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, settings.threads))
    started = time.perf_counter()
    try:
        if staging.exists():
            shutil.rmtree(staging)
        backbone = write_tiny_backbone(staging / "backbone", settings.image_size)
        sink(LogLine("info", f"recording {settings.demos} scripted-expert demonstrations "
                             f"(DART noise std {settings.noise_std}, cameras {', '.join(sim_config.cameras)})"))
        demo_set = record_demonstrations(sim_config, settings.demos, settings.image_size, seed=settings.demo_seed,
                                         noise_std=settings.noise_std, sink=sink, stop=stop)
        sink(LogLine("info", f"demonstrations: {len(demo_set.outcomes)} episodes, {len(demo_set)} steps, "
                             f"expert success with noise {demo_set.success_rate:.0%}"))
        result = TrainResult(out_dir=str(out), members_saved=0, stopped=False, seconds=0.0,
                             demo_episodes=len(demo_set.outcomes), demo_steps=len(demo_set),
                             demo_success_rate=demo_set.success_rate)
        plan = [settings.steps] + [settings.member_steps or settings.steps] * (settings.members - 1)
        total = sum(plan)
        base_state = None
        for i in range(settings.members):
            if stop is not None and stop.is_set():
                break
            init = base_state if i > 0 and settings.member_steps else None
            policy, pre, post, losses = train_member(demo_set, backbone, settings, i, sink, stop,
                                                     progress_offset=sum(plan[:i]), progress_total=total,
                                                     init_state=init, steps=plan[i])
            if len(losses) < plan[i]:
                break
            if i == 0:
                base_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
            policy.config.num_steps = settings.denoising_steps
            save_member(policy, pre, post, staging / f"member_{i}")
            tail = losses[-max(1, len(losses) // 10):]
            result.final_losses.append(float(np.mean(tail)))
            result.members_saved += 1
            sink(LogLine("info", f"member {i} saved: final loss {result.final_losses[-1]:.4f}"))
        result.seconds = time.perf_counter() - started
        if result.members_saved < settings.members:
            result.stopped = True
            shutil.rmtree(staging, ignore_errors=True)
            sink(LogLine("warning", f"policy training stopped; {out} left unchanged"))
            return result
        shutil.rmtree(staging / "backbone")  # every member holds its own copy
        summary = {"settings": asdict(settings), "sim": asdict(sim_config),
                   "demo_outcomes": demo_set.outcomes.tolist(), "demo_seeds": demo_set.seeds.tolist(),
                   "final_losses": result.final_losses, "seconds": round(result.seconds, 1)}
        (staging / TRAINING_FILE).write_text(json.dumps(summary, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        result.size_mb = _folder_mb(out)
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(previous_threads)
