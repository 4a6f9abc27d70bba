"""The paper's Tables 1-3 computed from a results file, next to the paper's figures, and the
per-cell figures relative to baseline (the paper's Figures 1-3 as numbers).

Pure functions from a :class:`~rlbench.report.results.ResultsFile` to rows; the report's sections
(:mod:`rlbench.report.sections.paper`, :mod:`~rlbench.report.sections.cells`) render them. A figure that is not in the file is ``None`` here and ``—`` in the report: nothing
is filled in.

Rules, and why:

* **Best variant (Table 1).** The variant with the highest mean return is called best only if
  its 95% CI overlaps no other variant's CI (in particular not the runner-up's); otherwise the row
  says ``tie (CIs overlap)`` and lists the variants whose CIs overlap the leader's. The paper picks
  the highest mean; with 10-50 chaotic episodes that often picks noise.
* **Pruning (Table 2).** The paper's rule, as the findings checks apply it
  (:func:`rlbench.grid.findings.highest_kept_ratio`): the highest *measured* pruning ratio whose mean
  return keeps at least 90% of the baseline mean return, even if a lower ratio failed (non-monotone
  curves happen). "90% of baseline" is ``mean >= baseline - 0.1 * |baseline|`` so that it stays
  meaningful for negative baselines.
* **Best pruning (Table 3).** The norm whose Table 2 ratio is higher (the paper: "at least 90% of
  the baseline while achieving the highest possible pruning percentage"); at equal ratios the
  higher return at that ratio, unless the two CIs overlap (then ``tie``).
* **The findings** (best quantization share, models keeping 90% after 5% and 50% pruning) are
  :func:`rlbench.grid.findings.compute` over the file's figures (:func:`report_findings`): the
  figures the findings checks gate on, by the same rules, so the report cannot disagree with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rlbench.grid import findings
from rlbench.grid.findings import Finding, highest_kept_ratio, keeps
from rlbench.report.results import QUANT_METHODS, CellRecord, ResultsFile, ReturnStat
from rlbench.zoo.registry import ALGOS, ENVS, env_short, has_pair

MISSING = "—"
KEEP_FRACTION = findings.KEEP
TABLE1_METHODS: tuple[str, ...] = ("baseline",) + QUANT_METHODS
MIB = 1024 * 1024


def report_pairs(results: ResultsFile) -> list[tuple[str, str]]:
    """Every algorithm x environment of the registry (the paper's grid, so missing rows show as
    missing), then any other pair present in the file, in registry order."""
    pairs = [(a, e) for a in ALGOS for e in ENVS if has_pair(a, e)]
    extra = [p for p in results.pairs() if p not in pairs]
    return pairs + sorted(extra, key=lambda p: (ALGOS.index(p[0]), p[1]))


def fmt_stat(stat: ReturnStat | None, digits: int = 1) -> str:
    return MISSING if stat is None else stat.format(digits)


def fmt_num(v: float | None, spec: str = ".2f") -> str:
    return MISSING if v is None else format(v, spec)


def paper_cell(paper: Mapping, table: str, algo: str, env_id: str) -> Mapping | None:
    """The paper's entry for one pair in one of its tables (``table1_average_return``,
    ``table2_pruning``, ``table3_best_pruning``), or ``None``. The paper names environments without
    their version (``Hopper``, its -v4), so the lookup goes through :func:`env_short`."""
    return paper.get(table, {}).get(algo, {}).get(env_short(env_id))


# ------------------------------------------------------------------------------------------ Table 1


@dataclass(frozen=True)
class BestPick:
    """The outcome of picking the best of several returns with CIs."""

    status: str
    """``best`` (decisive), ``tie`` (the leader's CI overlaps another's) or ``n/a`` (fewer than two)."""
    leader: str | None
    """Highest mean (the winner when ``status == "best"``)."""
    tied: tuple[str, ...] = ()
    """With ``tie``: the leader and every variant whose CI overlaps the leader's, by mean."""

    def describe(self) -> str:
        if self.status == "best":
            return f"{self.leader} ★"
        if self.status == "tie":
            return f"tie (CIs overlap): {', '.join(self.tied)}"
        return MISSING


