"""The paper's findings, computed over the grid's stored figures, each beside the paper's claim.

A finding that does not reproduce is a reported result, not a failure. Two things fail:

* ``bench/test_findings.py``: our own figure for a finding, recomputed from the stored figures,
  differs from the one stored in ``baselines/findings.json`` (which ``--rlbench-update-baselines``
  records), so the stored figures or the computation changed without the findings being recorded;
* :func:`check_fresh`, at the end of a checking run (the plugin's controller): the run's own cell
  figures, laid over the stored ones, overturn a finding beyond its resolution (a resolved lead
  resolved the other way, a count whose change has a bootstrap CI excluding zero).

A difference the confidence intervals cannot resolve is never counted as a win or a loss: it is a
tie, and a move within a finding's resolution is reported, never failed.
"""

from __future__ import annotations

import copy
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import numpy as np

from rlbench.core.cellid import split_cell_id, split_variant
from rlbench.core.errors import BaselineError, RLBenchError
from rlbench.core.io import atomic_write_json, read_stored_json
from rlbench.gate import idle
from rlbench.gate.idle import below_idle
from rlbench.gate.store import RETURN_KEYS, locked, read_record_file
from rlbench.grid.record import CellRecord
from rlbench.measure.int8kernel import uses_int8_kernels
from rlbench.measure.stats import BOOTSTRAP_SEED, bootstrap_ci
from rlbench.zoo.registry import DISCRETE_ENVS

KEEP = 0.90
"""A pruned model keeps its baseline's return when its mean return is at least this fraction of it."""
QUANT = ("ptdq", "ptsq", "qat")
"""The paper's quantization methods, in the order a tie for the highest mean is broken."""


# ------------------------------------------------------------------------------------- the rules
# One rule per finding, used by the findings checks (below) and the report's Tables
# (rlbench.report.tables): the report and the checks read the same figures the same way.


def keeps(mean, baseline_mean, keep: float = KEEP):
    """Whether ``mean`` keeps ``keep`` of ``baseline_mean``: at least ``b - (1 - keep) |b|``, which stays
    meaningful for a negative baseline. Elementwise on arrays (the bootstrap kernels pass resamples)."""
    return mean >= baseline_mean - (1 - keep) * np.abs(baseline_mean)


def highest_kept_ratio(baseline_mean: float, points: Mapping[float, float], keep: float = KEEP) -> float | None:
    """The highest measured ratio whose mean return keeps ``keep`` of the baseline's (the paper's Table 2
    rule read literally: a lower ratio that lost more does not stop it), or ``None`` if none does."""
    passing = [r for r, m in points.items() if keeps(m, baseline_mean, keep)]
    return max(passing) if passing else None


def best_by_mean(means: Mapping[str, float]) -> str | None:
    """The quantization method with the highest mean return, the first in :data:`QUANT` order on a tie
    (the paper's "best" share). Unresolved differences count: the ``ptdq_resolved_*`` figures do not."""
    present = [m for m in QUANT if means.get(m) is not None]
    return max(present, key=lambda m: (means[m], -present.index(m))) if present else None


# ---------------------------------------------------------------------------------- the findings


@dataclass(frozen=True)
class Finding:
    key: str
    claim: str
    paper: str
    ours: dict
    """Our figures (JSON-serialisable; compared exactly with the stored ones)."""
    n: int
    """Cells or pairs the figure is computed over (0: nothing to compute yet)."""

    def line(self) -> str:
        return f"[{self.key}] {self.claim} | paper: {self.paper} | ours (n={self.n}): {self.ours}"


def _in_paper_grid(pair: str) -> bool:
    """False for a discrete-action (DQN) pair: the paper's findings are about continuous control."""
    return pair.split("-", 1)[1] not in DISCRETE_ENVS


def _by_pair(figures: dict) -> dict[str, dict[str, dict]]:
    """Cells by pair and variant, the paper's grid only: the findings are the paper's claims about
    continuous control, and the discrete-action (DQN) pairs are not in it."""
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for cid, fig in figures.items():
        pair, variant = split_cell_id(cid)
        if not _in_paper_grid(pair):
            continue
        out[pair][variant] = fig
    return out


def _mean(fig) -> float:
    return float(np.mean(fig["returns"]))


def _untrained(pairs: dict) -> list[str]:
    """Pairs whose baseline's mean return is not positive: a share of it means nothing (90% of
    DDPG Ant's -204 is any return above -225, which 27 of its 28 pruned copies scored), so
    the share findings leave them out and name them."""
    return sorted(p for p, v in pairs.items() if "baseline" in v and _mean(v["baseline"]) <= 0)


def _resolved_ge(a, b) -> str:
    """'win' if a's mean is above b's and the CIs do not overlap, 'loss' the reverse, else 'tie'."""
    la, ha = bootstrap_ci(a["returns"])
    lb, hb = bootstrap_ci(b["returns"])
    if la > hb:
        return "win"
    if lb > ha:
        return "loss"
    return "tie"


def _below_idle(pairs: dict, idle: dict | None) -> tuple[list[str], list[str]]:
    """Pairs whose baseline return is resolvably below their environment's zero-action return, and
    the environments with no stored idle return."""
    if idle is None:
        return [], []
    below, unknown = [], set()
    for pair, v in pairs.items():
        env = pair.split("-", 1)[1]
        if "baseline" not in v or "return_ci" not in v["baseline"]:
            continue
        if env not in idle:
            unknown.add(env)
        elif below_idle(v["baseline"]["return_ci"][1], idle[env]):
            below.append(pair)
    return sorted(below), sorted(unknown)


