"""The deployable policy reproduces SB3's ``predict(deterministic=True)`` in torch and in ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlbench.zoo.export import deployable_from_sb3
from rlbench.zoo.onnx_graph import onnx_bytes
from rlbench.zoo.registry import CONTINUOUS_ALGOS, DISCRETE_ENVS, get_config
from rlbench.runtime.predictors import NumpyPredictor, OrtPredictor, TorchPredictor
from rlbench.zoo.agents import build_model, make_vec_env
from tests._fakes import real_observations

ENV = "Hopper-v5"
TOL = 1e-5


def _agent(algo: str, env_id: str = ENV):
    """A freshly initialised agent; VecNormalize statistics filled from real states, so the
    normalisation path is exercised with non-trivial numbers."""
    cfg = get_config(algo, env_id)
    venv = make_vec_env(cfg, seed=0)
    model = build_model(cfg, venv, seed=0)
    torch.manual_seed(1)
    with torch.no_grad():  # move weights off init so the output isn't all near zero
        for p in model.policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    if cfg.normalize:
        venv.obs_rms.update(real_observations(env_id, 500, seed=7).astype(np.float64))
    return model, (venv if cfg.normalize else None)


@pytest.mark.parametrize("algo", CONTINUOUS_ALGOS)
def test_torch_onnx_and_sb3_agree(algo):
    model, vn = _agent(algo)
    obs = real_observations(ENV, 300)
    sb3_in = vn.normalize_obs(obs) if vn is not None else obs
    expected, _ = model.predict(sb3_in, deterministic=True)
    dep = deployable_from_sb3(model, vn)
    got_torch = TorchPredictor(dep).predict(obs)
    got_onnx = OrtPredictor(onnx_bytes(dep)).predict(obs)
    got_np = NumpyPredictor(dep).predict(obs)
    assert got_torch.shape == expected.shape == (300, 3)
    assert np.abs(got_torch - expected).max() < TOL
    assert np.abs(got_onnx - expected).max() < TOL
    assert np.abs(got_np - expected).max() < TOL
    # the actions are not trivially constant: the check would catch a wrong layer
    assert expected.std(axis=0).min() > 1e-3


def test_onnx_bytes_are_deterministic():
    model, vn = _agent("SAC")
    dep = deployable_from_sb3(model, vn)
    assert onnx_bytes(dep) == onnx_bytes(deployable_from_sb3(model, vn))


def test_sac_squashes_to_action_bounds_on_humanoid():
    """Humanoid's bounds are ±0.4, not ±1: the rescaling must use them."""
    model, vn = _agent("SAC", "Humanoid-v5")
    obs = real_observations("Humanoid-v5", 200)
    expected, _ = model.predict(obs, deterministic=True)
    got = TorchPredictor(deployable_from_sb3(model, vn)).predict(obs)
    assert np.abs(got - expected).max() < TOL
    assert np.abs(got).max() <= 0.4 + 1e-7


@pytest.mark.parametrize("env_id", DISCRETE_ENVS)
def test_dqn_argmax_in_the_graph_matches_sb3_and_torch(env_id):
    """The deployable DQN graph ends in ArgMax: int64 action indices [B], equal to SB3's greedy
    action, to the torch module's and to NumPy's on sampled states, and accepted by the env."""
    import onnx

    from rlbench.zoo.envs import make_env

    model, vn = _agent("DQN", env_id)
    with torch.no_grad():  # weights spread enough that the greedy action varies across states
        torch.manual_seed(2)
        for p in model.q_net.parameters():
            p.normal_(0.0, 0.5)
    # visited states, and sampled ones spread wider (CartPole's visited states are near zero, where an
    # untrained net picks one action everywhere)
    obs = np.concatenate([real_observations(env_id, 200),
                          np.random.default_rng(5).normal(0, 3, (200, model.observation_space.shape[0]))]).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    dep = deployable_from_sb3(model, vn)
    data = onnx_bytes(dep)
    graph = onnx.load_from_string(data).graph
    assert graph.node[-1].op_type == "ArgMax" and graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    got = {"torch": TorchPredictor(dep).predict(obs), "onnx": OrtPredictor(data).predict(obs),
           "numpy": NumpyPredictor(dep).predict(obs)}
    for name, actions in got.items():
        assert actions.dtype == np.int64 and actions.shape == (400,), name
        assert np.array_equal(actions, expected), name
    # the Q-values the argmax is taken of are SB3's q_net's
    with torch.no_grad():
        q_sb3 = model.q_net(torch.as_tensor(obs)).numpy()
        assert np.abs(dep.head_output(torch.as_tensor(obs)).numpy() - q_sb3).max() < TOL
    assert len(set(expected.tolist())) > 1  # not one constant action: a wrong layer would show
    env = make_env(env_id)
    env.reset(seed=0)
    assert env.action_space.contains(got["onnx"][0])
    env.step(got["onnx"][0])
    env.close()
