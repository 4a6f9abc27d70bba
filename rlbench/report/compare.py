"""``rlbench compare OLD.json NEW.json``: per-cell verdicts between two results files.

The checks are :mod:`rlbench.gate.checks` (the same ones ``bench/`` asserts with), with the
tolerances of ``baselines/tolerances.toml``:

* **return**: :func:`~rlbench.gate.checks.check_return` (relative drop *and* Mann-Whitney).
* **latency**: only the in-process ratios ``variant/fp32`` and ``*/numpy-ref``, through
  :func:`~rlbench.gate.checks.check_ratio` with NEW's bootstrap CI (``ratio_rel`` within a runtime,
  ``cross_rel`` across runtimes). Per run, each runtime yardstick's NEW/OLD median over the common
  cells goes through :func:`~rlbench.gate.checks.check_runtimes` (``runtime_rel``), as in the main
  job. Absolute latency is never compared: it moves with the machine and its load, the ratios far less.
* **memory**: model bytes and parameter counts exactly (``[memory] bytes_exact``); RSS deltas
  regress only beyond both ``rss_rel`` and ``rss_abs_mib``.
* **energy**: only when both sides were measured by a meter; beyond ``[energy] rel``.

Cells on one side only, and differing machine ids, library versions or thread settings, are
reported, never silently skipped. Exit status: 1 if any cell or runtime regressed, else 0; bad input raises
:class:`~rlbench.report.results.ResultsError` (the CLI prints it and exits 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rlbench.core.errors import ResultsError
from rlbench.core.paths import baselines_dir
from rlbench.gate import idle
from rlbench.gate.checks import (CELL_METRICS, CellFigures, Metric, Status, Verdict, check_methods, check_runtimes,
                                 judge_cell, kernel_class, outcome, pair_of, pool_yardsticks)
from rlbench.gate.store import BaselineStore
from rlbench.gate.tolerances import Tolerances
from rlbench.report.results import CellRecord, ResultsFile, load_results, parse_cell_id

MIB = 1024 * 1024
_RANK = {Status.REGRESSED: 0, Status.UNGATED: 1, Status.UNSETTLED: 2, Status.IMPROVED: 3, Status.UNCHANGED: 4}


def default_tolerances_path() -> Path:
    return baselines_dir() / "tolerances.toml"


def parse_thresholds(values: list[str] | None) -> dict[str, float]:
    """``--threshold`` values: ``F`` (both), ``return=F`` (return ``rel_drop``), ``latency=F``
    (latency ``ratio_rel``). F is a fraction (0.2 = 20%)."""
    out: dict[str, float] = {}
    for raw in values or []:
        key, sep, val = raw.partition("=")
        if not sep:
            key, val = "", raw
        key = key.strip().lower()
        if key not in ("", "return", "latency"):
            raise ResultsError(f"--threshold {raw!r}: expected FRACTION, return=FRACTION or latency=FRACTION")
        try:
            f = float(val)
        except ValueError:
            raise ResultsError(f"--threshold {raw!r}: {val!r} is not a number (a fraction, e.g. 0.2)") from None
        if not 0 <= f < 10:
            raise ResultsError(f"--threshold {raw!r}: expected a fraction such as 0.2 (20%)")
        for k in (("return", "latency") if key == "" else (key,)):
            out[k] = f
    return out


def apply_thresholds(tol: Tolerances, thresholds: dict[str, float]) -> Tolerances:
    if "return" in thresholds:
        tol = replace(tol, returns=replace(tol.returns, rel_drop=thresholds["return"]))
    if "latency" in thresholds:
        tol = replace(tol, latency=replace(tol.latency, ratio_rel=thresholds["latency"]))
    return tol


@dataclass(frozen=True)
class CellComparison:
    cell: str
    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
    """Checks that could not run (a figure missing on one side) and other remarks."""

    @property
    def status(self) -> Status:
        return outcome(self.verdicts)

    def line(self) -> str:
        """One line for a CI log: the cell, then every regressed or improved verdict (for an
        unchanged cell, the checks that ran)."""
        parts = [_strip_cell(v.message, self.cell) for v in self.verdicts if v.status is not Status.UNCHANGED]
        if not parts:
            counts: dict[str, int] = {}
            for v in self.verdicts:
                counts[v.metric] = counts.get(v.metric, 0) + 1
            parts = [f"{len(self.verdicts)} checks unchanged ("
                     + ", ".join(f"{m}" + (f" x{n}" if n > 1 else "") for m, n in counts.items()) + ")"]
        return f"{self.status.upper():<10} {self.cell}: " + " | ".join(parts)


def _strip_cell(message: str, cell: str) -> str:
    prefix = f"{cell}: "
    return message[len(prefix):] if message.startswith(prefix) else message


@dataclass(frozen=True)
class Comparison:
    old_path: str
    new_path: str
    cells: tuple[CellComparison, ...]
    """Common cells, regressed first, then improved, then unchanged (report order within each)."""
    only_old: tuple[str, ...]
    only_new: tuple[str, ...]
    header: tuple[str, ...]
    """Mismatches between the two runs (machine, versions, threads) and figures neither could
    compare (energy without meters), one line each."""
    tolerances: Tolerances
    runtimes: tuple[Verdict, ...] = ()
    """Run-level verdicts, one per runtime yardstick (``torch-fp32/numpy-ref``, ``onnx-fp32/numpy-ref``)."""

    def with_status(self, status: Status) -> list[CellComparison]:
        return [c for c in self.cells if c.status is status]

    @property
    def regressed(self) -> list[CellComparison]:
        return self.with_status(Status.REGRESSED)

    @property
    def regressed_runtimes(self) -> list[Verdict]:
        return [v for v in self.runtimes if v.failed]

    @property
    def exit_code(self) -> int:
        return 1 if self.regressed or self.regressed_runtimes else 0

    def summary(self) -> str:
        runtimes = f"{len(self.regressed_runtimes)} runtime(s) regressed, " if self.regressed_runtimes else ""
        return (f"{runtimes}{len(self.regressed)} regressed, {len(self.with_status(Status.UNGATED))} ungated, "
                f"{len(self.with_status(Status.UNSETTLED))} unsettled, {len(self.with_status(Status.IMPROVED))} improved, "
                f"{len(self.with_status(Status.UNCHANGED))} unchanged, {len(self.only_old)} only in OLD, "
                f"{len(self.only_new)} only in NEW")

    def lines(self, verbose: bool = False) -> list[str]:
        """The CI log: regressed cells first, one line each; then one-sided cells, improved, summary."""
        out = [f"rlbench compare: OLD (\"stored\") {self.old_path}  NEW {self.new_path}"]
        out += [f"NOTE       {h}" for h in self.header]
        out += [f"RUNTIME    {v.status.upper()}: {v.message}" for v in self.runtimes]
        out += [c.line() for c in self.regressed]
        out += [f"ONLY OLD   {c}: in OLD only (not run, skipped or deselected in NEW)" for c in self.only_old]
        out += [f"ONLY NEW   {c}: in NEW only (no OLD figure to compare with)" for c in self.only_new]
        out += [c.line() for c in self.with_status(Status.UNGATED)]
        out += [c.line() for c in self.with_status(Status.UNSETTLED)]
        out += [c.line() for c in self.with_status(Status.IMPROVED)]
        if verbose:
            out += [c.line() for c in self.with_status(Status.UNCHANGED)]
            out += [f"NOTE       {c.cell}: {n}" for c in self.cells for n in c.notes]
        out.append(f"rlbench compare: {self.summary()}")
        return out

    def markdown(self) -> str:
        """A summary for a pull-request comment."""
        icon = ":x:" if self.regressed else ":white_check_mark:"
        md = [f"### {icon} rlbench compare", "", f"`{self.old_path}` → `{self.new_path}`: **{self.summary()}**", ""]
        if self.header:
            md += ["**About the runs:**", ""] + [f"- {_md(h)}" for h in self.header] + [""]
        if self.runtimes:
            md += ["**Runtimes** (each yardstick's median over the common cells):", ""]
            md += [f"- {v.status}: {_md(v.message)}" for v in self.runtimes] + [""]
        for title, status in (("Regressed", Status.REGRESSED), ("Improved", Status.IMPROVED)):
            rows = [(c.cell, v) for c in self.with_status(status) for v in c.verdicts if v.status is status]
            if rows:
                md += [f"#### {title}", "", "| Cell | Metric | Detail |", "|---|---|---|"]
                md += [f"| `{cell}` | {v.metric} | {_md(_strip_cell(v.message, cell))} |" for cell, v in rows]
                md.append("")
        for title, cells in (("Only in OLD", self.only_old), ("Only in NEW", self.only_new)):
            if cells:
                md += [f"#### {title} ({len(cells)})", "", ", ".join(f"`{c}`" for c in cells), ""]
        unchanged = self.with_status(Status.UNCHANGED)
        if unchanged:
            md += [f"<details><summary>{len(unchanged)} unchanged cells</summary>", "",
                   ", ".join(f"`{c.cell}`" for c in unchanged), "", "</details>", ""]
        t = self.tolerances
        md.append(f"Tolerances: return drop > {t.returns.rel_drop:.0%} and Mann-Whitney p < {t.returns.alpha}; "
                  f"latency ratio +{t.latency.ratio_rel:.0%} within a runtime, +{t.latency.cross_rel:.0%} across runtimes "
                  f"(CI must exclude: {t.latency.ci_must_exclude}), a runtime's median +{t.latency.runtime_rel:.0%}; "
                  f"RSS +{t.memory.rss_rel:.0%} and +{t.memory.rss_abs_mib:g} MiB; energy +{t.energy.rel:.0%}.")
        return "\n".join(md) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def figures_of(rec: CellRecord, pooled: Mapping[str, float] | None = None) -> CellFigures:
    """A results-file record in the gate's shape; ``pooled``: yardsticks to put in place of its own."""
    energy = rec.energy.joules_per_1000 if rec.energy is not None and rec.energy.available else None
    memory = {k: float(v) for k, v in rec.memory.items() if k.startswith("rss_delta")
              and isinstance(v, (int, float)) and not isinstance(v, bool)}
    fig = CellFigures(cell=rec.id, seeds=tuple(rec.seeds), returns=tuple(rec.returns),
                      model_bytes=dict(rec.model_bytes) or None, params=rec.params, policy_sha256=rec.policy_sha256,
                      ratios=dict(rec.ratios) or None, ratio_ci={k: tuple(v) for k, v in rec.ratio_ci.items()},
                      memory=memory or None, energy=energy,
                      machine_id=rec.context.machine_id if rec.context is not None else None,
                      kernel=kernel_class({"runtime": rec.runtime, "int8_weight_tensors": rec.int8_weight_tensors,
                                           "method": rec.method}))
    if pooled and fig.ratios is not None:
        fig = fig.with_ratios({k: v for k, v in pooled.items() if k in fig.ratios})
    return fig