def _point(pairs: dict):
    """Each cell's mean return as a one-element array: the kernels below take a function from
    (pair, variant) to an array of means, so the same rule counts the stored figures and each
    bootstrap resample of them (one element per resample)."""
    return lambda pair, variant: np.array([_mean(pairs[pair][variant])])


def _kept(means, pair: str, variant: str, base: np.ndarray) -> np.ndarray:
    """Whether the variant keeps >= 90% of the baseline's mean return (:func:`keeps`)."""
    return keeps(means(pair, variant), base)


def _l2_vs_l1_counts(pairs: dict, means) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs where L2's highest ratio keeping 90% is at least L1's, where it is higher, and the pairs."""
    ge = gt = np.zeros(1, dtype=int)
    m = 0
    for pair, v in pairs.items():
        if "baseline" not in v:
            continue
        base = means(pair, "baseline")
        hi = {}
        for norm in ("l1", "l2"):
            ratios = sorted(split_variant(k)[1] for k in v if k.startswith(norm + "-"))
            if not ratios:
                break
            # :func:`highest_kept_ratio` over every resample at once (0 where no ratio keeps)
            hi[norm] = np.max([r * _kept(means, pair, f"{norm}-{r:.2f}", base) for r in ratios], axis=0)
        if len(hi) < 2:
            continue
        m += 1
        ge = ge + (hi["l2"] >= hi["l1"])
        gt = gt + (hi["l2"] > hi["l1"])
    return ge, gt, m


def _l2_vs_l1(pairs: dict) -> dict:
    ge, gt, m = _l2_vs_l1_counts(pairs, _point(pairs))
    return {"l2_ge_l1": int(ge[0]), "l2_gt_l1": int(gt[0]), "pairs": m}


def _keep90_count(pairs: dict, ratio: float, means) -> tuple[np.ndarray, int]:
    """Models (L1 and L2 at ``ratio``) keeping >= 90% of their baseline's return, and the models."""
    kept, k = np.zeros(1, dtype=int), 0
    for pair, v in pairs.items():
        if "baseline" not in v:
            continue
        base = means(pair, "baseline")
        for norm in ("l1", "l2"):
            if f"{norm}-{ratio:.2f}" in v:
                k += 1
                kept = kept + _kept(means, pair, f"{norm}-{ratio:.2f}", base)
    return kept, k


def _keep90(pairs: dict, ratio: float) -> dict:
    kept, k = _keep90_count(pairs, ratio, _point(pairs))
    return {"kept": int(kept[0]), "models": k}


def _quant_pairs(pairs: dict) -> dict:
    """Pairs with PTDQ and PTSQ returns, their cells with returns only: a pair recorded only where
    the int8 kernels saturate has its int8 returns in baselines/int8-kernels/ (see
    :mod:`rlbench.measure.int8kernel`), not in figures.json."""
    out = {}
    for pair, v in pairs.items():
        v = {k: f for k, f in v.items() if "returns" in f}
        if "ptdq" in v and "ptsq" in v:
            out[pair] = v
    return out


def _quant_counts(qpairs: dict, means) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pairs where PTDQ's mean return is at least PTSQ's, and per method the pairs where its mean is
    the highest of PTDQ, PTSQ and QAT (:func:`best_by_mean` over every resample at once)."""
    ge = np.zeros(1, dtype=int)
    best = {m: np.zeros(1, dtype=int) for m in QUANT}
    for pair, v in qpairs.items():
        ge = ge + (means(pair, "ptdq") >= means(pair, "ptsq"))
        present = [m for m in QUANT if m in v]
        top = np.argmax(np.stack(np.broadcast_arrays(*[means(pair, m) for m in present])), axis=0)
        for i, m in enumerate(present):
            best[m] = best[m] + (top == i)
    return ge, best


def _partition(pairs: dict, idle: dict | None) -> tuple[list[str], list[str], list[str]]:
    """Pairs left out of the share findings (baseline not positive), pairs whose baseline is
    resolvably below doing nothing, and environments with no stored idle return."""
    untrained = _untrained(pairs)
    below, unknown = _below_idle({p: v for p, v in pairs.items() if p not in untrained}, idle)
    return untrained, below, unknown


def _rss_rows(machine: dict) -> dict[str, list[int]]:
    """Per method and arena setting, each pair's peak-RSS delta against its baseline (bytes)."""
    rows = defaultdict(list)
    for pair_cells in _by_pair(machine).values():
        base = pair_cells.get("baseline", {}).get("memory")
        for method in ("ptdq", "ptsq"):
            mem = pair_cells.get(method, {}).get("memory")
            if base and mem:
                for key in ("rss_delta_bytes", "rss_delta_bytes_arena_off"):
                    if key in base and key in mem:
                        rows[f"{method}:{key}"].append(mem[key] - base[key])
    return dict(sorted(rows.items()))


