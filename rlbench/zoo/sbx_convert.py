"""SBX, the JAX port of SB3, as a faster trainer of the suite's SB3 agents (SAC, TD3, DDPG).

What the suite ships stays SB3/torch. An SBX agent is converted to the SB3 agent of the same
algorithm (:func:`to_sb3`: actor, critics, target networks and SAC's log entropy coefficient)
before it is evaluated or exported, so ``policy.pt``, ``policy.onnx`` and ``agent.pt`` come out
of :func:`rlbench.zoo.export.deployable_from_sb3` and :func:`~rlbench.zoo.export.agent_state` as for a
run SB3 trained. On one core (HalfCheetah-v5, batch 256) SBX runs SAC's steps about 1.9x as
fast as SB3, TD3's 1.1-1.3x.

SBX is set to run SB3's algorithm rather than its own defaults (:func:`from_sb3`):

* hyperparameters: the registry's keywords over SB3's defaults, never SBX's (SBX TD3 and DDPG
  default to ``learning_rate`` 3e-4 where SB3 has 1e-3, SBX DDPG to ``qf_learning_rate`` 1e-3,
  SBX TD3 and DDPG to ``net_arch`` [256, 256] where SB3 has [400, 300]); the critic's learning
  rate is the actor's, SAC has no policy delay, no dropout, no layer norm;
* networks: the sizes, activation and number of critics are read off the SB3 agent, and SBX
  starts from its weights, so a run starts where SB3's run of the same seed starts (flax would
  draw LeCun-normal kernels and zero biases, torch draws both uniform in +-1/sqrt(fan_in));
* SAC's log-probability of a squashed action subtracts ``log(1 - tanh(u)^2 + 1e-6)`` as SB3
  does, not TFP's exact Tanh log-determinant: the two come apart where an action saturates
  (per dimension SB3's term is at most 13.8 nats, the exact one is unbounded), which moves
  the entropy estimate, the temperature and the actor loss of a policy at its action bounds;
* TD3 and DDPG update as SB3 does (``stable_baselines3/td3/td3.py``): the critic loss is the
  sum of the critics' mean squared errors (SBX halves it), the actor maximises the first
  critic (SBX the minimum of the critics), and the target networks move only on the delayed
  steps, after the actor (SBX moves them every step, before the actor).

What still differs is :data:`DEPARTURES`, recorded in a shipped policy's ``meta.json``.
"""

from __future__ import annotations

import inspect
import os
from functools import partial
from typing import Any, ClassVar

#: One XLA thread per training job, as torch is pinned to one (rlbench.runtime.predictors.pin_threads): two
#: jobs share 2 cores. XLA reads its flags when JAX starts its CPU backend, so this precedes jax.
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"
if XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAGS}".strip()

import flax.linen as fnn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import sbx  # noqa: E402
import stable_baselines3 as sb3  # noqa: E402
import tensorflow_probability.substrates.jax as tfp  # noqa: E402
import torch  # noqa: E402
from sbx.common.policies import Flatten, SquashedGaussianActor  # noqa: E402
from torch import nn  # noqa: E402

from rlbench.core.errors import RLBenchError  # noqa: E402

#: Algorithms SBX trains here.
ALGOS: tuple[str, ...] = ("SAC", "TD3", "DDPG")
#: Libraries whose versions an SBX-trained policy depends on, recorded with the run.
TRACKED: tuple[str, ...] = ("sbx-rl", "jax", "jaxlib", "flax", "optax", "tfp-nightly")

#: What still differs from the SB3 algorithm, added to a shipped policy's departures in ``meta.json``.
DEPARTURES: tuple[str, ...] = (
    "trained with SBX (JAX) and converted to the SB3 agent for evaluation and export "
    "(rlbench.zoo.sbx_convert): SB3's hyperparameters, initial weights and update, in JAX",
    "SAC's sampled actions (exploring and in the update) and TD3's target-policy noise come from "
    "JAX's random keys, not torch's, so they differ from an SB3 run of the same seed (environments, "
    "warm-up actions, TD3's action noise and replay sampling draw from the same numpy generators)",
    "float32 XLA kernels instead of torch's: the same update differs in the last bits",
)

