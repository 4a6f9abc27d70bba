"""The findings over a run's fresh figures laid over the stored ones (``rlbench.grid.findings.check_fresh``).

Every test starts from the repository's stored figures (``baselines/figures.json``, the whole
grid) and plants its fault in copies of them: no figure here is written by hand.
"""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from rlbench.grid import findings

from rlbench.gate import idle
from rlbench.grid.findings import LEVEL, Status, check_fresh
from rlbench.core.paths import REPO_ROOT

pytest_plugins = ["pytester"]

BASELINES = REPO_ROOT / "baselines"


@pytest.fixture(scope="module")
def stored():
    return json.loads((BASELINES / "figures.json").read_text())["cells"]


@pytest.fixture(scope="module")
def idle_returns():
    return idle.read(BASELINES)


@pytest.fixture(scope="module")
def machine():
    """The stored machine figures with the most cells, for the RSS finding."""
    files = sorted((BASELINES / "machines").glob("*.json"))
    data = [json.loads(f.read_text())["cells"] for f in files]
    return max(data, key=len)


def by_key(checks):
    return {c.key: c for c in checks}


def overturned(checks):
    return [line for c in checks for line in c.overturned()]


def test_an_unchanged_run_of_the_whole_grid_passes_every_finding(stored, idle_returns, machine):
    checks = check_fresh(stored, copy.deepcopy(stored), machine=machine, fresh_machine=copy.deepcopy(machine),
                         idle=idle_returns)
    assert {c.key for c in checks} == {"bytes", "ptdq_vs_ptsq", "l2_vs_l1", "keep90_at_0.05", "keep90_at_0.50",
                                       "rss"}
    assert all(c.status is Status.UNCHANGED for c in checks), [c.line() for c in checks]
    assert overturned(checks) == []
    # the fresh figures are the stored ones, printed beside the paper's
    for c in checks:
        assert c.fresh.ours == c.stored.ours and c.remeasured == c.cells > 0
        assert f"paper: {c.paper}" in c.line() and str(c.stored.ours) in c.line()


def test_a_run_of_some_cells_is_laid_over_the_stored_figures_and_names_what_it_did_not_measure(stored, idle_returns):
    """Only SAC Hopper's quantized cells ran, unchanged: the other findings' counts still come from
    the stored cells (an overlay, not the run alone), and the findings none of whose cells ran
    say so rather than pass."""
    fresh = {c: copy.deepcopy(stored[c]) for c in ("SAC-Hopper-v5-ptdq", "SAC-Hopper-v5-ptsq")}
    checks = by_key(check_fresh(stored, fresh, idle=idle_returns))
    assert checks["ptdq_vs_ptsq"].status is Status.UNCHANGED and checks["ptdq_vs_ptsq"].remeasured == 2
    assert checks["ptdq_vs_ptsq"].fresh.ours == checks["ptdq_vs_ptsq"].stored.ours
    assert checks["bytes"].status is Status.UNCHANGED and checks["bytes"].fresh.ours == checks["bytes"].stored.ours
    for key in ("l2_vs_l1", "keep90_at_0.05", "keep90_at_0.50"):
        assert checks[key].status is Status.NOT_REMEASURED and checks[key].outcomes == ()
        assert checks[key].line().startswith("NOT RE-MEASURED")


def _resolved_pair(stored, level=LEVEL):
    """A pair where PTDQ's lead over PTSQ is resolved in the stored figures, by the check's own rule."""
    pairs = findings._quant_pairs(findings._by_pair(stored))
    means = findings._BootMeans(stored, 0, findings.RESAMPLES)
    for pair in sorted(pairs):
        if findings._resolved_sign(findings._interval(means(pair, "ptdq") - means(pair, "ptsq"), level)) > 0:
            return pair
    pytest.fail("no pair with a resolved PTDQ lead in the stored figures")


