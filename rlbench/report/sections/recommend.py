"""The page's "Which variant to deploy" section: :mod:`rlbench.report.recommend`'s section with its
table set compactly for a page, and the pairs it does not recommend named under it.
"""

from __future__ import annotations

from collections.abc import Mapping

from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Block, Para, Table
from rlbench.report.sections.common import join_and
from rlbench.report.summary import BaselineFlag
from rlbench.report.tables import MISSING


def recommend_blocks(recs: rec_mod.Recommendations, flags: tuple[BaselineFlag, ...] = ()) -> list[Block]:
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
    def one(p: rec_mod.PairRecommendation) -> str:
        f = flags.get(p.pair)
        idle = f" against {f.idle[0]:.1f}" if f is not None and f.idle is not None else ""
        return f"{p.pair} ({p.fp32_mean:.1f}{idle})"
    return Para(f"**Not recommended, weak baseline** (fp32 no better than doing nothing, whose return follows; "
                f"[flagged baselines](#weak-or-degenerate-baselines)): {join_and([one(p) for p in weak])}.")
