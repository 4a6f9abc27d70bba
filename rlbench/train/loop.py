"""Training a shipped policy: chunks of ``learn`` between checkpoints, an evaluation after each,
early stopping, and the export of the finished run into ``baselines/policies``.

Training proceeds in chunks of ``checkpoint_every`` steps; after each chunk the agent is
evaluated on the training-evaluation seeds and checkpointed (:mod:`rlbench.zoo.agents`).
``--resume`` continues from the last checkpoint; a larger ``--timesteps`` extends a finished run.

Off-policy agents swing between evaluations (TD3 Ant scores 3555, 2556, 1641 and 3341 in four
in a row), so the export ships the run's best agent rather than its last, as rl-baselines3-zoo's
``best_model`` does: an evaluation that reaches the best so far is confirmed on
:data:`BEST_EVAL_EPISODES` further training-evaluation seeds, and the agent with the highest
confirmation is kept (``best/``). Both sets of seeds are disjoint from the 50 evaluation seeds the
shipped return is measured on, so choosing on them does not bias that figure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from rlbench.core.errors import RLBenchError
from rlbench.core.paths import policies_dir
from rlbench.core.threads import pin_threads
from rlbench.core.versions import TRACKED, library_versions
from rlbench.measure.returns import eval_seeds, evaluate_returns
from rlbench.runtime.predictors import TorchPredictor, idle_predictor
from rlbench.zoo.agents import (TRAINERS, RunPaths, best_checkpoint, build_model, latest_checkpoint, load_agent,
                                load_checkpoint, make_vec_env, run_dir, save_checkpoint, sb3_agent)
from rlbench.zoo.paper import PAPER_TABLES
from rlbench.zoo.registry import (EARLY_STOP_EVALS, EARLY_STOP_MARGIN, OFF_POLICY, TRAIN_EVAL_SEED_BASE, AlgoEnvConfig,
                                  env_kwargs, env_short, get_config, is_discrete)

TRAIN_EVAL_EPISODES = 5
#: What a run's export ships: its best agent (:func:`keep_best`) or its latest checkpoint.
SNAPSHOTS = ("best", "latest")
#: Episodes that confirm a candidate for the run's best agent, on the training-evaluation seeds
#: after the first :data:`TRAIN_EVAL_EPISODES`.
BEST_EVAL_EPISODES = 20


# ------------------------------------------------------------------ evaluation during training
def quick_eval(model, cfg: AlgoEnvConfig, episodes: int = TRAIN_EVAL_EPISODES, first: int = 0) -> float:
    """Mean deterministic return of the current agent, through the export path, on the
    training-evaluation seeds ``first`` to ``first + episodes - 1`` (disjoint from the evaluation seeds)."""
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.export import deployable_from_sb3

    venv = model.get_env()
    vn = venv if cfg.normalize else None
    dep = deployable_from_sb3(sb3_agent(model, cfg), vn)
    base = TRAIN_EVAL_SEED_BASE + first
    return evaluate_returns(TorchPredictor(dep), cfg.env_id, range(base, base + episodes)).mean


def keep_best(paths: RunPaths, model, cfg: AlgoEnvConfig, state: dict, quick: float) -> bool:
    """After an evaluation scoring ``quick``: if it reaches the best agent's confirmed return (or
    there is none yet), confirm it on :data:`BEST_EVAL_EPISODES` further seeds and, if that beats the
    best's confirmation, make this agent the run's best (``best/``, ``state['best']``). True if it did."""
    best = state.get("best")
    if best is not None and quick < best["return"]:
        return False
    confirmed = quick_eval(model, cfg, BEST_EVAL_EPISODES, first=TRAIN_EVAL_EPISODES)
    state["evals"][-1]["confirmed"] = confirmed
    if best is not None and confirmed <= best["return"]:
        return False
    first = TRAIN_EVAL_SEED_BASE + TRAIN_EVAL_EPISODES
    state["best"] = {"steps": int(model.num_timesteps), "return": confirmed, "episodes": BEST_EVAL_EPISODES,
                     "seeds": [first, first + BEST_EVAL_EPISODES - 1]}
    save_checkpoint(paths, model, state, best=True)
    return True


# ------------------------------------------------------------------ early stopping
def early_stop_bar(cfg: AlgoEnvConfig) -> dict:
    """What a run's training evaluations must beat to stop before its budget: the paper's Table 1
    return and doing nothing's (on the training-evaluation seeds), both raised by the margin.
    None for a pair the paper has no figure for (DQN): such a run trains its whole budget."""
    paper_table = PAPER_TABLES["table1_average_return"].get(cfg.algo, {}).get(env_short(cfg.env_id))
    if paper_table is None:
        return None
    seeds = range(TRAIN_EVAL_SEED_BASE, TRAIN_EVAL_SEED_BASE + TRAIN_EVAL_EPISODES)
    idle = evaluate_returns(idle_predictor(cfg.env_id), cfg.env_id, seeds, label=f"idle-{cfg.env_id}").mean
    paper = float(paper_table["baseline"])
    top = max(paper, idle)
    return {"paper": paper, "idle": idle, "margin": EARLY_STOP_MARGIN, "evals": EARLY_STOP_EVALS,
            "bar": top + EARLY_STOP_MARGIN * abs(top)}


def should_stop_early(evals: list[dict], bar: dict) -> bool:
    """True once the last ``bar['evals']`` training evaluations each reach ``bar['bar']`` (never without a bar)."""
    if bar is None:
        return False
    last = evals[-int(bar["evals"]):]
    return len(last) == int(bar["evals"]) and all(e["return"] >= bar["bar"] for e in last)


def new_run_state(cfg: AlgoEnvConfig, seed: int, steps: int = 0) -> dict:
    """``state.json`` of a run that has not trained yet, its agent at ``steps``."""
    return {"algo": cfg.algo, "env_id": cfg.env_id, "env_kwargs": env_kwargs(cfg.env_id), "seed": seed,
            "num_timesteps": steps, "wall_seconds": 0.0, "evals": [], "resumed": 0}


# ------------------------------------------------------------------ warm start
#: Where SAC's entropy coefficient restarts in a warm start from an ``agent.pt`` that does not hold
#: it: SB3's ``auto`` starts at 1.0, which would swamp a trained policy's objective in the first updates.
WARM_START_ENT_COEF = 0.01


def warm_start(cfg: AlgoEnvConfig, seed: int, trainer: str):
    """A new off-policy run that continues the shipped policy's agent: its actor and critics (target
    networks copied from them), its step count, a new replay buffer that the registry's
    ``learning_starts`` steps of uniform actions refill before the first update, fresh optimiser
    states, and environments and noise seeded with ``seed`` + the agent's steps. Returns (model, state)."""
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.shipped import load_shipped

    if cfg.algo not in OFF_POLICY:
        raise RLBenchError(f"--init-from-shipped continues SAC, TD3 or DDPG agents, not {cfg.algo}")
    shipped = load_shipped(cfg.algo, cfg.env_id)  # verifies the files against meta.json
    meta = shipped.meta
    if meta.get("env_kwargs", {}) != env_kwargs(cfg.env_id):
        raise RLBenchError(f"{shipped.path} was trained on {cfg.env_id} with keywords {meta.get('env_kwargs', {})}, "
                           f"the registry now makes it with {env_kwargs(cfg.env_id)}; train {cfg.name} from scratch")
    steps = int(meta["timesteps"])
    agent = load_agent(shipped.agent_pt)
    model = build_model(cfg, make_vec_env(cfg, seed + steps), seed + steps, trainer, agent=agent,
                        source=shipped.agent_pt, ent_coef=WARM_START_ENT_COEF)
    model.num_timesteps = steps
    model.learning_starts = steps + int(cfg.kwargs.get("learning_starts", 100))
    state = new_run_state(cfg, seed, steps)
    state["init"] = {"from": f"baselines/policies/{cfg.name}", "steps": steps,
                     "agent_sha256": meta["files"]["agent.pt"]["sha256"],
                     "return": meta["evaluation"]["mean"], "trainer": meta.get("trainer", "sb3"),
                     "train_wall_seconds": meta.get("train_wall_seconds"), "seed": meta.get("seed")}
    if cfg.algo == "SAC":
        state["init"]["ent_coef"] = (float(np.exp(agent["log_ent_coef"])) if agent.get("log_ent_coef") is not None
                                     else WARM_START_ENT_COEF)
    return model, state


