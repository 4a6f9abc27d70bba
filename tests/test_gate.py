"""The gate on the stored figures: one judgement for the grid and for ``rlbench compare``, and the
smallest faults each check is built to catch, planted in real cells."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from rlbench.gate.store import BaselineStore
from rlbench.gate.tolerances import Tolerances
from rlbench.grid.cell import check_cell, idle_by_seed
from rlbench.grid.record import CellRecord
from rlbench.gate.checks import (
    CELL_METRICS,
    CellFigures,
    Metric,
    Status,
    check_methods,
    check_return,
    judge_cell,
    rss_limit,
)
from rlbench.core.paths import baselines_dir

#: The stored machine whose figures these tests plant faults in (the most complete one).
MACHINE = "x86_64-2cpu-3b5c9dc18c"
#: The row the verdict tests plant faults in: a pair at the paper's return at its full budget, so not
#: retrained (a retrained pair's figures leave MACHINE with its old policy).
ROW = "TRPO-Hopper-v5"


@pytest.fixture(scope="module")
def stored():
    root = baselines_dir()
    figures = json.loads((root / "figures.json").read_text())["cells"]
    machine = json.loads((root / "machines" / f"{MACHINE}.json").read_text())["cells"]
    return figures, machine


@pytest.fixture(scope="module")
def noise():
    """A measured RSS noise (``rlbench rss-noise``): the one stored for a machine of this kind."""
    for path in sorted((baselines_dir() / "machines").glob("*.json")):
        found = json.loads(path.read_text()).get("rss_noise")
        if found:
            return found["bytes"]
    pytest.fail("no machine in baselines/machines holds an rss_noise; measure one with: rlbench rss-noise --write")


@pytest.fixture(scope="module")
def tol():
    return Tolerances.load(baselines_dir() / "tolerances.toml")


def _store_of(tmp_path, figures, machine, cells, noise=None):
    (tmp_path / "machines").mkdir(parents=True, exist_ok=True)
    (tmp_path / "figures.json").write_text(json.dumps({"schema": 1, "cells": {c: figures[c] for c in cells}}))
    doc = {"schema": 1, "machine_id": MACHINE, "cells": {c: machine[c] for c in cells}}
    if noise is not None:
        doc["rss_noise"] = {"bytes": noise}
    (tmp_path / "machines" / f"{MACHINE}.json").write_text(json.dumps(doc))
    shutil.copy(baselines_dir() / "tolerances.toml", tmp_path / "tolerances.toml")
    shutil.copy(baselines_dir() / "idle.json", tmp_path / "idle.json")
    return BaselineStore(tmp_path, MACHINE)


def _entry(cell, figures, machine):
    from tests.data.results_factory import make_entry

    e = make_entry(cell, machine_id=MACHINE)
    e["extra_info"]["figures"], e["extra_info"]["machine_figures"] = copy.deepcopy(figures), copy.deepcopy(machine)
    return e


def _doc(entries):
    from tests.data.results_factory import make_results

    doc = make_results([])
    doc["benchmarks"] = entries
    return doc


def test_the_grid_and_compare_give_the_same_verdicts_on_the_same_figures(tmp_path, stored, noise):
    """The stored figures of a row as OLD (and as the grid's store), faults planted in NEW: every
    cell gets the same verdicts, metric, status and line, from both paths."""
    from rlbench.gate.idle import by_seed
    from rlbench.report.compare import compare_results
    from rlbench.report.results import load_results

    figures, machine = stored
    cells = sorted(c for c in machine if c.startswith(ROW + "-") and c in figures)
    store = _store_of(tmp_path / "store", figures, machine, cells, noise)
    idle = idle_by_seed(store, "Hopper-v5")
    new = {c: (copy.deepcopy(figures[c]), copy.deepcopy(machine[c])) for c in cells}
    ptdq, l1, base, l2 = f"{ROW}-ptdq", f"{ROW}-l1-0.30", f"{ROW}-baseline", f"{ROW}-l2-0.20"
    new[ptdq][0]["returns"] = [idle[s] for s in figures[ptdq]["seeds"]]  # the variant does nothing
    new[l1][1]["ratios"]["variant/fp32"] *= 1.6  # slower beyond its bar, CI and all
    new[l1][1]["ratio_ci"]["variant/fp32"] = [x * 1.6 for x in new[l1][1]["ratio_ci"]["variant/fp32"]]
    new[base][1]["memory"]["rss_delta_bytes"] += 4 << 20  # the model costs 4 MiB more
    r, (lo, hi) = new[l2][1]["ratios"]["variant/fp32"], new[l2][1]["ratio_ci"]["variant/fp32"]
    new[l2][1]["ratios"]["variant/fp32"], new[l2][1]["ratio_ci"]["variant/fp32"] = r * 1.3, [r * 0.9, r * 1.7]
    del new[f"{ROW}-fp16"][1]["ratios"]["variant/fp32"]  # a stored ratio this run did not measure

    grid = {c: check_cell(CellRecord.from_figures(c, f, m), store) for c, (f, m) in new.items()}
    old_path, new_path = tmp_path / "old.json", tmp_path / "new.json"
    old_path.write_text(json.dumps(_doc([_entry(c, figures[c], machine[c]) for c in cells])))
    new_path.write_text(json.dumps(_doc([_entry(c, f, m) for c, (f, m) in new.items()])))
    cmp = compare_results(load_results(old_path), load_results(new_path), store.tolerances(),
                          idle=by_seed(store.root), rss_noise=store.machine_rss_noise())
    via_compare = {c.cell: list(c.verdicts) for c in cmp.cells}

    def shape(vs):  # compare's hint for recording differs by design ("a run of OLD's version...")
        return [(v.metric, v.status, v.message.split("; record")[0]) for v in vs]

    assert set(via_compare) == set(grid)
    for c in cells:
        assert shape(via_compare[c]) == shape(grid[c]), c
    failed = {c: sorted(str(v.metric) for v in vs if v.failed) for c, vs in grid.items()}
    assert {c: m for c, m in failed.items() if m} == {ptdq: ["return"], l1: ["latency"], base: ["memory"]}
    by_status = {c.cell: c.status for c in cmp.cells}
    assert by_status[l2] is Status.UNSETTLED and by_status[f"{ROW}-fp16"] is Status.UNGATED
    assert "no better than doing nothing" in next(v.message for v in grid[ptdq] if v.failed)


def test_doing_nothing_fails_every_stored_cell_whose_return_beats_doing_nothing(stored, tol):
    """Every cell with stored returns, its new returns replaced by the zero-action returns on its own
    seeds: every cell whose stored CI lies above doing nothing's fails, 10-episode cells included."""
    from rlbench.gate import idle
    from rlbench.gate.checks import idle_bar

    figures, _ = stored
    idle_returns = idle.by_seed(baselines_dir())
    beats, passed = 0, []
    for cell, fig in figures.items():
        if "returns" not in fig:
            continue
        per_seed = idle_returns["-".join(cell.split("-")[1:3])]
        nothing = [per_seed[s] for s in fig["seeds"]]
        _, _, idle_hi = idle_bar(per_seed, fig["seeds"])
        if fig["return_ci"][0] <= idle_hi:
            continue
        beats += 1
        v = check_return(cell, nothing, fig["returns"], tol.returns, idle=per_seed, seeds=fig["seeds"])
        if not v.failed:
            passed.append(cell)
    assert beats > 500 and not passed, f"{len(passed)} of {beats} cells passed doing nothing: {passed[:5]}"


def test_a_resampled_grid_fails_the_return_check_in_about_half_a_cell_at_most(stored, tol):
    """Every stored cell's returns resampled (a bootstrap draw: a fresh sample of the same policy, as
    after a library upgrade): the return gate's false failures over the whole grid, 3 draws."""
    from rlbench.gate import idle

    figures, _ = stored
    idle_returns = idle.by_seed(baselines_dir())
    rng = np.random.default_rng(7)
    cells = [(c, np.asarray(f["returns"]), f["seeds"]) for c, f in figures.items() if "returns" in f]
    false = []
    for _ in range(3):
        for cell, old, seeds in cells:
            new = rng.choice(old, size=old.size, replace=True)
            per_seed = idle_returns["-".join(cell.split("-")[1:3])]
            if check_return(cell, new, old, tol.returns, idle=per_seed, seeds=seeds).failed:
                false.append(cell)
    assert len(false) <= 3, false  # docs/gates.md: about 0.05 per grid over 40 draws


def test_a_doubled_rss_delta_fails_every_cell_above_the_noise(stored, tol, noise):
    figures, machine = stored
    above, missed = 0, []
    for cell, m in machine.items():
        for key, value in (m.get("memory") or {}).items():
            if not key.startswith("rss_delta") or value <= tol.memory.rss_noise_k * noise[key]:
                continue
            above += 1
            new = CellFigures(cell, memory={key: 2 * value})
            old = CellFigures(cell, memory={key: value})
            if not any(v.failed for v in judge_cell(new, old, tol, scope=frozenset({Metric.MEMORY}),
                                                     rss_noise=noise)):
                missed.append((cell, key))
    assert above > 500 and not missed
    # and a move of the measured noise itself, in either direction, passes in every cell
    for key, value in noise.items():
        for stored_delta in (50_000, 1_000_000, 3_000_000):
            assert rss_limit(stored_delta, tol.memory, value) > value


def test_an_int8_slowdown_alone_fails_a_row_of_int8_cells_naming_the_kernels(stored, tol):
    """The method-level gate on one environment's row of int8 ONNX Runtime cells (the stored ratios,
    each cell jittered as in a clean run): 15% slower int8 sessions fail, naming the kernel class;
    the same row clean passes."""
    from rlbench.gate.checks import kernel_class

    figures, machine = stored
    rng = np.random.default_rng(11)
    int8 = {c: m["ratios"] for c, m in machine.items() if c in figures
            and "variant/fp32" in m.get("ratios", {}) and kernel_class(figures[c]) == "onnxruntime-int8"}
    # the environment with the most such cells stored: a retrained pair's leave with its old policy
    env = max(sorted({c.split("-")[1] for c in int8}), key=lambda e: sum(c.split("-")[1] == e for c in int8))
    row = {c: r for c, r in int8.items() if c.split("-")[1] == env}
    kernels = {c: kernel_class(figures[c]) for c in row}
    assert len(row) >= 15, f"{env}: {len(row)} int8 cells stored on {MACHINE}"

    def run(slow):
        return {c: ({**r, "variant/fp32": r["variant/fp32"] * float(rng.lognormal(0, 0.04)) * slow}, r)
                for c, r in row.items()}

    clean = check_methods(run(1.0), tol.latency, kernels)
    assert not any(v.failed for v in clean), [v.message for v in clean if v.failed]
    slow = [v.message for v in check_methods(run(1.15), tol.latency, kernels) if v.failed]
    kernel_line = next(m for m in slow if m.startswith("kernels onnxruntime-int8 (variant/fp32)"))
    for method in {c.split("-")[3] for c in row}:  # the line names each method on those kernels
        assert f" {method} " in kernel_line.split("its methods' medians:")[1], kernel_line


def test_idle_is_stored_on_every_seed_a_cell_uses():
    from rlbench.grid import cell
    from rlbench.gate import idle

    assert idle.EPISODES == cell.MAX_EPISODES
    for env, e in idle.read(baselines_dir()).items():
        assert len(e["seeds"]) == cell.MAX_EPISODES, env


def test_every_cell_metric_is_judged_somewhere():
    assert CELL_METRICS | {Metric.ENERGY} == frozenset(Metric)


def test_rss_noise_is_the_largest_move_from_the_stored_deltas_and_is_stored(tmp_path, stored, monkeypatch):
    from rlbench.grid import rss_noise

    figures, machine = stored
    cells = [f"{ROW}-baseline", f"{ROW}-l1-0.30"]
    store = _store_of(tmp_path, figures, machine, cells)
    moves = {cells[0]: 40_960, cells[1]: -122_880}
    current = iter(cells)

    def memory(shipped, art):  # the deltas "measured now": the stored ones, moved
        c = next(current)
        return {k: v + moves[c] for k, v in machine[c]["memory"].items()}

    monkeypatch.setattr(rss_noise, "cell_memory", memory)
    monkeypatch.setattr(rss_noise, "build_variant", lambda c, s: None)
    monkeypatch.setattr(rss_noise, "load_shipped", lambda a, e: None)
    rec = rss_noise.measure(store, cells, progress=lambda line: None)
    assert rec.bytes == {k: 122_880 for k in machine[cells[0]]["memory"] if k.startswith("rss_delta")}
    store.record_rss_noise(rec.to_json())
    assert BaselineStore(tmp_path, MACHINE).machine_rss_noise() == {k: 122_880.0 for k in rec.bytes}
    with pytest.raises(Exception, match="no RSS figures stored"):
        rss_noise.measure(store, [f"{ROW}-ptdq"], progress=lambda line: None)


def test_rss_noise_measures_the_onnx_runtime_graphs_by_default_and_adds_a_checking_runs_moves(tmp_path, stored,
                                                                                              monkeypatch):
    """The default cells hold fp16 and int8 graphs, whose deltas move most; a cell also in a checking
    run keeps the larger of its two moves."""
    from rlbench.grid import rss_noise

    figures, machine = stored
    cells = [f"{ROW}-baseline", f"{ROW}-fp16", f"{ROW}-l1-0.30"]
    store = _store_of(tmp_path, figures, machine, cells)
    assert rss_noise.default_cells(store) == sorted(cells[:2])
    monkeypatch.setattr(rss_noise, "cell_memory",
                        lambda shipped, art: {k: v + 8192 for k, v in machine[f"{ROW}-fp16"]["memory"].items()})
    monkeypatch.setattr(rss_noise, "build_variant", lambda c, s: None)
    monkeypatch.setattr(rss_noise, "load_shipped", lambda a, e: None)
    checking = {f"{ROW}-fp16": {"rss_delta_bytes": -300_000}}
    rec = rss_noise.measure(store, [f"{ROW}-fp16"], progress=lambda line: None, moves=checking)
    assert rec.bytes["rss_delta_bytes"] == 300_000 and rec.moves[f"{ROW}-fp16"]["rss_delta_bytes_arena_off"] == 8192
