"""rlbench compare: per-cell verdicts, regressed first, exit status, one-sided cells, run mismatches."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlbench.gate.tolerances import Tolerances
from rlbench.cli.main import main
from rlbench.report.compare import compare_files, compare_results, parse_thresholds
from rlbench.core.errors import ResultsError
from rlbench.report.results import load_results
from tests.data.results_factory import edit, make_results

CELLS = ["SAC-HalfCheetah-v5-baseline", "SAC-HalfCheetah-v5-ptdq", "SAC-HalfCheetah-v5-l2-0.20",
         "PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptsq", "PPO-Hopper-v5-l1-0.10"]
DROPPED = "PPO-Hopper-v5-ptsq"


@pytest.fixture(scope="module")
def base_doc():
    return make_results(CELLS, episodes=30)


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(json.dumps(doc, indent=1))
    return p


def _run(capsys, *argv):
    code = main(["compare", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def _drop_returns(entry, factor=0.7):
    fig = entry["extra_info"]["figures"]
    fig["returns"] = [x * factor for x in fig["returns"]]
    fig["return_mean"] *= factor
    fig["return_ci"] = [v * factor for v in fig["return_ci"]]


def test_identical_files_are_unchanged_exit_0(tmp_path, capsys, base_doc):
    old, new = _write(tmp_path, "old.json", base_doc), _write(tmp_path, "new.json", base_doc)
    code, lines, _ = _run(capsys, old, new)
    assert code == 0
    assert lines[-1] == (f"rlbench compare: 0 regressed, 0 ungated, 0 unsettled, 0 improved, {len(CELLS)} unchanged, "
                         "0 only in OLD, 0 only in NEW")
    assert not any(line.startswith(("REGRESSED", "ONLY")) for line in lines)
    # the only remark: energy could not be compared (the generated runs had no meter)
    assert [line for line in lines if line.startswith("NOTE")] == [
        "NOTE       energy not compared: no meter in either run (no powercap tree at /sys/class/powercap)"]


def test_thirty_percent_return_drop_is_regressed_and_listed_first(tmp_path, capsys, base_doc):
    old = _write(tmp_path, "old.json", base_doc)
    doc = edit(base_doc, DROPPED, _drop_returns)
    doc = edit(doc, "SAC-HalfCheetah-v5-l2-0.20", lambda e: _drop_returns(e, 1.4))  # an improvement, listed later
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["param"] != "PPO-Hopper-v5-l1-0.10"]
    new = _write(tmp_path, "new.json", doc)
    md = tmp_path / "pr.md"
    code, lines, _ = _run(capsys, old, new, "--markdown", md)
    assert code == 1
    assert lines[0].startswith("rlbench compare: OLD")
    body = [line for line in lines[1:-1] if not line.startswith(("NOTE", "RUNTIME"))]
    # notes, then the runtimes (5 common cells: too few to judge one), then cells
    assert lines.index(body[0]) == 1 + sum(line.startswith(("NOTE", "RUNTIME")) for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("RUNTIME") and "runtime yardstick" in line] == \
        ["UNJUDGED:", "UNJUDGED:"]
    assert body[0].startswith(f"REGRESSED  {DROPPED}: return ") and "Mann-Whitney" in body[0]
    assert sum(line.startswith("REGRESSED") for line in lines) == 1
    assert [line.split()[0] for line in body] == ["REGRESSED", "ONLY", "IMPROVED"]
    assert "PPO-Hopper-v5-l1-0.10: in OLD only" in body[1]
    assert "1 regressed, 0 ungated, 0 unsettled, 1 improved, 3 unchanged, 1 only in OLD, 0 only in NEW" in lines[-1]
    text = md.read_text()
    assert ":x:" in text and f"| `{DROPPED}` | return |" in text and "Only in OLD (1)" in text


def test_latency_ratio_rise_beyond_tolerance_is_regressed(tmp_path, base_doc):
    cell = "SAC-HalfCheetah-v5-ptdq"

    def slower(entry, f=1.5):
        m = entry["extra_info"]["machine_figures"]
        for key in ("variant/fp32", "variant/numpy-ref"):
            m["ratios"][key] *= f
            m["ratio_ci"][key] = [v * f for v in m["ratio_ci"][key]]

    old = load_results(_write(tmp_path, "old.json", base_doc))
    new = load_results(_write(tmp_path, "new.json", edit(base_doc, cell, slower)))
    cmp = compare_results(old, new, Tolerances())
    first = cmp.cells[0]
    assert first.cell == cell and first.status == "regressed" and cmp.exit_code == 1
    # +50% regresses the ratio within the runtime; across runtimes it is inside the VM's drift (+100%)
    assert [v.message.split()[3] for v in first.verdicts if v.status == "regressed"] == ["variant/fp32"]
    # within a looser threshold it passes; a 10% rise is inside the default 15%
    assert compare_results(old, new, Tolerances(), {"latency": 0.6}).exit_code == 0
    small = load_results(_write(tmp_path, "small.json", edit(base_doc, cell, lambda e: slower(e, 1.10))))
    assert compare_results(old, small, Tolerances()).exit_code == 0
    # absolute latency is never compared: the same ratios on a 3x slower machine are unchanged
    def machine_slow(entry):
        entry["stats"] = {k: (v * 3 if isinstance(v, float) else v) for k, v in entry["stats"].items()}
        entry["extra_info"]["machine_figures"]["latency_s"] = {
            k: v * 3 for k, v in entry["extra_info"]["machine_figures"]["latency_s"].items()}
    slow = load_results(_write(tmp_path, "slowbox.json", edit(base_doc, cell, machine_slow)))
    assert compare_results(old, slow, Tolerances()).exit_code == 0


def test_a_runtime_fifteen_percent_slower_for_every_model_regresses_the_run_not_one_cell(tmp_path, capsys, base_doc):
    rng = np.random.default_rng(3)
    doc = base_doc
    for cell in CELLS:  # each cell's yardsticks jitter by a few percent; ONNX Runtime's are also 15% up
        def jitter(entry, onnx=1.15):
            r = entry["extra_info"]["machine_figures"]["ratios"]
            r["torch-fp32/numpy-ref"] *= rng.lognormal(0, 0.02)
            r["onnx-fp32/numpy-ref"] *= onnx * rng.lognormal(0, 0.02)
        doc = edit(doc, cell, jitter)
    code, lines, _ = _run(capsys, _write(tmp_path, "old.json", base_doc), _write(tmp_path, "new.json", doc))
    runtime = [line for line in lines if line.startswith("RUNTIME") and "runtime yardstick" in line]
    assert code == 1 and len(runtime) == 2
    assert runtime[0].startswith("RUNTIME    UNCHANGED: runtime yardstick torch-fp32/numpy-ref over 6 cells")
    assert runtime[1].startswith("RUNTIME    REGRESSED: runtime yardstick onnx-fp32/numpy-ref over 6 cells: median 1.1")
    assert "tolerance +8% (limit 1.080)" in runtime[1]
    assert lines[-1].startswith("rlbench compare: 1 runtime(s) regressed, 0 regressed, 0 ungated, 0 unsettled, 0 improved, 6 unchanged")
    # fewer cells than a run-level verdict needs: said, not failed
    few = make_results(CELLS[:3], episodes=30)
    code, lines, _ = _run(capsys, _write(tmp_path, "a.json", few), _write(tmp_path, "b.json", few))
    assert code == 0 and sum("UNJUDGED: runtime yardstick" in line for line in lines) == 2


def test_memory_bytes_exact_rss_within_tolerance_energy_only_with_meters(tmp_path, base_doc):
    cell = "PPO-Hopper-v5-ptsq"
    old = load_results(_write(tmp_path, "old.json", base_doc))

    def grow(entry):
        mb = entry["extra_info"]["figures"]["model_bytes"]; mb[next(iter(mb))] += 1
        entry["extra_info"]["machine_figures"]["memory"]["rss_delta_bytes"] += 150_000  # within the noise

    noise = {"rss_delta_bytes": 200_000, "rss_delta_bytes_arena_off": 200_000}  # as `rlbench rss-noise` measures
    cmp = compare_results(old, load_results(_write(tmp_path, "b.json", edit(base_doc, cell, grow))), Tolerances(),
                          rss_noise=noise)
    bad = [v for v in cmp.cells[0].verdicts if v.status == "regressed"]
    assert cmp.cells[0].cell == cell and [v.metric for v in bad] == ["model bytes"]

    def rss(entry):
        entry["extra_info"]["machine_figures"]["memory"]["rss_delta_bytes"] *= 2
    cmp = compare_results(old, load_results(_write(tmp_path, "m.json", edit(base_doc, cell, rss))), Tolerances(),
                          rss_noise=noise)
    assert [v.metric for v in cmp.cells[0].verdicts if v.status == "regressed"] == ["memory"]
    # without a measured noise the floor is rss_abs_mib (2 MiB), and a doubled 1.3 MiB delta passes
    cmp = compare_results(old, load_results(_write(tmp_path, "m.json", edit(base_doc, cell, rss))), Tolerances())
    assert not any(v.failed for v in cmp.cells[0].verdicts)

    metered = make_results(CELLS[:2], episodes=30, energy=True)
    hot = edit(metered, CELLS[1], lambda e: e["extra_info"]["machine_figures"]["energy"].update(
        joules_per_1000=e["extra_info"]["machine_figures"]["energy"]["joules_per_1000"] * 2))
    cmp = compare_results(load_results(_write(tmp_path, "e1.json", metered)),
                          load_results(_write(tmp_path, "e2.json", hot)), Tolerances())
    assert [(c.cell, [v.metric for v in c.verdicts if v.status == "regressed"]) for c in cmp.regressed] == \
        [(CELLS[1], ["energy"])]
    # one side without a meter: not compared, the cell is ungated and says why
    cmp = compare_results(load_results(_write(tmp_path, "e3.json", make_results(CELLS[:2], episodes=30))),
                          load_results(_write(tmp_path, "e4.json", hot)), Tolerances())
    assert cmp.exit_code == 0 and [c.status for c in cmp.cells] == ["ungated", "ungated"]
    assert all("energy not gated: no energy figure stored" in v.message for c in cmp.cells for v in c.verdicts
               if v.status == "ungated")
    assert any("energy not compared: no meter in OLD" in h for h in cmp.header)


def test_one_sided_cells_and_machine_and_version_mismatch_are_called_out(tmp_path, capsys, base_doc):
    other = make_results(CELLS[1:] + ["TD3-Ant-v5-baseline"], episodes=30, machine_id="aarch64-8cpu-ffffffffff",
                         versions={"torch": "2.14.0", "onnxruntime": "1.31.0"})
    code, lines, _ = _run(capsys, _write(tmp_path, "old.json", base_doc), _write(tmp_path, "new.json", other))
    notes = [line for line in lines if line.startswith("NOTE")]
    assert any("machine differs" in n and "x86_64-2cpu-0123456789" in n and "aarch64-8cpu-ffffffffff" in n for n in notes)
    assert any("library versions differ" in n and "torch 2.13.0 -> 2.14.0" in n and "numpy 2.4.6 -> absent" in n
               for n in notes)
    assert f"ONLY OLD   {CELLS[0]}: in OLD only (not run, skipped or deselected in NEW)" in lines
    assert "ONLY NEW   TD3-Ant-v5-baseline: in NEW only (no OLD figure to compare with)" in lines
    assert code == 0  # the mismatch is reported, not a regression by itself


def test_no_common_cells_is_an_error_naming_both_files(tmp_path, capsys):
    a = _write(tmp_path, "a.json", make_results(["SAC-Hopper-v5-baseline"], episodes=5))
    b = _write(tmp_path, "b.json", make_results(["TD3-Hopper-v5-baseline"], episodes=5))
    code, _, err = _run(capsys, a, b)
    assert code == 2 and str(a) in err and str(b) in err and "no cell in common" in err
    with pytest.raises(ResultsError):
        compare_files(a, b)


@pytest.mark.parametrize("content, what", [('{"machine_info": {}, "benchmarks": [{"name": "x"', "truncated"),
                                           ('{"results": []}', "not an rlbench results file"),
                                           ("not json at all", "is not JSON")])
def test_bad_input_file_is_an_error_naming_it(tmp_path, capsys, base_doc, content, what):
    good = _write(tmp_path, "good.json", base_doc)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = _run(capsys, good, bad)
    assert code == 2 and not out and err.count("\n") == 1
    assert str(bad) in err and what in err


def test_thresholds_and_tolerances_file(tmp_path, base_doc):
    assert parse_thresholds(["0.2"]) == {"return": 0.2, "latency": 0.2}
    assert parse_thresholds(["return=0.35", "latency=0.5"]) == {"return": 0.35, "latency": 0.5}
    for bad in ("speed=0.1", "return=lots", "-1"):
        with pytest.raises(ResultsError):
            parse_thresholds([bad])
    old = _write(tmp_path, "old.json", base_doc)
    new = _write(tmp_path, "new.json", edit(base_doc, DROPPED, _drop_returns))
    assert compare_files(old, new).exit_code == 1
    assert compare_files(old, new, thresholds={"return": 0.4}).exit_code == 0  # a 30% drop within 40%
    tol = tmp_path / "tol.toml"
    tol.write_text("[returns]\nrel_drop = 0.5\n")
    assert compare_files(old, new, tolerances=tol).exit_code == 0
    assert compare_files(old, new, tolerances=tol).tolerances.returns.rel_drop == 0.5
    with pytest.raises(ResultsError, match="no such tolerances file"):
        compare_files(old, new, tolerances=tmp_path / "absent.toml")


def test_return_noise_alone_does_not_regress(tmp_path, base_doc):
    """A re-run with fresh episode noise (same means) stays unchanged: the gate is drop AND Mann-Whitney."""
    rerun = make_results(CELLS, episodes=30, seed=1)
    cmp = compare_results(load_results(_write(tmp_path, "a.json", base_doc)),
                          load_results(_write(tmp_path, "b.json", rerun)), Tolerances())
    assert cmp.exit_code == 0
    assert np.all([v.status != "regressed" for c in cmp.cells for v in c.verdicts if v.metric == "return"])
