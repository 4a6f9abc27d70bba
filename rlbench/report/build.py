"""``rlbench report``: one results file (or a machine's stored figures) -> ``report.md``,
``report.html`` and PNG figures in a directory.

The page answers first and documents after: a summary in sentences with the run's figures, the
variant to deploy per pair (:mod:`rlbench.report.recommend`), absolute latency per runtime, the
pairs whose fp32 baseline is weak or degenerate, the figures, the paper's Tables 1-3 beside ours,
every cell folded per pair, and the run's machine and library versions last. Every figure comes
from the results; the derived ones are computed in :mod:`rlbench.report.summary`.
"""

from __future__ import annotations

import datetime as _dt
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.core.paths import baselines_dir
from rlbench.gate import idle as idle_store
from rlbench.gate.tolerances import Tolerances
from rlbench.report import plots
from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Bullets, Details, Document, Heading, Image, Para, Table, to_html, to_markdown
from rlbench.report.results import PRUNE_METHODS, QUANT_METHODS, ResultsFile, load_results, variant_sort_key
from rlbench.report.summary import (BELOW_IDLE, BELOW_PAPER, METHOD_LABEL, NEAR_IDLE, RUNTIME_LABEL, SATURATED,
                                    BaselineFlag, VariantRow, argmax_flip, baseline_flags, judged_pairs,
                                    label, latency_rows, median, pick_counts, variant_rows)
from rlbench.report.tables import (KEEP_FRACTION, MIB, MISSING, TABLE1_METHODS, cell_rows, fmt_num, fmt_stat, keeps,
                                   pruning_kept, quantization_best_share, report_findings, table1, table2, table3)
from rlbench.zoo.paper import load_paper
from rlbench.zoo.registry import env_short

KEEP = rec_mod.KEEP
"""The report's default ``keep``: the fraction of the fp32 return a variant must keep (recommend's)."""

#: The PNGs every report writes (name -> caption); :func:`pareto_name` adds one per algorithm.
PLOTS: dict[str, str] = {
    "latency_absolute.png": "Latency per runtime: each cell's median single-observation time, µs on a log scale",
    "return_relative.png": "Mean return over the pair's fp32 mean, per variant and pair",
    "latency_relative.png": "Latency over fp32 in the variant's own runtime (variant/fp32), per variant and pair",
    "memory_relative.png": "RSS delta over the pair's fp32 cell, per variant and pair",
    "model_size.png": "Compression: fp32 bytes over each variant's deployed bytes, per variant and pair",
    "energy_relative.png": "Energy per 1000 inferences over the pair's fp32 cell (only where a meter measured)",
    "pruning_curves.png": "Return over fp32 against L1/L2 pruning ratio, one panel per algorithm",
}
_LABEL = {"baseline": "Baseline", "ptdq": "PTDQ", "ptsq": "PTSQ", "qat": "QAT"}


def pareto_name(algo: str) -> str:
    return f"pareto_{algo}.png"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    images: tuple[Path, ...]


@dataclass(frozen=True)
class _Inputs:
    """What the page is computed from, loaded once."""

    results: ResultsFile
    paper: Mapping
    recs: rec_mod.Recommendations
    flags: tuple[BaselineFlag, ...]


def _inputs(results: ResultsFile, paper: Mapping, keep: float, baselines: str | Path | None) -> _Inputs:
    root = Path(baselines) if baselines is not None else baselines_dir()
    seeds = idle_store.by_seed(root)
    recs = rec_mod.recommend(results, keep, Tolerances.load(root / "tolerances.toml"), seeds)
    flags = baseline_flags(results, paper, recs, idle_store.read(root), seeds)
    return _Inputs(results, paper, recs, tuple(flags))


