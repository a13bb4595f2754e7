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

One query is one batched computation (`PolicyEnsemble.query_mode`):
- `"stacked"`: distinct SmolVLA members of one architecture. Their parameters are stacked along a
  leading member dimension (`torch.func.stack_module_state`) and one member's model is evaluated
  over that dimension with `torch.func.vmap` of `torch.func.functional_call`: the vision encoder,
  the VLM prefix with its KV cache and every flow-matching denoising step run once for all M members.
  The cheap processors (tokeniser, state normalisation, action unnormalisation) run per member, so
  members with their own dataset statistics stay correct; inputs that are equal for every member
  (the images, usually the tokens) enter the batched model once, unstacked.
- `"noise batch"`: one checkpoint queried M times; its M noise tensors go along lerobot's batch
  dimension in one `predict_action_chunk` call (the observation repeated M times).
- `"sequential"`: members one after another, as lerobot's `predict_action_chunk` per member. Taken
  (and logged once) where members cannot be stacked: another policy type than SmolVLA, members whose
  configurations or parameter shapes differ (e.g. their own `num_steps`), an observation queue of
  more than one step, real-time chunking, a compiled model, a single member, or
  `PolicyConfig.batched_members = false`.
All three give the same member actions up to float rounding (measured below 1e-5 on the embedded
ensemble, `tests/test_policy.py`), and draw the same noise from the same generator, so an episode
replays identically from its seed whichever path runs. Stacking shares memory: each member's own
parameters become views into the stacked tensors.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import warnings
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
QUERY_MODES = ("stacked", "noise batch", "sequential")
"""Values of `PolicyEnsemble.query_mode` (see the module docstring)."""
_TRAINING_ONLY_FIELDS = frozenset({
    "device", "use_amp", "push_to_hub", "repo_id", "private", "tags", "license", "pretrained_path",
    "pretrained_revision", "n_action_steps", "freeze_vision_encoder", "train_expert_only", "train_state_proj",
    "optimizer_lr", "optimizer_betas", "optimizer_eps", "optimizer_weight_decay", "optimizer_grad_clip_norm",
    "scheduler_warmup_steps", "scheduler_decay_steps", "scheduler_decay_lr", "vlm_model_name", "load_vlm_weights",
})
"""`SmolVLAConfig` fields that do not change `predict_action_chunk` (training, hub metadata, where the
backbone files lie; `n_action_steps` only sizes `select_action`'s queue); the others must be equal for
members to be stacked."""


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


@dataclass
class ChunkQuery:
    """What one re-query of the ensemble produced (the input of `salus_engine.signal_families`).

    Attributes:
        chunks: (M, L, A_env) float32 every member's action chunk in env units.
        velocities: (S, M, L, A_p) float32 the flow-matching velocity v_t of every member at each of
            the S denoising steps (normalised action units), or None where SmolVLA's sampling loop
            does not run (`PolicyEnsemble.sampler_reason`).
        prefix_embedding: (M, D) float32 each member's pooled prefix embedding (mean over the valid
            prefix tokens of the VLM's last-layer output), or None likewise.
        entropy_samples: (K, M, L, A_env) float32 chunks sampled with K fresh noises, or None when
            `PolicyConfig.entropy_samples` is 0.
    """

    chunks: np.ndarray
    velocities: np.ndarray | None = None
    prefix_embedding: np.ndarray | None = None
    entropy_samples: np.ndarray | None = None


