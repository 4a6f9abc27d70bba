"""Return: deterministic episodes on fixed seeds, batched across a vector of environments.

All episodes of one evaluation step together: one batched ``predict`` per environment step,
so evaluation costs little more than stepping MuJoCo. The batch keeps a constant shape (a
finished episode keeps feeding its last observation and its action is ignored), so the
inference kernels, and therefore the returns, are the same run after run.

With a ``reference`` predictor (a discrete policy's fp32 original), every state an episode visits
is also given to the reference, and the record counts the states where the two pick different
actions (:func:`argmax_flip`): what compression did to the greedy choice, on the states the
compressed policy itself reaches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from rlbench.core.errors import MeasurementError
from rlbench.core.versions import library_versions
from rlbench.measure.machine import machine_info
from rlbench.measure.stats import bootstrap_ci
from rlbench.zoo.registry import EVAL_SEED_BASE

SCHEMA = 1


@dataclass(frozen=True)
class ReturnRecord:
    """Per-episode returns of one predictor on one environment, with their context."""

    env_id: str
    predictor: str
    seeds: tuple[int, ...]
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_level: float
    unit: str = "episode return"
    settings: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    schema: int = SCHEMA
    argmax_flip: ArgmaxFlips | None = None
    """With a reference predictor: the flips over every state of every episode (:func:`argmax_flip`);
    None otherwise, and then absent from the JSON."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["seeds"], d["returns"], d["lengths"] = list(self.seeds), list(self.returns), list(self.lengths)
        if self.argmax_flip is None:
            del d["argmax_flip"]
        else:
            d["argmax_flip"] = self.argmax_flip.to_json()
        d["kind"] = "return"
        return d

    @classmethod
    def from_json(cls, d: dict) -> ReturnRecord:
        d = {k: v for k, v in d.items() if k != "kind"}
        for k in ("seeds", "returns", "lengths"):
            d[k] = tuple(d[k])
        if d.get("argmax_flip") is not None:
            d["argmax_flip"] = ArgmaxFlips.from_json(d["argmax_flip"])
        return cls(**d)


@dataclass(frozen=True)
class ArgmaxFlips:
    """A discrete-action policy's greedy choices against a reference policy's on the same states
    (the states of the evaluated policy's own rollouts): how many states, and on how many they differ."""

    states: int
    flips: int

    @property
    def fraction(self) -> float:
        return self.flips / self.states if self.states else 0.0

    def to_json(self) -> dict:
        return {"states": self.states, "flips": self.flips, "fraction": self.fraction}

    @classmethod
    def from_json(cls, d) -> ArgmaxFlips:
        return cls(int(d["states"]), int(d["flips"]))


def argmax_flip(actions: np.ndarray, reference: np.ndarray, active: np.ndarray | None = None) -> tuple[int, int]:
    """(states, flips): how many states count (``active``, default all) and on how many of them the
    discrete ``actions`` differ from the ``reference`` policy's on the same states."""
    a, r = np.asarray(actions).reshape(len(actions)), np.asarray(reference).reshape(len(reference))
    mask = np.ones(len(a), dtype=bool) if active is None else np.asarray(active, dtype=bool)
    return int(mask.sum()), int(np.count_nonzero(a[mask] != r[mask]))


def evaluate_returns(predictor, env_id: str, seeds: Sequence[int], *, max_steps: int | None = None,
                     label: str | None = None, ci_level: float = 0.95, lock=None,
                     chunk: int = 25, reference=None) -> ReturnRecord:
    """Run one deterministic episode per seed and keep every return and length.

    ``label`` names the cell in errors: a NaN or infinite action or reward raises
    :class:`MeasurementError` instead of becoming a number in a table. ``lock`` (a
    :class:`~rlbench.measure.quiet.QuietLock`) is held shared for every ``chunk`` steps, so a
    latency measurement elsewhere can pause this rollout. ``reference``: a predictor of discrete
    actions whose choices on the same states are compared with ``predictor``'s (the record's
    ``argmax_flip``); it never steers the episodes.
    """
    from contextlib import nullcontext

    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import pooled_envs

    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("evaluate_returns needs at least one seed")
    where = label or f"{getattr(predictor, 'name', 'predictor')} on {env_id}"
    with pooled_envs(env_id, len(seeds)) as envs:
        limit = int(max_steps or envs[0].spec.max_episode_steps or 1000)
        with lock.shared() if lock is not None else nullcontext():
            obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds)]).astype(np.float32)
        flips = [0, 0]
        totals, lengths = _rollout(predictor, envs, seeds, obs, where, limit, lock, chunk, reference, flips)
    rec = _record(predictor, env_id, seeds, totals, lengths, ci_level, limit)
    if reference is None:
        return rec
    from dataclasses import replace

    return replace(rec, argmax_flip=ArgmaxFlips(*flips))


def _rollout(predictor, envs, seeds, obs, where, limit, lock, chunk, reference=None,
             flips=None) -> tuple[np.ndarray, np.ndarray]:
    """Step every episode to its end with one batched ``predict`` per step; returns totals and lengths.
    With a ``reference``, adds the step's (states, flips) into ``flips``."""
    from contextlib import nullcontext

    n = len(envs)
    totals = np.zeros(n, dtype=np.float64)
    lengths = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    for start in range(0, limit, chunk):
        with lock.shared() if lock is not None else nullcontext():
            for _ in range(start, min(start + chunk, limit)):
                actions = np.asarray(predictor.predict(obs))
                if not np.all(np.isfinite(actions[active])):
                    bad = [seeds[i] for i in np.flatnonzero(active) if not np.all(np.isfinite(actions[i]))]
                    raise MeasurementError(f"{where}: non-finite action (NaN/inf) on episode seeds {bad[:5]}")
                if reference is not None:
                    states, flipped = argmax_flip(actions, reference.predict(obs), active)
                    flips[0] += states
                    flips[1] += flipped
                for i in np.flatnonzero(active):
                    o, r, terminated, truncated, _ = envs[i].step(actions[i])
                    if not math.isfinite(r):
                        raise MeasurementError(
                            f"{where}: non-finite reward {r} at step {lengths[i]} of seed {seeds[i]}")
                    totals[i] += r
                    lengths[i] += 1
                    obs[i] = o
                    if terminated or truncated:
                        active[i] = False
                if not active.any():
                    break
        if not active.any():
            break
    return totals, lengths


def _record(predictor, env_id, seeds, totals, lengths, ci_level, limit: int) -> ReturnRecord:
    n = len(seeds)
    lo, hi = bootstrap_ci(totals, level=ci_level)
    return ReturnRecord(
        env_id=env_id, predictor=getattr(predictor, "name", type(predictor).__name__), seeds=tuple(seeds),
        returns=tuple(float(x) for x in totals), lengths=tuple(int(x) for x in lengths),
        mean=float(totals.mean()), std=float(totals.std(ddof=1)) if n > 1 else 0.0,
        ci_low=lo, ci_high=hi, ci_level=ci_level,
        settings={"episodes": n, "max_steps": limit, "deterministic": True, "batch": n,
                  "runtime": getattr(predictor, "runtime", None), "threads": getattr(predictor, "threads", None)},
        machine=machine_info(), versions=library_versions())


def eval_seeds(n: int, base: int | None = None) -> list[int]:
    """The fixed evaluation seeds: ``base .. base+n-1`` (disjoint from training seeds)."""
    return list(range(EVAL_SEED_BASE if base is None else base, (EVAL_SEED_BASE if base is None else base) + n))
