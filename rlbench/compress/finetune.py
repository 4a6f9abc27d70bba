"""Fine-tuning a policy with fake-quantised (and masked) layers: one loop per training signal, shared by QAT and GMP.

A :class:`Plan` says what happens at each step (pruning, when fake quantisation starts, when the
activation ranges freeze); :func:`finetune` trains a policy following it and returns the
student (:class:`~rlbench.compress.fakequant.QuantPolicy`), a record, and the states it was
trained on. :mod:`rlbench.compress.methods.qat` plans quantisation only, :mod:`rlbench.compress.methods.gmp`
pruning and then quantisation.

**Training signal** (``signal``):

* ``distill`` (default): policy distillation, DAgger-style (:func:`distill`). The fp32 policy is
  the teacher. Round 0 collects ``STATES_PER_ROUND`` states by running the teacher
  deterministically in its environment; rounds 1..``DAGGER_ROUNDS - 1``, spread evenly over
  training, run the current student, so the student is trained on the states it visits itself.
  Episode ``i`` of round ``r`` resets with seed ``CALIBRATION_SEED_BASE + r * STATES_PER_ROUND +
  i`` (disjoint from every evaluation seed; a round has at most ``STATES_PER_ROUND`` episodes, so
  rounds never share a seed). The loss is the mean squared difference between student and
  teacher actions before the final clip, in units of half the action range (``tanh`` output for
  squashed policies), on batches of ``BATCH_SIZE`` drawn from all states collected so far, with Adam.
* ``rl``: the algorithm's own loss (:func:`rl_finetune`). The SB3 agent is rebuilt from
  ``agent.pt`` with the registry's hyperparameters (:func:`rlbench.zoo.agents.build_model`), the
  actor's Linear layers are wrapped in :class:`~rlbench.compress.fakequant.QuantLinear` (same
  parameters, so the optimiser keeps them), and ``model.learn(steps)`` runs ``steps``
  environment steps with the plan applied at each. One loop serves every algorithm; an adapter
  per family rebuilds the agent, finds its actor layers, and reads back the observations it saw:

  * :class:`OffPolicy` (SAC, TD3, DDPG): target networks copied from the online ones, and
    departures from the registry, recorded in the summary: a fresh replay buffer, so
    ``learning_starts = min(registry, batch_size, steps // 2)``; ``learning_rate = lr``; SAC's
    entropy coefficient is not in ``agent.pt``, so it restarts at ``SAC_ENT_COEF`` (SB3's ``auto``
    starts at 1.0, which would swamp a trained policy's objective) and adapts from there.
  * :class:`OnPolicy` (PPO, TRPO): their own rollouts and updates, with the saved VecNormalize
    statistics frozen so the actor sees what the deployed graph will feed it.

Deterministic: single-threaded torch, seeded batch sampling and SB3 seeding, seeded rollouts;
the same inputs give byte-identical ONNX (a test builds twice and compares sha256).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlbench.compress.fakequant import QuantLinear, QuantPolicy
from rlbench.compress.calibration import calibration_observations
from rlbench.compress.registry import MethodInfo, Source
from rlbench.core.errors import CompressionError, PolicyError
from rlbench.core.io import sha256_bytes, sha256_file
from rlbench.core.threads import torch_threads
from rlbench.zoo.agents import build_model, load_agent, load_agent_state, make_vec_env
from rlbench.zoo.registry import CALIBRATION_SEED_BASE, ON_POLICY, get_config

#: Distillation settings. Changing any changes the artefact bytes: bump the qat and gmp method versions.
DAGGER_ROUNDS = 4
STATES_PER_ROUND = 1000
BATCH_SIZE = 256
#: Activation ranges follow the data for this fraction of the quantised steps, then are frozen.
OBSERVE_FRACTION = 0.5
#: The distillation loss reported is the mean over this many final batches.
FINAL_LOSS_WINDOW = 50
#: SAC's initial entropy coefficient for ``rl`` fine-tuning (``agent.pt`` does not store it).
SAC_ENT_COEF = "auto_0.01"
#: ``rl`` training environments reset first with this seed (+ the method's ``seed``).
RL_ENV_SEED_OFFSET = 500_000


# ------------------------------------------------------------------------------ the schedule
@dataclass
class Plan:
    """What happens at each training step: pruning, when fake quantisation starts, when ranges freeze.

    Steps are gradient steps (``distill``) or environment steps (``rl``).
    """

    total: int
    quant_start: int | None = None
    """Step at which fake quantisation starts (None: never)."""
    observe_until: int = 0
    """Activation ranges follow the data until this step, then are frozen."""
    prune: Callable[[int, list[QuantLinear]], None] | None = None
    """Called with every step (and once with ``total`` at the end) to update pruning masks."""
    keep_nonzero: bool = False

    @classmethod
    def qat(cls, steps: int, start: int = 0, **kw) -> Plan:
        quant_steps = steps - start
        return cls(steps, start, start + int(OBSERVE_FRACTION * quant_steps), **kw)

    def apply(self, t: int, layers: list[QuantLinear], calibrate: Callable[[], None] | None = None) -> None:
        if self.prune is not None:
            self.prune(t, layers)
        if self.quant_start is not None and t == self.quant_start:
            for l in layers:
                l.quant, l.observe, l.keep_nonzero = True, True, self.keep_nonzero
            if calibrate is not None:
                calibrate()
        if self.quant_start is not None and t >= self.observe_until:
            for l in layers:
                l.observe = False

    def finish(self, layers: list[QuantLinear], calibrate: Callable[[], None]) -> None:
        """Final masks, frozen ranges, and a range for any layer that never saw a training batch."""
        if self.prune is not None:
            self.prune(self.total, layers)
        if self.quant_start is not None:
            for l in layers:
                l.quant, l.observe, l.keep_nonzero = True, False, self.keep_nonzero
            if not all(bool(l.in_ready) for l in layers):
                calibrate()


@dataclass
class Trained:
    """A trained student, what was done, and the states it was trained on (for checks)."""

    student: QuantPolicy
    record: dict
    states: np.ndarray = field(repr=False)


# ------------------------------------------------------------------------------ distillation
def distill(policy, env_id: str, plan: Plan, lr: float, seed: int) -> Trained:
    """Distil ``policy`` (the fp32 teacher) into a :class:`QuantPolicy` student following ``plan``."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    teacher = QuantPolicy(policy).eval()
    student = QuantPolicy(policy)
    layers = list(student.layers)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    starts = sorted({(r * plan.total) // DAGGER_ROUNDS for r in range(DAGGER_ROUNDS)})
    obs_all = torch.zeros(0, student.spec.obs_dim)
    tgt_all = torch.zeros(0, student.spec.act_dim)
    rounds: list[dict] = []
    losses: list[float] = []

    def calibrate():
        student.calibrate(obs_all)

    for t in range(plan.total):
        if t in starts:
            r = len(rounds)
            actor = policy if r == 0 else student.eval()
            obs, rec = calibration_observations(actor, env_id, STATES_PER_ROUND,
                                                seed_base=CALIBRATION_SEED_BASE + r * STATES_PER_ROUND)
            with torch.no_grad():
                tgt = teacher.unit_action(torch.from_numpy(obs))
            obs_all = torch.cat([obs_all, torch.from_numpy(obs)])
            tgt_all = torch.cat([tgt_all, tgt])
            rounds.append({"round": r, "at_step": t, "policy": "fp32 teacher" if r == 0 else "student",
                           "seeds": rec["seeds"], "episodes": rec["episodes"], "states": int(obs.shape[0]),
                           "sha256": sha256_bytes(obs.tobytes())})
        plan.apply(t, layers, calibrate)
        student.train()
        idx = torch.randint(obs_all.shape[0], (BATCH_SIZE,), generator=gen)
        loss = F.mse_loss(student.unit_action(obs_all[idx]), tgt_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    plan.finish(layers, calibrate)
    student.eval()
    with torch.no_grad():
        out = student.unit_action(obs_all)
        final = float(F.mse_loss(out, tgt_all))
        err = (out - tgt_all).abs()
    window = losses[-FINAL_LOSS_WINDOW:]
    record = {
        "signal": "distill", "gradient_steps": plan.total, "lr": lr, "seed": seed, "batch_size": BATCH_SIZE,
        "optimizer": "Adam", "loss": "MSE of actions before the clip, in half action ranges (tanh output if squashed)",
        "dagger_rounds": rounds, "rollout_seed_base": CALIBRATION_SEED_BASE, "states": int(obs_all.shape[0]),
        "initial_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(window)) if window else None,
        "final_loss_window": len(window),
        "final_dataset_loss": final,
        "final_unit_action_error": {"max": float(err.max()), "mean": float(err.mean())},
    }
    return Trained(student, record, obs_all.numpy().copy())


# ---------------------------------------------------------------------------- RL fine-tuning
def _qf_arch(state: dict) -> list[int]:
    """Hidden widths of the critic (``critic.qf0.<i>.weight``), read off the saved state dict."""
    ws = sorted((int(k.split(".")[2]), v) for k, v in state.items()
                if k.startswith("critic.qf0.") and k.endswith(".weight"))
    return [int(v.shape[0]) for _, v in ws[:-1]]


def _actor_slots(model, algo: str) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of each deployed actor Linear layer, hidden layers then head."""
    actor = model.policy.actor
    if algo == "SAC":
        slots = [(actor.latent_pi, str(i)) for i, m in enumerate(actor.latent_pi) if isinstance(m, nn.Linear)]
        return slots + [(actor, "mu")]
    return [(actor.mu, str(i)) for i, m in enumerate(actor.mu) if isinstance(m, nn.Linear)]


def _calibrate_wrappers(policy, wrappers: list[QuantLinear], raw_obs: np.ndarray) -> None:
    """Set the wrapped layers' activation ranges from raw observations (through a probe policy)."""
    probe = QuantPolicy(policy)
    for dst, src in zip(probe.layers, wrappers):
        dst.copy_state_from(src)
    probe.calibrate(torch.as_tensor(raw_obs, dtype=torch.float32))
    for dst, src in zip(wrappers, probe.layers):
        dst.copy_state_from(src)


def _schedule_callback(plan: Plan, wrappers: list[QuantLinear], on_step: Callable[[Any], None] | None = None):
    """An SB3 callback applying ``plan`` at each env step of ``learn`` (and ``on_step(callback)``)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _Schedule(BaseCallback):
        def _on_training_start(self) -> None:
            self._start = self.num_timesteps
            plan.apply(0, wrappers)

        def _on_step(self) -> bool:
            t = self.num_timesteps - self._start
            if t < plan.total:
                plan.apply(t, wrappers)
            if on_step is not None:
                on_step(self)
            return True

    return _Schedule()


def _student_of(policy, wrappers: list[QuantLinear], states: np.ndarray) -> tuple[QuantPolicy, dict | None]:
    """The fine-tuned student, and its unit-action change against the fp32 policy on ``states``."""
    student = QuantPolicy(policy)
    for dst, src in zip(student.layers, wrappers):
        dst.copy_state_from(src)
    student.eval()
    if not len(states):
        return student, None
    teacher = QuantPolicy(policy).eval()
    x = torch.from_numpy(states)
    with torch.no_grad():
        err = (student.unit_action(x) - teacher.unit_action(x)).abs()
    return student, {"max": float(err.max()), "mean": float(err.mean())}



def _wrap_slots(slots) -> list[QuantLinear]:
    wrappers = []
    for parent, attr in slots:
        w = QuantLinear(_slot(parent, attr))
        if attr.isdigit():
            parent[int(attr)] = w
        else:
            setattr(parent, attr, w)
        wrappers.append(w)
    return wrappers


def _slot(parent: nn.Module, attr: str) -> nn.Module:
    return parent[int(attr)] if attr.isdigit() else getattr(parent, attr)


class OffPolicy:
    """SAC, TD3, DDPG: the agent rebuilt with a fresh replay buffer, whose observations are read back."""

    on_step: Callable[[Any], None] | None = None

    def __init__(self, policy, env_id: str, agent: dict, agent_pt: Path, algo: str, plan: Plan, lr: float,
                 seed: int, method: str):
        if agent.get("vecnormalize") is not None:
            raise CompressionError(f"{method}: signal='rl' is not implemented for agents trained with VecNormalize")
        cfg = get_config(algo, env_id)
        state = agent["policy_state"]
        kwargs = dict(cfg.kwargs)
        self.batch = int(kwargs.get("batch_size", 256))
        self.learning_starts = min(int(kwargs.get("learning_starts", 100)), self.batch, plan.total // 2)
        pk = dict(kwargs.get("policy_kwargs") or {})
        pk["net_arch"] = {"pi": list(policy.current_spec().hidden), "qf": _qf_arch(state)}
        kwargs.update(learning_starts=self.learning_starts, buffer_size=max(plan.total, 1), learning_rate=lr,
                      policy_kwargs=pk)
        if algo == "SAC":
            kwargs["ent_coef"] = SAC_ENT_COEF
        cfg = dataclasses.replace(cfg, kwargs=kwargs)
        self.algo, self.plan = algo, plan
        self.env_seed = CALIBRATION_SEED_BASE + RL_ENV_SEED_OFFSET + seed
        self.model = build_model(cfg, make_vec_env(cfg, self.env_seed), seed)
        try:
            # SAC's coefficient starts at SAC_ENT_COEF whatever the agent's, so an artefact does not depend on it
            load_agent_state(self.model, {k: v for k, v in agent.items() if k != "log_ent_coef"}, agent_pt)
        except PolicyError as exc:
            raise CompressionError(f"{method}: {exc}") from exc

    def actor_slots(self) -> list[tuple[nn.Module, str]]:
        return _actor_slots(self.model, self.algo)

    def calibration_obs(self) -> np.ndarray:
        buf = self.model.replay_buffer
        n = max(buf.buffer_size if buf.full else buf.pos, 1)
        return buf.observations[:n].reshape(n, -1)

    def states(self) -> np.ndarray:
        buf = self.model.replay_buffer
        n = buf.buffer_size if buf.full else buf.pos
        return np.ascontiguousarray(buf.observations[:n].reshape(n, -1), dtype=np.float32)

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "env_steps": self.plan.total, "learning_starts": self.learning_starts, "batch_size": self.batch,
            "buffer_size": max(self.plan.total, 1),
            "departures": ["fresh replay buffer: learning_starts = min(registry, batch_size, steps // 2)",
                           "learning_rate = lr for every optimiser",
                           *([f"ent_coef = {SAC_ENT_COEF!r} (agent.pt does not store SAC's entropy coefficient)"]
                             if self.algo == "SAC" else [])]}
        if self.algo == "SAC" and getattr(self.model, "log_ent_coef", None) is not None:
            rec["final_ent_coef"] = float(torch.exp(self.model.log_ent_coef.detach()).item())
        return rec


class OnPolicy:
    """PPO, TRPO: the agent rebuilt with its saved VecNormalize statistics, frozen (``training=False``).

    The deployed graph normalises with those fixed statistics, so the actor must see the same
    inputs while it adapts. Rewards are still scaled by the saved return statistics, as the critic
    was trained on them. ``learn`` collects whole rollouts of ``n_steps``, so the env steps taken
    are ``steps`` rounded up to a rollout (recorded). There is no replay buffer: the raw
    observations are kept as the rollouts see them.
    """

    def __init__(self, policy, env_id: str, agent: dict, agent_pt: Path, algo: str, plan: Plan, lr: float,
                 seed: int, method: str):
        cfg = get_config(algo, env_id)
        self.vn = vn = agent.get("vecnormalize")
        if cfg.normalize != (vn is not None):
            raise CompressionError(f"{method}: {agent_pt} {'has no' if cfg.normalize else 'has'} VecNormalize "
                                   f"statistics, but the registry's {cfg.name} "
                                   f"{'uses' if cfg.normalize else 'does not use'} them")
        state = agent["policy_state"]
        vf = [int(v.shape[0]) for k, v in sorted(((int(k.split(".")[2]), v) for k, v in state.items()
                                                  if k.startswith("mlp_extractor.value_net.")
                                                  and k.endswith(".weight")))]
        pk = dict(cfg.kwargs.get("policy_kwargs") or {})
        pk["net_arch"] = {"pi": list(policy.current_spec().hidden), "vf": vf}
        cfg = dataclasses.replace(cfg, kwargs=dict(cfg.kwargs, learning_rate=lr, policy_kwargs=pk))
        self.plan = plan
        self.env_seed = CALIBRATION_SEED_BASE + RL_ENV_SEED_OFFSET + seed
        venv = make_vec_env(cfg, self.env_seed)
        if vn is not None:
            venv.obs_rms.mean, venv.obs_rms.var = vn["obs_mean"].numpy().copy(), vn["obs_var"].numpy().copy()
            venv.obs_rms.count = float(vn["obs_count"])
            venv.ret_rms.mean, venv.ret_rms.var = vn["ret_mean"].numpy().copy(), vn["ret_var"].numpy().copy()
            venv.ret_rms.count = float(vn["ret_count"])
            venv.clip_obs, venv.clip_reward, venv.epsilon = vn["clip_obs"], vn["clip_reward"], vn["epsilon"]
            venv.training = False
        self.model = model = build_model(cfg, venv, seed)
        try:
            model.policy.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CompressionError(f"{method}: {agent_pt} does not fit the {algo} agent rebuilt from the registry "
                                   f"({str(exc).splitlines()[0]})") from exc
        self.raw_obs: list[np.ndarray] = []

    def actor_slots(self) -> list[tuple[nn.Module, str]]:
        pol = self.model.policy
        return [(pol.mlp_extractor.policy_net, str(i)) for i, m in enumerate(pol.mlp_extractor.policy_net)
                if isinstance(m, nn.Linear)] + [(pol, "action_net")]

    def on_step(self, cb) -> None:
        env = cb.training_env
        obs = env.get_original_obs() if self.vn is not None else cb.locals["new_obs"]
        self.raw_obs.append(np.array(obs, dtype=np.float32).reshape(env.num_envs, -1))

    def calibration_obs(self) -> np.ndarray:
        return np.concatenate(self.raw_obs)

    def states(self) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(self.raw_obs), dtype=np.float32)

    def record(self) -> dict[str, Any]:
        model = self.model
        return {"env_steps": int(model.num_timesteps), "steps_asked": self.plan.total,
                "n_steps": int(model.n_steps), "n_envs": int(model.n_envs),
                "departures": ["learning_rate = lr", "VecNormalize statistics frozen at the saved ones (training=False)",
                               "whole rollouts: env_steps is steps rounded up to n_steps * n_envs"]}


def rl_finetune(policy, env_id: str, agent_pt: Path, plan: Plan, lr: float, seed: int, method: str = "qat") -> Trained:
    """Fine-tune the actor of ``agent_pt`` with its algorithm's loss for ``plan.total`` env steps.

    The loop is the same for every algorithm: rebuild the agent (its family's adapter), check
    that its actor is the policy being compressed, wrap the actor's Linear layers, ``learn`` with
    the plan applied at each step, and take the student and the observations it was trained on.
    """
    agent = load_agent(agent_pt)
    algo = str(agent.get("algo", "")).upper()
    family = OnPolicy if algo in ON_POLICY else OffPolicy
    adapter = family(policy, env_id, agent, agent_pt, algo, plan, lr, seed, method)
    model = adapter.model
    slots = adapter.actor_slots()
    deployed = [_slot(parent, attr) for parent, attr in slots]
    if len(deployed) != len(policy.linears()) or not all(
            torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
            for a, b in zip(deployed, policy.linears())):
        raise CompressionError(f"{method}: the actor in {agent_pt} is not the policy being compressed "
                               "(its weights differ from policy.pt)")
    wrappers = _wrap_slots(slots)
    model.learn(total_timesteps=plan.total, callback=_schedule_callback(plan, wrappers, adapter.on_step),
                progress_bar=False)
    plan.finish(wrappers, lambda: _calibrate_wrappers(policy, wrappers, adapter.calibration_obs()))
    states = adapter.states()
    student, change = _student_of(policy, wrappers, states)
    record: dict[str, Any] = {"signal": "rl", "algo": algo, "gradient_steps": int(model._n_updates), "lr": lr,
                              "seed": seed, "env_seed": adapter.env_seed, **adapter.record(),
                              "states": int(len(states)), "unit_action_change_vs_fp32": change}
    return Trained(student, record, states)


# --------------------------------------------------------------------------------- entry points
def training_context(info: MethodInfo, params: dict, src: Source) -> tuple[dict, dict]:
    """The context and cache-key material of a fine-tuning method (its preparation).

    Both signals roll the policy out in its environment; ``rl`` also needs the SB3 agent
    (``agent.pt`` of a shipped policy), whose sha256 goes into the cache key.
    """
    method, env_id = info.name, src.env_id
    if env_id is None:
        raise CompressionError(f"{method}: training rolls the policy out in its environment: compress a shipped "
                               "policy, or pass env_id= with a bare DeployablePolicy")
    ctx: dict[str, Any] = {"env_id": env_id}
    extra: dict[str, Any] = {"training": {"env_id": env_id, "seed_base": CALIBRATION_SEED_BASE,
                                          "dagger_rounds": DAGGER_ROUNDS, "states_per_round": STATES_PER_ROUND,
                                          "batch_size": BATCH_SIZE}}
    if params.get("signal") == "rl":
        from importlib.metadata import version

        agent = src.agent_pt
        if agent is None or not Path(agent).is_file():
            raise CompressionError(f"{method}: signal='rl' fine-tunes the SB3 agent and needs its agent.pt: compress "
                                   "a shipped policy (rlbench.zoo.shipped.load_shipped), or use signal='distill'")
        ctx["agent_pt"] = Path(agent)
        extra["training"].update(agent_sha256=sha256_file(agent), stable_baselines3=version("stable-baselines3"))
    return ctx, extra


def finetune(policy, env_id: str, plan: Plan, *, signal: str = "distill", lr: float = 1e-4, seed: int = 0,
             agent_pt: Path | None = None, method: str = "qat") -> Trained:
    """Fine-tune ``policy`` (untouched) following ``plan`` with ``signal``; the student and its record."""
    with torch_threads(1):  # training's result must not depend on the thread count
        if signal == "rl":
            if agent_pt is None:
                raise CompressionError(f"{method}: signal='rl' needs agent_pt")
            return rl_finetune(policy, env_id, Path(agent_pt), plan, float(lr), int(seed), method)
        return distill(policy, env_id, plan, float(lr), int(seed))


__all__ = ["BATCH_SIZE", "DAGGER_ROUNDS", "OBSERVE_FRACTION", "OffPolicy", "OnPolicy", "Plan", "STATES_PER_ROUND",
           "Trained", "distill", "finetune", "load_agent", "rl_finetune", "training_context"]
