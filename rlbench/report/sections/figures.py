"""The page's figures: the grids per variant and pair (return, latency, RSS, compression, energy
where a meter measured it), return against pruning ratio and return against latency per algorithm.

The PNGs are drawn by :mod:`rlbench.report.plots` before the page is built; this module places them
with their captions and says why one is missing (no energy meter, no compressed cell).
"""

from __future__ import annotations

from pathlib import Path

from rlbench.report.markup import Block, Details, Heading, Para
from rlbench.report.sections.common import PageInputs, compressed_algos, image, pareto_name


def figure_blocks(inp: PageInputs, out: Path | None) -> list[Block]:
    """The three figure sections; images are sized from the PNGs in ``out`` (unsized when None)."""
    results = inp.results
    energy = any(r.energy is not None and r.energy.available for r in results.records)
    blocks = [Heading(2, "Figures per variant and pair"),
              Para("Each grid has a row per variant and a column per pair, grouped by algorithm; each square holds "
                   "the figure over the pair's fp32 cell (green is better). Latency is the in-process ratio to "
                   "fp32 in the variant's own runtime, so an ONNX Runtime variant at 1.0x is as fast as fp32 in "
                   "ONNX Runtime, which is itself several times faster than torch fp32 (above)."),
              image(out, "return_relative.png"), image(out, "latency_relative.png"),
              image(out, "memory_relative.png"), image(out, "model_size.png")]
    if energy:
        blocks.append(image(out, "energy_relative.png"))
    else:
        reasons = sorted({r.energy.reason or "no reason recorded" for r in results.records
                          if r.energy is not None and not r.energy.available})
        blocks.append(Para("Energy: not measured in any cell (" + ("; ".join(f"no meter: {x}" for x in reasons)
                                                                  if reasons else "no energy figures") + ")."))
    blocks += [Heading(2, "Return against pruning ratio"), image(out, "pruning_curves.png"),
               Heading(2, "Return against latency"),
               Para("Per algorithm, one panel per environment: return (95% CI) against latency over the NumPy "
                    "reference timed in the same process (one scale for both runtimes), the Pareto front (the "
                    "fastest variant for its return) joined and its first points labelled.")]
    algos = compressed_algos(results)
    if not algos:
        blocks.append(Para("No compressed cell in this file."))
    for i, algo in enumerate(algos):
        blocks.append(Details(f"{algo}: return against latency",
                              (image(out, pareto_name(algo), f"{algo}: return against latency, Pareto front"),),
                              open=i == 0))
    return blocks
