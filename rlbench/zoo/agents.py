"""SB3 agents built from the registry, and their checkpoints outside the repository.

The training loop (:mod:`rlbench.train.loop`) builds its agent here and checkpoints it here, so
it is resumable after a kill at any moment. A run lives in ``$RLBENCH_HOME/runs/ALGO-ENV-sSEED/``. Training proceeds in chunks of
``checkpoint_every`` steps; after each chunk the agent, its optimiser, the VecNormalize
statistics, the filled part of the replay buffer and ``state.json`` are written to a fresh
``ckpt.tmp/`` which then replaces ``ckpt/``. A kill loses at most one chunk. ``--resume``
loads ``ckpt/`` and continues; a larger ``--timesteps`` extends a finished run. The agent that
scored best in the run's confirmation evaluations is kept beside it in ``best/`` (without its
replay buffer): that is what the export ships.

All hyperparameters used are constant (no schedules), so chunked ``learn`` calls train the same
algorithm as one long call.

``--init-from-shipped`` starts a new off-policy run from the shipped policy's ``agent.pt`` instead of
fresh weights (:func:`load_agent_state`), so a run whose checkpoint is gone continues from the last
agent that landed: it loses the steps since then, the replay buffer (refilled by a new
``learning_starts`` warm-up) and the optimiser states, none of which ``agent.pt`` holds.

``--trainer sbx`` trains SAC, TD3 or DDPG with SBX (JAX) instead, set up as SB3's algorithm and
converted to the SB3 agent for every evaluation and the export (:mod:`rlbench.zoo.sbx_convert`), so
what ships is the same kind of file. A run keeps the trainer it started with.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlbench.core.errors import PolicyError, RLBenchError
from rlbench.core.io import replace_dir
from rlbench.core.paths import runs_dir
from rlbench.zoo.registry import AlgoEnvConfig

#: Who runs the updates: SB3 (torch) or SBX (JAX, ``pip install -e '.[train-sbx]'``).
TRAINERS: tuple[str, ...] = ("sb3", "sbx")


@dataclass
class RunPaths:
    root: Path

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


def run_dir(cfg: AlgoEnvConfig, seed: int) -> RunPaths:
    return RunPaths(runs_dir() / f"{cfg.name}-s{seed}")


def _algo_class(algo: str, trainer: str = "sb3"):
    if trainer == "sbx":
        try:
            from rlbench.zoo.sbx_convert import sbx_class
        except ImportError as exc:
            raise RLBenchError(f"--trainer sbx needs SBX: pip install -e '.[train-sbx]' ({exc})") from None
        return sbx_class(algo)
    if algo == "TRPO":
        from sb3_contrib import TRPO

        return TRPO
    if algo == "DQN":
        # deferred: it loads stable_baselines3 and torch, which importing this module does not
        from rlbench.zoo.ddqn import DoubleDQN

        return DoubleDQN
    import stable_baselines3 as sb3

    return getattr(sb3, algo)


def _policy_kwargs(raw: dict | None) -> dict | None:
    if not raw:
        return None
    from torch import nn

    out = dict(raw)
    if isinstance(out.get("activation_fn"), str):
        out["activation_fn"] = getattr(nn, out["activation_fn"])
    return out


def make_vec_env(cfg: AlgoEnvConfig, seed: int):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import make_env

    venv = DummyVecEnv([lambda: Monitor(make_env(cfg.env_id)) for _ in range(cfg.n_envs)])
    venv.seed(seed)
    if cfg.normalize:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=cfg.kwargs.get("gamma", 0.99))
    return venv


def build_model(cfg: AlgoEnvConfig, env, seed: int | None, trainer: str = "sb3", agent: dict | None = None,
                source: Path | None = None, ent_coef: float | None = None):
    """A fresh SB3 agent with the registry's hyperparameters (also used to rebuild shipped agents).

    With ``trainer="sbx"``, the SBX agent that trains it: same hyperparameters, same initial weights.
    With ``agent`` (an ``agent.pt`` read from ``source``), it starts from that agent's networks
    (:func:`load_agent_state`; SAC's entropy coefficient from ``ent_coef``).
    """
    if trainer == "sbx":
        _algo_class(cfg.algo, trainer)  # an on-policy algorithm or a missing install, named before building
    kwargs = dict(cfg.kwargs)
    kwargs["policy_kwargs"] = _policy_kwargs(kwargs.get("policy_kwargs"))
    if cfg.action_noise_std is not None:
        from stable_baselines3.common.noise import NormalActionNoise

        n = env.action_space.shape[0]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(n), cfg.action_noise_std * np.ones(n))
    model = _algo_class(cfg.algo)("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kwargs)
    if agent is not None:
        load_agent_state(model, agent, source or Path("agent.pt"), ent_coef)
    if trainer == "sbx":
        # deferred: it loads SBX (JAX) and torch, which importing this module does not
        from rlbench.zoo.sbx_convert import from_sb3

        return from_sb3(model, cfg.kwargs)
    return model


def load_agent(agent_pt: Path) -> dict:
    """A shipped ``agent.pt`` (:func:`rlbench.zoo.export.agent_state`), or an error naming the file."""
    import torch

    try:
        agent = torch.load(agent_pt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise PolicyError(f"{agent_pt} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(agent, dict) or agent.get("format") != "rlbench.agent/1":
        raise PolicyError(f"{agent_pt} is not an rlbench agent file (format 'rlbench.agent/1' expected)")
    return agent


def load_agent_state(model, agent: dict, source: Path, ent_coef: float | None = None) -> None:
    """Set the SB3 off-policy agent ``model``'s actor and critics to ``agent``'s (an ``agent.pt``
    read from ``source``) and its target networks to copies of them, which ``agent.pt`` does not hold.

    SAC's entropy coefficient restarts at the agent's (``log_ent_coef``, in the ``agent.pt`` of
    exports that record it), else at ``ent_coef`` (default: the model's own; SB3's ``auto`` starts at 1.0).
    """
    import torch

    if agent.get("vecnormalize") is not None:
        raise PolicyError(f"{source}: agents trained with VecNormalize cannot be loaded into an off-policy agent")
    algo = type(model).__name__
    try:
        missing, unexpected = model.policy.load_state_dict(agent["policy_state"], strict=False)
    except RuntimeError as exc:
        raise PolicyError(f"{source} does not fit the {algo} agent rebuilt from the registry "
                          f"({str(exc).splitlines()[0]})") from exc
    if unexpected or any("_target" not in k for k in missing):
        raise PolicyError(f"{source} does not fit the rebuilt {algo} agent "
                          f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    with torch.no_grad():
        model.critic_target.load_state_dict(model.critic.state_dict())
        if getattr(model, "actor_target", None) is not None:
            model.actor_target.load_state_dict(model.actor.state_dict())
        if getattr(model, "log_ent_coef", None) is not None:
            if agent.get("log_ent_coef") is not None:
                model.log_ent_coef.fill_(float(agent["log_ent_coef"]))
            elif ent_coef is not None:
                model.log_ent_coef.fill_(float(np.log(ent_coef)))


def sb3_agent(model, cfg: AlgoEnvConfig):
    """``model`` if SB3 trains it; an SBX agent's SB3 twin (what is evaluated and shipped)."""
    if getattr(model, "trainer", "sb3") == "sb3":
        return model
    # deferred: it loads SBX (JAX) and torch, which importing this module does not
    from rlbench.zoo.sbx_convert import to_sb3

    return to_sb3(model, build_model(cfg, model.get_env(), seed=None))  # seed=None: no generator is reseeded


# ------------------------------------------------------------------ replay buffer
_RB_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay(buffer, path: Path) -> None:
    """Only the filled part of the buffer (np.savez would otherwise write all 1e6 rows)."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {f: getattr(buffer, f)[:n] for f in _RB_FIELDS if getattr(buffer, f, None) is not None}
    with open(path, "wb") as fh:
        np.savez(fh, pos=np.array(buffer.pos), full=np.array(buffer.full), **arrays)


def load_replay(buffer, path: Path) -> None:
    with np.load(path) as data:
        for f in _RB_FIELDS:
            if f in data.files and getattr(buffer, f, None) is not None:
                arr = data[f]
                getattr(buffer, f)[: len(arr)] = arr
        buffer.pos = int(data["pos"])
        buffer.full = bool(data["full"])


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(paths: RunPaths, model, state: dict, best: bool = False) -> None:
    """Write ``ckpt/`` (``best``: ``best/``, without the replay buffer) through a fresh folder, so a
    kill leaves the previous one whole."""
    dest = paths.best if best else paths.ckpt
    tmp = paths.root / f"{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip", exclude=["replay_buffer", "env", "_last_obs", "_last_original_obs"])
    venv = model.get_env()
    from stable_baselines3.common.vec_env import VecNormalize

    if isinstance(venv, VecNormalize):
        venv.save(str(tmp / "vecnormalize.pkl"))
    if not best and getattr(model, "replay_buffer", None) is not None:
        save_replay(model.replay_buffer, tmp / "replay.npz")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    replace_dir(tmp, dest, paths.root / f"{dest.name}.old")  # the readers below take .old between the renames


def latest_checkpoint(paths: RunPaths) -> Path | None:
    """``ckpt/``, or ``ckpt.old/`` if a kill fell between the two renames."""
    return _complete(paths.ckpt, paths.root / "ckpt.old")


def best_checkpoint(paths: RunPaths) -> Path | None:
    """``best/`` (or ``best.old/``), the agent of the run's best confirmation evaluation, if any."""
    return _complete(paths.best, paths.root / "best.old")


def _complete(*dirs: Path) -> Path | None:
    for d in dirs:
        if (d / "state.json").exists() and (d / "model.zip").exists():
            return d
    return None


def load_checkpoint(cfg: AlgoEnvConfig, seed: int, ckpt: Path):
    """Rebuild agent + env from a checkpoint. Returns (model, state)."""
    from stable_baselines3.common.vec_env import VecNormalize

    state = json.loads((ckpt / "state.json").read_text())
    venv = make_vec_env(cfg, seed + int(state["num_timesteps"]))  # fresh episodes, new but seeded
    if cfg.normalize:
        venv = VecNormalize.load(str(ckpt / "vecnormalize.pkl"), venv.venv)
    model = _algo_class(cfg.algo, state.get("trainer", "sb3")).load(ckpt / "model.zip", env=venv, device="cpu")
    # load() seeds the generators, the action space and the env with the run's seed again, which
    # would replay the start's exploration noise and episodes after every resume
    model.set_random_seed(seed + int(state["num_timesteps"]))
    if (ckpt / "replay.npz").exists():
        load_replay(model.replay_buffer, ckpt / "replay.npz")
    return model, state