def compute(figures: dict, machine: dict | None = None, idle: dict | None = None) -> list[Finding]:
    """The findings over stored figures; ``idle``: the environments' zero-action returns
    (``rlbench.gate.idle.read``), for the counts over pairs that beat doing nothing."""
    pairs = _by_pair(figures)
    out = []

    # 1. every compression reduces model bytes
    total = smaller = 0
    for pair, v in pairs.items():
        base = v.get("baseline")
        if not base or "bytes_total" not in base:
            continue
        for variant, fig in v.items():
            if variant != "baseline" and "bytes_total" in fig:
                total += 1
                smaller += fig["bytes_total"] < base["bytes_total"]
    out.append(Finding("bytes", "every compression reduces model bytes", "yes (model size reduced by all methods)",
                       {"smaller": smaller, "cells": total}, total))

    # 2. PTDQ against PTSQ (and QAT where present): which quantization keeps return best
    qpairs = _quant_pairs(pairs)
    counts = {"ptdq_ge_ptsq": 0, "ptdq_resolved_win": 0, "ptdq_resolved_loss": 0}
    for v in qpairs.values():
        r = _resolved_ge(v["ptdq"], v["ptsq"])
        counts["ptdq_resolved_win"] += r == "win"
        counts["ptdq_resolved_loss"] += r == "loss"
    ge, best_of = _quant_counts(qpairs, _point(qpairs))
    counts["ptdq_ge_ptsq"] = int(ge[0])
    best = {m: int(c[0]) for m, c in best_of.items() if c[0]}
    n = len(qpairs)
    out.append(Finding("ptdq_vs_ptsq", "PTDQ's return is at least PTSQ's in most cells",
                       "PTDQ best in 40% of cells, QAT 36%, PTSQ 24%", {**counts, "best_share": dict(best)}, n))

    # 3 and 4 measure shares of the baseline return: only over pairs where that is positive, and
    # once more over those whose baseline beats doing nothing (rlbench.gate.idle), naming the rest
    untrained, below, unknown = _partition(pairs, idle)
    excluded = {"excluded_untrained": untrained} if untrained else {}
    trained = {pair: v for pair, v in pairs.items() if pair not in untrained}
    beyond = {pair: v for pair, v in trained.items() if pair not in below}

    def idle_part(figures_of):
        if idle is None:
            return {}
        part = {"above_idle": figures_of(beyond), "below_idle": below}
        return {**part, "idle_unrecorded": unknown} if unknown else part

    # 3. L2 against L1: highest ratio keeping >= 90% of baseline return
    l2 = _l2_vs_l1(trained)
    out.append(Finding("l2_vs_l1", "L2 pruning keeps return to a higher ratio than L1",
                       "L2 preferred in most cells (Table 3)",
                       {**{k: l2[k] for k in ("l2_ge_l1", "l2_gt_l1")}, **excluded, **idle_part(_l2_vs_l1)}, l2["pairs"]))

    # 4. share of models keeping >= 90% of baseline return after 5% and after 50% pruning
    for ratio, paper in ((0.05, "about 60% keep it (about 40% fail beyond 5%)"),
                         (0.50, "about 20% keep it (about 80% fail beyond 50%)")):
        def keep(subset, ratio=ratio):
            return _keep90(subset, ratio)
        kk = keep(trained)
        out.append(Finding(f"keep90_at_{ratio:.2f}", f"models keeping >= 90% of baseline return after {ratio:.0%} pruning",
                           paper, {**kk, **excluded, **idle_part(keep)}, kk["models"]))

    # 5. quantization's effect on RSS, arena on and off (machine-dependent)
    if machine is not None:
        out.append(_rss_finding(machine))
    return out


def _rss_finding(machine: dict) -> Finding:
    """Quantization's effect on RSS over one machine's cells (:func:`_rss_rows`)."""
    rows = _rss_rows(machine)
    ours = {k: int(np.median(v)) for k, v in rows.items()}
    return Finding("rss", "quantization's effect on peak RSS (median delta vs baseline, bytes)",
                   "no memory gain; PTDQ/PTSQ used more memory than baseline", ours,
                   sum(len(v) for v in rows.values()))


def findings_path(store):
    return store.root / "findings.json"


def current(store) -> dict[str, Finding]:
    """Findings over the store's figures (machine-independent) and this machine's figures."""

    figures = read_record_file(store.figures_path)["cells"]
    machine = store.machine_cells()
    return {f.key: f for f in compute(figures, machine, idle.read(store.root))}


def read_stored(store) -> dict:
    """``baselines/findings.json`` ({} if absent); a corrupt file names itself and how to restore it."""
    path = findings_path(store)
    data = read_stored_json(path, "pytest bench --rlbench-update-baselines")
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("machines", {}), dict):
        raise BaselineError(f"{path} is not an rlbench findings file (not an object with a 'machines' object); "
                            f"restore it with `git checkout -- {path}`")
    return data


def stored_finding(store, key: str) -> dict | None:
    """The stored figure of one finding; the RSS one is this machine's."""
    stored = read_stored(store)
    slot = stored.get("machines", {}).get(store.machine_id, {}) if key == "rss" else stored
    return slot.get(key)


def recomputed(store, stored: dict) -> dict:
    """``stored`` (the content of ``findings.json``) with every finding computed again from the
    stored figures, and the RSS one of every machine with stored figures under that machine.

    Every machine's RSS finding is computed again, not only this machine's: it is computed from
    the machine's cells of the policies ``figures.json`` holds, so re-recording a retrained pair
    on one machine moves every other machine's finding too (its cells of the old policy no longer
    count), and that machine's next run would find it moved. A machine left with no such cells
    loses its RSS finding.
    """
    out = copy.deepcopy(stored)
    for key, f in current(store).items():
        if key != "rss" and f.n:
            out[key] = _stored(f)
    machines = out.setdefault("machines", {})
    others = {p.stem for p in (store.root / "machines").glob("*.json")} - {store.machine_id}
    for mid in sorted(others | {store.machine_id}):
        of = store if mid == store.machine_id else type(store).of_stored_machine(store.root, mid)
        f = _rss_finding(of.machine_cells())
        if f.n:
            machines.setdefault(mid, {})["rss"] = _stored(f)
        else:
            machines.get(mid, {}).pop("rss", None)
    for mid in [m for m, slot in machines.items() if not slot]:
        del machines[mid]
    return out


