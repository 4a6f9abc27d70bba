"""Every shipped policy loads, its metadata and sha256 match, and its files agree with the SB3
agent they were exported from (rebuilt from ``agent.pt``) within 1e-5 on real observations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlbench.core.paths import baselines_dir
from rlbench.zoo.registry import get_config, pairs
from rlbench.runtime.predictors import NumpyPredictor, OrtPredictor, TorchPredictor
from rlbench.zoo.shipped import is_shipped, load_shipped
from tests._fakes import real_observations

SHIPPED = [p for p in pairs() if is_shipped(p.algo, p.env_id)]


def test_every_pair_of_the_grid_is_shipped():
    """A missing policy fails here on every machine (its cells would only skip in the grid)."""
    from rlbench.zoo.shipped import train_command

    missing = [p for p in pairs() if not is_shipped(p.algo, p.env_id)]
    assert not missing, "not shipped: " + "; ".join(f"{p.name} (make it with: {train_command(p.algo, p.env_id)})"
                                                   for p in missing)


@pytest.mark.parametrize("pair", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_policy_matches_its_agent(pair):
    from stable_baselines3.common.vec_env import VecNormalize

    from rlbench.zoo.agents import build_model, make_vec_env

    sp = load_shipped(pair.algo, pair.env_id, verify=True)
    meta = sp.meta
    assert meta["algo"] == pair.algo and meta["env_id"] == pair.env_id
    assert len(meta["evaluation"]["returns"]) >= 10
    assert min(meta["evaluation"]["seeds"]) >= 1_000_000  # disjoint from training seeds
    cfg = get_config(pair.algo, pair.env_id)
    agent = torch.load(sp.agent_pt, map_location="cpu", weights_only=True)
    venv = make_vec_env(cfg, seed=0)
    model = build_model(cfg, venv, seed=0)
    missing, unexpected = model.policy.load_state_dict(agent["policy_state"], strict=False)
    assert not unexpected and all("_target" in k for k in missing)
    obs = real_observations(pair.env_id, 200)
    sb3_in = obs
    module = sp.module()
    if cfg.normalize:
        assert isinstance(venv, VecNormalize)
        vn = agent["vecnormalize"]
        venv.obs_rms.mean, venv.obs_rms.var = vn["obs_mean"].numpy(), vn["obs_var"].numpy()
        venv.clip_obs, venv.epsilon = vn["clip_obs"], vn["epsilon"]
        # The deployed graph normalises in float32, SB3 in float64. Humanoid's contact-force inputs
        # have variances down to 2.5e-10, where dividing by sqrt(var + 1e-8) amplifies float32
        # rounding of (obs - mean) to ~2e-3 of normalised input (9.3e-5 to 4e-4 of action, measured).
        # So the two halves are checked apart: the normalisation against float64 within float32
        # rounding scaled by that amplification, then the network on identical inputs at 1e-5.
        mean32, std32 = module.obs_mean.numpy(), module.obs_std.numpy()
        ours = np.clip((obs - mean32) / std32, -vn["clip_obs"], vn["clip_obs"])
        theirs = venv.normalize_obs(obs)
        bound = 4 * np.finfo(np.float32).eps * (np.abs(obs) + np.abs(mean32)) / std32 + 1e-6
        assert (np.abs(ours - theirs) <= bound).all()
        sb3_in = ours
    expected, _ = model.predict(sb3_in, deterministic=True)
    # The NumPy reference sums in OpenBLAS's order, not torch's: on TD3 Humanoid (348-400-300-17)
    # it differed by 1.1e-5. Its bound is float32 rounding over the layers' summed fan-in.
    fan_in = sum(m.in_features for m in module.modules() if isinstance(m, torch.nn.Linear))
    numpy_tol = max(1e-5, 4 * float(np.finfo(np.float32).eps) * fan_in)
    for pred, tol in ((TorchPredictor(module), 1e-5), (OrtPredictor(sp.policy_onnx), 1e-5),
                      (NumpyPredictor(module), numpy_tol)):
        assert np.abs(pred.predict(obs) - expected).max() < tol, pred.name


def _shipped_artefacts():
    root = baselines_dir() / "artefacts"
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


@pytest.mark.parametrize("entry", _shipped_artefacts(), ids=lambda p: p.name)
def test_shipped_artefact_is_whole_and_belongs_to_a_shipped_policy(entry):
    """Every committed QAT/GMP artefact: files match their sha256, its policy is the shipped one
    (a retrained policy leaves stale artefacts: regenerate with `rlbench ship-artefacts`), and
    compress() finds exactly this entry for its method and parameters."""
    import json

    from rlbench.compress.base import compress

    meta = json.loads((entry / "artefact.json").read_text())
    algo, rest = entry.name.split("-", 1)
    env_id = "-".join(rest.split("-")[:2])
    sp = load_shipped(algo, env_id)
    assert meta["key_material"]["policy_sha256"] == sp.sha256, (
        f"{entry.name} was made from another {sp.name} policy; run `rlbench ship-artefacts --overwrite`")
    art = compress(sp, meta["method"], meta["params"])
    assert art.path == entry
    assert art.summary["int8_weight_tensors"] >= 2
