from __future__ import annotations

import json

import numpy as np

import pytest

from rlbench.gate.store import BaselineStore
from rlbench.gate.tolerances import Tolerances
from rlbench.gate.checks import check_exact, check_ratio, check_return
from rlbench.core.errors import BaselineError


def test_update_writes_only_given_cells_atomically(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    store.update({"A": {"returns": [1.0]}, "B": {"returns": [2.0]}}, {"A": {"ratios": {"x": 1.0}}})
    store.update({"B": {"returns": [3.0]}}, {})
    assert store.figures("A") == {"returns": [1.0]}
    assert store.figures("B") == {"returns": [3.0]}
    assert store.machine_figures("A") == {"ratios": {"x": 1.0}}
    assert json.loads(store.machine_path.read_text())["machine_id"] == "m1"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_parse_cache_reuses_a_parse_sees_every_write_and_hands_out_copies(tmp_path):
    from rlbench.gate import store as baselines

    store = BaselineStore(tmp_path, "m1")
    store.update({"A": {"returns": [1.0]}}, {"A": {"ratios": {"x": 1.0}}})
    first = baselines.read_record_file(store.figures_path)
    assert baselines.read_record_file(store.figures_path) is first  # one parse while the file is unchanged
    got = store.figures("A")
    got["returns"].append(99.0)  # a caller's edit never reaches the cache
    assert store.figures("A") == {"returns": [1.0]}
    store.update({"A": {"returns": [2.0]}}, {})  # an update replaces the file: the next read sees it
    assert store.figures("A") == {"returns": [2.0]}
    text = store.figures_path.read_text().replace("2.0", "3.25")  # a hand edit in place (another size)
    store.figures_path.write_text(text)
    assert store.figures("A") == {"returns": [3.25]}
    store.figures_path.write_text("{ broken")
    with pytest.raises(BaselineError, match="figures.json is corrupt"):
        store.figures("A")


def test_missing_cell_names_update_command(tmp_path):
    with pytest.raises(BaselineError, match=r"no stored baseline .*--rlbench-update-baselines -k X-baseline"):
        BaselineStore(tmp_path, "m1").require("X-baseline")


@pytest.mark.parametrize("content", ["{ broken", "[]", '{"schema": 1, "cells": []}', '{"schema": 99, "cells": {}}'])
def test_corrupt_file_is_named(tmp_path, content):
    (tmp_path / "figures.json").write_text(content)
    with pytest.raises(BaselineError) as exc:
        BaselineStore(tmp_path, "m1").figures("A")
    assert str(tmp_path / "figures.json") in str(exc.value)


def test_non_finite_figures_are_never_written(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    with pytest.raises(BaselineError, match="non-finite"):
        store.update({"A": {"returns": [float("nan")]}}, {})
    assert not store.figures_path.exists()
    # a bad machine figure stops the update before figures.json is replaced, not after
    with pytest.raises(BaselineError, match=r"non-finite figure inf at /A/ratios/x into .*m1.json"):
        store.update({"A": {"returns": [1.0]}}, {"A": {"ratios": {"x": float("inf")}}})
    assert not store.figures_path.exists()


def test_tolerances_parse_and_reject_unknown_keys(tmp_path):
    (tmp_path / "tolerances.toml").write_text("[returns]\nrel_drop = 0.2\n")
    assert Tolerances.load(tmp_path / "tolerances.toml").returns.rel_drop == 0.2
    (tmp_path / "tolerances.toml").write_text("[returns]\nrel_dorp = 0.2\n")
    with pytest.raises(BaselineError, match="rel_dorp"):
        Tolerances.load(tmp_path / "tolerances.toml")


def test_repository_tolerances_file_parses():
    from rlbench.core.paths import REPO_ROOT

    tol = Tolerances.load(REPO_ROOT / "baselines" / "tolerances.toml")
    assert 0 < tol.returns.rel_drop < 1 and 0 < tol.returns.alpha < 0.1


def test_return_check_detects_a_resolved_drop_only():
    tol = Tolerances().returns
    stored = [1000.0 + 10 * (i % 7) for i in range(30)]
    assert check_return("c", stored, stored, tol).status == "unchanged"
    dropped = [x * 0.8 for x in stored]
    v = check_return("c", dropped, stored, tol)
    assert v.failed and "c: return" in v.message and "tolerance" in v.message and "\n" not in v.message
    # a 20% drop on three noisy episodes is not resolvable: never a finding
    noisy_old, noisy_new = [100.0, 1000.0, 2000.0], [80.0, 800.0, 1600.0]
    assert not check_return("c", noisy_new, noisy_old, tol).failed
    assert check_return("c", [x * 1.3 for x in stored], stored, tol).status == "improved"


def test_ratio_and_exact_checks():
    tol = Tolerances().latency
    assert check_ratio("c", "a/b", 1.5, (1.45, 1.55), 1.0, tol).failed
    assert not check_ratio("c", "a/b", 1.10, (1.05, 1.2), 1.0, tol).failed  # CI reaches under the limit
    assert check_ratio("c", "a/b", 0.7, (0.68, 0.72), 1.0, tol).status == "improved"
    assert check_exact("c", "bytes", 10, 11).failed and not check_exact("c", "bytes", 10, 10).failed


def _yardstick_store(tmp_path, n=10):
    from rlbench.gate.store import BaselineStore

    store = BaselineStore(tmp_path, "m1")
    rng = np.random.default_rng(0)
    cells = [f"PPO-Hopper-v5-l1-{0.05 * (i + 1):.2f}" for i in range(n)]
    machine = {c: {"ratios": {"torch-fp32/numpy-ref": 3.0 * rng.lognormal(0, 0.05),
                              "onnx-fp32/numpy-ref": 0.65 * rng.lognormal(0, 0.05)}} for c in cells}
    store.update({c: {"returns": [1.0]} for c in cells}, machine)
    return store, cells


def test_run_level_yardstick_gate_catches_a_runtime_wide_15_percent_slowdown(tmp_path):
    from rlbench.grid.cell import check_runtime_yardsticks

    store, cells = _yardstick_store(tmp_path)
    rng = np.random.default_rng(1)

    def run(onnx_factor):
        return {c: {"ratios": {"torch-fp32/numpy-ref": 3.0 * rng.lognormal(0, 0.05),
                               "onnx-fp32/numpy-ref": 0.65 * onnx_factor * rng.lognormal(0, 0.05)}} for c in cells}

    clean = {v.message.split()[2]: v.status for v in check_runtime_yardsticks(run(1.0), store)}
    assert clean == {"torch-fp32/numpy-ref": "unchanged", "onnx-fp32/numpy-ref": "unchanged"}
    slow = check_runtime_yardsticks(run(1.15), store)
    assert [v.status for v in slow] == ["unchanged", "regressed"]
    assert slow[1].failed and "runtime yardstick onnx-fp32/numpy-ref over 10 cells" in slow[1].message
    assert "tolerance +8% (limit 1.080)" in slow[1].message
    # too few cells for a run-level verdict: each runtime is "unjudged", said so, and not a failure
    few = check_runtime_yardsticks(dict(list(run(1.15).items())[:5]), store)
    assert [v.status for v in few] == ["unjudged", "unjudged"] and not any(v.failed for v in few)
    assert "5 cell(s) with a stored figure, fewer than the 6" in few[1].message


def test_a_ratio_across_runtimes_gets_the_wide_per_cell_bar_and_one_within_a_runtime_the_tight_one():
    from rlbench.gate.tolerances import LatencyTolerance

    tol = LatencyTolerance(ratio_rel=0.25, cross_rel=1.0)
    # +40%, resolved: a regression within a runtime, the VM's drift across runtimes
    assert check_ratio("c", "variant/fp32", 1.4, (1.35, 1.45), 1.0, tol).failed
    drift = check_ratio("c", "torch-fp32/numpy-ref", 1.4, (1.35, 1.45), 1.0, tol)
    assert drift.status == "unchanged" and "tolerance +100% (limit 2.000)" in drift.message
    assert check_ratio("c", "onnx-fp32/numpy-ref", 2.2, (2.1, 2.3), 1.0, tol).failed
    assert check_ratio("c", "variant/numpy-ref", 0.45, (0.44, 0.46), 1.0, tol).status == "improved"


@pytest.mark.parametrize(("text", "message"), [
    ("returns = 0.1\n", r"returns must be a table"),
    ('[returns]\nrel_drop = "ten percent"\n', r"\[returns\] rel_drop must be a number in \[0, 1\] \(default 0.1\), got 'ten"),
    ("[latency]\nratio_rel = -1.0\n", r"\[latency\] ratio_rel must be a number in \[0, inf\) .*got -1.0"),
    ("[latency]\nruntime_min_cells = 2.5\n", r"\[latency\] runtime_min_cells must be an integer in \[1, inf\)"),
    ("[latency]\nci_must_exclude = 1\n", r"\[latency\] ci_must_exclude must be true or false"),
    ("[lateny]\nratio_rel = 0.2\n", r"unknown section\(s\) \['lateny'\]"),
])
def test_a_bad_tolerance_names_the_file_and_the_key(tmp_path, text, message):
    (tmp_path / "tolerances.toml").write_text(text)
    with pytest.raises(BaselineError, match=message) as exc:
        Tolerances.load(tmp_path / "tolerances.toml")
    assert str(tmp_path / "tolerances.toml") in str(exc.value)