#: SB3 constructor parameters that are not hyperparameters of the algorithm.
_NOT_HYPERPARAMETERS = frozenset({"self", "policy", "env", "policy_kwargs", "action_noise", "tensorboard_log",
                                  "verbose", "seed", "device", "_init_setup_model"})
_ACTIVATIONS = {"relu": fnn.relu, "tanh": fnn.tanh}


# ------------------------------------------------------------------ SB3's algorithm in SBX
class _SB3Tanh(tfp.bijectors.Tanh):
    """tanh with SB3's log-determinant, ``log(1 - tanh(u)^2 + 1e-6)``
    (``SquashedDiagGaussianDistribution``, epsilon 1e-6)."""

    def _forward_log_det_jacobian(self, x):
        return jnp.log(1.0 - jnp.tanh(x) ** 2 + 1e-6)


class _SB3SquashedGaussian(tfp.distributions.TransformedDistribution):
    """A diagonal Gaussian squashed by :class:`_SB3Tanh`; its mode is ``tanh(mean)``, SB3's
    deterministic action. The log-probability of a sample reuses the sample's pre-tanh value
    (TFP caches it), so saturated actions are not inverted through atanh."""

    def __init__(self, distribution, validate_args: bool = False):
        parameters = dict(locals())
        super().__init__(distribution=distribution, bijector=_SB3Tanh(), validate_args=validate_args)
        self._parameters = parameters

    def mode(self):
        return self.bijector.forward(self.distribution.mode())

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        props = super()._parameter_properties(dtype, num_classes=num_classes)
        del props["bijector"]
        return props


class _SB3SquashedGaussianActor(SquashedGaussianActor):
    """SBX's SAC actor (hidden Dense+activation, mean and log-std heads, log-std clipped to
    [-20, 2] as SB3's) with SB3's squashing correction."""

    @fnn.compact
    def __call__(self, x: jnp.ndarray):
        x = Flatten()(x)
        for n_units in self.net_arch:
            x = self.activation_fn(fnn.Dense(n_units)(x))
        mean = fnn.Dense(self.action_dim)(x)
        log_std = jnp.clip(fnn.Dense(self.action_dim)(x), self.log_std_min, self.log_std_max)
        return _SB3SquashedGaussian(tfp.distributions.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(log_std)))


class SAC(sbx.SAC):
    """SBX's SAC; with :class:`_SB3SquashedGaussianActor` and :func:`sbx_kwargs` it is SB3's."""

    trainer: ClassVar[str] = "sbx"


