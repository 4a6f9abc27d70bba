"""Training queues: pairs trained one after another, each resumed from its checkpoint.

``rlbench zoo train PAIR ...`` trains the pairs it is given. ``rlbench zoo train --queue FILE``
trains the lines of a file, ``ALGO-ENV`` or ``ALGO-ENV:TRAINER``, one at a time from the top. It
reads the file again before each pair, so lines added while it trains are taken in their turn, and
removes a line only once its pair has finished, so a queue that is killed resumes where it was.
Two processes can share one file: a pair another process is training (its run is locked) is passed
over. A pair shipped from its full budget (or from a run that stopped early) is skipped; a policy
shipped from a shorter run is replaced when its run finishes. With ``--init-from-shipped``, an
off-policy pair without a checkpoint (its machine lost it) starts its new run from the shipped agent
instead of fresh weights.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from rlbench.core.errors import RLBenchError
from rlbench.core.io import atomic_write_bytes
from rlbench.train.loop import RunBusyError, train
from rlbench.zoo.agents import TRAINERS, latest_checkpoint, run_dir
from rlbench.zoo.registry import OFF_POLICY, AlgoEnvConfig, env_kwargs, get_config
from rlbench.zoo.shipped import is_shipped, load_shipped


def finished(cfg: AlgoEnvConfig) -> str | None:
    """Why the pair needs no training (its shipped policy's run reached the budget or stopped early), or None."""
    if not is_shipped(cfg.algo, cfg.env_id):
        return None
    meta = load_shipped(cfg.algo, cfg.env_id, verify=False).meta
    if meta.get("env_kwargs", {}) != env_kwargs(cfg.env_id):
        return None
    trained = meta.get("trained_timesteps", meta.get("timesteps", 0))
    if trained >= cfg.timesteps or meta.get("stopped_early"):
        return f"shipped from {trained} steps of training"
    return None


def train_pair(cfg: AlgoEnvConfig, seed: int = 0, trainer: str | None = None, init_from_shipped: bool = False) -> bool:
    """Train one pair to the registry's budget, resuming its run; False if another process trains it.
    ``trainer`` applies to a new off-policy run: PPO and TRPO train with sb3, a started run keeps its own.
    ``init_from_shipped``: a new off-policy run of a shipped pair starts from its agent (``--init-from-shipped``)."""
    why = finished(cfg)
    if why:
        print(f"{cfg.name}: {why}, skipping", flush=True)
        return True
    new = latest_checkpoint(run_dir(cfg, seed)) is None
    if cfg.algo not in OFF_POLICY or not new:
        trainer = None
    warm = init_from_shipped and new and cfg.algo in OFF_POLICY and is_shipped(cfg.algo, cfg.env_id)
    print(f"{cfg.name}: training to {cfg.timesteps} steps" + (" from the shipped agent" if warm else ""), flush=True)
    try:
        train(cfg.algo, cfg.env_id, seed=seed, resume=True, overwrite=True, trainer=trainer, init_from_shipped=warm)
    except RunBusyError as exc:
        print(f"{cfg.name}: passed over: {exc}", flush=True)
        return False
    return True


def train_queue(names: list[str], seed: int = 0, trainer: str | None = None, init_from_shipped: bool = False) -> None:
    """Train the listed pairs in order, resuming each; skip those shipped at their full budget."""
    for name in names:
        algo, env = name.split("-", 1)
        train_pair(get_config(algo, env), seed, trainer, init_from_shipped)


# ------------------------------------------------------------------ a queue file
def parse_line(path: Path, number: int, line: str) -> tuple[AlgoEnvConfig, str | None]:
    """``ALGO-ENV[:TRAINER]`` as the pair's config and trainer, or an error naming the file and line."""
    pair, _, trainer = line.partition(":")
    try:
        algo, env = pair.split("-", 1)
        cfg = get_config(algo, env)
    except (ValueError, RLBenchError) as exc:
        raise RLBenchError(f"{path}:{number}: {line!r} is not ALGO-ENV[:TRAINER] of a registered pair "
                           f"({exc}); fix or remove the line") from None
    if trainer and trainer not in TRAINERS:
        raise RLBenchError(f"{path}:{number}: unknown trainer {trainer!r}; valid trainers: {', '.join(TRAINERS)}")
    return cfg, trainer or None


def entries(path: Path) -> list[tuple[str, AlgoEnvConfig, str | None]]:
    """The file's queue lines, (text, config, trainer), without blank lines and ``#`` comments; every
    line checked (:func:`parse_line`)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RLBenchError(f"{path}: no such queue file; write one ALGO-ENV[:TRAINER] per line") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            out.append((line, *parse_line(path, number, line)))
    return out


@contextmanager
def _locked(path: Path):
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def remove_line(path: Path, line: str) -> None:
    """Drop the first line reading ``line`` from the file, in place, atomically (other lines untouched)."""
    with _locked(path):
        lines = path.read_text().splitlines(keepends=True)
        for i, raw in enumerate(lines):
            if raw.strip() == line:
                del lines[i]
                break
        atomic_write_bytes(path, "".join(lines).encode())


def train_queue_file(path: Path | str, seed: int = 0, init_from_shipped: bool = False) -> None:
    """Train the file's pairs from the top until none is left that this process may train."""
    path = Path(path)
    passed_over: set[str] = set()
    while True:
        with _locked(path):
            todo = [entry for entry in entries(path) if entry[0] not in passed_over]
        if not todo:
            print(f"{path}: nothing left to train" + (f" here ({len(passed_over)} trained elsewhere)"
                                                       if passed_over else ""), flush=True)
            return
        line, cfg, trainer = todo[0]
        if train_pair(cfg, seed, trainer, init_from_shipped):
            remove_line(path, line)
        else:
            passed_over.add(line)


__all__ = ["entries", "finished", "parse_line", "remove_line", "train_pair", "train_queue", "train_queue_file"]
