"""rlbench.cell pieces that run without a shipped policy."""

from __future__ import annotations

import pytest

from rlbench.cell import _Phases, choose_episodes


def test_phases_split_wall_and_cpu_time_between_marks():
    wall, cpu = iter([0.0, 1.0, 4.0, 4.5]), iter([0.0, 0.5, 1.0, 1.5])
    p = _Phases()
    p._clock, p._cpu = lambda: next(wall), lambda: next(cpu)
    p._t, p._c = p._clock(), p._cpu()
    p.mark("setup")  # 1 s wall, 0.5 s CPU
    p.mark("returns")  # 3 s wall, of which 0.5 s on the CPU: the rest waited for a core
    p.mark("setup")  # a phase marked twice adds up
    assert p.record() == ({"setup": 1.5, "returns": 3.0}, {"setup": 1.0, "returns": 0.5})


@pytest.mark.parametrize(("returns", "expected"), [
    ([100.0, 100.0, 100.0], 10),  # no spread: the minimum
    ([0.0, 0.0], 50),  # a zero mean cannot be resolved relative to itself: the maximum
    ([1000.0, 1100.0, 900.0, 1000.0], 11),  # sd 81.6: (1.96 * 81.6 / (0.05 * 1000))^2 = 10.2
    ([0.0, 2000.0], 50),  # sd 1414 on a mean of 1000: thousands needed, clamped
])
def test_episode_count_resolves_a_ten_percent_drop_from_the_spread(returns, expected):
    assert choose_episodes(returns) == expected


def test_a_phase_rlbench_floor_does_not_know_is_refused():
    with pytest.raises(ValueError, match="unknown cell phase 'warmup'"):
        _Phases().mark("warmup")


def test_a_pooled_confirmation_keeps_both_runs_durations_and_pools_the_ratio_samples():
    from rlbench.cell import CellResult, pool_latency

    def run(cell_s, timed, returns_s, samples):
        machine = {"cell_seconds": cell_s, "timed_seconds": timed, "ratios": {"variant/fp32": 0.0},
                   "phase_seconds": {"setup": 0.5, "returns": returns_s, "timing": 1.0},
                   "phase_cpu_seconds": {"setup": 0.4, "returns": returns_s, "timing": 1.0}}
        return CellResult("PPO-Hopper-v5-ptdq", {}, machine, {}, extra={"ratio_samples": {"variant/fp32": samples}})

    first, confirmation = run(12.0, 0.8, 10.0, [1.0, 1.2]), run(1.5, 0.7, 0.0, [1.1, 1.3, 1.4])
    pooled = pool_latency(first, confirmation)
    # the rollouts of the first run are part of the cell's cost (shards and the floor read it)
    assert pooled.machine["cell_seconds"] == 13.5 and pooled.machine["timed_seconds"] == 1.5
    assert pooled.machine["phase_seconds"] == {"setup": 1.0, "returns": 10.0, "timing": 2.0}
    assert pooled.machine["phase_cpu_seconds"]["setup"] == 0.8
    assert pooled.extra["ratio_samples"]["variant/fp32"] == [1.0, 1.2, 1.1, 1.3, 1.4]
    assert pooled.machine["ratios"]["variant/fp32"] == 1.2 and pooled.machine["confirmed"] is True
