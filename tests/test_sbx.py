"""SBX as a trainer: the same algorithm as SB3's, converted to the SB3 agent that ships, resumable."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import configure

if importlib.util.find_spec("sbx") is None:
    pytest.skip("sbx-rl is not installed (pip install -e '.[train-sbx]')", allow_module_level=True)

from rlbench.zoo import sbx_convert  # noqa: E402  (after the skip: it imports sbx and jax)
from rlbench.cli.main import build_parser  # noqa: E402
from rlbench.zoo.envs import make_env  # noqa: E402
from rlbench.core.errors import RLBenchError  # noqa: E402
from rlbench.zoo.export import agent_state, deployable_from_sb3  # noqa: E402
from rlbench.zoo.registry import get_config  # noqa: E402
from rlbench.zoo.agents import build_model, latest_checkpoint, load_checkpoint, make_vec_env, run_dir, sb3_agent  # noqa: E402
from rlbench.train.loop import train  # noqa: E402

ENV = "Hopper-v5"
#: float32 through two frameworks: torch and XLA round sums in other orders.
ATOL = 1e-5


def _trained(algo: str):
    """An SBX agent after 300 steps, 200 of them with updates (so its weights are trained), and
    its SB3 twin's weights before them."""
    cfg = get_config(algo, ENV)
    cfg = dataclasses.replace(cfg, kwargs={**cfg.kwargs, "learning_starts": 100})
    model = build_model(cfg, make_vec_env(cfg, 0), 0, "sbx")
    start = {k: v.clone() for k, v in sb3_agent(model, cfg).policy.state_dict().items()}
    model.learn(300)
    return cfg, model, start


@pytest.fixture(scope="module")
def sac():
    return _trained("SAC")


@pytest.fixture(scope="module")
def td3():
    return _trained("TD3")


def _rollout_obs(model, n: int = 300, seed: int = 123) -> np.ndarray:
    """Observations of the real environment, visited by the agent's own deterministic actions."""
    env, out = make_env(ENV), []
    obs, _ = env.reset(seed=seed)
    while len(out) < n:
        out.append(obs)
        obs, _, term, trunc, _ = env.step(model.predict(obs, deterministic=True)[0])
        if term or trunc:
            obs, _ = env.reset(seed=seed + len(out))
    env.close()
    return np.asarray(out, dtype=np.float32)


def _critics(sb3_critic, obs, actions) -> np.ndarray:
    with torch.no_grad():
        return np.stack([q.numpy()[:, 0] for q in sb3_critic(torch.as_tensor(obs), torch.as_tensor(actions))])


@pytest.mark.parametrize("fixture", ["sac", "td3", "DDPG"])
def test_sbx_starts_as_sb3_does(fixture, request):
    """Same seed, same initial weights; SB3's hyperparameters where SBX's defaults differ."""
    if fixture == "DDPG":
        cfg = get_config("DDPG", ENV)
        model = build_model(cfg, make_vec_env(cfg, 0), 0, "sbx")
        got = sb3_agent(model, cfg).policy.state_dict()
    else:
        cfg, model, got = request.getfixturevalue(fixture)
    ref = build_model(cfg, make_vec_env(cfg, 0), 0)
    want = ref.policy.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    for name in ("learning_rate", "buffer_size", "learning_starts", "batch_size", "tau", "gamma", "train_freq",
                 "gradient_steps", "policy_delay", "target_policy_noise", "target_noise_clip", "target_entropy"):
        sb3_value = getattr(ref, name, 1 if name == "policy_delay" else None)  # SB3's SAC updates its actor every step
        assert getattr(model, name, None) == sb3_value, name
    assert model.qf_learning_rate == ref.learning_rate  # SBX DDPG defaults to 1e-3, SBX TD3 to 3e-4
    assert repr(model.action_noise) == repr(ref.action_noise)


