"""What a report says first: the run's answer in figures, computed from its cells.

Pure functions from a :class:`~rlbench.report.results.ResultsFile` (and the recommendations made
from it) to small records; the report's sections (:mod:`rlbench.report.sections`) turn them into
sentences and tables.

* :func:`variant_rows`: per variant (``ptdq``, ``lowrank-0.25``, ...; pruning per norm), what it did
  to return, latency, RSS and bytes, as medians over the pairs.
* :func:`latency_rows`: absolute single-observation latency per runtime, fp32 and each method.
* :func:`baseline_flags`: pairs whose fp32 policy is weak (no better than doing nothing, below
  the paper's Table 1 figure) or degenerate (the same return at every pruning ratio).

Every figure is a median over what the file holds; a figure the file lacks is ``None``, never 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from rlbench.core.cellid import split_variant
from rlbench.gate.checks import idle_bar
from rlbench.gate.idle import below_idle
from rlbench.report.recommend import NO_FP32, RECOMMENDED, WEAK_BASELINE, Recommendations
from rlbench.report.results import PRUNE_METHODS, CellRecord, ResultsFile, ReturnStat, variant_sort_key
from rlbench.report.tables import keeps, paper_cell, prune_choice, relative_memory

#: What each method is, in words a reader who has not read docs/compressions.md follows.
METHOD_LABEL = {
    "baseline": "fp32", "ptdq": "int8 dynamic", "ptsq": "int8 static", "qat": "int8 QAT",
    "int8pc": "int8 per-channel", "fp16": "fp16", "int4": "4-bit weights", "gmp": "sparse int8 GMP",
    "lowrank": "low rank", "l1": "L1 pruning", "l2": "L2 pruning",
}
RUNTIME_LABEL = {"torch": "torch", "onnxruntime": "ONNX Runtime"}
SATURATED_SPREAD = 1e-3
"""A pair is saturated when its fp32 and every pruned return lie within this fraction of the fp32
mean's magnitude of each other: pruning up to 70% of the neurons changes nothing, so the return
says nothing about the policy (an episode that ends, or an action that clips, the same way)."""


def label(variant: str) -> str:
    """``int8 dynamic (ptdq)``; a ratio stays in the code name (``low rank (lowrank-0.25)``)."""
    method, _ = split_variant(variant)
    name = METHOD_LABEL.get(method)
    return f"{name} (`{variant}`)" if name and name != variant else f"`{variant}`"


def median(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def quartiles(values) -> tuple[float, float] | None:
    vals = sorted(float(v) for v in values if v is not None)
    if len(vals) < 2:
        return (vals[0], vals[0]) if vals else None
    q = statistics.quantiles(vals, n=4, method="inclusive")
    return q[0], q[2]


def argmax_flip(rec: CellRecord) -> float | None:
    """The fraction of evaluation states whose greedy action changes under compression, for
    discrete-action cells that record it (``argmax_flip``); ``None`` elsewhere."""
    return None if rec.argmax_flip is None else rec.argmax_flip.fraction


def judged_pairs(recs: Recommendations) -> set[str]:
    """Pairs whose variants can be judged by their return: an fp32 cell that beats doing nothing."""
    return {p.pair for p in recs.pairs if p.status not in (WEAK_BASELINE, NO_FP32)}


# --------------------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class VariantRow:
    """What one variant (or one pruning norm over its ratios) did, over the pairs that ran it."""

    variant: str
    """``ptdq``, ``lowrank-0.25``; ``l1`` / ``l2`` for a pruning norm over all its ratios."""
    runtime: str | None
    pairs: int
    """Judged pairs (fp32 beats doing nothing) with a return for this variant."""
    kept: int
    """Of those, the pairs whose mean return is at least ``keep`` of fp32's (a point estimate)."""
    resolved_below: int
    """Of those, the pairs where the return gate resolves the variant below the line (recommend's
    exclusions); ``kept + resolved_below <= pairs``, the rest are below the line but not resolved."""
    return_fraction: float | None
    """Median over judged pairs of mean return / fp32 mean (pairs with a positive fp32 mean)."""
    latency_us: float | None
    latency_ratio: float | None
    """Median ``variant/fp32``: over the fp32 policy in the variant's own runtime."""
    rss_ratio: float | None
    """Median RSS delta over the pair's fp32 cell's."""
    compression: float | None
    """Median fp32 bytes over the variant's."""
    kept_ratio: float | None = None
    """Pruning: the median over pairs of the highest ratio that keeps ``keep`` of fp32 (Table 2's rule)."""
    kept_ratio_range: tuple[float, float] | None = None
    flips: float | None = None
    """Median :func:`argmax_flip`, where recorded."""


