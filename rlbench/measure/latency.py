"""Latency you can trust on a shared, noisy machine: interleaved rounds, ratios, raw samples.

This VM's speed swings by up to 1.8x in phases lasting seconds, so two functions timed as
two long blocks compare two different machines. :func:`time_interleaved` instead times every
function for one short round (a few milliseconds), then the next function, and so on,
rotating the order each round. A compressed variant and its fp32 baseline are then measured
in the same phase, round after round, and the per-round ratio is stable even when the
absolute figures are not. Wall time and thread CPU time are both recorded: CPU time is less
disturbed when other processes share the cores.
"""

from __future__ import annotations

import gc
import statistics
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from rlbench.core.versions import library_versions
from rlbench.measure.machine import machine_info
from rlbench.measure.stats import bootstrap_ci

SCHEMA = 1
#: Relative IQR (IQR / median) above which a measurement warns that it is noisy.
NOISY_RIQR = 0.25


@dataclass(frozen=True)
class LatencyRecord:
    """Per-call latency of one function: one sample per round (seconds per call)."""

    name: str
    samples: tuple[float, ...]
    cpu_samples: tuple[float, ...]
    iterations: int
    """Calls per round (calibrated so that a round lasts at least ``min_round_time``)."""
    median: float
    iqr: float
    min: float
    cpu_median: float
    noisy: bool
    unit: str = "s/call"
    settings: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def to_json(self) -> dict:
        d = asdict(self)
        d["samples"], d["cpu_samples"] = list(self.samples), list(self.cpu_samples)
        d["kind"] = "latency"
        return d


@dataclass(frozen=True)
class RatioRecord:
    """Paired per-round ratio ``numerator / denominator`` of two interleaved functions."""

    numerator: str
    denominator: str
    samples: tuple[float, ...]
    median: float
    ci_low: float
    ci_high: float
    iqr: float
    unit: str = "ratio"
    schema: int = SCHEMA

    def to_json(self) -> dict:
        d = asdict(self)
        d["samples"] = list(self.samples)
        d["kind"] = "latency_ratio"
        return d


def _quantiles(x: np.ndarray) -> tuple[float, float, float]:
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return float(q1), float(med), float(q3)


def _calibrate(fn: Callable[[], object], min_round_time: float, timer) -> int:
    n = 1
    while True:
        t0 = timer()
        for _ in range(n):
            fn()
        dt = timer() - t0
        if dt >= min_round_time or n >= 1 << 20:
            return n
        n = max(n * 2, int(n * min_round_time / max(dt, 1e-9) * 1.2))


def time_interleaved(fns: Mapping[str, Callable[[], object]], *, rounds: int = 60, min_round_time: float = 0.003,
                     warmup_time: float = 0.02, timer=time.perf_counter, cpu_timer=time.thread_time,
                     settings: dict | None = None) -> dict[str, LatencyRecord]:
    """Time several functions in short alternating rounds. Returns one record per function.

    ``rounds`` rounds of each function; round ``r`` visits the functions in an order rotated by
    ``r`` so that none always runs first. GC is disabled during timing (pyperf does the same).
    """
    names = list(fns)
    if not names:
        raise ValueError("time_interleaved needs at least one function")
    for name in names:  # warm up: caches, lazy init, CPU frequency
        t_end = timer() + warmup_time
        while timer() < t_end:
            fns[name]()
    iters = {name: _calibrate(fns[name], min_round_time, timer) for name in names}
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            k = r % len(names)
            for name in names[k:] + names[:k]:
                fn, n = fns[name], iters[name]
                c0 = cpu_timer()
                t0 = timer()
                for _ in range(n):
                    fn()
                t1 = timer()
                c1 = cpu_timer()
                wall[name].append((t1 - t0) / n)
                cpu[name].append((c1 - c0) / n)
    finally:
        if gc_was:
            gc.enable()
    out: dict[str, LatencyRecord] = {}
    machine, versions = machine_info(), library_versions()
    for name in names:
        x = np.asarray(wall[name])
        q1, med, q3 = _quantiles(x)
        noisy = (q3 - q1) / med > NOISY_RIQR if med > 0 else False
        if noisy:
            warnings.warn(f"latency of {name!r} is noisy: IQR is {100 * (q3 - q1) / med:.0f}% of the median",
                          stacklevel=2)
        out[name] = LatencyRecord(
            name=name, samples=tuple(wall[name]), cpu_samples=tuple(cpu[name]), iterations=iters[name],
            median=med, iqr=q3 - q1, min=float(x.min()), cpu_median=float(statistics.median(cpu[name])),
            noisy=bool(noisy),
            settings={"rounds": rounds, "min_round_time": min_round_time, "warmup_time": warmup_time,
                      "interleaved_with": names, **(settings or {})},
            machine=machine, versions=versions)
    return out


def paired_ratio(num: LatencyRecord, den: LatencyRecord, level: float = 0.95, clock: str = "cpu") -> RatioRecord:
    """Median of per-round ratios (rounds are adjacent in time, so each pair shares a phase).

    ``clock="cpu"`` (the default for gating) uses thread CPU time: when more processes than
    cores compete (``-n 8`` on 2 cores), a round's wall time includes the time the thread
    was descheduled, which lands on whichever function happened to run; CPU time does not.
    Runtimes are pinned to one thread, so all of their work is on the calling thread's clock.
    """
    if clock not in ("cpu", "wall"):
        raise ValueError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    a, b = (num.cpu_samples, den.cpu_samples) if clock == "cpu" else (num.samples, den.samples)
    r = np.asarray(a) / np.asarray(b)
    q1, med, q3 = _quantiles(r)
    lo, hi = bootstrap_ci(r, level=level, statistic=np.median, resamples=2000)
    return RatioRecord(num.name, den.name, tuple(float(v) for v in r), med, lo, hi, q3 - q1)
