"""rlbench.report: loading results files, Tables 1-3, plots, report.md/html, github-action-benchmark export."""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from rlbench.report.build import PLOTS, build_document, pareto_name, png_size, write_report
from rlbench.report.markup import to_markdown
from rlbench.zoo.paper import load_paper
from rlbench.report.summary import argmax_flip
from rlbench.cli.main import main
from rlbench.report.gab import export_gab
from rlbench.zoo.paper import PAPER_TABLES
from rlbench.core.errors import ResultsError
from rlbench.report.results import ReturnStat, load_results, parse_cell_id
from rlbench.report.tables import (MISSING, best_pruning, highest_surviving_ratio, keeps, pick_best, prune_choice,
                                   table1, table2, table3)
from tests.data.results_factory import SAMPLE, SAMPLE_CELLS, make_entry, make_results, write_results

# ------------------------------------------------------------------------------------------ cell ids


@pytest.mark.parametrize("cell, algo, env, method, ratio, variant", [
    ("SAC-HalfCheetah-v5-baseline", "SAC", "HalfCheetah-v5", "baseline", None, "baseline"),
    ("SAC-HalfCheetah-v5-ptdq", "SAC", "HalfCheetah-v5", "ptdq", None, "ptdq"),
    ("TD3-HumanoidStandup-v5-l2-0.30", "TD3", "HumanoidStandup-v5", "l2", 0.30, "l2-0.30"),
    ("PPO-Hopper-v5-lowrank-0.50", "PPO", "Hopper-v5", "lowrank", 0.50, "lowrank-0.50"),
    ("DDPG-Ant-v5-gmp-0.90", "DDPG", "Ant-v5", "gmp", 0.90, "gmp-0.90"),
    ("TRPO-Humanoid-v5-int8pc", "TRPO", "Humanoid-v5", "int8pc", None, "int8pc"),
    ("SAC-Hopper-v5-fp16", "SAC", "Hopper-v5", "fp16", None, "fp16"),
])
def test_parse_cell_id(cell, algo, env, method, ratio, variant):
    c = parse_cell_id(cell)
    assert (c.algo, c.env_id, c.method, c.ratio, c.variant, c.text) == (algo, env, method, ratio, variant, cell)
    assert c.pair == f"{algo}-{env}" and c.env_short == env.split("-")[0]


@pytest.mark.parametrize("bad", ["A-baseline", "SAC-HalfCheetah-baseline", "XYZ-Hopper-v5-baseline",
                                 "SAC-Hopper-v5-l2-", "SAC-Hopper-v5-L2-0.30", 42])
def test_parse_cell_id_rejects_unknown_formats_naming_file_and_cell(bad):
    with pytest.raises(ResultsError) as e:
        parse_cell_id(bad, "out.json")
    assert "out.json" in str(e.value) and repr(bad) in str(e.value)


def test_variant_order_is_the_reports():
    ids = ["SAC-Hopper-v5-l2-0.10", "SAC-Hopper-v5-l1-0.70", "SAC-Hopper-v5-qat", "SAC-Hopper-v5-baseline",
           "SAC-Hopper-v5-fp16", "SAC-Hopper-v5-ptdq", "SAC-Hopper-v5-l1-0.05", "PPO-Hopper-v5-baseline"]
    got = [c.text for c in sorted(map(parse_cell_id, ids), key=lambda c: c.sort_key())]
    assert got == ["PPO-Hopper-v5-baseline", "SAC-Hopper-v5-baseline", "SAC-Hopper-v5-ptdq", "SAC-Hopper-v5-qat",
                   "SAC-Hopper-v5-fp16", "SAC-Hopper-v5-l1-0.05", "SAC-Hopper-v5-l1-0.70", "SAC-Hopper-v5-l2-0.10"]


# ------------------------------------------------------------------------------------------ loading