def test_a_reversed_resolved_ptdq_lead_overturns_the_finding_naming_the_pair_and_both_figures(stored, idle_returns):
    """Planted fault: PTDQ's and PTSQ's returns swapped in one pair (a runtime that routes each
    method to the other's model), so the resolved lead is resolved the other way."""
    pair = _resolved_pair(stored)
    ptdq, ptsq = stored[f"{pair}-ptdq"], stored[f"{pair}-ptsq"]
    fresh = {f"{pair}-ptdq": {**ptdq, "returns": ptsq["returns"]}, f"{pair}-ptsq": {**ptsq, "returns": ptdq["returns"]}}
    checks = by_key(check_fresh(stored, fresh, idle=idle_returns))
    assert checks["ptdq_vs_ptsq"].status is Status.OVERTURNED
    lines = [x for x in overturned(checks.values()) if pair in x]
    assert len(lines) == 1, overturned(checks.values())
    lead = np.mean(ptdq["returns"]) - np.mean(ptsq["returns"])
    assert lines[0].startswith("FINDING OVERTURNED: [ptdq_vs_ptsq]")
    assert f"stored {lead:+.1f} (PTDQ ahead" in lines[0] and f"fresh {-lead:+.1f} (PTSQ ahead" in lines[0]
    assert f"paper: {checks['ptdq_vs_ptsq'].paper}" in lines[0]
    # the other findings read no quantized cell: not re-measured, not passed
    assert checks["keep90_at_0.05"].status is Status.NOT_REMEASURED


def test_a_keep90_count_moved_beyond_its_bootstrap_spread_overturns_it(stored, idle_returns):
    """Planted fault: every 5% pruned cell returns what its 50% counterpart returns (a ratio
    misread as 0.50). The count at 5% becomes the stored count at 50%."""
    fresh = {}
    for cid, fig in stored.items():
        if cid.endswith(("-l1-0.05", "-l2-0.05")):
            fresh[cid] = {**fig, "returns": stored[cid.replace("-0.05", "-0.50")]["returns"]}
    checks = by_key(check_fresh(stored, fresh, idle=idle_returns))
    keep = checks["keep90_at_0.05"]
    assert keep.status is Status.OVERTURNED
    assert keep.fresh.ours["kept"] == checks["keep90_at_0.50"].stored.ours["kept"] < keep.stored.ours["kept"]
    line = next(x for x in keep.overturned() if ": kept:" in x)
    assert f"stored {keep.stored.ours['kept']} of {keep.stored.ours['models']}" in line
    assert f"fresh {keep.fresh.ours['kept']} of {keep.fresh.ours['models']}" in line
    assert "CI of the change" in line and f"paper: {keep.paper}" in line
    assert checks["keep90_at_0.50"].status is Status.NOT_REMEASURED


def _kept_margins(stored, idle_returns):
    """Each model at 5% that keeps 90%, by how many standard errors its mean return lies above the
    line: (that, the margin in return, the cell, |baseline|)."""
    pairs = findings._by_pair(stored)
    untrained, _, _ = findings._partition(pairs, idle_returns)

    def se(fig):
        return np.std(fig["returns"], ddof=1) / np.sqrt(len(fig["returns"]))

    out = []
    for pair, v in pairs.items():
        if pair in untrained or "baseline" not in v:
            continue
        b = np.mean(v["baseline"]["returns"])
        line = b - (1 - findings.KEEP) * abs(b)
        for norm in ("l1", "l2"):
            fig = v[f"{norm}-0.05"]
            m = np.mean(fig["returns"])
            if m >= line:
                z = (m - line) / max(np.hypot(se(fig), findings.KEEP * se(v["baseline"])), 1e-9 * abs(b))
                out.append((z, m - line, f"{pair}-{norm}-0.05", abs(b)))
    return sorted(out)


def _moved_down(stored, cid, by):
    return {cid: {**stored[cid], "returns": [r - by for r in stored[cid]["returns"]]}}


