"""From a trained SB3 agent to the deployable policy files shipped in ``baselines/policies``.

A shipped policy is a folder ``baselines/policies/ALGO-ENV/`` holding

* ``policy.pt``: the deployable torch module (:mod:`rlbench.zoo.policy`), weights only;
* ``policy.onnx``: the same function as an ONNX graph (:mod:`rlbench.zoo.onnx_graph`);
* ``agent.pt``: the SB3 policy's state dict with critic (no optimiser, no replay buffer, no
  target networks) and the VecNormalize statistics, for RL fine-tuning (QAT) and the
  equivalence test against SB3's own ``predict``;
* ``meta.json``: algorithm, environment, spaces, budget, seed, library versions, the recorded
  evaluation, and the sha256 of every file above.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlbench.core.errors import PolicyError
from rlbench.core.io import atomic_write_json, replace_dir, sha256_bytes
from rlbench.zoo.policy import DeployablePolicy, PolicySpec, save_policy

META_SCHEMA = 1


def _linears(seq: nn.Module) -> list[nn.Linear]:
    return [m for m in seq.modules() if isinstance(m, nn.Linear)]


def _activation_name(seq: nn.Module) -> str:
    for m in seq.modules():
        if isinstance(m, nn.ReLU):
            return "relu"
        if isinstance(m, nn.Tanh):
            return "tanh"
    return "relu"


def deployable_from_sb3(model, vecnormalize=None) -> DeployablePolicy:
    """Fold an SB3/sb3-contrib agent (and its VecNormalize) into a :class:`DeployablePolicy`."""
    algo = getattr(model, "rlbench_algo", type(model).__name__.upper())
    space = model.action_space
    obs_dim = int(np.prod(model.observation_space.shape))
    discrete = algo == "DQN"
    act_dim = int(space.n) if discrete else int(np.prod(space.shape))
    policy = model.policy
    if discrete:  # the online Q-network; the greedy action is its argmax (SB3's predict(deterministic=True))
        layers = _linears(policy.q_net.q_net)
        hidden_layers, head = layers[:-1], layers[-1]
        activation = _activation_name(policy.q_net.q_net)
        squash = False
    elif algo in ("PPO", "TRPO"):
        hidden_layers = _linears(policy.mlp_extractor.policy_net)
        head = policy.action_net
        activation = _activation_name(policy.mlp_extractor.policy_net)
        squash = False
    elif algo == "SAC":
        hidden_layers = _linears(policy.actor.latent_pi)
        head = policy.actor.mu
        activation = _activation_name(policy.actor.latent_pi)
        squash = True
    elif algo in ("TD3", "DDPG"):
        layers = _linears(policy.actor.mu)
        hidden_layers, head = layers[:-1], layers[-1]
        activation = _activation_name(policy.actor.mu)
        squash = True
    else:  # pragma: no cover - registry only holds the five
        raise ValueError(f"no export for algorithm {algo}")
    normalize = vecnormalize is not None and bool(vecnormalize.norm_obs)
    spec = PolicySpec(obs_dim, act_dim, tuple(l.out_features for l in hidden_layers), activation, squash,
                      normalize, float(vecnormalize.clip_obs) if normalize else 10.0, discrete=discrete)
    dep = DeployablePolicy(spec)
    with torch.no_grad():
        for dst, src in zip(dep.linears(), hidden_layers + [head], strict=True):
            dst.weight.copy_(src.weight.detach().cpu())
            dst.bias.copy_(src.bias.detach().cpu())
        if normalize:
            rms = vecnormalize.obs_rms
            dep.obs_mean.copy_(torch.as_tensor(rms.mean, dtype=torch.float64).float())
            dep.obs_std.copy_(torch.as_tensor(np.sqrt(rms.var + vecnormalize.epsilon), dtype=torch.float64).float())
        if not discrete:  # a discrete policy has no bounds: its buffers keep their defaults, unused
            dep.act_low.copy_(torch.as_tensor(space.low, dtype=torch.float32))
            dep.act_high.copy_(torch.as_tensor(space.high, dtype=torch.float32))
    return dep.eval()


def agent_state(model, vecnormalize=None) -> dict[str, Any]:
    """SB3 policy weights (actor + critic, no target nets or optimiser), SAC's log entropy
    coefficient, and VecNormalize statistics."""
    sd = {k: v.detach().cpu().clone() for k, v in model.policy.state_dict().items() if "_target" not in k}
    algo = getattr(model, "rlbench_algo", type(model).__name__.upper())
    out: dict[str, Any] = {"format": "rlbench.agent/1", "algo": algo, "policy_state": sd}
    if getattr(model, "log_ent_coef", None) is not None:
        out["log_ent_coef"] = float(model.log_ent_coef.detach())
    if vecnormalize is not None:
        out["vecnormalize"] = {
            "obs_mean": torch.as_tensor(vecnormalize.obs_rms.mean), "obs_var": torch.as_tensor(vecnormalize.obs_rms.var),
            "obs_count": float(vecnormalize.obs_rms.count),
            "ret_mean": torch.as_tensor(vecnormalize.ret_rms.mean), "ret_var": torch.as_tensor(vecnormalize.ret_rms.var),
            "ret_count": float(vecnormalize.ret_rms.count),
            "clip_obs": float(vecnormalize.clip_obs), "clip_reward": float(vecnormalize.clip_reward),
            "epsilon": float(vecnormalize.epsilon), "gamma": float(vecnormalize.gamma),
        }
    return out


def write_policy_dir(dest: Path, dep: DeployablePolicy, agent: dict, meta: dict, overwrite: bool = False) -> Path:
    """Write the four files into ``dest`` atomically: build in a sibling temp dir, then swap.

    An existing shipped policy is never replaced unless ``overwrite`` is given; the old folder is
    kept until the new one is in place, so an interrupted export loses nothing.
    """
    # deferred: it loads onnx, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes

    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise PolicyError(f"{dest} already holds a shipped policy; pass --overwrite to replace it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        files = {"policy.pt": save_policy(dep, None), "policy.onnx": onnx_bytes(dep)}
        buf = io.BytesIO()
        torch.save(agent, buf)
        files["agent.pt"] = buf.getvalue()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        meta = dict(meta)
        meta["schema"] = META_SCHEMA
        meta["files"] = {name: {"sha256": sha256_bytes(data), "bytes": len(data)} for name, data in files.items()}
        meta["spec"] = dep.current_spec().to_json()
        atomic_write_json(tmp / "meta.json", meta)
        replace_dir(tmp, dest, dest.with_name(f".{dest.name}.old-{int(time.time())}"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
