"""Low-rank factorisation of hidden Linear layers by truncated SVD.

A hidden layer ``y = x W^T + b`` with ``W`` [out, in] becomes two layers: ``in -> r`` without
bias and ``r -> out`` with the original bias, from ``W ~ U_r S_r V_r^T``. The singular values
are split evenly (``A = V_r sqrt(S_r)``, ``B = sqrt(S_r) U_r^T``), so neither factor carries all
the scale (it matters if the result is quantized later). The SVD runs in float64 with NumPy
(LAPACK), deterministic for identical weights.

``rank`` is a fraction of ``min(in, out)``: a layer keeps ``r = max(1, ceil(rank * min(in, out)))``
singular values. A layer is factorised only when that has fewer parameters,
``r * (in + out) < in * out``; otherwise it is kept as it is (at ``rank=1.0`` nothing is
factorised and the artefact equals the fp32 graph). The head is never factorised, as in pruning.

The artefact is ONNX: the fp32 graph of :func:`rlbench.zoo.onnx_graph.build_onnx` with each
factorised layer's ``MatMul`` replaced by two (``<layer>_lr_a_t`` then ``<layer>_lr_b_t``), so
every other node and tensor name is the same as in the fp32 graph.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rlbench.compress.registry import REQUIRED, GridVariants, MethodInfo, Param, register
from rlbench.core.errors import CompressionError

if TYPE_CHECKING:
    import numpy as np

#: The grid's rank fractions.
LOWRANK_FRACTIONS: tuple[float, ...] = (0.25, 0.50)


def layer_rank(in_features: int, out_features: int, rank: float) -> int:
    k = min(in_features, out_features)
    return max(1, min(k, math.ceil(rank * k - 1e-9)))


def factorise(weight: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """``weight`` [out, in] -> (A [in, r], B [r, out]) float32 with ``x @ A @ B ~ x @ weight.T``."""
    # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
    import numpy as np

    u, s, vt = np.linalg.svd(np.asarray(weight, dtype=np.float64), full_matrices=False)
    root = np.sqrt(s[:r])
    a = vt[:r].T * root  # [in, r]
    b = root[:, None] * u[:, :r].T  # [r, out]
    return a.astype(np.float32), b.astype(np.float32)


def plan(module, rank: float) -> list[dict]:
    """Per hidden layer: name, shape, the rank r and whether it is factorised."""
    out = []
    for i, m in enumerate(module.body):
        if not hasattr(m, "weight"):
            continue
        fin, fout = m.in_features, m.out_features
        r = layer_rank(fin, fout, rank)
        out.append({"layer": f"body_{i}", "in": fin, "out": fout, "rank": r,
                    "factorised": r * (fin + fout) < fin * fout,
                    "params_before": fin * fout + fout,
                    "params_after": (r * (fin + fout) + fout) if r * (fin + fout) < fin * fout else fin * fout + fout})
    return out


def lowrank_onnx(module, rank: float) -> tuple[bytes, list[dict]]:
    import onnx
    from onnx import helper, numpy_helper

    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import build_onnx

    if not 0 < rank <= 1:
        raise CompressionError(f"lowrank: rank must be in (0, 1]; got {rank!r}")
    model = build_onnx(module)
    g = model.graph
    layers = plan(module, rank)
    inits = {t.name: t for t in g.initializer}
    for rec in layers:
        if not rec["factorised"]:
            continue
        name = rec["layer"]
        wt = numpy_helper.to_array(inits[f"{name}_weight_t"])  # [in, out] = W^T
        a, b = factorise(wt.T, rec["rank"])
        idx = next(i for i, t in enumerate(g.initializer) if t.name == f"{name}_weight_t")
        g.initializer.pop(idx)
        g.initializer.insert(idx, numpy_helper.from_array(b, f"{name}_lr_b_t"))
        g.initializer.insert(idx, numpy_helper.from_array(a, f"{name}_lr_a_t"))
        pos, node = next((i, n) for i, n in enumerate(g.node) if n.name == f"{name}_MatMul")
        x, out = node.input[0], node.output[0]
        first = helper.make_node("MatMul", [x, f"{name}_lr_a_t"], [f"{name}_lr"], name=f"{name}_MatMul_lr")
        second = helper.make_node("MatMul", [f"{name}_lr", f"{name}_lr_b_t"], [out], name=f"{name}_MatMul")
        g.node.pop(pos)
        g.node.insert(pos, second)
        g.node.insert(pos, first)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True), layers


def build_lowrank(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    data, layers = lowrank_onnx(module, float(params["rank"]))
    context["summary"].update(rank=float(params["rank"]), layers=layers,
                              factorised_layers=sum(1 for rec in layers if rec["factorised"]))
    return {"model.onnx": data}


LOWRANK = register(MethodInfo(
    "lowrank", "onnxruntime", build_lowrank,
    grid=GridVariants(order=90, param="rank", values=LOWRANK_FRACTIONS, smoke=(0.50,)), params=(
        Param("rank", "float", REQUIRED, low=0.0, high=1.0, low_open=True,
              doc="kept singular values as a fraction of min(in, out) per hidden layer"),),
    doc="truncated SVD of each hidden Linear layer where it reduces parameters"))