def write_report(results: ResultsFile | str | Path, out_dir: str | Path, paper: Mapping | str | Path | None = None,
                 keep: float = KEEP, baselines: str | Path | None = None) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and the PNGs of :data:`PLOTS` (and one Return against
    latency figure per algorithm) into ``out_dir``.

    ``results`` is a loaded file or a path; ``paper`` the paper's tables (default: the copy in
    :mod:`rlbench.zoo.paper`) or a JSON file of them; ``keep`` the fraction of the fp32 return a
    variant must keep to be recommended and counted as keeping it (the paper's Table 2 keeps its
    own 90%); ``baselines`` where tolerances and doing nothing's returns are read (default: the
    repository's ``baselines/``).
    """
    if not isinstance(results, ResultsFile):
        results = load_results(results)
    if not isinstance(paper, Mapping):
        paper = load_paper(paper)
    rec_mod.check_keep(keep)
    inputs = _inputs(results, paper, keep, baselines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marked = {f.pair for f in inputs.flags if f.flags and f.flags != (BELOW_PAPER,)}
    images = [plots.plot_latency_absolute(results, out / "latency_absolute.png"),
              plots.plot_grid(results, "return", out / "return_relative.png", marked),
              plots.plot_grid(results, "latency", out / "latency_relative.png"),
              plots.plot_grid(results, "memory", out / "memory_relative.png"),
              plots.plot_grid(results, "size", out / "model_size.png"),
              plots.plot_grid(results, "energy", out / "energy_relative.png"),
              plots.plot_pruning_curves(results, out / "pruning_curves.png", keep)]
    images += [plots.plot_pareto(results, out / pareto_name(a), a) for a in _compressed_algos(results)]
    doc = _document(inputs, out)
    md, html = out / "report.md", out / "report.html"
    atomic_write_bytes(md, to_markdown(doc).encode())
    atomic_write_bytes(html, to_html(doc).encode())
    return ReportFiles(md, html, tuple(images))


def build_document(results: ResultsFile, paper: Mapping, keep: float = KEEP,
                   baselines: str | Path | None = None) -> Document:
    """The report's content as blocks (rendered to Markdown and HTML by :mod:`rlbench.report.markup`),
    without writing the figures it links."""
    return _document(_inputs(results, paper, keep, baselines), None)


def _compressed_algos(results: ResultsFile) -> list[str]:
    """The algorithms with at least one compressed cell (the others have nothing to set against fp32)."""
    return list(dict.fromkeys(r.cell.algo for r in results.records if not r.cell.is_baseline))


def png_size(path: Path | None) -> tuple[int | None, int | None]:
    """A PNG's width and height in pixels from its header, or ``(None, None)``."""
    try:
        head = Path(path).read_bytes()[:24] if path is not None else b""
    except OSError:
        return None, None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None, None
    return struct.unpack(">II", head[16:24])


def _image(out: Path | None, name: str, caption: str | None = None) -> Image:
    w, h = png_size(out / name if out is not None else None)
    return Image(name, caption or PLOTS[name], w, h)


def _source_name(results: ResultsFile) -> str:
    """The results file's name, or the stored figures' machine (the Run section gives the whole path)."""
    if str(results.path).endswith(".json"):
        return Path(results.path).name
    return re.sub(r" \(.*\)$", "", str(results.path))


def _document(inp: _Inputs, out: Path | None) -> Document:
    results = inp.results
    doc = Document(f"rlbench report: {_source_name(results)}", toc=True)
    doc.add(*_summary_blocks(inp))
    doc.add(*_recommend_blocks(inp.recs, inp.flags))
    doc.add(*_latency_blocks(results, out))
    doc.add(*_flag_blocks(inp))
    doc.add(*_figure_blocks(inp, out))
    t1 = table1(results, inp.paper)
    t2 = table2(results, inp.paper, KEEP_FRACTION)
    doc.add(*_table1_blocks(t1))
    doc.add(*_table2_blocks(t2, KEEP_FRACTION))
    doc.add(*_table3_blocks(table3(results, inp.paper, KEEP_FRACTION)))
    doc.add(*_findings(results, t1, inp.paper))
    doc.add(*_cells_blocks(inp))
    doc.add(*_context(results))
    return doc


# ------------------------------------------------------------------------------------------ summary


def _us(v: float | None) -> str:
    if v is None:
        return MISSING
    return f"{v:.0f} µs" if v >= 10 else f"{v:.1f} µs"


