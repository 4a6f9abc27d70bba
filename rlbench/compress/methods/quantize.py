"""int8 quantization with onnxruntime: dynamic (``ptdq``, ``int8pc``) and static (``ptsq``).

All three rewrite the fp32 ``policy.onnx`` (Linear = MatMul + Add, see
:mod:`rlbench.zoo.onnx_graph`). onnxruntime's quantizers read and write files, so each call works
in a private temporary directory and returns bytes.

* ``ptdq``: ``quantize_dynamic`` with int8 weights, one scale per tensor. Activations are
  quantized at run time (``DynamicQuantizeLinear`` -> ``MatMulInteger``); no calibration data.
* ``int8pc``: the same with one scale per output channel (``per_channel=True``).
* ``ptsq``: ``quantize_static``; activation ranges come from a calibration set of raw
  observations, collected by running the fp32 policy deterministically in its environment on
  seeds ``CALIBRATION_SEED_BASE + i`` (disjoint from evaluation seeds, so no figure is measured
  on the states the ranges were fit to). The graph normalises observations itself, so raw
  observations are exactly what the policy sees.

Surprises this module works around or records (found with onnxruntime 1.31):

* ``quantize_static(calibrate_method=Entropy)`` builds its histogram with 128 bins and searches
  thresholds with 128 quantized bins, so the search has one candidate, the full range: entropy
  calibration returned byte-identical models to MinMax. We therefore run the calibrator
  ourselves (``create_calibrator``) with 512 histogram bins for entropy (thresholds from 1/4 of
  the observed range up to all of it; TensorRT's 2048 bins took ~10 s per 256-wide policy in
  ORT's Python KL loop), save its ranges with ``save_tensors_data`` and hand them to
  ``quantize_static`` through its public ``calibration_cache_path``.
* ORT's histogram collector cannot take calibration batches of different sizes, so the set is
  fed as one batch (capped at ``N_CALIB_MAX`` rows).
* The calibrators ``print`` progress to stdout and ORT logs "Please consider to run
  pre-processing before quantization" on the root logger for every call. Pre-processing
  (symbolic shape inference + graph optimisation) would fuse and rename our nodes; the graph is
  already minimal, so it is skipped, the advice is dropped and the prints go to DEBUG logging
  (the CLI prints one line of JSON on stdout).
* QOperator with int8 activations and int8 weights (S8S8) ran 6-10x slower than fp32 at batch 1
  on x86 in the project's measurements (4.4x on a 256x256 PPO policy here): ORT has no fast S8S8
  QLinearMatMul kernel there (its own warning says so, on stderr, and we leave it visible). It is
  available (``format="qoperator", activation_type="int8"``) because it is a variant users
  try, and the summary says so in ``notes``; the default is QDQ with uint8 activations (U8S8).
* ORT's static quantizer also quantizes the action rescaling (``Mul``/``Add`` by ``act_half``
  and ``act_mid``) and the normalised observation, because it quantizes every op type it
  supports; we keep its default so the variant is what a user of ``quantize_static`` gets.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rlbench.compress.calibration import calibration_observations
from rlbench.compress.registry import GridVariants, MethodInfo, Param, Source, register
from rlbench.compress.summary import onnx_stats
from rlbench.core.errors import CompressionError
from rlbench.core.io import sha256_bytes
from rlbench.zoo.registry import CALIBRATION_SEED_BASE

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("rlbench.compress")

#: Histogram bins for entropy calibration (see the module docstring). Changing it changes
#: the artefact bytes: bump the ptsq method version below with it.
ENTROPY_BINS = 512
ENTROPY_QUANTIZED_BINS = 128
_ORT_ADVICE = ("pre-processing before quantization", "run pre-processing")
#: Calibration sets above this size only cost memory: ranges are taken over one batch.
N_CALIB_MAX = 100_000


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(a in msg for a in _ORT_ADVICE)


@contextlib.contextmanager
def _quiet_ort():
    """Drop ORT's pre-processing advice and send its calibrator prints to DEBUG logging."""
    root = logging.getLogger()
    filt = _DropAdvice()
    root.addFilter(filt)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        root.removeFilter(filt)
        if buf.getvalue().strip():
            log.debug("onnxruntime.quantization: %s", buf.getvalue().strip())


