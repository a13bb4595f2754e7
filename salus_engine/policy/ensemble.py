"""`PolicyEnsemble`: M lerobot policies queried for action chunks, executed as their mean.

Per step the ensemble returns the executed action (mean over members) and every member's action,
the input of the six signals (`salus_engine.signals`). Members predict action chunks with lerobot's
`predict_action_chunk` every `PolicyConfig.requery_every` steps; between re-queries the per-step
member actions are read from the current chunks. All members receive the same flow-matching noise
tensor at a re-query, so their disagreement is model disagreement, not sampling noise (lerobot's
`VLAFlowMatching.sample_actions` takes the initial `noise` as an argument).

Sources (`PolicyConfig.path`):
- a folder of member folders `member_0`, `member_1`, ... (the embedded default, `salus policy train`);
  the first M are used;
- one saved lerobot policy folder or a hub id (e.g. `lerobot/smolvla_base`): it is loaded once and
  queried M times with M different noise tensors, so the members differ by sampling noise only
  (the seeds' setting); this is logged.

Where a checkpoint's cameras, state or action differ from the env's, `IOMapping` maps them
explicitly and the mapping is logged and listed in `PolicyEnsemble.notes`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salus_engine.config import PolicyConfig
from salus_engine.policy.checkpoint import LoadedMember, PolicyLoadError, load_member

log = logging.getLogger(__name__)

IMAGE_PREFIX = "observation.images."
STATE_KEY = "observation.state"
ACTION_KEY = "action"
TASK_INSTRUCTION = "Pick up the red cube and place it in the blue bin"
"""The task's instruction (the same string as `PickPlaceEnv.instruction`); fed as lerobot's `task`."""
ENV_STATE_DIM = 8
"""Env state: 7 joint positions (rad) + gripper opening."""
_MEMBER_DIR = re.compile(r"^member_(\d+)$")


def member_folders(path: str | Path) -> list[Path]:
    """The `member_<i>` folders directly inside `path`, ordered by i (empty if none)."""
    folder = Path(path)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _MEMBER_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


@dataclass
class IOMapping:
    """How env observations and actions map to one checkpoint's features.

    Attributes:
        cameras: (policy image key, env camera name) pairs fed each query.
        state_index: (S_p,) int array: policy state dim j takes env state dim `state_index[j]`, or 0.0
            where it is -1.
        action_index: (A_env,) int array: env action dim i takes policy action dim `action_index[i]`,
            or 0.0 (no motion) where it is -1.
        notes: human-readable lines describing every non-identity choice.
    """

    cameras: list[tuple[str, str]]
    state_index: np.ndarray | None
    action_index: np.ndarray
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, policy_config: Any, cameras: tuple[str, ...], action_dim: int, config: PolicyConfig) -> IOMapping:
        """Derives the mapping from a lerobot policy config and the env's cameras / action size.

        Raises:
            PolicyLoadError: a `camera_map` / `action_map` entry is malformed or names something
                that does not exist, or no policy camera can be given an image.
        """
        notes: list[str] = []
        image_keys = [
            k for k in policy_config.input_features
            if k.startswith(IMAGE_PREFIX) and not k[len(IMAGE_PREFIX):].startswith("empty_camera_")
        ]
        policy_cams = [k[len(IMAGE_PREFIX):] for k in image_keys]
        pairs = _map_cameras(policy_cams, list(cameras), config.camera_map, notes)
        state_index = None
        if STATE_KEY in policy_config.input_features:
            s_p = int(policy_config.input_features[STATE_KEY].shape[0])
            state_index = np.full(s_p, -1, dtype=np.int64)
            n = min(s_p, ENV_STATE_DIM)
            state_index[:n] = np.arange(n)
            if s_p < ENV_STATE_DIM:
                notes.append(f"policy state has {s_p} dims: given env state dims 0..{s_p - 1}, "
                             f"env dims {s_p}..{ENV_STATE_DIM - 1} not used")
            elif s_p > ENV_STATE_DIM:
                notes.append(f"policy state has {s_p} dims: dims 0..{ENV_STATE_DIM - 1} are the env state, "
                             f"dims {ENV_STATE_DIM}..{s_p - 1} are set to 0.0")
        a_p = int(policy_config.output_features[ACTION_KEY].shape[0])
        action_index = _map_actions(a_p, action_dim, config.action_map, notes)
        return cls(cameras=[(IMAGE_PREFIX + p, e) for p, e in pairs], state_index=state_index,
                   action_index=action_index, notes=notes)

    def policy_state(self, state: np.ndarray) -> np.ndarray | None:
        """Env state (8,) -> policy state (S_p,) float32, or None when the policy takes no state."""
        if self.state_index is None:
            return None
        out = np.zeros(len(self.state_index), dtype=np.float32)
        used = self.state_index >= 0
        out[used] = np.asarray(state, dtype=np.float32)[self.state_index[used]]
        return out

    def env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Policy actions (..., A_p) -> env actions (..., A_env) float32."""
        out = np.zeros((*actions.shape[:-1], len(self.action_index)), dtype=np.float32)
        used = self.action_index >= 0
        out[..., used] = actions[..., self.action_index[used]]
        return out


