"""False failures of the return check on real resampled episodes.

A library upgrade that changes a MuJoCo trajectory in its last bits (an int8 rounding, a new
BLAS kernel) turns every evaluation episode into a fresh draw from the same policy. The
return check must not fail a cell for that. This script measures how often it does: for a
stratified sample of cells (``--per-pair`` cells of every algorithm x environment pair, drawn
with a fixed seed) it evaluates the cell's variant on the same number of episodes as its stored
figures, but on seeds shifted by ``--shift`` (so every episode is new), and judges the new
returns against the stored ones with the grid's own check (``rlbench.checks.check_return``,
doing nothing's bar on the stored seeds, as in a grid run). The variant is the one the grid
builds (``rlbench.cell.build_variant``); nothing but the seeds differs from a grid run.

    python docs/repro/resampled_returns.py --per-pair 37 --out resampled.json --resume

prints one line per regressed or improved cell and a summary: false failures per cell with a
95% Clopper-Pearson interval, and that rate times the grid's cell count.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from scipy.stats import beta

from rlbench.core.io import atomic_write_bytes
from rlbench.core.paths import baselines_dir
from rlbench.core.versions import machine_id
from rlbench.gate.checks import Status, check_return
from rlbench.gate.store import BaselineStore
from rlbench.grid.cell import build_variant, idle_by_seed
from rlbench.grid.matrix import cells
from rlbench.measure.int8kernel import probe, uses_int8_kernels
from rlbench.measure.returns import evaluate_returns
from rlbench.runtime.predictors import TorchPredictor
from rlbench.zoo.shipped import load_shipped


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-pair", type=int, default=6, help="cells per pair (default %(default)s)")
    ap.add_argument("--shift", type=int, default=500_000, help="seed shift (default %(default)s)")
    ap.add_argument("--sample-seed", type=int, default=0, help="seed of the cell sample (default %(default)s)")
    ap.add_argument("--out", help="write every verdict to this JSON file (rewritten after each cell)")
    ap.add_argument("--resume", action="store_true", help="skip the cells already in --out")
    args = ap.parse_args(argv)

    store = BaselineStore(baselines_dir(), machine_id(), int8_kernel=probe())
    tol = store.tolerances().returns
    grid = cells()
    by_pair: dict[str, list] = {}
    for c in grid:
        by_pair.setdefault(f"{c.algo}-{c.env_id}", []).append(c)
    rng = random.Random(args.sample_seed)
    drawn = [rng.sample(by_pair[pair], min(args.per_pair, len(by_pair[pair]))) for pair in sorted(by_pair)]
    # round-robin over the pairs, so that a run stopped early still holds a stratified sample
    sample = [row[i] for i in range(max(map(len, drawn))) for row in drawn if i < len(row)]

    rows = []
    if args.resume and args.out and Path(args.out).exists():
        prev = json.loads(Path(args.out).read_text())
        if (prev["shift"], prev["per_pair"], prev["sample_seed"]) != (args.shift, args.per_pair, args.sample_seed):
            ap.error(f"{args.out} holds a run with other --shift/--per-pair/--sample-seed; choose another --out")
        rows = prev["rows"]
    done = {r["cell"] for r in rows}
    t0 = time.perf_counter()
    for i, cell in enumerate(sample, 1):
        if cell.id in done:
            continue
        shipped = load_shipped(cell.algo, cell.env_id)
        art = build_variant(cell, shipped)
        variant = TorchPredictor(shipped.module(), name="torch-fp32") if art is None else art.predictor(name="variant")
        fig = store.figures(cell.id)
        stored = store.require(cell.id, int8=uses_int8_kernels(fig))
        seeds = [s + args.shift for s in stored["seeds"]]
        rec = evaluate_returns(variant, cell.env_id, seeds, label=cell.id)
        v = check_return(cell.id, rec.returns, stored["returns"], tol, idle=idle_by_seed(store, cell.env_id),
                         seeds=stored["seeds"])
        rows.append({"cell": cell.id, "status": str(v.status), "line": v.message, "n": len(seeds)})
        if v.status != Status.UNCHANGED:
            print(f"{v.status}: {v.message}", flush=True)
        if i % 10 == 0:
            print(f"[{i}/{len(sample)} cells, {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
        if args.out:
            atomic_write_bytes(Path(args.out), json.dumps(
                {"shift": args.shift, "per_pair": args.per_pair, "sample_seed": args.sample_seed, "rows": rows},
                indent=1).encode())

    n = len(rows)
    k = sum(r["status"] == str(Status.REGRESSED) for r in rows)
    up = sum(r["status"] == str(Status.IMPROVED) for r in rows)
    lo, hi = clopper_pearson(k, n)
    print(f"{n} cells on seeds shifted by {args.shift}: {k} regressed, {up} improved; false failures per cell "
          f"{k / n:.4f} (95% CI [{lo:.4f}, {hi:.4f}]), per grid of {len(grid)} cells {k / n * len(grid):.2f} "
          f"[{lo * len(grid):.2f}, {hi * len(grid):.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