def _variant_us(rec: CellRecord) -> float | None:
    """The variant's median single-observation latency in µs (the timed loop's, else pytest-benchmark's)."""
    s = rec.latency_s.get("variant", rec.latency_median_s)
    return None if s is None else s * 1e6


def _compression(rec: CellRecord, base: CellRecord | None) -> float | None:
    if base is not None and base.bytes_total and rec.bytes_total:
        return base.bytes_total / rec.bytes_total
    return rec.compression_factor


def variant_rows(results: ResultsFile, recs: Recommendations) -> list[VariantRow]:
    """One row per variant other than fp32 (pruning: one per norm), in the report's order."""
    pairs = results.by_pair()
    judged = judged_pairs(recs)
    excluded = {p.pair: set(p.excluded) for p in recs.pairs}
    groups: dict[str, list[tuple[str, CellRecord, CellRecord | None]]] = {}
    for pair, cells in pairs.items():
        base = cells.get("baseline")
        for variant, rec in cells.items():
            if rec.cell.is_baseline:
                continue
            key = rec.cell.method if rec.cell.is_pruning else variant
            groups.setdefault(key, []).append((pair, rec, base))
    out = []
    for key in sorted(groups, key=lambda k: variant_sort_key(*split_variant(k))):
        members = groups[key]
        pruning = key in PRUNE_METHODS
        fractions, kept, below, npairs = [], 0, 0, 0
        kept_ratios: list[float] = []
        for pair, rec, base in members:
            bstat = base.return_stat() if base is not None else None
            st = rec.return_stat()
            if pair not in judged or bstat is None or st is None:
                continue
            if bstat.mean > 0:
                fractions.append(st.mean / bstat.mean)
            if not pruning:
                npairs += 1
                kept += keeps(st.mean, bstat.mean, recs.keep)
                below += rec.cell.variant in excluded.get(pair, ())
        if pruning:
            for pair in dict.fromkeys(p for p, _, _ in members):
                if pair not in judged:
                    continue
                choice = prune_choice(pairs[pair], key, recs.keep)
                if choice.status == "missing":
                    continue
                npairs += 1
                kept += choice.status == "ok"
                kept_ratios.append(choice.ratio if choice.status == "ok" else 0.0)
        runtimes = sorted({rec.runtime for _, rec, _ in members if rec.runtime})
        out.append(VariantRow(
            variant=key, runtime=", ".join(runtimes) or None, pairs=npairs, kept=kept, resolved_below=below,
            return_fraction=median(fractions),
            latency_us=median(_variant_us(rec) for _, rec, _ in members),
            latency_ratio=median(rec.ratios.get("variant/fp32") for _, rec, _ in members),
            rss_ratio=median(relative_memory(rec, base) for _, rec, base in members),
            compression=median(_compression(rec, base) for _, rec, base in members),
            kept_ratio=median(kept_ratios) if pruning else None,
            kept_ratio_range=(min(kept_ratios), max(kept_ratios)) if pruning and kept_ratios else None,
            flips=median(argmax_flip(rec) for _, rec, _ in members)))
    return [r for r in out if r.latency_us is not None or r.pairs or r.compression is not None]


# ---------------------------------------------------------------------------------------- latency


@dataclass(frozen=True)
class LatencyRow:
    runtime: str
    policy: str
    """``fp32`` or a method (``ptdq``, ``l2``: all its ratios)."""
    cells: int
    median_us: float
    quartiles_us: tuple[float, float]
    ratio: float | None
    """Median ``variant/fp32`` (the variant over fp32 in the same runtime); ``None`` for fp32."""


_FP32_KEYS = (("torch", "torch-fp32"), ("onnxruntime", "onnx-fp32"))


def latency_samples(results: ResultsFile) -> dict[tuple[str, str], list[tuple[float, CellRecord]]]:
    """(runtime, policy) -> [(microseconds, cell)]: each runtime's fp32 policy (timed in every cell
    beside the variant) and each method's variants (``policy`` the method; pruning over all ratios)."""
    groups: dict[tuple[str, str], list[tuple[float, CellRecord]]] = {}
    for r in results.records:
        for runtime, key in _FP32_KEYS:
            if key in r.latency_s:
                groups.setdefault((runtime, "fp32"), []).append((r.latency_s[key] * 1e6, r))
        if not r.cell.is_baseline and "variant" in r.latency_s and r.runtime:
            groups.setdefault((r.runtime, r.cell.method), []).append((r.latency_s["variant"] * 1e6, r))
    return groups


