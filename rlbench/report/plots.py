"""PNG plots of a results file: figures relative to baseline (the paper's Figures 1-3), return
against pruning ratio, a return/latency Pareto plot and model sizes.

Uses matplotlib's object API (``Figure`` + Agg) rather than ``pyplot``, so it neither needs a
display nor changes the backend of a caller's session. Every function writes its PNG even when
the file has nothing to plot (the image then says what is missing), so report links never break.
A missing figure is never drawn as zero: it has no bar, no point.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from rlbench.core.cellid import split_variant
from rlbench.report.results import CellRecord, ResultsFile, variant_sort_key
from rlbench.report.tables import KEEP_FRACTION, relative_energy, relative_latency, relative_memory
from rlbench.zoo.registry import ENVS, env_short

DPI = 110
METRICS = {
    "latency": ("Latency relative to fp32 (ratios['variant/fp32'], 95% CI)", "variant / fp32"),
    "memory": ("RSS delta relative to baseline (memory.rss_delta_bytes)", "variant / baseline"),
    "energy": ("Energy per 1000 inferences relative to baseline", "variant / baseline"),
}
_METHOD_COLORS = {"baseline": "black", "ptdq": "tab:blue", "ptsq": "tab:orange", "qat": "tab:green",
                  "l1": "tab:red", "l2": "tab:purple"}


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def _message(path: Path, title: str, lines: list[str]) -> Path:
    fig = Figure(figsize=(8, 1.2 + 0.3 * len(lines)), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, "\n".join(lines), ha="center", va="center", wrap=True, transform=ax.transAxes)
    return _save(fig, path)


def _by_pair(results: ResultsFile) -> dict[tuple[str, str], dict[str, CellRecord]]:
    out: dict[tuple[str, str], dict[str, CellRecord]] = {}
    for r in results.records:
        out.setdefault((r.cell.algo, r.cell.env_id), {})[r.cell.variant] = r
    return out


def _env_order(envs) -> list[str]:
    return sorted(set(envs), key=lambda e: (ENVS.index(e) if e in ENVS else len(ENVS), e))


def _relative_value(metric: str, rec: CellRecord, base: CellRecord | None):
    if metric == "latency":
        return relative_latency(rec)
    v = relative_memory(rec, base) if metric == "memory" else relative_energy(rec, base)
    return None if v is None else (v, v, v)


def plot_relative(results: ResultsFile, metric: str, path: Path) -> Path:
    """Grouped bars per algorithm: one group per variant, one bar per environment, 1.0 = baseline.

    ``metric`` is ``latency`` (``ratios['variant/fp32']`` with its CI), ``memory`` (RSS delta over the
    baseline's) or ``energy`` (J/1000 over the baseline's, only where both had a meter)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}")
    title, ylabel = METRICS[metric]
    pairs = _by_pair(results)
    data: dict[str, dict[str, dict[str, tuple]]] = {}
    no_meter: dict[str, int] = {}
    for (algo, env_id), cells in pairs.items():
        base = cells.get("baseline")
        for variant, rec in cells.items():
            if metric == "energy" and rec.energy is not None and not rec.energy.available:
                reason = rec.energy.reason or "no reason recorded"
                no_meter[reason] = no_meter.get(reason, 0) + 1
            if rec.cell.is_baseline:
                continue
            v = _relative_value(metric, rec, base)
            if v is not None:
                data.setdefault(algo, {}).setdefault(variant, {})[env_id] = v
    if not data:
        if metric == "energy" and no_meter:
            return _message(path, title, [f"no meter: {reason} ({n} cells)" for reason, n in sorted(no_meter.items())])
        return _message(path, title, [f"no {metric} figures relative to baseline in {Path(results.path).name}"])

    algos = [a for a in dict.fromkeys(r.cell.algo for r in results.records) if a in data]
    envs = _env_order(e for a in data.values() for v in a.values() for e in v)
    colors = {e: f"C{i}" for i, e in enumerate(envs)}
    nvar = max(len(v) for v in data.values())
    fig = Figure(figsize=(min(40, max(8, 0.3 * nvar * max(1, len(envs)) + 2)), 3.2 * len(algos) + 0.6),
                 layout="constrained")
    axes = fig.subplots(len(algos), 1, squeeze=False)[:, 0]
    for ax, algo in zip(axes, algos):
        variants = sorted(data[algo], key=lambda v: variant_sort_key(*split_variant(v)))
        width = 0.8 / max(1, len(envs))
        for j, env_id in enumerate(envs):
            xs, ys, err_lo, err_hi = [], [], [], []
            for i, variant in enumerate(variants):
                v = data[algo][variant].get(env_id)
                if v is None:
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(v[0])
                err_lo.append(max(0.0, v[0] - v[1]))
                err_hi.append(max(0.0, v[2] - v[0]))
            if xs:
                ax.bar(xs, ys, width=width, color=colors[env_id], label=env_short(env_id),
                       yerr=[err_lo, err_hi] if metric == "latency" else None, capsize=1.5, ecolor="0.3")
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(variants)), variants, rotation=90 if len(variants) > 8 else 0, fontsize=7)
        ax.set_ylabel(ylabel)
        ax.set_title(algo, fontsize=10, loc="left")
        ax.legend(fontsize=7, ncols=len(envs), loc="upper right")
    suptitle = title
    if metric == "energy" and no_meter:
        suptitle += "\n" + "; ".join(f"no meter: {r} ({n} cells)" for r, n in sorted(no_meter.items()))
    fig.suptitle(suptitle, fontsize=11)
    return _save(fig, path)


