"""Helpers for tests that carry out the repair an error message suggests."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def command(message: str) -> list[str]:
    """The first `command` a message suggests, as argv."""
    return shlex.split(message.split("`")[1])


def git_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for args in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        subprocess.run(["git", "-C", str(path), *args], check=True)
    return path


def commit(repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "x"], check=True)
