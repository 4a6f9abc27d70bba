"""``rlbench report``: one results file -> ``report.md``, ``report.html`` and PNG plots in a directory."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.zoo.registry import env_short
from rlbench.report import plots
from rlbench.report.markup import Bullets, Document, Heading, Image, Para, Table, to_html, to_markdown
from rlbench.report.recommend import report_blocks as recommend_blocks
from rlbench.zoo.paper import load_paper
from rlbench.report.results import QUANT_METHODS, ResultsFile, load_results
from rlbench.report.tables import (KEEP_FRACTION, MIB, MISSING, TABLE1_METHODS, cell_rows, fmt_num, fmt_stat,
                                   pruning_survival, quantization_best_share, table1, table2, table3)

#: The PNGs a report writes, in order (name -> caption).
PLOTS: dict[str, str] = {
    "latency_relative.png": "Latency relative to fp32 per variant (ratios['variant/fp32'], interleaved in-process)",
    "memory_relative.png": "RSS delta relative to the baseline (memory.rss_delta_bytes)",
    "energy_relative.png": "Energy per 1000 inferences relative to the baseline (only where a meter measured)",
    "pruning_curves.png": "Return against L1/L2 pruning ratio per algorithm and environment",
    "pareto.png": "Return against latency (relative to the NumPy reference), Pareto front joined",
    "model_size.png": "Model size on disk per variant (bytes_total)",
}
_LABEL = {"baseline": "Baseline", "ptdq": "PTDQ", "ptsq": "PTSQ", "qat": "QAT"}


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    images: tuple[Path, ...]


def write_report(results: ResultsFile | str | Path, out_dir: str | Path, paper: Mapping | str | Path | None = None,
                 keep: float = KEEP_FRACTION) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and the PNGs of :data:`PLOTS` into ``out_dir``.

    ``results`` is a loaded file or a path; ``paper`` the paper's tables (default: the copy in
    :mod:`rlbench.zoo.paper`) or a JSON file of them.
    """
    if not isinstance(results, ResultsFile):
        results = load_results(results)
    if not isinstance(paper, Mapping):
        paper = load_paper(paper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = (
        plots.plot_relative(results, "latency", out / "latency_relative.png"),
        plots.plot_relative(results, "memory", out / "memory_relative.png"),
        plots.plot_relative(results, "energy", out / "energy_relative.png"),
        plots.plot_pruning_curves(results, out / "pruning_curves.png", keep),
        plots.plot_pareto(results, out / "pareto.png"),
        plots.plot_model_size(results, out / "model_size.png"),
    )
    doc = build_document(results, paper, keep)
    md, html = out / "report.md", out / "report.html"
    atomic_write_bytes(md, to_markdown(doc).encode())
    atomic_write_bytes(html, to_html(doc).encode())
    return ReportFiles(md, html, images)


def build_document(results: ResultsFile, paper: Mapping, keep: float = KEEP_FRACTION) -> Document:
    """The report's content as blocks (rendered to Markdown and HTML by :mod:`rlbench.report.markup`)."""
    doc = Document(f"rlbench report: {Path(results.path).name}")
    doc.add(*_context(results))
    doc.add(*recommend_blocks(results))
    t1 = table1(results, paper)
    t2 = table2(results, paper, keep)
    doc.add(*_table1_blocks(t1))
    doc.add(*_table2_blocks(t2, keep))
    doc.add(*_table3_blocks(table3(results, paper, keep)))
    doc.add(*_findings(t1, t2, paper))
    doc.add(Heading(2, "Latency, memory and energy relative to baseline (the paper's Figures 1-3)"),
            Para("Latency is never compared as absolute time: each cell times its variant, the fp32 policy and a "
                 "NumPy reference interleaved in one process, and the plots show those ratios. Memory and energy "
                 "are divided by the same pair's baseline cell. Energy is shown only where a meter measured both "
                 "cells; otherwise the table says `no meter: <reason>`."))
    for name in ("latency_relative.png", "memory_relative.png", "energy_relative.png"):
        doc.add(Image(name, PLOTS[name]))
    doc.add(Heading(2, "Return against pruning ratio"), Image("pruning_curves.png", PLOTS["pruning_curves.png"]))
    doc.add(Heading(2, "Return against latency, and model size"), Image("pareto.png", PLOTS["pareto.png"]),
            Image("model_size.png", PLOTS["model_size.png"]))
    doc.add(*_cells_blocks(results))
    return doc


def _context(results: ResultsFile) -> list:
    blocks = [Heading(2, "Run")]
    dates = results.datetimes()
    items = [f"Results file: `{results.path}` ({len(results.records)} cells, {len(results.pairs())} "
             f"algorithm x environment pairs)",
             f"Run date: {', '.join(dates) if dates else MISSING}",
             f"Report generated: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"]
    threads = results.threads()
    items.append(f"Threads per cell: {', '.join(map(str, threads)) if threads else MISSING}")
    schemas = sorted({str(r.context.schema) for r in results.records if r.context.schema is not None})
    items.append(f"rlbench result schema: {', '.join(schemas) if schemas else MISSING}")
    if results.merged_from:
        items.append("Merged from: " + ", ".join(f"`{s.get('path')}` ({len(s.get('cells', []))} cells)"
                                                 for s in results.merged_from))
    blocks.append(Bullets(tuple(items)))
    machines: dict[str, Mapping] = {}
    for r in results.records:
        machines.setdefault(r.context.machine_id or MISSING, r.context.machine)
    rows = []
    for mid, m in machines.items():
        n = sum(1 for r in results.records if (r.context.machine_id or MISSING) == mid)
        rows.append((mid, str(m.get("cpu_model", MISSING)), ", ".join(m.get("cpu_flags", []) or []) or MISSING,
                     str(m.get("cpu_count", MISSING)), str(m.get("system", MISSING)), str(m.get("python", MISSING)),
                     str(n)))
    blocks += [Heading(3, "Machine" + ("s" if len(rows) > 1 else "")),
               Table(("Machine id", "CPU", "Flags", "CPUs", "System", "Python", "Cells"), tuple(rows), (3, 6))]
    versions = results.versions()
    if versions:
        blocks += [Heading(3, "Library versions"),
                   Table(("Library", "Version"), tuple((lib, " / ".join(v) if v != ["None"] else MISSING)
                                                       for lib, v in versions.items()))]
        if any(len(v) > 1 for v in versions.values()):
            blocks.append(Para("**Cells ran with different library versions** (listed with `/`): figures from "
                               "different versions sit side by side in this report."))
    return blocks


def _table1_blocks(rows) -> list:
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
            Table(tuple(header), tuple(body), numeric)]


