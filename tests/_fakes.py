"""Small fakes shared by the unit tests: a tiny shipped policy written through the real pipeline, real states."""

from __future__ import annotations

import numpy as np
import torch

from rlbench.zoo.export import agent_state, deployable_from_sb3, write_policy_dir
from rlbench.zoo.registry import get_config
from rlbench.zoo.agents import build_model, make_vec_env


def ship_fake(root, algo: str = "PPO", env_id: str = "Hopper-v5", returns=(100.0, 110.0, 90.0)):
    """Write an untrained agent as a shipped policy under ``root/policies`` (real export path)."""
    from rlbench.zoo.envs import make_env

    cfg = get_config(algo, env_id)
    venv = make_vec_env(cfg, seed=0)
    model = build_model(cfg, venv, seed=0)
    vn = venv if cfg.normalize else None
    dep = deployable_from_sb3(model, vn)
    env = make_env(env_id)
    meta = {
        "algo": cfg.algo, "env_id": cfg.env_id, "env_version": "5",
        "observation_space": {"shape": list(env.observation_space.shape)},
        "action_space": {"shape": list(env.action_space.shape)},
        "timesteps": 0, "seed": 0, "budget_complete": False,
        "evaluation": {"returns": list(returns), "seeds": [1_000_000 + i for i in range(len(returns))],
                       "mean": sum(returns) / len(returns), "std": 1.0, "ci_low": 0.0, "ci_high": 1.0},
    }
    torch.manual_seed(0)
    return write_policy_dir(root / "policies" / cfg.name, dep, agent_state(model, vn), meta)


def real_observations(env_id: str, n: int, seed: int = 123) -> np.ndarray:
    """``n`` states a moving policy visits: random actions from seeded resets (seeds far from calibration
    and evaluation)."""
    from rlbench.zoo.envs import make_env

    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    out, (obs, _) = [], env.reset(seed=seed)
    while len(out) < n:
        out.append(obs)
        action = (int(rng.integers(env.action_space.n)) if hasattr(env.action_space, "n")
                  else rng.uniform(env.action_space.low, env.action_space.high))
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            obs, _ = env.reset(seed=int(rng.integers(1 << 30)))
    env.close()
    return np.asarray(out, dtype=np.float32)
