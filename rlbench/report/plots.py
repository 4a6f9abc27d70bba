"""PNG figures of a results file, each sized to be read at the report's page width.

One figure per metric (a variant x pair grid of return, latency, RSS, energy and bytes relative to
fp32; absolute latency per runtime) or per algorithm (return against pruning ratio, return
against latency with the Pareto front). Each is at most :data:`WIDTH_IN` x :data:`DPI` pixels wide
with labels of at least 10 pt, so the page shows it at full size, with its legend inside the figure.

Uses matplotlib's object API (``Figure`` + Agg) rather than ``pyplot``, so it neither needs a
display nor changes the backend of a caller's session. Every function writes its PNG even when
the file has nothing to plot (the image then says what is missing), so report links never break.
A missing figure is never drawn as zero: it has no bar, no point, an empty grid cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

from rlbench.core.cellid import split_variant
from rlbench.report.results import CellRecord, ResultsFile, variant_sort_key
from rlbench.report.summary import METHOD_LABEL, RUNTIME_LABEL, latency_samples
from rlbench.report.tables import KEEP_FRACTION, relative_energy, relative_latency, relative_memory
from rlbench.zoo.registry import ENVS, env_short

DPI = 100
WIDTH_IN = 11.0
"""1100 px: the page's content width, so a figure is shown at 100%."""
FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 10,
        "ytick.labelsize": 10, "legend.fontsize": 10, "figure.titlesize": 12}
METHOD_COLORS = {"baseline": "black", "ptdq": "tab:blue", "ptsq": "tab:orange", "qat": "tab:green",
                 "int8pc": "tab:cyan", "fp16": "tab:olive", "int4": "tab:brown", "gmp": "tab:pink",
                 "lowrank": "tab:gray", "l1": "tab:red", "l2": "tab:purple"}
RUNTIME_COLORS = {"torch": "tab:red", "onnxruntime": "tab:blue"}
#: The grid figures: metric -> (title, colour-bar label).
GRIDS = {
    "return": ("Mean return over the pair's fp32 mean (pairs with a positive fp32 mean)", "return / fp32"),
    "latency": ("Latency over fp32 in the variant's own runtime (variant/fp32, interleaved in-process)",
                "variant / fp32"),
    "memory": ("RSS delta over the pair's fp32 cell (memory.rss_delta_bytes)", "variant / fp32"),
    "energy": ("Energy per 1000 inferences over the pair's fp32 cell", "variant / fp32"),
    "size": ("Compression: fp32 bytes over the variant's deployed bytes (bytes_total)", "fp32 bytes / variant bytes"),
}


@contextmanager
def _style():
    with matplotlib.rc_context(FONT):
        yield


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _message(path: Path, title: str, lines: list[str]) -> Path:
    with _style():
        fig = Figure(figsize=(8, 1.2 + 0.3 * len(lines)), layout="constrained")
        ax = fig.add_subplot()
        ax.axis("off")
        ax.set_title(title)
        ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", wrap=True, transform=ax.transAxes)
        return _save(fig, path)


def _env_order(envs: Iterable[str]) -> list[str]:
    return sorted(set(envs), key=lambda e: (ENVS.index(e) if e in ENVS else len(ENVS), e))


def _env_colors(envs: Iterable[str]) -> dict[str, str]:
    return {e: f"C{i % 10}" for i, e in enumerate(_env_order(envs))}


# ------------------------------------------------------------------------------------------ grids


def _grid_value(metric: str, rec: CellRecord, base: CellRecord | None) -> float | None:
    if metric == "return":
        st, bst = rec.return_stat(), base.return_stat() if base is not None else None
        return st.mean / bst.mean if st is not None and bst is not None and bst.mean > 0 else None
    if metric == "latency":
        v = relative_latency(rec)
        return None if v is None else v[0]
    if metric == "memory":
        return relative_memory(rec, base)
    if metric == "energy":
        return relative_energy(rec, base)
    if metric == "size":
        if base is not None and base.bytes_total and rec.bytes_total:
            return base.bytes_total / rec.bytes_total
        return rec.compression_factor
    raise ValueError(f"metric must be one of {sorted(GRIDS)}")


