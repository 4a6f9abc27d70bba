"""What this machine's ONNX Runtime computes for a uint8 x int8 matrix product.

ONNX's integer ops (MatMulInteger, QLinearMatMul, and the QGemm that ORT fuses a QDQ graph
into) are defined as exact 32-bit sums. MLAS, ORT's CPU kernel library, meets that with VNNI
(``vpdpbusd``) and on ARM. On x86 without VNNI (AVX2, AVX-512BW) it multiplies with
``vpmaddubsw``, which adds each pair of adjacent uint8 x int8 products into a signed 16-bit lane
*with saturation*: 255 x 127 x 2 = 64770 becomes 32767. ORT's own documentation answers it
with ``reduce_range`` (7-bit weights) for such machines.

Measured on an AMD EPYC with AVX2 and no VNNI: SAC Hopper's per-channel int8 policy returned
161 where the same file returns 1562 on a VNNI Xeon, and its actions on visited states were up
to a full action range from the spec's. So returns of int8 ONNX cells are not machine-independent:
they depend on the *int8 kernel class* this probe reports, and are stored per class (see
:class:`rlbench.gate.store.BaselineStore`). The artefacts stay byte-identical everywhere; what
runs them differs, and the grid measures it.
"""

from __future__ import annotations

import functools

import numpy as np

from rlbench.core.threads import ort_threads

EXACT = "exact"
SATURATING = "u8s8-saturating"
CLASSES = (EXACT, SATURATING)

_K, _N = 64, 8


def matmul_integer_model(b: np.ndarray, rows: int) -> bytes:
    """An ONNX graph ``Y = MatMulInteger(A, B)``: A uint8 ``[rows, K]`` input, B the int8 initializer."""
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
    graph = helper.make_graph([node], "rlbench_int8_probe",
                              [helper.make_tensor_value_info("A", TensorProto.UINT8, [rows, b.shape[0]])],
                              [helper.make_tensor_value_info("Y", TensorProto.INT32, [rows, b.shape[1]])],
                              initializer=[numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def run_matmul_integer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (uint8 x int8 -> int32) as this machine's onnxruntime computes it, on one thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    ort_threads(opts, 1)
    opts.log_severity_level = 3
    sess = ort.InferenceSession(matmul_integer_model(b, a.shape[0]), sess_options=opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"A": a})[0]


def expected(kind: str) -> int:
    """What each class computes for the probe: 255 x 127 summed over K, exactly or pair by pair."""
    if kind == EXACT:
        return 255 * 127 * _K
    if kind == SATURATING:
        return min(2 * 255 * 127, 32767) * (_K // 2)
    raise ValueError(f"unknown int8 kernel class {kind!r}; known: {', '.join(CLASSES)}")


def classify(value: int) -> str:
    for kind in CLASSES:
        if value == expected(kind):
            return kind
    raise RuntimeError(f"onnxruntime's MatMulInteger gave {value} for the int8 probe, which matches no known kernel "
                       f"class ({', '.join(f'{k}: {expected(k)}' for k in CLASSES)}); please report it with "
                       "your CPU model and onnxruntime version")


@functools.lru_cache(maxsize=1)
def probe() -> str:
    """This machine's int8 kernel class, from one MatMulInteger run by onnxruntime."""
    y = run_matmul_integer(np.full((1, _K), 255, dtype=np.uint8), np.full((_K, _N), 127, dtype=np.int8))
    values = {int(v) for v in y.ravel()}
    if len(values) != 1:
        raise RuntimeError(f"onnxruntime's MatMulInteger gave unequal columns {sorted(values)} for the int8 probe")
    return classify(values.pop())


def uses_int8_kernels(figures: dict) -> bool:
    """Whether a cell's figures describe an ONNX Runtime model with int8 weights."""
    return figures.get("runtime") == "onnxruntime" and int(figures.get("int8_weight_tensors") or 0) > 0