def latency_rows(results: ResultsFile) -> list[LatencyRow]:
    """Absolute median single-observation latency per (runtime, policy) over the file's cells, fp32
    first, then by median. Absolute times hold for the machine that measured them only."""
    order = {rt: i for i, (rt, _) in enumerate(_FP32_KEYS)}
    rows = []
    for (runtime, policy), samples in latency_samples(results).items():
        us = [u for u, _ in samples]
        rows.append(LatencyRow(runtime, policy, len(us), statistics.median(us), quartiles(us),
                               None if policy == "fp32" else
                               median(r.ratios.get("variant/fp32") for _, r in samples)))
    return sorted(rows, key=lambda r: (r.policy != "fp32", order.get(r.runtime, 9), r.median_us))


# ---------------------------------------------------------------------------------------- flags


@dataclass(frozen=True)
class BaselineFlag:
    pair: str
    fp32: ReturnStat | None
    idle: tuple[float, float, float] | None
    """Doing nothing's mean and 95% CI on the fp32 cell's seeds (else as stored)."""
    paper: float | None
    """The paper's Table 1 baseline return (its -v4 environment)."""
    flags: tuple[str, ...]
    """``below doing nothing``, ``not clearly above doing nothing``, ``below the paper``, ``saturated``."""
    saturated: str = ""
    """With ``saturated``: how flat the pruned returns are, in words."""


BELOW_IDLE, NEAR_IDLE, BELOW_PAPER, SATURATED = ("below doing nothing", "not clearly above doing nothing",
                                                  "below the paper", "saturated")


def baseline_flags(results: ResultsFile, paper: Mapping, recs: Recommendations,
                   idle: Mapping[str, Mapping], idle_seeds: Mapping[str, Mapping[int, float]]) -> list[BaselineFlag]:
    """Every pair of the file with its flags (an empty tuple: a sound baseline).

    ``idle``: :func:`rlbench.gate.idle.read` (mean and CI per environment); ``idle_seeds``:
    :func:`rlbench.gate.idle.by_seed`, so that doing nothing is judged on the fp32 cell's own seeds,
    as the return gate and ``recommend`` judge it."""
    status = {p.pair: p.status for p in recs.pairs}
    out = []
    for pair, cells in results.by_pair().items():
        base = cells.get("baseline")
        any_rec = next(iter(cells.values()))
        algo, env_id = any_rec.cell.algo, any_rec.cell.env_id
        stat = base.return_stat() if base is not None else None
        entry = idle.get(env_id)
        bar = idle_bar(idle_seeds.get(env_id), base.seeds) if base is not None else None
        if bar is None and entry is not None:
            bar = (float(entry["mean"]) if "mean" in entry else sum(entry["returns"]) / len(entry["returns"]),
                   float(entry["ci"][0]), float(entry["ci"][1]))
        pcell = paper_cell(paper, "table1_average_return", algo, env_id) or {}
        pfig = pcell.get("baseline")
        flags, sat = [], ""
        if stat is not None and bar is not None:
            if below_idle(stat.hi, {"ci": [bar[1], bar[2]]}):
                flags.append(BELOW_IDLE)
            elif status.get(pair) == WEAK_BASELINE or stat.lo <= bar[2]:
                flags.append(NEAR_IDLE)
        if stat is not None and pfig is not None and stat.hi < pfig:
            flags.append(BELOW_PAPER)
        pruned = [r.return_stat() for r in cells.values() if r.cell.is_pruning and r.return_stat() is not None]
        if stat is not None and len(pruned) >= 2:
            means = [stat.mean] + [s.mean for s in pruned]
            spread = max(means) - min(means)
            if spread <= SATURATED_SPREAD * max(abs(stat.mean), 1e-9):
                flags.append(SATURATED)
                sat = (f"the same return ({stat.mean:.1f}) at every one of {len(pruned)} pruning ratios"
                       if spread <= 1e-6 * max(abs(stat.mean), 1.0) else
                       f"returns within {spread:.2g} ({spread / abs(stat.mean):.1e} of fp32) across all "
                       f"{len(pruned)} pruning ratios")
        out.append(BaselineFlag(pair, stat, bar, pfig, tuple(flags), sat))
    return out


# ---------------------------------------------------------------------------------------- picks


def pick_counts(recs: Recommendations) -> tuple[dict[str, int], dict[str, int]]:
    """How often each method is the smallest and the fastest pick, over the recommended pairs."""
    small: dict[str, int] = {}
    fast: dict[str, int] = {}
    for p in recs.pairs:
        if p.status != RECOMMENDED:
            continue
        for choice, counts in ((p.smallest, small), (p.fastest, fast)):
            if choice is not None:
                m = split_variant(choice.variant)[0]
                counts[m] = counts.get(m, 0) + 1
    def order(d):
        return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))
    return order(small), order(fast)
