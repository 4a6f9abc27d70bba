"""Quantization-aware training (``qat``): fake-quantised fine-tuning, deployed as an int8 QDQ ONNX graph.

The policy is fine-tuned with int8 rounding in its forward pass, so it learns weights that
survive the rounding, then written as an ONNX graph that ONNX Runtime runs with int8 weights.

**Fake quantisation, written here (no ``torch.ao``).** ``torch.ao.quantization`` still works on
torch 2.13 but warns it is deprecated, its default QAT qconfig's fused fake-quant op does not
export to ONNX, and only the deprecated TorchScript exporter turns a plain ``FakeQuantize`` into
QDQ. The quantiser is three lines of arithmetic, so it lives in :class:`QuantLinear`, and the
graph is written with ``onnx.helper`` like :mod:`rlbench.zoo.onnx_graph`: nothing a torch upgrade
can break, and the same bytes for the same weights.

* Weights: symmetric per-tensor int8, ``scale = max|W| / 127``, ``q = clamp(round(W / scale),
  -127, 127)``; the straight-through estimator ``W + (q * scale - W).detach()`` passes the
  gradient to the fp32 master weights unchanged.
* Activations: the input of every Linear layer (the normalised observation, then each hidden
  activation) is fake-quantised to uint8 with an affine range ``[lo, hi]`` (widened to contain
  0, so 0 is exact): ``q = clamp(round(x / s) + zp, 0, 255)``. The range starts at the min/max
  of the first batch it sees (``distill``: of all states collected when quantisation starts),
  follows an exponential moving average of batch min/max (``EMA_CONSTANT``, as torch's
  ``MovingAverageMinMaxObserver``) for the first ``OBSERVE_FRACTION`` of the quantised
  training, and is frozen for the rest, so the weights adapt to the ranges that are deployed.
  Gradients pass straight through inside the range and are zero outside it (torch's
  ``FakeQuantize`` does the same).
* The graph: ``QuantizeLinear -> DequantizeLinear`` on each layer input, ``DequantizeLinear`` of
  the int8 weight initializer ``<layer>_weight_t_quantized`` (with ``_scale`` and
  ``_zero_point``, ORT's names, so :func:`~rlbench.compress.summary.onnx_stats` counts it as an
  int8 weight), ``MatMul``, and ``Add`` of the int32 bias ``<layer>_bias_quantized`` dequantized
  at scale ``input scale * weight scale``. The int32 bias is what lets onnxruntime (1.31) fuse
  each layer into one ``QGemm`` (uint8 x int8 products, int32 sums, one float rescale); with an
  fp32 bias it fused MatMul + Add into a float ``Gemm`` on dequantized weights instead and ran
  2x slower than fp32 on a 256x256 policy (33 us vs 17 us at batch 1; with QGemm: 17 us).
* The PyTorch forward computes the value QGemm computes, ``float32(sum of int products + int32
  bias) * float32(input scale * weight scale)``, exactly (in float64, then rounded once), and
  takes its gradient from the straight-through dequantized path. In ReLU policies ORT also
  drops each hidden ReLU and fuses the next layer's QuantizeLinear into QGemm (requantizing
  with the single scale ``input scale * weight scale / next scale``); :class:`QuantPolicy`
  rounds those layer inputs the same way. ORT's actions then equal the PyTorch forward to
  float rounding (~2e-7, tested). With tanh, ORT's own tanh differs in the last bits and
  rarely moves a value across a rounding step of the next layer (tests state the tolerance).

**Training signal** (``signal``):

* ``distill`` (default): policy distillation, DAgger-style. The fp32 policy is the teacher.
  Round 0 collects ``STATES_PER_ROUND`` states by running the teacher deterministically in its
  environment; rounds 1..``DAGGER_ROUNDS - 1``, spread evenly over training, run the current
  student, so the student is trained on the states it visits itself. Episode ``i`` of round
  ``r`` resets with seed ``CALIBRATION_SEED_BASE + r * STATES_PER_ROUND + i`` (disjoint from
  every evaluation seed; a round has at most ``STATES_PER_ROUND`` episodes, so rounds never
  share a seed). The loss is the mean squared difference between student and teacher actions
  before the final clip, in units of half the action range (``tanh`` output for squashed
  policies), on batches of ``BATCH_SIZE`` drawn from all states collected so far, with Adam.
* ``rl``: the algorithm's own loss. The SB3 agent is rebuilt from ``agent.pt`` with the
  registry's hyperparameters (:func:`rlbench.zoo.agents.build_model`), target networks copied from
  the online ones, the actor's Linear layers wrapped in :class:`QuantLinear` (same parameters,
  so the optimiser keeps them), and ``model.learn(steps)`` runs ``steps`` environment steps.
  For SAC, TD3 and DDPG, departures from the registry, recorded in the summary: a fresh replay
  buffer, so ``learning_starts = min(registry, batch_size, steps // 2)``; ``learning_rate = lr``;
  SAC's entropy coefficient is not in ``agent.pt``, so it restarts at ``SAC_ENT_COEF`` (SB3's
  ``auto`` starts at 1.0, which would swamp a trained policy's objective) and adapts from there.
  PPO and TRPO (:func:`_rl_on_policy`) run their own rollouts and updates, with the saved
  VecNormalize statistics frozen so the actor sees what the deployed graph will feed it.

Deterministic: single-threaded torch, seeded batch sampling and SB3 seeding, seeded
rollouts; the same inputs give byte-identical ONNX (a test builds twice and compares sha256).
:mod:`rlbench.compress.gmp` reuses all of this with pruning masks.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlbench.compress.quantize import calibration_observations, check_int8
from rlbench.core.errors import CompressionError
from rlbench.core.io import sha256_bytes, sha256_file
from rlbench.core.threads import torch_threads
from rlbench.runtime.predictors import ReferencePredictor
from rlbench.zoo.agents import build_model, make_vec_env
from rlbench.zoo.policy import DeployablePolicy
from rlbench.zoo.registry import CALIBRATION_SEED_BASE, ON_POLICY, get_config

#: Distillation settings. Changing any changes the artefact bytes: bump the method versions in base.py.
DAGGER_ROUNDS = 4
STATES_PER_ROUND = 1000
BATCH_SIZE = 256
#: Weight of the newest batch in the moving average of activation ranges (torch's default).
EMA_CONSTANT = 0.01
#: Activation ranges follow the data for this fraction of the quantised steps, then are frozen.
OBSERVE_FRACTION = 0.5
#: The distillation loss reported is the mean over this many final batches.
FINAL_LOSS_WINDOW = 50
W_QMAX = 127
A_QMAX = 255
#: int32 bias bound, kept exactly representable in float32 (2**31 - 1 is not).
B_QMAX = 2**31 - 128
#: SAC's initial entropy coefficient for ``rl`` fine-tuning (``agent.pt`` does not store it).
SAC_ENT_COEF = "auto_0.01"
#: ``rl`` training environments reset first with this seed (+ the method's ``seed``).
RL_ENV_SEED_OFFSET = 500_000


# --------------------------------------------------------------------------- fake quantisation
class QuantLinear(nn.Module):
    """A Linear layer with an optional pruning mask, int8 weight and uint8 input fake quantisation.

    It wraps the given ``nn.Linear`` (the same Parameter objects, so an optimiser built on the
    original layer keeps training it). ``quant`` switches fake quantisation on; ``observe``
    lets training forwards move the input range; ``keep_nonzero`` stores an unpruned weight
    that would round to 0 as +-1 step, so the int8 tensor has exactly the mask's zeros.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.register_buffer("mask", torch.ones_like(linear.weight, requires_grad=False))
        self.register_buffer("in_lo", torch.zeros(()))
        self.register_buffer("in_hi", torch.zeros(()))
        self.register_buffer("in_ready", torch.zeros((), dtype=torch.bool))
        self.quant = False
        self.observe = False
        self.keep_nonzero = False

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def masked_weight(self) -> torch.Tensor:
        return self.linear.weight * self.mask

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer-valued float tensor q [out, in], float32 scale) of the current masked weight."""
        w = self.masked_weight().detach()
        amax = w.abs().max()
        scale = amax / W_QMAX if float(amax) > 0 else torch.ones((), dtype=w.dtype)
        q = torch.clamp(torch.round(w / scale), -W_QMAX, W_QMAX)
        if self.keep_nonzero:
            q = torch.where((q == 0) & (self.mask != 0), torch.where(w < 0, -1.0, 1.0), q)
        return q, scale

    def weight(self) -> torch.Tensor:
        """The weight the layer computes with (masked; rounded to int8 steps when quantising)."""
        w = self.masked_weight()
        if not self.quant:
            return w
        q, scale = self.weight_qparams()
        return w + (q * scale - w).detach()

    def input_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(float32 scale, integer-valued float zero point) of the input range, 0 included."""
        lo = torch.clamp(self.in_lo, max=0.0)
        hi = torch.clamp(self.in_hi, min=0.0)
        scale = (hi - lo) / A_QMAX
        if float(scale) <= 0:
            scale = torch.ones(())
        zp = torch.clamp(torch.round(-lo / scale), 0, A_QMAX)
        return scale, zp

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min(), x.max()
        if not bool(self.in_ready):
            self.in_lo.copy_(lo)
            self.in_hi.copy_(hi)
            self.in_ready.fill_(True)
        else:
            self.in_lo.add_(EMA_CONSTANT * (lo - self.in_lo))
            self.in_hi.add_(EMA_CONSTANT * (hi - self.in_hi))

    def bias_qparams(self, input_scale: torch.Tensor, weight_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer-valued float tensor, float32 scale) of the int32 bias; scale = input scale * weight scale."""
        scale = input_scale * weight_scale
        q = torch.clamp(torch.round(self.linear.bias.detach() / scale), -B_QMAX, B_QMAX)
        return q, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_sums(x)[0]

    def forward_with_sums(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(output, float32(int32 sums + int32 bias), their scale); the last two are None unquantised."""
        if self.quant and self.observe and self.training:
            self._observe(x.detach())
        if not (self.quant and bool(self.in_ready)):  # no range yet (rl: acting before the first gradient step)
            return F.linear(x, self.weight(), self.linear.bias), None, None
        # fresh tensors, not the buffers: SAC moves the ranges between a forward and its backward
        a_scale, zp = self.input_qparams()
        xq = torch.clamp(torch.round(x.detach() / a_scale) + zp, 0, A_QMAX)
        xc = torch.clamp(x, (0 - zp) * a_scale, (A_QMAX - zp) * a_scale)
        x_ste = xc + ((xq - zp) * a_scale - xc).detach()
        wq, w_scale = self.weight_qparams()
        w = self.masked_weight()
        w_ste = w + (wq * w_scale - w).detach()
        bq, b_scale = self.bias_qparams(a_scale, w_scale)
        b = self.linear.bias
        b_ste = b + (bq * b_scale - b).detach()
        y = F.linear(x_ste, w_ste, b_ste)
        with torch.no_grad():  # what onnxruntime's QGemm computes: exact int32 sums, one float32 rescale
            acc = ((xq - zp).double() @ wq.double().T + bq.double()).float()
            exact = acc * b_scale
        return y + (exact - y).detach(), acc, b_scale

    def copy_state_from(self, other: QuantLinear) -> None:
        with torch.no_grad():
            self.linear.weight.copy_(other.linear.weight)
            self.linear.bias.copy_(other.linear.bias)
            for name in ("mask", "in_lo", "in_hi", "in_ready"):
                getattr(self, name).copy_(getattr(other, name))
        self.quant, self.observe, self.keep_nonzero = other.quant, other.observe, other.keep_nonzero


