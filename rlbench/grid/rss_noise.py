"""How far a cell's RSS deltas move between runs on one machine: the floor of the RSS gate.

Within one process the forked children's peak-RSS deltas repeat to a few KiB, but between runs
(another session, another kernel build of the same VM) one artefact's delta moves by up to a few
hundred KiB. A floor from the repeats alone would fail every cell on the next run; a fixed floor
of megabytes would pass a doubling of every delta (the deltas are 0.05 to 3 MiB). The floor is
therefore measured the way it is used: each chosen cell's deltas measured now, and the deltas of the
cells of checking runs' results files (``--from``), against this machine's stored figures for
them, and the largest move per RSS key kept as the machine's noise (``rss_noise`` in
``machines/<id>.json``). A grid run's deltas move more than a lone command's: its children fork
from a worker that has loaded other cells first. The gate allows ``rss_noise_k`` times the noise
(:func:`rlbench.gate.checks.rss_limit`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlbench.core.errors import BaselineError
from rlbench.grid.cell import build_variant, cell_memory
from rlbench.grid.matrix import parse_cell
from rlbench.zoo.shipped import load_shipped

COMMAND = "rlbench rss-noise [--cells A,B] [--from RESULTS.json ...] --write"


@dataclass(frozen=True)
class NoiseRecord:
    bytes: dict[str, int]
    """Per RSS key, the largest |now - stored| over the cells (bytes)."""
    cells: tuple[str, ...]
    moves: dict[str, dict[str, int]]
    """Per cell and key, now - stored (bytes)."""

    def to_json(self) -> dict:
        return {"bytes": dict(sorted(self.bytes.items())), "cells": list(self.cells),
                "method": f"the largest |now - stored| per key over {len(self.cells)} cells", "command": COMMAND}


#: The variants whose cells the default measures beside each pair's baseline: the ONNX Runtime graphs
#: whose deltas move most between runs (fp16 and int8 weights: on one machine the fp16 cells moved by
#: 0.28 MiB between two quiet smoke runs while the baseline cells moved by 4 KiB).
DEFAULT_VARIANTS: tuple[str, ...] = ("baseline", "fp16", "int8pc", "ptsq")


def default_cells(store) -> list[str]:
    """Every pair's :data:`DEFAULT_VARIANTS` cells with stored RSS figures for this machine."""
    return sorted(c for c, m in store.machine_cells().items()
                  if "memory" in m and c.endswith(tuple(f"-{v}" for v in DEFAULT_VARIANTS)))


def measure(store, cells: list[str] | None = None, progress=print, moves=None) -> NoiseRecord:
    """``cells`` measured now (default :func:`default_cells`), with the ``moves`` of checking runs'
    cells (:func:`rlbench.report.rss_moves.moves_in_results`), against this machine's stored deltas."""
    cells = cells if cells is not None else default_cells(store)
    moves = dict(moves or {})
    if not cells and not moves:
        raise BaselineError(f"{store.machine_path}: no cell with stored RSS figures for machine {store.machine_id}; "
                            "record this machine's figures first with: pytest bench --rlbench-record-machine")
    for cell_id in cells:
        stored = (store.machine_figures(cell_id) or {}).get("memory")
        if not stored:
            raise BaselineError(f"{cell_id}: no RSS figures stored for machine {store.machine_id} in "
                                f"{store.machine_path}; record them with: pytest bench --rlbench-record-machine "
                                f"-k {cell_id}")
        cell = parse_cell(cell_id)
        shipped = load_shipped(cell.algo, cell.env_id)
        now = cell_memory(shipped, build_variant(cell, shipped))
        measured = {k: int(now[k] - stored[k]) for k in now if k.startswith("rss_delta") and k in stored}
        if cell_id in moves:  # also in a checking run: the larger move per key
            measured = {k: max((v, moves[cell_id].get(k, 0)), key=abs) for k, v in measured.items()}
        moves[cell_id] = measured
        progress(f"{cell_id}: " + ", ".join(f"{k} {v / 1024:+.0f} KiB" for k, v in sorted(moves[cell_id].items())))
    keys = sorted({k for m in moves.values() for k in m})
    return NoiseRecord({k: max(abs(m[k]) for m in moves.values() if k in m) for k in keys}, tuple(moves), moves)