def _table2_blocks(rows, keep: float) -> list:
    body = []
    for r in rows:
        p = r.paper or {}
        body.append((r.algo, env_short(r.env_id), fmt_stat(r.baseline), r.l1.describe(), fmt_num(p.get("l1_ratio")),
                     fmt_stat(r.l1.stat), r.l2.describe(), fmt_num(p.get("l2_ratio")), fmt_stat(r.l2.stat)))
    return [Heading(2, "Table 2: highest pruning ratio keeping ≥ 90% of baseline return"),
            Para(f"Per pair and norm, the highest measured pruning ratio whose mean return is at least {keep:.0%} of the "
                 "baseline mean (the paper's rule; for a negative baseline: within 10% of its magnitude below it). "
                 "`none` = every measured ratio lost more. Paper: Lu et al. 2024, Table 2."),
            Table(("Algorithm", "Environment", "Baseline (ours)", "L1 ratio (ours)", "L1 ratio (paper)",
                   "Return at L1 ratio", "L2 ratio (ours)", "L2 ratio (paper)", "Return at L2 ratio"),
                  tuple(body), (2, 3, 4, 5, 6, 7, 8))]


def _table3_blocks(rows) -> list:
    body = []
    for r in rows:
        paper = f"{r.paper_norm} {r.paper_ratio:.2f}" if r.paper_norm and r.paper_ratio is not None else MISSING
        agrees = {True: "yes", False: "no", None: MISSING}[r.agrees]
        body.append((r.algo, env_short(r.env_id), r.ours.describe(), paper, agrees))
    return [Heading(2, "Table 3: best pruning method"),
            Para("The norm with the higher Table 2 ratio; at equal ratios the higher return there, unless the two "
                 "CIs overlap (`tie`). Paper: Lu et al. 2024, Table 3."),
            Table(("Algorithm", "Environment", "Best pruning (ours)", "Best pruning (paper)", "Same norm"), tuple(body))]


