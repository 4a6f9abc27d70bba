"""What one environment step costs on this machine, stepping MuJoCo alone: the floor of a cell's
wall time (:mod:`rlbench.report.floor`)."""

from __future__ import annotations

import time

import numpy as np

from rlbench.zoo.envs import make_env


def bare_step_costs(env_id: str, windows: int = 8, window_seconds: float = 0.5, gap_seconds: float = 1.0,
                    block: int = 100, seed: int = 0) -> tuple[float, float]:
    """Seconds per ``env.step``: the machine's fast phase (10th percentile over blocks of steps, the
    floor's cost) and its typical speed (the median over the same blocks, slow phases included).

    Blocks of up to ``block`` steps on seeded random actions, in ``windows`` windows of
    ``window_seconds`` spread ``gap_seconds`` apart. This VM's speed swings by up to 1.8x in phases
    lasting seconds: five repeats of a 1.3 s median read Hopper at 122 to 212 us a step, and a 4 s
    10th percentile still read 114 to 212. The 10th percentile over windows spread across 12 s is
    the cost of a step when the machine runs at speed, so the floor does not drift with the phase
    the analysis happened to run in.
    """
    env = make_env(env_id)
    env.action_space.seed(seed)
    rng_actions = [env.action_space.sample() for _ in range(block)]
    env.reset(seed=seed)
    per_block = []
    done_steps = 0
    for w in range(windows):
        if w:
            time.sleep(gap_seconds)
        t_end = time.perf_counter() + window_seconds
        while time.perf_counter() < t_end:
            t0 = time.perf_counter()
            ended = False
            n = 0
            for a in rng_actions:
                _, _, term, trunc, _ = env.step(a)
                n += 1
                if term or trunc:
                    ended = True
                    break
            per_block.append((time.perf_counter() - t0) / n)
            done_steps += n
            if ended:
                env.reset(seed=seed + done_steps)
    env.close()
    return float(np.quantile(per_block, 0.1)), float(np.quantile(per_block, 0.5))
