"""Gradual magnitude pruning during fine-tuning (``gmp``), optionally followed by 8-bit QAT.

Ivanov et al. 2024 ("Neural network compression for reinforcement learning tasks") prune SAC
and DQN networks gradually while training and then quantize them to 8 bits, reporting up to
400x smaller networks. Their scheme, which this method follows on a trained policy:

* steps 0-20%: train dense;
* steps 20-80%: unstructured magnitude pruning of every layer, sparsity raised on the cubic
  schedule of Zhu & Gupta (2017), ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3`` at
  the pruning steps ``t = t0 + k * dt`` (``k = 0..n``), constant in between (:func:`cubic_sparsity`),
  with ``s_i = 0``, ``n = min(PRUNE_EVENTS, steps in the window)``;
* steps 80-100%: train with the masks fixed;
* if ``qat``: another 20% of ``steps`` with 8-bit fake quantisation, masks still fixed
  (:mod:`rlbench.compress.fakequant`: int8 weights, uint8 activations; :mod:`rlbench.compress.qdq`:
  the QDQ graph).

Pruning here: every Linear layer (hidden layers and head) loses the smallest-magnitude
``round(s * numel)`` of its weights, the same fraction in each layer; weights pruned earlier
stay pruned (ties broken by position, so it is deterministic). Biases are kept. Shapes never
change: the zeros are stored in dense tensors. The training is ``qat``'s, the same fine-tuning
loop (:func:`rlbench.compress.finetune.finetune`: ``distill`` by default, ``rl`` with the
algorithm's own loss) with the same seeds and rollouts, following a plan that prunes.

With ``qat`` the int8 weight of a surviving weight never rounds to 0 (it is stored as +-1
step): the artefact holds exactly the mask's zeros, which the build checks by counting the
zeros in the ONNX initializers.

Sizes. ONNX stores dense tensors, so the on-disk ``compression_factor`` is ~4x with int8
weights (less on small policies, where the graph's fixed overhead counts) whatever the
sparsity. The summary also gives what a sparse store would take, against the dense fp32
parameter bytes (weights and biases, 4 bytes each):

* ``compression_factor_sparse``: CSR over output rows: the non-zero weights at ``bits/8``
  bytes, column indices in the smallest unsigned integer holding ``in_features - 1`` (uint8 up
  to 256 inputs, uint16 up to 65,536, else uint32), ``out_features + 1`` uint32 row pointers,
  dense fp32 biases, and the int8 scales and zero points;
* ``compression_factor_bitmask``: the same with a 1-bit-per-weight presence mask instead of
  indices;
* ``compression_factor_values_only``: dense fp32 weight bytes over the non-zero weights'
  bytes, no index, bias or scale bytes, i.e. ``(32 / bits) / (1 - sparsity)``. This is the
  accounting that gives a headline like Ivanov's 400x (8 bits at 99% sparsity); their text
  gives only the headline, so treat the match of accountings as our inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench.compress.methods.qat import LR, NOT_FOR_DISCRETE, SEED, SIGNAL, STEPS_MAX, prepare_training
from rlbench.compress.methods.quantize import check_int8
from rlbench.compress.registry import GridVariants, MethodInfo, Param, register
from rlbench.compress.summary import LAYER_TENSOR
from rlbench.core.errors import CompressionError

if TYPE_CHECKING:
    import numpy as np

    from rlbench.compress.fakequant import QuantLinear
    from rlbench.compress.finetune import Plan, Trained

#: Fractions of the pruning run (``steps``) where pruning starts and ends (Ivanov et al.).
START_FRACTION = 0.2
END_FRACTION = 0.8
#: Most pruning events in the window (Zhu & Gupta's n); fewer when the window has fewer steps.
PRUNE_EVENTS = 100
#: QAT after pruning: this fraction of ``steps`` more (Ivanov et al.: steps 100-120%).
QAT_FRACTION = 0.2
#: The grid's final sparsities.
GMP_SPARSITIES: tuple[float, ...] = (0.90,)
SPARSE_FORMAT = ("CSR over output rows: non-zero weights at bits/8 bytes, column indices uint8/uint16/uint32 "
                 "(smallest holding in_features - 1), out_features + 1 uint32 row pointers, dense fp32 biases, "
                 "per-tensor scales and zero points")


def cubic_sparsity(t: int, final: float, start: int, end: int, events: int, initial: float = 0.0) -> float:
    """Sparsity at step ``t``: ``initial`` before ``start``, ``final`` from ``end`` on, and in between
    ``s_f + (s_i - s_f) * (1 - k / n)**3`` for the last pruning step ``k = floor((t - start) / dt)``
    reached, ``dt = (end - start) / n`` (Zhu & Gupta 2017, eq. 1)."""
    if t < start:
        return initial
    if t >= end or events <= 0:
        return final
    k = ((t - start) * events) // (end - start)
    return final + (initial - final) * (1.0 - k / events) ** 3


def pruned_count(numel: int, sparsity: float) -> int:
    """Weights a layer of ``numel`` weights has pruned at ``sparsity``."""
    return int(round(sparsity * numel))


def prune_layer(layer: QuantLinear, sparsity: float) -> None:
    """Raise ``layer``'s pruned count to ``round(sparsity * numel)`` by weight magnitude (never lowers it)."""
    # deferred: it loads torch, which listing the methods (`rlbench --help`) does not need
    import torch

    with torch.no_grad():
        mask = layer.mask
        n = mask.numel()
        k = pruned_count(n, sparsity)
        if k <= int((mask == 0).sum()):
            return
        flat = mask.flatten()
        mag = torch.where(flat == 0, torch.full_like(flat, -1.0), layer.linear.weight.detach().abs().flatten())
        order = torch.argsort(mag, stable=True)
        new = torch.ones_like(flat)
        new[order[:k]] = 0
        mask.copy_(new.view_as(mask))