def _findings(t1, t2, paper: Mapping) -> list:
    share = quantization_best_share(t1)
    ours, theirs = share["ours"], share["paper"]
    n_ours = sum(ours.values())
    n_paper = sum(theirs.values())
    pf = paper.get("findings", {}).get("quantization_best_share", {})
    rows = []
    for m in QUANT_METHODS:
        rows.append((_LABEL[m], f"{ours[m]} / {n_ours}" if n_ours else MISSING,
                     f"{theirs[m]} / {n_paper}" if n_paper else MISSING,
                     f"{pf[m]:.0%}" if m in pf else MISSING))
    rows.append(("tie (CIs overlap)", f"{ours['tie']} / {n_ours}" if n_ours else MISSING, MISSING, MISSING))
    items = []
    for beyond in (0.05, 0.50):
        ok, n = pruning_survival(t2, beyond)
        items.append(f"Pruned policies (pair x norm) keeping ≥ 90% beyond {beyond:.0%} pruning: "
                     + (f"{ok} of {n}" if n else MISSING))
    surv = paper.get("findings", {}).get("pruning_survival")
    if surv:
        items.append(f"Paper: {surv}")
    return [Heading(2, "Findings next to the paper's"),
            Para("Best quantization method per pair (baseline excluded), counted over pairs where at least two "
                 "methods were measured. Ours counts decisive wins only."),
            Table(("Method", "Best (ours)", "Best (paper, Table 1)", "Paper's stated share"), tuple(rows), (1, 2, 3)),
            Bullets(tuple(items))]


def _cells_blocks(results: ResultsFile) -> list:
    body = []
    for row in cell_rows(results):
        rec = row.rec
        ret = row.return_text()
        lat = MISSING if row.latency is None else f"{row.latency[0]:.2f} [{row.latency[1]:.2f}, {row.latency[2]:.2f}]"
        med = rec.latency_median_s
        rss = rec.memory.get("rss_delta_bytes")
        rss_text = MISSING if not isinstance(rss, (int, float)) else f"{rss / MIB:.1f}"
        if row.memory_rel is not None:
            rss_text += f" ({row.memory_rel:.2f}x)"
        body.append((rec.id, rec.runtime or MISSING, ret, fmt_num(row.ret_rel), lat,
                     fmt_num(rec.ratios.get("torch-fp32/numpy-ref")), fmt_num(rec.ratios.get("onnx-fp32/numpy-ref")),
                     MISSING if med is None else f"{med * 1e6:.1f}",
                     MISSING if rec.bytes_total is None else f"{rec.bytes_total:,}",
                     fmt_num(rec.compression_factor), rss_text, row.energy))
    return [Heading(2, "All cells"),
            Para("Return relative to the pair's baseline mean; latency ratios with 95% CI; the median latency is this "
                 "machine's absolute figure (not comparable across machines); RSS delta in MiB (x baseline)."),
            Table(("Cell", "Runtime", "Return", "x baseline", "variant/fp32", "torch/numpy", "onnx/numpy",
                   "Median latency (µs)", "bytes_total", "Compression", "RSS delta (MiB)", "Energy"),
                  tuple(body), (3, 4, 5, 6, 7, 8, 9, 10))]
