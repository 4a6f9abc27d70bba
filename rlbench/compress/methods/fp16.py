"""float16 weights: the MLP in half precision, everything around it in float32.

The rewrite takes the fp32 graph of :mod:`rlbench.zoo.onnx_graph` (or of the low-rank method),
stores the Linear layers' weights and biases as float16, and runs the span from the first
``MatMul`` to the head's ``Add`` in float16 between two ``Cast`` nodes. Normalisation (the
observation statistics and the clip), tanh squashing, rescaling and clipping to the action
bounds stay float32, and so do the graph's input and output (``keep_io_types``).

Why not ``onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`` (it is
available in onnxruntime 1.31): it converts the whole graph, including the observation mean and
std and the squash constants, blocks ``Min``/``Max`` and so wraps the final clip in a float16 ->
float32 -> float16 -> float32 chain of six ``Cast`` nodes, which rounds the clipped action to
float16 once more. Its accuracy was similar (max |diff| ~4e-4 on a test policy), but the graph
is not "fp16 weights", and its layout depends on that converter's block lists.

onnxruntime's CPU provider has float16 kernels for few ops; where it has none it inserts casts
to float32 itself when the session is created, so the variant always runs, and latency shows
what float16 costs or saves on the machine.
"""

from __future__ import annotations

from rlbench.compress.registry import GridVariants, MethodInfo, register
from rlbench.compress.summary import LAYER_TENSOR
from rlbench.core.errors import CompressionError


def to_fp16(model_bytes: bytes) -> bytes:
    """Rewrite an rlbench fp32 ONNX graph so its Linear layers run in float16."""
    # deferred: numpy and onnx, which listing the methods (`rlbench --help`) does not need
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    g = model.graph
    nodes = list(g.node)
    first = next((i for i, n in enumerate(nodes) if n.op_type == "MatMul"), None)
    last = next((i for i, n in enumerate(nodes) if n.name == "head_Add"), None)
    if first is None or last is None or last < first:
        raise CompressionError("fp16: the graph has no MatMul ... head_Add span (not an rlbench policy graph)")
    inits = {t.name: t for t in g.initializer}
    layer_inits = {name for name in inits if LAYER_TENSOR.match(name)}
    span = nodes[first:last + 1]
    for n in span:
        for name in n.input:
            if name in inits and name not in layer_inits:
                raise CompressionError(f"fp16: unexpected constant {name} inside the MLP")
    for name in layer_inits:
        t = inits[name]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), name))
    x_in = span[0].input[0]
    head_out = span[-1].output[0]
    x16, out16 = f"{x_in}_fp16", f"{head_out}_fp16"
    span[0].input[0] = x16
    span[-1].output[0] = out16
    cast_in = helper.make_node("Cast", [x_in], [x16], name="to_fp16", to=TensorProto.FLOAT16)
    cast_out = helper.make_node("Cast", [out16], [head_out], name="to_fp32", to=TensorProto.FLOAT)
    new_nodes = nodes[:first] + [cast_in] + span + [cast_out] + nodes[last + 1:]
    del g.node[:]
    g.node.extend(new_nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def build_fp16(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    return {"model.onnx": to_fp16(onnx_model)}


FP16 = register(MethodInfo(
    "fp16", "onnxruntime", build_fp16, grid=GridVariants(order=50),
    doc="float16 weights and hidden-layer arithmetic; normalisation, squashing and I/O in float32"))
