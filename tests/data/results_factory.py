"""A generator of realistic results files (pytest-benchmark JSON with rlbench cells) for the report tests.

Returns are seeded normal draws around a per-pair mean with a per-method factor, so the
figures behave like the suite's (Mann-Whitney, bootstrap CIs), and every file is reproducible.
Latency stats go through pytest-benchmark's own ``Stats``, as in :mod:`rlbench.plugin.pytest_plugin`.

``python -m tests.data.results_factory`` rewrites ``tests/data/sample_results.json``.
"""

from __future__ import annotations

import copy
import json
import zlib
from pathlib import Path

import numpy as np

#: Baseline mean return per pair (roughly the paper's Table 1 scale).
PAIR_MEAN = {"SAC-HalfCheetah-v5": 9500.0, "PPO-Hopper-v5": 1500.0, "TD3-Hopper-v5": 3300.0}
QUANT_FACTOR = {"baseline": 1.0, "ptdq": 0.99, "ptsq": 0.80, "qat": 0.60, "fp16": 1.0, "int8pc": 0.97}
RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 15))
MACHINE_ID = "x86_64-2cpu-0123456789"
MACHINE = {"cpu_model": "Intel(R) Xeon(R) Processor", "cpu_flags": ["avx", "avx2", "fma"], "cpu_count": 2,
           "machine": "x86_64", "system": "Linux 6.18", "python": "3.11.7"}
VERSIONS = {"rlbench": "0.1.0", "torch": "2.13.0", "onnxruntime": "1.31.0", "numpy": "2.4.6",
            "gymnasium": "1.4.0", "mujoco": "4.0.0", "torch-pruning": "1.6.1"}


def prune_factor(norm: str, ratio: float) -> float:
    """Return kept after pruning: L2 degrades more slowly than L1 (the paper's finding)."""
    k = 1.6 if norm == "l1" else 1.1
    return max(0.05, 1.0 - k * ratio ** 1.5)


def variant_ids(pruning: bool = True) -> list[str]:
    out = ["baseline", "ptdq", "ptsq", "qat"]
    if pruning:
        out += [f"{n}-{r:.2f}" for n in ("l1", "l2") for r in RATIOS]
    return out


def default_cells(pairs=("SAC-HalfCheetah-v5", "PPO-Hopper-v5"), pruning: bool = True) -> list[str]:
    return [f"{p}-{v}" for p in pairs for v in variant_ids(pruning)]


def _rng(cell: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(cell.encode()), seed])


def _stats(samples: np.ndarray) -> dict:
    from pytest_benchmark.stats import Stats

    st = Stats()
    for v in samples:
        st.update(float(v))
    d = st.as_dict()
    d["data"] = [float(v) for v in samples]
    d["iterations"] = 1
    return d


