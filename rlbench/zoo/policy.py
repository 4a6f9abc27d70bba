"""The deployable policy: observation -> deterministic action, as a plain torch module.

Everything an SB3 agent does around its network at ``predict(deterministic=True)`` is folded
in, so the module alone reproduces the agent:

* observation normalisation with frozen ``VecNormalize`` statistics (PPO, TRPO);
* the hidden MLP and the action head (the Gaussian mean for PPO/TRPO/SAC);
* SAC's and TD3/DDPG's ``tanh`` squashing and the rescaling from [-1, 1] to the action bounds;
* clipping to the action bounds;
* for a discrete-action policy (DQN), the greedy action: the argmax over the head's Q-values, an
  int64 index per observation (``spec.discrete``; no squashing or clipping).

The structure is described by a :class:`PolicySpec` (widths, activation, flags), saved next to
the weights. A pruned policy is the same module with narrower hidden layers, so saving the spec
and the state dict rebuilds any variant with ``torch.load(weights_only=True)``: no pickled code.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlbench.core.io import atomic_write_bytes

FORMAT = "rlbench.policy/1"
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class PolicySpec:
    """Shape of a deployable policy."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...]
    """Widths of the hidden Linear layers, input side first."""
    activation: str = "relu"
    """Hidden activation: ``relu`` or ``tanh`` (SB3's PPO default is tanh)."""
    squash: bool = False
    """Apply tanh to the head and rescale [-1, 1] to the action bounds (SAC, TD3, DDPG)."""
    normalize: bool = False
    """Normalise observations with frozen VecNormalize statistics (PPO, TRPO)."""
    clip_obs: float = 10.0
    """VecNormalize's clip of normalised observations."""
    extra: dict = field(default_factory=dict, compare=False)
    discrete: bool = False
    """The head gives one Q-value per action (``act_dim`` actions) and the policy returns the argmax
    index, int64 of shape [B] (DQN)."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        if not self.discrete:
            del d["discrete"]  # continuous specs serialise as before the field existed (same bytes, same sha256)
        return d

    @classmethod
    def from_json(cls, d: dict) -> PolicySpec:
        d = dict(d)
        d["hidden"] = tuple(int(w) for w in d["hidden"])
        return cls(**d)


class DeployablePolicy(nn.Module):
    """obs [B, obs_dim] float32 -> action [B, act_dim] float32, deterministic (discrete: [B] int64)."""

    def __init__(self, spec: PolicySpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("obs_mean", torch.zeros(spec.obs_dim))
        self.register_buffer("obs_std", torch.ones(spec.obs_dim))
        self.register_buffer("act_low", -torch.ones(spec.act_dim))
        self.register_buffer("act_high", torch.ones(spec.act_dim))
        layers: list[nn.Module] = []
        width = spec.obs_dim
        for w in spec.hidden:
            layers += [nn.Linear(width, w), ACTIVATIONS[spec.activation]()]
            width = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, spec.act_dim)

    def head_output(self, obs: torch.Tensor) -> torch.Tensor:
        """The head's output before squashing, clipping or argmax (a DQN's Q-values)."""
        x = obs
        if self.spec.normalize:
            x = torch.clamp((x - self.obs_mean) / self.obs_std, -self.spec.clip_obs, self.spec.clip_obs)
        return self.head(self.body(x))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.head_output(obs)
        if self.spec.discrete:
            return torch.argmax(x, dim=1)  # first maximum on ties, as ONNX ArgMax and NumPy argmax
        if self.spec.squash:
            half = (self.act_high - self.act_low) / 2
            x = torch.tanh(x) * half + (self.act_high + self.act_low) / 2
        return torch.maximum(torch.minimum(x, self.act_high), self.act_low)

    def linears(self) -> list[nn.Linear]:
        """Hidden layers then head, in forward order."""
        return [m for m in self.body if isinstance(m, nn.Linear)] + [self.head]

    def current_spec(self) -> PolicySpec:
        """The spec read off the layers (differs from ``self.spec`` after structured pruning)."""
        hidden = tuple(m.out_features for m in self.body if isinstance(m, nn.Linear))
        s = self.spec
        return PolicySpec(s.obs_dim, s.act_dim, hidden, s.activation, s.squash, s.normalize, s.clip_obs,
                          dict(s.extra), s.discrete)


def num_params(module: nn.Module) -> int:
    """Trainable parameter count (buffers such as normalisation statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def save_policy(module: DeployablePolicy, path: Path) -> bytes:
    """Serialise spec + weights; returns the bytes written (callers write them atomically)."""
    spec = module.current_spec()
    payload = {"format": FORMAT, "spec": spec.to_json(),
               "state_dict": {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}}
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def load_policy(path: Path) -> DeployablePolicy:
    """Rebuild a policy from :func:`save_policy`'s file (``weights_only``: no code is unpickled)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an rlbench policy file (format {FORMAT!r} expected)")
    module = DeployablePolicy(PolicySpec.from_json(payload["spec"]))
    module.load_state_dict(payload["state_dict"])
    module.eval()
    return module


def policy_weights_numpy(module: DeployablePolicy) -> dict[str, np.ndarray]:
    """All tensors as float32 NumPy arrays (for the ONNX builder and the NumPy reference)."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in module.state_dict().items()}