def plot_pruning_curves(results: ResultsFile, path: Path, keep: float = KEEP_FRACTION) -> Path:
    """Mean return (95% CI band) against pruning ratio, L1 and L2, one panel per algorithm x
    environment in the file; the baseline at ratio 0 and the 90%-of-baseline line."""
    pairs = _by_pair(results)
    algos = list(dict.fromkeys(a for a, _ in pairs))
    envs = _env_order(e for _, e in pairs)
    has_pruning = any(r.cell.is_pruning for r in results.records)
    if not has_pruning:
        return _message(path, "Return against pruning ratio", [f"no L1/L2 pruning cells in {Path(results.path).name}"])
    fig = Figure(figsize=(3.2 * len(envs) + 0.5, 2.6 * len(algos) + 0.6), layout="constrained")
    axes = fig.subplots(len(algos), len(envs), squeeze=False)
    for i, algo in enumerate(algos):
        for j, env_id in enumerate(envs):
            ax = axes[i][j]
            ax.set_title(f"{algo} {env_short(env_id)}", fontsize=9)
            cells = pairs.get((algo, env_id), {})
            base = cells.get("baseline")
            bstat = base.return_stat() if base is not None else None
            drawn = False
            for norm in ("l1", "l2"):
                pts = sorted((r.cell.ratio, r.return_stat()) for r in cells.values()
                             if r.cell.method == norm and r.cell.ratio is not None and r.return_stat() is not None)
                if not pts:
                    continue
                xs = [p[0] for p in pts]
                ax.plot(xs, [p[1].mean for p in pts], marker=".", color=_METHOD_COLORS[norm], label=norm.upper())
                ax.fill_between(xs, [p[1].lo for p in pts], [p[1].hi for p in pts], color=_METHOD_COLORS[norm], alpha=0.2)
                drawn = True
            if bstat is not None:
                ax.errorbar([0.0], [bstat.mean], yerr=[[bstat.mean - bstat.lo], [bstat.hi - bstat.mean]],
                            fmt="o", color="black", label="baseline", ms=4)
                ax.axhline(bstat.mean - (1 - keep) * abs(bstat.mean), color="0.4", ls=":", lw=1,
                           label=f"{keep:.0%} of baseline")
                drawn = True
            if not drawn:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="0.5")
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ax.set_xlabel("pruning ratio", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
    fig.suptitle("Return against pruning ratio (mean, 95% CI)", fontsize=11)
    return _save(fig, path)


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


def plot_pareto(results: ResultsFile, path: Path) -> Path:
    """Return (95% CI) against latency relative to the NumPy reference, per pair; the Pareto front
    (fastest for its return) joined and labelled."""
    pairs = _by_pair(results)
    panels = []
    for key, cells in pairs.items():
        pts = []
        for rec in cells.values():
            lat, st = _latency_vs_ref(rec), rec.return_stat()
            if lat is not None and st is not None:
                pts.append((lat, st, rec))
        if pts:
            panels.append((key, pts))
    if not panels:
        return _message(path, "Return against latency", ["no cells with both a return and a latency ratio"])
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((algo, env_id), pts) in zip(axes, panels):
        for lat, st, rec in pts:
            ax.errorbar([lat], [st.mean], yerr=[[st.mean - st.lo], [st.hi - st.mean]], fmt="o", ms=3.5,
                        color=_METHOD_COLORS.get(rec.cell.method, "tab:gray"), alpha=0.8)
        front = pareto_front([(lat, st.mean, rec.cell.variant) for lat, st, rec in pts])
        ax.plot([p[0] for p in front], [p[1] for p in front], color="0.3", lw=0.8, drawstyle="steps-post")
        for x, y, label in front:
            ax.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(f"{algo} {env_short(env_id)}", fontsize=9)
        ax.set_xlabel("latency / NumPy reference", fontsize=8)
        ax.set_ylabel("return", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels):]:
        ax.axis("off")
    handles = [axes[0].plot([], [], "o", color=c, label=m)[0] for m, c in _METHOD_COLORS.items()]
    fig.legend(handles=handles + [axes[0].plot([], [], "o", color="tab:gray", label="other")[0]],
               loc="outside lower center", ncols=7, fontsize=7)
    fig.suptitle("Return against latency (Pareto front joined)", fontsize=11)
    return _save(fig, path)


