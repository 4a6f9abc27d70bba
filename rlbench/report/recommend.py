"""``rlbench recommend``: per algorithm x environment pair, the variant to deploy.

For each pair, among the compressed variants whose return stays within ``keep`` of the fp32
return, the one with the smallest deployed model and the one with the lowest latency.

**Admissible** is decided by the grid's own return gate, :func:`rlbench.checks.check_return`, with
the fp32 cell as the stored side and ``rel_drop = 1 - keep`` (``alpha`` and ``abs_floor`` from
``baselines/tolerances.toml``): a variant is excluded only if the gate would fail it, that is its
mean lies more than ``(1 - keep) * |fp32 mean|`` below the fp32 mean *and* Mann-Whitney resolves
the two samples at ``alpha``, or it scores no better than doing nothing where fp32 does. A variant
below the line whose difference the statistics cannot resolve stays admissible, and says so
(``unresolved``). With ``keep = 1 - rel_drop`` (0.90) a variant is admissible exactly when the
gate, judging it against its fp32 policy, would pass its return.

**Smallest** is the fewest bytes of the deployed ONNX model (``bytes_total``), ties broken by
latency. **Fastest** ranks by the variant's single-observation time over the pair's NumPy
reference, estimated as its in-process ``variant/fp32`` ratio (the variant against fp32 in the
variant's own runtime) times the pair's pooled yardstick of that runtime
(:func:`rlbench.checks.pool_yardsticks`), so torch and ONNX Runtime variants sit on one scale
without a cross-runtime ratio of one noisy cell. The row shows ``variant/fp32`` and names the
runtime.

A pair whose fp32 return is no better than doing nothing (its 95% CI does not lie above the
zero-action return's CI on the same seeds, ``baselines/idle.json``; the gate's own condition for
its doing-nothing test) is flagged and gets no recommendation.

Inputs: a results file (:func:`recommend_file`) or a machine's stored figures
(:func:`stored_results`). Output: :func:`markdown`, :func:`to_json` / :func:`from_json`, and
:func:`report_blocks`, the section ``rlbench report`` adds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rlbench.core.errors import BaselineError, ResultsError
from rlbench.core.paths import baselines_dir
from rlbench.core.versions import machine_id
from rlbench.gate.checks import Status, check_return, idle_bar, mann_whitney_p, pool_yardsticks
from rlbench.gate.idle import by_seed as idle_by_seed
from rlbench.gate.store import BaselineStore
from rlbench.gate.tolerances import Tolerances
from rlbench.measure.int8kernel import uses_int8_kernels
from rlbench.measure.stats import bootstrap_ci
from rlbench.report.markup import Document, Heading, Para, Table, to_markdown
from rlbench.report.results import CellRecord, ResultsFile, load_results, record_from_entry

SCHEMA = 1
KEEP = 0.95
"""The default fraction of the fp32 return a variant must not be resolved below."""

YARDSTICK = {"torch": "torch-fp32/numpy-ref", "onnxruntime": "onnx-fp32/numpy-ref"}
"""Each runtime's fp32 policy over the NumPy reference: the scale that puts runtimes side by side."""

RECOMMENDED, NONE_ADMISSIBLE, WEAK_BASELINE = "recommended", "no admissible variant", "weak baseline"
NO_FP32, NO_VARIANT = "no fp32", "no variant measured"
KEPT, UNRESOLVED = "kept", "unresolved"
MISSING = "—"


@dataclass(frozen=True)
class Choice:
    """One recommended variant with the figures an engineer deploys it by."""

    cell: str
    variant: str
    runtime: str | None
    return_mean: float
    return_ci: tuple[float, float]
    episodes: int
    fraction: float | None
    """Mean return over the fp32 mean (``None`` where the fp32 mean is not positive)."""
    standing: str
    """``kept``: the mean is at or above the line; ``unresolved``: below it, but not resolved below."""
    p_value: float
    """Two-sided Mann-Whitney p of the variant's returns against fp32's."""
    latency_ratio: float | None
    """``variant/fp32``: the variant over the fp32 policy in the variant's own runtime."""
    latency_ratio_ci: tuple[float, float] | None
    latency_vs_ref: float | None
    """The ranking figure: the variant's time over the pair's NumPy reference (see the module)."""
    latency_us: float | None
    """The variant's median single-observation latency on the machine that measured it."""
    bytes: int | None
    compression: float | None
    """fp32 bytes over the variant's bytes (deployed ONNX)."""
    ties: tuple[str, ...] = ()
    """Other admissible variants the figure cannot tell apart from this one (fastest: latency CIs
    overlap; smallest: the same bytes)."""


