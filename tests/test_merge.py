"""rlbench merge: joins shards, refuses conflicting duplicates, keeps machine info, stays pytest-benchmark's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rlbench.cli.main import main
from rlbench.report.merge import merge_results, write_merged
from rlbench.core.errors import ResultsError
from rlbench.report.results import MERGE_KEY, load_results
from tests.data.results_factory import edit, make_results

SHARD_A = ["SAC-HalfCheetah-v5-baseline", "SAC-HalfCheetah-v5-ptdq", "SAC-HalfCheetah-v5-l1-0.05"]
SHARD_B = ["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-qat"]


def _write(path, doc):
    path.write_text(json.dumps(doc, indent=1))
    return path


@pytest.fixture
def shards(tmp_path):
    a = make_results(SHARD_A, episodes=10, machine_id="x86_64-2cpu-aaaaaaaaaa")
    b = make_results(SHARD_B, episodes=10, machine_id="x86_64-8cpu-bbbbbbbbbb")
    b["machine_info"]["node"] = "runner-b"
    b["datetime"] = "2026-05-10T01:00:00+00:00"
    return _write(tmp_path / "a.json", a), _write(tmp_path / "b.json", b)


def test_merge_joins_shards_and_keeps_machine_info(tmp_path, shards, capsys):
    a, b = shards
    out = tmp_path / "all.json"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert "merged 5 cells from 2 files" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert set(doc) >= {"machine_info", "commit_info", "benchmarks", "datetime", "version", MERGE_KEY}
    res = load_results(out)
    assert sorted(r.id for r in res.records) == sorted(SHARD_A + SHARD_B)
    assert res.get("PPO-Hopper-v5-qat").context.machine_id == "x86_64-8cpu-bbbbbbbbbb"  # per-entry machine kept
    assert res.get("SAC-HalfCheetah-v5-ptdq").context.machine_id == "x86_64-2cpu-aaaaaaaaaa"
    sources = doc[MERGE_KEY]["sources"]
    assert [s["path"] for s in sources] == [str(a), str(b)]
    assert sources[1]["machine_info"]["node"] == "runner-b" and sources[1]["datetime"] == "2026-05-10T01:00:00+00:00"
    assert sources[0]["cells"] == SHARD_A
    assert doc[MERGE_KEY]["machine_ids"] == ["x86_64-2cpu-aaaaaaaaaa", "x86_64-8cpu-bbbbbbbbbb"]
    assert [s["path"] for s in res.merged_from] == [str(a), str(b)]
    # merging a merge keeps the original sources, not the intermediate file
    again = merge_results([out])
    assert [s["path"] for s in again.data[MERGE_KEY]["sources"]] == [str(a), str(b)]


def test_identical_duplicates_are_kept_once(tmp_path, shards):
    a, b = shards
    overlap = make_results(SHARD_A[:1], episodes=10, machine_id="x86_64-2cpu-aaaaaaaaaa")
    c = _write(tmp_path / "c.json", overlap)
    res = write_merged([a, b, c], tmp_path / "all.json")
    assert res.duplicates == (SHARD_A[0],) and len(res.cells) == 5
    assert len(load_results(tmp_path / "all.json").records) == 5


def test_conflicting_duplicate_is_refused_naming_cell_and_both_files(tmp_path, shards, capsys):
    a, _ = shards
    doc = json.loads(a.read_text())
    changed = edit(doc, "SAC-HalfCheetah-v5-ptdq", lambda e: e["extra_info"]["figures"].update(return_mean=1.0))
    c = _write(tmp_path / "rerun.json", changed)
    out = tmp_path / "all.json"
    with pytest.raises(ResultsError) as e:
        write_merged([a, c], out)
    msg = str(e.value)
    assert "SAC-HalfCheetah-v5-ptdq" in msg and str(a) in msg and str(c) in msg and "return_mean" in msg
    assert not out.exists()  # nothing half-merged is left behind
    assert main(["merge", str(a), str(c), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SAC-HalfCheetah-v5-ptdq" in err
    # a latency re-measurement is a different measurement too
    lat = edit(doc, "SAC-HalfCheetah-v5-ptdq", lambda e: e["stats"].update(median=1.0))
    with pytest.raises(ResultsError, match="stats"):
        merge_results([a, _write(tmp_path / "lat.json", lat)])


def test_merge_refuses_bad_inputs_naming_the_file(tmp_path, shards):
    a, _ = shards
    bad = tmp_path / "cut.json"
    bad.write_text(a.read_text()[:500])
    with pytest.raises(ResultsError, match=r"cut\.json looks truncated"):
        merge_results([a, bad])


def test_pytest_benchmark_compare_reads_the_merged_file(tmp_path, shards):
    a, b = shards
    out = tmp_path / "all.json"
    write_merged([a, b], out)
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(out)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Failed to load" not in proc.stdout + proc.stderr
    for cell in SHARD_A + SHARD_B:
        assert f"test_cell[{cell}]" in proc.stdout
