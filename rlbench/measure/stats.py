"""Small statistics used by measurements, assertions and compare: one implementation for all."""

from __future__ import annotations

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 20240704  # fixed: the same samples always give the same interval


def bootstrap_ci(samples, level: float = 0.95, statistic=np.mean, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` (the mean by default)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one sample")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    stats = statistic(x[idx], axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def bootstrap_ratio_ci(new, old, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Ratio of means new/old with a bootstrap interval (independent resampling of both sides)."""
    a, b = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = ma / mb
    alpha = (1 - level) / 2
    return float(a.mean() / b.mean()), float(np.nanquantile(r, alpha)), float(np.nanquantile(r, 1 - alpha))


def diff_ci(new, old, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
            seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """Difference of means new - old with a bootstrap interval."""
    a, b = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    mb = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    d = ma - mb
    alpha = (1 - level) / 2
    return float(a.mean() - b.mean()), float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha))