def make_entry(cell: str, *, seed: int = 0, episodes: int = 30, mean: float | None = None,
               latency_factor: float = 1.0, machine_id: str = MACHINE_ID, versions: dict | None = None,
               energy: bool = False) -> dict:
    """One benchmark entry as the plugin writes it."""
    from rlbench.measure.stats import bootstrap_ci
    from rlbench.report.results import parse_cell_id

    cid = parse_cell_id(cell)
    rng = _rng(cell, seed)
    if mean is None:
        base = PAIR_MEAN.get(cid.pair, 1000.0)
        if cid.method in ("l1", "l2"):
            mean = base * prune_factor(cid.method, cid.ratio)
        else:
            mean = base * QUANT_FACTOR.get(cid.method, 0.95)
    returns = rng.normal(mean, 0.03 * abs(mean) + 1.0, size=episodes)
    lo, hi = bootstrap_ci(returns, resamples=2000)
    seeds = list(range(1_000_000, 1_000_000 + episodes))
    figures = {"seeds": seeds, "returns": [float(x) for x in returns], "lengths": [1000] * episodes,
               "return_mean": float(returns.mean()), "return_ci": [lo, hi],
               "model_bytes": {"policy.pt": 280_000, "policy.onnx": 276_000}, "params": 70_000,
               "policy_sha256": "ab" * 32, "runtime": "torch"}
    fp32_us = 60.0 if cid.algo == "SAC" else 45.0
    if not cid.is_baseline:
        size = 1.0
        if cid.method in ("ptdq", "ptsq", "qat", "int8pc"):
            size = 0.27
        elif cid.method == "fp16":
            size = 0.5
        elif cid.ratio is not None:
            size = (1 - cid.ratio) ** 2
        nbytes = int(276_000 * size)
        figures.update({"method": cid.method, "ratio": cid.ratio,
                        "runtime": "onnxruntime" if cid.method in ("ptsq", "qat") else "torch",
                        "model_bytes": {"variant.onnx": nbytes}, "bytes_total": nbytes,
                        "params": int(70_000 * (size if cid.ratio is not None else 1.0)),
                        "compression_factor": round(1 / size, 3)})
        if cid.method in ("ptdq", "ptsq", "qat"):
            figures["int8_weight_tensors"] = 3
        if cid.ratio is not None and cid.method in ("l1", "l2"):
            figures.update({"channel_ratio": round(1 - cid.ratio, 3), "param_ratio": round(size, 4)})
    variant_rel = {"ptdq": 1.4, "ptsq": 1.8, "qat": 1.8}.get(cid.method, 1.0 - 0.5 * (cid.ratio or 0.0))
    variant_rel *= latency_factor
    samples = fp32_us * 1e-6 * variant_rel * rng.lognormal(0.0, 0.05, size=40)
    ratios = {"torch-fp32/numpy-ref": 3.9, "onnx-fp32/numpy-ref": 1.6}
    if not cid.is_baseline:
        ratios.update({"variant/fp32": variant_rel, "variant/numpy-ref": variant_rel * 3.9})
    ratios = {k: float(v * rng.lognormal(0.0, 0.01)) for k, v in ratios.items()}
    ratio_ci = {k: [v * 0.96, v * 1.04] for k, v in ratios.items()}
    machine = {"latency_s": {"torch-fp32": fp32_us * 1e-6, "onnx-fp32": fp32_us * 0.41e-6,
                             "numpy-ref": fp32_us * 0.256e-6},
               "latency_cpu_s": {"torch-fp32": fp32_us * 0.98e-6},
               "ratio_clock": "thread CPU time", "ratios": ratios, "ratio_ci": ratio_ci,
               # the size of the stored deltas (0.05 to 3 MiB): a Hopper-sized actor's is about 0.8 MiB
               "memory": {"rss_delta_bytes": int(1.1e6 * (1.2 if cid.method in ("ptdq", "ptsq") else 1.0)),
                          "rss_delta_bytes_arena_off": int(1.15e6)},
               "energy": ({"available": True, "reason": None,
                           "joules_per_1000": 0.9 * variant_rel}
                          if energy else
                          {"available": False, "reason": "no powercap tree at /sys/class/powercap",
                           "joules_per_1000": None})}
    if not cid.is_baseline:
        machine["latency_s"]["variant"] = fp32_us * 1e-6 * variant_rel
    return {
        "group": None, "name": f"test_cell[{cell}]", "fullname": f"bench/test_cells.py::test_cell[{cell}]",
        "params": {"cell": cell}, "param": cell,
        "extra_info": {"figures": figures, "machine_figures": machine,
                       "rlbench": {"machine_id": machine_id, "machine": dict(MACHINE),
                                   "versions": dict(versions or VERSIONS), "threads": 1, "schema": 1}},
        "options": {"timer": "perf_counter", "interleaved": True, "threads": 1},
        "stats": _stats(samples),
    }


def make_results(cells: list[str] | None = None, **kw) -> dict:
    """A whole ``--benchmark-json`` document for ``cells`` (default: :func:`default_cells`)."""
    cells = default_cells() if cells is None else cells
    return {
        "machine_info": {"node": "vm", "processor": "", "machine": "x86_64", "python_version": "3.11.7",
                         "release": "6.18", "system": "Linux",
                         "cpu": {"brand_raw": MACHINE["cpu_model"], "count": 2, "arch": "X86_64"}},
        "commit_info": {"id": "unversioned", "time": None, "author_time": None, "dirty": False,
                        "project": "main", "branch": "(unknown)"},
        "benchmarks": [make_entry(c, **kw) for c in cells],
        "datetime": "2026-05-09T07:40:00.000000+00:00",
        "version": "5.2.3",
    }


def write_results(path: Path, cells: list[str] | None = None, **kw) -> Path:
    path = Path(path)
    path.write_text(json.dumps(make_results(cells, **kw), indent=1))
    return path


def edit(doc: dict, cell: str, fn) -> dict:
    """A copy of ``doc`` with ``fn(entry)`` applied to ``cell``'s entry."""
    doc = copy.deepcopy(doc)
    for entry in doc["benchmarks"]:
        if entry["param"] == cell:
            fn(entry)
            return doc
    raise KeyError(cell)


SAMPLE = Path(__file__).with_name("sample_results.json")
SAMPLE_CELLS = ["SAC-HalfCheetah-v5-baseline", "SAC-HalfCheetah-v5-ptdq", "SAC-HalfCheetah-v5-l2-0.10",
                "PPO-Hopper-v5-baseline"]

if __name__ == "__main__":
    write_results(SAMPLE, SAMPLE_CELLS, episodes=10)
    print(f"wrote {SAMPLE}")