def record(store) -> list[str]:
    """Write :func:`recomputed` into ``baselines/findings.json``, under the same advisory lock as
    the baseline files. Returns the keys of the findings written (``rss``: this machine's)."""
    path = findings_path(store)
    with locked(path):
        new = recomputed(store, read_stored(store))
        atomic_write_json(path, new)
    return [k for k in new if k != "machines"] + (["rss"] if "rss" in new["machines"].get(store.machine_id, {}) else [])


def stale(store) -> list[FindingChange]:
    """The stored findings that the stored figures no longer give (what :func:`record` would change)."""
    stored = read_stored(store)
    return changes(stored, recomputed(store, stored), store.machine_id)


def _stored(f: Finding) -> dict:
    return {"ours": f.ours, "n": f.n, "paper": f.paper, "claim": f.claim}


def moved(key: str, f: Finding, stored: dict) -> str | None:
    """A one-line message if our figure for the finding moved from the stored one, else None.

    Exact, the RSS finding too: every finding is computed from the stored figures, so it moves
    only when they are re-recorded (which records the findings again) or when the computation
    changes, and either should show. A tolerance of 2 MiB on RSS medians of tens of KiB could
    not fail.
    """
    if (f.ours, f.n) == (stored["ours"], stored["n"]):
        return None
    return (f"finding {key} moved: ours {f.ours} (n={f.n}) vs stored {stored['ours']} (n={stored['n']}); "
            f"tolerance: exact")


class Check(Enum):
    """What a finding's check over the stored figures comes to (:func:`check_stored`)."""

    PASS = "pass"
    SKIP = "skip"
    FAIL = "fail"


@dataclass(frozen=True)
class StoredCheck:
    """A finding's figure over the stored figures against its own stored figure."""

    check: Check
    message: str | None = None
    """Why it skips or fails."""
    line: str | None = None
    """Our figure beside the paper's, where it could be computed (:meth:`Finding.line`)."""


def check_stored(store, key: str, current: dict[str, Finding], update: bool = False) -> StoredCheck:
    """Check finding ``key`` of ``current`` (:func:`current`) against its stored figure: it fails
    when our figure moved, or when it is stored over cells the stored figures no longer give. On
    an ``update`` run it skips: the plugin's controller records the findings at the end. Raises
    :class:`~rlbench.core.errors.BaselineError` if ``findings.json`` does not read."""
    path = findings_path(store)
    stored = stored_finding(store, key)
    f = current.get(key)
    if f is None or f.n == 0:
        if stored is not None and stored.get("n", 0) > 0:
            return StoredCheck(Check.FAIL, f"finding {key}: {path} holds it over n={stored['n']} cells, but the stored "
                                           f"figures give it over none now (cells lost from the baselines, or the "
                                           f"computation broke); test {key}")
        return StoredCheck(Check.SKIP, f"finding {key}: no cells with the figures it needs are stored yet")
    if update:
        return StoredCheck(Check.SKIP, f"finding {key}: recorded at the end of this --rlbench-update-baselines session",
                           f.line())
    if stored is None:
        return StoredCheck(Check.FAIL, f"finding {key}: no stored figure in {path}; record it with: "
                                       f"pytest bench --rlbench-update-baselines", f.line())
    msg = moved(key, f, stored)
    return StoredCheck(Check.PASS if msg is None else Check.FAIL, None if msg is None else f"{msg}; test {key}", f.line())


# ----------------------------------------------------------------------------- fresh figures

#: Bootstrap resamples of each cell's per-episode returns behind a finding's resolution.
RESAMPLES = 2000
#: Level of the interval a change must leave, on one side, before it overturns a finding.
LEVEL = 0.99


class Status(Enum):
    """What a run's fresh figures did to a finding (or to one judged figure of it)."""

    NOT_REMEASURED = "not re-measured"
    """The run measured none of the cells the finding reads."""
    UNCHANGED = "unchanged"
    """Re-measured, and the figure is the stored one."""
    WITHIN = "within resolution"
    """The figure moved, but not beyond its resolution (an unresolved lead, a count inside its CI)."""
    OVERTURNED = "overturned"
    """The fresh figure differs from the stored one beyond its resolution."""


_RANK = {Status.NOT_REMEASURED: 0, Status.UNCHANGED: 1, Status.WITHIN: 2, Status.OVERTURNED: 3}


class Rule(Enum):
    """The resolution a judged figure is held to."""

    EXACT = "exact: bytes do not vary between runs"
    COUNT = "overturned when the bootstrap CI of the change excludes zero"
    LEAD = "overturned when a lead resolved in the stored figures (CI excluding zero) is resolved the other way"
    SIGN = "overturned when a sign resolved in the stored figures (CI excluding zero) is resolved the other way"


