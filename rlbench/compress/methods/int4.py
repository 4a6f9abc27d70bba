"""4-bit block-wise weights (``int4``): ONNX Runtime's ``MatMulNBits`` quantizer.

Every Linear layer's ``MatMul`` of the fp32 graph (:mod:`rlbench.zoo.onnx_graph` writes Linear as
``MatMul`` + ``Add``, never ``Gemm``, so nothing is converted first) becomes a
``com.microsoft.MatMulNBits`` node through
``onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer`` with its
``DefaultWeightOnlyQuantConfig`` (round to nearest, QOperator format, ``bits=4``). The weight
``W^T`` [K, N] is cut along K into blocks of ``block_size`` rows; each block of each output column
has its own float32 scale and, unless ``symmetric``, a 4-bit zero point. What the graph stores per
layer, under the fp32 name plus ORT's suffixes:

* ``<layer>_weight_t_Q4``: uint8 [N, ceil(K / block_size), block_size / 2], two 4-bit codes a
  byte, low nibble first. K is zero-padded up to a whole block (Hopper's 11 inputs take one block
  of 32; a 400-wide layer 13 blocks, the last 16 rows padding), so a column holds
  ``ceil(K / block_size) * block_size / 2`` bytes;
* ``<layer>_weight_t_scales``: float32 [N, ceil(K / block_size)];
* ``<layer>_weight_t_zero_points``: uint8 [N, ceil(ceil(K / block_size) / 2)], packed like the codes
  (absent when ``symmetric``: the kernel then takes 8);
* the bias stays float32 in its ``Add``; normalisation, squashing and clipping stay float32.

``accuracy_level`` is MatMulNBits' attribute: the lowest precision ONNX Runtime may compute in.
0 (the default) leaves it unset, and the CPU provider then dequantizes each block and multiplies
in float32, so the graph computes ``x @ dequant(W)`` (a test checks it to 1e-5), float32 rounding
aside the same on every CPU; 4 lets it quantize the activations to int8 per block as well (a W4A8 product, on int8
kernels that, like those of :mod:`rlbench.measure.int8kernel`, are the CPU's own). 1 to 3 request
float32, float16 and bfloat16: on the project's x86 machines their actions equal level 0's exactly.

Found with onnxruntime 1.31.1:

* ``matmul_nbits_quantizer`` imports ``onnx_ir``, which onnxruntime's wheel does not require
  (``ModuleNotFoundError: No module named 'onnx_ir'``): it is a dependency of rlbench, and its
  version is part of this method's cache key (it serialises the tensors).
* Importing the module calls ``logging.basicConfig(level=INFO)``, which on a process without
  logging handlers installs one on the root logger and prints every later INFO record, ours and
  ORT's "start to quantize ..." per node. It is imported behind a placeholder handler, so that call
  does nothing, and its logger is held at WARNING while it quantizes.
* The CPU provider runs every layer shape of the zoo (K of 11, 17, 64, 105, 256, 300, 348, 400;
  N down to 3) at every block size and accuracy level (all 25 shipped policies checked): padding is
  the quantizer's, not ours.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from rlbench.compress.registry import GridVariants, MethodInfo, Param, register
from rlbench.compress.summary import LAYER_TENSOR
from rlbench.core.errors import CompressionError

if TYPE_CHECKING:
    import numpy as np

#: MatMulNBits takes a power-of-two block of at least 16 rows; above 256 a block spans every
#: hidden layer of the zoo and scales stop being per block.
BLOCK_SIZES = (16, 32, 64, 128, 256)
DEFAULT_BLOCK_SIZE = 32
BITS = 4
QUANTIZER = ("onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer "
             "(DefaultWeightOnlyQuantConfig, round to nearest, QOperator)")
_QUANTIZER_LOGGER = "onnxruntime.quantization.matmul_nbits_quantizer"


def _quantizer_class():
    """``MatMulNBitsQuantizer`` and ``QuantFormat``, imported without its ``basicConfig`` taking effect."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)  # basicConfig configures only a root logger that has no handler
    try:
        from onnxruntime.quantization import QuantFormat
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ModuleNotFoundError as exc:
        raise CompressionError(f"int4: onnxruntime's MatMulNBits quantizer cannot be imported ({exc}); "
                               "it needs onnx-ir: python -m pip install -e . (rlbench requires it)") from exc
    finally:
        root.removeHandler(placeholder)
    return MatMulNBitsQuantizer, QuantFormat


@contextlib.contextmanager
def _quiet_quantizer():
    """Its per-node INFO lines (``start to quantize body_0_MatMul ...``) are not worth a line each."""
    log = logging.getLogger(_QUANTIZER_LOGGER)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def check_block_size(block_size: int) -> int:
    if block_size not in BLOCK_SIZES:
        raise CompressionError(f"int4: block_size must be one of {', '.join(map(str, BLOCK_SIZES))} "
                               f"(a power of two MatMulNBits takes); got {block_size!r}")
    return block_size


#: ``float_layers``: the Linear layers left float32 (their ``MatMul`` node names in rlbench graphs).
FLOAT_LAYERS = {"none": (), "first": ("body_0",), "first+head": ("body_0", "head")}


