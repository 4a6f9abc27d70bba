"""What an artefact is, in numbers: bytes, parameters, int8 tensors, pruned fractions.

Layer parameters in an ONNX graph are found by name. :mod:`rlbench.zoo.onnx_graph` names a Linear
layer's tensors ``<layer>_weight_t`` and ``<layer>_bias`` (``body_0``, ``body_2``, ..., ``head``),
onnxruntime's quantizers keep the name and add ``_quantized`` (with separate ``_scale`` and
``_zero_point`` tensors, which are not parameters), and the low-rank method adds
``<layer>_lr_a_t`` / ``<layer>_lr_b_t``. The 4-bit method's ``MatMulNBits`` stores a weight as
``<layer>_weight_t_Q4``, uint8 bytes of two codes each padded to whole blocks: its parameters are
the node's ``K x N``, and it is a 4-bit tensor, not an int8 one. Counting by name gives the same
parameter count as the torch module for every variant (a test checks it), and does not count the normalisation
statistics, the action bounds or constants ORT quantizes along the way (``act_half``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from rlbench.compress.names import MODEL_ONNX, MODEL_PT
from rlbench.core.errors import CompressionError
from rlbench.core.io import sha256_bytes

LAYER_TENSOR = re.compile(r"^(?P<layer>body_\d+|head)_(?P<kind>weight_t|bias|lr_a_t|lr_b_t)(?P<q>_quantized|_Q4)?$")
WEIGHT_KINDS = ("weight_t", "lr_a_t", "lr_b_t")
INT8_TYPES = ("INT8", "UINT8")


def onnx_stats(model_bytes: bytes) -> dict:
    """Parameter count, int8/fp16 weight tensors and op counts of an rlbench ONNX graph."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    nbits_shape = {n.input[1]: {a.name: a.i for a in n.attribute if a.name in ("K", "N")}
                   for n in model.graph.node if n.op_type == "MatMulNBits"}
    params = 0
    int8_weights = int8_biases = fp16_weights = weights = 0
    for init in model.graph.initializer:
        m = LAYER_TENSOR.match(init.name)
        if not m:
            continue
        is_weight = m["kind"] in WEIGHT_KINDS
        weights += is_weight
        if m["q"] == "_Q4":  # packed 4-bit codes: K x N weights, whatever the padding
            shape = nbits_shape.get(init.name, {})
            params += int(shape.get("K", 0)) * int(shape.get("N", 0))
            continue
        params += math.prod(init.dims) if len(init.dims) else 1
        dtype = onnx.TensorProto.DataType.Name(init.data_type)
        if dtype in INT8_TYPES:
            int8_weights += is_weight
            int8_biases += not is_weight
        elif dtype == "FLOAT16" and is_weight:
            fp16_weights += 1
    ops = Counter(n.op_type for n in model.graph.node)
    return {"params": params, "weight_tensors": weights, "int8_weight_tensors": int8_weights,
            "int8_bias_tensors": int8_biases, "fp16_weight_tensors": fp16_weights, "ops": dict(sorted(ops.items()))}


def summarise(info, params: dict, files: dict[str, bytes], original, baseline_bytes: int, extra: dict) -> dict:
    """One JSON-serialisable dict describing an artefact (see the module docstring for ``params``).

    ``compression_factor`` is the fp32 ``policy.onnx`` bytes over the artefact's ``model.onnx``
    bytes: like for like, since every artefact has an ONNX graph (pruned ones also ship
    ``model.pt``, counted in ``bytes`` but not in the factor).
    """
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import num_params

    stats = onnx_stats(files[MODEL_ONNX])
    fp32_params = num_params(original)
    hidden_before = list(original.current_spec().hidden)
    out = {
        "method": info.name,
        "runtime": info.runtime,
        "ratio": params.get("ratio"),
        "settings": dict(sorted(params.items())),
        "files": {k: {"bytes": len(v), "sha256": sha256_bytes(v)} for k, v in sorted(files.items())},
        "bytes": sum(len(v) for v in files.values()),
        "model_bytes": len(files[MODEL_ONNX]),
        "baseline_bytes": int(baseline_bytes),
        "compression_factor": baseline_bytes / len(files[MODEL_ONNX]),
        "params": stats["params"],
        "params_fp32": fp32_params,
        "weight_tensors": stats["weight_tensors"],
        "int8_weight_tensors": stats["int8_weight_tensors"],
        "int8_bias_tensors": stats["int8_bias_tensors"],
        "fp16_weight_tensors": stats["fp16_weight_tensors"],
        "ops": stats["ops"],
        "hidden_before": hidden_before,
        "channel_ratio": None,
        "param_ratio": (fp32_params - stats["params"]) / fp32_params,
        "notes": [],
    }
    if MODEL_PT in files:
        import io

        # deferred: it loads torch, which importing this module does not
        from rlbench.zoo.policy import load_policy

        pruned = load_policy(io.BytesIO(files[MODEL_PT]))
        torch_params = num_params(pruned)
        if torch_params != stats["params"]:
            raise CompressionError(f"{info.name}: model.pt has {torch_params} parameters but model.onnx "
                                   f"{stats['params']} (internal error)")
        hidden_after = list(pruned.current_spec().hidden)
        out["hidden_after"] = hidden_after
        out["channel_ratio"] = (sum(hidden_before) - sum(hidden_after)) / sum(hidden_before) if hidden_before else 0.0
        out["params_removed"] = fp32_params - torch_params
    out.update(extra)
    return out
