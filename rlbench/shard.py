"""``--rlbench-shard K/N``: a stable slice of the cells, balanced by measured cost.

Cost of a cell is its measured wall time from this machine's stored baselines (``cell_seconds``),
or, for a cell never measured, an estimate from its environment (episode steps are the bulk of a
cell). Cells are assigned greedily, most expensive first, to the least loaded shard (LPT), with
ties broken by cell id, so every runner computes the same partition without talking to the others.
Non-cell tests go to shard 1 only.
"""

from __future__ import annotations

import heapq

from rlbench.errors import RLBenchError

#: Seconds per cell by environment when nothing was measured (50 episodes, this 2-core VM).
ESTIMATE_S = {"Hopper-v5": 15.0, "HalfCheetah-v5": 20.0, "Ant-v5": 40.0, "Humanoid-v5": 60.0,
              "HumanoidStandup-v5": 80.0}


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise RLBenchError(f"--rlbench-shard {text!r}: expected K/N with integers, e.g. 2/4") from None
    if not (n >= 1 and 1 <= k <= n):
        raise RLBenchError(f"--rlbench-shard {text!r}: need 1 <= K <= N")
    return k, n


def cell_cost(cell, store) -> float:
    fig = None
    if store is not None:
        try:
            fig = store.machine_figures(cell.id)
        except Exception:  # a broken baseline file is reported by the cell itself, not here
            fig = None
    if fig and fig.get("cell_seconds"):
        return float(fig["cell_seconds"])
    return ESTIMATE_S.get(cell.env_id, 30.0)


def partition(cells_and_costs: list[tuple[str, float]], n: int) -> list[list[str]]:
    """LPT: most expensive first, each to the currently cheapest shard; deterministic."""
    heap = [(0.0, i) for i in range(n)]
    shards: list[list[str]] = [[] for _ in range(n)]
    for cid, cost in sorted(cells_and_costs, key=lambda x: (-x[1], x[0])):
        load, i = heapq.heappop(heap)
        shards[i].append(cid)
        heapq.heappush(heap, (load + cost, i))
    return shards


def select_shard(items, k: int, n: int, store):
    """Split pytest items into (kept, dropped) for shard k of n."""
    cells = {}
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if cell is not None and hasattr(cell, "variant"):
            cells.setdefault(cell.id, cell_cost(cell, store))
    mine = set(partition(sorted(cells.items()), n)[k - 1])
    keep, drop = [], []
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if cell is None or not hasattr(cell, "variant"):
            (keep if k == 1 else drop).append(item)
        else:
            (keep if cell.id in mine else drop).append(item)
    return keep, drop
