"""``--rlbench-shard K/N``: a stable slice of the cells, balanced by measured cost.

A cell's cost is its measured episode steps (the stored per-episode lengths in
``baselines/figures.json``) at its environment's measured step cost, plus a fixed cost for
loading, latency timing and the RSS children. Rollouts are the bulk of a cell: 50 Humanoid
episodes can take 50,000 steps, a Hopper policy that falls at once a few hundred. Both inputs are
machine-independent, so runners with different CPUs (different machine ids) compute the same
partition; a cost read from each runner's own machine file would let two runners disagree and
lose or repeat cells. Cells are assigned greedily, most expensive first, to the least loaded
shard (LPT), with ties broken by cell id, so every runner computes the same partition without
talking to the others. Non-cell tests go to shard 1 only.
"""

from __future__ import annotations

import heapq

from rlbench.core.errors import BaselineError, RLBenchError
from rlbench.gate.idle import EPISODES
from rlbench.gate.store import read_record_file

#: Seconds per environment step: the bare ``env.step`` cost on the 2-core reference VM
#: (``rlbench.measure.envsteps.bare_step_costs``, 10th percentile, nothing else training).
#: Only their proportions matter here.
STEP_S = {"Hopper-v5": 131e-6, "HalfCheetah-v5": 48e-6, "Ant-v5": 303e-6, "Humanoid-v5": 304e-6,
          "HumanoidStandup-v5": 538e-6,
          # the discrete tasks: same function, measured while training jobs ran (an upper bound)
          "CartPole-v1": 7e-6, "LunarLander-v3": 57e-6}
#: Seconds of a cell beside its rollouts (loading, latency timing, RSS children): 1.3 s a cell
#: on the smoke tier's Hopper cells, more for wider networks.
CELL_FIXED_S = 2.0
#: Episodes assumed for a cell with nothing stored, each at its environment's step limit.
DEFAULT_EPISODES = 50


def parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise RLBenchError(f"--rlbench-shard {text!r}: expected K/N with integers, e.g. 2/4") from None
    if not (n >= 1 and 1 <= k <= n):
        raise RLBenchError(f"--rlbench-shard {text!r}: need 1 <= K <= N")
    return k, n


def cell_cost(cell, stored: dict[str, dict]) -> float:
    """Estimated seconds of one cell; ``stored``: the cells of ``baselines/figures.json``.

    Steps: the cell's stored episode lengths, else its pair's baseline cell's, else every episode
    at the step limit (an unshipped pair's cells skip, but a shard is computed before that).
    """
    import gymnasium

    lengths = None
    for cid in (cell.id, f"{cell.pair}-baseline"):
        fig = stored.get(cid)
        if isinstance(fig, dict) and isinstance(fig.get("lengths"), list) and fig["lengths"]:
            lengths = fig["lengths"]
            break
    steps = sum(int(n) for n in lengths) if lengths else DEFAULT_EPISODES * (gymnasium.spec(cell.env_id).max_episode_steps or 1000)
    return _stepping_seconds(steps, cell.env_id) + CELL_FIXED_S


def _stepping_seconds(steps: float, env_id: str) -> float:
    return steps * STEP_S.get(env_id, max(STEP_S.values()))


def partition(cells_and_costs: list[tuple[str, float]], n: int) -> list[list[str]]:
    """LPT: most expensive first, each to the currently cheapest shard; deterministic."""
    heap = [(0.0, i) for i in range(n)]
    shards: list[list[str]] = [[] for _ in range(n)]
    for cid, cost in sorted(cells_and_costs, key=lambda x: (-x[1], x[0])):
        load, i = heapq.heappop(heap)
        shards[i].append(cid)
        heapq.heappush(heap, (load + cost, i))
    return shards


def select_shard(items, k: int, n: int, stored: dict[str, dict]):
    """Split pytest items into (kept, dropped) for shard k of n; ``stored``: :func:`stored_figures`."""
    cells = {}
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if cell is not None and hasattr(cell, "variant"):
            cells.setdefault(cell.id, cell_cost(cell, stored))
    mine = set(partition(sorted(cells.items()), n)[k - 1])
    keep, drop = [], []
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if cell is None or not hasattr(cell, "variant"):
            (keep if k == 1 else drop).append(item)
        else:
            (keep if cell.id in mine else drop).append(item)
    return keep, drop


def order_by_cost(items, stored: dict[str, dict]) -> list:
    """The most expensive tests first (a stable sort), so the last ones to run are short.

    xdist hands tests out in collection order; a long cell picked up last keeps one worker busy
    while the other idles: 27 worker-seconds of a 66 s smoke run at ``-n 2`` in collection order
    (``rlbench floor``'s ``after_last_test``). Longest first, with work stealing, bounds that tail
    by the shortest cells' length (LPT). Cells cost :func:`cell_cost`; the zoo's return checks their pair's
    stored episodes at the step cost; the idle checks their episodes at the step limit; everything
    else (findings, energy) is cheap and goes last.
    ``stored``: :func:`stored_figures`.
    """

    def cost(item) -> float:
        params = getattr(getattr(item, "callspec", None), "params", {})
        cell, pair = params.get("cell"), params.get("pair")
        if cell is not None and hasattr(cell, "variant") and getattr(item, "originalname", "") == "test_cell":
            return cell_cost(cell, stored)
        if pair is not None and hasattr(pair, "env_id"):
            fig = stored.get(f"{pair.algo}-{pair.env_id}-baseline") or {}
            lengths = fig.get("lengths") or [1000]
            steps = DEFAULT_EPISODES * sum(lengths) / len(lengths)
            return _stepping_seconds(steps, pair.env_id)
        if getattr(item, "originalname", "") == "test_idle_return_reproduces":
            import gymnasium

            env_id = params["env_id"]  # at most every episode to the step limit (a standing ant)
            return _stepping_seconds(EPISODES * (gymnasium.spec(env_id).max_episode_steps or 1000), env_id)
        return 0.0

    costs = [cost(item) for item in items]
    return [items[i] for i in sorted(range(len(items)), key=lambda i: -costs[i])]


def stored_figures(store) -> dict[str, dict]:
    """The machine-independent figures, read once. A broken file is reported by the cells that read
    it (naming the file); the order and the shards then fall back to the step-limit estimate."""
    if store is None or getattr(store, "figures_path", None) is None:
        return {}
    try:
        return read_record_file(store.figures_path)["cells"]
    except BaselineError:
        return {}
