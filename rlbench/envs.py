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

import gymnasium as gym

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
    """``gym.make`` with MuJoCo's log redirected."""
    quiet_mujoco()
    return gym.make(env_id, **kwargs)
