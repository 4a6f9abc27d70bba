"""Environment construction, and MuJoCo's own logging kept out of the working tree.

mujoco 4.0 warns that gymnasium 1.4's MuJoCo models use the deprecated compiler attribute
``settotalmass``. By default MuJoCo prints each warning and appends it to ``MUJOCO_LOG.TXT``
in the current directory, which would litter the repository and every test's output. We keep
mujoco 4 (it is one of the libraries users gate upgrades of) and install a warning handler
that routes MuJoCo warnings to :mod:`logging` instead: the deprecation goes to DEBUG, any
other MuJoCo warning to WARNING, so nothing is hidden but nothing is written to disk.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym

from rlbench.zoo.registry import env_kwargs

log = logging.getLogger("rlbench.mujoco")
_installed = False

KNOWN_DEPRECATIONS = ("settotalmass",)


def _mujoco_warning(message: str) -> None:
    text = message.decode() if isinstance(message, bytes) else str(message)
    level = logging.DEBUG if any(k in text for k in KNOWN_DEPRECATIONS) else logging.WARNING
    log.log(level, "MuJoCo: %s", text.strip())


def quiet_mujoco() -> None:
    """Route MuJoCo warnings to logging (idempotent, per process)."""
    global _installed
    if _installed:
        return
    import mujoco

    mujoco.set_mju_user_warning(_mujoco_warning)
    # gymnasium's MuJoCo envs warn about float64 casts on some versions; not ours to fix.
    warnings.filterwarnings("ignore", message=".*settotalmass.*")
    _installed = True


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with the registry's keywords for ``env_id`` (``kwargs`` override them) and
    MuJoCo's log redirected."""
    quiet_mujoco()
    return gym.make(env_id, **{**env_kwargs(env_id), **kwargs})


#: Environments kept per process and env id for reuse; a grid cell evaluates up to 50 episodes.
POOL_LIMIT = 64
_pool: dict[str, list[gym.Env]] = {}


@contextmanager
def pooled_envs(env_id: str, n: int) -> Iterator[list[gym.Env]]:
    """``n`` environments of ``env_id``, taken from this process's pool and returned to it after.

    Building a MuJoCo environment costs about 4 ms (compiling the model); a grid cell evaluates
    up to 50 episodes, so a worker that built them afresh spent 0.2 to 0.35 s a cell on it. The
    caller must ``reset(seed=...)`` each one before use: a seeded reset re-seeds the env's
    generator and ``mj_resetData`` clears the whole simulation state, so an episode on a reused
    environment is the same as on a new one (``tests/test_measure_returns.py`` checks the returns
    bit for bit).
    """
    free = _pool.setdefault(env_id, [])
    envs = [free.pop() if free else make_env(env_id) for _ in range(n)]
    try:
        yield envs
    finally:
        keep = max(0, min(len(envs), POOL_LIMIT - len(free)))
        free.extend(envs[:keep])
        for env in envs[keep:]:
            env.close()
