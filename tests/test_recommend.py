"""rlbench.report.recommend: the variant to deploy per pair, judged by the grid's return gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlbench.gate.tolerances import Tolerances
from rlbench.gate.checks import Status, check_return
from rlbench.report.build import build_document
from rlbench.cli.main import main
from rlbench.report.markup import slug, to_html, to_markdown
from rlbench.zoo.paper import PAPER_TABLES
from rlbench.report.recommend import (KEPT, NO_FP32, NO_VARIANT, NONE_ADMISSIBLE, RECOMMENDED, UNRESOLVED,
                                      WEAK_BASELINE, from_json, markdown, recommend, recommend_file, stored_results,
                                      to_json)
from rlbench.core.errors import ResultsError
from rlbench.report.results import ResultsFile, load_results
from tests.data.results_factory import edit, make_results, write_results

PAIR = "PPO-Hopper-v5"
SEEDS = range(1_000_000, 1_000_030)


def cells(*variants: str, pair: str = PAIR) -> list[str]:
    return [f"{pair}-{v}" for v in ("baseline",) + variants]


def results(tmp_path, doc: dict, name: str = "out.json") -> ResultsFile:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return load_results(path)


def set_returns(doc: dict, cell: str, returns) -> dict:
    def fn(entry):
        fig = entry["extra_info"]["figures"]
        fig["returns"] = [float(x) for x in returns]
        fig["seeds"] = list(SEEDS)[:len(returns)]
        fig.pop("return_mean"), fig.pop("return_ci")

    return edit(doc, cell, fn)


def only(recs, pair: str = PAIR):
    (p,) = [p for p in recs.pairs if p.pair == pair]
    return p


# ------------------------------------------------------------------------------------------ the rule


def test_a_variant_clearly_below_keep_is_excluded(tmp_path):
    # ptsq keeps 80% of fp32 over 30 episodes of 3% spread: resolved below 95%
    recs = recommend(results(tmp_path, make_results(cells("ptsq", "fp16"))))
    p = only(recs)
    assert p.status == RECOMMENDED and p.excluded == ("ptsq",) and p.admissible == 1
    assert p.smallest.variant == p.fastest.variant == "fp16"
    assert p.smallest.standing == KEPT


def test_a_difference_the_statistics_cannot_resolve_is_admissible(tmp_path):
    # ptdq's mean is 85% of fp32, but 6 wide episodes cannot resolve it at alpha = 0.001
    doc = make_results(cells("ptdq", "fp16"))
    doc = set_returns(doc, f"{PAIR}-ptdq", [400, 2600, 900, 1900, 1300, 550])
    p = only(recommend(results(tmp_path, doc)))
    assert "ptdq" not in p.excluded and p.admissible == 2
    assert p.smallest.variant == "ptdq" and p.smallest.standing == UNRESOLVED
    assert p.smallest.fraction == pytest.approx(np.mean([400, 2600, 900, 1900, 1300, 550]) / p.fp32_mean)
    assert p.smallest.p_value > 0.001
    assert "not resolved" in markdown(recommend(results(tmp_path, doc)))


def test_smallest_and_fastest_differ_when_they_should(tmp_path):
    # ptdq: 0.27 of the bytes, 1.4x fp32's time; l2-0.10: 0.81 of the bytes, 0.95x fp32's time (both torch)
    p = only(recommend(results(tmp_path, make_results(cells("ptdq", "l2-0.10")))))
    assert (p.smallest.variant, p.fastest.variant) == ("ptdq", "l2-0.10")
    assert p.smallest.bytes < p.fastest.bytes and p.fastest.latency_ratio < 1 < p.smallest.latency_ratio
    assert p.smallest.compression == pytest.approx(276_000 / p.smallest.bytes, rel=1e-3)  # as recorded
    md = markdown(recommend(results(tmp_path, make_results(cells("ptdq", "l2-0.10")))))
    assert "| smallest | ptdq (torch)" in md and "| fastest | l2-0.10 (torch)" in md


def test_the_same_variant_smallest_and_fastest_is_one_row(tmp_path):
    doc = make_results(cells("ptdq", "l2-0.10"))
    doc = edit(doc, f"{PAIR}-ptdq",
               lambda e: e["extra_info"]["machine_figures"]["ratios"].update({"variant/fp32": 0.5}))
    p = only(recommend(results(tmp_path, doc)))
    assert p.smallest.cell == p.fastest.cell == f"{PAIR}-ptdq"
    assert "| smallest, fastest | ptdq (torch)" in markdown(recommend(results(tmp_path, doc)))


def test_fastest_is_ranked_across_runtimes_by_the_pooled_yardsticks(tmp_path):
    # qat runs 1.8x ONNX Runtime fp32, l2-0.10 0.95x torch fp32; ONNX Runtime fp32 is 1.6 / 3.9 of torch fp32's
    # time, so qat (2.9x the NumPy reference) is faster than l2-0.10 (3.7x)
    doc = make_results(cells("qat", "l2-0.10"))
    fp32_returns = doc["benchmarks"][0]["extra_info"]["figures"]["returns"]
    doc = set_returns(doc, f"{PAIR}-qat", fp32_returns)  # qat admissible: fp32's own returns
    p = only(recommend(results(tmp_path, doc)))
    assert p.fastest.variant == "qat" and p.fastest.runtime == "onnxruntime" and p.fastest.latency_ratio > 1.7
    assert p.fastest.latency_vs_ref == pytest.approx(p.fastest.latency_ratio * 1.6, rel=0.05)
    assert "of onnxruntime fp32" in markdown(recommend(results(tmp_path, doc)))


def test_no_admissible_variant_says_so(tmp_path):
    doc = make_results(cells("ptsq", "qat"))
    p = only(recommend(results(tmp_path, doc)))
    assert p.status == NONE_ADMISSIBLE and p.smallest is None and p.fastest is None
    assert set(p.excluded) == {"ptsq", "qat"}
    assert f"| {PAIR} |" in markdown(recommend(results(tmp_path, doc)))
    assert ("**no admissible variant**: each of the 2 variants is resolved below 95% of fp32"
            in markdown(recommend(results(tmp_path, doc))))


def test_keep_one_admits_only_what_is_not_resolved_below_fp32(tmp_path):
    doc = make_results(cells("ptdq", "fp16"))  # ptdq 0.99 of fp32 over 30 episodes of 3% spread
    assert "ptdq" not in only(recommend(results(tmp_path, doc), keep=0.95)).excluded
    assert only(recommend(results(tmp_path, doc), keep=1.0)).admissible >= 1


def test_a_pair_no_better_than_doing_nothing_is_flagged_not_recommended(tmp_path):
    doc = make_results(cells("ptdq", "fp16"))
    idle = {"Hopper-v5": {s: 2000.0 + (s % 7) for s in SEEDS}}  # doing nothing outscores fp32's 1500
    p = only(recommend(results(tmp_path, doc), idle=idle))
    assert p.status == WEAK_BASELINE and p.smallest is None and p.fastest is None and p.admissible is None
    assert "**weak baseline**: fp32 return" in markdown(recommend(results(tmp_path, doc), idle=idle))


def test_a_variant_at_doing_nothing_is_excluded_where_fp32_beats_it(tmp_path):
    idle = {"Hopper-v5": {s: 900.0 + (s % 5) for s in SEEDS}}
    doc = make_results(cells("ptdq"))
    # 5 episodes at doing nothing's level: Mann-Whitney cannot resolve them, the doing-nothing test does
    doc = set_returns(doc, f"{PAIR}-ptdq", [700, 1000, 850, 950, 800])
    p = only(recommend(results(tmp_path, doc), idle=idle))
    assert p.excluded == ("ptdq",)


def test_a_pair_without_fp32_or_without_variants_is_named(tmp_path):
    recs = recommend(results(tmp_path, make_results([f"{PAIR}-ptdq", "SAC-HalfCheetah-v5-baseline"])))
    p, q = only(recs), only(recs, "SAC-HalfCheetah-v5")
    assert p.status == NO_FP32 and "out.json" in p.note
    assert q.status == NO_VARIANT and q.candidates == 0 and "out.json" in q.note
    assert "No compressed variant measured, fp32 only: SAC-HalfCheetah-v5." in markdown(recs)


def test_at_keep_ninety_admissible_is_the_gate_passing_the_return(tmp_path):
    """keep = 1 - rel_drop: a variant is admissible exactly where the grid's return gate, judging
    it against its own fp32 cell, does not fail it."""
    res = results(tmp_path, make_results(cells(*[v for v in ("ptdq", "ptsq", "qat", "fp16")],
                                                *[f"l{n}-{r:.2f}" for n in (1, 2) for r in (0.1, 0.2, 0.3, 0.4)])))
    tol = Tolerances()
    assert tol.returns.rel_drop == pytest.approx(0.10)
    p = only(recommend(res, keep=0.90, tolerances=tol))
    base = res.get(f"{PAIR}-baseline")
    failed = {r.cell.variant for r in res.records if not r.cell.is_baseline
              if check_return(r.id, r.returns, base.returns, tol.returns).status is Status.REGRESSED}
    assert set(p.excluded) == failed and 0 < len(failed) < 12 and p.admissible == 12 - len(failed)


# ------------------------------------------------------------------------------------------ output


def test_json_round_trip(tmp_path):
    doc = make_results(cells("ptdq", "l2-0.10", "ptsq") + [f"SAC-HalfCheetah-v5-{v}" for v in ("baseline", "qat")])
    recs = recommend(results(tmp_path, doc))
    assert from_json(json.loads(json.dumps(to_json(recs)))) == recs
    with pytest.raises(ResultsError, match="schema"):
        from_json({**to_json(recs), "schema": 99})


def test_cli_markdown_json_and_bad_input(tmp_path, capsys):
    path = write_results(tmp_path / "out.json", cells("ptdq", "l2-0.10"))
    assert main(["recommend", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# rlbench recommend: out.json") and "| smallest | ptdq (torch)" in out
    assert main(["recommend", str(path), "--json", "--keep", "0.9"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["keep"] == 0.9 and data["pairs"][0]["pair"] == PAIR and data["pairs"][0]["smallest"]["bytes"] > 0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for argv, words in ((["recommend", str(bad)], str(bad)), (["recommend", str(tmp_path / "none.json")], "no such"),
                        (["recommend", str(path), "--keep", "1.5"], "--keep")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("rlbench: error:") and words in err


def test_stored_figures_of_a_machine(tmp_path, capsys):
    """figures.json (returns, bytes) with machines/ID.json (latency), read as a results file."""
    doc = make_results(cells("ptdq", "l2-0.10"))
    root = tmp_path / "baselines"
    (root / "machines").mkdir(parents=True)
    figures = {e["param"]: e["extra_info"]["figures"] for e in doc["benchmarks"]}
    machine = {e["param"]: e["extra_info"]["machine_figures"] for e in doc["benchmarks"]}
    (root / "figures.json").write_text(json.dumps({"schema": 1, "cells": figures}))
    (root / "machines" / "m1.json").write_text(json.dumps({"schema": 1, "machine_id": "m1", "cells": machine,
                                                           "machine": {"int8_kernel": "exact"}}))
    res = stored_results(root, "m1")
    assert {r.id for r in res.records} == set(figures) and res.machine_ids() == ["m1"]
    assert res.get(f"{PAIR}-ptdq").ratios["variant/fp32"] == machine[f"{PAIR}-ptdq"]["ratios"]["variant/fp32"]
    p = only(recommend_file(machine="m1", baselines=root))
    assert (p.smallest.variant, p.fastest.variant) == ("ptdq", "l2-0.10")
    assert main(["recommend", "--machine", "m2", "--baselines", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(root / "machines" / "m2.json") in err and "m1" in err


def test_the_report_has_the_recommend_section(tmp_path):
    doc = build_document(results(tmp_path, make_results(cells("ptdq", "l2-0.10"))), PAPER_TABLES)
    md, html = to_markdown(doc), to_html(doc)
    heading = "Which variant to deploy (return kept ≥ 95% of fp32)"
    assert f"## {heading}" in md and md.index(heading) < md.index("Table 1")
    assert f'<h2 id="{slug(heading)}">{heading}</h2>' in html and ">smallest</td>" in html