@dataclass(frozen=True)
class Outcome:
    """One judged figure of a finding: its stored and fresh values and the resolution it is held to."""

    figure: str
    """Which figure: ``kept``, ``above_idle.kept``, ``pair SAC-Hopper-v5 PTDQ - PTSQ mean return``, ..."""
    stored: float
    fresh: float
    rule: Rule
    status: Status
    level: float = LEVEL
    of: int | None = None
    """A count's denominator (models, pairs or cells)."""
    stored_ci: tuple[float, float] | None = None
    """A lead's or a sign's interval in the stored figures (``LEAD``, ``SIGN``)."""
    fresh_ci: tuple[float, float] | None = None
    change_ci: tuple[float, float] | None = None
    """A count's interval of the change, fresh minus stored (``COUNT``)."""
    detail: str = ""

    def _side(self, value: float, ci) -> str:
        if self.rule in (Rule.EXACT, Rule.COUNT):
            return f"{value:.0f} of {self.of}"
        fmt = "+.1f" if self.rule is Rule.LEAD else ".0f"
        unit = "" if self.rule is Rule.LEAD else " B"
        return f"{value:{fmt}}{unit} ({_sign_word(self.rule, ci)}, {self.level:.0%} CI [{ci[0]:{fmt}}, {ci[1]:{fmt}}])"

    def text(self) -> str:
        """``figure: stored X, fresh Y (resolution)``, the line an overturn prints."""
        if self.rule is Rule.COUNT and self.change_ci is None:
            how = "no cell of it changed"
        elif self.rule is Rule.COUNT:
            lo, hi = self.change_ci
            how = f"change {self.fresh - self.stored:+.0f}, {self.level:.0%} CI of the change [{lo:+.0f}, {hi:+.0f}]"
        elif self.rule is Rule.EXACT:
            how = "exact"
        else:
            how = "a lead or sign is resolved where its CI excludes zero"
        detail = f" ({self.detail})" if self.detail else ""
        return (f"{self.figure}: stored {self._side(self.stored, self.stored_ci)}, "
                f"fresh {self._side(self.fresh, self.fresh_ci)}{detail} ({how})")


def _sign_word(rule: Rule, ci) -> str:
    lo, hi = ci
    if rule is Rule.LEAD:
        return "PTDQ ahead" if lo > 0 else "PTSQ ahead" if hi < 0 else "unresolved"
    return "more than baseline" if lo > 0 else "less than baseline" if hi < 0 else "unresolved"


def _resolved_sign(ci) -> int:
    """+1 or -1 where the interval excludes zero, else 0."""
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


@dataclass(frozen=True)
class FreshFinding:
    """A finding recomputed with a run's fresh cell figures laid over the stored ones."""

    key: str
    claim: str
    paper: str
    stored: Finding
    fresh: Finding
    remeasured: int
    """Cells the finding reads that the run measured."""
    cells: int
    """Cells the finding reads."""
    outcomes: tuple[Outcome, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def status(self) -> Status:
        if not self.remeasured:
            return Status.NOT_REMEASURED
        return max((o.status for o in self.outcomes), key=_RANK.get, default=Status.UNCHANGED)

    def line(self) -> str:
        head = f"{self.status.value.upper():17} [{self.key}] {self.claim} | paper: {self.paper}"
        if not self.cells:
            return f"{head} | nothing stored to recompute it from"
        if self.status is Status.NOT_REMEASURED:
            return f"{head} | stored (n={self.stored.n}): {self.stored.ours} | none of its {self.cells} cells ran"
        moved = sum(o.status is not Status.UNCHANGED for o in self.outcomes)
        return (f"{head} | stored (n={self.stored.n}): {self.stored.ours} | fresh (n={self.fresh.n}): "
                f"{self.fresh.ours} | {self.remeasured} of {self.cells} cells re-measured; "
                f"{moved} of {len(self.outcomes)} judged figures moved")

    def overturned(self) -> list[str]:
        """One ``FINDING OVERTURNED`` line per figure the fresh figures overturn."""
        return [f"FINDING OVERTURNED: [{self.key}] {self.claim}: {o.text()}; paper: {self.paper}"
                for o in self.outcomes if o.status is Status.OVERTURNED]


def _usable_fresh(stored: dict, fresh: dict, int8_exact: bool) -> tuple[dict, list[str]]:
    """The fresh figures that can stand in for stored ones, and notes on those that cannot.

    A cell with no stored figure has no stored outcome to overturn (it fails its own check with
    the update command). On a machine whose int8 kernels are not exact, an int8 ONNX Runtime
    cell's returns describe those kernels, while figures.json holds the exact kernels' returns:
    laying one over the other would judge the kernel, not the finding, so only its bytes count.
    """
    usable, notes = {}, []
    unstored = sorted(c for c in fresh if c not in stored)
    if unstored:
        notes.append(f"{len(unstored)} cell(s) with no stored figures left out: {', '.join(unstored[:5])}"
                     + (" ..." if len(unstored) > 5 else ""))
    inexact = []
    for cid, fig in fresh.items():
        if cid not in stored:
            continue
        if not int8_exact and uses_int8_kernels(fig):
            fig = {k: x for k, x in fig.items() if k not in RETURN_KEYS}
            inexact.append(cid)
        usable[cid] = fig
    if inexact:
        notes.append(f"{len(inexact)} int8 cell(s) ran on inexact int8 kernels: their returns left out")
    return usable, notes


class _BootMeans:
    """Each cell's bootstrap means (``RESAMPLES`` of them), drawn on first use.

    The draws of a cell depend only on its id, its returns and ``stream``, so a run's verdict
    does not depend on which other cells ran. With ``shared``, a cell whose returns did not
    change takes the other side's draws: it then adds nothing to the spread of a change (its
    returns are the same measurement), and a run that moved a few cells is judged on those.
    """

    def __init__(self, figures: dict, stream: int, resamples: int, shared: _BootMeans | None = None,
                 changed: frozenset = frozenset()):
        self.figures, self.stream, self.resamples = figures, stream, resamples
        self.shared, self.changed = shared, changed
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, pair: str, variant: str) -> np.ndarray:
        cid = f"{pair}-{variant}"
        if self.shared is not None and cid not in self.changed:
            return self.shared(pair, variant)
        if cid not in self._cache:
            x = np.asarray(self.figures[cid]["returns"], dtype=np.float64)
            rng = np.random.default_rng([BOOTSTRAP_SEED, zlib.crc32(cid.encode()), self.stream])
            self._cache[cid] = x[rng.integers(0, x.size, size=(self.resamples, x.size))].mean(axis=1)
        return self._cache[cid]


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    a = (1 - level) / 2
    return float(np.quantile(samples, a)), float(np.quantile(samples, 1 - a))