@pytest.mark.parametrize("fixture", ["sac", "td3"])
def test_converted_policy_acts_and_values_as_sbx(fixture, request):
    cfg, model, _ = request.getfixturevalue(fixture)
    agent = sb3_agent(model, cfg)
    obs = _rollout_obs(model)
    want = model.predict(obs, deterministic=True)[0]
    with torch.no_grad():
        shipped = deployable_from_sb3(agent)(torch.as_tensor(obs)).numpy()
    assert np.abs(shipped - want).max() <= ATOL
    assert np.abs(agent.predict(obs, deterministic=True)[0] - want).max() <= ATOL
    assert model._n_updates == 200 and want.std() > 0.01  # trained weights, not a constant policy

    actions = np.random.default_rng(0).uniform(-1, 1, (len(obs), want.shape[1])).astype(np.float32)
    q = sbx_convert.q_values(model, obs, actions)
    assert q.shape == (2, len(obs)) and np.abs(_critics(agent.critic, obs, actions) - q).max() <= ATOL
    target = model.policy.qf.apply(model.policy.qf_state.target_params, obs, actions)[..., 0]
    assert np.abs(_critics(agent.critic_target, obs, actions) - np.asarray(target)).max() <= ATOL
    if fixture == "sac":
        log_ent_coef = agent.log_ent_coef.item()
        assert log_ent_coef == pytest.approx(float(model.ent_coef_state.params["log_ent_coef"]))
        assert log_ent_coef != 0.0  # moved from its start, so the copy is not vacuous
    else:
        target_act = np.asarray(model.policy.actor.apply(model.policy.actor_state.target_params, obs))
        with torch.no_grad():
            assert np.abs(agent.actor_target(torch.as_tensor(obs)).numpy() - target_act).max() <= ATOL
    assert agent_state(agent)["policy_state"].keys() == agent_state(build_model(cfg, make_vec_env(cfg, 0), 0))[
        "policy_state"].keys()


def _two_updates(model, cfg, sbx_update=None) -> dict[str, tuple[float, float]]:
    """Two updates of the SBX agent and of its SB3 twin from the same weights, fresh Adam moments and
    minibatches, target noise off: per weight, (largest difference between the two, largest step SB3's
    made). ``sbx_update`` replaces the SBX agent's jitted update (a planted fault)."""
    saved = (model.policy.actor_state, model.policy.qf_state, model.key, model._n_updates, model.target_policy_noise)
    try:
        for name in ("actor_state", "qf_state"):
            st = getattr(model.policy, name)
            setattr(model.policy, name, st.replace(step=0, opt_state=st.tx.init(st.params)))
        agent = sb3_agent(model, cfg)
        agent.replay_buffer = model.replay_buffer
        agent.set_logger(configure(None, []))
        model.target_policy_noise = agent.target_policy_noise = 0.0
        if sbx_update is not None:
            model._train = sbx_update
        before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
        for step in range(2):  # with policy_delay 2, one of the two also moves the actor and the targets
            np.random.seed(step)  # both sample the replay buffer with numpy's global generator
            agent.train(gradient_steps=1, batch_size=cfg.kwargs["batch_size"])
            np.random.seed(step)
            model.train(gradient_steps=1, batch_size=cfg.kwargs["batch_size"])
        got, want = sb3_agent(model, cfg).policy.state_dict(), agent.policy.state_dict()
        return {k: (float((got[k] - want[k]).abs().max()), float((want[k] - before[k]).abs().max()))
                for k in want if k.endswith("weight")}
    finally:
        model.__dict__.pop("_train", None)
        (model.policy.actor_state, model.policy.qf_state, model.key, model._n_updates,
         model.target_policy_noise) = saved


#: Two SBX updates may differ from SB3's by this fraction of the step: Adam's first steps are
#: about +-lr whatever the gradient's size, so float32 noise in a tiny gradient shows (measured
#: at most 0.03); an update that is not SB3's misses by 0.1 to 1.9 steps.
UPDATE_RTOL = 0.05


def test_td3_update_is_sb3s(td3):
    """The critic, the actor (first critic only, on the delayed step) and both targets (delayed
    steps only) land where SB3's TD3 puts them."""
    cfg, model, _ = td3
    for k, (diff, step) in _two_updates(model, cfg).items():
        assert step > 0 and diff <= UPDATE_RTOL * step, f"{k}: off SB3's by {diff:.2g}, a step is {step:.2g}"


@pytest.mark.slow
def test_sbx_own_td3_update_fails_that_check(td3):
    """The planted fault: SBX's own TD3 (actor on min(Q1, Q2), targets every step) misses SB3's."""
    import sbx

    cfg, model, _ = td3
    result = _two_updates(model, cfg, sbx_update=sbx.TD3._train)
    missed = {k for k, (diff, step) in result.items() if diff > UPDATE_RTOL * step}
    assert {k for k in result if k.startswith(("actor.", "actor_target.", "critic_target."))} <= missed