def _parse_pairs(text: str, what: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if item.count("=") != 1:
            raise PolicyLoadError(f"{what} entry {item!r} is not NAME=VALUE; write e.g. camera1=front,camera2=wrist")
        key, value = (s.strip() for s in item.split("="))
        pairs[key] = value
    return pairs


def _map_cameras(policy_cams: list[str], env_cams: list[str], camera_map: str, notes: list[str]) -> list[tuple[str, str]]:
    """(policy camera, env camera) pairs; see `PolicyConfig.camera_map`."""
    if not policy_cams:
        raise PolicyLoadError("the policy takes no camera image; SALUS monitors vision-language-action policies")
    explicit = _parse_pairs(camera_map, "policy.camera_map")
    for p, e in explicit.items():
        if p not in policy_cams:
            raise PolicyLoadError(f"policy.camera_map names policy camera {p!r}; the policy has {policy_cams}")
        if e not in env_cams:
            raise PolicyLoadError(f"policy.camera_map names env camera {e!r}; rendered cameras are {env_cams} "
                                  "(add it with --cameras)")
    pairs = dict(explicit)
    for p in policy_cams:
        if p not in pairs and p in env_cams:
            pairs[p] = p
    free = [e for e in env_cams if e not in pairs.values()]
    for p in policy_cams:
        if p not in pairs and free:
            pairs[p] = free.pop(0)
            notes.append(f"policy camera {p!r} <- env camera {pairs[p]!r} (by order; set policy.camera_map to choose)")
    for p in policy_cams:
        if p not in pairs:
            notes.append(f"policy camera {p!r} gets no image (no env camera left; SmolVLA attends only to the "
                         "images given); render more with --cameras")
    for e in env_cams:
        if e not in pairs.values():
            notes.append(f"env camera {e!r} is rendered but not given to the policy")
    if not pairs:
        raise PolicyLoadError(f"no env camera could be mapped to the policy cameras {policy_cams}; use --cameras")
    return [(p, pairs[p]) for p in policy_cams if p in pairs]


def _map_actions(a_p: int, a_env: int, action_map: str, notes: list[str]) -> np.ndarray:
    """(A_env,) index array: env dim i <- policy dim index[i] or 0.0 (-1); see `PolicyConfig.action_map`."""
    index = np.full(a_env, -1, dtype=np.int64)
    if action_map.strip():
        targets = [s.strip() for s in action_map.split(",")]
        if len(targets) != a_p:
            raise PolicyLoadError(f"policy.action_map has {len(targets)} entries; the policy outputs {a_p} dims, "
                                  "give one env dim (or -) per policy dim")
        for j, t in enumerate(targets):
            if t == "-":
                continue
            if not t.isdigit() or int(t) >= a_env:
                raise PolicyLoadError(f"policy.action_map entry {t!r} is not an env action dim 0..{a_env - 1} or -")
            index[int(t)] = j
        notes.append(f"action mapping from policy.action_map: env dim <- policy dim {index.tolist()} (-1 = 0.0)")
    elif a_p == a_env:
        index[:] = np.arange(a_env)
    elif a_p > a_env:
        index[:] = np.arange(a_env)
        notes.append(f"policy outputs {a_p} action dims: env uses dims 0..{a_env - 1}, dims {a_env}..{a_p - 1} "
                     "are dropped (set policy.action_map to choose)")
    else:
        # Last dim is the gripper in lerobot's SO100/ALOHA and the LIBERO / Open X-Embodiment conventions.
        index[: a_p - 1] = np.arange(a_p - 1)
        index[a_env - 1] = a_p - 1
        zero = [i for i in range(a_env) if index[i] < 0]
        notes.append(f"policy outputs {a_p} action dims for a {a_env}-dim env: env dims 0..{a_p - 2} <- policy "
                     f"dims 0..{a_p - 2}, env gripper dim {a_env - 1} <- policy dim {a_p - 1}, env dims {zero} "
                     "held at 0.0 (no motion); set policy.action_map to choose")
    return index


class PolicyEnsemble:
    """An ensemble of M lerobot policies driving one env (see the module docstring).

    Args:
        config: `PolicyConfig` (path, ensemble_size M, device, requery_every k, denoising_steps,
            seed, noise_scale, camera_map, action_map).
        cameras: env cameras present in observations, e.g. `("front",)`.
        action_dim: env action size (7: delta position 3, delta rotation 3, gripper 1).
        instruction: the language instruction fed as lerobot's `task`.

    Raises:
        PolicyLoadError: bad path, missing members, unusable device, or a mapping that cannot work.
        ValueError: ensemble_size or requery_every below 1, requery_every above the chunk size, or
            denoising_steps below 0.
    """

    def __init__(self, config: PolicyConfig, cameras: tuple[str, ...], action_dim: int = 7,
                 instruction: str = TASK_INSTRUCTION) -> None:
        if config.ensemble_size < 1:
            raise ValueError(f"ensemble_size is {config.ensemble_size}; use 1 or more")
        if config.requery_every < 1:
            raise ValueError(f"requery_every is {config.requery_every}; use 1 or more")
        if config.denoising_steps < 0:
            raise ValueError(f"denoising_steps is {config.denoising_steps}; use 0 (the checkpoint's own) or more")
        self.config = config
        self.cameras = tuple(cameras)
        self.action_dim = int(action_dim)
        self.instruction = instruction
        self.notes: list[str] = []
        folders = member_folders(config.path)
        if folders:
            if len(folders) < config.ensemble_size:
                raise PolicyLoadError(
                    f"{config.path} holds {len(folders)} members; use --ensemble-size {len(folders)} or fewer, "
                    f"or train more with `salus policy train --members {config.ensemble_size}`"
                )
            self._members: list[LoadedMember] = [load_member(f, config.device) for f in folders[: config.ensemble_size]]
            self.shared_checkpoint = False
        else:
            path = Path(config.path).expanduser()
            if path.is_dir() and not (path / "config.json").is_file():
                raise PolicyLoadError(
                    f"{config.path} holds neither member_<i> folders nor a policy; run `salus policy train` "
                    "or give a policy folder / hub id with --policy"
                )
            self._members = [load_member(config.path, config.device)]
            self.shared_checkpoint = True
            self.notes.append(f"one checkpoint ({config.path}) queried {config.ensemble_size} times with different "
                              "noise: members differ by sampling noise only")
        if config.denoising_steps:
            for m in self._members:
                if hasattr(m.policy.config, "num_steps"):
                    m.policy.config.num_steps = int(config.denoising_steps)
        first = self._members[0].policy.config
        self.chunk_size = int(first.chunk_size)
        if config.requery_every > self.chunk_size:
            raise ValueError(f"requery_every is {config.requery_every} but the policy's chunk has "
                             f"{self.chunk_size} actions; use requery_every <= {self.chunk_size}")
        self._noise_shape = (1, self.chunk_size, int(getattr(first, "max_action_dim", first.output_features[ACTION_KEY].shape[0])))
        for m in self._members[1:]:
            c = m.policy.config
            if (int(c.chunk_size), int(getattr(c, "max_action_dim", 0))) != (self.chunk_size, self._noise_shape[2]) \
                    or c.input_features.keys() != first.input_features.keys():
                raise PolicyLoadError(f"member {m.source} differs from {self._members[0].source} in chunk size, "
                                      "action padding or input features; train the members together")
        self.mapping = IOMapping.build(first, self.cameras, self.action_dim, config)
        self.notes.extend(self.mapping.notes)
        self._device = torch.device(config.device)
        log.info("policy ensemble: %d members from %s on %s, chunk %d, re-query every %d steps, %s denoising steps",
                 self.ensemble_size, config.path, config.device, self.chunk_size, config.requery_every,
                 getattr(first, "num_steps", "n/a"))
        for note in self.notes:
            log.warning("policy mapping: %s", note)
        self._generator = torch.Generator()
        self.reset()

    @property
    def ensemble_size(self) -> int:
        """Number of members M."""
        return int(self.config.ensemble_size)

    def reset(self, seed: int | None = None, instruction: str | None = None) -> None:
        """Starts a new episode: clears chunks and re-seeds the shared noise.

        Args:
            seed: episode seed; with `PolicyConfig.seed` it fixes the noise sequence, so an episode
                replays identically. None uses `PolicyConfig.seed` alone.
            instruction: replaces the instruction from now on (None keeps it).
        """
        if instruction is not None:
            self.instruction = instruction
        for m in self._members:
            m.policy.reset()
        entropy = [int(self.config.seed)] + ([] if seed is None else [int(seed)])
        self._generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1))
        self._chunks: np.ndarray | None = None
        self._chunk_pos = 0
        self._step = 0

    def _raw_batch(self, observation: dict) -> dict[str, Any]:
        """Env observation -> lerobot raw observation dict (images (3,H,W) float32 in [0, 1])."""
        try:
            images = observation["images"]
            state = observation["state"]
        except (KeyError, TypeError):
            raise ValueError("observation must be PickPlaceEnv's dict with 'images' and 'state'") from None
        batch: dict[str, Any] = {"task": self.instruction}
        for key, cam in self.mapping.cameras:
            if cam not in images:
                raise ValueError(f"observation has no image from camera {cam!r} (has {sorted(images)}); "
                                 "render it with --cameras")
            img = torch.from_numpy(np.ascontiguousarray(images[cam]))
            batch[key] = img.permute(2, 0, 1).to(torch.float32).div_(255.0)
        policy_state = self.mapping.policy_state(state)
        if policy_state is not None:
            batch[STATE_KEY] = torch.from_numpy(policy_state)
        return batch

    def _query(self, observation: dict) -> np.ndarray:
        """Predicts a fresh chunk for every member: (M, chunk, A_env) float32."""
        raw = self._raw_batch(observation)
        m_count = self.ensemble_size
        n_noise = m_count if self.shared_checkpoint else 1
        scale = float(self.config.noise_scale)
        noises = [(torch.randn(self._noise_shape, generator=self._generator) * scale).to(self._device)
                  for _ in range(n_noise)]
        chunks = []
        with torch.inference_mode():
            if self.shared_checkpoint:
                member = self._members[0]
                batch = member.preprocessor(dict(raw))
                for noise in noises:
                    chunks.append(member.postprocessor(member.policy.predict_action_chunk(dict(batch), noise=noise)))
            else:
                for member in self._members:
                    batch = member.preprocessor(dict(raw))
                    chunks.append(member.postprocessor(member.policy.predict_action_chunk(batch, noise=noises[0])))
        stacked = torch.cat([c.reshape(1, c.shape[-2], c.shape[-1]) for c in chunks]).float().cpu().numpy()
        return self.mapping.env_actions(stacked)

    def step(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        """One control step.

        Args:
            observation: exactly what `PickPlaceEnv` returns: `{"images": {cam: (S, S, 3) uint8},
                "state": (8,) float32}`.

        Returns:
            (action, member_actions): the executed action, (A_env,) float32 = mean over members of
            `member_actions`, (M, A_env) float32, each member's action for this step in env units.
        """
        if self._chunks is None or self._chunk_pos >= self.config.requery_every:
            self._chunks = self._query(observation)
            self._chunk_pos = 0
        member_actions = np.ascontiguousarray(self._chunks[:, self._chunk_pos], dtype=np.float32)
        self._chunk_pos += 1
        self._step += 1
        return member_actions.mean(axis=0).astype(np.float32), member_actions

    def close(self) -> None:
        """Releases the members (and their GPU memory)."""
        self._members = []
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