def _judge_count(figure: str, kernel, stored_pairs: dict, fresh_pairs: dict, changed_pairs: set,
                 ms: _BootMeans, mf: _BootMeans, level: float, of: int) -> Outcome:
    """A count over pairs, judged by the bootstrap CI of its change (``Rule.COUNT``).

    Both sides are resampled, the stored figures from the stored returns and the fresh from the
    fresh ones, over the pairs with a changed cell only: an unchanged pair counts the same on
    both sides. The change is resolved, and the finding overturned, when that CI excludes zero
    on the side of the change.
    """
    before = int(kernel(stored_pairs, _point(stored_pairs))[0])
    after = int(kernel(fresh_pairs, _point(fresh_pairs))[0])
    sub = [p for p in fresh_pairs if p in changed_pairs]
    if not sub:
        return Outcome(figure, before, after, Rule.COUNT, Status.UNCHANGED, level, of)
    d = kernel({p: fresh_pairs[p] for p in sub}, mf) - kernel({p: stored_pairs[p] for p in sub}, ms)
    ci = _interval(d, level)
    change = after - before
    resolved = change != 0 and _resolved_sign(ci) == np.sign(change)
    status = Status.OVERTURNED if resolved else Status.WITHIN if change else Status.UNCHANGED
    return Outcome(figure, before, after, Rule.COUNT, status, level, of, change_ci=ci)


def _reversal(was: float, now: float, stored_ci, fresh_ci) -> Status:
    """A resolved lead or sign resolved the other way overturns; any other move is wobble."""
    s, f = _resolved_sign(stored_ci), _resolved_sign(fresh_ci)
    if s and f and s != f:
        return Status.OVERTURNED
    return Status.WITHIN if now != was else Status.UNCHANGED


def _judge_leads(stored_q: dict, fresh_q: dict, changed: frozenset, ms: _BootMeans, mf: _BootMeans,
                 level: float) -> list[Outcome]:
    """Per pair with a changed PTDQ or PTSQ cell, PTDQ's lead over PTSQ (difference of mean
    returns), resolved where its bootstrap CI excludes zero (``Rule.LEAD``)."""
    out = []
    for pair in sorted(p for p in fresh_q if p in stored_q):
        if not {f"{pair}-ptdq", f"{pair}-ptsq"} & changed:
            continue
        was = float(_mean(stored_q[pair]["ptdq"]) - _mean(stored_q[pair]["ptsq"]))
        now = float(_mean(fresh_q[pair]["ptdq"]) - _mean(fresh_q[pair]["ptsq"]))
        sci = _interval(ms(pair, "ptdq") - ms(pair, "ptsq"), level)
        fci = _interval(mf(pair, "ptdq") - mf(pair, "ptsq"), level)
        out.append(Outcome(f"pair {pair} PTDQ - PTSQ mean return", was, now, Rule.LEAD,
                           _reversal(was, now, sci, fci), level, stored_ci=sci, fresh_ci=fci))
    return out


def _judge_bytes(stored: dict, over: dict) -> Outcome:
    """Which compressed cells are smaller than their baseline: bytes are exact, so is the judgement."""
    def smaller(figs):
        pairs = _by_pair(figs)
        return {f"{p}-{k}": f["bytes_total"] < v["baseline"]["bytes_total"]
                for p, v in pairs.items() if "bytes_total" in v.get("baseline", {})
                for k, f in v.items() if k != "baseline" and "bytes_total" in f}
    a, b = smaller(stored), smaller(over)
    flipped = sorted(c for c in b if a.get(c) != b[c])
    return Outcome("compressed cells smaller than their baseline", sum(a.values()), sum(b.values()), Rule.EXACT,
                   Status.OVERTURNED if flipped else Status.UNCHANGED, of=len(b),
                   detail=f"changed: {', '.join(flipped[:5])}" if flipped else "")


def _judge_rss(stored_rows: dict, fresh_rows: dict, level: float) -> list[Outcome]:
    """Per method and arena setting, the sign of the median RSS delta, resolved where the bootstrap
    CI of the median (over the pairs' deltas) excludes zero (``Rule.SIGN``)."""
    def ci(rows):
        return bootstrap_ci(rows, level=level, statistic=np.median, resamples=RESAMPLES)

    out = []
    for key in sorted(set(stored_rows) & set(fresh_rows)):
        a, b = stored_rows[key], fresh_rows[key]
        was, now, sci, fci = float(np.median(a)), float(np.median(b)), ci(a), ci(b)
        status = Status.UNCHANGED if a == b else _reversal(was, now, sci, fci)
        out.append(Outcome(f"{key} median", was, now, Rule.SIGN, status, level, stored_ci=sci, fresh_ci=fci))
    return out


def _reads(key: str, variant: str) -> bool:
    """Whether the finding ``key`` reads a cell of this variant (for "re-measured")."""
    if key == "bytes":
        return True
    if key == "ptdq_vs_ptsq":
        return variant in QUANT
    if key == "l2_vs_l1":
        return variant == "baseline" or variant.startswith(("l1-", "l2-"))
    if key.startswith("keep90_at_"):
        return variant in ("baseline", f"l1-{key[-4:]}", f"l2-{key[-4:]}")
    if key == "rss":
        return variant in ("baseline", "ptdq", "ptsq")
    return False


