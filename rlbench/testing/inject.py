"""Fault injection for the noise-gate benchmark (a pytest plugin: ``-p rlbench.testing.inject``).

``RLBENCH_INJECT`` selects the fault:

* ``slow-onnxruntime:0.15``: every ONNX Runtime inference call takes 15% longer (a busy wait
  proportional to the call's own duration, on the calling thread, so both clocks see it): what an
  onnxruntime upgrade that slows every model would look like.
* ``extra-onnxruntime:0.15``: ONNX Runtime does 15% more of its own work: each inference call
  adds 0.15 to a credit, and a call that brings it to 1 runs the session once more. Unlike the
  busy wait, the extra time is ONNX Runtime's own code and data, so it does not also evict the
  caches that the next timed call (torch's, NumPy's) finds: the slow-onnxruntime busy wait moved
  torch's yardstick by 7-11% too (docs/gates.md, "The noise gate on the smoke tier").
* ``extra-int8:0.15``: as ``extra-onnxruntime``, for the sessions of graphs with int8 weights
  only (fp32, fp16 and torch untouched): what an onnxruntime upgrade that loses an int8 fusion or
  changes the int8 GEMM dispatch would look like. It is the method-level gate's fault.
* ``corrupt:ptdq``: the ``ptdq`` method's artefact has the sign of its output layer's int8 weights
  flipped (its cache key changes with it, so the cache never serves the fault to a normal run).

Never loaded unless asked for on the command line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

# Imports of rlbench sit in the functions: ``-p`` loads this plugin before the root conftest pins
# the native thread pools (rlbench.core.threads), so it must not load NumPy at import.


def _slow(factor: float) -> None:
    from rlbench.runtime.predictors import OrtPredictor

    original = OrtPredictor.predict

    def predict(self, obs):
        t0 = time.perf_counter()
        out = original(self, obs)
        end = time.perf_counter() + factor * (time.perf_counter() - t0)
        while time.perf_counter() < end:
            pass
        return out

    OrtPredictor.predict = predict


def _has_int8_weights(model) -> bool:
    """Whether an ONNX model (a path or its bytes) holds int8 or uint8 weights."""
    import onnx

    proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    return any(i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for i in proto.graph.initializer)


def _extra(fraction: float, only_int8: bool = False) -> None:
    from rlbench.runtime.predictors import OrtPredictor

    original, init = OrtPredictor.predict, OrtPredictor.__init__
    credit = [0.0]

    def __init__(self, model, *args, **kwargs):
        init(self, model, *args, **kwargs)
        self.inject_int8 = _has_int8_weights(model)

    def predict(self, obs):
        out = original(self, obs)
        if only_int8 and not self.inject_int8:
            return out
        credit[0] += fraction
        while credit[0] >= 1.0:
            credit[0] -= 1.0
            original(self, obs)
        return out

    OrtPredictor.predict = predict
    if only_int8:
        OrtPredictor.__init__ = __init__


_ORIGINAL: dict[str, Callable[..., dict[str, bytes]]] = {}


def corrupted_build(*args, **kwargs):
    """The original build's files, with the output layer's int8 weights sign-flipped."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    files = _ORIGINAL["build"](*args, **kwargs)
    model = onnx.load_from_string(files["model.onnx"])
    flipped = 0
    for init in model.graph.initializer:
        if init.name.startswith("head_weight") and init.data_type == onnx.TensorProto.INT8:
            arr = numpy_helper.to_array(init).astype(np.int16)
            init.CopyFrom(numpy_helper.from_array(np.clip(-arr, -127, 127).astype(np.int8), init.name))
            flipped += 1
    if not flipped:
        raise RuntimeError("corrupt injection found no int8 head weights to flip")
    files["model.onnx"] = model.SerializeToString(deterministic=True)
    return files


def _corrupt(method: str) -> None:
    import dataclasses

    from rlbench.compress.methods import get_method
    from rlbench.compress.registry import register

    info = get_method(method)
    _ORIGINAL["build"] = info.build
    register(dataclasses.replace(info, build=corrupted_build, version=f"{info.version}+corrupt"), replace=True)


def pytest_configure(config):
    spec = os.environ.get("RLBENCH_INJECT", "")
    if spec.startswith("slow-onnxruntime:"):
        _slow(float(spec.split(":", 1)[1]))
    elif spec.startswith("extra-onnxruntime:"):
        _extra(float(spec.split(":", 1)[1]))
    elif spec.startswith("extra-int8:"):
        _extra(float(spec.split(":", 1)[1]), only_int8=True)
    elif spec.startswith("corrupt:"):
        _corrupt(spec.split(":", 1)[1])
    elif spec:
        raise ValueError(f"RLBENCH_INJECT={spec!r}: expected slow-onnxruntime:F, extra-onnxruntime:F, extra-int8:F or "
                         "corrupt:METHOD")
