"""Checks of new figures against stored ones. Each failure is one line: figure, stored figure,
tolerance and cell. ``bench/`` asserts with these and ``rlbench compare`` uses the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlbench.baselines import LatencyTolerance, ReturnTolerance


@dataclass(frozen=True)
class Verdict:
    metric: str
    status: str
    """"unchanged" | "improved" | "regressed"; "unsettled" (needs more data) and "unjudged" (too
    little data for a verdict, said so) are not failures."""
    message: str

    @property
    def failed(self) -> bool:
        return self.status == "regressed"


def mann_whitney_p(a, b) -> float:
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.array_equal(np.sort(a), np.sort(b)):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def check_return(cell: str, new: list[float], stored: list[float], tol: ReturnTolerance) -> Verdict:
    """Regressed if the mean dropped by more than ``rel_drop`` of the stored mean's magnitude
    (and more than ``abs_floor``) AND Mann-Whitney resolves the two samples at ``alpha``."""
    from rlbench.measure.stats import diff_ci

    new_a, old_a = np.asarray(new, float), np.asarray(stored, float)
    diff, lo, hi = diff_ci(new_a, old_a)
    allowed = max(tol.rel_drop * abs(old_a.mean()), tol.abs_floor)
    p = mann_whitney_p(new_a, old_a)
    head = (f"{cell}: return {new_a.mean():.1f} vs stored {old_a.mean():.1f} (diff {diff:+.1f}, 95% CI "
            f"[{lo:+.1f}, {hi:+.1f}], Mann-Whitney p={p:.3g}, n={new_a.size}/{old_a.size})")
    if diff < -allowed and p < tol.alpha:
        return Verdict("return", "regressed", f"{head}; tolerance: drop <= {allowed:.1f} or p >= {tol.alpha}")
    if diff > allowed and p < tol.alpha:
        return Verdict("return", "improved", head)
    return Verdict("return", "unchanged", head)


def check_ratio(cell: str, what: str, new_median: float, new_ci: tuple[float, float], stored: float,
                tol: LatencyTolerance) -> Verdict:
    """Regressed if the latency ratio grew beyond ``stored * (1 + rel)``, with its CI above it;
    ``rel`` is ``ratio_rel`` within one runtime and ``cross_rel`` across runtimes."""
    rel = tol.rel_for(what)
    limit = stored * (1 + rel)
    head = (f"{cell}: latency ratio {what} {new_median:.3f} (95% CI [{new_ci[0]:.3f}, {new_ci[1]:.3f}]) vs stored "
            f"{stored:.3f}; tolerance +{100 * rel:.0f}% (limit {limit:.3f})")
    beyond = (new_ci[0] if tol.ci_must_exclude else new_median) > limit
    if beyond:
        return Verdict("latency", "regressed", head)
    if (new_ci[1] if tol.ci_must_exclude else new_median) < stored / (1 + rel):
        return Verdict("latency", "improved", head)
    if new_median > limit:  # above the limit, but the CI reaches below it: not settled either way
        return Verdict("latency", "unsettled", head)
    return Verdict("latency", "unchanged", head)


YARDSTICKS = ("torch-fp32/numpy-ref", "onnx-fp32/numpy-ref")
"""Each runtime's fp32 policy over the NumPy reference, which no runtime under test touches."""


def check_runtimes(cells, tol: LatencyTolerance) -> list[Verdict]:
    """The run-level latency gate: ``cells`` yields each cell's (new ratios, stored ratios); per
    yardstick, :func:`check_runtime_shift` over new/stored of every cell holding both. The main
    job (stored bars) and ``rlbench compare`` (OLD's figures) both judge runtimes with it."""
    cells = list(cells)
    return [check_runtime_shift(key, [new[key] / stored[key] for new, stored in cells
                                      if new.get(key) and stored.get(key)], tol)
            for key in YARDSTICKS]


def check_runtime_shift(key: str, rel: list[float], tol: LatencyTolerance) -> Verdict:
    """One runtime's yardstick ``key`` over a run: ``rel`` holds each cell's new figure divided by
    its stored one. Regressed if the bootstrap CI of their median lies above ``1 + runtime_rel``.

    A slowdown of one runtime for every model moves every cell's yardstick at once. One cell's
    ratio across runtimes drifts by 20% and more with the VM's phases (hence ``cross_rel`` per
    cell), but the median over a run's cells resolves a few percent. Fewer than
    ``runtime_min_cells`` cells are ``unjudged``, said in the verdict, never passed silently.
    """
    from rlbench.measure.stats import bootstrap_ci

    if len(rel) < tol.runtime_min_cells:
        return Verdict("latency", "unjudged",
                       f"runtime yardstick {key}: {len(rel)} cell(s) with a stored figure, fewer than the "
                       f"{tol.runtime_min_cells} a run-level verdict needs ([latency] runtime_min_cells); this "
                       f"runtime was not judged, run more cells to judge it")
    x = np.asarray(rel, dtype=float)
    med = float(np.median(x))
    lo, hi = bootstrap_ci(x, statistic=np.median, resamples=2000)
    limit = 1 + tol.runtime_rel
    head = (f"runtime yardstick {key} over {len(x)} cells: median {med:.3f}x the stored figures (95% CI "
            f"[{lo:.3f}, {hi:.3f}]); tolerance +{100 * tol.runtime_rel:.0f}% (limit {limit:.3f})")
    status = "regressed" if lo > limit else "improved" if hi < 1 / limit else "unchanged"
    return Verdict("latency", status, head)


def check_exact(cell: str, what: str, new, stored) -> Verdict:
    head = f"{cell}: {what} {new} vs stored {stored}; tolerance: exact"
    return Verdict(what, "unchanged" if new == stored else "regressed", head)


def check_rss(cell: str, what: str, new: int, stored: int, tol) -> Verdict:
    """RSS deltas regress only beyond both the relative and the absolute tolerance."""
    mib = 1 << 20
    diff = new - stored
    limit = max(tol.rss_rel * abs(stored), tol.rss_abs_mib * mib)
    head = (f"{cell}: {what} {new / mib:.2f} MiB vs stored {stored / mib:.2f} MiB; tolerance "
            f"+max({100 * tol.rss_rel:.0f}%, {tol.rss_abs_mib} MiB)")
    if diff > limit:
        return Verdict("memory", "regressed", head)
    if diff < -limit:
        return Verdict("memory", "improved", head)
    return Verdict("memory", "unchanged", head)


def check_energy(cell: str, new: float, stored: float, tol) -> Verdict:
    limit = abs(stored) * tol.rel
    head = f"{cell}: energy {new:.4f} J/1000 inferences vs stored {stored:.4f}; tolerance +{100 * tol.rel:.0f}%"
    if new - stored > limit:
        return Verdict("energy", "regressed", head)
    if stored - new > limit:
        return Verdict("energy", "improved", head)
    return Verdict("energy", "unchanged", head)
