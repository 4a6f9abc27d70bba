from __future__ import annotations

import json

import pytest

from rlbench.core.errors import RLBenchError
from rlbench.grid.findings import compute
from rlbench.grid.matrix import cells, parse_cell
from rlbench.grid.shard import CELL_FIXED_S, STEP_S, cell_cost, parse_shard, partition


def test_shards_are_stable_disjoint_complete_and_balanced_by_cost():
    items = [(c.id, cell_cost(c, {})) for c in cells()]
    shards = partition(items, 4)
    assert shards == partition(list(reversed(items)), 4)  # independent of input order
    flat = [c for s in shards for c in s]
    assert sorted(flat) == sorted(i for i, _ in items) and len(flat) == len(set(flat))
    cost = dict(items)
    loads = [sum(cost[c] for c in s) for s in shards]
    assert max(loads) - min(loads) <= max(cost.values())  # LPT bound
    # balanced by cost, not by count: HumanoidStandup-heavy shards hold fewer cells
    assert max(loads) / min(loads) < 1.05


def test_a_cells_cost_is_its_stored_episode_steps_then_its_pairs_then_the_step_limit():
    from rlbench.grid.matrix import parse_cell

    stored = {"SAC-Hopper-v5-ptdq": {"lengths": [100, 300]}, "SAC-Hopper-v5-baseline": {"lengths": [1000] * 3}}
    hop = STEP_S["Hopper-v5"]
    assert cell_cost(parse_cell("SAC-Hopper-v5-ptdq"), stored) == pytest.approx(400 * hop + CELL_FIXED_S)
    # a cell not yet recorded costs what its pair's baseline stepped
    assert cell_cost(parse_cell("SAC-Hopper-v5-l1-0.05"), stored) == pytest.approx(3000 * hop + CELL_FIXED_S)
    # nothing stored: 50 episodes at the 1000-step limit
    assert cell_cost(parse_cell("TD3-Ant-v5-ptdq"), stored) == pytest.approx(
        50_000 * STEP_S["Ant-v5"] + CELL_FIXED_S)


def test_every_runner_gets_the_same_partition_whatever_its_machine(tmp_path, monkeypatch):
    """The partition reads only machine-independent figures: two runners whose machine files
    disagree (different CPUs, different ``cell_seconds``) still split the grid the same way."""
    from types import SimpleNamespace

    from rlbench.grid.shard import select_shard, stored_figures

    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"schema": 1, "cells": {
        "PPO-Hopper-v5-baseline": {"lengths": [40] * 50}, "PPO-HalfCheetah-v5-baseline": {"lengths": [1000] * 50}}}))
    items = [SimpleNamespace(callspec=SimpleNamespace(params={"cell": c})) for c in cells()]

    def runner(machine_seconds):
        store = SimpleNamespace(figures_path=figures, machine_figures=lambda cid: {"cell_seconds": machine_seconds})
        keep, _ = select_shard(items, 2, 3, stored_figures(store))
        return [i.callspec.params["cell"].id for i in keep]

    assert runner(1.0) == runner(99.0)
    hopper_baseline = next(c for c in cells() if c.id == "PPO-Hopper-v5-baseline")
    assert cell_cost(hopper_baseline, json.loads(figures.read_text())["cells"]) < 1.0 + CELL_FIXED_S


@pytest.mark.parametrize("bad", ["3", "0/2", "3/2", "a/b"])
def test_bad_shard_spec(bad):
    with pytest.raises(RLBenchError, match="--rlbench-shard"):
        parse_shard(bad)


def test_cell_ids_parse_and_round_trip():
    for c in cells()[:40]:
        assert parse_cell(c.id) == c
    assert parse_cell("SAC-HalfCheetah-v5-l2-0.30").variant.params() == {"ratio": 0.3}
    with pytest.raises(KeyError, match="not a cell id"):
        parse_cell("SAC-HalfCheetah-v5-l3-0.30")