def pick_best(stats: Mapping[str, ReturnStat | None]) -> BestPick:
    """Best by mean return, called only when the leader's CI overlaps no other CI."""
    avail = sorted(((k, v) for k, v in stats.items() if v is not None), key=lambda kv: -kv[1].mean)
    if len(avail) < 2:
        return BestPick("n/a", avail[0][0] if avail else None)
    leader, lstat = avail[0]
    overlapping = [k for k, v in avail[1:] if v.overlaps(lstat)]
    if not overlapping:
        return BestPick("best", leader)
    return BestPick("tie", leader, (leader, *overlapping))


@dataclass(frozen=True)
class Table1Row:
    algo: str
    env_id: str
    ours: Mapping[str, ReturnStat | None]
    paper: Mapping[str, float | None]
    best: BestPick
    paper_best: str | None


def table1(results: ResultsFile, paper: Mapping) -> list[Table1Row]:
    """Average return per algorithm x environment x quantization method, ours and the paper's."""
    pairs = results.by_pair()
    rows = []
    for algo, env_id in report_pairs(results):
        cells = pairs.get(f"{algo}-{env_id}", {})
        ours = {m: (cells[m].return_stat() if m in cells else None) for m in TABLE1_METHODS}
        pcell = paper_cell(paper, "table1_average_return", algo, env_id) or {}
        pfig = {m: pcell.get(m) for m in TABLE1_METHODS}
        known = {m: v for m, v in pfig.items() if v is not None}
        rows.append(Table1Row(algo, env_id, ours, pfig, pick_best(ours),
                              max(known, key=known.get) if known else None))
    return rows


# ------------------------------------------------------------------------------------------ Table 2


highest_surviving_ratio = highest_kept_ratio
"""Table 2's rule: :func:`rlbench.grid.findings.highest_kept_ratio`."""


@dataclass(frozen=True)
class PruneChoice:
    """Table 2's answer for one norm of one pair."""

    norm: str
    status: str
    """``ok`` (a ratio survives), ``none`` (every measured ratio loses > 10%), ``missing`` (no
    baseline return or no pruned cell of this norm)."""
    ratio: float | None = None
    stat: ReturnStat | None = None
    """The return at ``ratio``."""
    measured: tuple[float, ...] = ()
    kept: tuple[float, ...] = ()
    """The measured ratios whose mean return keeps ``keep`` of the baseline's (:func:`keeps`)."""

    def describe(self) -> str:
        if self.status == "ok":
            return f"{self.ratio:.2f}"
        if self.status == "none":
            return f"none < 90% ({len(self.measured)} ratios)"
        return MISSING


def prune_choice(cells: Mapping[str, CellRecord], norm: str, keep: float = KEEP_FRACTION) -> PruneChoice:
    """Apply the Table 2 rule to one pair's cells (variant -> record) for ``norm`` (``l1``/``l2``)."""
    base = cells.get("baseline")
    bstat = base.return_stat() if base is not None else None
    points: dict[float, ReturnStat] = {}
    for rec in cells.values():
        if rec.cell.method == norm and rec.cell.ratio is not None:
            st = rec.return_stat()
            if st is not None:
                points[rec.cell.ratio] = st
    measured = tuple(sorted(points))
    if bstat is None or not points:
        return PruneChoice(norm, "missing", measured=measured)
    kept = tuple(r for r in measured if keeps(points[r].mean, bstat.mean, keep))
    ratio = highest_surviving_ratio(bstat.mean, {r: s.mean for r, s in points.items()}, keep)
    if ratio is None:
        return PruneChoice(norm, "none", measured=measured)
    return PruneChoice(norm, "ok", ratio, points[ratio], measured, kept)


