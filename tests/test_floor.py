"""rlbench floor: a run's wall time against the bare work it had to do."""

from __future__ import annotations

import json

import pytest

from rlbench.cli.main import main
from rlbench.measure.envsteps import bare_step_costs
from rlbench.report.floor import cell_floors, floor_summary
from rlbench.core.errors import ResultsError
from tests.data.results_factory import make_results

CELLS = ["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptdq"]


def _doc(wall=100.0, timed=0.5, thr=20_000.0):
    doc = make_results(CELLS, episodes=10)
    for e in doc["benchmarks"]:
        m = e["extra_info"]["machine_figures"]
        m["timed_seconds"] = timed
        m["throughput_batch64_per_s"] = {"variant@64": thr, "numpy-ref@64": 2 * thr}
        m["cell_seconds"] = 9.0
    doc["rlbench"] = {"session_wall_seconds": wall, "workers": 2, "cores": 2, "cells": len(CELLS)}
    return doc


def test_floor_adds_env_steps_inferences_and_timing_then_divides_by_cores(tmp_path, monkeypatch):
    monkeypatch.setattr("rlbench.measure.envsteps.bare_step_costs", lambda env_id: (50e-6, 60e-6))
    p = tmp_path / "out.json"
    p.write_text(json.dumps(_doc()))
    s = floor_summary(p)
    steps_per_cell = 10 * 1000  # 10 episodes of 1000 steps from the factory
    per_cell = steps_per_cell * 50e-6 + steps_per_cell / 20_000.0 + 0.5
    assert s["env_steps"] == 2 * steps_per_cell
    assert s["floor_seconds"] == pytest.approx(2 * per_cell / 2, abs=0.05)
    assert s["wall_over_floor"] == pytest.approx(100.0 / (2 * per_cell / 2), rel=0.01)
    assert s["work_seconds"] == {"env_steps": 1.0, "eval_inference": 1.0, "latency_timing": 1.0,
                                 "other_checks_env_steps": 0.0}
    assert s["sum_cell_wall_seconds"] == 18.0 and s["bare_step_us"] == {"Hopper-v5": 50.0}
    # at the median step cost every step costs 10 us more: 0.2 s of work more, over 2 cores
    assert s["median_step_us"] == {"Hopper-v5": 60.0}
    assert s["floor_seconds_at_median_step"] == pytest.approx(per_cell + 0.1, abs=0.05)
    assert s["wall_over_floor_at_median_step"] == pytest.approx(100.0 / (per_cell + 0.1), rel=0.01)
    assert s["overhead_core_seconds"] == pytest.approx(100.0 * 2 - 3.0)
    assert floor_summary(p, cores=1, wall=12.0)["wall_over_floor"] == pytest.approx(12.0 / 3.0, rel=0.01)


def test_missing_session_time_and_old_cells_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr("rlbench.measure.envsteps.bare_step_costs", lambda env_id: (50e-6, 60e-6))
    doc = _doc()
    del doc["rlbench"]
    p = tmp_path / "nowall.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match="nowall.json: no rlbench.session_wall_seconds; pass --wall"):
        floor_summary(p)
    del doc["benchmarks"][0]["extra_info"]["machine_figures"]["timed_seconds"]
    with pytest.raises(ResultsError, match="cell PPO-Hopper-v5-baseline: no machine_figures.timed_seconds"):
        cell_floors(doc)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["floor", str(bad)]) == 2


def test_bare_step_cost_is_measured_and_plausible():
    fast, typical = bare_step_costs("Hopper-v5", windows=2, window_seconds=0.05, gap_seconds=0.0, block=50)
    assert 1e-6 < fast <= typical < 5e-3


