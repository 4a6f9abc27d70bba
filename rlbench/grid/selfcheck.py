"""Benchmarks of the measuring harness itself (``rlbench selfcheck``).

* the harness's own overhead per call, from timing a no-op (target < 1 µs);
* the run-to-run spread of one cell's latency ratio (PTDQ int8 ONNX / fp32 ONNX of a
  Hopper-sized [256, 256] policy), as a coefficient of variation over repeated runs, serially
  and with both cores busy (target CV <= 3% serial, <= 5% busy).

"Busy" starts one CPU-bound process per core running float matrix products, so the timed
process always shares a core. The quiet lock cannot help here (the load is not ours), which is
the point: it measures what the CPU-time ratio alone withstands.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

import numpy as np

from rlbench.compress.base import build_artefact
from rlbench.core.versions import library_versions
from rlbench.measure.latency import paired_ratio, time_interleaved
from rlbench.measure.machine import machine_info
from rlbench.core.threads import pin_threads
from rlbench.runtime.predictors import OrtPredictor


def _burn(stop_at: float) -> None:
    a = np.random.default_rng(0).random((256, 256))
    while time.monotonic() < stop_at:
        a = np.tanh(a @ a)


def _policy(seed: int = 0):
    import torch

    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import DeployablePolicy, PolicySpec

    torch.manual_seed(seed)
    m = DeployablePolicy(PolicySpec(11, 3, (256, 256), activation="relu", squash=True))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m.eval()


def harness_overhead(rounds: int = 30) -> dict:
    rec = time_interleaved({"noop": lambda: None}, rounds=rounds, min_round_time=0.005)["noop"]
    return {"noop_min_s": rec.min, "noop_median_s": rec.median, "iterations_per_round": rec.iterations,
            "target_s": 1e-6, "ok": rec.min < 1e-6}


def ratio_spread(runs: int = 10, rounds: int = 40, busy: bool = False) -> dict:
    """CV of the PTDQ/fp32 ONNX latency ratio over ``runs`` independent measurements."""
    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes

    m = _policy()
    fp32 = OrtPredictor(onnx_bytes(m), name="onnx-fp32")
    q = build_artefact(m, "ptdq").predictor(name="variant")
    obs = np.zeros((1, 11), dtype=np.float32)
    procs = []
    if busy:
        ctx = mp.get_context("fork")
        stop_at = time.monotonic() + 3600
        procs = [ctx.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(mp.cpu_count())]
        for p in procs:
            p.start()
    cpu, wall = [], []
    try:
        for _ in range(runs):
            lat = time_interleaved({"variant": lambda: q.predict(obs), "onnx-fp32": lambda: fp32.predict(obs)},
                                   rounds=rounds)
            cpu.append(paired_ratio(lat["variant"], lat["onnx-fp32"], clock="cpu").median)
            wall.append(paired_ratio(lat["variant"], lat["onnx-fp32"], clock="wall").median)
    finally:
        for p in procs:
            p.terminate()
            p.join()

    def cv(x):
        return statistics.stdev(x) / statistics.mean(x)

    return {"busy": busy, "runs": runs, "rounds": rounds, "ratios_cpu": cpu, "ratios_wall": wall,
            "mean_cpu": statistics.mean(cpu), "cv_cpu": cv(cpu), "cv_wall": cv(wall),
            "target_cv": 0.05 if busy else 0.03, "ok": cv(cpu) <= (0.05 if busy else 0.03)}


def selfcheck(runs: int = 10) -> dict:
    pin_threads(1)
    return {"overhead": harness_overhead(), "serial": ratio_spread(runs), "busy": ratio_spread(runs, busy=True),
            "machine": machine_info(), "versions": library_versions(), "schema": 1}