def compare_cells(old: CellRecord, new: CellRecord, tol: Tolerances, *, pooled: Mapping[str, float] | None = None,
                  idle: Mapping[int, float] | None = None, rss_noise: Mapping[str, float] | None = None) -> CellComparison:
    """Every check of one cell present in both files: :func:`rlbench.gate.checks.judge_cell` with OLD
    as the stored side (its yardsticks pooled per pair, as the grid pools the stored ones)."""
    scope = CELL_METRICS | {Metric.ENERGY} if new.energy is not None and new.energy.available else CELL_METRICS
    notes = []
    if not new.returns or not old.returns:
        notes.append(f"return not compared: no per-episode returns in {'NEW' if not new.returns else 'OLD'}")
    verdicts = judge_cell(figures_of(new), figures_of(old, pooled), tol, idle=idle, scope=scope, rss_noise=rss_noise,
                          record_hint="a run of OLD's version that measures this figure")
    return CellComparison(new.id, tuple(verdicts), tuple(notes))


def _run_header(old: ResultsFile, new: ResultsFile) -> list[str]:
    out = []
    mo, mn = old.machine_ids(), new.machine_ids()
    if mo != mn:
        out.append(f"machine differs: OLD ran on {', '.join(mo) or 'an unrecorded machine'}, NEW on "
                   f"{', '.join(mn) or 'an unrecorded machine'}; latency ratios, RSS and energy are machine-dependent")
    elif len(mo) > 1:
        out.append(f"both runs span several machines ({', '.join(mo)})")
    vo, vn = old.versions(), new.versions()
    diffs = []
    for lib in sorted(set(vo) | set(vn)):
        a, b = vo.get(lib, ["absent"]), vn.get(lib, ["absent"])
        if a != b:
            diffs.append(f"{lib} {'/'.join(a)} -> {'/'.join(b)}")
    if diffs:
        out.append("library versions differ: " + ", ".join(diffs))
    metered = [name for name, f in (("OLD", old), ("NEW", new))
               if any(r.energy is not None and r.energy.available for r in f.records)]
    if len(metered) < 2:
        reasons = sorted({r.energy.reason or "no reason recorded" for f in (old, new) for r in f.records
                          if r.energy is not None and not r.energy.available})
        where = "either run" if not metered else ("NEW" if metered == ["OLD"] else "OLD")
        out.append(f"energy not compared: no meter in {where}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    to, tn = old.threads(), new.threads()
    if to != tn:
        out.append(f"thread settings differ: OLD {to or 'unrecorded'}, NEW {tn or 'unrecorded'}")
    return out


def compare_results(old: ResultsFile, new: ResultsFile, tolerances: Tolerances | None = None,
                    thresholds: dict[str, float] | None = None,
                    idle: Mapping[str, Mapping[int, float]] | None = None,
                    rss_noise: Mapping[str, float] | None = None) -> Comparison:
    """Compare two loaded files. Raises :class:`ResultsError` naming both if they share no cell.

    ``idle``: doing nothing's return per seed, per environment (``baselines/idle.json``);
    ``rss_noise``: OLD's machine's measured RSS noise per RSS key."""
    tol = apply_thresholds(tolerances or Tolerances(), thresholds or {})
    a, b = old.by_cell(), new.by_cell()
    common = [c for c in b if c in a]
    if not common:
        raise ResultsError(f"{old.path} and {new.path} have no cell in common ({len(a)} vs {len(b)} cells); "
                           f"nothing to compare")
    pooled = pool_yardsticks({c: r.ratios for c, r in a.items()})
    idle = idle or {}
    cmp = [compare_cells(a[c], b[c], tol, pooled=pooled.get(pair_of(c)), idle=idle.get(a[c].cell.env_id),
                         rss_noise=rss_noise) for c in common]
    old_figures = {c: figures_of(a[c], pooled.get(pair_of(c))) for c in common}
    stored = {c: dict(old_figures[c].ratios or {}) for c in common}

    def order(c: CellComparison):
        return (_RANK[c.status], parse_cell_id(c.cell).sort_key())

    return Comparison(old.path, new.path, tuple(sorted(cmp, key=order)),
                      tuple(c for c in a if c not in b), tuple(c for c in b if c not in a),
                      tuple(_run_header(old, new)), tol,
                      tuple(check_runtimes(((b[c].ratios, stored[c]) for c in common), tol.latency)
                            + check_methods({c: (b[c].ratios, stored[c]) for c in common}, tol.latency,
                                            {c: old_figures[c].kernel for c in common})))


def compare_files(old: str | Path, new: str | Path, tolerances: str | Path | None = None,
                  thresholds: dict[str, float] | None = None) -> Comparison:
    """Load both files and the tolerances (default ``baselines/tolerances.toml``), then compare."""
    if tolerances is not None and not Path(tolerances).is_file():
        raise ResultsError(f"{tolerances}: no such tolerances file")
    tol_path = Path(tolerances) if tolerances is not None else default_tolerances_path()
    tol = Tolerances.load(tol_path)
    old_results, new_results = load_results(old), load_results(new)
    return compare_results(old_results, new_results, tol, thresholds, idle=idle.by_seed(tol_path.parent),
                           rss_noise=_rss_noise(tol_path.parent, old_results.machine_ids()))


def _rss_noise(root: Path, machine_ids: list[str]) -> dict[str, float] | None:
    """OLD's machine's measured RSS noise, where OLD ran on one machine whose figures are stored."""
    return BaselineStore(root, machine_ids[0]).machine_rss_noise() if len(machine_ids) == 1 else None