@dataclass(frozen=True)
class Table2Row:
    algo: str
    env_id: str
    baseline: ReturnStat | None
    l1: PruneChoice
    l2: PruneChoice
    paper: Mapping | None
    """The paper's ``{baseline, pruned, l1_ratio, l2_ratio}``."""


def table2(results: ResultsFile, paper: Mapping, keep: float = KEEP_FRACTION) -> list[Table2Row]:
    pairs = results.by_pair()
    rows = []
    for algo, env_id in report_pairs(results):
        cells = pairs.get(f"{algo}-{env_id}", {})
        base = cells.get("baseline")
        rows.append(Table2Row(algo, env_id, base.return_stat() if base is not None else None,
                              prune_choice(cells, "l1", keep), prune_choice(cells, "l2", keep),
                              paper_cell(paper, "table2_pruning", algo, env_id)))
    return rows


# ------------------------------------------------------------------------------------------ Table 3


@dataclass(frozen=True)
class BestPruning:
    status: str
    """``ok``, ``tie`` (same ratio, CIs overlap), ``none`` (no norm survives), ``missing``."""
    norm: str | None = None
    ratio: float | None = None
    note: str = ""

    def describe(self) -> str:
        if self.status == "ok":
            return f"{self.norm} {self.ratio:.2f}" + (f" ({self.note})" if self.note else "")
        if self.status == "tie":
            return f"L1 = L2 {self.ratio:.2f} (tie, CIs overlap)"
        if self.status == "none":
            return "none (no ratio keeps ≥ 90%)"
        return MISSING


def best_pruning(l1: PruneChoice, l2: PruneChoice) -> BestPruning:
    ok = [c for c in (l1, l2) if c.status == "ok"]
    if not ok:
        if l1.status == "missing" and l2.status == "missing":
            return BestPruning("missing")
        return BestPruning("none")
    if len(ok) == 1:
        c, other = ok[0], (l2 if ok[0] is l1 else l1)
        note = f"{other.norm.upper()} not measured" if other.status == "missing" else ""
        return BestPruning("ok", c.norm.upper(), c.ratio, note)
    a, b = ok
    if a.ratio != b.ratio:
        c = a if a.ratio > b.ratio else b
        return BestPruning("ok", c.norm.upper(), c.ratio)
    if a.stat.overlaps(b.stat):
        return BestPruning("tie", None, a.ratio)
    c = a if a.stat.mean > b.stat.mean else b
    return BestPruning("ok", c.norm.upper(), c.ratio, "higher return at equal ratio")


@dataclass(frozen=True)
class Table3Row:
    algo: str
    env_id: str
    ours: BestPruning
    paper_norm: str | None
    paper_ratio: float | None

    @property
    def agrees(self) -> bool | None:
        """Same norm as the paper (``None`` when either side has no answer or ours is a tie)."""
        if self.ours.status != "ok" or self.paper_norm is None:
            return None
        return self.ours.norm == self.paper_norm.upper()


def table3(results: ResultsFile, paper: Mapping, keep: float = KEEP_FRACTION) -> list[Table3Row]:
    rows = []
    for r2 in table2(results, paper, keep):
        p = paper_cell(paper, "table3_best_pruning", r2.algo, r2.env_id) or {}
        rows.append(Table3Row(r2.algo, r2.env_id, best_pruning(r2.l1, r2.l2), p.get("norm"), p.get("ratio")))
    return rows


# ---------------------------------------------------------------------------- relative to baseline


def relative_latency(rec: CellRecord) -> tuple[float, float, float] | None:
    """``ratios["variant/fp32"]`` with its CI: the variant's latency over the fp32 policy's, timed
    interleaved in the same process (machine-robust; absolute latencies are not)."""
    r = rec.ratios.get("variant/fp32")
    if r is None:
        return None
    lo, hi = rec.ratio_ci.get("variant/fp32", (r, r))
    return float(r), float(lo), float(hi)


