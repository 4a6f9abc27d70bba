from __future__ import annotations

import pytest

from rlbench.core.errors import UnknownNameError
from rlbench.zoo.registry import ALGOS, ENVS, REGISTRY, canonical_algo, canonical_env, get_config


def test_grid_is_five_by_five_with_sources():
    assert len(REGISTRY) == 25
    for (algo, env), cfg in REGISTRY.items():
        assert cfg.algo == algo and cfg.env_id == env
        assert cfg.source.startswith("rl-baselines3-zoo")
        assert cfg.departures, f"{cfg.name} states no departures"


def test_brief_hyperparameters():
    for env in ENVS:
        assert get_config("SAC", env).kwargs["policy_kwargs"]["net_arch"] == [256, 256]
        for algo in ("TD3", "DDPG"):
            cfg = get_config(algo, env)
            assert cfg.kwargs["policy_kwargs"]["net_arch"] == [400, 300]
            assert cfg.kwargs["learning_rate"] == 1e-3 and cfg.kwargs["batch_size"] == 256
            assert cfg.action_noise_std == 0.1
        for algo in ("PPO", "TRPO"):
            assert get_config(algo, env).normalize
    assert min(c.timesteps for c in REGISTRY.values() if c.algo in ("PPO", "TRPO")) >= 1_000_000
    assert min(c.timesteps for c in REGISTRY.values()) >= 200_000


def test_names_are_canonicalised():
    assert canonical_algo("sac") == "SAC"
    assert canonical_env("hopper") == "Hopper-v5"
    assert canonical_env("HalfCheetah-v5") == "HalfCheetah-v5"


@pytest.mark.parametrize("bad, fn, listed", [("A2C", canonical_algo, ALGOS), ("Walker2d", canonical_env, ENVS),
                                             ("Hopper-v4", canonical_env, ENVS)])
def test_unknown_names_list_the_valid_ones(bad, fn, listed):
    with pytest.raises(UnknownNameError) as exc:
        fn(bad)
    msg = str(exc.value)
    assert repr(bad) in msg
    assert all(name in msg for name in listed)
