"""The int8 kernel probe, and that its class predicts what ONNX Runtime computes.

MLAS's uint8 x int8 GEMM on x86 without VNNI adds each pair of adjacent products into a
saturating signed 16-bit lane (``vpmaddubsw``); with VNNI or on ARM the sums are exact.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlbench.gate.store import BaselineStore
from rlbench.core.errors import BaselineError
from rlbench.measure.int8kernel import (CLASSES, EXACT, SATURATING, classify, expected, probe,
                                        run_matmul_integer, uses_int8_kernels)


def emulate(a: np.ndarray, b: np.ndarray, kind: str) -> np.ndarray:
    """uint8 [M, K] x int8 [K, N] -> int32, as each kernel class computes it."""
    prod = a.astype(np.int64)[:, :, None] * b.astype(np.int64)[None, :, :]  # [M, K, N]
    if kind == EXACT:
        return prod.sum(axis=1)
    pairs = prod.reshape(a.shape[0], a.shape[1] // 2, 2, b.shape[1]).sum(axis=2)
    return np.clip(pairs, -32768, 32767).sum(axis=1)


def test_expected_values_and_classify():
    assert expected(EXACT) == 255 * 127 * 64 == 2_072_640
    assert expected(SATURATING) == 32767 * 32 == 1_048_544
    assert [classify(expected(k)) for k in CLASSES] == list(CLASSES)
    with pytest.raises(RuntimeError, match="matches no known kernel class"):
        classify(12345)
    with pytest.raises(ValueError, match="unknown int8 kernel class"):
        expected("fast")


def test_the_probes_class_predicts_onnxruntime_on_random_operands():
    """Large random operands (the regime of a policy's first layer): ORT equals the emulation of the
    probed class exactly, and the two classes really differ on these operands."""
    rng = np.random.default_rng(0)
    a = rng.integers(128, 256, size=(16, 64), dtype=np.uint8)
    b = rng.integers(-128, 128, size=(64, 32), dtype=np.int8)
    got = run_matmul_integer(a, b)
    assert probe() in CLASSES
    assert np.array_equal(got, emulate(a, b, probe()))
    assert not np.array_equal(emulate(a, b, EXACT), emulate(a, b, SATURATING))


def test_uses_int8_kernels():
    assert uses_int8_kernels({"runtime": "onnxruntime", "int8_weight_tensors": 3})
    assert not uses_int8_kernels({"runtime": "onnxruntime", "int8_weight_tensors": 0})  # fp32 / fp16 ONNX
    assert not uses_int8_kernels({"runtime": "torch", "int8_weight_tensors": 0})


def _fig(returns, int8=True, sha="aa"):
    return {"files": {"model.onnx": {"sha256": sha}}, "runtime": "onnxruntime",
            "int8_weight_tensors": 3 if int8 else 0, "seeds": [1, 2], "returns": returns,
            "lengths": [5, 5], "return_mean": float(np.mean(returns)), "return_ci": [0.0, 1.0], "model_bytes": {"m": 9}}


def test_saturating_machines_keep_their_int8_returns_apart(tmp_path: Path):
    exact = BaselineStore(tmp_path, "intel", int8_kernel=EXACT)
    sat = BaselineStore(tmp_path, "amd", int8_kernel=SATURATING)
    exact.update({"A-ptdq": _fig([100.0, 110.0]), "A-fp16": _fig([90.0, 95.0], int8=False)}, {})
    sat.update({"A-ptdq": _fig([10.0, 11.0], sha="bb"), "A-fp16": _fig([91.0, 96.0], int8=False)}, {})
    # the exact kernels' int8 returns stay in figures.json; the saturating ones go to their own file
    assert exact.require("A-ptdq", int8=True)["returns"] == [100.0, 110.0]
    assert sat.require("A-ptdq", int8=True)["returns"] == [10.0, 11.0]
    assert json.loads(sat.kernel_path.read_text())["int8_kernel"] == SATURATING
    # ...with the artefact that earned them (PTSQ calibrates on this CPU's rollouts)
    assert sat.require("A-ptdq", int8=True)["files"]["model.onnx"]["sha256"] == "bb"
    assert exact.require("A-ptdq", int8=True)["files"]["model.onnx"]["sha256"] == "aa"
    assert sat.kernel_path == tmp_path / "int8-kernels" / "u8s8-saturating.json"
    # figures that are not int8 returns stay machine-independent: the later recording wins
    assert exact.require("A-fp16")["returns"] == [91.0, 96.0]
    # a cell first recorded on a saturating machine has no exact-kernel returns, and says so
    sat.update({"B-int8pc": _fig([1.0, 2.0])}, {})
    with pytest.raises(BaselineError, match=r"B-int8pc: .*no returns of exact int8 kernels.*VNNI"):
        exact.require("B-int8pc", int8=True)
    assert exact.figures("B-int8pc")["model_bytes"] == {"m": 9}


def _judged(store, cell: str, returns: list[float]):
    """A grid cell's verdicts on ``returns`` against ``store`` (as the grid judges them)."""
    from rlbench.gate.checks import CellFigures, Metric, judge_cell
    from rlbench.grid.cell import stored_figures

    new = CellFigures.from_dicts(cell, {**_fig(returns), "policy_sha256": store.figures(cell).get("policy_sha256")},
                                 None)
    verdicts = judge_cell(new, stored_figures(store, cell, int8=True), store.tolerances(),
                          scope=frozenset({Metric.RETURN, Metric.POLICY}),
                          record_hint=f"pytest bench --rlbench-record-machine -k {cell}")
    return [(v.metric.value, v.status.value, v.message) for v in verdicts]


def test_a_saturating_machine_without_its_returns_leaves_them_ungated_naming_the_command(tmp_path: Path):
    """Not judged against the exact kernels' returns (another distribution), and not failed: ungated,
    with the command that records them, as latency on a machine without figures."""
    BaselineStore(tmp_path, "intel", int8_kernel=EXACT).update({"A-ptdq": _fig([100.0, 110.0])}, {})
    sat = BaselineStore(tmp_path, "amd", int8_kernel=SATURATING)
    assert "returns" not in sat.require("A-ptdq", int8=True)
    assert sat.require("A-ptdq", int8=True)["model_bytes"] == {"m": 9}
    assert _judged(sat, "A-ptdq", [1.0, 2.0]) == [
        ("return", "ungated", "A-ptdq: return not gated: no stored returns of the kernels it ran on for machine "
                              "amd; record them with: pytest bench --rlbench-record-machine -k A-ptdq")]
    assert sat.require("A-ptdq", int8=False)["returns"] == [100.0, 110.0]


def test_int8_kernels_report_judges_each_cell_with_the_return_check(tmp_path: Path):
    from rlbench.report.kernels import kernel_rows, markdown

    exact = BaselineStore(tmp_path, "intel", int8_kernel=EXACT)
    sat = BaselineStore(tmp_path, "amd", int8_kernel=SATURATING)
    rng = np.random.default_rng(0)
    high, low = list(1000 + rng.normal(0, 20, 30)), list(200 + rng.normal(0, 20, 30))
    cell = "SAC-Hopper-v5-"
    exact.update({cell + "int8pc": _fig(high), cell + "ptdq": _fig(high), cell + "qat": _fig(low)}, {})
    sat.update({cell + "int8pc": _fig(low), cell + "ptdq": _fig(high), cell + "qat": _fig(high),
                "TD3-Ant-v5-ptdq": _fig(low)}, {})  # TD3 Ant: saturating only, nothing to compare
    rows = {r.cell: r for r in kernel_rows(tmp_path)}
    assert sorted(rows) == ["SAC-Hopper-v5-int8pc", "SAC-Hopper-v5-ptdq", "SAC-Hopper-v5-qat"]
    assert (rows["SAC-Hopper-v5-int8pc"].status, rows["SAC-Hopper-v5-int8pc"].identical) == ("regressed", False)
    assert (rows["SAC-Hopper-v5-ptdq"].status, rows["SAC-Hopper-v5-ptdq"].identical) == ("unchanged", True)
    assert rows["SAC-Hopper-v5-qat"].status == "improved"
    md = markdown(list(rows.values()))
    assert "| int8pc | u8s8-saturating | 1 | 0 | 1 | 0 |" in md and "| ptdq | u8s8-saturating | 1 | 1 | 0 | 0 |" in md
    assert f"| SAC-Hopper-v5-int8pc | {np.mean(high):.0f} [0, 1] | **{np.mean(low):.0f}** [0, 1] |" in md
    assert "SAC-Hopper-v5-ptdq" not in md.split("| cell |")[1]  # only cells that moved are listed


def test_saturating_returns_recorded_from_a_retrained_policy_are_not_taken_for_its_own(tmp_path: Path):
    from rlbench.report.kernels import kernel_rows

    cell = "SAC-Hopper-v5-ptdq"
    exact = BaselineStore(tmp_path, "intel", int8_kernel=EXACT)
    sat = BaselineStore(tmp_path, "amd", int8_kernel=SATURATING)
    exact.update({cell: {**_fig([100.0, 110.0]), "policy_sha256": "old"}}, {})
    sat.update({cell: {**_fig([10.0, 11.0]), "policy_sha256": "old"}}, {})
    assert sat.require(cell, int8=True)["returns"] == [10.0, 11.0]
    assert len(kernel_rows(tmp_path)) == 1
    assert _judged(sat, cell, [1.0, 2.0])[0][:2] == ("return", "unchanged")  # its own returns judge it
    exact.update({cell: {**_fig([120.0, 130.0]), "policy_sha256": "new"}}, {})  # the policy retrained
    assert "returns" not in sat.require(cell, int8=True)
    assert [v[:2] for v in _judged(sat, cell, [1.0, 2.0])] == [("return", "ungated")]
    assert kernel_rows(tmp_path) == []  # nor compared with the new policy's exact returns