def _fig(mean, n=20, spread=1.0, bytes_total=1000):
    """A stored cell's figures: per-episode returns with their bootstrap CI, as a recording stores them."""
    from rlbench.measure.stats import bootstrap_ci

    returns = [mean + spread * ((i % 5) - 2) for i in range(n)]
    return {"returns": returns, "return_ci": list(bootstrap_ci(returns)), "bytes_total": bytes_total}


def test_findings_count_what_the_figures_say():
    figs = {
        "PPO-Hopper-v5-baseline": _fig(1000, bytes_total=4000),
        "PPO-Hopper-v5-ptdq": _fig(990, bytes_total=1100),
        "PPO-Hopper-v5-ptsq": _fig(500, bytes_total=1200),
        "PPO-Hopper-v5-l1-0.05": _fig(950), "PPO-Hopper-v5-l1-0.50": _fig(300),
        "PPO-Hopper-v5-l2-0.05": _fig(980), "PPO-Hopper-v5-l2-0.50": _fig(920),
    }
    f = {x.key: x for x in compute(figs)}
    assert f["bytes"].ours == {"smaller": 6, "cells": 6}
    assert f["ptdq_vs_ptsq"].ours["ptdq_ge_ptsq"] == 1 and f["ptdq_vs_ptsq"].ours["ptdq_resolved_win"] == 1
    assert f["l2_vs_l1"].ours == {"l2_ge_l1": 1, "l2_gt_l1": 1}
    assert f["keep90_at_0.05"].ours == {"kept": 2, "models": 2}
    assert f["keep90_at_0.50"].ours == {"kept": 1, "models": 2}


def test_unresolvable_difference_is_a_tie_not_a_win():
    figs = {"SAC-Ant-v5-ptdq": _fig(1000, spread=400), "SAC-Ant-v5-ptsq": _fig(990, spread=400)}
    f = {x.key: x for x in compute(figs)}
    assert f["ptdq_vs_ptsq"].ours["ptdq_resolved_win"] == 0 and f["ptdq_vs_ptsq"].ours["ptdq_resolved_loss"] == 0


def test_int8_cells_without_exact_kernel_returns_are_left_out_of_return_findings():
    """A pair recorded only where int8 kernels saturate has no exact-kernel int8 returns in figures.json."""
    figs = {"SAC-Ant-v5-ptdq": _fig(1000), "SAC-Ant-v5-ptsq": _fig(500),
            "TD3-Ant-v5-ptdq": {"bytes_total": 10}, "TD3-Ant-v5-ptsq": {"bytes_total": 10}}
    f = {x.key: x for x in compute(figs)}
    assert f["ptdq_vs_ptsq"].n == 1 and f["ptdq_vs_ptsq"].ours["ptdq_ge_ptsq"] == 1


def test_pairs_with_a_non_positive_baseline_are_left_out_of_the_share_findings_and_named():
    """90% of a negative return is a lower bar than the return itself: any pruned copy of a policy
    that falls over at once would "keep" it."""
    figs = {
        "PPO-Hopper-v5-baseline": _fig(1000), "PPO-Hopper-v5-l1-0.05": _fig(950), "PPO-Hopper-v5-l2-0.05": _fig(500),
        "DDPG-Ant-v5-baseline": _fig(-200), "DDPG-Ant-v5-l1-0.05": _fig(-150), "DDPG-Ant-v5-l2-0.05": _fig(-100),
    }
    f = {x.key: x for x in compute(figs)}
    assert f["keep90_at_0.05"].ours == {"kept": 1, "models": 2, "excluded_untrained": ["DDPG-Ant-v5"]}
    assert f["l2_vs_l1"].n == 1 and f["l2_vs_l1"].ours["excluded_untrained"] == ["DDPG-Ant-v5"]