def _x(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None else f"{v:.{digits}f}x"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _scope(results: ResultsFile) -> str:
    pairs = results.by_pair()
    compressed = [len(c) - ("baseline" in c) for c in pairs.values() if len(c) - ("baseline" in c) > 0]
    machines = results.machine_ids() or [MISSING]
    cpu = {str(r.context.machine.get("cpu_model")) for r in results.records if r.context.machine.get("cpu_model")}
    versions = results.versions()
    libs = [f"{lib} {' / '.join(versions[lib])}" for lib in ("torch", "onnxruntime") if lib in versions]
    if compressed:
        spread = (f"{min(compressed)}" if min(compressed) == max(compressed)
                  else f"{min(compressed)} to {max(compressed)}")
        what = f"{len(compressed)} of them with compressed variants ({spread} each)"
    else:
        what = "none with a compressed variant"
    text = (f"{len(results.records)} cells of {len(pairs)} algorithm x environment pairs, {what}, measured on "
            f"{_and([f'`{m}`' for m in machines])}" + (f" ({_and(sorted(cpu))})" if cpu else "")
            + (f" with {_and(libs)}" if libs else "") + ".")
    return text + (" Latency and RSS figures hold for that machine; returns and bytes for any." if len(machines) == 1
                   else " Latency and RSS figures hold for the machine that measured each cell.")


def _return_sentence(vrows: list[VariantRow], keep: float, judged: int) -> str:
    judged = max([r.pairs for r in vrows] + [0]) and judged
    if not judged:
        return ("**Return**: no pair's fp32 policy scores clearly above doing nothing, so no compressed "
                "return is judged (see the flagged baselines).")
    single = sorted((r for r in vrows if r.variant not in PRUNE_METHODS and r.pairs),
                    key=lambda r: (-r.kept / r.pairs, r.variant))
    parts = [f"{label(r.variant)} in {r.kept} of {r.pairs}" for r in single]
    n = max(r.pairs for r in vrows)
    text = (f"**Return**, over the {n} pairs with compressed variants whose fp32 policy beats doing nothing: "
            f"the mean return stayed "
            f"within {1 - keep:.0%} of fp32's for " + (_and(parts) if parts else "no variant") + " pairs.")
    below = sum(r.resolved_below for r in single)
    total = sum(r.pairs for r in single)
    if total:
        text += (f" The return gate resolves {below} of those {total} variant-pair results below the line; "
                 f"the other {total - sum(r.kept for r in single) - below} below it are within the noise of "
                 f"their episodes.")
    prune = [r for r in vrows if r.variant in PRUNE_METHODS and r.pairs and r.kept_ratio is not None]
    if prune:
        text += " Pruning kept it up to a median ratio of " + _and(
            [f"{r.kept_ratio:.2f} for {METHOD_LABEL[r.variant].split()[0]}"
             + (f" (from {r.kept_ratio_range[0]:.2f} to {r.kept_ratio_range[1]:.2f})" if r.kept_ratio_range else "")
             for r in prune]) + " (0 where no ratio keeps it)."
    return text


def _latency_sentence(results: ResultsFile, vrows: list[VariantRow]) -> str | None:
    rows = latency_rows(results)
    fp32 = {r.runtime: r.median_us for r in rows if r.policy == "fp32"}
    if not rows:
        return None
    by_rt: dict[str, list[float]] = {}
    methods: dict[str, set[str]] = {}
    for r in results.records:
        if not r.cell.is_baseline and "variant" in r.latency_s and r.runtime:
            by_rt.setdefault(r.runtime, []).append(r.latency_s["variant"] * 1e6)
            methods.setdefault(r.runtime, set()).add(r.cell.method)
    parts = []
    for rt, us in sorted(by_rt.items(), key=lambda kv: -median(kv[1])):
        few = sorted(methods[rt], key=lambda m: variant_sort_key(m, None))
        which = f" ({_and([METHOD_LABEL.get(m, m) for m in few])})" if len(few) <= 3 else ""
        parts.append(f"{RUNTIME_LABEL.get(rt, rt)} variants{which} ran at a median {_us(median(us))} per observation")
    text = "**Latency**, on this machine: " + (_and(parts) if parts else "no variant was timed")
    if fp32:
        text += ", against " + _and([f"{_us(v)} for {RUNTIME_LABEL.get(rt, rt)} fp32" for rt, v in fp32.items()])
    text += "."
    if "torch" in fp32 and "onnxruntime" in fp32 and fp32["onnxruntime"]:
        text += f" The runtime alone makes fp32 {fp32['torch'] / fp32['onnxruntime']:.1f}x faster."
    ratios = [r for r in vrows if r.latency_ratio is not None]
    if ratios:
        lo, hi = min(ratios, key=lambda r: r.latency_ratio), max(ratios, key=lambda r: r.latency_ratio)
        text += (f" Within its runtime, compression moves a policy from {_x(lo.latency_ratio)} of fp32 "
                 f"({label(lo.variant)}) to {_x(hi.latency_ratio)} ({label(hi.variant)}), medians over pairs.")
    return text.rstrip()


def _memory_sentence(results: ResultsFile, vrows: list[VariantRow]) -> str | None:
    base = [r.memory.get("rss_delta_bytes") for r in results.records if r.cell.is_baseline]
    base_mib = median(b / MIB for b in base if isinstance(b, (int, float)))
    ratios = [r for r in vrows if r.rss_ratio is not None]
    if base_mib is None and not ratios:
        return None
    text = "**Memory (RSS)**: "
    if base_mib is not None:
        text += f"loading and running the fp32 policy adds a median {base_mib:.2f} MiB to a fresh process"
    if ratios:
        lo, hi = min(ratios, key=lambda r: r.rss_ratio), max(ratios, key=lambda r: r.rss_ratio)
        text += ("; " if base_mib is not None else "") + (
            f"a compressed variant adds a median {_x(median(r.rss_ratio for r in ratios))} of its pair's fp32 "
            f"figure, from {_x(lo.rss_ratio)} ({label(lo.variant)}) to {_x(hi.rss_ratio)} ({label(hi.variant)})")
    return text + "."


def _bytes_sentence(results: ResultsFile, vrows: list[VariantRow]) -> str | None:
    sized = sorted((r for r in vrows if r.compression is not None), key=lambda r: -r.compression)
    if not sized:
        return None
    fp32 = [r.bytes_total for r in results.records if r.cell.is_baseline and r.bytes_total]
    top = sized[:4]
    rest = [r for r in sized if r.variant == "fp16" and r not in top]
    text = ("**Bytes**: the deployed ONNX graph shrinks most under "
            + _and([f"{label(r.variant)} ({r.compression:.1f}x)" for r in top + rest]) + ", medians over pairs")
    if fp32:
        text += f"; fp32 graphs are {min(fp32):,} to {max(fp32):,} bytes"
    return text + "."


def _pick_sentence(recs: rec_mod.Recommendations) -> str:
    small, fast = pick_counts(recs)
    n = sum(1 for p in recs.pairs if p.status == rec_mod.RECOMMENDED)
    weak = sum(1 for p in recs.pairs if p.status == rec_mod.WEAK_BASELINE)
    none = sum(1 for p in recs.pairs if p.status == rec_mod.NONE_ADMISSIBLE)
    text = f"**Deploy** (keeping {recs.keep:.0%} of fp32): {n} of {len(recs.pairs)} pairs get a recommendation"
    if small:
        text += "; the smallest pick is " + _and([f"`{m}` in {k}" for m, k in small.items()])
    if fast:
        text += ", the fastest " + _and([f"`{m}` in {k}" for m, k in fast.items()])
    extra = [s for s in (f"{weak} not recommended (weak baseline)" if weak else "",
                         f"{none} with no admissible variant" if none else "") if s]
    return text + (f"; {_and(extra)}" if extra else "") + "."


def _flag_sentence(flags: tuple[BaselineFlag, ...]) -> str:
    flagged = [f for f in flags if f.flags]
    if not flagged:
        return "**Baselines**: every pair's fp32 policy beats doing nothing, reaches the paper's figure and moves under pruning."
    counts = [(n, what) for what in (BELOW_IDLE, NEAR_IDLE, SATURATED, BELOW_PAPER)
              if (n := sum(1 for f in flagged if what in f.flags))]
    words = {BELOW_IDLE: "score below doing nothing", NEAR_IDLE: "score not clearly better than doing nothing",
             BELOW_PAPER: "score below the paper's Table 1 baseline", SATURATED: "return the same at every pruning ratio"}
    return (f"**Baselines**: {len(flagged)} of {len(flags)} pairs are flagged: "
            + _and([f"{n} {words[w]}" for n, w in counts]) + " ([flagged baselines](#weak-or-degenerate-baselines)).")


def _summary_blocks(inp: _Inputs) -> list:
    results, recs = inp.results, inp.recs
    vrows = variant_rows(results, recs)
    judged = len(judged_pairs(recs))
    items = [_return_sentence(vrows, recs.keep, judged), _latency_sentence(results, vrows),
             _memory_sentence(results, vrows), _bytes_sentence(results, vrows), _pick_sentence(recs),
             _flag_sentence(inp.flags)]
    flips = [(v, r) for r in results.records if (v := argmax_flip(r)) is not None and not r.cell.is_baseline]
    if flips:
        worst = max(flips, key=lambda vr: vr[0])
        items.append(f"**Discrete actions**: compression changed the greedy action on a median "
                     f"{median(v for v, _ in flips):.1%} of evaluation states over {len(flips)} cells, at most "
                     f"{worst[0]:.1%} (`{worst[1].id}`).")
    blocks = [Heading(2, "Summary"), Para(_scope(results)), Bullets(tuple(i for i in items if i))]
    blocks += [Heading(3, "Per variant, medians over pairs"), Para(
        f"Kept: the pairs (fp32 beating doing nothing) whose mean return is at least {recs.keep:.0%} of fp32's; "
        f"resolved below: those the return gate resolves below that line. For pruning, the highest ratio that keeps "
        f"it, as in Table 2. Latency vs fp32 is within the variant's runtime; RSS vs fp32 and compression against "
        f"the pair's fp32 cell."), _glance_table(vrows, recs.keep, bool(flips))]
    return blocks


def _glance_table(vrows: list[VariantRow], keep: float, flips: bool) -> Table:
    body = []
    for r in vrows:
        if r.variant in PRUNE_METHODS:
            kept = (MISSING if r.kept_ratio is None else
                    f"up to {r.kept_ratio:.2f}" + (f" ({r.kept_ratio_range[0]:.2f}-{r.kept_ratio_range[1]:.2f})"
                                                  if r.kept_ratio_range else ""))
            below = MISSING
            name = f"{METHOD_LABEL[r.variant]} (`{r.variant}`, all ratios)"
        else:
            kept = f"{r.kept} / {r.pairs}" if r.pairs else MISSING
            below = str(r.resolved_below) if r.pairs else MISSING
            name = label(r.variant)
        line = [name, RUNTIME_LABEL.get(r.runtime or "", r.runtime or MISSING), kept, below,
                fmt_num(r.return_fraction), _us(r.latency_us), _x(r.latency_ratio), _x(r.rss_ratio),
                _x(r.compression, 1)]
        if flips:
            line.append(MISSING if r.flips is None else f"{r.flips:.1%}")
        body.append(tuple(line))
    header = ["Variant", "Runtime", f"Kept ≥ {keep:.0%}", "Resolved below", "Return / fp32", "Latency",
              "vs fp32", "RSS vs fp32", "Compression"] + (["Argmax flips"] if flips else [])
    return Table(tuple(header), tuple(body), tuple(range(2, len(header))))


# ------------------------------------------------------------------------------------------ recommend


def _recommend_blocks(recs: rec_mod.Recommendations, flags: tuple[BaselineFlag, ...] = ()) -> list:
    """recommend's section (its heading and explanation) with the table set compactly for a page: each
    pair's fp32 return and admissible count written once, the runtime in its own column, returns to
    four significant figures, episode counts left to the cell tables. The figures are recommend's own
    (``rlbench recommend --json``)."""
    out = []
    for b in rec_mod.blocks(recs):
        if isinstance(b, Table):
            out += [_recommend_table(recs),
                    Para(f"ORT: ONNX Runtime. Of fp32: the variant's mean over fp32's; `(below; p=…)` marks a mean "
                         f"below {recs.keep:.0%} of fp32's that Mann-Whitney does not resolve at alpha={recs.alpha:g}, "
                         f"so the variant stays admissible. Episode counts are in each pair's cell table below.")]
            weak = _weak_sentence(recs, {f.pair: f for f in flags})
            if weak is not None:
                out.append(weak)
        else:
            out.append(b)
    return out


def _sig(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.1f}"


def _ret(mean: float, ci: tuple[float, float]) -> str:
    return f"{_sig(mean)} [{_sig(ci[0])}, {_sig(ci[1])}]"


_REC_HEADER = ("Pair", "fp32 return (95% CI)", "Admissible", "Pick", "Variant (runtime)", "Return (95% CI)",
               "of fp32", "Latency vs fp32 (same runtime)", "Latency (µs)", "Bytes", "Compression")
_RT_SHORT = {"onnxruntime": "ORT", "torch": "torch"}


def _recommend_table(recs: rec_mod.Recommendations) -> Table:
    body = []
    for p in recs.pairs:
        if p.status in (rec_mod.NO_VARIANT, rec_mod.WEAK_BASELINE):
            continue  # named in the sentences under the table
        lead = [p.pair, MISSING if p.fp32_mean is None else _ret(p.fp32_mean, p.fp32_ci),
                MISSING if p.admissible is None else f"{p.admissible} / {p.candidates}"]
        if p.status != rec_mod.RECOMMENDED:
            body.append(tuple(lead) + (MISSING, f"**{p.status}**: {p.note}") + (MISSING,) * 6)
            continue
        picks = [(c, name) for c, name in ((p.smallest, "smallest"), (p.fastest, "fastest")) if c is not None]
        if len(picks) == 2 and picks[0][0].cell == picks[1][0].cell:
            picks = [(p.smallest, "smallest, fastest")]
        for c, name in picks:
            ties = f"; ties: {', '.join(c.ties[:3])}{' …' if len(c.ties) > 3 else ''}" if c.ties else ""
            frac = MISSING if c.fraction is None else f"{c.fraction:.2f}"
            if c.standing != rec_mod.KEPT:
                frac += f" (below; p={c.p_value:.2g})"
            lat = MISSING if c.latency_ratio is None else f"{c.latency_ratio:.2f}x" + (
                f" [{c.latency_ratio_ci[0]:.2f}, {c.latency_ratio_ci[1]:.2f}]" if c.latency_ratio_ci else "")
            body.append(tuple(lead) + (name, f"`{c.variant}` ({_RT_SHORT.get(c.runtime or '', MISSING)}){ties}",
                                       _ret(c.return_mean, c.return_ci), frac, lat,
                                       MISSING if c.latency_us is None else f"{c.latency_us:.1f}",
                                       MISSING if c.bytes is None else f"{c.bytes:,}",
                                       MISSING if c.compression is None else f"{c.compression:.2f}x"))
            lead = ["", "", ""]
        if p.note:
            body.append(("", "", "", MISSING, p.note) + (MISSING,) * 6)
    return Table(_REC_HEADER, tuple(body), (2, 6, 7, 8, 9, 10))


def _weak_sentence(recs: rec_mod.Recommendations, flags: Mapping[str, BaselineFlag]) -> Para | None:
    weak = [p for p in recs.pairs if p.status == rec_mod.WEAK_BASELINE]
    if not weak:
        return None
    def one(p):
        f = flags.get(p.pair)
        idle = f" against {f.idle[0]:.1f}" if f is not None and f.idle is not None else ""
        return f"{p.pair} ({p.fp32_mean:.1f}{idle})"
    return Para(f"**Not recommended, weak baseline** (fp32 no better than doing nothing, whose return follows; "
                f"[flagged baselines](#weak-or-degenerate-baselines)): {_and([one(p) for p in weak])}.")


# ------------------------------------------------------------------------------------------ latency


def _latency_blocks(results: ResultsFile, out: Path | None) -> list:
    rows = latency_rows(results)
    blocks = [Heading(2, "Latency per runtime"),
              Para("Absolute single-observation latency, the median of each cell's timing, then the median and "
                   "middle half over cells. Every cell times its variant, the fp32 policy in torch and in ONNX "
                   "Runtime and a NumPy reference interleaved in one process, so fp32 is timed once per cell. "
                   "These times hold for the machine that measured them; the gates compare ratios, never these.")]
    if not rows:
        return blocks + [Para(f"No latency figures in {_source_name(results)}.")]
    torch_fp32 = next((r.median_us for r in rows if r.policy == "fp32" and r.runtime == "torch"), None)
    body = tuple((RUNTIME_LABEL.get(r.runtime, r.runtime), "fp32" if r.policy == "fp32" else label(r.policy),
                  str(r.cells), f"{r.median_us:.1f}", f"{r.quartiles_us[0]:.1f}-{r.quartiles_us[1]:.1f}",
                  _x(r.ratio), _x(r.median_us / torch_fp32) if torch_fp32 else MISSING) for r in rows)
    return blocks + [Table(("Runtime", "Policy", "Cells", "Median (µs)", "Middle half (µs)",
                            "vs fp32, same runtime", "vs torch fp32"), body, (2, 3, 4, 5, 6)),
                     _image(out, "latency_absolute.png")]


# ------------------------------------------------------------------------------------------ flags


def _flag_blocks(inp: _Inputs) -> list:
    # the flags that discount a pair's figures first; below the paper alone is the mildest
    flagged = sorted((f for f in inp.flags if f.flags), key=lambda f: f.flags == (BELOW_PAPER,))
    blocks = [Heading(2, "Weak or degenerate baselines"),
              Para("A compressed variant is judged against its pair's fp32 policy, so a weak fp32 policy makes "
                   "every figure of its pair weak too. Flagged: fp32 whose 95% CI lies below doing nothing's "
                   "(the zero-action return on the same seeds, `baselines/idle.json`) or does not lie clearly "
                   "above it (`recommend` does not recommend these); fp32 whose whole CI lies below the paper's "
                   "Table 1 baseline (its -v4 environments; a lower figure is not a fault but a different policy); "
                   "and a saturated pair, whose return is the same to 0.1% at every pruning ratio, so return "
                   "does not tell a pruned policy from the original.")]
    if not flagged:
        return blocks + [Para("No pair is flagged.")]
    body = []
    for f in flagged:
        what = [("**" + w + "**" if w != BELOW_PAPER else w) for w in f.flags]
        if f.saturated:
            what = [w if SATURATED not in w else f"{w}: {f.saturated}" for w in what]
        body.append((f.pair, MISSING if f.fp32 is None else f"{f.fp32.mean:.1f} [{f.fp32.lo:.1f}, {f.fp32.hi:.1f}]",
                     MISSING if f.idle is None else f"{f.idle[0]:.1f} [{f.idle[1]:.1f}, {f.idle[2]:.1f}]",
                     fmt_num(f.paper), "; ".join(what)))
    return blocks + [Table(("Pair", "fp32 return (95% CI)", "Doing nothing (95% CI)", "Paper, Table 1", "Flags"),
                           tuple(body), (1, 2, 3))]


# ------------------------------------------------------------------------------------------ figures


def _figure_blocks(inp: _Inputs, out: Path | None) -> list:
    results = inp.results
    energy = any(r.energy is not None and r.energy.available for r in results.records)
    blocks = [Heading(2, "Figures per variant and pair"),
              Para("Each grid has a row per variant and a column per pair, grouped by algorithm; each square holds "
                   "the figure over the pair's fp32 cell (green is better). Latency is the in-process ratio to "
                   "fp32 in the variant's own runtime, so an ONNX Runtime variant at 1.0x is as fast as fp32 in "
                   "ONNX Runtime, which is itself several times faster than torch fp32 (above)."),
              _image(out, "return_relative.png"), _image(out, "latency_relative.png"),
              _image(out, "memory_relative.png"), _image(out, "model_size.png")]
    if energy:
        blocks.append(_image(out, "energy_relative.png"))
    else:
        reasons = sorted({r.energy.reason or "no reason recorded" for r in results.records
                          if r.energy is not None and not r.energy.available})
        blocks.append(Para("Energy: not measured in any cell (" + ("; ".join(f"no meter: {x}" for x in reasons)
                                                                  if reasons else "no energy figures") + ")."))
    blocks += [Heading(2, "Return against pruning ratio"), _image(out, "pruning_curves.png"),
               Heading(2, "Return against latency"),
               Para("Per algorithm, one panel per environment: return (95% CI) against latency over the NumPy "
                    "reference timed in the same process (one scale for both runtimes), the Pareto front (the "
                    "fastest variant for its return) joined and its first points labelled.")]
    algos = _compressed_algos(results)
    if not algos:
        blocks.append(Para("No compressed cell in this file."))
    for i, algo in enumerate(algos):
        blocks.append(Details(f"{algo}: return against latency",
                              (_image(out, pareto_name(algo), f"{algo}: return against latency, Pareto front"),),
                              open=i == 0))
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
            Details(f"Table 1, {len(body)} pairs", (Table(tuple(header), tuple(body), numeric),))]


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
            Details(f"Table 2, {len(body)} pairs", (Table(
                ("Algorithm", "Environment", "Baseline (ours)", "L1 ratio (ours)", "L1 ratio (paper)",
                 "Return at L1 ratio", "L2 ratio (ours)", "L2 ratio (paper)", "Return at L2 ratio"),
                tuple(body), (2, 3, 4, 5, 6, 7, 8)),))]