def quantize_int4(onnx_model: bytes, block_size: int = DEFAULT_BLOCK_SIZE, symmetric: bool = False,
                  accuracy_level: int = 0, keep: tuple[str, ...] = ()) -> bytes:
    """The fp32 graph with every ``MatMul`` weight (but the layers in ``keep``) stored as 4-bit blocks
    in a ``MatMulNBits`` node."""
    # deferred: it loads onnx, which listing the methods (`rlbench --help`) does not need
    import onnx

    check_block_size(block_size)
    model = onnx.load_from_string(onnx_model)
    names = {n.name for n in model.graph.node if n.op_type == "MatMul"}
    missing = [layer for layer in keep if f"{layer}_MatMul" not in names]
    if missing:
        raise CompressionError(f"int4: no MatMul of layer(s) {', '.join(missing)} to keep float32 "
                               f"(MatMul nodes: {', '.join(sorted(names))})")
    gemm = [n.name or n.output[0] for n in model.graph.node if n.op_type == "Gemm"]
    if gemm:  # ORT's quantizer rewrites MatMul only; a Gemm would silently stay float32
        raise CompressionError(f"int4: the graph holds Gemm nodes ({', '.join(gemm)}); MatMulNBits replaces "
                               "MatMul only: export Linear layers as MatMul + Add (rlbench.zoo.onnx_graph)")
    quantizer_cls, quant_format = _quantizer_class()
    with _quiet_quantizer():
        q = quantizer_cls(model, bits=BITS, block_size=block_size, is_symmetric=symmetric,
                          accuracy_level=accuracy_level or None, quant_format=quant_format.QOperator,
                          op_types_to_quantize=("MatMul",), nodes_to_exclude=[f"{k}_MatMul" for k in keep])
        q.process()
    out = q.model.model
    onnx.checker.check_model(out)
    return out.SerializeToString(deterministic=True)