class QuantPolicy(nn.Module):
    """:class:`~rlbench.zoo.policy.DeployablePolicy`'s forward with :class:`QuantLinear` layers.

    Built from a deep copy, so the policy it is given is never touched. With quantisation off
    and full masks it computes exactly what the policy does (the teacher is one of these).
    """

    def __init__(self, policy):
        super().__init__()
        policy = copy.deepcopy(policy).eval()
        self.spec = policy.current_spec()
        for name in ("obs_mean", "obs_std", "act_low", "act_high"):
            self.register_buffer(name, getattr(policy, name).detach().clone())
        #: ONNX layer names (``body_0``, ``body_2``, ..., ``head``), as rlbench.zoo.onnx_graph writes them
        self.names = [n.replace(".", "_") for n, m in policy.named_modules() if isinstance(m, nn.Linear)]
        self.layers = nn.ModuleList(QuantLinear(lin) for lin in policy.linears())
        if len(self.names) != len(self.layers):  # pragma: no cover - DeployablePolicy's layout
            raise CompressionError("policy layers and their names disagree (internal error)")

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.spec.activation == "relu" else torch.tanh(x)

    def unit_action(self, obs: torch.Tensor) -> torch.Tensor:
        """The action before the final clip, in units of half the action range around its middle."""
        x = obs
        if self.spec.normalize:
            x = torch.clamp((x - self.obs_mean) / self.obs_std, -self.spec.clip_obs, self.spec.clip_obs)
        for layer, nxt in zip(self.layers[:-1], self.layers[1:]):
            y, acc, scale = layer.forward_with_sums(x)
            x = self._act(y)
            if acc is not None and self.spec.activation == "relu" and nxt.quant and bool(nxt.in_ready):
                # onnxruntime drops the Relu before a uint8 QuantizeLinear with zero point 0 and fuses
                # the quantization into QGemm: q = round(float32(sums) * float32(scale / next scale)).
                # Rounding that product differs from rounding (sums * scale) / next scale at rare
                # ties; compute the next layer's input its way (its quantizer then reproduces q).
                n_scale, n_zp = nxt.input_qparams()
                if float(n_zp) == 0:
                    q = torch.clamp(torch.round(acc * (scale / n_scale)), 0, A_QMAX)
                    x = x + (q * n_scale - x).detach()
        x = self.layers[-1](x)
        if self.spec.squash:
            return torch.tanh(x)
        half = (self.act_high - self.act_low) / 2
        return (x - (self.act_high + self.act_low) / 2) / half

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        u = self.unit_action(obs)
        half, mid = (self.act_high - self.act_low) / 2, (self.act_high + self.act_low) / 2
        x = u * half + mid
        return torch.maximum(torch.minimum(x, self.act_high), self.act_low)

    @torch.no_grad()
    def calibrate(self, obs: torch.Tensor) -> None:
        """Set every quantised layer's input range to the min/max over ``obs`` (layer by layer)."""
        was_training = self.training
        observing = [l.observe for l in self.layers]
        for l in self.layers:
            if l.quant:
                l.in_ready.fill_(False)  # the first batch a layer observes sets its range
                l.observe = True
        self.train()
        self.unit_action(obs)
        for l, observe in zip(self.layers, observing):
            l.observe = observe
        self.train(was_training)

    def to_deployable(self):
        """A :class:`~rlbench.zoo.policy.DeployablePolicy` holding the weights this one computes with
        (masked, and rounded to int8 steps if quantising; activation rounding is not included)."""
        dep = DeployablePolicy(self.spec)
        with torch.no_grad():
            for dst, src in zip(dep.linears(), self.layers, strict=True):
                dst.weight.copy_(src.weight().detach())
                dst.bias.copy_(src.linear.bias.detach())
            for name in ("obs_mean", "obs_std", "act_low", "act_high"):
                getattr(dep, name).copy_(getattr(self, name))
        return dep.eval()


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


