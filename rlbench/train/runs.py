"""The training runs under ``runs_dir()``: how far each has gone, its best agent, and whether that
agent is a candidate to ship (``rlbench zoo runs``).

A run's figures here are its training evaluations (5 episodes) and its best agent's confirmation
(20 episodes, :func:`rlbench.train.loop.keep_best`), on the training-evaluation seeds. They say which
runs to export; the shipped figure is measured on the 50 evaluation seeds when one is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rlbench.core.errors import RLBenchError
from rlbench.zoo.agents import RunPaths, best_checkpoint, latest_checkpoint
from rlbench.zoo.reference import PAPER
from rlbench.zoo.registry import env_short, get_config
from rlbench.zoo.shipped import is_shipped, load_shipped


@dataclass(frozen=True)
class RunStatus:
    """One run: its progress, its last and best evaluations, and the shipped policy's return beside them."""

    run: str
    pair: str
    trainer: str
    steps: int
    target: int
    last_return: float | None
    best_steps: int | None
    best_return: float | None
    paper: float | None
    idle: float | None
    shipped_return: float | None
    shipped_trained: int | None
    stopped_early: bool
    #: the shipped policy's confirmation on the training-evaluation seeds, and its step, where it is a
    #: best agent of this run (a policy exported from elsewhere has neither)
    shipped_confirmed: float | None = None
    shipped_best_steps: int | None = None

    @property
    def best_is_shipped(self) -> bool:
        return self.shipped_best_steps is not None and self.best_steps == self.shipped_best_steps

    @property
    def candidate(self) -> bool:
        """The best agent's confirmation beats doing nothing's return and the shipped policy's (its
        confirmation on the same seeds where it is a best agent of this run, so never itself; else its
        return; or none is shipped): worth exporting and measuring on the evaluation seeds."""
        if self.best_return is None or (self.idle is not None and self.best_return <= self.idle):
            return False
        shipped = self.shipped_confirmed if self.shipped_confirmed is not None else self.shipped_return
        return shipped is None or self.best_return > shipped

    def to_json(self) -> dict:
        return {**asdict(self), "candidate": self.candidate, "best_is_shipped": self.best_is_shipped}


def run_status(root: Path, idle: dict) -> RunStatus | None:
    """The run in folder ``root`` (``ALGO-ENV-sSEED``), or None if it has no checkpoint or is no registered pair."""
    name, _, seed = root.name.rpartition("-s")
    try:
        algo, env = name.split("-", 1)
        cfg = get_config(algo, env)
    except (ValueError, RLBenchError):  # a folder that is not a run of this registry
        return None
    paths = RunPaths(root)
    latest = latest_checkpoint(paths)
    if latest is None:
        return None
    state = json.loads((latest / "state.json").read_text())
    best = state.get("best") if best_checkpoint(paths) is not None else None
    shipped = load_shipped(cfg.algo, cfg.env_id, verify=False).meta if is_shipped(cfg.algo, cfg.env_id) else None
    still = idle.get(cfg.env_id)
    evals = state.get("evals", [])
    snap = (shipped or {}).get("snapshot") or {}
    of_this_run = snap.get("kind") == "best" and str(shipped.get("seed")) == seed and "confirmation" in snap
    return RunStatus(
        run=root.name, pair=cfg.name, trainer=state.get("trainer", "sb3"), steps=int(state["num_timesteps"]),
        target=int(state.get("target_timesteps") or cfg.timesteps),
        last_return=evals[-1]["return"] if evals else None,
        best_steps=best["steps"] if best else None, best_return=best["return"] if best else None,
        paper=PAPER.get((cfg.algo, env_short(cfg.env_id))), idle=still["mean"] if still else None,
        shipped_return=shipped["evaluation"]["mean"] if shipped else None,
        shipped_trained=(shipped.get("trained_timesteps", shipped["timesteps"]) if shipped else None),
        stopped_early=bool(state.get("stopped_early")),
        shipped_confirmed=snap["confirmation"]["return"] if of_this_run else None,
        shipped_best_steps=snap["steps"] if of_this_run else None)


def runs(runs_root: Path, idle: dict) -> list[RunStatus]:
    """Every run under ``runs_root``, by name."""
    if not runs_root.is_dir():
        return []
    found = (run_status(d, idle) for d in sorted(runs_root.iterdir()) if d.is_dir())
    return [r for r in found if r is not None]


def _fig(x: float | None) -> str:
    if x is None:
        return "—"
    text = f"{x:.0f}"
    return "0" if text == "-0" else text


def markdown(rows: list[RunStatus]) -> str:
    """The runs as a Markdown table, candidates to export marked."""
    out = ["| run | trainer | steps | last eval | best (confirmed) | shipped | paper | doing nothing | export? |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        steps = f"{r.steps // 1000}k of {r.target // 1000}k" + (" (stopped early)" if r.stopped_early else "")
        best = "—" if r.best_return is None else f"{r.best_return:.0f} at {r.best_steps // 1000}k"
        shipped = "—" if r.shipped_return is None else f"{r.shipped_return:.0f} ({r.shipped_trained // 1000}k)"
        verdict = (f"**candidate**: `rlbench export {r.pair.split('-', 1)[0]} {r.pair.split('-', 1)[1]} --overwrite`"
                   if r.candidate else "shipped" if r.best_is_shipped else "no")
        out.append(f"| {r.run} | {r.trainer} | {steps} | {_fig(r.last_return)} | {best} | {shipped} | {_fig(r.paper)} "
                   f"| {_fig(r.idle)} | {verdict} |")
    out += ["", "Training evaluations on 5 episodes, confirmations on 20, on the training-evaluation seeds; a "
            "candidate's best agent beats doing nothing's return and the shipped policy's there (where the run "
            "shipped its best, that agent's own confirmation; \"shipped\": the best is that agent). Export it, "
            "then land it (docs/zoo.md)."]
    return "\n".join(out)


__all__ = ["RunStatus", "markdown", "run_status", "runs"]