def check_fresh(stored: dict, fresh: dict, *, machine: dict | None = None, fresh_machine: dict | None = None,
                idle: dict | None = None, int8_exact: bool = True, level: float = LEVEL,
                resamples: int = RESAMPLES) -> list[FreshFinding]:
    """Every finding recomputed with a run's fresh cell figures laid over the stored ones.

    ``stored``: figures.json's cells; ``fresh``: the run's ``CellRecord.figures_json()`` by cell id
    (fresh figures replace stored ones cell by cell). ``machine`` and ``fresh_machine``: this
    machine's stored and fresh machine figures, for the RSS finding. ``idle``: the zero-action
    returns (``rlbench.gate.idle.read``). ``int8_exact``: whether this machine's int8 kernels are exact.

    Each finding comes back with its stored and fresh figures and a status per judged figure
    (:class:`Status`) and the resolution it was held to (:class:`Rule`): counts (keep-90%, L2
    against L1, PTDQ >= PTSQ and the best-quantization shares) by the bootstrap CI of the change at
    ``level``; PTDQ's lead over PTSQ in a pair by a reversal between resolved leads; the RSS
    medians by a reversal between resolved signs; bytes exactly. The counts keep the stored
    partition of pairs (untrained, below doing nothing) on both sides, so that a count is compared
    over the same pairs; a partition the fresh figures change is named in the notes.
    """
    fresh, notes = _usable_fresh(stored, fresh, int8_exact)
    over = {**stored, **{c: {**stored[c], **f} for c, f in fresh.items()}}
    changed = frozenset(c for c, f in fresh.items()
                        if "returns" in f and list(f["returns"]) != list(stored[c].get("returns", [])))
    m_over = None
    if machine is not None:
        fm = {c: m for c, m in (fresh_machine or {}).items() if c in stored}
        m_over = {**machine, **{c: {**machine.get(c, {}), **m} for c, m in fm.items()}}
    before = {f.key: f for f in compute(stored, machine, idle)}
    after = {f.key: f for f in compute(over, m_over, idle)}

    spairs, fpairs = _by_pair(stored), _by_pair(over)
    untrained, below, unknown = _partition(spairs, idle)
    f_untrained, f_below, _ = _partition(fpairs, idle)
    if (f_untrained, f_below) != (untrained, below):
        notes.append(f"partition moved (kept the stored one for judging): untrained {untrained} -> {f_untrained}, "
                     f"below idle {below} -> {f_below}")
    changed_pairs = {split_cell_id(c)[0] for c in changed}
    ms = _BootMeans(stored, 0, resamples)
    mf = _BootMeans(over, 1, resamples, shared=ms, changed=changed)

    def subsets(pairs):
        trained = {p: v for p, v in pairs.items() if p not in untrained}
        beyond = {p: v for p, v in trained.items() if p not in below} if idle is not None else None
        return trained, beyond

    s_tr, s_bey = subsets(spairs)
    f_tr, f_bey = subsets(fpairs)

    def counts(name, kernel, of):
        """The count over the trained pairs, and again over those beyond doing nothing."""
        out = [_judge_count(name, kernel, s_tr, f_tr, changed_pairs, ms, mf, level, of(s_tr))]
        if s_bey is not None:
            out.append(_judge_count(f"above_idle.{name}", kernel, s_bey, f_bey, changed_pairs, ms, mf, level,
                                    of(s_bey)))
        return out

    judged: dict[str, list[Outcome]] = {"bytes": [_judge_bytes(stored, over)]}
    sq, fq = _quant_pairs(spairs), _quant_pairs(fpairs)
    judged["ptdq_vs_ptsq"] = _judge_leads(sq, fq, changed, ms, mf, level) + [
        _judge_count("ptdq_ge_ptsq", lambda p, m: _quant_counts(p, m)[0], sq, fq, changed_pairs, ms, mf, level,
                     len(sq))] + [
        _judge_count(f"best_share.{q}", lambda p, m, q=q: _quant_counts(p, m)[1][q], sq, fq, changed_pairs, ms, mf,
                     level, len(sq)) for q in QUANT]
    judged["l2_vs_l1"] = (counts("l2_ge_l1", lambda p, m: _l2_vs_l1_counts(p, m)[0],
                                 lambda p: _l2_vs_l1_counts(p, _point(p))[2])
                          + counts("l2_gt_l1", lambda p, m: _l2_vs_l1_counts(p, m)[1],
                                   lambda p: _l2_vs_l1_counts(p, _point(p))[2]))
    for ratio in (0.05, 0.50):
        judged[f"keep90_at_{ratio:.2f}"] = counts("kept", lambda p, m, r=ratio: _keep90_count(p, r, m)[0],
                                                  lambda p, r=ratio: _keep90_count(p, r, _point(p))[1])
    if machine is not None:
        judged["rss"] = _judge_rss(_rss_rows(machine), _rss_rows(m_over), level)

    out = []
    for key, f in after.items():
        measured_key = "memory" if key == "rss" else "bytes_total" if key == "bytes" else "returns"
        source = (fresh_machine or {}) if key == "rss" else fresh
        reads = [c for c in (machine if key == "rss" else stored)
                 if _reads(key, split_cell_id(c)[1]) and _in_paper_grid(split_cell_id(c)[0])]
        remeasured = sum(1 for c in reads if measured_key in source.get(c, {}))
        stored_f = before.get(key)
        out.append(FreshFinding(key, f.claim, f.paper, stored_f, f, remeasured, len(reads),
                                tuple(judged.get(key, ())) if remeasured else (), tuple(notes)))
    return out