def test_one_model_crossing_the_90_percent_line_by_a_hair_is_wobble_not_an_overturn(stored, idle_returns):
    """The kept model at 5% nearest the line, moved just below it: its count drops by one, a move
    its CI cannot resolve."""
    _, margin, cid, b = min(_kept_margins(stored, idle_returns), key=lambda m: m[1])
    keep = by_key(check_fresh(stored, _moved_down(stored, cid, margin + 1e-6 * b), idle=idle_returns))["keep90_at_0.05"]
    kept = next(o for o in keep.outcomes if o.figure == "kept")
    assert keep.fresh.ours["kept"] == keep.stored.ours["kept"] - 1
    assert kept.status is Status.WITHIN and keep.status is Status.WITHIN and keep.overturned() == []


def test_one_model_crossing_the_90_percent_line_by_a_resolved_margin_overturns_the_count(stored, idle_returns):
    """The smallest fault the keep-90% count resolves: one model, the one furthest above the line in
    standard errors, moved as far below it. Its count drops by one, and both sides' resamples agree."""
    _, margin, cid, _ = _kept_margins(stored, idle_returns)[-1]
    keep = by_key(check_fresh(stored, _moved_down(stored, cid, 2 * margin), idle=idle_returns))["keep90_at_0.05"]
    kept = next(o for o in keep.outcomes if o.figure == "kept")
    assert keep.fresh.ours["kept"] == keep.stored.ours["kept"] - 1
    assert kept.status is Status.OVERTURNED, kept


def test_noise_level_resampling_of_the_whole_grid_overturns_nothing(stored, idle_returns):
    """Each cell's returns replaced by its bootstrap twin (what a re-measurement on perturbed
    trajectories might give): the counts move by several models, and nothing is overturned.
    The rate over 50 such overlays is in docs/findings.md; here one, and one with both sides resampled."""
    rate = findings.noise_rate(stored, idle_returns, overlays=1)
    assert rate.overlays == 1 and rate.overturned == 0, rate.line()
    checks = check_fresh(findings.resampled(stored, 102), findings.resampled(stored, 101), idle=idle_returns)
    assert overturned(checks) == []
    # noise the counts do see: a check that judged any move would fail here
    moved = [o for c in checks for o in c.outcomes if o.status is Status.WITHIN and o.rule is findings.Rule.COUNT]
    assert len(moved) >= 3, [o.text() for c in checks for o in c.outcomes]


def test_the_bytes_finding_is_judged_exactly(stored, idle_returns):
    """Bytes do not vary: one compressed cell no smaller than its baseline overturns the finding."""
    cid = next(c for c in sorted(stored) if c.endswith("-fp16"))
    base = stored[cid.rsplit("-", 1)[0] + "-baseline"]
    fresh = {cid: {**stored[cid], "bytes_total": base["bytes_total"]}}
    checks = by_key(check_fresh(stored, fresh, idle=idle_returns))
    assert checks["bytes"].status is Status.OVERTURNED and cid in checks["bytes"].overturned()[0]


def _with_a_resolved_rss_sign(machine: dict) -> dict:
    """The stored machine figures with every PTDQ cell's RSS 1 MiB above its baseline's: a sign the
    finding resolves, whatever the stored deltas are (within this machine's noise, they need not
    resolve one). PTSQ's stay as stored."""
    out = dict(machine)
    for cid, m in machine.items():
        base = machine.get(cid.rsplit("-", 1)[0] + "-baseline", {}).get("memory")
        if cid.endswith("-ptdq") and "memory" in m and base:
            out[cid] = {**m, "memory": {k: (base[k] + 2**20 if k.startswith("rss_delta") and k in base else v)
                                        for k, v in m["memory"].items()}}
    return out


