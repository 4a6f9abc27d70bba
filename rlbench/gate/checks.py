"""The gate: one function judges a cell's new figures against stored ones.

:func:`judge_cell` is used by the grid (``bench/test_cells.py`` through
:func:`rlbench.grid.cell.check_cell`), by ``rlbench compare`` and by the recording checks, so the same
two sets of figures get the same verdicts wherever they are judged. Each verdict is one line:
figure, stored figure, tolerance and cell. The run-level gates (:func:`check_runtimes`,
:func:`check_methods`) judge a whole run's cells at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from rlbench.core.cellid import method_of, pair_of
from rlbench.gate.ratios import YARDSTICKS, RatioKind
from rlbench.gate.tolerances import LatencyTolerance, ReturnTolerance, Tolerances
from rlbench.measure.stats import bootstrap_ci, diff_ci


class Status(StrEnum):
    """What a check concluded. Only ``REGRESSED`` fails a cell; ``UNGATED`` fails it under
    ``--rlbench-strict``. The others pass, and each is reported as itself."""

    UNCHANGED = "unchanged"
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNSETTLED = "unsettled"
    """Beyond the limit, but the CI reaches back below it: more data is needed to decide."""
    UNJUDGED = "unjudged"
    """A run-level gate with too few cells for a verdict."""
    UNGATED = "ungated"
    """No stored figure to judge against (e.g. no latency or RSS figures for this machine)."""


class Metric(StrEnum):
    RETURN = "return"
    LATENCY = "latency"
    MEMORY = "memory"
    ENERGY = "energy"
    MODEL_BYTES = "model bytes"
    PARAMETERS = "parameters"
    SEEDS = "seeds"
    POLICY = "policy"


#: How an ungated return's message names it (the run's summary lists those of cells it otherwise counts).
RETURN_UNGATED = "return not gated"
#: What a grid cell's test judges; the energy test judges ENERGY alone.
CELL_METRICS = frozenset(Metric) - {Metric.ENERGY}
IDENTITY_METRICS = frozenset({Metric.RETURN, Metric.MODEL_BYTES, Metric.PARAMETERS, Metric.SEEDS, Metric.POLICY})
"""The machine-independent figures (a recording must agree on them before it stores a machine's bars)."""


@dataclass(frozen=True)
class Verdict:
    metric: Metric
    status: Status
    message: str

    @property
    def failed(self) -> bool:
        return self.status is Status.REGRESSED


@dataclass(frozen=True)
class CellFigures:
    """One cell's figures, new or stored, in the one shape :func:`judge_cell` reads.

    ``ratios`` and ``memory`` are ``None`` where the side holds no such figures (a machine with
    none stored, a run with ``--rlbench-no-memory``); an empty mapping is "measured, nothing".
    """

    cell: str
    seeds: tuple[int, ...] = ()
    returns: tuple[float, ...] = ()
    model_bytes: Mapping[str, int] | None = None
    params: int | None = None
    policy_sha256: str | None = None
    ratios: Mapping[str, float] | None = None
    ratio_ci: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    memory: Mapping[str, float] | None = None
    energy: float | None = None
    """Joules per 1000 inferences, where a meter measured it."""
    machine_id: str | None = None
    kernel: str | None = None
    """The kind of kernels the variant runs on (:func:`kernel_class`)."""

    @classmethod
    def from_dicts(cls, cell: str, figures: Mapping | None, machine: Mapping | None,
                   machine_id: str | None = None) -> CellFigures:
        """From the dicts a cell result, ``figures.json`` and ``machines/<id>.json`` hold."""
        f, m = figures or {}, machine
        energy = (m or {}).get("energy") or {}
        rss = None if m is None or "memory" not in m else {k: v for k, v in m["memory"].items()
                                                           if k.startswith("rss_delta")}
        return cls(cell=cell, seeds=tuple(f.get("seeds") or ()), returns=tuple(f.get("returns") or ()),
                   model_bytes=f.get("model_bytes"), params=f.get("params"), policy_sha256=f.get("policy_sha256"),
                   ratios=None if m is None or "ratios" not in m else dict(m["ratios"]),
                   ratio_ci={k: tuple(v) for k, v in ((m or {}).get("ratio_ci") or {}).items()},
                   memory=rss, energy=energy.get("joules_per_1000"), machine_id=machine_id,
                   kernel=kernel_class(f))

    def with_ratios(self, ratios: Mapping[str, float]) -> CellFigures:
        from dataclasses import replace

        return replace(self, ratios={**(self.ratios or {}), **ratios})


def mann_whitney_p(a, b) -> float:
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.array_equal(np.sort(a), np.sort(b)):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def idle_bar(idle: Mapping[int, float] | None, seeds) -> tuple[float, float, float] | None:
    """Doing nothing's mean return and 95% CI on ``seeds``, or None where ``idle`` lacks one of them."""
    if not idle or not seeds or any(int(s) not in idle for s in seeds):
        return None
    x = np.asarray([idle[int(s)] for s in seeds], dtype=float)
    lo, hi = bootstrap_ci(x)
    return float(x.mean()), lo, hi


def check_return(cell: str, new, stored, tol: ReturnTolerance, idle: Mapping[int, float] | None = None,
                 seeds=None) -> Verdict:
    """Two tests; either fails the cell.

    * **Drop**: the mean fell by more than ``rel_drop`` of the stored mean's magnitude (and more
      than ``abs_floor``) and a two-sided Mann-Whitney U test resolves the samples at ``alpha``.
    * **Doing nothing**: where the stored return's 95% CI lies above doing nothing's on the same
      seeds (``idle``: the zero-action return per seed), a new mean at or below the top of
      doing nothing's CI fails. Mann-Whitney does not resolve a variant that collapsed to doing
      nothing from a policy whose returns are bimodal (falls and runs), nor in 10 episodes from a
      wide sample; the doing-nothing test does, in every cell that beats doing nothing.
    """
    new_a, old_a = np.asarray(new, float), np.asarray(stored, float)
    diff, lo, hi = diff_ci(new_a, old_a)
    allowed = max(tol.rel_drop * abs(old_a.mean()), tol.abs_floor)
    p = mann_whitney_p(new_a, old_a)
    head = (f"{cell}: return {new_a.mean():.1f} vs stored {old_a.mean():.1f} (diff {diff:+.1f}, 95% CI "
            f"[{lo:+.1f}, {hi:+.1f}], Mann-Whitney p={p:.3g}, n={new_a.size}/{old_a.size})")
    bar = idle_bar(idle, seeds)
    if bar is not None:
        idle_mean, _, idle_hi = bar
        old_lo, _ = bootstrap_ci(old_a)
        if old_lo > idle_hi and new_a.mean() <= idle_hi:
            return Verdict(Metric.RETURN, Status.REGRESSED,
                           f"{head}; no better than doing nothing ({idle_mean:.1f}, 95% CI up to {idle_hi:.1f}, "
                           f"on the same seeds) where the stored return's CI lies above it; test: new mean <= "
                           f"doing nothing's CI high")
    if diff < -allowed and p < tol.alpha:
        return Verdict(Metric.RETURN, Status.REGRESSED,
                       f"{head}; tolerance: drop <= {allowed:.1f} or p >= {tol.alpha}")
    if diff > allowed and p < tol.alpha:
        return Verdict(Metric.RETURN, Status.IMPROVED, head)
    return Verdict(Metric.RETURN, Status.UNCHANGED, head)


def check_ratio(cell: str, what: str, new_median: float, new_ci: tuple[float, float], stored: float,
                tol: LatencyTolerance) -> Verdict:
    """Regressed if the latency ratio grew beyond ``stored * (1 + rel)``, with its CI above it;
    ``rel`` is ``ratio_rel`` within one runtime and ``cross_rel`` across runtimes. Above the limit
    with a CI that reaches below it is ``UNSETTLED``: the grid re-times such a cell once and pools."""
    rel = tol.rel_for(what)
    limit = stored * (1 + rel)
    head = (f"{cell}: latency ratio {what} {new_median:.3f} (95% CI [{new_ci[0]:.3f}, {new_ci[1]:.3f}]) vs stored "
            f"{stored:.3f}; tolerance +{100 * rel:.0f}% (limit {limit:.3f})")
    if (new_ci[0] if tol.ci_must_exclude else new_median) > limit:
        return Verdict(Metric.LATENCY, Status.REGRESSED, head)
    if (new_ci[1] if tol.ci_must_exclude else new_median) < stored / (1 + rel):
        return Verdict(Metric.LATENCY, Status.IMPROVED, head)
    if new_median > limit:
        return Verdict(Metric.LATENCY, Status.UNSETTLED, head + "; the CI reaches below the limit: unsettled")
    return Verdict(Metric.LATENCY, Status.UNCHANGED, head)


def check_exact(cell: str, what: Metric, new, stored) -> Verdict:
    head = f"{cell}: {what} {new} vs stored {stored}; tolerance: exact"
    return Verdict(what, Status.UNCHANGED if new == stored else Status.REGRESSED, head)


def rss_limit(stored: float, tol, noise: float | None) -> float:
    """How far an RSS delta may grow: ``rss_rel`` of the stored delta, and never less than
    ``rss_noise_k`` times the machine's measured noise (``rss_abs_mib`` where none is measured)."""
    mib = 1 << 20
    floor = tol.rss_noise_k * noise if noise is not None else tol.rss_abs_mib * mib
    return max(tol.rss_rel * abs(stored), floor)


def check_rss(cell: str, what: str, new: float, stored: float, tol, noise: float | None = None) -> Verdict:
    """RSS deltas regress beyond :func:`rss_limit`."""
    mib = 1 << 20
    diff = new - stored
    limit = rss_limit(stored, tol, noise)
    floor = (f"{tol.rss_noise_k:g} x this machine's noise {noise / 1024:.0f} KiB" if noise is not None
             else f"{tol.rss_abs_mib:g} MiB (no noise measured for this machine)")
    head = (f"{cell}: {what} {new / mib:.2f} MiB vs stored {stored / mib:.2f} MiB; tolerance "
            f"+max({100 * tol.rss_rel:.0f}%, {floor}) = +{limit / mib:.2f} MiB")
    if diff > limit:
        return Verdict(Metric.MEMORY, Status.REGRESSED, head)
    if diff < -limit:
        return Verdict(Metric.MEMORY, Status.IMPROVED, head)
    return Verdict(Metric.MEMORY, Status.UNCHANGED, head)


def check_energy(cell: str, new: float, stored: float, tol) -> Verdict:
    limit = abs(stored) * tol.rel
    head = f"{cell}: energy {new:.4f} J/1000 inferences vs stored {stored:.4f}; tolerance +{100 * tol.rel:.0f}%"
    if new - stored > limit:
        return Verdict(Metric.ENERGY, Status.REGRESSED, head)
    if stored - new > limit:
        return Verdict(Metric.ENERGY, Status.IMPROVED, head)
    return Verdict(Metric.ENERGY, Status.UNCHANGED, head)


def judge_cell(new: CellFigures, stored: CellFigures, tol: Tolerances, *,
               idle: Mapping[int, float] | None = None, scope: frozenset = CELL_METRICS,
               rss_noise: Mapping[str, float] | None = None, record_hint: str = "") -> list[Verdict]:
    """Every verdict of one cell: ``new`` against ``stored``, for the metrics in ``scope``.

    A stored figure the new side lacks, or a return or machine figure the stored side lacks, is an
    ``UNGATED`` verdict naming what went unchecked (``record_hint``: the command that records
    it), never a silent pass. Figures from another policy are one ``POLICY`` failure and nothing else: every
    other figure would differ for a reason that is not a regression.
    """
    cell = new.cell
    was, now = stored.policy_sha256, new.policy_sha256
    if Metric.POLICY in scope and was and now and was != now:
        return [Verdict(Metric.POLICY, Status.REGRESSED,
                        f"{cell}: stored figures were recorded from policy sha256 {was[:12]}, this one is {now[:12]} "
                        f"(retrained or re-exported); record the pair's cells again with: "
                        f"pytest bench --rlbench-update-baselines -k {pair_of(cell)}")]
    out: list[Verdict] = []
    hint = f"; record them with: {record_hint}" if record_hint else ""
    where = f" for machine {stored.machine_id}" if stored.machine_id else ""
    if Metric.RETURN in scope and new.returns and stored.returns:
        out.append(check_return(cell, new.returns, stored.returns, tol.returns, idle=idle, seeds=new.seeds))
    elif Metric.RETURN in scope and new.returns:  # e.g. an int8 kernel class that has not recorded this policy's
        out.append(Verdict(Metric.RETURN, Status.UNGATED,
                           f"{cell}: {RETURN_UNGATED}: no stored returns of the kernels it ran on{where}{hint}"))
    if Metric.SEEDS in scope and new.seeds and stored.seeds and tuple(new.seeds) != tuple(stored.seeds):
        out.append(check_exact(cell, Metric.SEEDS, list(new.seeds), list(stored.seeds)))
    if tol.memory.bytes_exact:
        if Metric.MODEL_BYTES in scope and new.model_bytes is not None and stored.model_bytes is not None:
            out.append(check_exact(cell, Metric.MODEL_BYTES, dict(new.model_bytes), dict(stored.model_bytes)))
        if Metric.PARAMETERS in scope and new.params is not None and stored.params is not None:
            out.append(check_exact(cell, Metric.PARAMETERS, new.params, stored.params))
    if Metric.LATENCY in scope:
        if stored.ratios is None:
            out.append(Verdict(Metric.LATENCY, Status.UNGATED,
                               f"{cell}: latency not gated: no latency ratios stored{where}{hint}"))
        elif new.ratios is None:
            out.append(Verdict(Metric.LATENCY, Status.UNGATED, f"{cell}: latency not gated: ratios stored but "
                                                               f"none measured"))
        else:
            for key, value in sorted(stored.ratios.items()):
                if key not in new.ratios:
                    out.append(Verdict(Metric.LATENCY, Status.UNGATED,
                                       f"{cell}: latency ratio {key} stored ({value:.3f}) but not measured"))
                    continue
                ci = new.ratio_ci.get(key) or (new.ratios[key], new.ratios[key])
                out.append(check_ratio(cell, key, new.ratios[key], tuple(ci), value, tol.latency))
    if Metric.MEMORY in scope:
        if stored.memory is None:
            out.append(Verdict(Metric.MEMORY, Status.UNGATED,
                               f"{cell}: RSS not gated: no RSS deltas stored{where}{hint}"))
        else:
            for key, value in sorted(stored.memory.items()):
                if new.memory is None or key not in new.memory:
                    out.append(Verdict(Metric.MEMORY, Status.UNGATED,
                                       f"{cell}: {key} stored ({value / (1 << 20):.2f} MiB) but not measured"))
                else:
                    out.append(check_rss(cell, key, new.memory[key], value, tol.memory,
                                         (rss_noise or {}).get(key)))
    if Metric.ENERGY in scope:
        if stored.energy is None:
            out.append(Verdict(Metric.ENERGY, Status.UNGATED, f"{cell}: energy not gated: no energy figure "
                                                              f"stored{where}{hint}"))
        elif new.energy is not None:
            out.append(check_energy(cell, new.energy, stored.energy, tol.energy))
    return out


def outcome(verdicts: Iterable[Verdict]) -> Status:
    """A cell's one outcome: regressed, else ungated, else unsettled, else improved, else unchanged."""
    statuses = {v.status for v in verdicts}
    for s in (Status.REGRESSED, Status.UNGATED, Status.UNSETTLED, Status.IMPROVED):
        if s in statuses:
            return s
    return Status.UNCHANGED


# ---------------------------------------------------------------- run-level gates


def pool_yardsticks(ratios_by_cell: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Per pair, each yardstick's median over the pair's cells. The yardsticks time the same fp32
    model in every cell of a pair, so one lucky or unlucky recording does not become the bar for
    its cell: the stored side of every judgement (the grid's stored figures, ``compare``'s OLD)
    is pooled so."""
    values: dict[str, dict[str, list[float]]] = {}
    for cell_id, ratios in ratios_by_cell.items():
        for key in YARDSTICKS:
            if ratios and key in ratios:
                values.setdefault(pair_of(cell_id), {}).setdefault(key, []).append(float(ratios[key]))
    return {pair: {k: float(np.median(v)) for k, v in keys.items()} for pair, keys in values.items()}


def check_runtimes(cells, tol: LatencyTolerance) -> list[Verdict]:
    """The run-level latency gate per runtime: ``cells`` yields each cell's (new ratios, stored
    ratios); per yardstick, :func:`check_run_shift` over new/stored of every cell holding both."""
    cells = list(cells)
    return [check_run_shift(f"runtime yardstick {key}", [new[key] / stored[key] for new, stored in cells
                                                         if new.get(key) and stored.get(key)], tol)
            for key in YARDSTICKS]


#: The ratio a method-level gate reads: the variant over the fp32 policy in the variant's own runtime.
METHOD_RATIO = RatioKind.VARIANT


def kernel_class(figures: Mapping) -> str:
    """The kind of kernels a variant runs on: its runtime, with ``-int8`` where int8 weights sit
    in the graph, ``-fp16`` for half precision and ``-int4`` for MatMulNBits' 4-bit blocks
    (``onnxruntime-int8``, ``torch``, ...)."""
    runtime = str(figures.get("runtime") or "torch")
    if figures.get("int8_weight_tensors"):
        return f"{runtime}-int8"
    method = figures.get("method")
    return f"{runtime}-{method}" if method in ("fp16", "int4") else runtime


def check_methods(cells: Mapping[str, tuple[Mapping, Mapping]], tol: LatencyTolerance,
                  kernels: Mapping[str, str] | None = None) -> list[Verdict]:
    """The run-level latency gate per compression method and per kernel class: ``cells`` maps each
    cell id to its (new ratios, stored ratios), ``kernels`` each cell id to its
    :func:`kernel_class`; per group, :func:`check_run_shift` over ``variant/fp32`` new over stored,
    against ``method_rel``. A slowdown of one kind of kernel (int8 sessions after an ONNX Runtime
    upgrade, say) moves only that kind's cells, by less than a cell's own bar; the kernel class
    pools every method that runs on it, so a row of one environment resolves it."""
    groups: dict[str, list[float]] = {}
    members: dict[str, dict[str, list[float]]] = {}
    for cell_id, (new, stored) in sorted(cells.items()):
        if new.get(METHOD_RATIO) and stored.get(METHOD_RATIO):
            rel = new[METHOD_RATIO] / stored[METHOD_RATIO]
            groups.setdefault(f"method {method_of(cell_id)}", []).append(rel)
            if kernels and cell_id in kernels:
                name = f"kernels {kernels[cell_id]}"
                groups.setdefault(name, []).append(rel)
                members.setdefault(name, {}).setdefault(method_of(cell_id), []).append(rel)
    out = []
    for name, rel in sorted(groups.items()):
        v = check_run_shift(f"{name} ({METHOD_RATIO})", rel, tol, limit_rel=tol.method_rel)
        if v.status is Status.REGRESSED and name in members:  # name the methods that run on these kernels
            by = ", ".join(f"{m} {np.median(x):.3f}x ({len(x)})" for m, x in sorted(members[name].items()))
            v = Verdict(v.metric, v.status, f"{v.message}; its methods' medians: {by}")
        out.append(v)
    return out


def check_run_shift(what: str, rel: list[float], tol: LatencyTolerance, limit_rel: float | None = None) -> Verdict:
    """One run-level latency figure: ``rel`` holds each cell's new figure divided by its stored
    one. Regressed if the bootstrap CI of their median lies above ``1 + limit_rel`` (default
    ``runtime_rel``).

    A slowdown of one runtime for every model moves every cell's yardstick at once. One cell's
    ratio drifts by 20% and more with the VM's phases, but the median over a run's cells resolves
    a few percent. Fewer than ``runtime_min_cells`` cells are ``UNJUDGED``, said in the verdict.
    """
    limit_rel = tol.runtime_rel if limit_rel is None else limit_rel
    if len(rel) < tol.runtime_min_cells:
        return Verdict(Metric.LATENCY, Status.UNJUDGED,
                       f"{what}: {len(rel)} cell(s) with a stored figure, fewer than the "
                       f"{tol.runtime_min_cells} a run-level verdict needs ([latency] runtime_min_cells); not "
                       f"judged, run more cells to judge it")
    x = np.asarray(rel, dtype=float)
    med = float(np.median(x))
    lo, hi = bootstrap_ci(x, statistic=np.median, resamples=2000)
    limit = 1 + limit_rel
    head = (f"{what} over {len(x)} cells: median {med:.3f}x the stored figures (95% CI "
            f"[{lo:.3f}, {hi:.3f}]); tolerance +{100 * limit_rel:.0f}% (limit {limit:.3f})")
    status = Status.REGRESSED if lo > limit else Status.IMPROVED if hi < 1 / limit else Status.UNCHANGED
    return Verdict(Metric.LATENCY, status, head)
