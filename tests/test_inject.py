"""The noise gate's fault injection: the faults do what their names say, and a bad spec names itself."""

from __future__ import annotations

import pytest

from rlbench import runtime
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


def test_an_unknown_fault_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("RLBENCH_INJECT", "slow-torch:0.1")
    with pytest.raises(ValueError, match=r"RLBENCH_INJECT='slow-torch:0.1': expected slow-onnxruntime:F, "
                                         r"extra-onnxruntime:F or corrupt:METHOD"):
        inject.pytest_configure(None)