def relative_memory(rec: CellRecord, base: CellRecord | None, key: str = "rss_delta_bytes") -> float | None:
    """The cell's RSS delta over its baseline's (same pair), when both recorded it."""
    if base is None:
        return None
    a, b = rec.memory.get(key), base.memory.get(key)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return float(a) / float(b)


def relative_energy(rec: CellRecord, base: CellRecord | None) -> float | None:
    """Joules per 1000 inferences over the baseline's, only when both were measured by a meter."""
    if base is None or rec.energy is None or base.energy is None:
        return None
    if not (rec.energy.available and base.energy.available) or not base.energy.joules_per_1000:
        return None
    return rec.energy.joules_per_1000 / base.energy.joules_per_1000


def energy_text(rec: CellRecord, base: CellRecord | None) -> str:
    """The energy column: a relative figure, or ``no meter: <reason>``, never a made-up number."""
    if rec.energy is None:
        return MISSING
    if not rec.energy.available:
        return rec.energy.describe()
    rel = relative_energy(rec, base)
    text = rec.energy.describe()
    return text + (f" ({rel:.2f}x)" if rel is not None else "")


@dataclass(frozen=True)
class CellRow:
    """One line of the per-cell table."""

    rec: CellRecord
    ret: ReturnStat | None
    ret_rel: float | None
    latency: tuple[float, float, float] | None
    memory_rel: float | None
    energy: str


def cell_rows(results: ResultsFile) -> list[CellRow]:
    pairs = results.by_pair()
    rows = []
    for rec in results.records:
        base = pairs[rec.cell.pair].get("baseline")
        st = rec.return_stat()
        bst = base.return_stat() if base is not None else None
        ret_rel = st.mean / bst.mean if st is not None and bst is not None and bst.mean != 0 else None
        rows.append(CellRow(rec, st, ret_rel, relative_latency(rec), relative_memory(rec, base),
                            energy_text(rec, base)))
    return rows


# ---------------------------------------------------------------------------------------- findings


def figures_of(results: ResultsFile) -> dict[str, dict]:
    """The file's cells in the shape ``baselines/figures.json`` stores (:meth:`CellRecord.figures_json`)."""
    return {r.id: r.figures_json() for r in results.records}


def report_findings(results: ResultsFile) -> dict[str, Finding]:
    """The paper's findings over the file's figures: :func:`rlbench.grid.findings.compute`, the one
    computation the findings checks use, keyed by finding (``ptdq_vs_ptsq``, ``keep90_at_0.05``, ...)."""
    return {f.key: f for f in findings.compute(figures_of(results))}


def quantization_best_share(rows: list[Table1Row], found: Mapping[str, Finding]) -> dict[str, dict[str, int]]:
    """Which quantization method has the highest mean return per pair (baseline excluded, like the
    paper's 40/36/24% split): ours from the ``ptdq_vs_ptsq`` finding (:func:`rlbench.grid.findings.best_by_mean`,
    over the pairs with PTDQ and PTSQ returns: ``pairs``), the paper's from Table 1."""
    f = found.get("ptdq_vs_ptsq")
    share = dict(f.ours.get("best_share", {})) if f is not None else {}
    ours = {m: int(share.get(m, 0)) for m in QUANT_METHODS}
    paper = {m: 0 for m in QUANT_METHODS}
    for row in rows:
        known = {m: row.paper[m] for m in QUANT_METHODS if row.paper.get(m) is not None}
        if known:
            paper[max(known, key=known.get)] += 1
    return {"ours": ours, "paper": paper, "pairs": {"ours": f.n if f is not None else 0}}


def pruning_kept(found: Mapping[str, Finding], ratio: float) -> tuple[int, int]:
    """(kept, models): pruned models (pair x norm) whose mean return keeps 90% of the baseline's at
    exactly ``ratio`` (0.05 or 0.50), over pairs whose baseline return is positive (the
    ``keep90_at_*`` finding)."""
    f = found.get(f"keep90_at_{ratio:.2f}")
    if f is None:
        return 0, 0
    return int(f.ours["kept"]), int(f.ours["models"])