def test_load_sample_file_into_records():
    res = load_results(SAMPLE)
    assert [r.id for r in res.records] == ["PPO-Hopper-v5-baseline", "SAC-HalfCheetah-v5-baseline",
                                           "SAC-HalfCheetah-v5-ptdq", "SAC-HalfCheetah-v5-l2-0.10"]
    base, ptdq = res.get("SAC-HalfCheetah-v5-baseline"), res.get("SAC-HalfCheetah-v5-ptdq")
    assert base.bytes_total is None and base.compression_factor is None  # missing stays missing
    assert "variant/fp32" not in base.ratios and "torch-fp32/numpy-ref" in base.ratios
    assert ptdq.bytes_total > 0 and ptdq.ratio_ci["variant/fp32"][0] < ptdq.ratios["variant/fp32"]
    assert base.energy.available is False and base.energy.joules_per_1000 is None
    assert base.energy.describe().startswith("no meter: ")
    assert len(base.returns) == 10 and base.latency_median_s == base.stats["median"]
    assert res.machine_ids() == ["x86_64-2cpu-0123456789"] and res.versions()["torch"] == ["2.13.0"]
    with pytest.raises(AttributeError):
        base.returns = ()  # frozen
    with pytest.raises(TypeError):
        base.ratios["x"] = 1.0  # read-only view


def test_return_stat_derived_from_returns_when_mean_and_ci_are_absent(tmp_path):
    doc = make_results(["PPO-Hopper-v5-baseline"], episodes=12)
    fig = doc["benchmarks"][0]["extra_info"]["figures"]
    del fig["return_mean"], fig["return_ci"]
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    st = load_results(p).records[0].return_stat()
    assert st.n == 12 and st.lo < st.mean < st.hi and st.mean == pytest.approx(sum(fig["returns"]) / 12)


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_not_json_names_the_file(tmp_path):
    p = _write(tmp_path, "out.json", "<html>rate limited</html>")
    with pytest.raises(ResultsError, match=r"out\.json is not JSON"):
        load_results(p)