def _table3_blocks(rows) -> list:
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


def _findings(results: ResultsFile, t1, paper: Mapping) -> list:
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




# ------------------------------------------------------------------------------------------ cells


def _standing(inp: _Inputs, rec, base_stat, judged: set[str], excluded: Mapping[str, set[str]]) -> str:
    st = rec.return_stat()
    if rec.cell.is_baseline or st is None or base_stat is None or rec.cell.pair not in judged:
        return MISSING
    if rec.cell.variant in excluded.get(rec.cell.pair, set()):
        return "**resolved below**"
    return "kept" if keeps(st.mean, base_stat.mean, inp.recs.keep) else "below, not resolved"


def _pair_headline(pair: str, cells: Mapping, p: rec_mod.PairRecommendation | None,
                   flag: BaselineFlag | None) -> str:
    base = cells.get("baseline")
    bst = base.return_stat() if base is not None else None
    parts = [f"**{pair}**", f"fp32 {fmt_stat(bst)}", f"{len(cells) - (base is not None)} variants"]
    if p is not None and p.status == rec_mod.RECOMMENDED:
        parts.append(f"{p.admissible} admissible")
        if p.smallest is not None:
            comp = f", {p.smallest.compression:.1f}x" if p.smallest.compression else ""
            parts.append(f"smallest `{p.smallest.variant}`{comp}")
        if p.fastest is not None:
            parts.append(f"fastest `{p.fastest.variant}`"
                         + (f", {p.fastest.latency_us:.1f} µs" if p.fastest.latency_us is not None else ""))
    elif p is not None:
        parts.append(p.status)
    if flag is not None and flag.flags:
        parts.append("flagged: " + ", ".join(flag.flags))
    return " · ".join(parts)


