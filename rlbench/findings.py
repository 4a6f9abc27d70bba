"""The paper's findings, computed over the grid's stored figures, each beside the paper's claim.

A finding that does not reproduce is a reported result, not a failure: ``bench/test_findings.py``
fails only when our own figure for a finding moves from the one stored in
``baselines/findings.json`` (which ``--rlbench-update-baselines`` records). A difference the
confidence intervals cannot resolve is never counted as a win or a loss: it is a tie.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

KEEP = 0.90  # "keeps at least 90% of baseline return"


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


def _split(cell_id: str) -> tuple[str, str]:
    """``SAC-Hopper-v5-l2-0.30`` -> (``SAC-Hopper-v5``, ``l2-0.30``)."""
    parts = cell_id.split("-")
    return "-".join(parts[:3]), "-".join(parts[3:])


def _by_pair(figures: dict) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for cid, fig in figures.items():
        pair, variant = _split(cid)
        out[pair][variant] = fig
    return out


def _mean(fig) -> float:
    return float(np.mean(fig["returns"]))


def _keeps(fig, base) -> bool:
    b = _mean(base)
    return _mean(fig) >= b - (1 - KEEP) * abs(b)


def _untrained(pairs: dict) -> list[str]:
    """Pairs whose baseline's mean return is not positive: a share of it means nothing (90% of
    DDPG Ant's -204 is any return above -225, which 27 of its 28 pruned copies scored), so
    the share findings leave them out and name them."""
    return sorted(p for p, v in pairs.items() if "baseline" in v and _mean(v["baseline"]) <= 0)


def _resolved_ge(a, b) -> str:
    """'win' if a's mean is above b's and the CIs do not overlap, 'loss' the reverse, else 'tie'."""
    from rlbench.measure.stats import bootstrap_ci

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
    from rlbench import idle as idle_mod

    if idle is None:
        return [], []
    below, unknown = [], set()
    for pair, v in pairs.items():
        env = pair.split("-", 1)[1]
        if "baseline" not in v or "return_ci" not in v["baseline"]:
            continue
        if env not in idle:
            unknown.add(env)
        elif idle_mod.below_idle(v["baseline"]["return_ci"][1], idle[env]):
            below.append(pair)
    return sorted(below), sorted(unknown)


def _point(pairs: dict):
    """Each cell's mean return as a one-element array: the kernels below take a function from
    (pair, variant) to an array of means, so the same rule counts the stored figures and each
    bootstrap resample of them (one element per resample)."""
    return lambda pair, variant: np.array([_mean(pairs[pair][variant])])


def _kept(means, pair: str, variant: str, base: np.ndarray) -> np.ndarray:
    """Whether the variant keeps >= 90% of the baseline's mean return; ``90%`` of a baseline b is
    ``b - 0.1 |b|``, meaningful for negative baselines too."""
    return means(pair, variant) >= base - (1 - KEEP) * np.abs(base)


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
            ratios = sorted(float(k.split("-")[1]) for k in v if k.startswith(norm + "-"))
            if not ratios:
                break
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


QUANT = ("ptdq", "ptsq", "qat")


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
    the highest of PTDQ, PTSQ and QAT (the first of them on a tie)."""
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
    (``rlbench.idle.read``), for the counts over pairs that beat doing nothing."""
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
    # once more over those whose baseline beats doing nothing (rlbench.idle), naming the rest
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
        rows = _rss_rows(machine)
        ours = {k: int(np.median(v)) for k, v in rows.items()}
        out.append(Finding("rss", "quantization's effect on peak RSS (median delta vs baseline, bytes)",
                           "no memory gain; PTDQ/PTSQ used more memory than baseline", ours,
                           sum(len(v) for v in rows.values())))
    return out


def findings_path(store):
    return store.root / "findings.json"


def current(store) -> dict[str, Finding]:
    """Findings over the store's figures (machine-independent) and this machine's figures."""
    from rlbench.baselines import _read_json

    from rlbench import idle

    figures = _read_json(store.figures_path)["cells"]
    machine = _read_json(store.machine_path)["cells"]
    return {f.key: f for f in compute(figures, machine, idle.read(store.root))}


def read_stored(store) -> dict:
    """``baselines/findings.json`` ({} if absent); a corrupt file names itself and how to restore it."""
    from rlbench.errors import BaselineError
    from rlbench.io import read_stored_json

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


def record(store) -> list[str]:
    """Write every finding's figure into ``baselines/findings.json`` (the RSS one under this machine).

    Under the same advisory lock as the baseline files: two recording sessions on different
    machines each add their own RSS finding instead of dropping the other's.
    """
    from rlbench.baselines import _locked
    from rlbench.io import atomic_write_json

    path = findings_path(store)
    written = []
    with _locked(path):
        stored = read_stored(store)
        for key, f in current(store).items():
            if f.n == 0:
                continue
            slot = stored.setdefault("machines", {}).setdefault(store.machine_id, {}) if key == "rss" else stored
            slot[key] = {"ours": f.ours, "n": f.n, "paper": f.paper, "claim": f.claim}
            written.append(key)
        atomic_write_json(path, stored)
    return written


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