@dataclass
class PruneSchedule:
    final: float
    start: int
    end: int
    events: int

    def sparsity(self, t: int) -> float:
        return cubic_sparsity(t, self.final, self.start, self.end, self.events)

    def __call__(self, t: int, layers: list[QuantLinear]) -> None:
        s = self.sparsity(t)
        if s > 0:
            for layer in layers:
                prune_layer(layer, s)


def gmp_plan(steps: int, sparsity: float, qat: bool) -> tuple[Plan, dict]:
    """The training plan: prune over steps [20%, 80%) of ``steps``, then (``qat``) 20% more quantised."""
    # deferred: it loads torch, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.finetune import Plan

    start, end = round(START_FRACTION * steps), round(END_FRACTION * steps)
    events = min(PRUNE_EVENTS, end - start)
    sched = PruneSchedule(float(sparsity), start, end, events)
    qat_steps = max(1, round(QAT_FRACTION * steps)) if qat else 0
    if qat:
        plan = Plan.qat(steps + qat_steps, start=steps, prune=sched, keep_nonzero=True)
    else:
        plan = Plan(steps, prune=sched)
    record = {"schedule": "cubic (Zhu & Gupta 2017)", "initial_sparsity": 0.0, "final_sparsity": float(sparsity),
              "prune_start": start, "prune_end": end, "prune_events": events, "pruning_steps": steps,
              "qat_steps": qat_steps, "total_steps": plan.total}
    return plan, record


def train_gmp(policy, env_id: str, *, sparsity: float = 0.8, steps: int = 5000, qat: bool = True,
              signal: str = "distill", lr: float = 1e-4, seed: int = 0, agent_pt: Path | None = None
              ) -> tuple[Trained, dict]:
    """Prune ``policy`` (untouched) while fine-tuning; the student, its record and the schedule."""
    # deferred: it loads torch and SB3, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.finetune import finetune

    plan, sched = gmp_plan(int(steps), float(sparsity), bool(qat))
    trained = finetune(policy, env_id, plan, signal=signal, lr=lr, seed=seed, agent_pt=agent_pt, method="gmp")
    return trained, sched


def onnx_weights(data: bytes) -> dict[str, np.ndarray]:
    """Each layer's stored weight ([in, out]; int8 or fp32) from an rlbench ONNX graph."""
    # deferred: it loads onnx, which listing the methods (`rlbench --help`) does not need
    import onnx
    from onnx import numpy_helper

    out = {}
    for init in onnx.load_from_string(data).graph.initializer:
        m = LAYER_TENSOR.match(init.name)
        if m and m["kind"] == "weight_t":
            out[m["layer"]] = numpy_helper.to_array(init)
    return out


def _index_bytes(n: int) -> int:
    return 1 if n <= 1 << 8 else 2 if n <= 1 << 16 else 4


def storage_figures(layers: list[dict], bits: int, quantised: bool) -> dict:
    """Dense fp32 bytes and sparse-store bytes of the layers (see the module docstring)."""
    dense = sum(4 * (l["numel"] + l["out"]) for l in layers)
    dense_weights = sum(4 * l["numel"] for l in layers)
    values = csr = bitmask = 0.0
    for l in layers:
        v = l["nonzeros"] * bits / 8
        extra = 4 * l["out"] + ((4 + 1) + (4 + 1) if quantised else 0)  # bias; weight and input scale + zero point
        values += v
        csr += v + l["nonzeros"] * _index_bytes(l["in"]) + 4 * (l["out"] + 1) + extra
        bitmask += v + math.ceil(l["numel"] / 8) + extra
    return {"dense_fp32_bytes": dense, "csr_bytes": csr, "bitmask_bytes": bitmask, "nonzero_value_bytes": values,
            "weight_bits": bits,
            "compression_factor_sparse": dense / csr, "compression_factor_bitmask": dense / bitmask,
            "compression_factor_values_only": dense_weights / values if values else None}


