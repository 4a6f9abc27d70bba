"""Run one benchmark cell: load, (compress,) measure, and compare with the stored figures.

This is the logic behind ``bench/test_cells.py``; it runs from a script as well::

    from rlbench.cell import run_cell
    from rlbench.matrix import Cell, Variant
    result = run_cell(Cell("PPO", "Hopper-v5", Variant("baseline")))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rlbench.matrix import Cell
from rlbench.registry import EVAL_SEED_BASE

MIN_EPISODES = 10
MAX_EPISODES = 50
#: Episode counts are chosen so that a drop of this fraction of the mean return is resolvable.
DETECTABLE_DROP = 0.10


def choose_episodes(returns, detectable: float = DETECTABLE_DROP, z: float = 1.96) -> int:
    """Episodes needed for a 95% CI half-width of ``detectable/2`` of the mean, from the spread.

    Comparing two means each with half-width h resolves a difference of about 2h, so h is set
    to half the drop we want to see. Clamped to [MIN_EPISODES, MAX_EPISODES].
    """
    x = np.asarray(returns, dtype=float)
    mu, sd = abs(float(x.mean())), float(x.std(ddof=1)) if x.size > 1 else 0.0
    if mu == 0:
        return MAX_EPISODES
    n = math.ceil((z * sd / (detectable / 2 * mu)) ** 2)
    return int(min(max(n, MIN_EPISODES), MAX_EPISODES))


@dataclass
class CellResult:
    cell: str
    figures: dict
    """Machine-independent: seeds, per-episode returns and lengths, bytes, parameters."""
    machine: dict
    """Machine-dependent: absolute latencies, latency ratios."""
    benchmark: dict
    """pytest-benchmark stats of the cell's single-observation latency."""
    extra: dict = field(default_factory=dict)


def _seeds_for(cell: Cell, store, shipped) -> list[int]:
    stored = store.figures(cell.baseline_id) if store is not None else None
    if stored is not None:
        return list(stored["seeds"])
    n = choose_episodes(shipped.recorded_returns)
    return list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + n))


def run_cell(cell: Cell, store=None, rounds: int = 40) -> CellResult:
    """Measure a cell. Raises :class:`~rlbench.errors.PolicyError` if its policy is not shipped."""
    from rlbench.measure.latency import paired_ratio, pytest_benchmark_stats, time_interleaved
    from rlbench.measure.returns import evaluate_returns
    from rlbench.onnx_export import onnx_bytes
    from rlbench.policy import num_params
    from rlbench.runtime import NumpyPredictor, OrtPredictor, TorchPredictor
    from rlbench.zoo import load_shipped

    shipped = load_shipped(cell.algo, cell.env_id)
    if cell.variant.method != "baseline":
        raise NotImplementedError(f"{cell.id}: method {cell.variant.method!r} is not wired into the grid yet")
    module = shipped.module()
    torch_fp32 = TorchPredictor(module, name="torch-fp32")
    onnx_fp32 = OrtPredictor(shipped.policy_onnx, name="onnx-fp32")
    ref = NumpyPredictor(module, name="numpy-ref")
    seeds = _seeds_for(cell, store, shipped)
    rec = evaluate_returns(torch_fp32, cell.env_id, seeds, label=cell.id)
    obs1 = np.asarray([_first_obs(cell.env_id, seeds[0])], dtype=np.float32)
    lat = time_interleaved({p.name: (lambda p=p: p.predict(obs1)) for p in (torch_fp32, onnx_fp32, ref)},
                           rounds=rounds, settings={"batch": 1, "threads": 1})
    r_torch = paired_ratio(lat["torch-fp32"], lat["numpy-ref"])
    r_onnx = paired_ratio(lat["onnx-fp32"], lat["numpy-ref"])
    figures = {
        "seeds": seeds, "returns": list(rec.returns), "lengths": list(rec.lengths),
        "return_mean": rec.mean, "return_ci": [rec.ci_low, rec.ci_high],
        "model_bytes": {"policy.pt": shipped.meta["files"]["policy.pt"]["bytes"],
                        "policy.onnx": len(onnx_bytes(module))},
        "params": num_params(module), "policy_sha256": shipped.sha256,
    }
    machine = {
        "latency_s": {k: v.median for k, v in lat.items()},
        "latency_cpu_s": {k: v.cpu_median for k, v in lat.items()},
        "ratio_clock": "thread CPU time",
        "ratios": {"torch-fp32/numpy-ref": r_torch.median, "onnx-fp32/numpy-ref": r_onnx.median},
        "ratio_ci": {"torch-fp32/numpy-ref": [r_torch.ci_low, r_torch.ci_high],
                     "onnx-fp32/numpy-ref": [r_onnx.ci_low, r_onnx.ci_high]},
    }
    return CellResult(cell.id, figures, machine, pytest_benchmark_stats(lat["torch-fp32"]),
                      extra={"return": rec.to_json(), "latency": {k: v.to_json() for k, v in lat.items()}})


def check_cell(result: CellResult, store, gate_latency: bool = False) -> list:
    """Verdicts of a result against the stored figures (raises if none are stored)."""
    from rlbench.checks import check_exact, check_ratio, check_return

    tol = store.tolerances()
    stored = store.require(result.cell)
    verdicts = [check_return(result.cell, result.figures["returns"], stored["returns"], tol.returns)]
    if result.figures["seeds"] != stored["seeds"]:
        verdicts.append(check_exact(result.cell, "seeds", result.figures["seeds"], stored["seeds"]))
    verdicts.append(check_exact(result.cell, "model bytes", result.figures["model_bytes"], stored["model_bytes"]))
    verdicts.append(check_exact(result.cell, "parameters", result.figures["params"], stored["params"]))
    mstored = store.machine_figures(result.cell) if gate_latency else None
    if mstored is not None:
        for key, value in mstored.get("ratios", {}).items():
            if key in result.machine["ratios"]:
                ci = tuple(result.machine["ratio_ci"][key])
                verdicts.append(check_ratio(result.cell, key, result.machine["ratios"][key], ci, value, tol.latency))
    return verdicts


def _first_obs(env_id: str, seed: int) -> np.ndarray:
    from rlbench.envs import make_env

    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    env.close()
    return obs