@dataclass(frozen=True)
class PairRecommendation:
    pair: str
    status: str
    """``recommended``, ``no admissible variant``, ``weak baseline``, ``no fp32`` or ``no variant measured``."""
    note: str
    fp32_mean: float | None
    fp32_ci: tuple[float, float] | None
    fp32_episodes: int
    fp32_bytes: int | None
    fp32_latency_us: Mapping[str, float]
    """The fp32 policy's median latency per runtime (``torch``, ``onnxruntime``) where measured."""
    threshold: float | None
    """``keep`` of the fp32 mean (``fp32 - (1 - keep) * |fp32|``)."""
    candidates: int
    """The pair's compressed variants with per-episode returns (the ones that can be judged)."""
    admissible: int | None
    """How many candidates the return gate admits (``None``: not judged, a weak baseline)."""
    smallest: Choice | None
    fastest: Choice | None
    excluded: tuple[str, ...] = ()
    """The variants the return gate resolves below the line (or at doing nothing)."""


@dataclass(frozen=True)
class Recommendations:
    source: str
    keep: float
    alpha: float
    machine_ids: tuple[str, ...]
    pairs: tuple[PairRecommendation, ...]
    schema: int = SCHEMA


# ------------------------------------------------------------------------------------------ inputs


def stored_results(root: Path, machine: str) -> ResultsFile:
    """A machine's stored figures as a results file: ``figures.json`` (returns, bytes) with
    ``machines/MACHINE.json`` (latency). Int8 ONNX Runtime cells take the returns of the
    machine's int8 kernel class (``int8-kernels/``); a cell without returns for it has none."""
    store = BaselineStore.of_stored_machine(root, machine)
    cells = store.cells()
    if not cells:
        raise BaselineError(f"{store.figures_path}: no stored cells to recommend from")
    info = store.machine_info()
    source = f"the stored figures of machine {machine} ({store.root})"
    records = []
    for cell in cells:
        try:
            fig = store.require(cell, int8=uses_int8_kernels(store.figures(cell)))
        except BaselineError:  # no returns for this machine's kernels: the cell keeps its other figures
            fig = {k: v for k, v in store.require(cell, returns=False).items()
                   if k not in ("returns", "return_mean", "return_ci", "lengths")}
        entry = {"param": cell, "name": cell,
                 "extra_info": {"figures": fig, "machine_figures": store.machine_figures(cell) or {},
                                "rlbench": {"machine_id": machine, "machine": info}}}
        records.append(record_from_entry(entry, source))
    return ResultsFile(path=source, records=tuple(sorted(records, key=lambda r: r.cell.sort_key())),
                       machine_info=info, commit_info={}, datetime=None, version=None)


# ------------------------------------------------------------------------------------------ the rule


def check_keep(keep: float) -> float:
    if not isinstance(keep, (int, float)) or isinstance(keep, bool) or not 0 < keep <= 1:
        raise ResultsError(f"--keep {keep!r}: expected a fraction of the fp32 return in (0, 1], e.g. 0.95")
    return float(keep)


def recommend(results: ResultsFile, keep: float = KEEP, tolerances: Tolerances | None = None,
              idle: Mapping[str, Mapping[int, float]] | None = None) -> Recommendations:
    """Every pair of ``results``: see the module for the rule. ``idle``: doing nothing's return
    per seed per environment (:func:`rlbench.gate.idle.by_seed`); ``tolerances``: the gate's (``alpha``,
    ``abs_floor``; ``rel_drop`` is replaced by ``1 - keep``)."""
    keep = check_keep(keep)
    tol = replace((tolerances or Tolerances()).returns, rel_drop=1.0 - keep)
    pooled = pool_yardsticks({r.id: r.ratios for r in results.records})
    pairs: list[PairRecommendation] = []
    for pair, by_variant in results.by_pair().items():
        cells = list(by_variant.values())
        pairs.append(_pair(pair, cells, tol, pooled.get(pair, {}), (idle or {}).get(cells[0].cell.env_id), keep))
    return Recommendations(results.path, keep, tol.alpha, tuple(results.machine_ids()), tuple(pairs))


