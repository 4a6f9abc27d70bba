"""rlbench.grid.cell pieces that run without a shipped policy."""

from __future__ import annotations

import re

import pytest

from rlbench.grid.cell import _Phases, choose_episodes


def test_phases_split_wall_and_cpu_time_between_marks():
    wall, cpu = iter([0.0, 1.0, 4.0, 4.5]), iter([0.0, 0.5, 1.0, 1.5])
    p = _Phases()
    p._clock, p._cpu = lambda: next(wall), lambda: next(cpu)
    p._t, p._c = p._clock(), p._cpu()
    p.mark("setup")  # 1 s wall, 0.5 s CPU
    p.mark("returns")  # 3 s wall, of which 0.5 s on the CPU: the rest waited for a core
    p.mark("setup")  # a phase marked twice adds up
    assert p.record() == ({"setup": 1.5, "returns": 3.0}, {"setup": 1.0, "returns": 0.5})


@pytest.mark.parametrize(("returns", "expected"), [
    ([100.0, 100.0, 100.0], 10),  # no spread: the minimum
    ([0.0, 0.0], 50),  # a zero mean cannot be resolved relative to itself: the maximum
    ([1000.0, 1100.0, 900.0, 1000.0], 11),  # sd 81.6: (1.96 * 81.6 / (0.05 * 1000))^2 = 10.2
    ([0.0, 2000.0], 50),  # sd 1414 on a mean of 1000: thousands needed, clamped
])
def test_episode_count_resolves_a_ten_percent_drop_from_the_spread(returns, expected):
    assert choose_episodes(returns) == expected


def test_a_phase_rlbench_floor_does_not_know_is_refused():
    with pytest.raises(ValueError, match="unknown cell phase 'warmup'"):
        _Phases().mark("warmup")


def test_a_pooled_confirmation_keeps_both_runs_durations_and_pools_the_ratio_samples():
    from rlbench.grid.cell import CellResult, pool_latency

    def run(cell_s, timed, returns_s, samples):
        machine = {"cell_seconds": cell_s, "timed_seconds": timed, "ratios": {"variant/fp32": 0.0},
                   "phase_seconds": {"setup": 0.5, "returns": returns_s, "timing": 1.0},
                   "phase_cpu_seconds": {"setup": 0.4, "returns": returns_s, "timing": 1.0}}
        return CellResult("PPO-Hopper-v5-ptdq", {}, machine, {}, extra={"ratio_samples": {"variant/fp32": samples}})

    first, confirmation = run(12.0, 0.8, 10.0, [1.0, 1.2]), run(1.5, 0.7, 0.0, [1.1, 1.3, 1.4])
    pooled = pool_latency(first, confirmation)
    # the rollouts of the first run are part of the cell's cost (shards and the floor read it)
    assert pooled.machine["cell_seconds"] == 13.5 and pooled.machine["timed_seconds"] == 1.5
    assert pooled.machine["phase_seconds"] == {"setup": 1.0, "returns": 10.0, "timing": 2.0}
    assert pooled.machine["phase_cpu_seconds"]["setup"] == 0.8
    assert pooled.extra["ratio_samples"]["variant/fp32"] == [1.0, 1.2, 1.1, 1.3, 1.4]
    assert pooled.machine["ratios"]["variant/fp32"] == 1.2 and pooled.machine["confirmed"] is True


def _stored_row(tmp_path, cell, figures, ratios):
    import json

    from rlbench.gate.store import BaselineStore

    (tmp_path / "machines").mkdir(exist_ok=True)
    (tmp_path / "figures.json").write_text(json.dumps({"schema": 1, "cells": {cell: figures}}))
    (tmp_path / "machines" / "m.json").write_text(json.dumps({"schema": 1, "cells": {cell: {
        "ratios": ratios, "ratio_ci": {k: [v, v] for k, v in ratios.items()}}}}))
    return BaselineStore(tmp_path, "m")