# ------------------------------------------------------------------ the training loop
class RunBusyError(RLBenchError):
    """Another process is training this run."""


def _lock_run(paths: RunPaths):
    """One trainer per run folder: a second one would interleave checkpoints."""
    import fcntl

    fh = open(paths.root / ".train.lock", "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunBusyError(f"{paths.root} is being trained by another process; wait for it or stop it") from None
    return fh


def _default_trainer(algo: str) -> str:
    """``$RLBENCH_TRAINER`` for the algorithms it trains, else sb3."""
    wanted = os.environ.get("RLBENCH_TRAINER") or "sb3"
    return wanted if wanted == "sb3" or algo in OFF_POLICY else "sb3"


def train(algo: str, env: str, timesteps: int | None = None, seed: int = 0, resume: bool = False,
          checkpoint_every: int | None = None, export: bool = True, overwrite: bool = False,
          eval_episodes: int = 50, progress: bool = True, early_stop: bool = True,
          trainer: str | None = None, init_from_shipped: bool = False) -> Path | None:
    """Train (or resume) one run and export it. ``trainer`` applies to a new run (default: see
    :func:`_default_trainer`); a resumed run keeps its own, and naming another is an error.
    ``init_from_shipped``: a new run starts from the shipped policy's agent (:func:`warm_start`)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    pin_threads(1)
    cfg = get_config(algo, env)
    target = int(timesteps or cfg.timesteps)
    if target <= 0:
        raise RLBenchError(f"--timesteps must be positive, got {target}")
    every = int(checkpoint_every or (10_000 if cfg.algo in ("SAC", "TD3", "DDPG", "DQN") else 50_000))
    dest = policies_dir() / cfg.name
    if export and dest.exists() and not overwrite:
        raise RLBenchError(f"{dest} already holds a shipped policy; pass --overwrite to replace it "
                           f"after training (or --no-export to train only)")
    paths = run_dir(cfg, seed)
    paths.root.mkdir(parents=True, exist_ok=True)
    run_lock = _lock_run(paths)  # held until the process exits
    ckpt = latest_checkpoint(paths)
    if ckpt is not None and not resume:
        raise RLBenchError(f"{paths.root} holds a checkpoint at {json.loads((ckpt / 'state.json').read_text())['num_timesteps']}"
                           f" steps; pass --resume to continue it, or delete the folder to start over")
    paths.root.mkdir(parents=True, exist_ok=True)
    ran_with = json.loads((ckpt / "state.json").read_text()).get("trainer", "sb3") if ckpt is not None else None
    if trainer is not None and ran_with is not None and trainer != ran_with:
        raise RLBenchError(f"{paths.root} was trained with --trainer {ran_with}; resume it with that, "
                           f"or delete the folder to start over with {trainer}")
    trainer = ran_with or trainer or _default_trainer(cfg.algo)
    if trainer not in TRAINERS:
        raise RLBenchError(f"unknown trainer {trainer!r}; valid trainers: {', '.join(TRAINERS)}")
    if ckpt is not None:
        model, state = load_checkpoint(cfg, seed, ckpt)
        state["resumed"] = state.get("resumed", 0) + 1
        if init_from_shipped and "init" not in state:
            raise RLBenchError(f"{paths.root} holds a run that started from fresh weights; resume it without "
                               f"--init-from-shipped, or delete the folder to start over from the shipped agent")
    elif init_from_shipped:
        model, state = warm_start(cfg, seed, trainer)
    else:
        model = build_model(cfg, make_vec_env(cfg, seed), seed, trainer)
        state = new_run_state(cfg, seed)
    if state.get("env_kwargs", {}) != env_kwargs(cfg.env_id):
        raise RLBenchError(f"{paths.root} was trained on {cfg.env_id} with keywords {state.get('env_kwargs', {})}, "
                           f"the registry now makes it with {env_kwargs(cfg.env_id)}; delete the folder to start over")
    state["target_timesteps"] = target
    if hasattr(model, "schedule_timesteps"):  # DQN's epsilon anneals over the run, not over one chunk
        model.schedule_timesteps = target
    state["trainer"] = trainer
    if early_stop and "early_stop_bar" not in state:
        state["early_stop_bar"] = early_stop_bar(cfg)
    if trainer == "sbx":
        # deferred: it loads SBX (JAX) and torch, which importing this module does not
        from rlbench.zoo import sbx_convert

        state["versions"] = library_versions(TRACKED + sbx_convert.TRACKED)
        state["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    else:
        state["versions"] = library_versions()
    state["threads"] = torch.get_num_threads()

    bar = tqdm(total=target, initial=min(model.num_timesteps, target), unit="step", dynamic_ncols=True,
               mininterval=2.0 if sys.stderr.isatty() else 30.0, disable=not progress,
               desc=f"{cfg.name} s{seed}")
    last_eval = state["evals"][-1]["return"] if state["evals"] else float("nan")
    if ckpt is not None and "best" not in state and state["evals"]:
        keep_best(paths, model, cfg, state, last_eval)  # a resumed run without a best agent: its checkpoint first

    class _Progress(BaseCallback):
        def __init__(self):
            super().__init__()
            self._seen, self._t0 = model.num_timesteps, time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps - self._seen >= 200:
                bar.update(min(self.num_timesteps, target) - bar.n)
                sps = (self.num_timesteps - self._start) / max(time.perf_counter() - self._t0, 1e-9)
                bar.set_postfix_str(f"{sps:.0f} steps/s, eval {last_eval:.1f}", refresh=False)
                self._seen = self.num_timesteps
            return True

        def _on_training_start(self) -> None:
            self._start, self._t0 = self.num_timesteps, time.perf_counter()

    while model.num_timesteps < target and not state.get("stopped_early"):
        chunk = min(every - model.num_timesteps % every, target - model.num_timesteps)
        t0 = time.perf_counter()
        model.learn(total_timesteps=chunk, reset_num_timesteps=False, callback=_Progress(), progress_bar=False)
        state["wall_seconds"] += time.perf_counter() - t0
        last_eval = quick_eval(model, cfg)
        state["num_timesteps"] = int(model.num_timesteps)
        state["evals"].append({"steps": int(model.num_timesteps), "return": last_eval,
                               "wall_seconds": round(state["wall_seconds"], 1)})
        keep_best(paths, model, cfg, state, last_eval)
        save_checkpoint(paths, model, state)
        bar.update(min(model.num_timesteps, target) - bar.n)
        bar.set_postfix_str(f"eval {last_eval:.1f}")
        if early_stop and should_stop_early(state["evals"], state["early_stop_bar"]):
            state["stopped_early"] = {"steps": int(model.num_timesteps), **state["early_stop_bar"]}
            save_checkpoint(paths, model, state)
        with open(paths.log, "a") as fh:
            fh.write(json.dumps(state["evals"][-1]) + "\n")
    bar.close()
    run_lock.close()
    if not export:
        return None
    return export_run(cfg.algo, cfg.env_id, seed=seed, overwrite=overwrite, eval_episodes=eval_episodes)


def export_run(algo: str, env: str, seed: int = 0, overwrite: bool = False, eval_episodes: int = 50,
               snapshot: str = "best") -> Path:
    """Export a run as a shipped policy, with its recorded evaluation: its best agent
    (:func:`keep_best`; ``snapshot="latest"``, or a run without one: its latest checkpoint)."""
    from stable_baselines3.common.vec_env import VecNormalize

    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.export import agent_state, deployable_from_sb3, write_policy_dir

    if snapshot not in SNAPSHOTS:
        raise RLBenchError(f"unknown snapshot {snapshot!r}; valid: {', '.join(SNAPSHOTS)}")
    pin_threads(1)
    cfg = get_config(algo, env)
    paths = run_dir(cfg, seed)
    latest = latest_checkpoint(paths)
    if latest is None:
        raise RLBenchError(f"no checkpoint in {paths.root}; run: rlbench train {cfg.algo} {cfg.env_id} --seed {seed}")
    run = json.loads((latest / "state.json").read_text())
    ckpt = (best_checkpoint(paths) if snapshot == "best" else None) or latest
    model, state = load_checkpoint(cfg, seed, ckpt)
    shipped = {"kind": "best" if ckpt != latest else "latest", "steps": int(model.num_timesteps)}
    if ckpt != latest:
        shipped["confirmation"] = state["best"]
    venv = model.get_env()
    vn = venv if isinstance(venv, VecNormalize) else None
    trainer = run.get("trainer", "sb3")
    departures = list(cfg.departures)
    if trainer == "sbx":
        # deferred: it loads SBX (JAX) and torch, which importing this module does not
        from rlbench.zoo.sbx_convert import DEPARTURES

        departures += DEPARTURES
    init = run.get("init")
    if init is not None:
        departures.append(f"continued from the agent shipped before it ({init['steps']} steps, agent.pt sha256 "
                          f"{init['agent_sha256'][:12]}, in the repository's history) with a new replay buffer "
                          f"and optimiser states (rlbench train --init-from-shipped)")
    model = sb3_agent(model, cfg)
    dep = deployable_from_sb3(model, vn)
    rec = evaluate_returns(TorchPredictor(dep), cfg.env_id, eval_seeds(eval_episodes), label=cfg.name,
                           saturation=not is_discrete(cfg.env_id))
    import gymnasium

    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import make_env

    e = make_env(cfg.env_id)
    meta = {
        "algo": cfg.algo, "env_id": cfg.env_id, "env_name": cfg.env_id.split("-")[0],
        "env_version": cfg.env_id.split("-v")[-1],
        "observation_space": {"shape": list(e.observation_space.shape), "dtype": str(e.observation_space.dtype)},
        "action_space": ({"n": int(e.action_space.n), "dtype": "int64"} if hasattr(e.action_space, "n") else
                         {"shape": list(e.action_space.shape), "low": e.action_space.low.tolist(),
                          "high": e.action_space.high.tolist()}),
        "timesteps": int(model.num_timesteps), "trained_timesteps": int(run["num_timesteps"]),
        "target_timesteps": int(run.get("target_timesteps", 0)), "snapshot": shipped,
        "budget_complete": int(run["num_timesteps"]) >= cfg.timesteps or bool(run.get("stopped_early")),
        "stopped_early": run.get("stopped_early"), "env_kwargs": run.get("env_kwargs", {}), "init": init,
        "seed": seed, "trainer": trainer, "train_wall_seconds": round(run["wall_seconds"], 1), "train_evals": run["evals"],
        "hyperparameters": {"kwargs": cfg.kwargs, "normalize": cfg.normalize, "n_envs": cfg.n_envs,
                            "action_noise_std": cfg.action_noise_std, "source": cfg.source,
                            "departures": departures},
        "training_versions": run.get("versions", {}), "export_versions": library_versions(),
        "gymnasium": gymnasium.__version__,
        "evaluation": rec.to_json(),
        "regenerate": f"rlbench train {cfg.algo} {cfg.env_id} --timesteps {int(run['num_timesteps'])} --seed {seed}"
                      + (f" --trainer {trainer}" if trainer != "sb3" else "")
                      + (" --init-from-shipped" if init is not None else ""),
    }
    e.close()
    return write_policy_dir(policies_dir() / cfg.name, dep, agent_state(model, vn), meta, overwrite=overwrite)