def recommend_file(path: str | Path | None = None, *, machine: str | None = None, keep: float = KEEP,
                   baselines: str | Path | None = None) -> Recommendations:
    """From a results file, or (``path`` None) from the stored figures of ``machine`` (default:
    this machine's id). Tolerances and doing nothing's returns come from ``baselines``
    (default: the repository's ``baselines/``)."""
    keep = check_keep(keep)
    if path is not None and machine is not None:
        raise ResultsError(f"{path}: --machine reads a machine's stored figures; give a results file or --machine, "
                           f"not both")
    root = Path(baselines) if baselines is not None else baselines_dir()
    if path is None:
        results = stored_results(root, machine or machine_id())
    else:
        results = load_results(path)
    return recommend(results, keep, Tolerances.load(root / "tolerances.toml"), idle_by_seed(root))


def _pair(pair: str, cells: list[CellRecord], tol, pooled: Mapping[str, float],
          idle: Mapping[int, float] | None, keep: float) -> PairRecommendation:
    base = next((r for r in cells if r.cell.is_baseline), None)
    variants = [r for r in cells if not r.cell.is_baseline]
    if base is None or not base.returns:
        why = "no fp32 (baseline) cell" if base is None else "the fp32 cell has no per-episode returns"
        return PairRecommendation(pair, NO_FP32, f"{why} in {cells[0].source}: nothing to judge the variants by",
                                  None, None, 0, None, {}, None, sum(1 for r in variants if r.returns), None,
                                  None, None)
    old = np.asarray(base.returns, dtype=float)
    mean = float(old.mean())
    stat = base.return_stat()
    ci = (stat.lo, stat.hi)
    fp32_us = {rt: base.latency_s[k] * 1e6 for rt, k in (("torch", "torch-fp32"), ("onnxruntime", "onnx-fp32"))
               if k in base.latency_s}
    threshold = mean - (1.0 - keep) * abs(mean)
    head = dict(pair=pair, fp32_mean=mean, fp32_ci=ci, fp32_episodes=int(old.size), fp32_bytes=base.bytes_total,
                fp32_latency_us=fp32_us, threshold=threshold,
                candidates=sum(1 for r in variants if r.returns))
    bar = idle_bar(idle, base.seeds)
    if bar is not None and bootstrap_ci(old)[0] <= bar[2]:
        return PairRecommendation(**head, status=WEAK_BASELINE, admissible=None, smallest=None, fastest=None,
                                  note=f"fp32 return {mean:.1f} (95% CI [{ci[0]:.1f}, {ci[1]:.1f}]) is no better "
                                       f"than doing nothing ({bar[0]:.1f}, CI up to {bar[2]:.1f}): not recommended")
    admissible, excluded = [], []
    for r in variants:
        if not r.returns:
            continue
        v = check_return(r.id, r.returns, base.returns, tol, idle=idle, seeds=r.seeds)
        if v.status is Status.REGRESSED:
            excluded.append(r.cell.variant)
        else:
            admissible.append(_choice(r, base, pooled, threshold))
    head["excluded"] = tuple(excluded)
    if not excluded and not admissible:
        return PairRecommendation(**head, status=NO_VARIANT, admissible=0, smallest=None, fastest=None,
                                  note=f"no compressed variant with per-episode returns in {cells[0].source}")
    if not admissible:
        return PairRecommendation(**head, status=NONE_ADMISSIBLE, admissible=0, smallest=None, fastest=None,
                                  note=f"each of the {len(excluded)} variants is resolved below {keep:.0%} of fp32")
    smallest = _smallest(admissible)
    fastest = _fastest(admissible)
    note = ("" if bar is not None else
            f"doing nothing's return not stored for {cells[0].cell.env_id}: the pair was not checked against it")
    if fastest is None:
        note = "; ".join(filter(None, [note, "no latency figures for the admissible variants"]))
    return PairRecommendation(**head, status=RECOMMENDED, note=note, admissible=len(admissible),
                              smallest=smallest, fastest=fastest)


