from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from rlbench.measure.latency import paired_ratio, time_interleaved
from rlbench.plugin.benchmark import benchmark_stats


class FakeClock:
    """Advances only when a fake function 'runs'; speed swings in phases like this VM."""

    def __init__(self):
        self.t = 0.0
        self.speed = 1.0

    def __call__(self):
        return self.t

    def work(self, seconds):
        def fn():
            self.t += seconds * self.speed
        return fn


def test_interleaving_cancels_phases_of_machine_speed():
    clock = FakeClock()
    slow, fast = clock.work(2e-4), clock.work(1e-4)
    phase = itertools.cycle([1.0] * 7 + [1.8] * 7)

    def slow_with_phase():
        slow()

    calls = {"n": 0}

    def fast_and_switch():
        fast()
        calls["n"] += 1
        if calls["n"] % 50 == 0:
            clock.speed = next(phase)

    recs = time_interleaved({"slow": slow_with_phase, "fast": fast_and_switch}, rounds=40, min_round_time=1e-3,
                            warmup_time=0.0, timer=clock, cpu_timer=clock)
    r = paired_ratio(recs["slow"], recs["fast"], clock="wall")
    # absolute medians swing with the phases, the paired ratio does not
    assert r.median == pytest.approx(2.0, rel=0.05)
    assert recs["slow"].iterations >= 5 and recs["fast"].iterations >= 10


def test_records_keep_raw_samples_and_settings():
    recs = time_interleaved({"noop": lambda: None}, rounds=5, min_round_time=1e-4, warmup_time=0.0)
    rec = recs["noop"]
    assert len(rec.samples) == len(rec.cpu_samples) == 5
    d = json.loads(json.dumps(rec.to_json()))
    assert d["settings"]["rounds"] == 5 and d["unit"] == "s/call" and d["schema"] == 1
    stats = benchmark_stats({"data": list(rec.samples), "iterations": rec.iterations})
    assert stats["rounds"] == 5 and stats["min"] <= stats["median"] <= stats["max"]
    assert stats["data"] == list(rec.samples)


def test_harness_overhead_is_below_a_microsecond():
    rec = time_interleaved({"noop": lambda: None}, rounds=10, min_round_time=2e-3, warmup_time=0.01)["noop"]
    assert rec.min < 1e-6


def test_paired_ratio_rejects_unknown_clock():
    recs = time_interleaved({"a": lambda: None, "b": lambda: None}, rounds=3, min_round_time=1e-4, warmup_time=0.0)
    with pytest.raises(ValueError):
        paired_ratio(recs["a"], recs["b"], clock="tsc")
    assert np.isfinite(paired_ratio(recs["a"], recs["b"]).median)