def test_tests_run_most_expensive_first_so_the_last_ones_are_short():
    from types import SimpleNamespace

    from rlbench.grid.matrix import parse_cell
    from rlbench.zoo.registry import pairs
    from rlbench.grid.shard import order_by_cost

    def item(name, **params):
        return SimpleNamespace(originalname=name, callspec=SimpleNamespace(params=params), name=name)

    hopper, standup = parse_cell("PPO-Hopper-v5-ptdq"), parse_cell("PPO-HumanoidStandup-v5-ptdq")
    zoo_standup = next(p for p in pairs() if p.algo == "PPO" and p.env_id == "HumanoidStandup-v5")
    items = [item("test_finding"), item("test_cell", cell=hopper), item("test_energy", cell=standup),
             item("test_recorded_return_reproduces", pair=zoo_standup), item("test_cell", cell=standup)]
    ordered = order_by_cost(items, {})  # nothing stored: every cost from the step limit
    # 50 HumanoidStandup episodes twice (the cell, which adds its timing and RSS, then the zoo
    # check), then Hopper's cell, then the cheap ones in their collection order
    assert [items.index(i) for i in ordered] == [4, 3, 1, 0, 2]


def test_stored_findings_are_read_by_name_and_compared_exactly(tmp_path):
    from rlbench.core.errors import BaselineError
    from rlbench.gate.store import BaselineStore
    from rlbench.grid.findings import Finding, moved, read_stored, record, stored_finding

    store = BaselineStore(tmp_path, "m1")
    assert read_stored(store) == {} and stored_finding(store, "bytes") is None
    (tmp_path / "findings.json").write_text("{not json")
    with pytest.raises(BaselineError, match=r"findings.json is corrupt .*git checkout -- .*findings.json"):
        read_stored(store)
    (tmp_path / "findings.json").write_text(json.dumps({"machines": {"m0": {"rss": {"ours": {}, "n": 1}}}}))
    store.figures_path.write_text(json.dumps({"schema": 1, "cells": {
        "PPO-Hopper-v5-baseline": _fig(1000, bytes_total=4000), "PPO-Hopper-v5-ptdq": _fig(990, bytes_total=1100)}}))
    assert "bytes" in record(store)
    assert stored_finding(store, "bytes")["ours"] == {"smaller": 1, "cells": 1}
    assert read_stored(store)["machines"]["m0"]["rss"]["n"] == 1  # another machine's RSS finding is kept
    rss = Finding("rss", "c", "p", {"ptdq:rss_delta_bytes": 24576}, 16)
    assert moved("rss", rss, {"ours": {"ptdq:rss_delta_bytes": 24576}, "n": 16}) is None
    # RSS medians of tens of KiB: a 4 KiB move shows (a 2 MiB tolerance could never fail)
    assert "finding rss moved" in moved("rss", rss, {"ours": {"ptdq:rss_delta_bytes": 20480}, "n": 16})


def test_share_findings_count_again_over_pairs_that_beat_doing_nothing_and_name_the_rest():
    """A standing ant earns about 995; a walking policy scoring 600 has learnt less than nothing, and
    its pruned copies keeping 90% of that says little. Unresolved against the idle return: kept."""
    figs = {
        "PPO-Hopper-v5-baseline": _fig(1000), "PPO-Hopper-v5-l1-0.05": _fig(950), "PPO-Hopper-v5-l2-0.05": _fig(500),
        "SAC-Ant-v5-baseline": _fig(600), "SAC-Ant-v5-l1-0.05": _fig(590), "SAC-Ant-v5-l2-0.05": _fig(580),
        "TD3-Ant-v5-baseline": _fig(990, spread=40), "TD3-Ant-v5-l1-0.05": _fig(100), "TD3-Ant-v5-l2-0.05": _fig(100),
    }
    idle = {"Ant-v5": {"returns": [995.0, 994.0, 996.0, 993.0], "ci": [993.5, 995.5]},
            "Hopper-v5": {"returns": [150.0, 160.0], "ci": [150.0, 160.0]}}
    f = {x.key: x for x in compute(figs, idle=idle)}
    assert f["keep90_at_0.05"].ours == {"kept": 3, "models": 6, "above_idle": {"kept": 1, "models": 4},
                                        "below_idle": ["SAC-Ant-v5"]}
    assert f["l2_vs_l1"].ours["above_idle"] == {"l2_ge_l1": 1, "l2_gt_l1": 0, "pairs": 2}
    # an environment with no stored idle return is named, its pairs counted as above
    f = {x.key: x for x in compute(figs, idle={"Hopper-v5": idle["Hopper-v5"]})}
    assert f["keep90_at_0.05"].ours["above_idle"] == {"kept": 3, "models": 6}
    assert f["keep90_at_0.05"].ours["idle_unrecorded"] == ["Ant-v5"]


