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
    from rlbench.grid.record import CellRecord

    def run(cell_s, timed, returns_s, samples):
        machine = {"cell_seconds": cell_s, "timed_seconds": timed, "ratios": {"variant/fp32": 0.0},
                   "phase_seconds": {"setup": 0.5, "returns": returns_s, "timing": 1.0},
                   "phase_cpu_seconds": {"setup": 0.4, "returns": returns_s, "timing": 1.0}}
        return CellResult(CellRecord.from_figures("PPO-Hopper-v5-ptdq", {}, machine), {"variant/fp32": samples})

    first, confirmation = run(12.0, 0.8, 10.0, [1.0, 1.2]), run(1.5, 0.7, 0.0, [1.1, 1.3, 1.4])
    pooled = pool_latency(first, confirmation)
    machine = pooled.record.machine_json()
    # the rollouts of the first run are part of the cell's cost (shards and the floor read it)
    assert machine["cell_seconds"] == 13.5 and machine["timed_seconds"] == 1.5
    assert machine["phase_seconds"] == {"setup": 1.0, "returns": 10.0, "timing": 2.0}
    assert machine["phase_cpu_seconds"]["setup"] == 0.8
    assert pooled.ratio_samples["variant/fp32"] == (1.0, 1.2, 1.1, 1.3, 1.4)
    assert machine["ratios"]["variant/fp32"] == 1.2 and machine["confirmed"] is True


def _stored_row(tmp_path, cell, figures, ratios):
    import json

    from rlbench.gate.store import BaselineStore

    (tmp_path / "machines").mkdir(exist_ok=True)
    (tmp_path / "figures.json").write_text(json.dumps({"schema": 1, "cells": {cell: figures}}))
    (tmp_path / "machines" / "m.json").write_text(json.dumps({"schema": 1, "cells": {cell: {
        "ratios": ratios, "ratio_ci": {k: [v, v] for k, v in ratios.items()}}}}))
    return BaselineStore(tmp_path, "m")


def test_a_cell_recorded_from_another_policy_says_so_instead_of_regressing(tmp_path):
    from rlbench.grid.cell import check_cell
    from rlbench.grid.record import CellRecord

    figs = {"returns": [100.0, 101.0, 99.0], "seeds": [1, 2, 3], "model_bytes": {"model.onnx": 10}, "params": 5,
            "policy_sha256": "a" * 64, "method": "ptdq"}
    store = _stored_row(tmp_path, "PPO-Hopper-v5-ptdq", figs, {"variant/fp32": 0.5})
    machine = {"ratios": {"variant/fp32": 0.5}, "ratio_ci": {"variant/fp32": [0.49, 0.51]}}
    same = CellRecord.from_figures("PPO-Hopper-v5-ptdq", dict(figs), machine)
    assert not any(v.failed for v in check_cell(same, store))
    retrained = CellRecord.from_figures("PPO-Hopper-v5-ptdq", {**figs, "policy_sha256": "b" * 64},
                           {"ratios": {"variant/fp32": 9.0}, "ratio_ci": {"variant/fp32": [8.9, 9.1]}})
    verdicts = check_cell(retrained, store)  # one verdict: the 18x ratio is another policy's, not a regression
    assert [(v.metric, v.failed) for v in verdicts] == [("policy", True)]
    assert re.match(r"PPO-Hopper-v5-ptdq: stored figures were recorded from policy sha256 aaaaaaaaaaaa, this one is "
                    r"bbbbbbbbbbbb .*--rlbench-update-baselines -k PPO-Hopper-v5$", verdicts[0].message)


def test_a_baseline_cell_checks_no_ratio_of_its_timing_with_itself(tmp_path):
    from rlbench.grid.cell import check_cell
    from rlbench.grid.record import CellRecord

    figs = {"returns": [100.0, 101.0, 99.0], "seeds": [1, 2, 3], "model_bytes": {"policy.onnx": 10}, "params": 5,
            "method": "baseline"}
    store = _stored_row(tmp_path, "PPO-Hopper-v5-baseline", figs, {"torch-fp32/numpy-ref": 4.0})
    # 9.0 against 4.0 is beyond even the wide per-cell bar of a ratio across runtimes (+100%)
    machine = {"ratios": {"torch-fp32/numpy-ref": 9.0}, "ratio_ci": {"torch-fp32/numpy-ref": [8.9, 9.1]}}
    verdicts = check_cell(CellRecord.from_figures("PPO-Hopper-v5-baseline", figs, machine), store)
    latency = [v for v in verdicts if v.metric == "latency"]
    assert len(latency) == 1 and latency[0].failed and "torch-fp32/numpy-ref" in latency[0].message


def test_a_machine_recording_checks_the_machine_independent_figures_first(tmp_path):
    from rlbench.gate.store import BaselineStore
    from rlbench.grid.cell import check_recording
    from rlbench.grid.record import CellRecord

    good = [100.0 + (i % 5) for i in range(20)]
    figs = {"returns": good, "seeds": list(range(20)), "model_bytes": {"model.onnx": 10}, "params": 5,
            "method": "ptdq", "runtime": "onnxruntime", "int8_weight_tensors": 3}
    _stored_row(tmp_path, "PPO-Hopper-v5-ptdq", figs, {"variant/fp32": 0.5})
    broken = CellRecord.from_figures("PPO-Hopper-v5-ptdq", {**figs, "returns": [2.0] * 20}, {"ratios": {}})
    exact = BaselineStore(tmp_path, "m")
    assert [v.metric for v in check_recording(broken, exact) if v.failed] == ["return"]
    # kernels that saturate: this recording writes the cell's int8 returns, so only bytes, params and policy
    saturating = BaselineStore(tmp_path, "m", int8_kernel="u8s8-saturating")
    assert not any(v.failed for v in check_recording(broken, saturating))
    rebuilt = CellRecord.from_figures("PPO-Hopper-v5-ptdq", {**figs, "model_bytes": {"model.onnx": 11}}, {"ratios": {}})
    assert [v.metric for v in check_recording(rebuilt, saturating) if v.failed] == ["model bytes"]