def test_overhead_is_attributed_from_the_recorded_phases(tmp_path, monkeypatch):
    monkeypatch.setattr("rlbench.measure.envsteps.bare_step_costs", lambda env_id: (50e-6, 60e-6))
    doc = _doc()
    for e in doc["benchmarks"]:
        m = e["extra_info"]["machine_figures"]
        # wall: waiting for a core inflates the rollouts; the worker's CPU time does not
        m["phase_seconds"] = {"setup": 0.5, "returns": 6.0, "lock_wait": 0.4, "exclusive": 1.2, "stats": 0.1,
                              "memory": 0.6}
        m["phase_cpu_seconds"] = {"setup": 0.25, "returns": 1.5, "lock_wait": 0.0, "exclusive": 1.2, "stats": 0.05,
                                  "memory": 0.1}
    p = tmp_path / "out.json"
    p.write_text(json.dumps(doc))
    s = floor_summary(p)
    assert s["phase_wall_seconds"]["returns"] == 12.0 and s["phase_cpu_seconds"]["returns"] == 3.0
    o = s["overhead_measured_core_seconds"]
    assert o["idle_cores_while_timing_alone"] == pytest.approx(2.4)  # 2 cores: one idles while one times
    assert o["timing_warmup_and_calibration"] == pytest.approx(2.4 - 1.0)  # minus the timed loops, 0.5 a cell
    assert o["rollouts_beyond_bare_steps"] == pytest.approx(3.0 - 2.0)  # CPU minus steps (0.5) and inference (0.5)
    assert o["setup_load_and_build"] == 0.5 and o["ratio_statistics"] == 0.1 and o["memory_worker_side"] == 0.2
    assert s["timing_policy"] == "alone"  # a file from before the lock had slots, with the old phase name
    doc["rlbench"]["quiet_lock"] = {"slots": 2, "timing": "cores"}
    for e in doc["benchmarks"]:
        for key in ("phase_seconds", "phase_cpu_seconds"):
            ph = e["extra_info"]["machine_figures"][key]
            ph["timing"] = ph.pop("exclusive")
    p.write_text(json.dumps(doc))
    o = floor_summary(p)["overhead_measured_core_seconds"]
    assert o["idle_cores_while_timing_alone"] == 0.0  # timing held one slot; the other core worked
    assert o["timing_warmup_and_calibration"] == pytest.approx(2.4 - 1.0)
    del doc["benchmarks"][1]["extra_info"]["machine_figures"]["phase_cpu_seconds"]
    p.write_text(json.dumps(doc))
    assert "overhead_measured_core_seconds" not in floor_summary(p)  # not guessed for cells without phases


def test_steps_of_checks_that_are_not_cells_count_in_the_floor(tmp_path, monkeypatch):
    monkeypatch.setattr("rlbench.measure.envsteps.bare_step_costs", lambda env_id: (50e-6, 60e-6))
    doc = _doc()
    doc["rlbench"]["other_env_steps"] = {"Hopper-v5": 20_000, "Ant-v5": 10_000}  # the zoo's return checks
    p = tmp_path / "out.json"
    p.write_text(json.dumps(doc))
    s = floor_summary(p)
    assert s["work_seconds"]["other_checks_env_steps"] == pytest.approx(1.5)
    assert s["env_steps"] == 2 * 10 * 1000 + 30_000
    assert s["floor_seconds"] == pytest.approx((3.0 + 1.5) / 2, abs=0.05)


def test_each_workers_time_is_split_into_start_up_tests_gaps_and_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr("rlbench.measure.envsteps.bare_step_costs", lambda env_id: (50e-6, 60e-6))
    doc = _doc(wall=100.0)
    doc["rlbench"]["timeline"] = {"session_start_unix": 1000.0, "session_end_unix": 1100.0, "workers": {
        # 6 s to start, 80 s in cells and 4 in other tests over 86 s of tests, done 8 s early
        "gw0": {"first_start": 1006.0, "last_stop": 1092.0, "cells_s": 80.0, "other_tests_s": 4.0},
        "gw1": {"first_start": 1005.0, "last_stop": 1100.0, "cells_s": 95.0, "other_tests_s": 0.0}}}
    p = tmp_path / "out.json"
    p.write_text(json.dumps(doc))
    s = floor_summary(p)
    assert s["timeline_workers"] == 2
    assert s["worker_seconds"] == {"start_up_and_collection": 11.0, "cell_tests": 175.0, "other_tests": 4.0,
                                   "between_tests": 2.0, "after_last_test": 8.0}
    assert sum(s["worker_seconds"].values()) == pytest.approx(2 * 100.0)
    doc["rlbench"].pop("timeline")  # files written before the timeline
    p.write_text(json.dumps(doc))
    assert "worker_seconds" not in floor_summary(p)