class _SB3TD3Update:
    """TD3's update as SB3's ``TD3.train`` does it, for SBX's TD3 and DDPG."""

    trainer: ClassVar[str] = "sbx"

    @staticmethod
    @jax.jit
    def update_critic(actor_state, qf_state, observations, actions, next_observations, rewards, dones, discounts,
                      target_policy_noise, target_noise_clip, key):
        key, noise_key, dropout_key_target, dropout_key_current = jax.random.split(key, 4)
        noise = jnp.clip(jax.random.normal(noise_key, actions.shape) * target_policy_noise,
                         -target_noise_clip, target_noise_clip)
        next_actions = jnp.clip(actor_state.apply_fn(actor_state.target_params, next_observations) + noise, -1.0, 1.0)
        next_q = qf_state.apply_fn(qf_state.target_params, next_observations, next_actions,
                                   rngs={"dropout": dropout_key_target})
        target_q = rewards[:, None] + (1 - dones[:, None]) * discounts[:, None] * jnp.min(next_q, axis=0)

        def mse_loss(params, dropout_key):
            # (n_critics, batch, 1): SB3 sums the critics' F.mse_loss, SBX takes half of that
            current_q = qf_state.apply_fn(params, observations, actions, rngs={"dropout": dropout_key})
            return ((target_q - current_q) ** 2).mean(axis=1).sum()

        loss, grads = jax.value_and_grad(mse_loss)(qf_state.params, dropout_key_current)
        return qf_state.apply_gradients(grads=grads), loss, key

    @staticmethod
    @jax.jit
    def update_actor(actor_state, qf_state, observations, key):
        key, dropout_key = jax.random.split(key, 2)

        def actor_loss(params):
            q = qf_state.apply_fn(qf_state.params, observations, actor_state.apply_fn(params, observations),
                                  rngs={"dropout": dropout_key})
            return -q[0].mean()  # SB3's critic.q1_forward: the first critic only

        loss, grads = jax.value_and_grad(actor_loss)(actor_state.params)
        return actor_state.apply_gradients(grads=grads), qf_state, loss, key

    @classmethod
    def _actor_then_targets(cls, actor_state, qf_state, observations, tau, key):
        actor_state, qf_state, loss, key = cls.update_actor(actor_state, qf_state, observations, key)
        qf_state, actor_state = cls.soft_update(tau, qf_state, actor_state)
        return actor_state, qf_state, loss, key

    @classmethod
    @partial(jax.jit, static_argnames=["cls", "gradient_steps", "policy_delay", "policy_delay_offset"])
    def _train(cls, tau, gradient_steps, data, policy_delay, policy_delay_offset, target_policy_noise,
               target_noise_clip, qf_state, actor_state, key):
        batch = data.observations.shape[0] // gradient_steps

        def one_update(i, carry):
            actor_state, qf_state, key, (actor_loss, _) = carry
            part = [jax.lax.dynamic_slice_in_dim(a, i * batch, batch) for a in data]
            obs, actions, next_obs, dones, rewards, discounts = part
            qf_state, qf_loss, key = cls.update_critic(actor_state, qf_state, obs, actions, next_obs, rewards, dones,
                                                       discounts, target_policy_noise, target_noise_clip, key)
            # SB3: the actor and then both targets move on the delayed steps only
            actor_state, qf_state, actor_loss, key = jax.lax.cond(
                (policy_delay_offset + i) % policy_delay == 0, cls._actor_then_targets,
                lambda a, q, _o, _t, k: (a, q, actor_loss, k), actor_state, qf_state, obs, tau, key)
            return actor_state, qf_state, key, (actor_loss, qf_loss)

        carry = (actor_state, qf_state, key, (jnp.array(0.0), jnp.array(0.0)))
        actor_state, qf_state, key, info = jax.lax.fori_loop(0, gradient_steps, one_update, carry)
        return qf_state, actor_state, key, info


class TD3(_SB3TD3Update, sbx.TD3):
    """SBX's TD3 with SB3's update."""


class DDPG(_SB3TD3Update, sbx.DDPG):
    """SBX's DDPG (TD3 with one critic, no policy delay, no target noise) with SB3's update."""


_CLASSES = {"SAC": SAC, "TD3": TD3, "DDPG": DDPG}


def sbx_class(algo: str):
    """The SBX class that trains ``algo`` as SB3 does."""
    if algo not in _CLASSES:
        raise RLBenchError(f"--trainer sbx trains {', '.join(ALGOS)}; {algo} trains with --trainer sb3")
    return _CLASSES[algo]


