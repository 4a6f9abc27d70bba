"""The page's Summary section: the run in one sentence, one bullet each for return, latency,
memory, bytes, the deployment picks and the flagged baselines, then a table per variant.

The figures are computed in :mod:`rlbench.report.summary` (medians over pairs, latency per runtime,
the flags); this module only words them, so a sentence that reads wrong is fixed here and a figure
that is wrong there.
"""

from __future__ import annotations

from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Block, Bullets, Heading, Para, Table
from rlbench.report.results import PRUNE_METHODS, ResultsFile, variant_sort_key
from rlbench.report.sections.common import PageInputs, fmt_us, fmt_x, join_and
from rlbench.report.summary import (BELOW_IDLE, BELOW_PAPER, METHOD_LABEL, NEAR_IDLE, RUNTIME_LABEL, SATURATED,
                                    BaselineFlag, VariantRow, argmax_flip, judged_pairs, label, latency_rows, median,
                                    pick_counts, variant_rows)
from rlbench.report.tables import MIB, MISSING, fmt_num


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
            f"{join_and([f'`{m}`' for m in machines])}" + (f" ({join_and(sorted(cpu))})" if cpu else "")
            + (f" with {join_and(libs)}" if libs else "") + ".")
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
            f"within {1 - keep:.0%} of fp32's for " + (join_and(parts) if parts else "no variant") + " pairs.")
    below = sum(r.resolved_below for r in single)
    total = sum(r.pairs for r in single)
    if total:
        text += (f" The return gate resolves {below} of those {total} variant-pair results below the line; "
                 f"the other {total - sum(r.kept for r in single) - below} below it are within the noise of "
                 f"their episodes.")
    prune = [r for r in vrows if r.variant in PRUNE_METHODS and r.pairs and r.kept_ratio is not None]
    if prune:
        text += " Pruning kept it up to a median ratio of " + join_and(
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
        which = f" ({join_and([METHOD_LABEL.get(m, m) for m in few])})" if len(few) <= 3 else ""
        parts.append(f"{RUNTIME_LABEL.get(rt, rt)} variants{which} ran at a median {fmt_us(median(us))} per observation")
    text = "**Latency**, on this machine: " + (join_and(parts) if parts else "no variant was timed")
    if fp32:
        text += ", against " + join_and([f"{fmt_us(v)} for {RUNTIME_LABEL.get(rt, rt)} fp32" for rt, v in fp32.items()])
    text += "."
    if "torch" in fp32 and "onnxruntime" in fp32 and fp32["onnxruntime"]:
        text += f" The runtime alone makes fp32 {fp32['torch'] / fp32['onnxruntime']:.1f}x faster."
    ratios = [r for r in vrows if r.latency_ratio is not None]
    if ratios:
        lo, hi = min(ratios, key=lambda r: r.latency_ratio), max(ratios, key=lambda r: r.latency_ratio)
        text += (f" Within its runtime, compression moves a policy from {fmt_x(lo.latency_ratio)} of fp32 "
                 f"({label(lo.variant)}) to {fmt_x(hi.latency_ratio)} ({label(hi.variant)}), medians over pairs.")
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
            f"a compressed variant adds a median {fmt_x(median(r.rss_ratio for r in ratios))} of its pair's fp32 "
            f"figure, from {fmt_x(lo.rss_ratio)} ({label(lo.variant)}) to {fmt_x(hi.rss_ratio)} ({label(hi.variant)})")
    return text + "."


def _bytes_sentence(results: ResultsFile, vrows: list[VariantRow]) -> str | None:
    sized = sorted((r for r in vrows if r.compression is not None), key=lambda r: -r.compression)
    if not sized:
        return None
    fp32 = [r.bytes_total for r in results.records if r.cell.is_baseline and r.bytes_total]
    top = sized[:4]
    rest = [r for r in sized if r.variant == "fp16" and r not in top]
    text = ("**Bytes**: the deployed ONNX graph shrinks most under "
            + join_and([f"{label(r.variant)} ({r.compression:.1f}x)" for r in top + rest]) + ", medians over pairs")
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
        text += "; the smallest pick is " + join_and([f"`{m}` in {k}" for m, k in small.items()])
    if fast:
        text += ", the fastest " + join_and([f"`{m}` in {k}" for m, k in fast.items()])
    extra = [s for s in (f"{weak} not recommended (weak baseline)" if weak else "",
                         f"{none} with no admissible variant" if none else "") if s]
    return text + (f"; {join_and(extra)}" if extra else "") + "."


def _flag_sentence(flags: tuple[BaselineFlag, ...]) -> str:
    flagged = [f for f in flags if f.flags]
    if not flagged:
        return "**Baselines**: every pair's fp32 policy beats doing nothing, reaches the paper's figure and moves under pruning."
    counts = [(n, what) for what in (BELOW_IDLE, NEAR_IDLE, SATURATED, BELOW_PAPER)
              if (n := sum(1 for f in flagged if what in f.flags))]
    words = {BELOW_IDLE: "score below doing nothing", NEAR_IDLE: "score not clearly better than doing nothing",
             BELOW_PAPER: "score below the paper's Table 1 baseline", SATURATED: "return the same at every pruning ratio"}
    return (f"**Baselines**: {len(flagged)} of {len(flags)} pairs are flagged: "
            + join_and([f"{n} {words[w]}" for n, w in counts]) + " ([flagged baselines](#weak-or-degenerate-baselines)).")


def summary_blocks(inp: PageInputs) -> list[Block]:
    """The Summary heading, the scope sentence, the bullets (a sentence with no figure to state is
    left out) and the per-variant table."""
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
                fmt_num(r.return_fraction), fmt_us(r.latency_us), fmt_x(r.latency_ratio), fmt_x(r.rss_ratio),
                fmt_x(r.compression, 1)]
        if flips:
            line.append(MISSING if r.flips is None else f"{r.flips:.1%}")
        body.append(tuple(line))
    header = ["Variant", "Runtime", f"Kept ≥ {keep:.0%}", "Resolved below", "Return / fp32", "Latency",
              "vs fp32", "RSS vs fp32", "Compression"] + (["Argmax flips"] if flips else [])
    return Table(tuple(header), tuple(body), tuple(range(2, len(header))))