def _choice(r: CellRecord, base: CellRecord, pooled: Mapping[str, float], threshold: float) -> Choice:
    stat = r.return_stat()
    base_mean = sum(base.returns) / len(base.returns)
    ratio, ratio_ci = r.ratios.get("variant/fp32"), r.ratio_ci.get("variant/fp32")
    scale = pooled.get(YARDSTICK.get(r.runtime or "", ""))
    if ratio is not None and scale is not None:
        speed = ratio * scale
    else:  # a runtime without a yardstick: the cell's own cross-runtime ratio
        speed = r.ratios.get("variant/numpy-ref")
    us = r.latency_s.get("variant")
    nbytes = r.bytes_total
    factor = (base.bytes_total / nbytes if base.bytes_total and nbytes else r.compression_factor)
    return Choice(cell=r.id, variant=r.cell.variant, runtime=r.runtime, return_mean=stat.mean,
                  return_ci=(stat.lo, stat.hi), episodes=stat.n,
                  fraction=stat.mean / base_mean if base_mean > 0 else None,
                  standing=KEPT if stat.mean >= threshold else UNRESOLVED,
                  p_value=mann_whitney_p(r.returns, base.returns), latency_ratio=ratio,
                  latency_ratio_ci=tuple(ratio_ci) if ratio_ci is not None else None,
                  latency_vs_ref=speed, latency_us=None if us is None else us * 1e6, bytes=nbytes,
                  compression=factor)


def _smallest(choices: list[Choice]) -> Choice | None:
    sized = [c for c in choices if c.bytes is not None]
    if not sized:
        return None
    best = min(sized, key=lambda c: (c.bytes, _inf(c.latency_vs_ref), -c.return_mean))
    return replace(best, ties=tuple(c.variant for c in sized if c.bytes == best.bytes and c is not best))


def _fastest(choices: list[Choice]) -> Choice | None:
    timed = [c for c in choices if c.latency_vs_ref is not None]
    if not timed:
        return None
    best = min(timed, key=lambda c: (c.latency_vs_ref, _inf(c.bytes), -c.return_mean))
    lo, hi = _speed_ci(best)
    ties = tuple(c.variant for c in timed if c is not best and _speed_ci(c)[0] <= hi and lo <= _speed_ci(c)[1])
    return replace(best, ties=ties)


def _speed_ci(c: Choice) -> tuple[float, float]:
    """The ranking figure's CI: the ``variant/fp32`` CI on the ranking scale (the pooled yardstick
    held fixed); the point where no CI is recorded."""
    if c.latency_ratio_ci is None or not c.latency_ratio:
        return c.latency_vs_ref, c.latency_vs_ref
    scale = c.latency_vs_ref / c.latency_ratio
    return c.latency_ratio_ci[0] * scale, c.latency_ratio_ci[1] * scale


def _inf(v):
    return math.inf if v is None else v


# ------------------------------------------------------------------------------------------ JSON


def to_json(recs: Recommendations) -> dict:
    return asdict(recs)


def from_json(data: Mapping) -> Recommendations:
    """The inverse of :func:`to_json` (tuples restored). Raises :class:`ResultsError` on another shape."""
    def choice(d):
        if d is None:
            return None
        return Choice(**{**d, "return_ci": tuple(d["return_ci"]), "ties": tuple(d["ties"]),
                         "latency_ratio_ci": None if d["latency_ratio_ci"] is None else tuple(d["latency_ratio_ci"])})

    try:
        if data.get("schema") != SCHEMA:
            raise ResultsError(f"recommendations schema {data.get('schema')!r}, this rlbench reads {SCHEMA}")
        pairs = tuple(PairRecommendation(**{**p, "fp32_ci": None if p["fp32_ci"] is None else tuple(p["fp32_ci"]),
                                            "excluded": tuple(p["excluded"]),
                                            "smallest": choice(p["smallest"]), "fastest": choice(p["fastest"])})
                      for p in data["pairs"])
        return Recommendations(**{**data, "machine_ids": tuple(data["machine_ids"]), "pairs": pairs})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(f"not an rlbench recommend JSON document ({exc!r})") from None


# ------------------------------------------------------------------------------------------ Markdown


HEADER = ("Pair", "fp32 return", "Admissible", "Pick", "Variant (runtime)", "Return (95% CI)", "of fp32",
          "Latency vs fp32", "Latency (µs)", "Bytes", "Compression")
NUMERIC = (2, 6, 7, 8, 9, 10)


def _ci(mean: float, ci: tuple[float, float]) -> str:
    return f"{mean:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"


def _fraction(c: Choice) -> str:
    text = MISSING if c.fraction is None else f"{c.fraction:.2f}"
    return text if c.standing == KEPT else f"{text} (below the line; not resolved, p={c.p_value:.2g})"


