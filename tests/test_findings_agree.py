"""The report's Tables and the findings checks read the same figures by the same rules.

The report's findings section is :func:`rlbench.grid.findings.compute` over the file's figures, and
its Tables 1-3 apply the findings' rules (:func:`rlbench.grid.findings.keeps`,
:func:`~rlbench.grid.findings.highest_kept_ratio`, :func:`~rlbench.grid.findings.best_by_mean`) row
by row. Here every finding is derived a second time from the rows the report prints, and the two must
agree; a report built with another rule (another keep fraction, decisive wins) must not.
"""

from __future__ import annotations

import json

import pytest

from rlbench.grid import findings
from rlbench.report import tables
from rlbench.report.results import QUANT_METHODS, load_results
from rlbench.zoo.paper import load_paper
from tests.data.results_factory import make_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    # three pairs, one of them nearly untouched by pruning (L2 keeps to the highest ratio) and one
    # whose models sit close to the 90% line, where a keep fraction of 0.95 decides otherwise
    path = tmp_path_factory.mktemp("agree") / "out.json"
    doc = make_results(cells=[f"{p}-{v}" for p in ("SAC-HalfCheetah-v5", "PPO-Hopper-v5", "TD3-Hopper-v5")
                              for v in ("baseline", "ptdq", "ptsq", "qat", "l1-0.05", "l2-0.05", "l1-0.20",
                                        "l2-0.20", "l1-0.50", "l2-0.50")])
    # in one pair PTSQ leads PTDQ by a hair, within both CIs: best by mean, no decisive winner
    entries = {e["param"]: e["extra_info"]["figures"] for e in doc["benchmarks"]}
    ptdq, ptsq = entries["PPO-Hopper-v5-ptdq"], entries["PPO-Hopper-v5-ptsq"]
    ptsq.update(returns=[x * 1.001 for x in ptdq["returns"]], return_mean=ptdq["return_mean"] * 1.001,
                return_ci=[x * 1.001 for x in ptdq["return_ci"]])
    path.write_text(json.dumps(doc))
    return load_results(path)


def findings_from_tables(results, keep: float = tables.KEEP_FRACTION, best=None) -> dict:
    """The findings as the report's rows show them: keep-90% counts from Table 2's kept ratios, L2
    against L1 from Table 2's ratios, the best quantization per pair from Table 1's means."""
    paper = load_paper()
    t1, t2 = tables.table1(results, paper), tables.table2(results, paper, keep)
    untrained = {r.algo + "-" + r.env_id for r in t2 if r.baseline is not None and r.baseline.mean <= 0}
    trained = [r for r in t2 if r.baseline is not None and f"{r.algo}-{r.env_id}" not in untrained]
    out = {}
    for ratio in (0.05, 0.50):
        models = [c for r in trained for c in (r.l1, r.l2) if ratio in c.measured]
        out[f"keep90_at_{ratio:.2f}"] = {"kept": sum(ratio in c.kept for c in models), "models": len(models)}
    both = [r for r in trained if r.l1.measured and r.l2.measured]
    hi = [((r.l1.ratio or 0.0), (r.l2.ratio or 0.0)) for r in both]
    out["l2_vs_l1"] = {"l2_ge_l1": sum(b >= a for a, b in hi), "l2_gt_l1": sum(b > a for a, b in hi)}
    pick = best or (lambda stats: findings.best_by_mean({m: s.mean for m, s in stats.items() if s is not None}))
    share: dict[str, int] = {}
    for row in t1:
        stats = {m: row.ours[m] for m in QUANT_METHODS}
        if stats["ptdq"] is None or stats["ptsq"] is None:
            continue
        winner = pick(stats)
        if winner is not None:
            share[winner] = share.get(winner, 0) + 1
    out["best_share"] = share
    return out


def findings_from_checks(results) -> dict:
    found = {f.key: f for f in findings.compute(tables.figures_of(results))}
    out = {k: {"kept": found[k].ours["kept"], "models": found[k].ours["models"]}
           for k in ("keep90_at_0.05", "keep90_at_0.50")}
    out["l2_vs_l1"] = {k: found["l2_vs_l1"].ours[k] for k in ("l2_ge_l1", "l2_gt_l1")}
    out["best_share"] = found["ptdq_vs_ptsq"].ours["best_share"]
    return out


def test_the_reports_tables_and_the_findings_checks_agree_on_the_same_figures(results):
    checks = findings_from_checks(results)
    assert findings_from_tables(results) == checks
    assert checks["keep90_at_0.05"]["models"] == 6 and checks["l2_vs_l1"]["l2_ge_l1"] > 0  # not vacuous
    # the report's findings section is the checks' figures, whatever the Tables show
    found = tables.report_findings(results)
    assert tables.pruning_kept(found, 0.05) == (checks["keep90_at_0.05"]["kept"], 6)
    share = tables.quantization_best_share(tables.table1(results, load_paper()), found)["ours"]
    assert {m: n for m, n in share.items() if n} == checks["best_share"]


def test_a_report_with_another_keep_fraction_would_disagree(results):
    assert findings_from_tables(results, keep=0.95) != findings_from_checks(results)


def test_a_report_counting_decisive_wins_would_disagree(results):
    def decisive(stats):
        pick = tables.pick_best(stats)
        return pick.leader if pick.status == "best" else None

    assert findings_from_tables(results, best=decisive) != findings_from_checks(results)