def check_run(store, results: Mapping[str, CellRecord]) -> list[FreshFinding]:
    """:func:`check_fresh` for a pytest session: ``results`` is the plugin's ``rs.results`` (per cell
    id, its record), laid over the store's figures."""

    return check_fresh(read_record_file(store.figures_path)["cells"], {c: r.figures_json() for c, r in results.items()},
                       machine=store.machine_cells(),
                       fresh_machine={c: r.machine_json() for c, r in results.items()},
                       idle=idle.read(store.root), int8_exact=store.int8_kernel == "exact")


def overturned_any(checks: list[FreshFinding]) -> bool:
    return any(c.status is Status.OVERTURNED for c in checks)


def summary_lines(checks: list[FreshFinding]) -> list[str]:
    """What the terminal summary prints: a line per finding, its notes once, then each overturn."""
    lines = [c.line() for c in checks]
    notes = sorted({n for c in checks for n in c.notes})
    return lines + [f"note: {n}" for n in notes] + [x for c in checks for x in c.overturned()]


@dataclass(frozen=True)
class FindingChange:
    """A finding an update run changed in ``baselines/findings.json``."""

    key: str
    old: dict | None
    new: dict | None

    def line(self) -> str:
        def fmt(f):
            return "(none)" if f is None else f"{f.get('ours')} (n={f.get('n')})"
        return f"finding {self.key}: {fmt(self.old)} -> {fmt(self.new)}"


def changes(old: dict, new: dict, machine_id: str) -> list[FindingChange]:
    """The findings that differ between two contents of ``findings.json``: this machine's RSS
    finding as ``rss``, another machine's as ``rss@MACHINE`` (:func:`record` recomputes them all)."""
    def flat(data):
        out = {k: v for k, v in data.items() if k != "machines"}
        for mid, slot in data.get("machines", {}).items():
            for k, v in slot.items():
                out[k if mid == machine_id else f"{k}@{mid}"] = v
        return out

    a, b = flat(old), flat(new)
    return [FindingChange(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if (a.get(k) or {}).get("ours") != (b.get(k) or {}).get("ours")
            or (a.get(k) or {}).get("n") != (b.get(k) or {}).get("n")]


def update_lines(store, before: dict) -> list[str]:
    """What an update run changed in ``findings.json`` (``before``: its content before the run), a
    line per finding, or that none changed: an update never changes a finding silently."""
    try:
        changed = changes(before, read_stored(store), store.machine_id)
    except RLBenchError as exc:
        return [f"findings not compared: {exc}"]
    return [c.line() for c in changed] or ["no finding changed"]


@dataclass(frozen=True)
class NoiseRate:
    """How often overlays that differ from the stored figures only by noise overturned a finding."""

    overlays: int
    overturned: int
    """Overlays that overturned at least one finding."""
    by_figure: dict
    """Per ``finding: figure``, the overlays that overturned it."""
    independent: bool

    @property
    def rate(self) -> float:
        return self.overturned / self.overlays if self.overlays else 0.0

    def line(self) -> str:
        kind = ("stored and fresh each resampled" if self.independent
                else "fresh resampled from the stored returns")
        worst = ", ".join(f"{k} {v}" for k, v in sorted(self.by_figure.items(), key=lambda kv: -kv[1]))
        return (f"{self.overturned} of {self.overlays} noise overlays ({kind}) overturned a finding "
                f"({self.rate:.0%}){': ' + worst if worst else ''}")


def resampled(figures: dict, seed: int) -> dict:
    """Every cell's per-episode returns resampled with replacement (its bootstrap twin): the same
    policies measured again, as far as the stored episodes can tell. A baseline's mean and CI follow
    its returns, since the pairs that beat doing nothing are judged by them."""
    out = {}
    for cid, fig in figures.items():
        if "returns" not in fig:
            out[cid] = fig
            continue
        x = np.asarray(fig["returns"], dtype=np.float64)
        rng = np.random.default_rng([seed, zlib.crc32(cid.encode())])
        r = x[rng.integers(0, x.size, size=x.size)]
        fig = {**fig, "returns": r.tolist(), "return_mean": float(r.mean())}
        if cid.endswith("-baseline"):
            fig["return_ci"] = list(bootstrap_ci(r))
        out[cid] = fig
    return out


def noise_rate(figures: dict, idle: dict | None = None, overlays: int = 50, independent: bool = False,
               level: float = LEVEL, seed: int = 1) -> NoiseRate:
    """The false-overturn rate of :func:`check_fresh` on the stored grid: ``overlays`` runs whose
    fresh figures are each cell's bootstrap twin (:func:`resampled`). ``independent``: the stored
    side is a bootstrap twin too, drawn apart from the fresh one, so both sides carry noise, as
    a real re-measurement on perturbed trajectories would."""
    hits, by = 0, defaultdict(int)
    for i in range(overlays):
        stored = resampled(figures, seed + 2 * i + 1) if independent else figures
        checks = check_fresh(stored, resampled(figures, seed + 2 * i), idle=idle, level=level)
        bad = [f"{c.key}: {o.figure.split(' PTDQ')[0]}" for c in checks for o in c.outcomes
               if o.status is Status.OVERTURNED]
        hits += bool(bad)
        for b in bad:
            by[b] += 1
    return NoiseRate(overlays, hits, dict(by), independent)