def _latency(c: Choice) -> str:
    if c.latency_ratio is None:
        return MISSING
    ci = f" [{c.latency_ratio_ci[0]:.2f}, {c.latency_ratio_ci[1]:.2f}]" if c.latency_ratio_ci else ""
    return f"{c.latency_ratio:.2f}x{ci} of {c.runtime or 'its runtime'} fp32"


def _choice_cells(c: Choice, pick: str) -> tuple[str, ...]:
    ties = f"; ties: {', '.join(c.ties[:3])}{' …' if len(c.ties) > 3 else ''}" if c.ties else ""
    return (pick, f"{c.variant} ({c.runtime or MISSING}){ties}", f"{_ci(c.return_mean, c.return_ci)} n={c.episodes}",
            _fraction(c), _latency(c), MISSING if c.latency_us is None else f"{c.latency_us:.1f}",
            MISSING if c.bytes is None else f"{c.bytes:,}",
            MISSING if c.compression is None else f"{c.compression:.2f}x")


def rows(recs: Recommendations) -> tuple[tuple[str, ...], ...]:
    """The table's rows: one per pick (one for both when smallest and fastest are the same variant),
    one row with the reason where a pair gets no recommendation; pairs without variants have none."""
    out = []
    for p in recs.pairs:
        if p.status == NO_VARIANT:
            continue  # named in one sentence under the table (:func:`blocks`)
        fp32 = MISSING if p.fp32_mean is None else _ci(p.fp32_mean, p.fp32_ci)
        lead = (p.pair, fp32, MISSING if p.admissible is None else f"{p.admissible} / {p.candidates}")
        if p.status != RECOMMENDED:
            out.append(lead + (MISSING, f"**{p.status}**: {p.note}") + (MISSING,) * 6)
            continue
        picks = [(c, name) for c, name in ((p.smallest, "smallest"), (p.fastest, "fastest")) if c is not None]
        if len(picks) == 2 and picks[0][0].cell == picks[1][0].cell:
            picks = [(p.smallest, "smallest, fastest")]
        for c, name in picks:
            out.append(lead + _choice_cells(c, name))
        if p.note:
            out.append(lead + (MISSING, p.note) + (MISSING,) * 6)
    return tuple(out)


def explanation(recs: Recommendations) -> str:
    return (f"Per pair, among the compressed variants whose return is not resolved below {recs.keep:.0%} of the fp32 "
            f"return (the grid's return gate with the allowed drop set to {1 - recs.keep:.0%}: excluded only where "
            f"the mean lies below the line and Mann-Whitney resolves it from fp32 at alpha={recs.alpha:g}, or where "
            f"it scores no better than doing nothing), the smallest deployed ONNX model and the lowest "
            f"single-observation latency. Latency vs fp32 is the in-process ratio to the fp32 policy in the "
            f"variant's own runtime; variants are ranked across runtimes by that ratio times the pair's pooled fp32 "
            f"yardstick of the runtime. Compression is fp32 bytes over the variant's. Admissible counts variants. "
            f"Pairs whose fp32 return is no better than doing nothing are flagged, not recommended.")


def blocks(recs: Recommendations, level: int = 2) -> list:
    out = [Heading(level, f"Which variant to deploy (return kept ≥ {recs.keep:.0%} of fp32)"),
           Para(explanation(recs)), Table(HEADER, rows(recs), NUMERIC)]
    bare = [p.pair for p in recs.pairs if p.status == NO_VARIANT]
    if bare:
        out.append(Para(f"No compressed variant measured, fp32 only: {', '.join(bare)}."))
    return out


def markdown(recs: Recommendations) -> str:
    name = Path(recs.source).name if recs.source.endswith(".json") else recs.source
    ids = [m for m in recs.machine_ids if m not in name]
    doc = Document(f"rlbench recommend: {name}" + (f" on {', '.join(ids)}" if ids else ""))
    return to_markdown(doc.add(*blocks(recs)))


def report_blocks(results: ResultsFile, keep: float = KEEP) -> list:
    """The section ``rlbench report`` shows, judged with the repository's tolerances and doing
    nothing's returns (``baselines/``)."""
    root = baselines_dir()
    return blocks(recommend(results, keep, Tolerances.load(root / "tolerances.toml"), idle_by_seed(root)))


# ------------------------------------------------------------------------------------------ command line
