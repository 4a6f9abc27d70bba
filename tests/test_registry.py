from __future__ import annotations

import pytest

from rlbench.core.errors import UnknownNameError
from rlbench.zoo.registry import (ALGOS, CONTINUOUS_ALGOS, DISCRETE_ENVS, ENVS, IDLE_ACTION, MUJOCO_ENVS, REGISTRY,
                                  canonical_algo, canonical_env, get_config, is_discrete, pairs)


def test_grid_is_five_by_five_with_sources():
    assert len(REGISTRY) == 25 + len(DISCRETE_ENVS)
    assert {(a, e) for a in CONTINUOUS_ALGOS for e in MUJOCO_ENVS} | {("DQN", e) for e in DISCRETE_ENVS} == set(REGISTRY)
    assert [p.name for p in pairs()][:25] == [f"{a}-{e}" for a in CONTINUOUS_ALGOS for e in MUJOCO_ENVS]
    for (algo, env), cfg in REGISTRY.items():
        assert cfg.algo == algo and cfg.env_id == env
        assert cfg.source.startswith("rl-baselines3-zoo")
        assert cfg.departures, f"{cfg.name} states no departures"


def test_dqn_entries_are_rl_zoo_dqn_yml():
    cart, lunar = get_config("DQN", "CartPole-v1"), get_config("dqn", "LunarLander")
    assert cart.source == lunar.source == "rl-baselines3-zoo hyperparams/dqn.yml"
    assert cart.timesteps == 200_000 and lunar.timesteps == 150_000
    assert cart.kwargs["batch_size"] == 512 and cart.kwargs["gradient_steps"] == 4 and cart.kwargs["train_freq"] == 16
    assert lunar.kwargs["learning_rate"] == 8.8e-4 and lunar.kwargs["gradient_steps"] == -1
    assert lunar.kwargs["policy_kwargs"]["net_arch"] == [256, 256]
    for env in DISCRETE_ENVS:
        cfg = get_config("DQN", env)
        assert is_discrete(env) and not cfg.normalize and cfg.action_noise_std is None
        assert any("Double DQN" in d for d in cfg.departures)
        assert env in IDLE_ACTION
    assert not any(is_discrete(e) for e in MUJOCO_ENVS)


def test_pairs_outside_the_registry_are_refused():
    with pytest.raises(UnknownNameError, match="DQN does not run on Hopper-v5"):
        get_config("DQN", "Hopper")
    with pytest.raises(UnknownNameError, match="algorithms on it: DQN"):
        get_config("SAC", "CartPole-v1")


def test_brief_hyperparameters():
    for env in MUJOCO_ENVS:
        assert get_config("SAC", env).kwargs["policy_kwargs"]["net_arch"] == [256, 256]
        for algo in ("TD3", "DDPG"):
            cfg = get_config(algo, env)
            assert cfg.kwargs["policy_kwargs"]["net_arch"] == [400, 300]
            assert cfg.kwargs["learning_rate"] == 1e-3 and cfg.kwargs["batch_size"] == 256
            assert cfg.action_noise_std == 0.1
        for algo in ("PPO", "TRPO"):
            assert get_config(algo, env).normalize
    assert min(c.timesteps for c in REGISTRY.values() if c.algo in ("PPO", "TRPO")) >= 1_000_000
    assert min(c.timesteps for c in REGISTRY.values() if c.algo in CONTINUOUS_ALGOS) >= 200_000


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