def check_int8(name: str, data: bytes, expect_ops: tuple[str, ...]) -> None:
    """The quantized graph must hold an int8 weight for every layer and the expected int8 ops."""
    st = onnx_stats(data)
    if st["weight_tensors"] == 0 or st["int8_weight_tensors"] != st["weight_tensors"]:
        raise CompressionError(f"{name}: onnxruntime left {st['weight_tensors'] - st['int8_weight_tensors']} of "
                               f"{st['weight_tensors']} weight tensors unquantized (ops: {st['ops']})")
    missing = [op for op in expect_ops if op not in st["ops"]]
    if missing:
        raise CompressionError(f"{name}: quantized graph lacks {', '.join(missing)} (ops: {st['ops']})")


def _dynamic(onnx_model: bytes, per_channel: bool, reduce_range: bool) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="rlbench-q-") as d, _quiet_ort():
        src, dst = Path(d, "fp32.onnx"), Path(d, "int8.onnx")
        src.write_bytes(onnx_model)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range)
        return dst.read_bytes()


def build_ptdq(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Dynamic quantization, per-tensor int8 weights."""
    data = _dynamic(onnx_model, per_channel=False, reduce_range=params["reduce_range"])
    check_int8("ptdq", data, ("MatMulInteger", "DynamicQuantizeLinear"))
    return {"model.onnx": data}


def build_int8pc(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Dynamic quantization, per-output-channel int8 weights."""
    data = _dynamic(onnx_model, per_channel=True, reduce_range=params["reduce_range"])
    check_int8("int8pc", data, ("MatMulInteger", "DynamicQuantizeLinear"))
    return {"model.onnx": data}


def _reader(obs: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class OneBatch(CalibrationDataReader):
        """The whole calibration set as one batch (ORT's histograms need equal batch sizes)."""

        def __init__(self):
            self._items = iter([{input_name: obs}])

        def get_next(self):
            return next(self._items, None)

    return OneBatch()


def build_ptsq(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    """Static quantization calibrated on the policy's rollouts (or ``context['calibration_obs']``)."""
    # deferred: numpy and onnxruntime's quantizer, which listing the methods (`rlbench --help`) does not need
    import numpy as np
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import INPUT

    n = int(params["n_calib"])
    if context.get("calibration_obs") is not None:
        obs = np.ascontiguousarray(np.asarray(context["calibration_obs"], dtype=np.float32)[:n])
        record: dict = {"source": "explicit"}
    else:
        obs, record = calibration_observations(module, context["env_id"], n)
        record = {"source": "rollouts", "env_id": context["env_id"], **record}
    if obs.shape[0] < 1:
        raise CompressionError("ptsq: calibration needs at least 1 observation")

    record.update(n=int(obs.shape[0]), sha256=sha256_bytes(obs.tobytes()))
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[params["calibration"]]
    calib_options = ({"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}
                     if params["calibration"] == "entropy" else {})
    qtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[params["format"]]
    with tempfile.TemporaryDirectory(prefix="rlbench-q-") as d, _quiet_ort():
        src, dst, cache = Path(d, "fp32.onnx"), Path(d, "int8.onnx"), Path(d, "ranges.json")
        src.write_bytes(onnx_model)
        calibrator = create_calibrator(src, None, augmented_model_path=str(Path(d, "augmented.onnx")),
                                       calibrate_method=method, extra_options=calib_options)
        calibrator.collect_data(_reader(obs, INPUT))
        save_tensors_data(calibrator.compute_data(), cache)
        del calibrator
        quantize_static(src, dst, None, quant_format=fmt, activation_type=qtype[params["activation_type"]],
                        weight_type=qtype[params["weight_type"]], per_channel=params["per_channel"],
                        calibrate_method=method, calibration_cache_path=cache)
        data = dst.read_bytes()
    expect = ("QuantizeLinear", "DequantizeLinear") if params["format"] == "qdq" else ("QLinearMatMul",)
    check_int8("ptsq", data, expect)
    notes = []
    if params["format"] == "qoperator" and params["activation_type"] == "int8" and params["weight_type"] == "int8":
        notes.append("QOperator S8S8: measured 4-10x slower than fp32 at batch 1 on x86 (no fast S8S8 "
                     "QLinearMatMul kernel in onnxruntime); prefer qdq or uint8 activations")
    context["summary"].update(calibration={**record, "method": params["calibration"],
                                           "options": calib_options}, notes=notes)
    return {"model.onnx": data}


def calibration_context(info: MethodInfo, params: dict, src: Source, calibration_obs) -> tuple[dict, dict]:
    """ptsq's preparation: the calibration source, explicit observations or rollouts of the policy in its env."""
    # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
    import numpy as np

    obs_dim = src.module.spec.obs_dim
    if calibration_obs is not None:
        obs = np.asarray(calibration_obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != obs_dim:
            raise CompressionError(f"{info.name}: calibration_obs must have shape [N, {obs_dim}]; got {list(obs.shape)}")
        if obs.shape[0] < 1:
            raise CompressionError(f"{info.name}: calibration needs at least 1 observation (n_calib must be "
                                   f"an integer in [1, {N_CALIB_MAX}]); calibration_obs has 0 rows")
        if not np.all(np.isfinite(obs)):
            raise CompressionError(f"{info.name}: calibration_obs holds NaN or inf")
        n = params.get("n_calib") or min(obs.shape[0], N_CALIB_MAX)
        if n > obs.shape[0]:
            raise CompressionError(f"{info.name}: n_calib={n} but calibration_obs has only {obs.shape[0]} rows; "
                                   f"n_calib must be in [1, {obs.shape[0]}]")
        obs = np.ascontiguousarray(obs[:n])
        params["n_calib"] = n
        return ({"calibration_obs": obs},
                {"calibration": {"source": "explicit", "sha256": sha256_bytes(obs.tobytes()), "shape": list(obs.shape)}})
    if src.env_id is None:
        raise CompressionError(f"{info.name}: calibration needs observations: compress a shipped policy, or pass "
                               "env_id= (rollouts) or calibration_obs= (an [N, obs_dim] array)")
    params["n_calib"] = params.get("n_calib") or 1000
    return ({"env_id": src.env_id},
            {"calibration": {"source": "rollouts", "env_id": src.env_id, "seed_base": CALIBRATION_SEED_BASE}})


# -------------------------------------------------------------------------------- declarations
REDUCE_RANGE = Param("reduce_range", "bool", False,
                     doc="7-bit weights: onnxruntime's remedy for the saturating uint8 x int8 kernels of x86 "
                         "without VNNI (rlbench.measure.int8kernel); off by default, as in the paper")

PTDQ = register(MethodInfo(
    "ptdq", "onnxruntime", build_ptdq, params=(REDUCE_RANGE,), grid=GridVariants(order=10), paper="quantization",
    doc="post-training dynamic quantization: int8 weights (per tensor), activations quantized at run time "
        "(onnxruntime quantize_dynamic, MatMulInteger)"))
INT8PC = register(MethodInfo(
    "int8pc", "onnxruntime", build_int8pc, params=(REDUCE_RANGE,), grid=GridVariants(order=40),
    doc="dynamic quantization with per-channel int8 weights (quantize_dynamic per_channel=True)"))
PTSQ = register(MethodInfo(
    "ptsq", "onnxruntime", build_ptsq, version="1", prepare=calibration_context, calibration=True,
    grid=GridVariants(order=20), paper="quantization", params=(
        Param("calibration", "choice", "minmax", choices=("minmax", "entropy", "percentile"),
              doc="how activation ranges are chosen from the calibration set"),
        Param("n_calib", "int", None, low=1, high=N_CALIB_MAX,
              doc="calibration observations (default 1000 from rollouts; all rows of explicit calibration_obs)"),
        Param("format", "choice", "qdq", choices=("qdq", "qoperator"),
              doc="QDQ (Quantize/DequantizeLinear pairs) or QOperator (QLinearMatMul/QLinearAdd)"),
        Param("activation_type", "choice", "uint8", choices=("uint8", "int8"), doc="activation integer type"),
        Param("weight_type", "choice", "int8", choices=("int8", "uint8"), doc="weight integer type"),
        Param("per_channel", "bool", False, doc="one weight scale per output channel")),
    doc="post-training static quantization calibrated on the policy's own rollouts"))