def test_a_reversed_resolved_rss_sign_overturns_and_an_unresolved_one_does_not(machine, stored, idle_returns):
    """Planted fault: every PTDQ and PTSQ cell's RSS delta against its baseline negated."""
    machine = _with_a_resolved_rss_sign(machine)
    fresh_machine = {}
    for cid, m in machine.items():
        base = machine.get(cid.rsplit("-", 1)[0] + "-baseline", {}).get("memory")
        if cid.endswith(("-ptdq", "-ptsq")) and "memory" in m and base:
            fresh_machine[cid] = {**m, "memory": {k: (2 * base[k] - v if k.startswith("rss_delta") and k in base else v)
                                                  for k, v in m["memory"].items()}}
    rows = findings._rss_rows(machine)
    assert findings._rss_rows({**machine, **fresh_machine}) == {k: [-x for x in v] for k, v in rows.items()}
    rss = by_key(check_fresh(stored, {}, machine=machine, fresh_machine=fresh_machine, idle=idle_returns))["rss"]
    resolved = [o for o in rss.outcomes if findings._resolved_sign(o.stored_ci)]
    assert resolved and all(o.status is Status.OVERTURNED for o in resolved), [o.text() for o in rss.outcomes]
    assert all(o.status is Status.WITHIN for o in rss.outcomes if not findings._resolved_sign(o.stored_ci))
    assert "more than baseline" in resolved[0].text() and "less than baseline" in resolved[0].text()


def test_inexact_int8_kernels_returns_are_not_laid_over_exact_ones(stored, idle_returns):
    """On a machine whose int8 kernels saturate, an int8 cell's returns describe the kernels: left
    out, so a saturated PTSQ cell does not overturn PTDQ against PTSQ."""
    pair = _resolved_pair(stored)
    ptsq = stored[f"{pair}-ptsq"]
    assert ptsq["runtime"] == "onnxruntime" and ptsq["int8_weight_tensors"] > 0
    fresh = {f"{pair}-ptsq": {**ptsq, "returns": [max(stored[f"{pair}-ptdq"]["returns"]) * 2] * len(ptsq["returns"])}}
    assert by_key(check_fresh(stored, fresh, idle=idle_returns))["ptdq_vs_ptsq"].status is Status.OVERTURNED
    checks = by_key(check_fresh(stored, fresh, idle=idle_returns, int8_exact=False))
    assert checks["ptdq_vs_ptsq"].status is Status.NOT_REMEASURED  # its returns did not count
    assert checks["ptdq_vs_ptsq"].fresh.ours == checks["ptdq_vs_ptsq"].stored.ours
    assert any("inexact int8 kernels" in n for n in checks["ptdq_vs_ptsq"].notes)


def test_an_update_names_each_finding_it_changes_old_and_new():
    before = {"bytes": {"ours": {"smaller": 9, "cells": 9}, "n": 9},
              "keep90_at_0.05": {"ours": {"kept": 33, "models": 48}, "n": 48},
              "machines": {"m1": {"rss": {"ours": {"a": 1}, "n": 4}}, "m2": {"rss": {"ours": {"a": 5}, "n": 4}}}}
    after = copy.deepcopy(before)
    after["keep90_at_0.05"]["ours"]["kept"] = 32
    changes = findings.changes(before, after, "m1")
    assert [c.key for c in changes] == ["keep90_at_0.05"]
    assert changes[0].line() == ("finding keep90_at_0.05: {'kept': 33, 'models': 48} (n=48) -> "
                                 "{'kept': 32, 'models': 48} (n=48)")
    after["machines"]["m1"]["rss"]["n"] = 5
    assert [c.key for c in findings.changes(before, after, "m1")] == ["keep90_at_0.05", "rss"]
    after["machines"]["m2"]["rss"]["ours"]["a"] = 6  # another machine's, recomputed by this update
    assert [c.key for c in findings.changes(before, after, "m1")] == ["keep90_at_0.05", "rss", "rss@m2"]
    assert findings.changes(before, before, "m1") == []


# ------------------------------------------------------------------- through the plugin (pytester)

FAKE_CELLS = '''
import json, os
import pytest
from rlbench.grid.record import CellRecord

FRESH = json.loads(open(os.environ["RLBENCH_TEST_FRESH"]).read())

@pytest.mark.parametrize("cell", sorted(FRESH))
def test_cell(cell, record_cell):
    record_cell(CellRecord.from_figures(cell, FRESH[cell], {"ratios": {}}, {"data": [1e-4, 1.1e-4], "iterations": 1}))
'''