def test_idle_returns_round_trip_and_a_broken_file_names_itself(tmp_path):
    from types import SimpleNamespace

    import numpy as np

    from rlbench.core.errors import BaselineError
    from rlbench.gate import idle
    from rlbench.runtime.predictors import ZeroPredictor

    assert idle.read(tmp_path) == {}
    rec = SimpleNamespace(returns=(1.0, 2.0), lengths=(10, 20), seeds=(1000000, 1000001), mean=1.5,
                          ci_low=1.0, ci_high=2.0)
    idle.record(tmp_path, "Hopper-v5", rec)
    idle.record(tmp_path, "Ant-v5", rec)
    assert sorted(idle.read(tmp_path)) == ["Ant-v5", "Hopper-v5"]
    assert idle.read(tmp_path)["Hopper-v5"]["returns"] == [1.0, 2.0]
    assert not list(tmp_path.glob("*.tmp"))
    assert ZeroPredictor(3).predict(np.ones((4, 11), np.float32)).tolist() == [[0.0] * 3] * 4
    for text, what in (("{ nope", "corrupt"), ('{"schema": 7, "envs": {}}', "schema 7"),
                       ('{"schema": 1, "envs": {"Ant-v5": {"returns": []}}}', "not an rlbench idle-return file"),
                       ('{"schema": 1, "envs": {"Ant-v5": {"returns": [1.0]}}}', "not an rlbench idle-return file")):
        idle.idle_path(tmp_path).write_text(text)
        with pytest.raises(BaselineError, match=what) as exc:
            idle.read(tmp_path)
        assert str(idle.idle_path(tmp_path)) in str(exc.value)


def test_idle_checks_are_ordered_by_their_step_limit():
    from types import SimpleNamespace

    from rlbench.grid.shard import order_by_cost

    def item(name, **params):
        return SimpleNamespace(originalname=name, callspec=SimpleNamespace(params=params), name=name)

    items = [item("test_finding"), item("test_idle_return_reproduces", env_id="Hopper-v5"),
             item("test_idle_return_reproduces", env_id="HumanoidStandup-v5")]
    assert [items.index(i) for i in order_by_cost(items, {})] == [2, 1, 0]


@pytest.mark.parametrize(("n", "stored", "update", "check", "message"), [
    (3, {"ours": {"a": 1}, "n": 3}, False, "pass", None),
    (3, {"ours": {"a": 2}, "n": 3}, False, "fail", "finding k moved: ours {'a': 1} (n=3) vs stored {'a': 2} (n=3); "
                                                  "tolerance: exact; test k"),
    (3, None, False, "fail", "finding k: no stored figure in F; record it with: pytest bench --rlbench-update-baselines"),
    (3, None, True, "skip", "finding k: recorded at the end of this --rlbench-update-baselines session"),
    (0, None, False, "skip", "finding k: no cells with the figures it needs are stored yet"),
    (0, {"ours": {}, "n": 4}, True, "fail", "finding k: F holds it over n=4 cells, but the stored figures give it over "
                                            "none now (cells lost from the baselines, or the computation broke); test k"),
])
def test_a_finding_is_checked_against_its_stored_figure(monkeypatch, n, stored, update, check, message):
    from rlbench.grid import findings

    monkeypatch.setattr(findings, "findings_path", lambda store: "F")
    monkeypatch.setattr(findings, "stored_finding", lambda store, key: stored)
    f = findings.Finding("k", "claim", "paper", {"a": 1}, n)
    got = findings.check_stored(None, "k", {"k": f}, update=update)
    assert (got.check.value, got.message) == (check, message)
    assert got.line == (f.line() if n else None)
