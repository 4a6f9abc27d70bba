"""The page's "All cells, per pair" section: one folded table per pair, its line naming the pair's
fp32 return, its variants and its picks.

Folded because a grid has hundreds of cells: the sections above answer, this one documents each
figure they were computed from.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Block, Details, Heading, Para, Table
from rlbench.report.results import CellRecord, ReturnStat
from rlbench.report.sections.common import PageInputs
from rlbench.report.summary import BaselineFlag, argmax_flip, judged_pairs
from rlbench.report.tables import MIB, MISSING, CellRow, cell_rows, fmt_num, fmt_stat, keeps


def _standing(inp: PageInputs, rec: CellRecord, base_stat: ReturnStat | None, judged: set[str],
              excluded: Mapping[str, set[str]]) -> str:
    st = rec.return_stat()
    if rec.cell.is_baseline or st is None or base_stat is None or rec.cell.pair not in judged:
        return MISSING
    if rec.cell.variant in excluded.get(rec.cell.pair, set()):
        return "**resolved below**"
    return "kept" if keeps(st.mean, base_stat.mean, inp.recs.keep) else "below, not resolved"


def _pair_headline(pair: str, cells: Mapping[str, CellRecord], p: rec_mod.PairRecommendation | None,
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


def cells_blocks(inp: PageInputs) -> list[Block]:
    """The section's heading, its key, and a folded table per pair in the file's order (energy and
    argmax-flip columns only when some cell records them)."""
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
    rows_by_pair: dict[str, list[CellRow]] = {}
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