def test_sac_squashing_correction_is_sb3s(sac):
    """SB3 subtracts log(1 - tanh(u)^2 + 1e-6) (float32); TFP's exact term is unbounded as u grows."""
    import tensorflow_probability.substrates.jax as tfp

    # away from 5 < |u| < 10, where float32 tanh of torch and of XLA round 1 - tanh^2 differently
    u = np.array([0.0, 1.0, 2.0, 3.0, 12.0, 15.0], dtype=np.float32)
    want = np.log(1 - np.tanh(u.astype(np.float64)) ** 2 + 1e-6)  # SquashedDiagGaussianDistribution.log_prob
    assert np.abs(np.asarray(sbx_convert._SB3Tanh().forward_log_det_jacobian(u, event_ndims=0)) - want).max() < 1e-3
    assert np.abs(np.asarray(tfp.bijectors.Tanh().forward_log_det_jacobian(u, event_ndims=0)) - want).max() > 10
    _, model, _ = sac
    dist = model.policy.actor.apply(model.policy.actor_state.params, np.zeros((1, 11), np.float32))
    assert isinstance(dist, sbx_convert._SB3SquashedGaussian)


def test_chunked_sbx_run_resumes_and_ships_sb3_files(tmp_baselines, sac):
    train("SAC", ENV, timesteps=400, checkpoint_every=200, export=False, progress=False, trainer="sbx")
    cfg = get_config("SAC", ENV)
    paths = run_dir(cfg, 0)
    state = json.loads((latest_checkpoint(paths) / "state.json").read_text())
    assert state["trainer"] == "sbx" and state["num_timesteps"] == 400 and [e["steps"] for e in state["evals"]] == [200, 400]
    assert state["versions"]["sbx-rl"] and state["versions"]["jax"] and state["versions"]["torch"]
    assert sbx_convert.XLA_FLAGS in state["xla_flags"]
    with pytest.raises(RLBenchError, match="--trainer sbx"):
        train("SAC", ENV, timesteps=600, checkpoint_every=200, resume=True, export=False, progress=False, trainer="sb3")
    out = train("SAC", ENV, timesteps=600, checkpoint_every=200, resume=True, progress=False, eval_episodes=2)
    state = json.loads((latest_checkpoint(paths) / "state.json").read_text())
    assert state["num_timesteps"] == 600 and state["resumed"] == 1 and [e["steps"] for e in state["evals"]] == [200, 400, 600]
    model, _ = load_checkpoint(cfg, 0, latest_checkpoint(paths))
    assert model.trainer == "sbx" and model.num_timesteps == 600 and model.replay_buffer.size() == 600

    meta = json.loads((out / "meta.json").read_text())
    assert meta["trainer"] == "sbx" and meta["trained_timesteps"] == 600 and meta["training_versions"]["jax"]
    assert meta["snapshot"]["kind"] == "best" and meta["timesteps"] == meta["snapshot"]["steps"]  # the run's best
    assert set(sbx_convert.DEPARTURES) <= set(meta["hyperparameters"]["departures"])
    assert meta["regenerate"].endswith("--trainer sbx")
    from rlbench.zoo.shipped import load_shipped

    shipped = load_shipped("SAC", ENV)  # checks every file's sha256 and the spaces
    agent = torch.load(out / "agent.pt", weights_only=False)
    assert agent["algo"] == "SAC" and all("_target" not in k for k in agent["policy_state"])
    obs = _rollout_obs(model, n=50)
    with torch.no_grad():
        assert np.abs(shipped.module()(torch.as_tensor(obs)).numpy() - model.predict(obs, deterministic=True)[0]).max() <= ATOL


def test_sbx_refuses_on_policy_algorithms(tmp_baselines):
    with pytest.raises(RLBenchError, match="--trainer sb3"):
        train("PPO", ENV, timesteps=100, export=False, progress=False, trainer="sbx")


def test_zoo_trainer_applies_to_the_algorithms_sbx_trains(monkeypatch):
    from rlbench.train.loop import _default_trainer

    monkeypatch.setenv("RLBENCH_TRAINER", "sbx")  # the default trainer of new runs
    assert [_default_trainer(a) for a in ("SAC", "TD3", "DDPG", "PPO", "TRPO")] == ["sbx"] * 3 + ["sb3"] * 2
    monkeypatch.delenv("RLBENCH_TRAINER")
    assert _default_trainer("SAC") == "sb3"


def test_cli_takes_the_trainer():
    args = build_parser().parse_args(["train", "SAC", "Hopper", "--trainer", "sbx", "--resume"])
    assert args.trainer == "sbx" and args.resume
    assert build_parser().parse_args(["train", "SAC", "Hopper"]).trainer is None  # a resumed run keeps its own
    assert build_parser().parse_args(["zoo", "train", "SAC-Hopper-v5", "--trainer", "sbx"]).trainer == "sbx"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "SAC", "Hopper", "--trainer", "jax"])
