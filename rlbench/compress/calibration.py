"""Calibration data: observations from deterministic rollouts of the policy being compressed.

PTSQ calibrates its activation ranges on them and the fine-tuning methods distil on them
(:mod:`rlbench.compress.finetune`). The episodes' seeds start at
:data:`~rlbench.zoo.registry.CALIBRATION_SEED_BASE`, apart from the evaluation seeds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rlbench.core.errors import CompressionError
from rlbench.core.io import sha256_bytes
from rlbench.core.threads import torch_threads
from rlbench.zoo.registry import CALIBRATION_SEED_BASE

if TYPE_CHECKING:
    import numpy as np


def calibration_observations(module, env_id: str, n: int, seed_base: int | None = None) -> tuple[np.ndarray, dict]:
    """``n`` raw observations [n, obs_dim] float32 from deterministic rollouts of ``module``.

    Episode ``i`` resets with seed ``seed_base + i`` (default
    :data:`~rlbench.zoo.registry.CALIBRATION_SEED_BASE`); episodes run until ``n`` observations are
    collected. Torch runs single-threaded while doing so, so the set does not depend on the
    thread count. Returns the array and a record (episodes, seeds, sha256).
    """
    # deferred: numpy, torch and gymnasium, which listing the methods (`rlbench --help`) does not need
    import numpy as np
    import torch

    from rlbench.zoo.envs import make_env

    if n < 1:
        raise CompressionError(f"calibration needs at least 1 observation; n_calib={n}")
    base = CALIBRATION_SEED_BASE if seed_base is None else int(seed_base)
    env = make_env(env_id)
    obs_dim = module.spec.obs_dim
    if tuple(env.observation_space.shape) != (obs_dim,):
        env.close()
        raise CompressionError(f"{env_id} observations have shape {tuple(env.observation_space.shape)}, "
                               f"the policy takes ({obs_dim},)")
    out: list[np.ndarray] = []
    episodes = 0
    try:
        with torch_threads(1), torch.inference_mode():
            while len(out) < n:
                obs, _ = env.reset(seed=base + episodes)
                episodes += 1
                done = False
                while not done and len(out) < n:
                    o = np.asarray(obs, dtype=np.float32)
                    out.append(o)
                    action = module(torch.from_numpy(o[None]))[0].numpy()
                    if not np.all(np.isfinite(action)):
                        raise CompressionError(f"calibration rollout on {env_id} seed {base + episodes - 1}: "
                                               "the policy produced a non-finite action")
                    obs, _, terminated, truncated, _ = env.step(action)
                    done = terminated or truncated
    finally:
        env.close()
    arr = np.ascontiguousarray(np.stack(out), dtype=np.float32)
    return arr, {"episodes": episodes, "seeds": [base, base + episodes - 1], "sha256": sha256_bytes(arr.tobytes()),
                 "shape": list(arr.shape)}
