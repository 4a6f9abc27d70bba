"""Learning curves of the zoo: each pair's training evaluations (return against steps) beside the
paper's Table 1 figure and what doing nothing scores, so that a reader sees whether a policy converged.

The shipped curve comes from the policy's ``meta.json`` (``train_evals``, written at export); a
training run under ``runs_dir()`` that has gone past the shipped policy is drawn beside it, dashed, as
"training (not shipped)". Nothing is re-measured here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from rlbench.zoo.reference import PAPER
from rlbench.zoo.registry import Pair, env_short, pairs
from rlbench.zoo.shipped import load_shipped, is_shipped

DPI = 110


@dataclass(frozen=True)
class Curve:
    """One pair's training evaluations, (steps, return) in step order: the shipped policy's and, where
    it has gone further, a training run's."""

    pair: Pair
    shipped: tuple[tuple[int, float], ...] = ()
    training: tuple[tuple[int, float], ...] = ()
    paper: float | None = None
    idle: float | None = None
    notes: tuple[str, ...] = field(default=())
    ships: tuple[int, float] | None = None
    """The training evaluation of the agent shipped, where that is not the last one (a run's best)."""


def _evals(rows: list[dict]) -> tuple[tuple[int, float], ...]:
    return tuple(sorted((int(e["steps"]), float(e["return"])) for e in rows))


def _training_run(pair: Pair, root: Path, seed: int) -> tuple[tuple[int, float], ...]:
    state = root / f"{pair.algo}-{pair.env_id}-s{seed}" / "ckpt" / "state.json"
    if not state.exists():
        return ()
    return _evals(json.loads(state.read_text()).get("evals", []))


def collect(idle: dict, runs: Path | None = None, policies: Path | None = None) -> list[Curve]:
    """Every pair's curve; ``runs``: also the training runs under that folder (``runs_dir()``) whose
    evaluations go past the shipped policy's."""
    out = []
    for p in pairs():
        shipped: tuple[tuple[int, float], ...] = ()
        ships = None
        seed = 0
        notes: list[str] = []
        if is_shipped(p.algo, p.env_id, policies):
            meta = load_shipped(p.algo, p.env_id, policies, verify=False).meta
            shipped, seed = _evals(meta.get("train_evals", [])), meta.get("seed", 0)
            if not shipped:
                notes.append("meta.json has no training evaluations")
            at, evals = (meta.get("snapshot") or {}).get("steps"), dict(shipped)
            if shipped and at != shipped[-1][0] and at in evals:
                ships = (at, evals[at])
        else:
            notes.append("not shipped")
        training = _training_run(p, runs, seed) if runs is not None else ()
        if training and shipped and training[-1][0] <= shipped[-1][0] and training[-1] in shipped:
            training = ()  # the run is the shipped policy's own
        still = idle.get(p.env_id)
        out.append(Curve(p, shipped, training, PAPER.get((p.algo, env_short(p.env_id))),
                         still["mean"] if still else None, tuple(notes), ships))
    return out


def _draw(ax, c: Curve, small: bool) -> None:
    if c.shipped:
        ax.plot(*zip(*c.shipped), color="tab:blue", lw=1.2, label="shipped policy's training")
    if c.ships:
        ax.plot(*c.ships, "o", color="tab:blue", ms=4, label="the agent shipped (the run's best)")
    if c.training:
        ax.plot(*zip(*c.training), color="tab:orange", lw=1.2, ls="--", label="training (not shipped)")
    if c.paper is not None:
        ax.axhline(c.paper, color="tab:green", lw=1, ls=":", label="paper (Table 1)")
    if c.idle is not None:
        ax.axhline(c.idle, color="grey", lw=1, ls="-.", label="doing nothing")
    if c.notes and not (c.shipped or c.training):
        ax.text(0.5, 0.5, "; ".join(c.notes), ha="center", va="center", transform=ax.transAxes)
    ax.set_title(c.pair.name, fontsize=9 if small else 11)
    ax.tick_params(labelsize=7 if small else 9)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k")
    ax.grid(alpha=0.3)


def write(curves: list[Curve], out: Path, per_pair: bool = False) -> list[Path]:
    """``learning-curves.png``, every pair on one page (algorithms in columns, environments in rows);
    ``per_pair``: also one larger PNG per pair (``ALGO-ENV.png``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for c in curves if per_pair else ():
        fig = Figure(figsize=(6, 3.6), layout="constrained")
        ax = fig.add_subplot()
        _draw(ax, c, small=False)
        ax.set_xlabel("training steps")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=8)
        path = out / f"{c.pair.name}.png"
        fig.savefig(path, dpi=DPI)
        written.append(path)
    algos = list(dict.fromkeys(c.pair.algo for c in curves))
    envs = list(dict.fromkeys(c.pair.env_id for c in curves))
    fig = Figure(figsize=(2.6 * len(algos), 2.1 * len(envs) + 0.6), layout="constrained")
    axes = fig.subplots(len(envs), len(algos), squeeze=False)
    by = {(c.pair.algo, c.pair.env_id): c for c in curves}
    for i, env in enumerate(envs):
        for j, algo in enumerate(algos):
            if (algo, env) in by:
                _draw(axes[i][j], by[algo, env], small=True)
            else:
                axes[i][j].set_visible(False)
    handles = {}
    for ax in fig.axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside upper center", ncols=len(handles), fontsize=9)
    path = out / "learning-curves.png"
    fig.savefig(path, dpi=80)
    written.append(path)
    return written