# ------------------------------------------------------------------------------ reading it back
def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """uint8 [..., B] -> uint8 [..., 2B] codes, low nibble first (MatMulNBits' order)."""
    # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
    import numpy as np

    packed = np.asarray(packed, dtype=np.uint8)
    out = np.empty(packed.shape[:-1] + (packed.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = packed & 0x0F
    out[..., 1::2] = packed >> 4
    return out


def dequantize(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int,
               block_size: int) -> np.ndarray:
    """``W^T`` [K, N] float32 as MatMulNBits computes it: ``(code - zero_point) * scale`` per block."""
    # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
    import numpy as np

    n, k_blocks, _ = packed.shape
    codes = unpack_nibbles(packed).reshape(n, k_blocks, block_size).astype(np.float32)
    scales = np.asarray(scales, dtype=np.float32).reshape(n, k_blocks)
    if zero_points is None:
        zp = np.full((n, k_blocks), 8.0, dtype=np.float32)
    else:
        zp = unpack_nibbles(np.asarray(zero_points).reshape(n, -1))[:, :k_blocks].astype(np.float32)
    w = (codes - zp[:, :, None]) * scales[:, :, None]  # [N, k_blocks, block]
    return np.ascontiguousarray(w.reshape(n, k_blocks * block_size)[:, :k].T)


def layers(model_bytes: bytes) -> list[dict]:
    """Per ``MatMulNBits`` node: its layer, attributes, the tensors it reads and their bytes."""
    # deferred: it loads onnx, which listing the methods (`rlbench --help`) does not need
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        names = list(node.input[1:4]) + [None] * (4 - len(node.input))
        packed, scales, zp = (inits.get(n) if n else None for n in names[:3])
        if packed is None or scales is None:
            raise CompressionError(f"int4: {node.name} does not read its weight and scales from initialisers")
        rec = {"node": node.name, "layer": node.name.removesuffix("_MatMul_Q4"), "K": int(attrs["K"]),
               "N": int(attrs["N"]), "bits": int(attrs["bits"]), "block_size": int(attrs["block_size"]),
               "accuracy_level": int(attrs.get("accuracy_level", 0)),
               "weight": packed.name, "weight_dtype": onnx.TensorProto.DataType.Name(packed.data_type),
               "weight_shape": list(packed.dims), "weight_bytes": len(numpy_helper.to_array(packed).tobytes()),
               "scales": scales.name, "scales_bytes": len(numpy_helper.to_array(scales).tobytes()),
               "zero_points": zp.name if zp is not None else None,
               "zero_point_bytes": len(numpy_helper.to_array(zp).tobytes()) if zp is not None else 0}
        rec["k_blocks"] = -(-rec["K"] // rec["block_size"])
        rec["padded_rows"] = rec["k_blocks"] * rec["block_size"] - rec["K"]
        out.append(rec)
    return out


def dequantized_weights(model_bytes: bytes) -> dict[str, np.ndarray]:
    """``{layer: W^T [K, N]}`` as the int4 graph stores it."""
    # deferred: it loads onnx, which listing the methods (`rlbench --help`) does not need
    import onnx
    from onnx import numpy_helper

    inits = {t.name: t for t in onnx.load_from_string(model_bytes).graph.initializer}
    arr = {name: numpy_helper.to_array(t) for name, t in inits.items()}
    return {rec["layer"]: dequantize(arr[rec["weight"]], arr[rec["scales"]],
                                     arr[rec["zero_points"]] if rec["zero_points"] else None,
                                     rec["K"], rec["block_size"])
            for rec in layers(model_bytes)}


def _check(data: bytes, fp32: bytes, block_size: int, symmetric: bool, accuracy_level: int,
           keep: tuple[str, ...] = ()) -> list[dict]:
    """Every Linear layer but ``keep`` is a 4-bit MatMulNBits whose codes round the fp32 weight (never
    trusting ORT); the kept ones are the fp32 MatMul they were."""
    # deferred: numpy and onnx, which listing the methods (`rlbench --help`) does not need
    import numpy as np
    import onnx
    from onnx import numpy_helper

    fp32_weights = {m["layer"]: numpy_helper.to_array(t) for t in onnx.load_from_string(fp32).graph.initializer
                    if (m := LAYER_TENSOR.match(t.name)) and m["kind"] == "weight_t"}
    recs = layers(data)
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    scales_of = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("_scales")}
    float_left = sorted(m["layer"] for t in model.graph.initializer
                        if (m := LAYER_TENSOR.match(t.name)) and m["kind"] == "weight_t" and m["q"] is None)
    if sorted(r["layer"] for r in recs) != sorted(set(fp32_weights) - set(keep)) or float_left != sorted(keep) \
            or ops.count("MatMul") != len(keep):
        raise CompressionError(f"int4: onnxruntime quantized {[r['layer'] for r in recs]} of the layers "
                               f"{sorted(fp32_weights)}, keeping {sorted(keep)} float32 (ops: {sorted(set(ops))})")
    deq = dequantized_weights(data)
    for rec in recs:
        w = fp32_weights[rec["layer"]]
        blocks = rec["k_blocks"]
        expect = [rec["N"], blocks, block_size // 2]
        if (rec["bits"], rec["block_size"], rec["weight_dtype"], rec["weight_shape"], (rec["K"], rec["N"])) != \
                (BITS, block_size, "UINT8", expect, w.shape) or rec["accuracy_level"] != accuracy_level \
                or (rec["zero_points"] is None) != symmetric:
            raise CompressionError(f"int4: {rec['node']} is not the 4-bit layer asked for: {rec}")
        # round to nearest: within half a step of the weight (symmetric codes reach -8 on one
        # side and only +7 on the other, so a whole step there)
        scales = np.abs(scales_of[rec["scales"]]).reshape(rec["N"], blocks)
        step = np.repeat(scales.T, block_size, axis=0)[:rec["K"]]  # [K, N]
        err = np.abs(deq[rec["layer"]] - w)
        bound = (1.0 if symmetric else 0.5) * step + 1e-6 * np.abs(w).max()
        if not np.all(err <= bound):
            raise CompressionError(f"int4: {rec['layer']}'s 4-bit codes do not round its fp32 weight "
                                   f"(max error {float(err.max()):.3g})")
        rec["max_error_steps"] = round(float((err / np.maximum(step, 1e-30)).max()), 4)
    return recs


def build_int4(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    block_size = check_block_size(int(params["block_size"]))
    symmetric, level = bool(params["symmetric"]), int(params["accuracy_level"])
    keep = FLOAT_LAYERS[params["float_layers"]]
    data = quantize_int4(onnx_model, block_size, symmetric, level, keep)
    recs = _check(data, onnx_model, block_size, symmetric, level, keep)
    packed = sum(r["weight_bytes"] for r in recs)
    context["summary"].update(
        int4_weight_tensors=len(recs),
        int4={"quantizer": QUANTIZER, "bits": BITS, "block_size": block_size, "symmetric": symmetric,
              "accuracy_level": level, "float_layers": list(keep), "layers": recs, "weight_bytes_int4": packed,
              "scale_bytes": sum(r["scales_bytes"] + r["zero_point_bytes"] for r in recs),
              "weight_bytes_fp32": sum(4 * r["K"] * r["N"] for r in recs)})
    return {"model.onnx": data}


INT4 = register(MethodInfo(
    "int4", "onnxruntime", build_int4, libraries=("onnx-ir",), grid=GridVariants(order=60), params=(
        Param("block_size", "int", DEFAULT_BLOCK_SIZE, low=16, high=256,
              doc="weights per block along K, each with its own scale: 16, 32, 64, 128 or 256"),
        Param("symmetric", "bool", False, doc="no zero points (codes -8..7 around 0); default: a 4-bit zero "
                                              "point per block"),
        Param("accuracy_level", "int", 0, low=0, high=4,
              doc="MatMulNBits' lowest compute precision: 0 unset (float32 on CPU), 4 int8 activations"),
        Param("float_layers", "choice", "none", choices=tuple(FLOAT_LAYERS),
              doc="Linear layers left float32: none, the input layer, or the input layer and the head")),
    doc="4-bit block-wise weights: onnxruntime's MatMulNBits quantizer (round to nearest), float32 activations "
        "by default"))