def test_truncated_json_names_the_file_and_says_truncated(tmp_path):
    full = json.dumps(make_results(["PPO-Hopper-v5-baseline"]), indent=1)
    for cut in (len(full) // 2, len(full) - 3, 200):
        p = _write(tmp_path, "cut.json", full[:cut])
        with pytest.raises(ResultsError) as e:
            load_results(p)
        assert str(p) in str(e.value) and "truncated" in str(e.value)


@pytest.mark.parametrize("doc, what", [
    ({"hello": 1}, "no 'benchmarks' list"),
    ([1, 2], "no 'benchmarks' list"),
    ({"benchmarks": [{"name": "test_x", "param": None, "extra_info": {}, "stats": {}}]}, "has no extra_info.figures"),
])
def test_non_rlbench_json_names_the_file(tmp_path, doc, what):
    p = _write(tmp_path, "other.json", json.dumps(doc))
    with pytest.raises(ResultsError) as e:
        load_results(p)
    assert str(p) in str(e.value) and "not an rlbench results file" in str(e.value) and what in str(e.value)


def test_other_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(ResultsError, match="no such results file"):
        load_results(tmp_path / "absent.json")
    with pytest.raises(ResultsError, match="is empty"):
        load_results(_write(tmp_path, "empty.json", "\n"))
    doc = make_results(["PPO-Hopper-v5-baseline"])
    doc["benchmarks"][0]["extra_info"]["figures"]["returns"] = "many"
    with pytest.raises(ResultsError, match=r"bad\.json: cell PPO-Hopper-v5-baseline: figures\.returns"):
        load_results(_write(tmp_path, "bad.json", json.dumps(doc)))
    doc = make_results(["PPO-Hopper-v5-baseline"])
    doc["benchmarks"][0]["param"] = doc["benchmarks"][0]["params"]["cell"] = "Hopper-baseline"
    with pytest.raises(ResultsError, match=r"odd\.json: cell 'Hopper-baseline' is not an rlbench cell id"):
        load_results(_write(tmp_path, "odd.json", json.dumps(doc)))


# ------------------------------------------------------------------------------------------ tables


def _stat(mean, hw=5.0, n=30):
    return ReturnStat(mean, mean - hw, mean + hw, n)


def test_pick_best_only_when_cis_do_not_overlap():
    best = pick_best({"baseline": _stat(100), "ptdq": _stat(80), "ptsq": None, "qat": _stat(50)})
    assert (best.status, best.leader) == ("best", "baseline") and best.describe() == "baseline ★"
    tie = pick_best({"baseline": _stat(100), "ptdq": _stat(95), "qat": _stat(50)})
    assert tie.status == "tie" and tie.tied == ("baseline", "ptdq")
    assert tie.describe() == "tie (CIs overlap): baseline, ptdq"
    # the runner-up is clear, but a third variant's wide CI reaches the leader's: still a tie
    assert pick_best({"a": _stat(100), "b": _stat(85), "c": _stat(60, hw=45)}).tied == ("a", "c")
    assert pick_best({"baseline": _stat(1), "ptdq": None}).status == "n/a"


def test_keeps_ninety_percent_rule():
    assert keeps(900.0, 1000.0) and not keeps(899.9, 1000.0)
    assert keeps(-110.0, -100.0) and not keeps(-110.1, -100.0)  # negative baseline: 10% of its magnitude
    # literal rule: the highest measured ratio that keeps, even past a failing one
    assert highest_surviving_ratio(1000.0, {0.05: 990.0, 0.10: 850.0, 0.15: 905.0, 0.20: 700.0}) == 0.15
    assert highest_surviving_ratio(1000.0, {0.05: 850.0}) is None


def _exact(cell: str, mean: float, hw: float = 2.0) -> dict:
    """An entry whose mean return is exactly ``mean`` (three episodes, symmetric CI)."""
    e = make_entry(cell, episodes=3)
    e["extra_info"]["figures"].update({"returns": [mean - 1.0, mean, mean + 1.0], "return_mean": mean,
                                       "return_ci": [mean - hw, mean + hw]})
    return e


def test_table2_and_table3_on_a_constructed_example(tmp_path):
    pair = "TD3-Hopper-v5"
    l1 = {0.05: 990.0, 0.10: 950.0, 0.15: 900.0, 0.20: 899.0, 0.25: 700.0}   # 0.15 keeps exactly 90%
    l2 = {0.05: 995.0, 0.10: 960.0, 0.15: 930.0, 0.20: 905.0, 0.25: 880.0}   # 0.20
    entries = [_exact(f"{pair}-baseline", 1000.0)]
    entries += [_exact(f"{pair}-l1-{r:.2f}", m) for r, m in l1.items()]
    entries += [_exact(f"{pair}-l2-{r:.2f}", m) for r, m in l2.items()]
    # a pair where nothing survives L1 and L2 was not run, and one with equal ratios
    entries += [_exact("SAC-Ant-v5-baseline", 4000.0), _exact("SAC-Ant-v5-l1-0.05", 3000.0)]
    entries += [_exact("PPO-Ant-v5-baseline", 100.0), _exact("PPO-Ant-v5-l1-0.10", 95.0),
                _exact("PPO-Ant-v5-l2-0.10", 96.0)]
    doc = make_results([])
    doc["benchmarks"] = entries
    res = load_results(_write(tmp_path, "t2.json", json.dumps(doc)))
    rows = {(r.algo, r.env_id): r for r in table2(res, PAPER_TABLES)}
    td3 = rows["TD3", "Hopper-v5"]
    assert (td3.l1.status, td3.l1.ratio, td3.l1.stat.mean) == ("ok", 0.15, 900.0)
    assert (td3.l2.status, td3.l2.ratio) == ("ok", 0.20)
    assert td3.paper == PAPER_TABLES["table2_pruning"]["TD3"]["Hopper"]
    sac = rows["SAC", "Ant-v5"]
    assert sac.l1.status == "none" and sac.l2.status == "missing" and sac.l2.describe() == MISSING
    assert rows["SAC", "Hopper-v5"].l1.status == "missing"  # not in the file at all
    t3 = {(r.algo, r.env_id): r for r in table3(res, PAPER_TABLES)}
    assert t3["TD3", "Hopper-v5"].ours.describe() == "L2 0.20" and t3["TD3", "Hopper-v5"].agrees is True
    assert t3["SAC", "Ant-v5"].ours.status == "none"
    assert t3["PPO", "Ant-v5"].ours.describe() == "L1 = L2 0.10 (tie, CIs overlap)"
    only = {rec.cell.variant: rec for rec in res.records if rec.cell.pair == pair}
    assert prune_choice(only, "l1", keep=0.95).ratio == 0.10
    assert best_pruning(prune_choice(only, "l1"), prune_choice({}, "l2")).status == "ok"


# ------------------------------------------------------------------------------------------ report


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One small report, written once: SAC HalfCheetah without QAT (a missing cell), a few ratios."""
    root = tmp_path_factory.mktemp("report")
    cells = ["SAC-HalfCheetah-v5-baseline", "SAC-HalfCheetah-v5-ptdq", "SAC-HalfCheetah-v5-ptsq"]
    cells += [f"SAC-HalfCheetah-v5-{n}-{r:.2f}" for n in ("l1", "l2") for r in (0.05, 0.10, 0.20, 0.40)]
    cells += ["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptdq", "PPO-Hopper-v5-qat", "PPO-Hopper-v5-int8pc"]
    src = write_results(root / "out.json", cells, episodes=20)
    files = write_report(src, root / "rep")
    return src, files


def test_report_writes_markdown_html_and_pngs(report):
    _, files = report
    out = files.markdown.parent
    assert files.markdown.name == "report.md" and files.html.name == "report.html"
    names = sorted(PLOTS) + [pareto_name("PPO"), pareto_name("SAC")]
    assert sorted(p.name for p in files.images) == sorted(names)
    for name in names:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = files.html.read_text()
    # no meter in this file: energy is a sentence, not an empty figure
    shown = [n for n in names if n != "energy_relative.png"]
    assert html.startswith("<!DOCTYPE html>") and all(f'<img src="{name}"' in html for name in shown)
    md = files.markdown.read_text()
    for section in ("Table 1", "Table 2", "Table 3", "Machine", "Library versions", "Run date", "Threads per cell"):
        assert section in md
    assert "torch | 2.13.0" in md and "Intel(R) Xeon(R) Processor" in md


def _row(md: str, *starts: str) -> list[str]:
    for line in md.splitlines():
        cols = [c.strip() for c in line.strip("|").split("|")]
        if cols[:len(starts)] == list(starts):
            return cols
    raise AssertionError(f"no row {starts}")


def test_table1_has_paper_figure_beside_ours_and_missing_as_dash(report):
    src, files = report
    md = files.markdown.read_text()
    header = _row(md, "Algorithm", "Environment", "Baseline (ours)")
    row = dict(zip(header, _row(md, "SAC", "HalfCheetah")))
    ours = load_results(src).get("SAC-HalfCheetah-v5-baseline").return_stat()
    assert row["Baseline (paper)"] == "10460.06"
    assert row["Baseline (ours)"] == ours.format()
    assert row["QAT (ours)"] == MISSING and row["QAT (paper)"] == "6163.80"  # not run: shown missing
    assert row["PTSQ (paper)"] == "1805.41" and row["Best (paper)"] == "Baseline"
    # baseline and ptdq (0.99x) overlap, ptsq (0.8x) is far: a tie, not a best
    assert row["Best (ours)"].startswith("tie (CIs overlap): ") and "★" not in row["Baseline (ours)"]
    hopper = dict(zip(header, _row(md, "TRPO", "Hopper")))
    assert hopper["Baseline (ours)"] == MISSING and hopper["Baseline (paper)"] == "164.06"


def test_table1_marks_a_decisive_best(tmp_path):
    doc = make_results([])
    doc["benchmarks"] = [_exact("SAC-Hopper-v5-baseline", 2000.0), _exact("SAC-Hopper-v5-ptdq", 2500.0),
                         _exact("SAC-Hopper-v5-qat", 1000.0)]
    res = load_results(_write(tmp_path, "t1.json", json.dumps(doc)))
    row = next(r for r in table1(res, PAPER_TABLES) if (r.algo, r.env_id) == ("SAC", "Hopper-v5"))
    assert (row.best.status, row.best.leader) == ("best", "ptdq") and row.ours["ptsq"] is None
    assert row.paper["ptdq"] == 3621.34 and row.paper_best == "ptdq"


def test_energy_is_a_reason_without_a_meter_and_a_number_with_one(report, tmp_path):
    _, files = report
    md = files.markdown.read_text()
    assert "no meter: no powercap tree at /sys/class/powercap" in md
    assert "J/1000" not in md.split("## All cells")[1]
    src = write_results(tmp_path / "e.json", ["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptdq"], energy=True, episodes=5)
    from rlbench.report.tables import cell_rows

    rows = {r.rec.id: r for r in cell_rows(load_results(src))}
    assert rows["PPO-Hopper-v5-ptdq"].energy.endswith("x)") and "J/1000" in rows["PPO-Hopper-v5-ptdq"].energy


def test_report_cli_and_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = _write(tmp_path, "broken.json", '{"benchmarks": [')
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "broken.json" in err and "truncated" in err


# ------------------------------------------------------------------------------------------ export


def test_export_gab(tmp_path, capsys):
    src = write_results(tmp_path / "out.json", ["PPO-Hopper-v5-baseline", "PPO-Hopper-v5-ptdq"], episodes=8)
    small_p, big_p = tmp_path / "small.json", tmp_path / "big.json"
    assert main(["export-gab", str(src), "--smaller", str(small_p), "--bigger", str(big_p)]) == 0
    small, big = json.loads(small_p.read_text()), json.loads(big_p.read_text())
    res = load_results(src)
    lat = {e["name"]: e for e in small if e["unit"] == "us"}
    assert lat["PPO-Hopper-v5-ptdq latency"]["value"] == pytest.approx(res.get("PPO-Hopper-v5-ptdq").latency_median_s * 1e6, rel=1e-6)
    names = {e["name"] for e in small}
    assert "PPO-Hopper-v5-ptdq bytes_total" in names and "PPO-Hopper-v5-baseline bytes_total" not in names
    assert not any("energy" in n for n in names)  # no meter: no energy entry, never a zero
    assert all(set(e) == {"name", "unit", "value", "extra"} for e in small + big)
    ret = {e["name"]: e for e in big}["PPO-Hopper-v5-baseline return"]
    st = res.get("PPO-Hopper-v5-baseline").return_stat()
    assert ret["value"] == pytest.approx(st.mean) and "95% CI" in ret["extra"] and "n=8" in ret["extra"]
    src2 = write_results(tmp_path / "e.json", ["PPO-Hopper-v5-baseline"], energy=True, episodes=3)
    small2, _ = export_gab(src2, smaller=tmp_path / "s2.json")
    assert [e["unit"] for e in small2 if e["name"].endswith("energy")] == ["J/1000 inferences"]
    with pytest.raises(ResultsError):
        export_gab(src2)


def test_sample_file_matches_its_generator():
    """tests/data/sample_results.json is what `python -m tests.data.results_factory` writes."""
    fresh = make_results(SAMPLE_CELLS, episodes=10)
    stored = json.loads(SAMPLE.read_text())
    assert [b["param"] for b in stored["benchmarks"]] == SAMPLE_CELLS
    assert stored["benchmarks"][0]["extra_info"]["figures"]["returns"] == pytest.approx(
        fresh["benchmarks"][0]["extra_info"]["figures"]["returns"])


# ------------------------------------------------------------------------------------------ the page


class _Page(HTMLParser):
    """The structure of report.html: headings with ids, links, images, details and tables in order."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        self.meta: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta":
            self.meta.append(a)
        if tag not in ("meta", "img", "br"):
            self.stack.append(tag)
        self.events.append(("start", tag, a, tuple(self.stack)))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass
        self.events.append(("end", tag, {}, tuple(self.stack)))

    def handle_data(self, data):
        self.text.append(data)
        self.events.append(("data", data, {}, tuple(self.stack)))

    def h2(self) -> list[tuple[str, str]]:
        """(id, text) of each level-2 heading, in order."""
        out, current = [], None
        for kind, tag, a, _ in self.events:
            if kind == "start" and tag == "h2":
                current = [a.get("id"), ""]
            elif kind == "data" and current is not None:
                current[1] += tag
            elif kind == "end" and tag == "h2" and current is not None:
                out.append(tuple(current))
                current = None
        return out


def _page(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


def test_the_page_answers_first_and_folds_the_cells(report):
    """What a reader meets, in order; the structure a browser renders (report.html) and GitHub (report.md)."""
    src, files = report
    html, md = files.html.read_text(), files.markdown.read_text()
    page = _page(html)
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.meta
    heads = [text for _, text in page.h2()]
    order = ["Summary", "Which variant to deploy (return kept ≥ 95% of fp32)", "Latency per runtime",
             "Weak or degenerate baselines", "Figures per variant and pair", "All cells, per pair", "Run"]
    assert [h for h in heads if h in order] == order and heads[0] == "Summary" and heads[-1] == "Run"
    # the contents link every section, and every link lands on an id
    ids = {a.get("id") for kind, _, a, _ in page.events if kind == "start" and a.get("id")}
    toc = [a["href"] for kind, tag, a, stack in page.events if kind == "start" and tag == "a" and "nav" in stack]
    assert toc == [f"#{i}" for i, _ in page.h2()] and all(h[1:] in ids for h in toc)
    assert all(a["href"][1:] in ids for kind, tag, a, _ in page.events
               if kind == "start" and tag == "a" and a.get("href", "").startswith("#"))
    # code spans are <code>, never literal backticks, in the page
    assert "`" not in html and "<code>ptdq</code>" in html
    # the recommend table, with its picks
    assert ">Pick</th>" in html and ">smallest</td>" in html and "## Which variant to deploy" in md
    # every pair's cells folded in a <details> whose summary names the pair; no cell table outside one
    cells = html[html.index('id="all-cells-per-pair"'):html.index('id="run"')]
    pairs = load_results(src).pairs()
    assert cells.count("<details>") == len(pairs) == cells.count("<table>")
    for algo, env in pairs:
        assert f"<details><summary><strong>{algo}-{env}</strong>" in cells
    table_events = [stack for kind, tag, _, stack in _page(cells).events if kind == "start" and tag == "table"]
    assert all("details" in stack for stack in table_events)
    assert md.count("<details><summary><strong>") >= len(pairs)


def test_figures_are_sized_for_the_page_and_linked_to_full_size(report):
    _, files = report
    out = files.html.parent
    page = _page(files.html.read_text())
    imgs = [(a, stack) for kind, tag, a, stack in page.events if kind == "start" and tag == "img"]
    assert imgs
    links = [a.get("href") for kind, tag, a, _ in page.events if kind == "start" and tag == "a"]
    for a, stack in imgs:
        assert "a" in stack and a["src"] in links  # each figure opens its full-size file
        w, h = png_size(out / a["src"])
        assert int(a["width"]) == w <= 1200 and int(a["height"]) == h  # shown at most at its own size
    assert "figure img { max-width: 100%; height: auto;" in files.html.read_text()


def test_the_summary_states_the_run_s_figures(report):
    """Every figure in the summary is the file's: the latency sentence quotes the median over its cells."""
    src, files = report
    res = load_results(src)
    md = files.markdown.read_text()
    summary = md[md.index("## Summary"):md.index("## Which variant")]
    torch_us = statistics.median(r.latency_s["torch-fp32"] * 1e6 for r in res.records)
    assert f"against {torch_us:.0f} µs for torch fp32" in summary
    n = len(res.records)
    assert summary.count("**") >= 12 and f"{n} cells of 2 algorithm x environment pairs" in summary
    for word in ("**Return**", "**Latency**", "**Memory (RSS)**", "**Bytes**", "**Deploy**", "**Baselines**"):
        assert word in summary
    ptdq = _row(md, "int8 dynamic (`ptdq`)")
    assert ptdq[2] == "2 / 2"  # both pairs keep 95% under ptdq (0.99x in the factory)


def test_flags_weak_and_saturated_baselines(tmp_path, capsys):
    """Below doing nothing (an Ant at 500 against a motionless ant's ~993) and saturated (the same return at
    every pruning ratio) are flagged, with the figures; --keep reaches the recommend table."""
    entries = [_exact("SAC-Ant-v5-baseline", 500.0), _exact("SAC-Ant-v5-ptdq", 480.0)]
    entries += [_exact("DDPG-Humanoid-v5-baseline", 63.7)]
    entries += [_exact(f"DDPG-Humanoid-v5-l1-{r:.2f}", 63.7) for r in (0.05, 0.10, 0.30)]
    doc = make_results([])
    doc["benchmarks"] = entries
    src = _write(tmp_path, "flags.json", json.dumps(doc))
    assert main(["report", str(src), "--out", str(tmp_path / "r"), "--keep", "0.9"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    flags = md[md.index("## Weak or degenerate baselines"):md.index("## Figures")]
    ant = _row(flags, "SAC-Ant-v5", "500.0 [498.0, 502.0]")
    assert "**below doing nothing**" in ant[-1] and ant[2].startswith("99")
    hum = _row(flags, "DDPG-Humanoid-v5")
    assert "**saturated**: the same return (63.7) at every one of 3 pruning ratios" in hum[-1]
    assert "## Which variant to deploy (return kept ≥ 90% of fp32)" in md
    # a weak pair is named under the recommend table, with doing nothing's return, not given a pick
    assert "**Not recommended, weak baseline**" in md and "SAC-Ant-v5 (500.0 against 99" in md
    assert main(["report", str(src), "--out", str(tmp_path / "r"), "--keep", "1.5"]) == 2
    assert "--keep 1.5" in capsys.readouterr().err


def test_argmax_flips_are_read_where_a_cell_records_them():
    from rlbench.grid.record import ArgmaxFlips

    assert argmax_flip(SimpleNamespace(argmax_flip=ArgmaxFlips(states=8, flips=1))) == 0.125
    assert argmax_flip(SimpleNamespace(argmax_flip=None)) is None


def test_a_discrete_cells_argmax_flips_stand_beside_its_return(tmp_path):
    from tests.data.results_factory import edit

    from rlbench.report.tables import cell_rows

    doc = make_results(["DQN-CartPole-v1-baseline", "DQN-CartPole-v1-ptdq", "PPO-Hopper-v5-ptdq"], episodes=10)
    doc = edit(doc, "DQN-CartPole-v1-ptdq", lambda e: e["extra_info"]["figures"].update(
        argmax_flip={"states": 4000, "flips": 82, "fraction": 0.0205}))
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc))
    results = load_results(p)
    rows = {r.rec.id: r for r in cell_rows(results)}
    assert rows["DQN-CartPole-v1-ptdq"].rec.argmax_flip.fraction == 0.0205
    assert rows["PPO-Hopper-v5-ptdq"].rec.argmax_flip is None  # continuous: no such figure
    md = to_markdown(build_document(results, load_paper()))
    cartpole = md[md.index("<strong>DQN-CartPole-v1</strong>"):]
    assert "Argmax flips" in cartpole and "| 2.1% |" in cartpole
