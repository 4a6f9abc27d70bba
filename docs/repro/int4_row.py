"""One row of docs/compressions.md's int4 table: a pair's fp32 and int4 returns, the same int4 with
its first layer (and head) kept in fp32, its graph bytes and its latency ratio to ONNX Runtime fp32.

The fp32 and int4 figures are the stored cells' (``baselines/figures.json``); the two
``--float-layers`` builds are evaluated here on the int4 cell's stored seeds; the latency ratio is
the int4 cell's ``variant/fp32`` ratio and its CI from the machine file (``--machine``, default this
machine's).

    python docs/repro/int4_row.py TD3 Hopper-v5 [--machine x86_64-2cpu-66af499dd8]

prints the Markdown row.
"""

from __future__ import annotations

import argparse
import json

from rlbench.compress.base import build_artefact
from rlbench.core.paths import baselines_dir
from rlbench.core.versions import machine_id
from rlbench.measure.returns import evaluate_returns
from rlbench.measure.stats import bootstrap_ci
from rlbench.zoo.registry import get_config
from rlbench.zoo.shipped import load_shipped


def _ci(returns) -> str:
    lo, hi = bootstrap_ci(returns)
    return f"{sum(returns) / len(returns):.0f} [{lo:.0f}, {hi:.0f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("algo")
    ap.add_argument("env")
    ap.add_argument("--machine", default=None, help="whose latency ratio (default: this machine's)")
    args = ap.parse_args()
    cfg = get_config(args.algo, args.env)
    root = baselines_dir()
    figures = json.loads((root / "figures.json").read_text())["cells"]
    base, int4 = figures[f"{cfg.name}-baseline"], figures[f"{cfg.name}-int4"]
    seeds = int4["seeds"]
    shipped = load_shipped(cfg.algo, cfg.env_id)
    kept = []
    for layers in ("first", "first+head"):
        art = build_artefact(shipped, "int4", {"float_layers": layers})
        kept.append(evaluate_returns(art.predictor(name=f"int4-{layers}"), cfg.env_id, seeds,
                                     label=f"{cfg.name}-int4 --float-layers {layers}").returns)
    machine = args.machine or machine_id()
    cell = json.loads((root / "machines" / f"{machine}.json").read_text())["cells"].get(f"{cfg.name}-int4", {})
    if "ratios" in cell:
        lo, hi = cell["ratio_ci"]["variant/fp32"]
        latency = f"{cell['ratios']['variant/fp32']:.2f} [{lo:.2f}, {hi:.2f}]"
    else:
        latency = f"(no int4 latency stored for {machine})"
    on_seeds = set(seeds)
    fp32 = [r for s, r in zip(base["seeds"], base["returns"]) if s in on_seeds]
    print(f"| {cfg.name} | {_ci(fp32)} | {_ci(int4['returns'])} | {_ci(kept[0])} | {_ci(kept[1])} | "
          f"{int4['baseline_bytes']:,} → {int4['bytes']:,} ({int4['compression_factor']:.1f}x) | {latency} | "
          f"{len(seeds)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
