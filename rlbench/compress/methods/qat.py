"""Quantization-aware training (``qat``): fake-quantised fine-tuning, deployed as an int8 QDQ ONNX graph.

The policy is fine-tuned with int8 rounding in its forward pass, so it learns weights that
survive the rounding, then written as an ONNX graph that ONNX Runtime runs with int8 weights.
Three modules do the work, and :mod:`rlbench.compress.methods.gmp` shares all of them:

* :mod:`rlbench.compress.fakequant`: the fake-quantised layers and policy (int8 symmetric
  per-tensor weights, uint8 affine layer inputs with moving-average ranges, straight-through
  gradients), computing what ONNX Runtime's fused kernels compute;
* :mod:`rlbench.compress.finetune`: the training plan and the one fine-tuning loop per signal:
  ``distill`` (DAgger distillation from the fp32 policy, the default) or ``rl`` (the
  algorithm's own loss, with an adapter per algorithm family: SAC/TD3/DDPG and PPO/TRPO);
* :mod:`rlbench.compress.qdq`: the QDQ graph writer and the check that the graph's actions are
  the PyTorch forward's.

Here: the method's declaration, its preparation (the training context) and its build. QAT
plans ``steps`` quantised steps, with the activation ranges following the data for the first
``OBSERVE_FRACTION`` of them and frozen for the rest. The modules above load torch and SB3, so
they are imported when the method is prepared or built, not when it is listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rlbench.compress.methods.quantize import check_int8
from rlbench.compress.registry import GridVariants, MethodInfo, Param, Source, register

if TYPE_CHECKING:
    from rlbench.compress.finetune import Trained

#: Fine-tuning methods (qat, gmp): training steps, learning rate, seed and training signal.
STEPS_MAX = 10_000_000
SIGNAL = Param("signal", "choice", "distill", choices=("distill", "rl"),
               doc="distill: DAgger distillation from the fp32 policy; rl: the algorithm's own loss "
                   "(SAC/TD3/DDPG; needs a shipped policy's agent.pt)")
LR = Param("lr", "float", 1e-4, low=0.0, high=1.0, low_open=True, high_open=True, doc="Adam learning rate")
SEED = Param("seed", "int", 0, low=0, high=999_999, doc="seeds batch sampling and SB3 (rl)")
#: Why the fine-tuning methods leave discrete-action pairs out of the grid: a DQN student would be
#: fit to Q-values or the greedy action, a different method, so the grid runs no stand-in.
NOT_FOR_DISCRETE = "fine-tunes with a continuous-action adapter (RL loss or action distillation); none for DQN"


def prepare_training(info: MethodInfo, params: dict, src: Source, calibration_obs=None) -> tuple[dict, dict]:
    """The preparation of a fine-tuning method: rollouts in the policy's env (``rl``: also its agent.pt)."""
    # deferred: it loads torch and SB3, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.finetune import training_context

    return training_context(info, params, src)


def train_qat(policy, env_id: str, *, signal: str = "distill", steps: int = 2000, lr: float = 1e-4, seed: int = 0,
              agent_pt: Path | None = None) -> Trained:
    """Fake-quantised fine-tuning of ``policy`` (untouched); the student and its record."""
    # deferred: it loads torch and SB3, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.finetune import Plan, finetune

    return finetune(policy, env_id, Plan.qat(int(steps)), signal=signal, lr=lr, seed=seed, agent_pt=agent_pt,
                    method="qat")


def build_qat(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Fake-quantised fine-tuning, written as a QDQ int8 ONNX graph."""
    # deferred: they load torch and SB3, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.fakequant import EMA_CONSTANT
    from rlbench.compress.finetune import OBSERVE_FRACTION
    from rlbench.compress.qdq import check_export, qdq_onnx, quant_layers_record

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


QAT = register(MethodInfo(
    "qat", "onnxruntime", build_qat, prepare=prepare_training, shipped=True, not_for_discrete=NOT_FOR_DISCRETE,
    grid=GridVariants(order=30), paper="quantization", params=(
        SIGNAL, Param("steps", "int", 2000, low=1, high=STEPS_MAX,
                      doc="distill: gradient steps; rl: environment steps"), LR, SEED),
    doc="quantization-aware training: int8 fake-quantised fine-tuning (straight-through gradients) from the fp32 "
        "policy, deployed as a QDQ int8 ONNX graph"))


__all__ = ["LR", "NOT_FOR_DISCRETE", "QAT", "SEED", "SIGNAL", "STEPS_MAX", "build_qat", "prepare_training",
           "train_qat"]