class _Timing(str):
    """A stand-in result: a name that is its own record."""

    @property
    def record(self):
        return self


class _FakeGrid:
    """``run_cell``, ``pool_latency``, ``check_cell`` and ``check_recording`` stand-ins that log their calls."""

    def __init__(self, monkeypatch, verdicts, recording=()):
        from rlbench.grid import cell as cell_mod

        self.calls, self.recorded, self._verdicts, self._recording = [], [], list(verdicts), list(recording)
        monkeypatch.setattr(cell_mod, "run_cell", self.run_cell)
        monkeypatch.setattr(cell_mod, "pool_latency", self.pool_latency)
        monkeypatch.setattr(cell_mod, "check_cell", self.check_cell)
        monkeypatch.setattr(cell_mod, "check_recording", self.check_recording)

    def run_cell(self, cell, store, rounds, memory, reuse=None):
        self.calls.append(("run", rounds, memory, reuse))
        return _Timing(f"timing{len([c for c in self.calls if c[0] == 'run'])}")

    def pool_latency(self, first, second):
        self.calls.append(("pool", first, second))
        return _Timing(f"{first}+{second}")

    def check_cell(self, result, store, gate_latency=True, memory=True):
        self.calls.append(("check", result, gate_latency, memory))
        return self._verdicts.pop(0)

    def check_recording(self, result, store):
        self.calls.append(("check_recording", result))
        return self._recording


def _verdict(metric, status, failed=False, message="m"):
    from types import SimpleNamespace

    return SimpleNamespace(metric=metric, status=status, failed=failed, message=message)


def test_a_regressed_or_unsettled_latency_is_timed_again_and_judged_over_both_timings(monkeypatch):
    from rlbench.gate.checks import Metric, Status
    from rlbench.grid.cell import CellOptions, measure_and_judge

    first = [_verdict(Metric.LATENCY, Status.UNSETTLED)]
    second = [_verdict(Metric.LATENCY, Status.REGRESSED, failed=True, message="slower"),
              _verdict(Metric.MEMORY, Status.UNGATED, message="no RSS stored")]
    grid = _FakeGrid(monkeypatch, [first, second])
    run = measure_and_judge("cell", None, CellOptions(rounds=7, memory=False, strict=True), record=grid.recorded.append)
    assert grid.calls == [("run", 7, False, None), ("check", "timing1", True, False), ("run", 7, False, "timing1"),
                          ("pool", "timing1", "timing2"), ("check", "timing1+timing2", True, False)]
    assert grid.recorded == ["timing1", "timing1+timing2"]  # the pooled result replaces the first
    assert run.judged and run.verdicts == second and run.result == "timing1+timing2"
    assert run.failures == ["slower", "no RSS stored (--rlbench-strict)"]


def test_a_settled_latency_verdict_is_not_timed_again(monkeypatch):
    from rlbench.gate.checks import Metric, Status
    from rlbench.grid.cell import CellOptions, measure_and_judge

    grid = _FakeGrid(monkeypatch, [[_verdict(Metric.LATENCY, Status.UNCHANGED), _verdict(Metric.RETURN, Status.REGRESSED)]])
    run = measure_and_judge("cell", None, CellOptions(gate_latency=False), record=grid.recorded.append)
    assert [c[0] for c in grid.calls] == ["run", "check"] and grid.calls[1][2] is False
    assert grid.recorded == ["timing1"] and run.failures == [] and run.judged


@pytest.mark.parametrize("mode", ["update", "record-machine"])
def test_a_recording_is_timed_twice_and_pooled_and_judged_by_no_gate(monkeypatch, mode):
    from rlbench.grid.cell import CellOptions, Mode, measure_and_judge

    grid = _FakeGrid(monkeypatch, [])
    run = measure_and_judge("cell", None, CellOptions(mode=Mode(mode)), record=grid.recorded.append)
    checks = [("check_recording", "timing1")] if mode == "record-machine" else []
    assert grid.calls == [("run", 40, True, None), *checks, ("run", 40, True, "timing1"), ("pool", "timing1", "timing2")]
    assert grid.recorded == ["timing1+timing2"] and not run.judged and run.verdicts == [] and run.failures == []


def test_a_machine_recording_that_disagrees_records_nothing_and_says_so(monkeypatch):
    from rlbench.grid.cell import CellOptions, Mode, measure_and_judge

    grid = _FakeGrid(monkeypatch, [], recording=[_verdict("return", "regressed", failed=True, message="returns moved"),
                                                 _verdict("bytes", "unchanged")])
    run = measure_and_judge("cell", None, CellOptions(mode=Mode.RECORD_MACHINE), record=grid.recorded.append)
    assert [c[0] for c in grid.calls] == ["run", "check_recording"] and grid.recorded == []
    assert run.failures == ["returns moved", "(nothing recorded for this cell)"] and not run.judged
