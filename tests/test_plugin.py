"""The plugin through pytester: figures reach --benchmark-json with and without xdist, and
baselines are written only when asked, only for the cells that ran."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

FAKE_CELLS = '''
import pytest
from rlbench.grid.record import CellRecord

@pytest.mark.parametrize("cell", ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline", "PPO-Hopper-v5-baseline"])
def test_cell(cell, record_cell, record_outcome, rlbench_session):
    samples = [1e-4, 1.1e-4, 0.9e-4, 1.05e-4]
    from pytest_benchmark.stats import Stats
    st = Stats()
    for s in samples:
        st.update(s)
    stats = dict(st.as_dict(), data=samples, iterations=10)
    result = CellRecord.from_figures(cell, {"returns": [1.0, 2.0], "seeds": [1, 2]},
                                     {"ratios": {"x/y": 1.5}, "ratio_ci": {"x/y": [1.5, 1.5]}}, stats)
    record_cell(result)
    if rlbench_session.update or rlbench_session.store.figures(cell) is None:
        return
    from rlbench.grid.cell import check_cell
    verdicts = check_cell(result, rlbench_session.store, memory=False)
    record_outcome(cell, verdicts)
    assert not [v for v in verdicts if v.failed or (rlbench_session.strict and v.status == "ungated")]
'''


@pytest.fixture
def run(pytester, tmp_path):
    pytester.makepyfile(test_fake=FAKE_CELLS)
    base = tmp_path / "bl"

    def _run(*args):
        return pytester.runpytest_subprocess("-p", "rlbench.plugin.pytest_plugin", "-p", "no:cacheprovider",
                                             f"--rlbench-baselines={base}", *args)
    return _run, base


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_benchmark_json_has_one_entry_per_cell(run, tmp_path, xdist):
    _run, _ = run
    out = tmp_path / "out.json"
    res = _run(*xdist, f"--benchmark-json={out}")
    res.assert_outcomes(passed=3)
    data = json.loads(out.read_text())
    assert sorted(b["param"] for b in data["benchmarks"]) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline", "PPO-Hopper-v5-baseline"]
    b = data["benchmarks"][0]
    assert b["stats"]["median"] == pytest.approx(1.025e-4) and b["stats"]["rounds"] == 4
    assert b["extra_info"]["figures"]["returns"] == [1.0, 2.0]
    assert "machine_info" in data and "version" in data
    session = data["rlbench"]  # what `rlbench floor` sets against the floor
    assert session["cells"] == 3 and session["workers"] == (2 if xdist else 0)
    assert 0 < session["session_wall_seconds"] < 600
    timeline = session["timeline"]  # where each worker's time went, from the reports' start and stop
    assert set(timeline["workers"]) <= ({"gw0", "gw1"} if xdist else {"main"})
    for w in timeline["workers"].values():
        assert timeline["session_start_unix"] < w["first_start"] <= w["last_stop"] <= timeline["session_end_unix"]
        assert w["cells_s"] > 0 and w["other_tests_s"] == 0
    # no runtime can be judged with no stored yardstick: said in the file and in the summary
    assert [v["status"] for v in session["run_verdicts"]] == ["unjudged", "unjudged"]
    assert "runtime yardstick torch-fp32/numpy-ref: 0 cell(s) with a stored figure" in session["run_verdicts"][0]["message"]
    res.stdout.fnmatch_lines(["*run-level latency gates*", "UNJUDGED   runtime yardstick onnx-fp32/numpy-ref: 0 cell(s)*"])


def test_pytest_benchmark_compare_reads_the_file(run, tmp_path):
    import subprocess
    import sys

    _run, _ = run
    out = tmp_path / "out.json"
    _run("-n", "2", f"--benchmark-json={out}").assert_outcomes(passed=3)
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "test_cell[PPO-Ant-v5-baseline]" in proc.stdout


def test_update_writes_only_cells_that_ran(run):
    _run, base = run
    _run("-n", "2", "-k", "PPO-Ant-v5-baseline or PPO-HalfCheetah-v5-baseline").assert_outcomes(passed=2)
    assert not (base / "figures.json").exists()  # nothing written without the flag
    _run("-n", "2", "-k", "PPO-Ant-v5-baseline or PPO-HalfCheetah-v5-baseline", "--rlbench-update-baselines").assert_outcomes(passed=2)
    cells = json.loads((base / "figures.json").read_text())["cells"]
    assert sorted(cells) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"]
    machines = list((base / "machines").glob("*.json"))
    assert len(machines) == 1 and json.loads(machines[0].read_text())["cells"]["PPO-Ant-v5-baseline"]["ratios"] == {"x/y": 1.5}


def test_cells_without_this_machines_figures_are_their_own_outcome_and_fail_when_strict(run, tmp_path, monkeypatch):
    _run, _ = run
    _run("--rlbench-update-baselines").assert_outcomes(passed=3)
    monkeypatch.setenv("RLBENCH_MACHINE_ID", "another-machine")
    _run("-k", "PPO-Ant-v5-baseline", "--rlbench-record-machine").assert_outcomes(passed=1)
    out = tmp_path / "out.json"
    res = _run("-n", "2", f"--benchmark-json={out}")
    assert res.parseoutcomes() == {"passed": 1, "ungated": 2}  # not a plain pass: their latency went unchecked
    data = json.loads(out.read_text())
    assert data["rlbench"]["outcomes"]["ungated"] == ["PPO-HalfCheetah-v5-baseline", "PPO-Hopper-v5-baseline"]
    assert data["rlbench"]["outcomes"]["unchanged"] == ["PPO-Ant-v5-baseline"]
    by_cell = {b["param"]: b["extra_info"]["outcome"] for b in data["benchmarks"]}
    assert by_cell["PPO-HalfCheetah-v5-baseline"]["outcome"] == "ungated" and by_cell["PPO-Ant-v5-baseline"]["outcome"] == "unchanged"
    assert "no latency ratios stored for machine another-machine" in by_cell["PPO-HalfCheetah-v5-baseline"]["notes"][0]
    res.stdout.fnmatch_lines(["*ungated cells*", "2 of 3 cells have no figures for machine another-machine*"])
    strict = _run("--rlbench-strict")
    strict.assert_outcomes(passed=1, failed=2)


def test_record_machine_writes_this_machines_figures_and_leaves_figures_json_alone(run):
    _run, base = run
    _run("-k", "PPO-Ant-v5-baseline", "--rlbench-update-baselines").assert_outcomes(passed=1)
    before = (base / "figures.json").read_bytes()
    _run("-k", "PPO-HalfCheetah-v5-baseline", "--rlbench-record-machine").assert_outcomes(passed=1)
    assert (base / "figures.json").read_bytes() == before  # B's returns were not written
    machines = list((base / "machines").glob("*.json"))
    assert sorted(json.loads(machines[0].read_text())["cells"]) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"]


FAKE_ZOO_CHECKS = '''
import pytest

@pytest.mark.parametrize("env_id", ["Hopper-v5", "Hopper-v5", "Ant-v5"])
def test_zoo(env_id, record_env_steps):
    record_env_steps(env_id, 1000)
'''


def test_steps_of_non_cell_checks_reach_the_benchmark_json_across_xdist(run, pytester, tmp_path):
    _run, _ = run
    pytester.makepyfile(test_zoo_fake=FAKE_ZOO_CHECKS)
    out = tmp_path / "out.json"
    _run("-n", "2", f"--benchmark-json={out}").assert_outcomes(passed=6)  # 3 cells, 3 zoo checks
    assert json.loads(out.read_text())["rlbench"]["other_env_steps"] == {"Ant-v5": 1000, "Hopper-v5": 2000}


FAKE_ENERGY = '''
import pytest

@pytest.mark.parametrize("cell", ["PPO-Ant-v5-baseline", "PPO-Hopper-v5-baseline"])
def test_energy(cell, record_energy):
    record_energy(cell, {"available": True, "reason": None, "joules_per_1000": 2.5, "meter": "fake"})
'''


@pytest.mark.parametrize("energy_file", ["test_z_energy", "test_a_energy"])  # after the cells, then before
def test_a_measured_energy_reaches_its_cells_entry_in_the_benchmark_json(run, pytester, tmp_path, energy_file):
    _run, _ = run
    # files run in name order beside test_fake.py's cells: the controller sees either report first
    pytester.makepyfile(**{energy_file: FAKE_ENERGY})
    out = tmp_path / "out.json"
    _run(f"--benchmark-json={out}").assert_outcomes(passed=5)
    energy = {b["param"]: b["extra_info"]["machine_figures"].get("energy")
              for b in json.loads(out.read_text())["benchmarks"]}
    assert energy["PPO-Ant-v5-baseline"]["joules_per_1000"] == 2.5 and energy["PPO-Hopper-v5-baseline"]["meter"] == "fake"
    assert energy["PPO-HalfCheetah-v5-baseline"] is None


@pytest.mark.parametrize(("args", "message"), [
    (["--rlbench-rounds", "0"], "*--rlbench-rounds 0: expected an integer >= 5*"),
    (["--rlbench-shard", "3/2"], "*--rlbench-shard '3/2': need 1 <= K <= N*"),
])
def test_bad_options_are_usage_errors_naming_the_option(run, args, message):
    _run, _ = run
    res = _run(*args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([message])
    assert "INTERNALERROR" not in res.stdout.str() + res.stderr.str()
