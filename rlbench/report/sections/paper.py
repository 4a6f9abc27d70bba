"""The page's Tables 1-3 and findings: the paper's tables beside ours, each folded, then the
paper's findings next to ours.

The rows are :mod:`rlbench.report.tables`' (the rules are documented there), and the findings are
:func:`rlbench.report.tables.report_findings`, the computation the findings checks gate on, so the
page cannot disagree with them.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlbench.report.markup import Block, Bullets, Details, Heading, Para, Table
from rlbench.report.results import QUANT_METHODS, ResultsFile
from rlbench.report.sections.common import PageInputs
from rlbench.report.tables import (KEEP_FRACTION, MISSING, TABLE1_METHODS, Table1Row, Table2Row, Table3Row, fmt_num,
                                   fmt_stat, pruning_kept, quantization_best_share, report_findings, table1, table2,
                                   table3)
from rlbench.zoo.registry import env_short

_LABEL = {"baseline": "Baseline", "ptdq": "PTDQ", "ptsq": "PTSQ", "qat": "QAT"}


def paper_blocks(inp: PageInputs) -> list[Block]:
    """Tables 1, 2 and 3, then the findings. Table 2 and 3 keep the paper's 90% (:data:`KEEP_FRACTION`),
    not the page's ``keep``: they are the paper's tables, set beside the paper's figures."""
    t1 = table1(inp.results, inp.paper)
    return (_table1_blocks(t1) + _table2_blocks(table2(inp.results, inp.paper, KEEP_FRACTION), KEEP_FRACTION)
            + _table3_blocks(table3(inp.results, inp.paper, KEEP_FRACTION)) + _findings(inp.results, t1, inp.paper))


def _table1_blocks(rows: list[Table1Row]) -> list[Block]:
    header = ["Algorithm", "Environment"]
    for m in TABLE1_METHODS:
        header += [f"{_LABEL[m]} (ours)", f"{_LABEL[m]} (paper)"]
    header += ["Best (ours)", "Best (paper)"]
    numeric = tuple(range(2, 2 + 2 * len(TABLE1_METHODS)))
    body = []
    for r in rows:
        line = [r.algo, env_short(r.env_id)]
        for m in TABLE1_METHODS:
            text = fmt_stat(r.ours[m])
            if r.best.status == "best" and r.best.leader == m:
                text = f"**{text} ★**"
            line += [text, fmt_num(r.paper.get(m))]
        line += [r.best.describe(), _LABEL.get(r.paper_best, MISSING) if r.paper_best else MISSING]
        body.append(tuple(line))
    return [Heading(2, "Table 1: average return under quantization"),
            Para("Ours: mean return ± 95% CI half-width over the recorded episodes (-v5 environments). Paper: "
                 "Lu et al. 2024, Table 1 (-v4 environments). ★ marks the best variant of a row only when its CI "
                 "overlaps no other variant's; otherwise the row says `tie (CIs overlap)` and lists the variants "
                 f"whose CIs overlap the leader's. {MISSING} = not measured."),
            Details(f"Table 1, {len(body)} pairs", (Table(tuple(header), tuple(body), numeric),))]


def _table2_blocks(rows: list[Table2Row], keep: float) -> list[Block]:
    body = []
    for r in rows:
        p = r.paper or {}
        body.append((r.algo, env_short(r.env_id), fmt_stat(r.baseline), r.l1.describe(), fmt_num(p.get("l1_ratio")),
                     fmt_stat(r.l1.stat), r.l2.describe(), fmt_num(p.get("l2_ratio")), fmt_stat(r.l2.stat)))
    return [Heading(2, "Table 2: highest pruning ratio keeping ≥ 90% of baseline return"),
            Para(f"Per pair and norm, the highest measured pruning ratio whose mean return is at least {keep:.0%} of the "
                 "baseline mean (the paper's rule; for a negative baseline: within 10% of its magnitude below it). "
                 "`none` = every measured ratio lost more. Paper: Lu et al. 2024, Table 2."),
            Details(f"Table 2, {len(body)} pairs", (Table(
                ("Algorithm", "Environment", "Baseline (ours)", "L1 ratio (ours)", "L1 ratio (paper)",
                 "Return at L1 ratio", "L2 ratio (ours)", "L2 ratio (paper)", "Return at L2 ratio"),
                tuple(body), (2, 3, 4, 5, 6, 7, 8)),))]


def _table3_blocks(rows: list[Table3Row]) -> list[Block]:
    body = []
    for r in rows:
        paper = f"{r.paper_norm} {r.paper_ratio:.2f}" if r.paper_norm and r.paper_ratio is not None else MISSING
        agrees = {True: "yes", False: "no", None: MISSING}[r.agrees]
        body.append((r.algo, env_short(r.env_id), r.ours.describe(), paper, agrees))
    return [Heading(2, "Table 3: best pruning method"),
            Para("The norm with the higher Table 2 ratio; at equal ratios the higher return there, unless the two "
                 "CIs overlap (`tie`). Paper: Lu et al. 2024, Table 3."),
            Details(f"Table 3, {len(body)} pairs", (Table(("Algorithm", "Environment", "Best pruning (ours)",
                                                             "Best pruning (paper)", "Same norm"), tuple(body)),))]


def _findings(results: ResultsFile, t1: list[Table1Row], paper: Mapping) -> list[Block]:
    found = report_findings(results)
    share = quantization_best_share(t1, found)
    ours, theirs = share["ours"], share["paper"]
    n_ours = share["pairs"]["ours"]
    n_paper = sum(theirs.values())
    pf = paper.get("findings", {}).get("quantization_best_share", {})
    rows = []
    for m in QUANT_METHODS:
        rows.append((_LABEL[m], f"{ours[m]} / {n_ours}" if n_ours else MISSING,
                     f"{theirs[m]} / {n_paper}" if n_paper else MISSING,
                     f"{pf[m]:.0%}" if m in pf else MISSING))
    items = []
    for ratio in (0.05, 0.50):
        ok, n = pruning_kept(found, ratio)
        items.append(f"Pruned policies (pair x norm) keeping ≥ 90% after {ratio:.0%} pruning: "
                     + (f"{ok} of {n}" if n else MISSING))
    surv = paper.get("findings", {}).get("pruning_survival")
    if surv:
        items.append(f"Paper: {surv}")
    return [Heading(2, "Findings next to the paper's"),
            Para("Best quantization method per pair (baseline excluded): the highest mean return, over pairs with "
                 "PTDQ and PTSQ returns; keeping ≥ 90% at exactly 5% and 50% pruning, over pairs whose baseline "
                 "return is positive. The same figures and rules as the findings checks (docs/findings.md)."),
            Table(("Method", "Best (ours)", "Best (paper, Table 1)", "Paper's stated share"), tuple(rows), (1, 2, 3)),
            Bullets(tuple(items))]
