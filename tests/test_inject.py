"""The noise gate's fault injection: the faults do what their names say, and a bad spec names itself."""

from __future__ import annotations

import pytest

from rlbench.runtime import predictors as runtime
from rlbench.testing import inject


def _counting_predictor(monkeypatch):
    calls = []
    monkeypatch.setattr(runtime.OrtPredictor, "predict", lambda self, obs: calls.append(obs) or obs * 2)
    return object.__new__(runtime.OrtPredictor), calls


def test_extra_onnxruntime_runs_the_session_15_percent_more_and_returns_the_first_output(monkeypatch):
    pred, calls = _counting_predictor(monkeypatch)
    monkeypatch.setenv("RLBENCH_INJECT", "extra-onnxruntime:0.15")
    inject.pytest_configure(None)
    outs = [pred.predict(i) for i in range(1000)]
    assert outs == [2 * i for i in range(1000)]
    assert len(calls) == 1150  # 1000 calls, 150 extra, spread one every 6-7 calls
    assert calls[:8] == [0, 1, 2, 3, 4, 5, 6, 6]


def test_extra_int8_runs_only_sessions_of_graphs_with_int8_weights(monkeypatch, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import numpy as np

    def graph(dtype):
        w = numpy_helper.from_array(np.ones((2, 2), dtype=dtype), "w")
        node = helper.make_node("Identity", ["x"], ["y"])
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
        return helper.make_model(g).SerializeToString()

    calls = []
    monkeypatch.setattr(runtime.OrtPredictor, "__init__", lambda self, model, *a, **k: None)
    monkeypatch.setattr(runtime.OrtPredictor, "predict", lambda self, obs: calls.append(obs) or obs)
    monkeypatch.setenv("RLBENCH_INJECT", "extra-int8:0.5")
    inject.pytest_configure(None)
    int8, fp32 = runtime.OrtPredictor(graph(np.int8)), runtime.OrtPredictor(graph(np.float32))
    for i in range(10):
        fp32.predict(("fp32", i))
    assert len(calls) == 10
    for i in range(10):
        int8.predict(("int8", i))
    assert len(calls) == 10 + 15  # int8 sessions alone run 50% more
    assert onnx.load_from_string(graph(np.int8)).graph.initializer[0].data_type == TensorProto.INT8


def test_an_unknown_fault_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RLBENCH_INJECT", "slow-torch:0.1")
    with pytest.raises(ValueError, match=r"RLBENCH_INJECT='slow-torch:0.1': expected slow-onnxruntime:F, "
                                         r"extra-onnxruntime:F, extra-int8:F or corrupt:METHOD"):
        inject.pytest_configure(None)