@pytest.fixture
def plugin_run(pytester, tmp_path, monkeypatch, stored):
    """A pytest session whose fake cells record the given fresh figures against a copy of the stored
    baselines; the controller judges the findings at the end, as in ``pytest bench``."""
    base = tmp_path / "bl"
    base.mkdir()
    for name in ("figures.json", "idle.json"):
        (base / name).write_bytes((BASELINES / name).read_bytes())
    pytester.makepyfile(test_fake=FAKE_CELLS)
    # the session imports this checkout's rlbench, not whichever one is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))

    def _run(fresh, *args):
        path = tmp_path / "fresh.json"
        path.write_text(json.dumps(fresh))
        monkeypatch.setenv("RLBENCH_TEST_FRESH", str(path))
        return pytester.runpytest_subprocess("-p", "rlbench.plugin.pytest_plugin", "-p", "no:cacheprovider",
                                             f"--rlbench-baselines={base}", "--rlbench-no-latency-gate", *args)
    return _run, base


def _swapped(stored):
    pair = _resolved_pair(stored)
    ptdq, ptsq = stored[f"{pair}-ptdq"], stored[f"{pair}-ptsq"]
    return pair, {f"{pair}-ptdq": {**ptdq, "returns": ptsq["returns"]},
                  f"{pair}-ptsq": {**ptsq, "returns": ptdq["returns"]}}


def test_a_run_that_overturns_a_finding_fails_in_the_controller_with_both_figures(plugin_run, stored):
    _run, _ = plugin_run
    pair, fresh = _swapped(stored)
    res = _run(fresh, "-n", "2")
    res.assert_outcomes(passed=2)  # every cell passed its own test: the finding fails the run
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines(["*rlbench: the paper's findings over this run's figures*",
                              f"FINDING OVERTURNED: [[]ptdq_vs_ptsq[]] *pair {pair} PTDQ - PTSQ*: stored +* (PTDQ "
                              "ahead*, fresh -* (PTSQ ahead*; paper: PTDQ best in 40%*"])
    res.stdout.fnmatch_lines(["NOT RE-MEASURED   [[]keep90_at_0.05[]]*none of its * cells ran"])


def test_an_unchanged_run_passes_and_prints_each_finding_beside_the_paper(plugin_run, stored):
    _run, _ = plugin_run
    pair, swapped = _swapped(stored)
    res = _run({c: stored[c] for c in swapped})
    res.assert_outcomes(passed=2)
    assert res.ret == pytest.ExitCode.OK
    res.stdout.fnmatch_lines(["UNCHANGED         [[]ptdq_vs_ptsq[]]*| paper: *| stored (n=25): *| fresh (n=25): *"
                              "2 of 75 cells re-measured*"])
    assert "FINDING OVERTURNED" not in res.stdout.str()


def test_an_update_run_prints_each_finding_it_changes(plugin_run, stored):
    from rlbench.gate.store import BaselineStore
    from rlbench.core.versions import machine_id

    _run, base = plugin_run
    findings.record(BaselineStore(base, machine_id()))
    before = findings.read_stored(BaselineStore(base, machine_id()))["ptdq_vs_ptsq"]
    pair, fresh = _swapped(stored)
    res = _run(fresh, "--rlbench-update-baselines")
    res.assert_outcomes(passed=2)
    assert res.ret == pytest.ExitCode.OK  # recording what was measured is not a failure, but it is said
    after = findings.read_stored(BaselineStore(base, machine_id()))["ptdq_vs_ptsq"]
    assert after["ours"] != before["ours"]
    res.stdout.fnmatch_lines(["*rlbench: findings changed by this update*",
                              f"finding ptdq_vs_ptsq: {before['ours']} (n=25) -> {after['ours']} (n=25)"])
    # nothing else changed, and nothing is said about it
    assert "finding keep90_at_0.05:" not in res.stdout.str()
    res = _run(fresh, "--rlbench-update-baselines")
    res.stdout.fnmatch_lines(["*rlbench: findings changed by this update*", "no finding changed"])
