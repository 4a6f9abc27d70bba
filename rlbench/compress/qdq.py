"""The ONNX graph of a fake-quantised policy: QDQ int8 layers, and the check that it computes what PyTorch does.

:func:`qdq_onnx` writes a :class:`~rlbench.compress.fakequant.QuantPolicy` with ``onnx.helper``,
through the one policy-graph writer of :mod:`rlbench.zoo.onnx_graph` (``mlp_model``), which
the fp32 graph uses too, so every variant's graph has the same shape and node names. Each
quantised layer is:

* ``QuantizeLinear -> DequantizeLinear`` on the layer input, ``DequantizeLinear`` of the int8
  weight initializer ``<layer>_weight_t_quantized`` (with ``_scale`` and ``_zero_point``, ORT's
  names, so :func:`~rlbench.compress.summary.onnx_stats` counts it as an int8 weight),
  ``MatMul``, and ``Add`` of the int32 bias ``<layer>_bias_quantized`` dequantized at scale
  ``input scale * weight scale``. The int32 bias is what lets onnxruntime (1.31) fuse each layer
  into one ``QGemm`` (uint8 x int8 products, int32 sums, one float rescale); with an fp32 bias it
  fused MatMul + Add into a float ``Gemm`` on dequantized weights instead and ran 2x slower than
  fp32 on a 256x256 policy (33 us vs 17 us at batch 1; with QGemm: 17 us).

A layer that is not quantised (GMP without QAT) is the fp32 ``MatMul`` + ``Add`` of its masked
weight. :func:`check_export` refuses a graph whose actions differ from the PyTorch forward.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rlbench.compress.fakequant import QuantPolicy
from rlbench.core.errors import CompressionError
from rlbench.runtime.predictors import ReferencePredictor


def qdq_onnx(student: QuantPolicy) -> bytes:
    """The student as an ONNX graph: QDQ int8 for quantised layers, fp32 MatMul + Add otherwise."""
    # deferred: it loads onnx, which importing this module does not
    from onnx import helper, numpy_helper

    from rlbench.zoo.onnx_graph import mlp_model

    inits: list = []
    nodes: list = []

    def const(name: str, arr, dtype=np.float32) -> str:
        arr = np.asarray(arr, dtype=dtype)  # 0-d stays 0-d: a per-tensor scale is a scalar, not a 1-D axis
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.ndim else arr, name))
        return name

    def buf(name: str) -> np.ndarray:
        return getattr(student, name).detach().numpy().astype(np.float32)

    def qdq(name: str, layer):
        def inputs(x: str) -> tuple[list[str], str]:
            if not layer.quant:
                return [x, const(f"{name}_weight_t", layer.weight().numpy().T)], const(f"{name}_bias",
                                                                                        layer.linear.bias.numpy())
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
            # an int32 bias at scale input * weight scale lets onnxruntime fuse the layer into QGemm
            bq, b_scale = layer.bias_qparams(a_scale, w_scale)
            bqn = const(f"{name}_bias_quantized", bq.numpy(), np.int32)
            bs = const(f"{name}_bias_scale", b_scale.item())
            bz = const(f"{name}_bias_zero_point", 0, np.int32)
            nodes.append(helper.make_node("DequantizeLinear", [bqn, bs, bz], [f"{name}_bias_dequantized"],
                                          name=f"{name}_bias_DequantizeLinear"))
            return [f"{name}_input_dequantized", f"{name}_weight_t_dequantized"], f"{name}_bias_dequantized"
        return inputs

    with torch.no_grad():
        model = mlp_model(student.spec, const, nodes, inits,
                          [(name, qdq(name, layer)) for name, layer in zip(student.names, student.layers)],
                          buf("obs_mean"), buf("obs_std"), buf("act_low"), buf("act_high"))
    return model.SerializeToString(deterministic=True)


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


__all__ = ["check_export", "qdq_onnx", "quant_layers_record"]
