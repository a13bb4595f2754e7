"""Scripted-expert demonstrations for behaviour cloning, recorded in the real simulator.

DART-style noise injection (Laskey et al., CoRL 2017, "DART: Noise Injection for Robust Imitation
Learning"): the env executes the expert's action plus gaussian noise, but the recorded label is the
expert's clean action. The demonstrations therefore visit the slightly-off states a learned policy
drifts into and show how the expert recovers from them.

Images are stored at the policy's input size (`image_size`, e.g. 128), downscaled from the env's
rendering with lerobot's own SmolVLA `resize_with_pad`, so training sees exactly what the policy
computes from a full-size frame at run time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from salus_engine.config import SimConfig
from salus_engine.events import EventSink, ProgressUpdate, discard


@dataclass
class Demonstrations:
    """Concatenated demonstration steps of several episodes.

    Attributes:
        images: camera -> (N, 3, s, s) uint8 RGB at the policy's input size s.
        states: (N, 8) float32 env states (7 joint angles rad, gripper opening m).
        actions: (N, 7) float32 clean expert actions (labels) in env units [-1, 1].
        positions: (N, 8) float32 privileged scene positions, m, world frame: cube centre xyz, bin
            centre xy, gripper pinch point xyz (`PickPlaceEnv.task_state()`). Only the auxiliary
            training loss reads them (`behaviour_cloning`); they are never a policy input.
        episode: (N,) int32 episode index of each step (0..E-1).
        step: (N,) int32 step index within its episode.
        outcomes: (E,) int8 outcome code of each episode (-1 success, 0..3 failure types).
        seeds: (E,) int64 env seed of each episode.
        instruction: the task instruction.
    """

    images: dict[str, np.ndarray]
    states: np.ndarray
    actions: np.ndarray
    positions: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    outcomes: np.ndarray
    seeds: np.ndarray
    instruction: str
    episode_end: np.ndarray = field(init=False)
    """(E,) index one past each episode's last step in the arrays."""

    def __post_init__(self) -> None:
        n_episodes = len(self.outcomes)
        self.episode_end = np.searchsorted(self.episode, np.arange(n_episodes), side="right").astype(np.int64)

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def success_rate(self) -> float:
        """Fraction of recorded episodes that ended in success (with the injected noise)."""
        return float(np.mean(self.outcomes == -1)) if len(self.outcomes) else 0.0

    def action_chunks(self, index: np.ndarray, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Label chunks for steps `index` (B,): actions t..t+chunk-1 of the same episode.

        Returns:
            (actions (B, chunk, 7) float32, is_pad (B, chunk) bool); past the episode's end the last
            action is repeated and marked as padding (lerobot's `action_is_pad`, excluded from the loss).
        """
        offsets = np.arange(chunk_size)[None, :]
        target = index[:, None] + offsets
        end = self.episode_end[self.episode[index]][:, None]
        is_pad = target >= end
        target = np.minimum(target, end - 1)
        return self.actions[target], is_pad


def downscale(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, size, size) uint8 with lerobot SmolVLA's `resize_with_pad` (bilinear,
    top-left zero padding); the identity layout change when H = W = size."""
    from lerobot.policies.common.vla_utils import resize_with_pad

    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().div_(255.0)
    img = resize_with_pad(img, size, size, pad_value=0)
    return img[0].mul_(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()


def record_demonstrations(
    sim_config: SimConfig,
    episodes: int,
    image_size: int,
    seed: int = 1_000_000,
    noise_std: float = 0.15,
    noise_dims: tuple[int, ...] = (0, 1, 2),
    sink: EventSink = discard,
    stop: threading.Event | None = None,
) -> Demonstrations:
    """Rolls out the scripted expert with DART noise and records (image, state, clean action) steps.

    Args:
        sim_config: env settings (cameras recorded are `sim_config.cameras`).
        episodes: number of episodes E; episode i uses env seed `seed + i`. The default seed range
            starts at 1,000,000, away from collection seeds (0, 1, ...), so the policy is evaluated
            on initial conditions it was not trained on.
        image_size: policy input size s the images are downscaled to, pixels.
        noise_std: std of the gaussian noise added to the executed action dims `noise_dims`
            (action units, before the env's clipping to [-1, 1]); labels stay clean.
        noise_dims: action dims that receive noise; default the position dims 0..2.
        sink: receives a `ProgressUpdate` per episode.
        stop: when set, recording ends after the current episode.

    Returns:
        `Demonstrations` of the episodes recorded (fewer than E if stopped).

    Raises:
        ValueError: episodes < 1 or noise_std < 0.
    """
    from salus_engine.sim import PickPlaceEnv
    from salus_engine.sim.expert import ScriptedExpert

    if episodes < 1:
        raise ValueError(f"episodes is {episodes}; record at least 1 demonstration")
    if noise_std < 0:
        raise ValueError(f"noise_std is {noise_std}; use a value >= 0")
    env = PickPlaceEnv(sim_config)
    expert = ScriptedExpert(env)
    rng = np.random.default_rng(seed)
    images: dict[str, list[np.ndarray]] = {cam: [] for cam in sim_config.cameras}
    states, actions, positions, episode_idx, step_idx, outcomes, seeds = [], [], [], [], [], [], []
    try:
        for e in range(episodes):
            if stop is not None and stop.is_set():
                break
            obs, _ = env.reset(seed=seed + e)
            expert.reset()
            t = 0
            while True:
                clean = expert.act(obs)
                for cam in sim_config.cameras:
                    images[cam].append(downscale(obs["images"][cam], image_size))
                states.append(obs["state"].copy())
                actions.append(clean)
                scene = env.task_state()
                positions.append(np.concatenate([scene.cube_pos, scene.bin_pos[:2], scene.pinch_pos]))
                episode_idx.append(len(outcomes))
                step_idx.append(t)
                executed = clean.copy()
                if noise_std > 0 and noise_dims:
                    executed[list(noise_dims)] += rng.normal(0.0, noise_std, size=len(noise_dims))
                obs, _, terminated, truncated, info = env.step(np.clip(executed, -1.0, 1.0))
                t += 1
                if terminated or truncated:
                    outcomes.append(info["outcome"].failure_type)
                    seeds.append(seed + e)
                    break
            sink(ProgressUpdate(done=e + 1, total=episodes, message=f"demonstration {e + 1}/{episodes}",
                                values={"steps": float(t), "outcome": float(outcomes[-1])}))
    finally:
        env.close()
    if not outcomes:
        raise ValueError("no demonstration was recorded (stopped before the first episode ended)")
    return Demonstrations(
        images={cam: np.stack(v) for cam, v in images.items()},
        states=np.asarray(states, dtype=np.float32),
        actions=np.asarray(actions, dtype=np.float32),
        positions=np.asarray(positions, dtype=np.float32),
        episode=np.asarray(episode_idx, dtype=np.int32),
        step=np.asarray(step_idx, dtype=np.int32),
        outcomes=np.asarray(outcomes, dtype=np.int8),
        seeds=np.asarray(seeds, dtype=np.int64),
        instruction=env.instruction,
    )
