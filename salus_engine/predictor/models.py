"""The failure-prediction networks: from per-step inputs (the six signals and the signal families,
`salus_engine.predictor.inputs`) to failure-type probabilities.

Four kinds (`ModelSpec.kind`):

- `temporal`: a causal temporal convolutional network over the episode so
  far (Bai et al. 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent Networks for
  Sequence Modeling"): layer i is a kernel-3 convolution dilated by 2**i with ReLU, so four layers see
  31 steps; a 1x1 convolution gives the 16 outputs at every step. The left edge is padded by
  repeating each layer's first input, as the online path does before an episode's first step. About
  18K parameters at 84 inputs and 32 channels (ActProbe-sized).
- `multi-horizon` (default): inputs are the six signals of the current step and, with `window` > 1,
  of the `window - 1` previous steps (6 * window inputs); 16 sigmoid outputs = 4 horizons x 4 failure
  types, output `h * 4 + k` = probability that failure type k happens within `horizons[h]` steps.
- `outcome` (default of `salus train`): SAFE's episode-level failure probe ("SAFE: Multitask Failure
  Detection for Vision-Language-Action Models", NeurIPS 2025, github.com/vla-safe/SAFE) on our
  inputs. An MLP reads each step's inputs with their running mean and running maximum over the
  episode so far (`dataset.history_features`, 3 x the input columns); its 4 sigmoid outputs are the
  probability that the episode ends in failure type k, trained on every step of an episode with that
  episode's outcome (each episode weighted equally). It says which way an episode is going, not how
  soon: its 4 outputs stand for every horizon, as for `single-horizon`.
- `single-horizon`: the seeds' 6 -> 64 -> 64 -> 4 network (4,868 parameters, the seed notes' predictor); its 4
  outputs are trained on the longest horizon's labels, and at evaluation the same 4 probabilities
  stand for every horizon.

Inputs are standardised inside the network with the training split's per-signal mean and standard
deviation, stored as buffers and so saved with the weights.

An MLP of `ModelSpec.members` = M > 1 holds M independently initialised members that read the same
inputs and train side by side (each member's loss is its own; they share the mini-batches); its
probabilities are the mean of the members' (a deep ensemble, Lakshminarayanan et al. 2017). The
members' layers are stacked, (M, in, out) weights, so that each layer is one batched product. With
`ModelSpec.member_inputs` each member reads only its own columns (`MemberLinear.input_mask`), so the
ensemble averages models of different inputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from salus_engine.predictor.spec import TEMPORAL_KERNEL, ModelSpec

__all__ = ["MemberLinear", "ModelSpec", "SignalMLP", "TemporalConvNet", "build_model", "count_parameters"]


class MemberLinear(nn.Module):
    """M independent linear layers applied to the same or to per-member inputs.

    `weight` (M, in, out) and `bias` (M, out) float32, each member initialised as `nn.Linear`
    initialises its own. `forward(x)`: x (N, in) or (M, N, in) -> (M, N, out).

    `input_mask` (M, in) bool, optional: member m reads input i only where it is True. The other
    weights start at zero and the forward pass multiplies them by zero, so they get no gradient and
    stay zero (AdamW's decay keeps a zero at zero): the saved weights alone describe the model.
    """

    def __init__(self, members: int, width: int, size: int, input_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, width, size))
        self.bias = nn.Parameter(torch.empty(members, size))
        bound = 1.0 / math.sqrt(width)  # nn.Linear's default: kaiming_uniform(a=sqrt(5)) and its bias rule
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)
        self.input_mask: torch.Tensor | None
        if input_mask is None:
            self.input_mask = None
        else:  # not persistent: the zero weights are what is saved
            self.register_buffer("input_mask", input_mask.to(torch.float32)[:, :, None], persistent=False)
            with torch.no_grad():
                self.weight.mul_(self.input_mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.input_mask is None else self.weight * self.input_mask
        if x.dim() == 2:
            return torch.einsum("ni,mio->mno", x, weight) + self.bias[:, None, :]
        return torch.baddbmm(self.bias[:, None, :], x, weight)


class SignalMLP(nn.Module):
    """ReLU MLP with built-in input standardisation.

    `forward(x)`: x (N, n_inputs) float32 raw signals (window-stacked, oldest first) -> logits
    (N, members x n_outputs) float32, member by member. `probabilities(x)` -> (N, H, 4) float32
    sigmoid probabilities, the mean over members.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("input_mean", torch.zeros(spec.n_inputs))
        self.register_buffer("input_std", torch.ones(spec.n_inputs))
        layers: list[nn.Module] = []
        width = spec.n_inputs
        members = spec.members
        mask = spec.input_mask()

        def linear(width: int, size: int, input_mask: torch.Tensor | None = None) -> nn.Module:
            return nn.Linear(width, size) if members == 1 else MemberLinear(members, width, size, input_mask)

        sizes = (*spec.hidden, spec.n_outputs)
        for i, size in enumerate(sizes):  # the member input mask applies to the first layer
            layers.append(linear(width, size, torch.from_numpy(mask) if i == 0 and mask is not None else None))
            if i < len(spec.hidden):
                layers.append(nn.ReLU())
            width = size
        self.net = nn.Sequential(*layers)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Sets the input standardisation; `std` below 1e-6 (a constant signal) is replaced by 1."""
        std = torch.where(std < 1e-6, torch.ones_like(std), std)
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.net((x - self.input_mean) / self.input_std)
        if self.spec.members == 1:
            return z
        return z.permute(1, 0, 2).reshape(len(x), -1)  # (M, N, out) -> (N, M x out), member by member

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, 4) probabilities (the mean over members); a `single-horizon` or `outcome` model's 4
        outputs are repeated for every horizon."""
        p = torch.sigmoid(self.forward(x))
        if self.spec.members > 1:
            p = p.reshape(len(x), self.spec.members, -1).mean(dim=1)
        types = len(self.spec.failure_types)
        if self.spec.same_at_every_horizon:
            return p[:, None, :].expand(-1, len(self.spec.horizons), types).contiguous()
        return p.reshape(-1, len(self.spec.horizons), types)


class TemporalConvNet(nn.Module):
    """Causal dilated convolutions with built-in input standardisation (see the module docstring).

    `forward(x)`: x (B, T, n_inputs) float32 raw inputs of B episodes (padded at the end) -> logits
    (B, T, n_outputs); the output at step t depends on steps <= t only. `probabilities(x)`: x
    (T, n_inputs) of one episode -> (T, H, 4) sigmoid probabilities.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        n_inputs = len(spec.signal_names)
        self.register_buffer("input_mean", torch.zeros(n_inputs))
        self.register_buffer("input_std", torch.ones(n_inputs))
        convs = []
        width = n_inputs
        for i, channels in enumerate(spec.hidden):
            convs.append(nn.Conv1d(width, channels, TEMPORAL_KERNEL, dilation=2 ** i))
            width = channels
        self.convs = nn.ModuleList(convs)
        self.head = nn.Conv1d(width, spec.n_outputs, 1)

    set_normalisation = SignalMLP.set_normalisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = ((x - self.input_mean) / self.input_std).transpose(1, 2)
        for conv in self.convs:
            h = torch.relu(conv(nn.functional.pad(h, ((TEMPORAL_KERNEL - 1) * conv.dilation[0], 0), mode="replicate")))
        return self.head(h).transpose(1, 2)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(T, H, 4) probabilities of one episode's (T, n_inputs) inputs."""
        p = torch.sigmoid(self.forward(x[None]))[0]
        return p.reshape(-1, len(self.spec.horizons), len(self.spec.failure_types))


def model_scores(model, x: np.ndarray, batch: int = 65536) -> np.ndarray:
    """(N, H, 4) float32 probabilities of an MLP `model` for raw inputs x (N, n_inputs)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(model.probabilities(torch.from_numpy(np.ascontiguousarray(x[start:start + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(model.spec.horizons), len(model.spec.failure_types)), np.float32)


def temporal_scores(model, x: np.ndarray, offsets: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, H, 4) float32 probabilities of a temporal `model` for the rows x (N, n_inputs) of the
    consecutive episodes at `offsets` (each episode scored from its first step, as online)."""
    spec = model.spec
    out = np.zeros((len(x), len(spec.horizons), len(spec.failure_types)), np.float32)
    lengths = np.diff(offsets)
    with torch.no_grad():
        for first in range(0, len(lengths), batch):
            ids = range(first, min(first + batch, len(lengths)))
            longest = int(max(lengths[e] for e in ids))
            padded = np.zeros((len(ids), longest, x.shape[1]), np.float32)
            for j, e in enumerate(ids):
                rows = x[offsets[e]:offsets[e + 1]]
                padded[j, :len(rows)], padded[j, len(rows):] = rows, rows[-1]
            p = torch.sigmoid(model(torch.from_numpy(padded))).numpy()
            for j, e in enumerate(ids):
                out[offsets[e]:offsets[e + 1]] = p[j, :lengths[e]].reshape(lengths[e], len(spec.horizons), -1)
    return out


def build_model(spec: ModelSpec) -> SignalMLP | TemporalConvNet:
    """The untrained network of a spec."""
    return TemporalConvNet(spec) if spec.kind == "temporal" else SignalMLP(spec)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the standardisation buffers are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