def _cells_blocks(inp: _Inputs) -> list:
    results, recs = inp.results, inp.recs
    judged = judged_pairs(recs)
    excluded = {p.pair: set(p.excluded) for p in recs.pairs}
    by_rec = {p.pair: p for p in recs.pairs}
    flags = {f.pair: f for f in inp.flags}
    energy = any(r.energy is not None and r.energy.available for r in results.records)
    flips = any(argmax_flip(r) is not None for r in results.records)
    header = ["Variant", "Runtime", "Return (± 95% CI)", "of fp32", f"At {recs.keep:.0%}", "Latency (µs)",
              "vs fp32 (95% CI)", "Bytes", "Compression", "RSS delta (MiB, x fp32)"]
    header += (["Energy"] if energy else []) + (["Argmax flips"] if flips else [])
    rows_by_pair: dict[str, list] = {}
    for row in cell_rows(results):
        rows_by_pair.setdefault(row.rec.cell.pair, []).append(row)
    blocks = [Heading(2, "All cells, per pair"),
              Para(f"Each pair folds its cells; the line names the pair's fp32 return, its variants and the "
                   f"recommended ones. Return relative to the pair's fp32 mean; at {recs.keep:.0%}: kept (mean at "
                   f"least {recs.keep:.0%} of fp32's), below but not resolved by the return gate, or resolved "
                   f"below; latency is this machine's median, vs fp32 the in-process ratio in the variant's own "
                   f"runtime; RSS delta in MiB and over the fp32 cell's."
                   + ("" if energy else " Energy: no cell measured it (see the figures)."))]
    for pair, rows in rows_by_pair.items():
        cells = {r.rec.cell.variant: r.rec for r in rows}
        base = cells.get("baseline")
        bst = base.return_stat() if base is not None else None
        body = []
        for row in rows:
            rec = row.rec
            ret = MISSING if row.ret is None else f"{row.ret.format()} (n={row.ret.n})"
            lat = (MISSING if row.latency is None else
                   f"{row.latency[0]:.2f} [{row.latency[1]:.2f}, {row.latency[2]:.2f}]")
            us = rec.latency_s.get("variant")
            if us is None and rec.cell.is_baseline:
                us = rec.latency_s.get("torch-fp32" if rec.runtime == "torch" else "onnx-fp32")
            rss = rec.memory.get("rss_delta_bytes")
            rss_text = MISSING if not isinstance(rss, (int, float)) else f"{rss / MIB:.2f}"
            if row.memory_rel is not None:
                rss_text += f" ({row.memory_rel:.2f}x)"
            line = [f"`{rec.cell.variant}`", rec.runtime or MISSING, ret, fmt_num(row.ret_rel),
                    _standing(inp, rec, bst, judged, excluded), MISSING if us is None else f"{us * 1e6:.1f}", lat,
                    MISSING if rec.bytes_total is None else f"{rec.bytes_total:,}", fmt_num(rec.compression_factor),
                    rss_text]
            if energy:
                line.append(row.energy)
            if flips:
                flip = argmax_flip(rec)
                line.append(MISSING if flip is None else f"{flip:.1%}")
            body.append(tuple(line))
        blocks.append(Details(_pair_headline(pair, cells, by_rec.get(pair), flags.get(pair)),
                              (Table(tuple(header), tuple(body), (3, 5, 6, 7, 8, 9)),)))
    return blocks


# ------------------------------------------------------------------------------------------ context


def _context(results: ResultsFile) -> list:
    blocks = [Heading(2, "Run")]
    dates = results.datetimes()
    items = [f"Results: {results.path} ({len(results.records)} cells, {len(results.pairs())} "
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