def test_a_cell_recorded_from_another_policy_says_so_instead_of_regressing(tmp_path):
    from rlbench.grid.cell import CellResult, check_cell

    figs = {"returns": [100.0, 101.0, 99.0], "seeds": [1, 2, 3], "model_bytes": {"model.onnx": 10}, "params": 5,
            "policy_sha256": "a" * 64, "method": "ptdq"}
    store = _stored_row(tmp_path, "PPO-Hopper-v5-ptdq", figs, {"variant/fp32": 0.5})
    machine = {"ratios": {"variant/fp32": 0.5}, "ratio_ci": {"variant/fp32": [0.49, 0.51]}}
    same = CellResult("PPO-Hopper-v5-ptdq", dict(figs), machine, {})
    assert not any(v.failed for v in check_cell(same, store))
    retrained = CellResult("PPO-Hopper-v5-ptdq", {**figs, "policy_sha256": "b" * 64},
                           {"ratios": {"variant/fp32": 9.0}, "ratio_ci": {"variant/fp32": [8.9, 9.1]}}, {})
    verdicts = check_cell(retrained, store)  # one verdict: the 18x ratio is another policy's, not a regression
    assert [(v.metric, v.failed) for v in verdicts] == [("policy", True)]
    assert re.match(r"PPO-Hopper-v5-ptdq: stored figures were recorded from policy sha256 aaaaaaaaaaaa, this one is "
                    r"bbbbbbbbbbbb .*--rlbench-update-baselines -k PPO-Hopper-v5$", verdicts[0].message)


def test_a_baseline_cell_checks_no_ratio_of_its_timing_with_itself(tmp_path):
    from rlbench.grid.cell import CellResult, check_cell

    figs = {"returns": [100.0, 101.0, 99.0], "seeds": [1, 2, 3], "model_bytes": {"policy.onnx": 10}, "params": 5,
            "method": "baseline"}
    store = _stored_row(tmp_path, "PPO-Hopper-v5-baseline", figs, {"torch-fp32/numpy-ref": 4.0})
    # 9.0 against 4.0 is beyond even the wide per-cell bar of a ratio across runtimes (+100%)
    machine = {"ratios": {"torch-fp32/numpy-ref": 9.0}, "ratio_ci": {"torch-fp32/numpy-ref": [8.9, 9.1]}}
    verdicts = check_cell(CellResult("PPO-Hopper-v5-baseline", figs, machine, {}), store)
    latency = [v for v in verdicts if v.metric == "latency"]
    assert len(latency) == 1 and latency[0].failed and "torch-fp32/numpy-ref" in latency[0].message


def test_a_machine_recording_checks_the_machine_independent_figures_first(tmp_path):
    from rlbench.gate.store import BaselineStore
    from rlbench.grid.cell import CellResult, check_recording

    good = [100.0 + (i % 5) for i in range(20)]
    figs = {"returns": good, "seeds": list(range(20)), "model_bytes": {"model.onnx": 10}, "params": 5,
            "method": "ptdq", "runtime": "onnxruntime", "int8_weight_tensors": 3}
    _stored_row(tmp_path, "PPO-Hopper-v5-ptdq", figs, {"variant/fp32": 0.5})
    broken = CellResult("PPO-Hopper-v5-ptdq", {**figs, "returns": [2.0] * 20}, {"ratios": {}}, {})
    exact = BaselineStore(tmp_path, "m")
    assert [v.metric for v in check_recording(broken, exact) if v.failed] == ["return"]
    # kernels that saturate: this recording writes the cell's int8 returns, so only bytes, params and policy
    saturating = BaselineStore(tmp_path, "m", int8_kernel="u8s8-saturating")
    assert not any(v.failed for v in check_recording(broken, saturating))
    rebuilt = CellResult("PPO-Hopper-v5-ptdq", {**figs, "model_bytes": {"model.onnx": 11}}, {"ratios": {}}, {})
    assert [v.metric for v in check_recording(rebuilt, saturating) if v.failed] == ["model bytes"]