def plot_model_size(results: ResultsFile, path: Path) -> Path:
    """``bytes_total`` per variant (KiB, log scale), one panel per algorithm, one bar per environment.
    Cells without ``bytes_total`` (often the baseline) have no bar."""
    pairs = _by_pair(results)
    data: dict[str, dict[str, dict[str, int]]] = {}
    for (algo, env_id), cells in pairs.items():
        for variant, rec in cells.items():
            if rec.bytes_total is not None:
                data.setdefault(algo, {}).setdefault(variant, {})[env_id] = rec.bytes_total
    if not data:
        return _message(path, "Model size", [f"no bytes_total figures in {Path(results.path).name}"])
    algos = [a for a in dict.fromkeys(r.cell.algo for r in results.records) if a in data]
    envs = _env_order(e for a in data.values() for v in a.values() for e in v)
    nvar = max(len(v) for v in data.values())
    fig = Figure(figsize=(min(40, max(8, 0.3 * nvar * max(1, len(envs)) + 2)), 3.0 * len(algos) + 0.6),
                 layout="constrained")
    axes = fig.subplots(len(algos), 1, squeeze=False)[:, 0]
    for ax, algo in zip(axes, algos):
        variants = sorted(data[algo], key=lambda v: variant_sort_key(*split_variant(v)))
        width = 0.8 / max(1, len(envs))
        for j, env_id in enumerate(envs):
            xs, ys = [], []
            for i, variant in enumerate(variants):
                b = data[algo][variant].get(env_id)
                if b is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    ys.append(b / 1024)
            if xs:
                ax.bar(xs, ys, width=width, color=f"C{j}", label=env_short(env_id))
        ax.set_yscale("log")
        ax.set_xticks(range(len(variants)), variants, rotation=90 if len(variants) > 8 else 0, fontsize=7)
        ax.set_ylabel("KiB (bytes_total)")
        ax.set_title(algo, fontsize=10, loc="left")
        ax.legend(fontsize=7, ncols=len(envs))
    fig.suptitle("Model size on disk per variant", fontsize=11)
    return _save(fig, path)
