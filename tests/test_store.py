"""An update changes its stored files as one transaction; a broken stored file, tolerance or
policy is one line naming the file and a repair that works (each repair is carried out here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlbench.grid import findings

from rlbench.gate import idle

from rlbench.core import io
from rlbench.gate.store import BaselineStore, Recording, recover, save_unsaved
from rlbench.gate.tolerances import Tolerances
from rlbench.cli.main import main
from rlbench.core.errors import BaselineError
from tests._repair import command, commit, git_repo

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent


def _idle_rec(*returns):
    return SimpleNamespace(returns=returns, lengths=(10,) * len(returns), seeds=tuple(range(len(returns))),
                           mean=sum(returns) / len(returns), ci_low=min(returns), ci_high=max(returns))


def _stored(root: Path) -> dict:
    """Every stored figures file under ``root``, parsed, by path."""
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}


# -- which policy a machine's figures are of ---------------------------------------------------------

def test_a_machines_figures_of_a_policy_since_retrained_read_as_unrecorded(tmp_path):
    """Latency and RSS another machine recorded from the policy before a retraining are not the new
    policy's: once ``figures.json`` holds the new policy's figures, that machine's cells read as
    unrecorded (their latency and RSS go ungated, naming the recording command) until recorded again."""
    from rlbench.grid.cell import stored_figures

    mine, other = BaselineStore(tmp_path, "m1"), BaselineStore(tmp_path, "m2")
    other.update({"A-baseline": {"returns": [1.0], "policy_sha256": "old"}}, {"A-baseline": {"ratios": {"x": 2.0}}})
    assert other.machine_cells()["A-baseline"] == {"ratios": {"x": 2.0}, "policy_sha256": "old"}
    assert stored_figures(other, "A-baseline").ratios == {"x": 2.0}
    mine.update({"A-baseline": {"returns": [2.0], "policy_sha256": "new"}}, {"A-baseline": {"ratios": {"x": 3.0}}})
    assert mine.machine_cells()["A-baseline"]["ratios"] == {"x": 3.0}
    assert "A-baseline" not in other.machine_cells()
    assert stored_figures(other, "A-baseline").ratios is None  # judged as a machine without figures
    other.update({"A-baseline": {"returns": [2.0], "policy_sha256": "new"}}, {"A-baseline": {"ratios": {"x": 2.5}}},
                 machine_only=True)
    assert other.machine_cells()["A-baseline"]["ratios"] == {"x": 2.5}


def test_drop_stale_removes_only_the_cells_of_a_policy_since_retrained_from_every_machine_and_kernel_class(tmp_path):
    other = BaselineStore(tmp_path, "m2", int8_kernel="saturating")
    int8 = {"runtime": "onnxruntime", "int8_weight_tensors": 2}
    other.update({"A-ptdq": {**int8, "returns": [1.0], "policy_sha256": "old"},
                  "B-ptdq": {**int8, "returns": [1.0], "policy_sha256": "b"}},
                 {"A-ptdq": {"ratios": {"x": 2.0}}, "B-ptdq": {"ratios": {"x": 2.0}}})
    assert other.drop_stale() == {}  # nothing retrained: nothing written
    mine = BaselineStore(tmp_path, "m1")
    mine.update({"A-ptdq": {**int8, "returns": [2.0], "policy_sha256": "new"}},
                {"A-ptdq": {"ratios": {"x": 3.0}}})
    dropped = mine.drop_stale()
    assert dropped == {other.kernel_path: ["A-ptdq"], other.machine_path: ["A-ptdq"]}
    assert set(json.loads(other.machine_path.read_text())["cells"]) == {"B-ptdq"}
    assert set(json.loads(other.kernel_path.read_text())["cells"]) == {"B-ptdq"}
    assert mine.machine_cells()["A-ptdq"]["ratios"] == {"x": 3.0}  # the new policy's own figures stay
    assert mine.drop_stale() == {}

def test_machine_figures_stored_without_a_policy_sha256_are_taken_as_the_stored_policys(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    store.update({"A-baseline": {"returns": [1.0], "policy_sha256": "p"}}, {})
    store.machine_path.parent.mkdir(parents=True, exist_ok=True)
    io.atomic_write_json(store.machine_path, {"schema": 1, "machine_id": "m1", "cells": {"A-baseline": {"ratios": {"x": 2.0}}}})
    assert store.machine_cells() == {"A-baseline": {"ratios": {"x": 2.0}}}


# -- the transaction --------------------------------------------------------------------------------

KILL_AFTER_FIRST_RENAME = '''
import os, sys
from pathlib import Path
from rlbench.core import io
from rlbench.gate.store import BaselineStore

real, calls = os.replace, []
def replace(src, dst):  # the commit's renames come from the staging directory
    real(src, dst)
    if "/.staging-" in str(src) and "/.staging-" not in str(dst):
        calls.append(dst)
        if len(calls) == 1:
            os._exit(9)  # killed: no cleanup, no finally
io.os.replace = replace
BaselineStore(Path(sys.argv[1]), "m1").update({"A-baseline": {"returns": [2.0]}}, {"A-baseline": {"ratios": {"x": 2.0}}})
'''


def test_an_update_killed_between_its_renames_is_completed_at_the_next_start_and_says_so(tmp_path):
    root = tmp_path / "bl"
    store = BaselineStore(root, "m1")
    store.update({"A-baseline": {"returns": [1.0]}}, {"A-baseline": {"ratios": {"x": 1.0}}})
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RENAME, str(root)], cwd=REPO, check=False)
    assert proc.returncode == 9
    # half updated, as a killed update without a journal would leave it for good
    assert store.figures("A-baseline") == {"returns": [2.0]} and store.machine_figures("A-baseline")["ratios"] == {"x": 1.0}
    assert (root / io.JOURNAL).exists()
    notes = recover(root)
    assert len(notes) == 1 and "interrupted while it replaced its files; completed it" in notes[0]
    assert "machines/m1.json" in notes[0]
    assert store.machine_figures("A-baseline")["ratios"] == {"x": 2.0} and store.figures("A-baseline") == {"returns": [2.0]}
    assert not (root / io.JOURNAL).exists() and not list(root.glob(".staging-*"))
    assert recover(root) == []


STAGE_AND_DIE = '''
import os, sys
from pathlib import Path
from rlbench.gate.store import BaselineStore
store = BaselineStore(Path(sys.argv[1]), "m1")
staging = store.begin_update()
with staging.active():
    from rlbench.core.io import atomic_write_json
    atomic_write_json(store.figures_path, {"schema": 1, "cells": {"A-baseline": {"returns": [9.0]}}})
os._exit(9)
'''


def test_an_update_killed_before_its_commit_is_discarded_and_touches_nothing(tmp_path):
    root = tmp_path / "bl"
    store = BaselineStore(root, "m1")
    store.update({"A-baseline": {"returns": [1.0]}}, {})
    before = _stored(root)
    assert subprocess.run([sys.executable, "-c", STAGE_AND_DIE, str(root)], cwd=REPO, check=False).returncode == 9
    assert len(list(root.glob(".staging-*"))) == 1 and _stored(root) == before
    notes = recover(root)
    assert notes == [f"an update of {root} was interrupted before it wrote anything; discarded what it had staged "
                     "(figures.json): its files are as they were"]
    assert not list(root.glob(".staging-*")) and _stored(root) == before


def test_rlbench_commands_complete_an_interrupted_update_and_say_so(tmp_path, capsys):
    root = tmp_path / "bl"
    BaselineStore(root, "m1").update({"A-baseline": {"returns": [1.0]}}, {"A-baseline": {"ratios": {"x": 1.0}}})
    assert subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RENAME, str(root)], cwd=REPO, check=False).returncode == 9
    assert main(["baselines", "check", "--baselines", str(root)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rlbench: an update of {root} was interrupted while it replaced its files; completed it")
    assert "\n" not in err and BaselineStore(root, "m1").machine_figures("A-baseline")["ratios"] == {"x": 2.0}


def test_rlbench_baselines_check_names_a_broken_file_in_one_line(tmp_path, capsys):
    root = tmp_path / "bl"
    BaselineStore(root, "m1").update({"A-baseline": {"returns": [1.0]}}, {"A-baseline": {"ratios": {"x": 1.0}}})
    (root / "machines" / "other.json").write_text("{ broken")  # another machine's: read by check, not by a run
    assert main(["baselines", "check", "--baselines", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rlbench: error: {root / 'machines' / 'other.json'} is corrupt (") and "\n" not in err
    assert err.endswith("record it again with `pytest bench --rlbench-record-machine` on that machine")


def test_a_live_update_is_not_taken_for_an_interrupted_one(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    staging = store.begin_update()
    try:
        assert recover(tmp_path) == [] and staging.path.exists()
    finally:
        staging.close()
    assert not staging.path.exists()


def test_what_the_tests_stage_is_seen_by_them_and_written_with_the_figures_and_the_findings(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    staging = store.begin_update()
    with staging.active():
        idle.record(tmp_path, "Hopper-v5", _idle_rec(1.0, 2.0))
        assert idle.read(tmp_path)["Hopper-v5"]["returns"] == [1.0, 2.0]  # the test reads its own write...
    assert not idle.idle_path(tmp_path).exists()  # ...which waits in the staging area
    idle.record(tmp_path, "Ant-v5", _idle_rec(5.0))  # another run records meanwhile
    rec = Recording("m1", "exact", {"A-baseline": {"returns": [1.0], "bytes_total": 10}}, {"A-baseline": {"ratios": {}}},
                    staged=store.staged_files(staging))
    written = store.record(rec, staging, derived=[lambda s: [f"finding:{k}" for k in findings.record(s)]])
    assert written == ["A-baseline"]
    assert sorted(idle.read(tmp_path)) == ["Ant-v5", "Hopper-v5"]  # merged with the other run's, not over it
    assert store.figures("A-baseline")["returns"] == [1.0] and findings.findings_path(store).exists()
    assert not staging.path.exists() and not (tmp_path / io.JOURNAL).exists()


def test_a_directory_broken_during_the_run_fails_the_commit_before_any_file_changes(tmp_path):
    store = BaselineStore(tmp_path, "m1")
    store.update({"A-baseline": {"returns": [1.0]}}, {"A-baseline": {"ratios": {"x": 1.0}}})
    before = _stored(tmp_path)
    staging = store.begin_update()
    machines = tmp_path / "machines"
    machines.rename(tmp_path / "elsewhere")
    machines.write_text("in the way")
    rec = Recording("m1", "exact", {"A-baseline": {"returns": [2.0]}}, {"A-baseline": {"ratios": {"x": 2.0}}})
    with pytest.raises(BaselineError) as exc:
        store.record(rec, staging)
    assert str(exc.value) == (f"cannot record into {tmp_path}: {machines} is a file where a directory should be; move "
                              f"it away (`mv {machines} {machines}.bak`) or record into a writable copy with "
                              "--rlbench-baselines DIR")
    assert store.figures("A-baseline") == {"returns": [1.0]} and not (tmp_path / io.JOURNAL).exists()
    subprocess.run(command(str(exc.value)), check=True)  # the repair it names
    (tmp_path / "elsewhere").rename(machines)
    assert _stored(tmp_path) == before
    path = save_unsaved(rec)
    assert main(["baselines", "apply", str(path), "--baselines", str(tmp_path)]) == 0
    assert store.figures("A-baseline") == {"returns": [2.0]} and store.machine_figures("A-baseline")["ratios"] == {"x": 2.0}


def test_an_unwritable_directory_is_found_before_an_update_starts(tmp_path):
    root = tmp_path / "bl"
    root.mkdir()
    (root / "machines").write_text("")
    store = BaselineStore(root, "m1")
    with pytest.raises(BaselineError, match=r"machines is a file where a directory should be; move it away") as exc:
        store.begin_update()
    assert not list(root.glob(".staging-*"))
    subprocess.run(command(str(exc.value)), check=True)
    store.begin_update().close()


def test_a_recording_that_is_not_one_is_refused_naming_it(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"schema": 1}')
    assert main(["baselines", "apply", str(bad), "--baselines", str(tmp_path / "bl")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rlbench: error: {bad} is not an rlbench recording") and "\n" not in err


# -- through the plugin ---------------------------------------------------------------------------------

FAKE = '''
import os, pytest
from pathlib import Path
from types import SimpleNamespace
from rlbench.grid.record import CellRecord

@pytest.mark.parametrize("cell", ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"])
def test_cell(cell, record_cell, rlbench_session):
    Path(os.environ["MARKS"], cell).touch()  # the cell ran
    record_cell(CellRecord.from_figures(cell, {"returns": [1.0, 2.0], "seeds": [1, 2]}, {"ratios": {"x/y": 1.5}},
                                        {"data": [1e-4, 1.1e-4, 0.9e-4], "iterations": 1}))

def test_idle(rlbench_session, record_idle):
    r = float(os.environ.get("IDLE", "3.0"))
    if rlbench_session.update:  # handed to the controller, which writes it at the end of the run
        assert record_idle("Hopper-v5", SimpleNamespace(returns=(r,), lengths=(1,), seeds=(0,), mean=r, ci_low=r,
                                                        ci_high=r))["returns"] == [r]

def test_z_break(rlbench_session):
    if os.environ.get("BREAK") == "corrupt":
        rlbench_session.store.figures_path.write_text("{ broken")
    if os.environ.get("BREAK") == "interrupt":
        raise KeyboardInterrupt
'''


@pytest.fixture
def run(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(test_fake=FAKE)
    base, marks = tmp_path / "bl", tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("MARKS", str(marks))
    monkeypatch.setenv("RLBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLBENCH_MACHINE_ID", "m1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # this checkout's rlbench, not the installed one

    def _run(*args, brk="", idle_return=3.0):
        monkeypatch.setenv("BREAK", brk)
        monkeypatch.setenv("IDLE", str(idle_return))
        return pytester.runpytest_subprocess("-p", "rlbench.plugin.pytest_plugin", "-p", "no:cacheprovider",
                                             f"--rlbench-baselines={base}", *args)
    return SimpleNamespace(run=_run, base=base, marks=marks, home=tmp_path / "home")


def _one_error_line(res) -> str:
    """The usage error pytest printed: one line, no traceback."""
    text = res.stdout.str() + res.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    lines = [ln for ln in res.stderr.lines if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    return lines[0][len("ERROR: "):]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_an_update_run_writes_every_file_at_its_end(run, xdist):
    run.run(*xdist, "--rlbench-update-baselines").assert_outcomes(passed=4)
    stored = _stored(run.base)
    assert sorted(stored) == ["figures.json", "findings.json", "idle.json", "machines/m1.json"]
    assert sorted(stored["figures.json"]["cells"]) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"]
    assert stored["idle.json"]["envs"]["Hopper-v5"]["returns"] == [3.0]  # measured by a worker, written by the controller
    assert not list(run.base.glob(".staging-*")) and not (run.base / io.JOURNAL).exists()


def test_an_unwritable_baselines_directory_stops_an_update_before_any_cell_runs(run):
    run.base.mkdir()
    (run.base / "machines").write_text("")
    res = run.run("-n", "2", "--rlbench-update-baselines")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    line = _one_error_line(res)
    assert line.startswith(f"cannot record into {run.base}: {run.base / 'machines'} is a file where a directory "
                           "should be") and line.endswith("(checked before measuring: no cell ran)")
    assert not list(run.marks.iterdir())


def test_an_update_that_cannot_be_written_keeps_its_figures_and_says_how_to_apply_them(run, capsys):
    run.run("--rlbench-update-baselines").assert_outcomes(passed=4)
    before = _stored(run.base)
    figures = run.base.joinpath("figures.json").read_bytes()
    res = run.run("--rlbench-update-baselines", brk="corrupt", idle_return=4.0)  # figures.json broken during the run
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*rlbench: baselines NOT written*",
                              f"nothing written to {run.base}: {run.base / 'figures.json'} is corrupt *; the figures of "
                              "2 cell(s) and idle.json measured are saved in *: apply them with `rlbench baselines "
                              "apply *` once the cause is fixed"])
    line = next(ln for ln in res.stdout.lines if ln.startswith("nothing written"))
    saved = Path(line.split("`rlbench baselines apply ")[1].split("`")[0])
    assert saved.parent == run.home / "unsaved"
    run.base.joinpath("figures.json").write_bytes(figures)  # the repair (git checkout, in a repository)
    assert _stored(run.base) == before  # nothing of the update reached the files: not idle.json either
    assert main(["baselines", "apply", str(saved), "--baselines", str(run.base)]) == 0
    assert "applied" in capsys.readouterr().out
    stored = _stored(run.base)
    assert sorted(stored["figures.json"]["cells"]) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"]
    assert sorted(stored["machines/m1.json"]["cells"]) == ["PPO-Ant-v5-baseline", "PPO-HalfCheetah-v5-baseline"]
    assert stored["idle.json"]["envs"]["Hopper-v5"]["returns"] == [4.0] and "findings.json" in stored


def test_an_interrupted_update_writes_nothing_and_says_where_its_figures_are(run):
    res = run.run("--rlbench-update-baselines", brk="interrupt")
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(["*rlbench: baselines NOT written*",
                              f"nothing written to {run.base}: the run was interrupted; the figures of 2 cell(s) and "
                              "idle.json measured are saved in *: apply them with `rlbench baselines apply *`"])
    assert not _stored(run.base) and not list(run.base.glob(".staging-*"))
    assert len(list((run.home / "unsaved").iterdir())) == 1


def test_a_run_after_an_interrupted_commit_completes_it_and_says_so_first(run):
    run.run("--rlbench-update-baselines").assert_outcomes(passed=4)
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_RENAME, str(run.base)], cwd=REPO, check=False)
    assert proc.returncode == 9 and (run.base / io.JOURNAL).exists()
    res = run.run("-q", "-k", "PPO-Ant-v5-baseline")
    res.stdout.fnmatch_lines([f"rlbench: an update of {run.base} was interrupted while it replaced its files; "
                              "completed it from its journal: *"])
    assert not (run.base / io.JOURNAL).exists()


@pytest.mark.parametrize("update", [[], ["--rlbench-update-baselines"]])
@pytest.mark.parametrize(("name", "content", "says"), [
    ("figures.json", "{ broken", "figures.json is corrupt"),
    ("machines/m1.json", '{"schema": 1, "cells": []}', "m1.json is not an rlbench baseline file"),
    ("tolerances.toml", "[returns]\nalpha = 2\n", "tolerances.toml: [returns] alpha must be a number in (0, 1)"),
    ("findings.json", "[", "findings.json is corrupt"),
])
def test_a_broken_stored_file_or_tolerance_is_one_line_before_any_cell_runs(run, update, name, content, says):
    path = run.base / name
    path.parent.mkdir(parents=True)
    path.write_text(content)
    res = run.run("-n", "2", *update)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    line = _one_error_line(res)
    assert says in line and str(path) in line
    assert not list(run.marks.iterdir())


def test_the_repair_of_a_corrupt_committed_file_works(tmp_path, capsys):
    repo = git_repo(tmp_path / "repo")
    store = BaselineStore(repo / "baselines", "m1")
    store.update({"PPO-Ant-v5-baseline": {"returns": [1.0]}}, {"PPO-Ant-v5-baseline": {"ratios": {"x": 1.0}}})
    (repo / "baselines" / "tolerances.toml").write_text("[returns]\nalpha = 0.01\n")
    commit(repo)
    for path, text in ((store.figures_path, "{ broken"), (store.machine_path, "[]"),
                       (repo / "baselines" / "tolerances.toml", "[returns]\nalpha = 2\n")):
        original = path.read_bytes()
        path.write_text(text)
        with pytest.raises(BaselineError) as exc:
            store.check()
        message = str(exc.value)
        assert str(path) in message and "\n" not in message
        assert f"restore it with `git checkout -- {path}`" in message
        assert "--rlbench-update-baselines" not in message  # an update would fail on it the same way
        subprocess.run(command(message.split("restore it with ", 1)[1]), cwd=repo, check=True)
        assert path.read_bytes() == original
        store.check()
    assert main(["baselines", "check", "--baselines", str(repo / "baselines")]) == 0
    assert capsys.readouterr().out.strip() == f"{repo / 'baselines'}: the tolerances and every stored figures file read"


def test_the_repair_of_a_corrupt_uncommitted_file_works(tmp_path):
    repo = git_repo(tmp_path / "repo")
    store = BaselineStore(repo / "baselines", "m1")
    store.update({"PPO-Ant-v5-baseline": {"returns": [1.0]}}, {})
    store.figures_path.write_text("{ broken")
    with pytest.raises(BaselineError) as exc:
        store.check()
    message = str(exc.value)
    assert message.endswith(f"delete it (`rm {store.figures_path}`) and record it again with "
                            "`pytest bench --rlbench-update-baselines`")
    assert "git checkout" not in message  # git does not have it
    subprocess.run(command(message.split("delete it ", 1)[1]), check=True)
    store.update({"PPO-Ant-v5-baseline": {"returns": [1.0]}}, {})  # what the record command does
    store.check()


@pytest.mark.parametrize(("text", "message"), [
    ("[returns]\nalpha = 2\n", r"\[returns\] alpha must be a number in \(0, 1\) \(default 0.001\), got 2;"),
    ("[returns]\nalpha = 0\n", r"\[returns\] alpha must be a number in \(0, 1\) .*got 0;"),
    ("[returns]\nrel_drop = 1.5\n", r"\[returns\] rel_drop must be a number in \[0, 1\] \(default 0.1\), got 1.5;"),
    ("[latency]\nruntime_min_cells = 0\n", r"\[latency\] runtime_min_cells must be an integer in \[1, inf\)"),
    ("[latency]\nruntime_min_cells = true\n", r"\[latency\] runtime_min_cells must be an integer"),
    ("[energy]\nrel = nan\n", r"\[energy\] rel must be a number in \[0, inf\) .*got nan"),
    ("[memory]\nrss_abs_mib = -2\n", r"\[memory\] rss_abs_mib must be a number in \[0, inf\)"),
    ("[returns\nalpha = 0.1\n", r"is not valid TOML"),
])
def test_a_tolerance_out_of_range_names_file_section_and_key(tmp_path, text, message):
    path = tmp_path / "tolerances.toml"
    path.write_text(text)
    with pytest.raises(BaselineError, match=message) as exc:
        Tolerances.load(path)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)