def _fmt_cell(v: float) -> str:
    if round(v, 2) == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    text = f"{v:.2f}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def plot_grid(results: ResultsFile, metric: str, path: Path, marked: Iterable[str] = ()) -> Path:
    """A variant (rows) x pair (columns, grouped by algorithm) grid of one figure relative to the
    pair's fp32 cell, each cell coloured and written. ``marked`` pairs get a ``*`` (weak baselines)."""
    if metric not in GRIDS:
        raise ValueError(f"metric must be one of {sorted(GRIDS)}")
    title, cbar = GRIDS[metric]
    pairs = results.by_pair()
    values: dict[tuple[str, str], float] = {}
    no_meter: dict[str, int] = {}
    for pair, cells in pairs.items():
        base = cells.get("baseline")
        for variant, rec in cells.items():
            if metric == "energy" and rec.energy is not None and not rec.energy.available:
                reason = rec.energy.reason or "no reason recorded"
                no_meter[reason] = no_meter.get(reason, 0) + 1
            if rec.cell.is_baseline:
                continue
            v = _grid_value(metric, rec, base)
            if v is not None and math.isfinite(v):
                values[variant, pair] = v
    if not values:
        if metric == "energy" and no_meter:
            return _message(path, title, [f"no meter: {reason} ({n} cells)" for reason, n in sorted(no_meter.items())])
        return _message(path, title, [f"no {metric} figures relative to fp32 in {Path(results.path).name}"])
    present = {p for _, p in values}
    cols = [p for p in pairs if p in present]
    rows = sorted({v for v, _ in values}, key=lambda v: variant_sort_key(*split_variant(v)))
    a = np.full((len(rows), len(cols)), np.nan)
    for (v, p), x in values.items():
        a[rows.index(v), cols.index(p)] = x
    if metric == "return":
        norm, cmap = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=1.5), "RdYlGn"
    elif metric == "size":
        norm, cmap = Normalize(vmin=1.0, vmax=max(2.0, float(np.nanmax(a)))), "Greens"
    else:
        norm, cmap = LogNorm(vmin=0.5, vmax=2.0), "RdYlGn_r"
    marked = set(marked)
    with _style():
        width = min(WIDTH_IN, max(7.0, 2.4 + 0.42 * len(cols)))
        fig = Figure(figsize=(width, 1.9 + 0.24 * len(rows)), layout="constrained")
        ax = fig.add_subplot()
        img = ax.imshow(np.clip(a, norm.vmin, norm.vmax), cmap=cmap, norm=norm, aspect="auto",
                        interpolation="nearest")
        fontsize = 9 if len(cols) > 12 else 10
        for i in range(len(rows)):
            for j in range(len(cols)):
                x = a[i, j]
                if np.isnan(x):
                    continue
                shade = img.cmap(img.norm(min(max(x, norm.vmin), norm.vmax)))
                dark = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] < 0.5
                ax.text(j, i, _fmt_cell(x), ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xticks(range(len(cols)), [env_short(p.split("-", 1)[1]) + (" *" if p in marked else "")
                                         for p in cols], rotation=90)
        algos = [p.split("-", 1)[0] for p in cols]
        top = ax.secondary_xaxis("top")
        starts = [j for j in range(len(cols)) if j == 0 or algos[j] != algos[j - 1]]
        ends = starts[1:] + [len(cols)]
        top.set_xticks([(s + e - 1) / 2 for s, e in zip(starts, ends)], [algos[s] for s in starts])
        top.tick_params(length=0)
        for s in starts[1:]:
            ax.axvline(s - 0.5, color="white", lw=3)
        ax.tick_params(length=0)
        fig.colorbar(img, ax=ax, orientation="horizontal", location="bottom", shrink=0.5, aspect=40,
                     pad=0.01, label=cbar + (" (colour clipped at its ends)" if metric != "size" else ""))
        sup = title if width >= 9 else title.replace(" (", "\n(", 1)
        if marked & set(cols):
            sup += "\n* weak or degenerate fp32 baseline (see the flags section)"
        if metric == "energy" and no_meter:
            sup += "\n" + "; ".join(f"no meter: {r} ({n} cells)" for r, n in sorted(no_meter.items()))
        fig.suptitle(sup)
        return _save(fig, path)


# ------------------------------------------------------------------------------------------ latency


def _log_ticks(ax, values) -> None:
    """Plain 1-2-5 labels on a log x axis (matplotlib's minor labels collide at this width)."""
    lo, hi = min(values), max(values)
    steps = [m * 10.0 ** e for e in range(-3, 6) for m in (1, 2, 5)]
    ticks = [t for t in steps if lo / 1.5 <= t <= hi * 1.5] or [lo, hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FixedFormatter([f"{t:g}" for t in ticks]))
    ax.xaxis.set_minor_locator(NullLocator())


def plot_latency_absolute(results: ResultsFile, path: Path) -> Path:
    """Median single-observation latency per cell (µs, log scale), one row per runtime x policy:
    each runtime's fp32 policy first, then each method's variants; the bar is the median."""
    samples = latency_samples(results)
    if not samples:
        return _message(path, "Latency per runtime", [f"no latency figures in {Path(results.path).name}"])
    order = {"torch": 0, "onnxruntime": 1}
    keys = sorted(samples, key=lambda k: (k[1] != "fp32", order.get(k[0], 9),
                                          float(np.median([u for u, _ in samples[k]]))))
    with _style():
        fig = Figure(figsize=(WIDTH_IN * 0.8, 1.4 + 0.36 * len(keys)), layout="constrained")
        ax = fig.add_subplot()
        rng = np.random.default_rng(0)
        for i, key in enumerate(keys):
            us = np.asarray([u for u, _ in samples[key]])
            color = RUNTIME_COLORS.get(key[0], "tab:gray")
            ax.scatter(us, i + rng.uniform(-0.18, 0.18, us.size), s=8, color=color, alpha=0.35, lw=0)
            med = float(np.median(us))
            ax.plot([med, med], [i - 0.32, i + 0.32], color="black", lw=2)
            ax.annotate(f"{med:.0f} µs" if med >= 10 else f"{med:.1f} µs", (med, i), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=10)
        ax.set_yticks(range(len(keys)), [f"{RUNTIME_LABEL.get(rt, rt)}: {METHOD_LABEL.get(p, p)}"
                                         + ("" if METHOD_LABEL.get(p, p) == p else f" ({p})") for rt, p in keys])
        ax.invert_yaxis()
        ax.set_xscale("log")
        _log_ticks(ax, [u for k in keys for u, _ in samples[k]])
        ax.set_xlabel("median single-observation latency per cell (µs, log scale; this machine only)")
        ax.grid(axis="x", which="both", alpha=0.3)
        handles = [ax.scatter([], [], color=c, label=RUNTIME_LABEL[rt]) for rt, c in RUNTIME_COLORS.items()]
        ax.legend(handles=handles, loc="lower right")
        fig.suptitle("Latency per runtime: fp32 in each runtime, and each method's variants")
        return _save(fig, path)


# ------------------------------------------------------------------------------------------ pruning


def _panels(n: int) -> tuple[int, int, bool]:
    """(rows, columns, legend in a spare panel) for ``n`` panels three to a row."""
    ncols = min(3, n + 1)
    nrows = -(-(n + 1) // ncols)
    return nrows, ncols, True


def plot_pruning_curves(results: ResultsFile, path: Path, keep: float = KEEP_FRACTION) -> Path:
    """Mean return over the fp32 mean against pruning ratio, one panel per algorithm, one colour per
    environment, L1 solid and L2 dashed; the line at ``keep``. Pairs whose fp32 mean is not
    positive cannot be drawn as a fraction and are named instead."""
    pairs = results.by_pair()
    if not any(r.cell.is_pruning for r in results.records):
        return _message(path, "Return against pruning ratio", [f"no L1/L2 pruning cells in {Path(results.path).name}"])
    algos = list(dict.fromkeys(p.split("-", 1)[0] for p, cells in pairs.items()
                               if any(r.cell.is_pruning for r in cells.values())))
    colors = _env_colors(next(iter(c.values())).cell.env_id for c in pairs.values())
    nrows, ncols, _ = _panels(len(algos))
    skipped = []
    with _style():
        fig = Figure(figsize=(WIDTH_IN, 3.0 * nrows + 0.7), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, algo in zip(axes, algos):
            ax.set_title(algo)
            for pair, cells in pairs.items():
                if pair.split("-", 1)[0] != algo:
                    continue
                base = cells.get("baseline")
                bst = base.return_stat() if base is not None else None
                env_id = next(iter(cells.values())).cell.env_id
                if bst is None or bst.mean <= 0:
                    skipped.append(pair)
                    continue
                for norm, style in (("l1", "-"), ("l2", "--")):
                    pts = sorted((r.cell.ratio, r.return_stat().mean / bst.mean) for r in cells.values()
                                 if r.cell.method == norm and r.cell.ratio is not None and r.return_stat() is not None)
                    if pts:
                        ax.plot([0.0] + [p[0] for p in pts], [1.0] + [p[1] for p in pts], style, marker=".",
                                color=colors[env_id], lw=1.4)
            ax.axhline(keep, color="0.4", ls=":", lw=1)
            ax.set_ylim(-0.1, 1.3)
            ax.set_xlabel("pruning ratio")
            ax.set_ylabel("return / fp32")
            ax.grid(alpha=0.3)
        spare = axes[len(algos)]
        spare.axis("off")
        handles = [spare.plot([], [], color=c, lw=2, label=env_short(e))[0] for e, c in colors.items()]
        handles += [spare.plot([], [], "-", color="0.3", label="L1")[0],
                    spare.plot([], [], "--", color="0.3", label="L2")[0],
                    spare.plot([], [], ":", color="0.4", label=f"{keep:.0%} of fp32")[0]]
        spare.legend(handles=handles, loc="center", frameon=False)
        for ax in axes[len(algos) + 1:]:
            ax.axis("off")
        sup = "Return against pruning ratio (mean over fp32 mean; y clipped to [-0.1, 1.3])"
        if skipped:
            sup += "\nnot drawn (fp32 mean not positive): " + ", ".join(skipped)
        fig.suptitle(sup)
        return _save(fig, path)


# ------------------------------------------------------------------------------------------ Pareto


def _latency_vs_ref(rec: CellRecord) -> float | None:
    """Latency relative to the in-process NumPy reference: ``variant/numpy-ref``, or for the
    baseline ``torch-fp32/numpy-ref``. One scale for every runtime, robust across machines."""
    key = "torch-fp32/numpy-ref" if rec.cell.is_baseline else "variant/numpy-ref"
    v = rec.ratios.get(key)
    return float(v) if v is not None else None


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points (latency, return, label) not dominated by a faster-or-equal point with higher-or-equal
    return (strictly better in one). Sorted by latency."""
    front = []
    for p in points:
        dominated = any(q[0] <= p[0] and q[1] >= p[1] and (q[0] < p[0] or q[1] > p[1]) for q in points)
        if not dominated:
            front.append(p)
    return sorted(front)


def plot_pareto(results: ResultsFile, path: Path, algo: str) -> Path:
    """One algorithm: return (95% CI) against latency relative to the NumPy reference, one panel per
    environment, colour by method; the Pareto front (fastest for its return) joined and labelled.
    The legend fills the panel after the last environment."""
    panels = []
    for pair, cells in results.by_pair().items():
        if pair.split("-", 1)[0] != algo:
            continue
        pts = [(lat, st, rec) for rec in cells.values()
               if (lat := _latency_vs_ref(rec)) is not None and (st := rec.return_stat()) is not None]
        if pts:
            panels.append((pair, pts))
    if not panels:
        return _message(path, f"{algo}: return against latency", ["no cells with both a return and a latency ratio"])
    nrows, ncols, _ = _panels(len(panels))
    methods = list(dict.fromkeys(rec.cell.method for _, pts in panels for _, _, rec in pts))
    with _style():
        fig = Figure(figsize=(WIDTH_IN if ncols == 3 else 3.7 * ncols, 3.3 * nrows + 0.6), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (pair, pts) in zip(axes, panels):
            for lat, st, rec in pts:
                ax.errorbar([lat], [st.mean], yerr=[[st.mean - st.lo], [st.hi - st.mean]], fmt="o", ms=4,
                            color=METHOD_COLORS.get(rec.cell.method, "tab:gray"), alpha=0.8)
            front = pareto_front([(lat, st.mean, rec.cell.variant) for lat, st, rec in pts])
            ax.plot([p[0] for p in front], [p[1] for p in front], color="0.3", lw=0.8, drawstyle="steps-post")
            for x, y, text in front[:6]:
                ax.annotate(text, (x, y), fontsize=9, xytext=(3, 3), textcoords="offset points")
            ax.set_title(env_short(pair.split("-", 1)[1]))
            ax.set_xscale("log")
            _log_ticks(ax, [lat for lat, _, _ in pts])
            ax.set_xlabel("latency / NumPy reference")
            ax.set_ylabel("return")
            ax.grid(alpha=0.3)
        spare = axes[len(panels)]
        spare.axis("off")
        handles = [spare.plot([], [], "o", color=METHOD_COLORS.get(m, "tab:gray"),
                              label=f"{METHOD_LABEL.get(m, m)} ({m})" if m in METHOD_LABEL and m != "fp16" else m)[0]
                   for m in sorted(methods, key=lambda m: variant_sort_key(m, None))]
        handles.append(spare.plot([], [], color="0.3", lw=0.8, label="Pareto front")[0])
        spare.legend(handles=handles, loc="center", frameon=False, ncols=2 if len(handles) > 8 else 1)
        for ax in axes[len(panels) + 1:]:
            ax.axis("off")
        fig.suptitle(f"{algo}: return (95% CI) against latency, Pareto front joined and labelled")
        return _save(fig, path)
