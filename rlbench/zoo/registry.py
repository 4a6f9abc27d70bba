"""The algorithms, environments and their hyperparameters, as data in one place.

Every entry says where its hyperparameters come from. The source is rl-baselines3-zoo's
``hyperparams/*.yml`` (MuJoCo sections, tuned on the -v3/-v4 environments; we run -v5).
Any departure from that source is listed in ``departures`` with its reason, so a reader
of a trained policy's metadata can tell exactly how it was made.

Beyond the paper's 5 x 5 MuJoCo grid, DQN (trained as Double DQN, :mod:`rlbench.zoo.ddqn`) runs on
discrete-action tasks (``hyperparams/dqn.yml``). The pairs are what :data:`REGISTRY` holds, not the
product of :data:`ALGOS` and :data:`ENVS`: DQN has no continuous pairs, the actor-critics no discrete ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlbench.core.errors import UnknownNameError

#: The paper's algorithms and environments (continuous actions), each algorithm on each environment.
CONTINUOUS_ALGOS: tuple[str, ...] = ("TRPO", "PPO", "DDPG", "TD3", "SAC")
MUJOCO_ENVS: tuple[str, ...] = ("HalfCheetah-v5", "HumanoidStandup-v5", "Ant-v5", "Humanoid-v5", "Hopper-v5")
#: Discrete-action algorithms and tasks (not in the paper), each algorithm on each task.
DISCRETE_ALGOS: tuple[str, ...] = ("DQN",)
DISCRETE_ENVS: tuple[str, ...] = ("CartPole-v1", "LunarLander-v3")
ALGOS: tuple[str, ...] = CONTINUOUS_ALGOS + DISCRETE_ALGOS
ENVS: tuple[str, ...] = MUJOCO_ENVS + DISCRETE_ENVS
ON_POLICY: frozenset[str] = frozenset({"TRPO", "PPO"})
OFF_POLICY: frozenset[str] = frozenset({"DDPG", "TD3", "SAC"})

#: Seeds. Training, evaluation during training, the recorded evaluation and calibration
#: draw from disjoint ranges so that no figure is measured on states the policy was fit to.
TRAIN_SEED_DEFAULT = 0
TRAIN_EVAL_SEED_BASE = 10_000
EVAL_SEED_BASE = 1_000_000
CALIBRATION_SEED_BASE = 2_000_000

ZOO_URL = "rl-baselines3-zoo hyperparams/{algo}.yml"

#: Keyword arguments for ``gym.make``, per environment, used wherever the suite makes one
#: (training, evaluation, doing nothing's return, calibration, the grid). A shipped policy's
#: ``meta.json`` records the keywords it was trained with, and loading it checks them.
ENV_KWARGS: dict[str, dict[str, Any]] = {
    # Ant-v4's default observation, which the paper ran: Ant-v5 adds the 78 contact forces by default
    "Ant-v5": {"include_cfrc_ext_in_observation": False},
}


def env_kwargs(env_id: str) -> dict[str, Any]:
    """The ``gym.make`` keywords of ``env_id`` (a copy; empty for the default environment)."""
    return dict(ENV_KWARGS.get(env_id, {}))



@dataclass(frozen=True)
class AlgoEnvConfig:
    """Hyperparameters of one algorithm on one environment."""

    algo: str
    """Algorithm name, one of :data:`ALGOS`."""
    env_id: str
    """Gymnasium environment id, one of :data:`ENVS`."""
    timesteps: int
    """Default training budget in environment steps."""
    kwargs: dict[str, Any]
    """Keyword arguments for the SB3 / sb3-contrib constructor (``policy_kwargs`` as plain data)."""
    normalize: bool = False
    """Wrap the training env in ``VecNormalize`` (observations and rewards)."""
    n_envs: int = 1
    """Number of training environments (``DummyVecEnv``)."""
    action_noise_std: float | None = None
    """Std of Gaussian exploration noise (TD3, DDPG)."""
    source: str = ""
    """Where these hyperparameters come from."""
    departures: tuple[str, ...] = ()
    """Every departure from the source, with its reason."""

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env_id}"


# ---------------------------------------------------------------- PPO
_PPO_TUNED_POLICY = {"log_std_init": -2, "ortho_init": False, "activation_fn": "ReLU",
                     "net_arch": {"pi": [256, 256], "vf": [256, 256]}}
_PPO: dict[str, dict[str, Any]] = {
    # rl-zoo ppo.yml "HalfCheetah-v4" (tuned)
    "HalfCheetah-v5": dict(batch_size=64, n_steps=512, gamma=0.98, learning_rate=2.0633e-05,
                           ent_coef=0.000401762, clip_range=0.1, n_epochs=20, gae_lambda=0.92,
                           max_grad_norm=0.8, vf_coef=0.58096, policy_kwargs=_PPO_TUNED_POLICY),
    # rl-zoo ppo.yml "Hopper-v4" (tuned)
    "Hopper-v5": dict(batch_size=32, n_steps=512, gamma=0.999, learning_rate=9.80828e-05,
                      ent_coef=0.00229519, clip_range=0.2, n_epochs=5, gae_lambda=0.99,
                      max_grad_norm=0.7, vf_coef=0.835671, policy_kwargs=_PPO_TUNED_POLICY),
    # rl-zoo ppo.yml "Ant-v3" (tuned; its "Ant-v4" entry is &mujoco-defaults, SB3's defaults with
    # normalisation, which stayed below doing nothing here within 1M steps)
    "Ant-v5": dict(batch_size=32, n_steps=512, gamma=0.98, learning_rate=1.90609e-05,
                   ent_coef=4.9646e-07, clip_range=0.1, n_epochs=10, gae_lambda=0.8,
                   max_grad_norm=0.6, vf_coef=0.677239, policy_kwargs=_PPO_TUNED_POLICY),
    # rl-zoo ppo.yml "Humanoid-v4" (tuned)
    "Humanoid-v5": dict(batch_size=256, n_steps=512, gamma=0.95, learning_rate=3.56987e-05,
                        ent_coef=0.00238306, clip_range=0.3, n_epochs=5, gae_lambda=0.9,
                        max_grad_norm=2.0, vf_coef=0.431892, policy_kwargs=_PPO_TUNED_POLICY),
    # rl-zoo ppo.yml "HumanoidStandup-v2" (tuned)
    "HumanoidStandup-v5": dict(batch_size=32, n_steps=512, gamma=0.99, learning_rate=2.55673e-05,
                               ent_coef=3.62109e-06, clip_range=0.3, n_epochs=20, gae_lambda=0.9,
                               max_grad_norm=0.7, vf_coef=0.430793, policy_kwargs=_PPO_TUNED_POLICY),
}
_PPO_ZOO_STEPS = {"HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Ant-v5": 10_000_000,
                  "Humanoid-v5": 10_000_000, "HumanoidStandup-v5": 10_000_000}

# ---------------------------------------------------------------- TRPO
# rl-zoo trpo.yml: MuJoCo entries inherit &pybullet-defaults
_TRPO_DEFAULT = dict(batch_size=128, n_steps=1024, gamma=0.99, gae_lambda=0.95, sub_sampling_factor=1,
                     cg_max_steps=25, cg_damping=0.1, n_critic_updates=20, learning_rate=1e-3)
_TRPO_ZOO_STEPS = {"HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Ant-v5": 1_000_000,
                   "Humanoid-v5": 2_000_000, "HumanoidStandup-v5": 1_000_000}

# ---------------------------------------------------------------- off-policy
_SAC = dict(learning_starts=10_000, learning_rate=3e-4, buffer_size=1_000_000, batch_size=256,
            tau=0.005, gamma=0.99, train_freq=1, gradient_steps=1, policy_kwargs={"net_arch": [256, 256]})
_TD3 = dict(learning_starts=10_000, learning_rate=1e-3, buffer_size=1_000_000, batch_size=256,
            train_freq=1, gradient_steps=1, policy_kwargs={"net_arch": [400, 300]})
_OFF_ZOO_STEPS = {"HalfCheetah-v5": 1_000_000, "Hopper-v5": 1_000_000, "Ant-v5": 1_000_000,
                  "Humanoid-v5": 2_000_000, "HumanoidStandup-v5": 1_000_000}

# ---------------------------------------------------------------- DQN (discrete actions)
# rl-zoo dqn.yml, verbatim; SB3's DQN default net_arch is [64, 64] where the entry names none.
_DQN: dict[str, dict[str, Any]] = {
    # "Almost Tuned"
    "CartPole-v1": dict(learning_rate=2.5e-4, batch_size=512, buffer_size=100_000, learning_starts=0, gamma=0.99,
                        target_update_interval=5000, train_freq=16, gradient_steps=4, exploration_fraction=0.06,
                        exploration_final_eps=0.11, policy_kwargs={"net_arch": [64, 64]}),
    # "Tuned", on LunarLander-v2
    "LunarLander-v3": dict(learning_rate=8.8e-4, batch_size=32, buffer_size=1_000_000, learning_starts=0, gamma=0.99,
                           target_update_interval=10_000, train_freq=16, gradient_steps=-1, exploration_fraction=0.2,
                           exploration_final_eps=0.1, policy_kwargs={"net_arch": [256, 256]}),
}
_DQN_ZOO_STEPS = {"CartPole-v1": 200_000, "LunarLander-v3": 150_000}
_DQN_DEPARTURES: dict[str, tuple[str, ...]] = {
    "LunarLander-v3": ("rl-zoo tuned DQN on LunarLander-v2; applied unchanged to -v3 (v3 fixes the v2 wind and "
                       "determinism bugs, same dynamics otherwise)",),
}

#: What "doing nothing" is on a discrete task (:func:`rlbench.gate.idle.measure`): an action index whose
#: effect is no actuation, or ``"random"`` where every action actuates. LunarLander's action 0 fires no
#: engine; CartPole has no action that leaves the cart alone (both push it), so its idle policy is
#: uniformly random: a pseudo-random action per state (:class:`rlbench.runtime.predictors.RandomActionPredictor`),
#: the return a policy that learnt nothing earns.
IDLE_ACTION: dict[str, int | str] = {"CartPole-v1": "random", "LunarLander-v3": 0}


def is_discrete(env_id: str) -> bool:
    """True for the discrete-action tasks (the policy picks an action index by argmax)."""
    return env_id in DISCRETE_ENVS


#: Early stopping: a run stops before its budget once this many training evaluations in a row
#: each beat both the paper's Table 1 return and doing nothing's by EARLY_STOP_MARGIN of the
#: larger of the two. ``meta.json`` records the stop and the figures it was judged against.
EARLY_STOP_EVALS = 3
EARLY_STOP_MARGIN = 0.15


def _build() -> dict[tuple[str, str], AlgoEnvConfig]:
    table: dict[tuple[str, str], AlgoEnvConfig] = {}
    for env_id in MUJOCO_ENVS:
        early = (f"stops early once {EARLY_STOP_EVALS} training evaluations in a row beat both the paper's "
                 f"return and doing nothing's by {EARLY_STOP_MARGIN:.0%} (the compute budget of 2 cores)")
        # PPO
        deps = ["rl-zoo tuned PPO on the -v4 (HumanoidStandup: -v2, Ant: -v3) environment; applied unchanged to -v5", early]
        table["PPO", env_id] = AlgoEnvConfig(
            "PPO", env_id, _PPO_ZOO_STEPS[env_id], dict(_PPO[env_id]), normalize=True, n_envs=1,
            source=ZOO_URL.format(algo="ppo"), departures=tuple(deps))
        # TRPO
        kw = dict(_TRPO_DEFAULT)
        if env_id == "HalfCheetah-v5":
            kw["target_kl"] = 0.04
        deps = ["rl-zoo TRPO MuJoCo defaults (&pybullet-defaults), tuned on -v3; applied unchanged to -v5", early]
        if env_id == "HumanoidStandup-v5":
            deps.append("rl-zoo has no HumanoidStandup TRPO entry; the MuJoCo defaults are used")
        table["TRPO", env_id] = AlgoEnvConfig(
            "TRPO", env_id, _TRPO_ZOO_STEPS[env_id], kw, normalize=True, n_envs=2,
            source=ZOO_URL.format(algo="trpo"), departures=tuple(deps))
        # off-policy
        for algo, kw in (("SAC", _SAC), ("TD3", _TD3), ("DDPG", _TD3)):
            deps = [early,
                    "the replay buffer is checkpointed up to its fill point only (resume support)"]
            if env_id == "HumanoidStandup-v5":
                deps.append(f"rl-zoo has no HumanoidStandup {algo} entry; its MuJoCo settings are used")
            if algo == "DDPG":
                deps.append("rl-zoo ddpg.yml uses the same MuJoCo settings as td3.yml")
            table[algo, env_id] = AlgoEnvConfig(
                algo, env_id, _OFF_ZOO_STEPS[env_id], dict(kw),
                action_noise_std=None if algo == "SAC" else 0.1,
                source=ZOO_URL.format(algo=algo.lower()), departures=tuple(deps))
    for env_id in DISCRETE_ENVS:
        deps = ["trained as Double DQN (van Hasselt et al. 2016, as Guggilla et al. compress it): the online "
                "network picks the next state's action and the target network values it; rl-zoo trains vanilla DQN",
                "no early stopping: the paper has no figure for this pair, and the budget is under an hour",
                "the replay buffer is checkpointed up to its fill point only (resume support)",
                *_DQN_DEPARTURES.get(env_id, ())]
        table["DQN", env_id] = AlgoEnvConfig("DQN", env_id, _DQN_ZOO_STEPS[env_id], dict(_DQN[env_id]),
                                             source=ZOO_URL.format(algo="dqn"), departures=tuple(deps))
    return table


REGISTRY: dict[tuple[str, str], AlgoEnvConfig] = _build()


def canonical_algo(name: str) -> str:
    """Return the canonical algorithm name, case-insensitively, or raise listing the valid ones."""
    for algo in ALGOS:
        if algo.lower() == name.lower():
            return algo
    raise UnknownNameError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGOS)}")


def canonical_env(name: str) -> str:
    """Return the canonical environment id (``Hopper`` and ``hopper-v5`` both work)."""
    for env_id in ENVS:
        if name.lower() in (env_id.lower(), env_id.split("-")[0].lower()):
            return env_id
    raise UnknownNameError(f"unknown environment {name!r}; valid environments: {', '.join(ENVS)}")


def has_pair(algo: str, env: str) -> bool:
    """True if ``algo`` runs on ``env`` (canonical names)."""
    return (algo, env) in REGISTRY


def get_config(algo: str, env: str) -> AlgoEnvConfig:
    """Look up one pair; names are validated and canonicalised."""
    key = canonical_algo(algo), canonical_env(env)
    if key not in REGISTRY:
        kind = "discrete" if is_discrete(key[1]) else "continuous"
        algos = [a for a in ALGOS if (a, key[1]) in REGISTRY]
        raise UnknownNameError(f"{key[0]} does not run on {key[1]} ({kind} actions); algorithms on it: {', '.join(algos)}")
    return REGISTRY[key]


def env_short(env_id: str) -> str:
    """``HalfCheetah-v5`` -> ``HalfCheetah`` (the paper's tables use the short names)."""
    return env_id.split("-")[0]


@dataclass(frozen=True)
class Pair:
    algo: str
    env_id: str
    tags: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env_id}"


def pairs() -> list[Pair]:
    """Every pair of the registry in a stable order (algorithm-major, as in the paper's tables): the
    paper's 25, then the discrete-action ones."""
    return [Pair(a, e) for a in ALGOS for e in ENVS if (a, e) in REGISTRY]
