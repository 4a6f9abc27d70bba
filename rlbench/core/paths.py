"""Where things live. The repository ships baselines; runs and caches live outside it."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # rlbench/core/paths.py -> the repository


def baselines_dir() -> Path:
    """``baselines/`` of the repository (``RLBENCH_BASELINES`` overrides, e.g. in tests)."""
    return Path(os.environ.get("RLBENCH_BASELINES", REPO_ROOT / "baselines"))


def policies_dir() -> Path:
    return baselines_dir() / "policies"


def home_dir() -> Path:
    """Training checkpoints and the artefact cache: never inside the repository."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlbench"
    return Path(os.environ.get("RLBENCH_HOME", default))


def runs_dir() -> Path:
    return home_dir() / "runs"


def cache_dir() -> Path:
    return Path(os.environ.get("RLBENCH_CACHE", home_dir() / "artefacts"))