def build_gmp(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Gradual magnitude pruning while fine-tuning (then optional QAT), as an ONNX graph with exact zeros."""
    # deferred: numpy, onnx and torch, which listing the methods (`rlbench --help`) does not need
    import numpy as np

    from rlbench.compress.qdq import check_export, qdq_onnx, quant_layers_record
    from rlbench.zoo.onnx_graph import onnx_bytes

    sparsity, qat = float(params["sparsity"]), bool(params["qat"])
    trained, sched = train_gmp(module, context["env_id"], sparsity=sparsity, steps=params["steps"], qat=qat,
                               signal=params["signal"], lr=params["lr"], seed=params["seed"],
                               agent_pt=context.get("agent_pt"))
    student = trained.student
    if qat:
        data = qdq_onnx(student)
        check_int8("gmp", data, ("QuantizeLinear", "DequantizeLinear", "MatMul"))
    else:
        data = onnx_bytes(student.to_deployable())
    stored = onnx_weights(data)
    layers = []
    for name, layer in zip(student.names, student.layers):
        w = stored[name]
        zeros, want = int(np.count_nonzero(w == 0)), pruned_count(w.size, sparsity)
        if zeros != want or int((layer.mask == 0).sum()) != want:
            raise CompressionError(f"gmp: layer {name} holds {zeros} zero weights, expected {want} "
                                   f"(round({sparsity} * {w.size}); internal error)")
        layers.append({"layer": name, "shape": [layer.out_features, layer.in_features], "in": layer.in_features,
                       "out": layer.out_features, "numel": int(w.size), "zeros": zeros,
                       "nonzeros": int(w.size) - zeros, "sparsity": zeros / w.size})
    total = sum(l["numel"] for l in layers)
    zeros = sum(l["zeros"] for l in layers)
    figures = storage_figures(layers, 8 if qat else 32, qat)
    summary = {
        "training": {**trained.record, "env_id": context["env_id"]},
        "pruning": {**sched, "granularity": "unstructured, per layer, all Linear layers (biases kept)",
                    "layers": [{k: l[k] for k in ("layer", "shape", "numel", "zeros", "sparsity")} for l in layers],
                    "weights": total, "zeros": zeros, "sparsity": zeros / total},
        "sparsity": zeros / total,
        "storage": {**figures, "sparse_format": SPARSE_FORMAT},
        "compression_factor_sparse": figures["compression_factor_sparse"],
        "compression_factor_bitmask": figures["compression_factor_bitmask"],
        "compression_factor_values_only": figures["compression_factor_values_only"],
        "notes": ["ONNX stores dense tensors: compression_factor (on-disk ONNX bytes) is at most ~4x with int8 "
                  "weights whatever the sparsity; compression_factor_sparse is what a CSR store of the same "
                  "weights would take (see storage.sparse_format)"],
    }
    if qat:
        summary["quantization"] = {"weights": "int8 symmetric per tensor, scale max|W|/127; unpruned weights "
                                              "never round to 0", "activations": "uint8 affine per tensor",
                                   "format": "QDQ", "layers": quant_layers_record(student)}
    summary["graph_vs_fake_quant"] = check_export("gmp", data, student, trained.states)
    context["summary"].update(summary)
    return {"model.onnx": data}


GMP = register(MethodInfo(
    "gmp", "onnxruntime", build_gmp, prepare=prepare_training, shipped=True, not_for_discrete=NOT_FOR_DISCRETE,
    grid=GridVariants(order=100, param="sparsity", values=GMP_SPARSITIES), params=(
        Param("sparsity", "float", 0.8, low=0.5, high=0.95,
              doc="final fraction of zero weights in every Linear layer (biases are kept)"),
        Param("qat", "bool", True, doc="follow pruning with 8-bit QAT (20% more steps): an int8 QDQ graph"),
        SIGNAL, Param("steps", "int", 5000, low=1, high=STEPS_MAX,
                      doc="steps of the pruning run (distill: gradient steps; rl: environment steps)"),
        LR, SEED),
    doc="gradual magnitude pruning during fine-tuning (cubic schedule, Zhu & Gupta / Ivanov et al. 2024), "
        "optionally followed by 8-bit QAT"))


__all__ = ["GMP", "GMP_SPARSITIES", "PruneSchedule", "build_gmp", "cubic_sparsity", "gmp_plan", "onnx_weights",
           "prune_layer", "pruned_count", "storage_figures", "train_gmp"]