# ------------------------------------------------------------------ hyperparameters
def sbx_kwargs(algo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """SBX constructor keywords for the registry's SB3 ``kwargs`` (without ``policy_kwargs``).

    Every SB3 hyperparameter the registry leaves out takes SB3's default, not SBX's. A keyword
    SBX cannot express, set to other than SB3's default, is refused.
    """
    sb3_params = inspect.signature(getattr(sb3, algo).__init__).parameters
    sbx_params = inspect.signature(sbx_class(algo).__init__).parameters
    unknown = sorted(set(kwargs) - set(sb3_params) - {"policy_kwargs"})
    if unknown:
        raise RLBenchError(f"{algo} has no keyword {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, param in sb3_params.items():
        if name in _NOT_HYPERPARAMETERS:
            continue
        value = kwargs.get(name, param.default)
        if name in sbx_params:
            out[name] = value
        elif value != param.default:  # SB3 SAC's target_update_interval, optimize_memory_usage
            raise RLBenchError(f"SBX {algo} cannot express {name}={value!r} (only SB3's default {param.default!r})")
    out["qf_learning_rate"] = out["learning_rate"]  # SB3 has one rate for both; SBX DDPG defaults to 1e-3
    if algo == "SAC":
        out["policy_delay"] = 1
    return out


def _actor_linears(policy, target: bool = False) -> list[nn.Linear]:
    actor = policy.actor_target if target else policy.actor
    if hasattr(actor, "latent_pi"):  # SAC: hidden stack, then the mean and log-std heads
        return [m for m in actor.latent_pi if isinstance(m, nn.Linear)] + [actor.mu, actor.log_std]
    return [m for m in actor.mu if isinstance(m, nn.Linear)]


def _critic_linears(policy, target: bool = False) -> list[list[nn.Linear]]:
    critic = policy.critic_target if target else policy.critic
    return [[m for m in q if isinstance(m, nn.Linear)] for q in critic.q_networks]


def _activation(policy) -> str:
    for m in policy.actor.modules():
        if isinstance(m, (nn.ReLU, nn.Tanh)):
            return "relu" if isinstance(m, nn.ReLU) else "tanh"
    raise RLBenchError("the SB3 actor has neither ReLU nor Tanh activations; SBX is set up for those two")


def _sbx_policy_kwargs(model, raw: dict | None) -> dict[str, Any]:
    """SBX policy keywords with the SB3 agent's architecture, read off its layers."""
    extra = sorted(set(raw or {}) - {"net_arch", "activation_fn", "n_critics"})
    if extra:
        raise RLBenchError(f"SBX cannot express the policy keywords {', '.join(extra)}")
    if model.use_sde or model.policy.optimizer_class is not torch.optim.Adam or model.policy.optimizer_kwargs:
        raise RLBenchError("SBX is set up for SB3's Adam without keywords and without gSDE")
    n_heads = 2 if type(model).__name__ == "SAC" else 1
    pi = [l.out_features for l in _actor_linears(model.policy)[:-n_heads]]
    critics = _critic_linears(model.policy)
    kw = {"net_arch": {"pi": pi, "qf": [l.out_features for l in critics[0][:-1]]}, "n_critics": len(critics),
          "activation_fn": _ACTIVATIONS[_activation(model.policy)], "dropout_rate": 0.0, "layer_norm": False}
    if type(model).__name__ == "SAC":
        kw["actor_class"] = _SB3SquashedGaussianActor
    return kw


# ------------------------------------------------------------------ weights, both ways
def _links(sb3_policy) -> list[tuple[nn.Linear, str, str, tuple[str, ...], int | None]]:
    """Every SB3 Linear with where its SBX twin lives: (layer, train state, params field,
    Dense path, critic index). flax numbers a module's Dense layers in call order, and SBX's
    critics are one vmapped module with the critic index as the leading axis."""
    out = []
    actors = [("params", False)] + ([("target_params", True)] if hasattr(sb3_policy, "actor_target") else [])
    for field, target in actors:
        out += [(lin, "actor_state", field, ("params", f"Dense_{i}"), None)
                for i, lin in enumerate(_actor_linears(sb3_policy, target))]
    for field, target in (("params", False), ("target_params", True)):
        for k, layers in enumerate(_critic_linears(sb3_policy, target)):
            out += [(lin, "qf_state", field, ("params", "VmapContinuousCritic_0", f"Dense_{i}"), k)
                    for i, lin in enumerate(layers)]
    return out


def _node(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def to_sb3(model, sb3_model):
    """Copy the SBX agent ``model``'s networks into ``sb3_model``, an SB3 agent of the same
    algorithm and architecture (built with the same hyperparameters), and return it.

    Actor, critics, target networks, SAC's log entropy coefficient, the step and update counts.
    Not the optimiser states: nothing shipped holds them, and a run resumes from SBX's own.
    """
    if type(model).__name__ != type(sb3_model).__name__:
        raise RLBenchError(f"cannot convert SBX {type(model).__name__} to SB3 {type(sb3_model).__name__}")
    with torch.no_grad():
        for lin, state, field, path, k in _links(sb3_model.policy):
            node = _node(getattr(getattr(model.policy, state), field), path)
            kernel, bias = np.asarray(node["kernel"]), np.asarray(node["bias"])
            if k is not None:
                kernel, bias = kernel[k], bias[k]
            if kernel.shape != (lin.in_features, lin.out_features):
                raise RLBenchError(f"SBX layer {'/'.join(path)} is {kernel.shape}, the SB3 one "
                                   f"{(lin.in_features, lin.out_features)}")
            lin.weight.copy_(torch.from_numpy(kernel.T.copy()))  # flax kernel is [in, out], torch weight [out, in]
            lin.bias.copy_(torch.from_numpy(bias.copy()))
        if getattr(sb3_model, "log_ent_coef", None) is not None:
            sb3_model.log_ent_coef.fill_(float(model.ent_coef_state.params["log_ent_coef"]))
    sb3_model.num_timesteps = model.num_timesteps
    sb3_model._n_updates = model._n_updates
    return sb3_model


def _load_weights(model, sb3_model) -> None:
    """Set the SBX agent ``model``'s networks (online and target) to ``sb3_model``'s."""
    trees: dict[tuple[str, str], Any] = {}
    for lin, state, field, path, k in _links(sb3_model.policy):
        if (state, field) not in trees:
            trees[state, field] = jax.tree_util.tree_map(np.array, getattr(getattr(model.policy, state), field))
        node = _node(trees[state, field], path)
        kernel, bias = lin.weight.detach().cpu().numpy().T, lin.bias.detach().cpu().numpy()
        if k is None:
            node["kernel"][...], node["bias"][...] = kernel, bias
        else:
            node["kernel"][k], node["bias"][k] = kernel, bias
    for (state, field), tree in trees.items():
        train_state = getattr(model.policy, state)
        setattr(model.policy, state, train_state.replace(**{field: jax.tree_util.tree_map(jnp.asarray, tree)}))
    if getattr(sb3_model, "log_ent_coef", None) is not None:
        value = jnp.asarray(float(sb3_model.log_ent_coef.detach()), dtype=jnp.float32)
        model.ent_coef_state = model.ent_coef_state.replace(params={"log_ent_coef": value})


def from_sb3(sb3_model, kwargs: dict[str, Any]):
    """An SBX agent that trains ``sb3_model``'s algorithm from its weights.

    ``kwargs`` are the registry's SB3 keywords (:func:`sbx_kwargs`); the architecture, the
    environment, the action noise and the seed are ``sb3_model``'s.
    """
    algo = type(sb3_model).__name__
    kw = sbx_kwargs(algo, {k: v for k, v in kwargs.items() if k != "policy_kwargs"})
    model = sbx_class(algo)("MlpPolicy", sb3_model.get_env(), seed=sb3_model.seed, action_noise=sb3_model.action_noise,
                            policy_kwargs=_sbx_policy_kwargs(sb3_model, kwargs.get("policy_kwargs")), verbose=0, **kw)
    _load_weights(model, sb3_model)
    return model


def q_values(model, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """The SBX agent's online critics at ``(obs, actions)``, shape (n_critics, batch);
    ``actions`` scaled to [-1, 1] as the critics see them."""
    q = model.policy.qf.apply(model.policy.qf_state.params, jnp.asarray(obs, jnp.float32),
                              jnp.asarray(actions, jnp.float32), rngs={"dropout": jax.random.PRNGKey(0)})
    return np.asarray(q)[..., 0]