class _MemberChunk(torch.nn.Module):
    """One SmolVLA member's normalised action chunk as a module call, so that `functional_call` can run
    it with any member's parameters.

    It is lerobot 0.6.1's `SmolVLAPolicy._get_action_chunk` (`prepare_images`, `prepare_state`,
    `VLAFlowMatching.sample_actions` with its forward-Euler loop `euler_integrate`, unpadding to the
    action size) without the observation queue, which with `n_obs_steps == 1` holds only the current
    observation, and without real-time chunking (members that use it are not run here). The loop is
    written out so that it also returns what the signal families read inside it: the velocity of
    every denoising step and the pooled prefix embedding (`tests/test_signal_families.py` checks
    that its actions equal lerobot's `predict_action_chunk`).
    """

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, torch.Tensor], noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From a preprocessed batch and (B, chunk, max_action_dim) noise: (B, chunk, A_p) normalised
        actions, (S, B, chunk, A_p) velocities, (B, D) pooled prefix embedding."""
        from lerobot.policies.smolvla.modeling_smolvla import make_att_2d_masks
        from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

        policy = self.policy
        model = policy.model
        images, img_masks = policy.prepare_images(batch)
        state = policy.prepare_state(batch)
        prefix_embs, prefix_pad_masks, prefix_att_masks = model.embed_prefix(
            images, img_masks, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK], state=state)
        prefix_att_2d_masks = make_att_2d_masks(prefix_pad_masks, prefix_att_masks)
        prefix_position_ids = torch.cumsum(prefix_pad_masks, dim=1) - 1
        outputs, past_key_values = model.vlm_with_expert.forward(
            attention_mask=prefix_att_2d_masks, position_ids=prefix_position_ids, past_key_values=None,
            inputs_embeds=[prefix_embs, None], use_cache=model.config.use_cache)
        valid = prefix_pad_masks.to(outputs[0].dtype)[..., None]
        pooled = (outputs[0] * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1.0)
        steps = model.config.num_steps
        dt = -1.0 / steps
        x_t = noise
        velocities = []
        for step in range(steps):
            time = torch.tensor(1.0 + step * dt, dtype=torch.float32, device=noise.device).expand(noise.shape[0])
            v_t = model.denoise_step(x_t=x_t, prefix_pad_masks=prefix_pad_masks, past_key_values=past_key_values,
                                     timestep=time)
            x_t = x_t + dt * v_t
            velocities.append(v_t)
        size = policy.config.action_feature.shape[0]
        return x_t[:, :, :size], torch.stack(velocities)[..., :size], pooled


def _sampler_reason(members: list[LoadedMember]) -> str | None:
    """Why `_MemberChunk` cannot run these members (SmolVLA's sampling loop), or None if it can."""
    from lerobot.policies.smolvla import SmolVLAPolicy

    policies = [m.policy for m in members]
    if not all(type(p) is SmolVLAPolicy for p in policies):
        kinds = ", ".join(sorted({type(p).__name__ for p in policies}))
        return f"the batched pass knows SmolVLA's sampling only; members are {kinds}"
    first = policies[0].config
    if first.n_obs_steps != 1:
        return f"n_obs_steps is {first.n_obs_steps} (lerobot's observation queue is not batched)"
    real_time_chunking = getattr(getattr(first, "rtc_config", None), "enabled", False)
    if first.adapt_to_pi_aloha or real_time_chunking or first.compile_model or first.use_peft:
        return "a member uses ALOHA adaptation, real-time chunking, torch.compile or PEFT"
    return None


def _hidden_size(policy: Any) -> int:
    """Width of a SmolVLA policy's prefix embedding (its VLM's hidden size)."""
    vlm_config = policy.model.vlm_with_expert.config
    return int(getattr(getattr(vlm_config, "text_config", vlm_config), "hidden_size", 0))


def _incomparable_reason(members: list[LoadedMember]) -> str | None:
    """Why the sampling loop's outputs of these SmolVLA members cannot be set side by side (members
    integrating the flow in different numbers of steps, or embeddings of different widths), or None.
    Such members still run one after another (`_unstackable_reason` names what differs)."""
    policies = [m.policy for m in members]
    steps = sorted({int(p.config.num_steps) for p in policies})
    if len(steps) > 1:
        return (f"the members integrate the flow in different numbers of denoising steps {steps}; "
                "set --denoising-steps to record them")
    widths = sorted({_hidden_size(p) for p in policies})
    if len(widths) > 1:
        return f"the members' prefix embeddings differ in width {widths}"
    return None


def _unstackable_reason(members: list[LoadedMember]) -> str | None:
    """Why the members cannot be stacked into one vmapped model, or None if they can."""
    if len(members) < 2:
        return "a single member"
    reason = _sampler_reason(members)
    if reason is not None:
        return reason
    policies = [m.policy for m in members]
    first = policies[0].config
    for member, policy in zip(members[1:], policies[1:]):
        differ = [f.name for f in dataclasses.fields(first) if f.name not in _TRAINING_ONLY_FIELDS
                  and getattr(first, f.name) != getattr(policy.config, f.name)]
        if differ:
            return f"member {member.source} differs from {members[0].source} in {', '.join(differ)}"
        backbone = [p.model.vlm_with_expert.config.to_dict() for p in (policies[0], policy)]
        for cfg in backbone:
            cfg.pop("_name_or_path", None)
        if backbone[0] != backbone[1]:
            return f"member {member.source} has another backbone configuration than {members[0].source}"
        shapes = [{k: (v.shape, v.dtype, v.device) for k, v in p.state_dict().items()} for p in (policies[0], policy)]
        if shapes[0] != shapes[1]:
            return f"member {member.source} has other parameter names or shapes than {members[0].source}"
    return None


class _StackedMembers:
    """M SmolVLA members of one architecture evaluated as one vmapped computation (torch.func).

    The members' parameters and buffers are stacked along a leading member dimension
    (`torch.func.stack_module_state`); each member's own tensors are then re-pointed at its slice,
    so the weights are held once. `chunks` runs the first member's module with the stacked tensors
    under `torch.func.vmap` over the member dimension.
    """

    def __init__(self, members: list[LoadedMember]) -> None:
        from torch.func import stack_module_state

        modules = [_MemberChunk(m.policy) for m in members]
        with torch.no_grad():
            params, buffers = stack_module_state(modules)
            self._params = {k: v.requires_grad_(False) for k, v in params.items()}
            self._buffers = buffers
            for i, module in enumerate(modules):
                for name, tensor in module.named_parameters():
                    tensor.data = self._params[name][i]
                for name, tensor in module.named_buffers():
                    tensor.data = self._buffers[name][i]
        self._module = modules[0]
        # vmap runs an op without a batching rule (e.g. CPU scaled_dot_product_attention in the vision
        # encoder) once per member and warns each time; the result is the same, only slower
        warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented "
                                "the batching rule", category=UserWarning)

    def _member_chunk(self, params: dict, buffers: dict, batch: dict, noise: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from torch.func import functional_call

        return functional_call(self._module, (params, buffers), (batch, noise))

    def chunks(self, batches: list[dict[str, Any]], noise: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Every member's normalised chunk from its preprocessed batch, with what the signal
        families read inside the sampling loop.

        Args:
            batches: M preprocessed lerobot batches (one per member, batch size 1).
            noise: (1, chunk, max_action_dim) float32 flow-matching noise shared by every member.

        Returns:
            (chunks (M, 1, chunk, A_p), velocities (M, S, 1, chunk, A_p), prefix embeddings (M, 1, D)),
            float32; None when the members' batches differ in keys or shapes (e.g. tokenisers of
            different vocabularies) and cannot be stacked.
        """
        from torch.func import vmap

        keys = [k for k, v in batches[0].items() if isinstance(v, torch.Tensor)]
        inputs: dict[str, torch.Tensor] = {}
        in_dims: dict[str, int | None] = {}
        for key in keys:
            values = [b.get(key) for b in batches]
            if not all(isinstance(v, torch.Tensor) and v.shape == values[0].shape and v.dtype == values[0].dtype
                       for v in values):
                return None
            if all(torch.equal(values[0], v) for v in values[1:]):
                inputs[key], in_dims[key] = values[0], None  # one copy for all members (images, tokens)
            else:
                inputs[key], in_dims[key] = torch.stack(values), 0
        return vmap(self._member_chunk, in_dims=(0, 0, in_dims, None))(self._params, self._buffers, inputs, noise)


class PolicyEnsemble:
    """An ensemble of M lerobot policies driving one env (see the module docstring).

    Args:
        config: `PolicyConfig` (path, ensemble_size M, device, requery_every k, denoising_steps,
            seed, noise_scale, camera_map, action_map, batched_members).
        cameras: env cameras present in observations, e.g. `("front",)`.
        action_dim: env action size (7: delta position 3, delta rotation 3, gripper 1).
        instruction: the language instruction fed as lerobot's `task`.

    Attributes:
        query_mode: how a query evaluates the members, one of `QUERY_MODES`: `"stacked"` (one vmapped
            pass over stacked member parameters), `"noise batch"` (one checkpoint, M noises along the
            batch dimension) or `"sequential"` (see the module docstring for when each is taken).

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
        self._stacked: _StackedMembers | None = None
        self.query_mode = "sequential"
        if self.shared_checkpoint:
            if config.batched_members and config.ensemble_size > 1:
                self.query_mode = "noise batch"
        elif not config.batched_members:
            log.info("policy ensemble: members run one after another (policy.batched_members is false)")
        elif (reason := _unstackable_reason(self._members)) is None:
            self._stacked = _StackedMembers(self._members)
            self.query_mode = "stacked"
        elif len(self._members) > 1:
            self._fall_back(reason)
        self.sampler_reason = _sampler_reason(self._members) or _incomparable_reason(self._members)
        """Why the signal families read inside SmolVLA's sampling loop are unavailable, or None."""
        self._samplers = None if self.sampler_reason else [_MemberChunk(m.policy) for m in self._members]
        self.mapping = IOMapping.build(first, self.cameras, self.action_dim, config)
        self.notes.extend(self.mapping.notes)
        self._device = torch.device(config.device)
        log.info("policy ensemble: %d members from %s on %s, chunk %d, re-query every %d steps, %s denoising steps, "
                 "query %s", self.ensemble_size, config.path, config.device, self.chunk_size, config.requery_every,
                 getattr(first, "num_steps", "n/a"), self.query_mode)
        for note in self.notes:
            log.warning("policy mapping: %s", note)
        self._generator = torch.Generator()
        self._entropy_generator = torch.Generator()
        self.last_query: ChunkQuery | None = None
        """The query made at the latest `step`, None when that step read the current chunks."""
        self.reset()

    @property
    def ensemble_size(self) -> int:
        """Number of members M."""
        return int(self.config.ensemble_size)

    @property
    def embedding_width(self) -> int:
        """Width D of the pooled prefix embedding (the VLM's hidden size); 0 without the sampling loop."""
        if self.sampler_reason is not None:
            return 0
        return _hidden_size(self._members[0].policy)

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
        # the entropy samples draw from their own sequence, so the executed chunks do not depend on K
        self._entropy_generator.manual_seed(
            int(np.random.SeedSequence(entropy + [1]).generate_state(1, np.uint64)[0] >> 1))
        self._chunks: np.ndarray | None = None
        self.last_query = None
        self._pending_query: ChunkQuery | None = None
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

    def _noises(self, generator: torch.Generator) -> list[torch.Tensor]:
        """One query's noise: (1, chunk, max_action_dim) shared by every member, or M of them for a
        single checkpoint."""
        count = self.ensemble_size if self.shared_checkpoint else 1
        scale = float(self.config.noise_scale)
        return [(torch.randn(self._noise_shape, generator=generator) * scale).to(self._device) for _ in range(count)]

    def _query(self, observation: dict) -> ChunkQuery:
        """Predicts a fresh chunk for every member, with what the signal families read.

        One noise draw from the episode's generator per query ((1, chunk, max_action_dim), shared by
        every member), or M draws for a single checkpoint; the path (`query_mode`) does not change
        the draws. `PolicyConfig.entropy_samples` K adds K queries with noise from a second sequence.
        """
        raw = self._raw_batch(observation)
        chunks, velocities, pooled = self._sample(raw, self._noises(self._generator))
        samples = None
        if self.config.entropy_samples:
            samples = np.stack([self._sample(raw, self._noises(self._entropy_generator))[0]
                                for _ in range(int(self.config.entropy_samples))])
        return ChunkQuery(chunks=chunks, velocities=velocities, prefix_embedding=pooled, entropy_samples=samples)

    def _sample(self, raw: dict[str, Any], noises: list[torch.Tensor]
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Every member's chunk for the given noise: (M, chunk, A_env) env units, (S, M, chunk, A_p)
        velocities and (M, D) prefix embeddings (None without the sampling loop), float32."""
        with torch.inference_mode():
            if self.shared_checkpoint:
                normalised = self._sample_one_checkpoint(raw, noises)
                members = [self._members[0]] * len(normalised[0])
            else:
                batches = [member.preprocessor(dict(raw)) for member in self._members]
                stacked = self._stacked.chunks(batches, noises[0]) if self._stacked is not None else None
                if stacked is None and self._stacked is not None:
                    self._fall_back("the members' preprocessed observations differ in keys or shapes "
                                    "(e.g. their tokenisers)")
                if stacked is not None:
                    actions, velocities, pooled = stacked
                    normalised = (actions[:, 0], velocities[:, :, 0].transpose(0, 1), pooled[:, 0])
                else:
                    normalised = self._sample_each(batches, [noises[0]] * len(batches))
                members = self._members
            actions = [member.postprocessor(normalised[0][i:i + 1]) for i, member in enumerate(members)]
        chunks = torch.cat([a.reshape(-1, a.shape[-2], a.shape[-1]) for a in actions]).float().cpu().numpy()
        velocities, pooled = (None, None) if normalised[1] is None else (
            normalised[1].float().cpu().numpy(), normalised[2].float().cpu().numpy())
        return self.mapping.env_actions(chunks), velocities, pooled

    def _sample_each(self, batches: list[dict[str, Any]], noises: list[torch.Tensor]) -> tuple:
        """Batches one after another (member i's model on batches[i], or one checkpoint on each):
        (M, chunk, A_p) normalised actions and, with the sampling loop, (S, M, chunk, A_p) velocities
        and (M, D) embeddings (else None, None)."""
        if self._samplers is None:
            members = self._members if len(self._members) == len(batches) else [self._members[0]] * len(batches)
            return torch.cat([m.policy.predict_action_chunk(dict(b), noise=n)
                              for m, b, n in zip(members, batches, noises)]), None, None
        samplers = self._samplers if len(self._samplers) == len(batches) else [self._samplers[0]] * len(batches)
        outs = [sampler(b, n) for sampler, b, n in zip(samplers, batches, noises)]
        return (torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs], dim=1),
                torch.cat([o[2] for o in outs]))

    def _sample_one_checkpoint(self, raw: dict[str, Any], noises: list[torch.Tensor]) -> tuple:
        """One checkpoint for the M noise tensors, in one call along lerobot's batch dimension
        ("noise batch") or one after another; the result as in `_sample_each`."""
        member = self._members[0]
        batch = member.preprocessor(dict(raw))
        if self.query_mode == "sequential":
            return self._sample_each([batch] * len(noises), noises)
        m_count = len(noises)
        repeated = {k: v.repeat(m_count, *([1] * (v.ndim - 1))) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()}
        if self._samplers is None:
            return member.policy.predict_action_chunk(repeated, noise=torch.cat(noises)), None, None
        return self._samplers[0](repeated, torch.cat(noises))

    def _fall_back(self, reason: str) -> None:
        """Switches to the sequential path for good and logs why (once per ensemble)."""
        self._stacked = None
        self.query_mode = "sequential"
        log.warning("policy ensemble: members run one after another, not batched: %s", reason)

    def step(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        """One control step.

        Args:
            observation: exactly what `PickPlaceEnv` returns: `{"images": {cam: (S, S, 3) uint8},
                "state": (8,) float32}`.

        Returns:
            (action, member_actions): the executed action, (A_env,) float32 = mean over members of
            `member_actions`, (M, A_env) float32, each member's action for this step in env units.
            `last_query` holds the step's `ChunkQuery` when the members re-queried at this step.
        """
        self.last_query, self._pending_query = self._pending_query, None
        if self._chunks is None or self._chunk_pos >= self.config.requery_every:
            self.last_query = self._query(observation)
            self._chunks = self.last_query.chunks
            self._chunk_pos = 0
        member_actions = np.ascontiguousarray(self._chunks[:, self._chunk_pos], dtype=np.float32)
        self._chunk_pos += 1
        self._step += 1
        return member_actions.mean(axis=0).astype(np.float32), member_actions

    def requery(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        """Replaces the current action chunks with a fresh query on `observation`, for the step that
        `step` has just returned (the monitor's `replan` intervention): the members predict with the
        next noise of the episode's sequence, and the result replaces that step's actions.

        The query is reported as `last_query` at the next `step` (the signal families read it there);
        the next regular query follows `requery_every` steps after this one.

        Returns:
            (action (A_env,), member_actions (M, A_env)) float32: the fresh chunks' first step.
        """
        query = self._query(observation)
        self._chunks = query.chunks
        self._chunk_pos = 1
        self._pending_query = query
        member_actions = np.ascontiguousarray(self._chunks[:, 0], dtype=np.float32)
        return member_actions.mean(axis=0).astype(np.float32), member_actions

    def discard_chunks(self) -> None:
        """Forgets the current action chunks: the next `step` queries the members afresh (after the
        monitor's expert handover or retreat, whose motion the old chunks did not plan for)."""
        self._chunks = None

    def close(self) -> None:
        """Releases the members (and their GPU memory)."""
        self._members = []
        self._stacked = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
