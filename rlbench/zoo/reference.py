"""Published returns to compare the zoo with (data only; :mod:`rlbench.report.zoo_table` sets them beside ours).

* ``PAPER``: Lu et al. 2024, Table 1 baselines (MuJoCo -v4 environments), from
  ``shared/papers/lu-2024-tables.json``; budgets not stated in the paper.
* ``RL_ZOO``: rl-baselines3-zoo's ``benchmark.md`` ("Performance of trained agents"), mean
  deterministic return and training budget, on the -v3 environments; one run each. It has no
  MuJoCo DDPG entries and no HumanoidStandup entries.
"""

from __future__ import annotations

from rlbench.zoo.paper import PAPER_TABLES


def _paper_baselines() -> dict[tuple[str, str], float]:
    return {(algo, env): cells["baseline"] for algo, envs in PAPER_TABLES["table1_average_return"].items()
            for env, cells in envs.items()}


PAPER = _paper_baselines()

#: (return, budget in steps)
RL_ZOO = {
    ("PPO", "Ant"): (1327.158, 1_000_000), ("PPO", "HalfCheetah"): (5819.099, 1_000_000),
    ("PPO", "Hopper"): (2410.435, 1_000_000),
    ("SAC", "Ant"): (4615.791, 1_000_000), ("SAC", "HalfCheetah"): (9535.451, 1_000_000),
    ("SAC", "Hopper"): (2325.547, 1_000_000), ("SAC", "Humanoid"): (6232.287, 2_000_000),
    ("TD3", "Ant"): (5813.274, 1_000_000), ("TD3", "HalfCheetah"): (9655.666, 1_000_000),
    ("TD3", "Hopper"): (3606.390, 1_000_000), ("TD3", "Humanoid"): (5566.687, 2_000_000),
    ("TRPO", "Ant"): (4982.301, 1_000_000), ("TRPO", "HalfCheetah"): (1785.476, 1_000_000),
    ("TRPO", "Hopper"): (3618.386, 1_000_000),
}