# ------------------------------------------------------------------------------ RL fine-tuning
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


def load_agent(agent_pt: Path) -> dict:
    try:
        agent = torch.load(agent_pt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise CompressionError(f"{agent_pt} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(agent, dict) or agent.get("format") != "rlbench.agent/1":
        raise CompressionError(f"{agent_pt} is not an rlbench agent file (format 'rlbench.agent/1' expected)")
    return agent


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


def rl_finetune(policy, env_id: str, agent_pt: Path, plan: Plan, lr: float, seed: int, method: str = "qat") -> Trained:
    """Fine-tune the actor of ``agent_pt`` with its algorithm's loss for ``plan.total`` env steps."""
    agent = load_agent(agent_pt)
    algo = str(agent.get("algo", "")).upper()
    if algo in ON_POLICY:
        return _rl_on_policy(policy, env_id, agent, agent_pt, algo, plan, lr, seed, method)
    if agent.get("vecnormalize") is not None:
        raise CompressionError(f"{method}: signal='rl' is not implemented for agents trained with VecNormalize")
    cfg = get_config(algo, env_id)
    state = agent["policy_state"]
    kwargs = dict(cfg.kwargs)
    batch = int(kwargs.get("batch_size", 256))
    learning_starts = min(int(kwargs.get("learning_starts", 100)), batch, plan.total // 2)
    pk = dict(kwargs.get("policy_kwargs") or {})
    pk["net_arch"] = {"pi": list(policy.current_spec().hidden), "qf": _qf_arch(state)}
    kwargs.update(learning_starts=learning_starts, buffer_size=max(plan.total, 1), learning_rate=lr, policy_kwargs=pk)
    if algo == "SAC":
        kwargs["ent_coef"] = SAC_ENT_COEF
    cfg = dataclasses.replace(cfg, kwargs=kwargs)
    env_seed = CALIBRATION_SEED_BASE + RL_ENV_SEED_OFFSET + seed
    model = build_model(cfg, make_vec_env(cfg, env_seed), seed)
    try:
        missing, unexpected = model.policy.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CompressionError(f"{method}: {agent_pt} does not fit the {algo} agent rebuilt from the registry "
                               f"({str(exc).splitlines()[0]})") from exc
    if unexpected or any("_target" not in k for k in missing):
        raise CompressionError(f"{method}: {agent_pt} does not fit the rebuilt {algo} agent "
                               f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    with torch.no_grad():
        model.critic_target.load_state_dict(model.critic.state_dict())
        if algo != "SAC":
            model.actor_target.load_state_dict(model.actor.state_dict())
    slots = _actor_slots(model, algo)
    deployed = [getattr(parent, attr) if not attr.isdigit() else parent[int(attr)] for parent, attr in slots]
    if len(deployed) != len(policy.linears()) or not all(
            torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
            for a, b in zip(deployed, policy.linears())):
        raise CompressionError(f"{method}: the actor in {agent_pt} is not the policy being compressed "
                               "(its weights differ from policy.pt)")
    wrappers = _wrap_slots(slots)

    def calibrate_on_buffer():
        buf = model.replay_buffer
        n = max(buf.buffer_size if buf.full else buf.pos, 1)
        _calibrate_wrappers(policy, wrappers, buf.observations[:n].reshape(n, -1))

    model.learn(total_timesteps=plan.total, callback=_schedule_callback(plan, wrappers), progress_bar=False)
    plan.finish(wrappers, calibrate_on_buffer)
    buf = model.replay_buffer
    n = buf.buffer_size if buf.full else buf.pos
    states = np.ascontiguousarray(buf.observations[:n].reshape(n, -1), dtype=np.float32)
    student, change = _student_of(policy, wrappers, states)
    record: dict[str, Any] = {
        "signal": "rl", "algo": algo, "env_steps": plan.total, "gradient_steps": int(model._n_updates),
        "lr": lr, "seed": seed, "env_seed": env_seed, "learning_starts": learning_starts,
        "batch_size": batch, "buffer_size": max(plan.total, 1),
        "departures": ["fresh replay buffer: learning_starts = min(registry, batch_size, steps // 2)",
                       "learning_rate = lr for every optimiser",
                       *([f"ent_coef = {SAC_ENT_COEF!r} (agent.pt does not store SAC's entropy coefficient)"]
                         if algo == "SAC" else [])],
        "states": int(n),
        "unit_action_change_vs_fp32": change,
    }
    if algo == "SAC" and getattr(model, "log_ent_coef", None) is not None:
        record["final_ent_coef"] = float(torch.exp(model.log_ent_coef.detach()).item())
    return Trained(student, record, states)


def _wrap_slots(slots) -> list[QuantLinear]:
    wrappers = []
    for parent, attr in slots:
        lin = parent[int(attr)] if attr.isdigit() else getattr(parent, attr)
        w = QuantLinear(lin)
        if attr.isdigit():
            parent[int(attr)] = w
        else:
            setattr(parent, attr, w)
        wrappers.append(w)
    return wrappers


def _rl_on_policy(policy, env_id: str, agent: dict, agent_pt: Path, algo: str, plan: Plan, lr: float, seed: int,
                  method: str) -> Trained:
    """PPO / TRPO: ``model.learn`` with the actor's Linear layers fake-quantised.

    The agent is rebuilt with the registry's hyperparameters and its saved VecNormalize
    statistics, frozen (``training=False``): the deployed graph normalises with those fixed
    statistics, so the actor must see the same inputs while it adapts. Rewards are still scaled
    by the saved return statistics, as the critic was trained on them. ``learn`` collects whole
    rollouts of ``n_steps``, so the env steps taken are ``steps`` rounded up to a rollout (recorded).
    """
    cfg = get_config(algo, env_id)
    vn = agent.get("vecnormalize")
    if cfg.normalize != (vn is not None):
        raise CompressionError(f"{method}: {agent_pt} {'has no' if cfg.normalize else 'has'} VecNormalize statistics, "
                               f"but the registry's {cfg.name} {'uses' if cfg.normalize else 'does not use'} them")
    state = agent["policy_state"]
    vf = [int(v.shape[0]) for k, v in sorted(((int(k.split(".")[2]), v) for k, v in state.items()
                                              if k.startswith("mlp_extractor.value_net.") and k.endswith(".weight")))]
    pk = dict(cfg.kwargs.get("policy_kwargs") or {})
    pk["net_arch"] = {"pi": list(policy.current_spec().hidden), "vf": vf}
    cfg = dataclasses.replace(cfg, kwargs=dict(cfg.kwargs, learning_rate=lr, policy_kwargs=pk))
    env_seed = CALIBRATION_SEED_BASE + RL_ENV_SEED_OFFSET + seed
    venv = make_vec_env(cfg, env_seed)
    if vn is not None:
        venv.obs_rms.mean, venv.obs_rms.var = vn["obs_mean"].numpy().copy(), vn["obs_var"].numpy().copy()
        venv.obs_rms.count = float(vn["obs_count"])
        venv.ret_rms.mean, venv.ret_rms.var = vn["ret_mean"].numpy().copy(), vn["ret_var"].numpy().copy()
        venv.ret_rms.count = float(vn["ret_count"])
        venv.clip_obs, venv.clip_reward, venv.epsilon = vn["clip_obs"], vn["clip_reward"], vn["epsilon"]
        venv.training = False
    model = build_model(cfg, venv, seed)
    try:
        model.policy.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CompressionError(f"{method}: {agent_pt} does not fit the {algo} agent rebuilt from the registry "
                               f"({str(exc).splitlines()[0]})") from exc
    pol = model.policy
    slots = [(pol.mlp_extractor.policy_net, str(i)) for i, m in enumerate(pol.mlp_extractor.policy_net)
             if isinstance(m, nn.Linear)] + [(pol, "action_net")]
    deployed = [parent[int(attr)] if attr.isdigit() else getattr(parent, attr) for parent, attr in slots]
    if len(deployed) != len(policy.linears()) or not all(
            torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
            for a, b in zip(deployed, policy.linears())):
        raise CompressionError(f"{method}: the actor in {agent_pt} is not the policy being compressed "
                               "(its weights differ from policy.pt)")
    wrappers = _wrap_slots(slots)
    raw_obs: list[np.ndarray] = []

    def keep_raw_obs(cb) -> None:
        env = cb.training_env
        obs = env.get_original_obs() if vn is not None else cb.locals["new_obs"]
        raw_obs.append(np.array(obs, dtype=np.float32).reshape(env.num_envs, -1))

    model.learn(total_timesteps=plan.total, callback=_schedule_callback(plan, wrappers, keep_raw_obs),
                progress_bar=False)
    plan.finish(wrappers, lambda: _calibrate_wrappers(policy, wrappers, np.concatenate(raw_obs)))
    states = np.ascontiguousarray(np.concatenate(raw_obs), dtype=np.float32)
    student, change = _student_of(policy, wrappers, states)
    record: dict[str, Any] = {
        "signal": "rl", "algo": algo, "env_steps": int(model.num_timesteps), "steps_asked": plan.total,
        "gradient_steps": int(model._n_updates), "lr": lr, "seed": seed, "env_seed": env_seed,
        "n_steps": int(model.n_steps), "n_envs": int(model.n_envs),
        "departures": ["learning_rate = lr", "VecNormalize statistics frozen at the saved ones (training=False)",
                       "whole rollouts: env_steps is steps rounded up to n_steps * n_envs"],
        "states": int(len(states)),
        "unit_action_change_vs_fp32": change,
    }
    return Trained(student, record, states)


# ------------------------------------------------------------------------------------ export
def qdq_onnx(student: QuantPolicy) -> bytes:
    """The student as an ONNX graph: QDQ int8 for quantised layers, fp32 MatMul + Add otherwise."""
    # deferred: it loads onnx, which importing this module does not
    from onnx import helper, numpy_helper

    from rlbench.zoo.onnx_graph import input_nodes, output_nodes, policy_model

    spec = student.spec
    inits: list = []
    nodes: list = []

    def const(name: str, arr, dtype=np.float32) -> str:
        arr = np.asarray(arr, dtype=dtype)  # 0-d stays 0-d: a per-tensor scale is a scalar, not a 1-D axis
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.ndim else arr, name))
        return name

    def buf(name: str) -> np.ndarray:
        return getattr(student, name).detach().numpy().astype(np.float32)

    x = input_nodes(nodes, const, spec, buf("obs_mean"), buf("obs_std"))
    act_op = {"relu": "Relu", "tanh": "Tanh"}[spec.activation]
    with torch.no_grad():
        for i, (name, layer) in enumerate(zip(student.names, student.layers)):
            if layer.quant:
                a_scale, a_zp = layer.input_qparams()
                s_in, z_in = const(f"{name}_input_scale", a_scale.item()), \
                    const(f"{name}_input_zero_point", a_zp.item(), np.uint8)
                nodes.append(helper.make_node("QuantizeLinear", [x, s_in, z_in], [f"{name}_input_quantized"],
                                              name=f"{name}_input_QuantizeLinear"))
                nodes.append(helper.make_node("DequantizeLinear", [f"{name}_input_quantized", s_in, z_in],
                                              [f"{name}_input_dequantized"], name=f"{name}_input_DequantizeLinear"))
                q, w_scale = layer.weight_qparams()
                wq = const(f"{name}_weight_t_quantized", q.numpy().T, np.int8)
                ws = const(f"{name}_weight_t_scale", w_scale.item())
                wz = const(f"{name}_weight_t_zero_point", 0, np.int8)
                nodes.append(helper.make_node("DequantizeLinear", [wq, ws, wz], [f"{name}_weight_t_dequantized"],
                                              name=f"{name}_weight_t_DequantizeLinear"))
                mm_in = [f"{name}_input_dequantized", f"{name}_weight_t_dequantized"]
                # an int32 bias at scale input * weight scale lets onnxruntime fuse the layer into QGemm
                bq, b_scale = layer.bias_qparams(a_scale, w_scale)
                bqn = const(f"{name}_bias_quantized", bq.numpy(), np.int32)
                bs = const(f"{name}_bias_scale", b_scale.item())
                bz = const(f"{name}_bias_zero_point", 0, np.int32)
                nodes.append(helper.make_node("DequantizeLinear", [bqn, bs, bz], [f"{name}_bias_dequantized"],
                                              name=f"{name}_bias_DequantizeLinear"))
                b = f"{name}_bias_dequantized"
            else:
                mm_in = [x, const(f"{name}_weight_t", layer.weight().numpy().T)]
                b = const(f"{name}_bias", layer.linear.bias.numpy())
            nodes.append(helper.make_node("MatMul", mm_in, [f"{name}_mm"], name=f"{name}_MatMul"))
            nodes.append(helper.make_node("Add", [f"{name}_mm", b], [f"{name}_out"], name=f"{name}_Add"))
            x = f"{name}_out"
            if i < len(student.layers) - 1:
                nodes.append(helper.make_node(act_op, [x], [f"{name}_act"]))
                x = f"{name}_act"
    output_nodes(nodes, const, spec, x, buf("act_low"), buf("act_high"))
    return policy_model(nodes, inits, spec).SerializeToString(deterministic=True)


def quant_layers_record(student: QuantPolicy) -> list[dict]:
    out = []
    with torch.no_grad():
        for name, layer in zip(student.names, student.layers):
            rec: dict[str, Any] = {"layer": name, "shape": [layer.out_features, layer.in_features]}
            if layer.quant:
                _, w_scale = layer.weight_qparams()
                a_scale, a_zp = layer.input_qparams()
                rec.update(weight_scale=float(w_scale), input_scale=float(a_scale), input_zero_point=int(a_zp),
                           input_range=[float(layer.in_lo), float(layer.in_hi)])
            out.append(rec)
    return out


def check_export(name: str, data: bytes, student: QuantPolicy, states: np.ndarray, limit: float = 0.05) -> dict:
    """The exported graph's actions on ``states`` against the PyTorch forward; refuse a graph that
    does not match.

    The graph is run by ONNX's reference evaluator (:class:`~rlbench.runtime.predictors.ReferencePredictor`).
    ONNX Runtime is not the judge here: on x86 without VNNI its uint8 x int8 kernels saturate 16-bit pair sums
    (:mod:`rlbench.measure.int8kernel`), which is a fact about the machine, measured by the grid,
    not a fault of the artefact.
    """
    states = np.ascontiguousarray(states[:2000], dtype=np.float32)
    if states.shape[0] == 0:
        return {}
    got = ReferencePredictor(data).predict(states)
    with torch.no_grad():
        want = student(torch.from_numpy(states)).numpy()
    half = (student.act_high - student.act_low).numpy() / 2
    diff = np.abs(got - want) / half
    if not np.all(np.isfinite(got)) or diff.max() > limit:
        raise CompressionError(f"{name}: the exported ONNX graph's actions (ONNX reference evaluator) differ from "
                               f"the fake-quantised torch forward by {diff.max():.3g} half action ranges (limit "
                               f"{limit}): an export bug; please report it with the command that built the artefact")
    return {"states": int(states.shape[0]), "max": float(diff.max()), "mean": float(diff.mean()),
            "unit": "half action range", "judge": "onnx.reference"}


# ------------------------------------------------------------------------------ entry points
def training_context(method: str, params: dict, source, env_id: str | None) -> tuple[dict, dict]:
    """The context and cache-key material of a fine-tuning method (called by base.py's ``_prepare``).

    Both signals roll the policy out in its environment; ``rl`` also needs the SB3 agent
    (``agent.pt`` of a shipped policy), whose sha256 goes into the cache key.
    """
    if env_id is None:
        raise CompressionError(f"{method}: training rolls the policy out in its environment: compress a shipped "
                               "policy, or pass env_id= with a bare DeployablePolicy")
    ctx: dict[str, Any] = {"env_id": env_id}
    extra: dict[str, Any] = {"training": {"env_id": env_id, "seed_base": CALIBRATION_SEED_BASE,
                                          "dagger_rounds": DAGGER_ROUNDS, "states_per_round": STATES_PER_ROUND,
                                          "batch_size": BATCH_SIZE}}
    if params.get("signal") == "rl":
        from importlib.metadata import version

        agent = getattr(source, "agent_pt", None)
        if agent is None or not Path(agent).is_file():
            raise CompressionError(f"{method}: signal='rl' fine-tunes the SB3 agent and needs its agent.pt: compress "
                                   "a shipped policy (rlbench.zoo.shipped.load_shipped), or use signal='distill'")
        ctx["agent_pt"] = Path(agent)
        extra["training"].update(agent_sha256=sha256_file(agent), stable_baselines3=version("stable-baselines3"))
    return ctx, extra


def train_qat(policy, env_id: str, *, signal: str = "distill", steps: int = 2000, lr: float = 1e-4, seed: int = 0,
              agent_pt: Path | None = None) -> Trained:
    """Fake-quantised fine-tuning of ``policy`` (untouched); the student and its record."""
    plan = Plan.qat(int(steps))
    with torch_threads(1):  # training's result must not depend on the thread count
        if signal == "rl":
            if agent_pt is None:
                raise CompressionError("qat: signal='rl' needs agent_pt")
            return rl_finetune(policy, env_id, Path(agent_pt), plan, float(lr), int(seed), "qat")
        return distill(policy, env_id, plan, float(lr), int(seed))


def build_qat(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Fake-quantised fine-tuning, written as a QDQ int8 ONNX graph."""
    trained = train_qat(module, context["env_id"], signal=params["signal"], steps=params["steps"], lr=params["lr"],
                        seed=params["seed"], agent_pt=context.get("agent_pt"))
    data = qdq_onnx(trained.student)
    check_int8("qat", data, ("QuantizeLinear", "DequantizeLinear", "MatMul"))
    check = check_export("qat", data, trained.student, trained.states)
    context["summary"].update(
        training={**trained.record, "env_id": context["env_id"]},
        quantization={"weights": "int8 symmetric per tensor, scale max|W|/127, range [-127, 127]",
                      "activations": "uint8 affine per tensor at each Linear input, EMA ranges then frozen",
                      "format": "QDQ", "ema_constant": EMA_CONSTANT, "observe_fraction": OBSERVE_FRACTION,
                      "layers": quant_layers_record(trained.student)},
        graph_vs_fake_quant=check, notes=[])
    return {"model.onnx": data}


__all__ = ["Plan", "QuantLinear", "QuantPolicy", "Trained", "build_qat", "distill", "qdq_onnx", "rl_finetune",
           "train_qat", "training_context"]
