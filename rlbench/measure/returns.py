"""Return: deterministic episodes on fixed seeds, batched across a vector of environments.

All episodes of one evaluation step together: one batched ``predict`` per environment step,
so evaluation costs little more than stepping MuJoCo. The batch keeps a constant shape (a
finished episode keeps feeding its last observation and its action is ignored), so the
inference kernels, and therefore the returns, are the same run after run.

What the rollout sees beyond the returns is counted by observers, each shown every step's
observations, actions and the episodes still running:

* with a ``reference`` predictor (a discrete policy's fp32 original), every state an episode visits
  is also given to the reference, and the record counts the states where the two pick different
  actions (:class:`ArgmaxFlips`): what compression did to the greedy choice, on the states the
  compressed policy itself reaches;
* with ``saturation``, the record counts the action components at a bound of a continuous action
  space (:class:`ActionSaturation`): a policy whose actions sit at their bounds whatever its inputs
  returns the same figure whatever compression does to its weights, so no gate can see a fault in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

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
    action_saturation: ActionSaturation | None = None
    """With ``saturation``: the action components at a bound over every step of every episode;
    None otherwise, and then absent from the JSON."""

    def to_json(self) -> dict:
        d = asdict(self)
        d["seeds"], d["returns"], d["lengths"] = list(self.seeds), list(self.returns), list(self.lengths)
        for name in ("argmax_flip", "action_saturation"):
            part = getattr(self, name)
            if part is None:
                del d[name]
            else:
                d[name] = part.to_json()
        d["kind"] = "return"
        return d

    @classmethod
    def from_json(cls, d: dict) -> ReturnRecord:
        d = {k: v for k, v in d.items() if k != "kind"}
        for k in ("seeds", "returns", "lengths"):
            d[k] = tuple(d[k])
        if d.get("argmax_flip") is not None:
            d["argmax_flip"] = ArgmaxFlips.from_json(d["argmax_flip"])
        if d.get("action_saturation") is not None:
            d["action_saturation"] = ActionSaturation.from_json(d["action_saturation"])
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


#: A component within this fraction of its action range from a bound counts as at the bound: a tanh
#: squashed action reaches it from a pre-activation of about 3.8, where its gradient is 0.2% of its
#: value at 0 and a change of the weights barely moves it.
AT_BOUND = 1e-3


@dataclass(frozen=True)
class ActionSaturation:
    """A continuous-action policy's action components over the states of its own rollouts: how many
    components, and how many sat at a bound of the action space (within :data:`AT_BOUND` of its range)."""

    components: int
    at_bound: int

    @property
    def fraction(self) -> float:
        return self.at_bound / self.components if self.components else 0.0

    def to_json(self) -> dict:
        return {"components": self.components, "at_bound": self.at_bound, "fraction": self.fraction}

    @classmethod
    def from_json(cls, d) -> ActionSaturation:
        return cls(int(d["components"]), int(d["at_bound"]))


def at_bound(actions: np.ndarray, low: np.ndarray, high: np.ndarray, active: np.ndarray | None = None) -> tuple[int, int]:
    """(components, at_bound): the action components of the ``active`` rows (default all), and how
    many of them lie within :data:`AT_BOUND` of the range from ``low`` or ``high``."""
    a = np.asarray(actions, dtype=np.float64)
    a = a.reshape(len(a), -1)
    if active is not None:
        a = a[np.asarray(active, dtype=bool)]
    low, high = np.asarray(low, dtype=np.float64).reshape(-1), np.asarray(high, dtype=np.float64).reshape(-1)
    tol = AT_BOUND * (high - low)
    return int(a.size), int(np.count_nonzero((a <= low + tol) | (a >= high - tol)))


class _Tally:
    """Sums a per-step ``(total, hits)`` count over a rollout into a ``record(total, hits)``:
    :func:`argmax_flip` into :class:`ArgmaxFlips`, :func:`at_bound` into :class:`ActionSaturation`."""

    def __init__(self, count, record) -> None:
        self.count, self.record, self.total, self.hits = count, record, 0, 0

    def observe(self, obs: np.ndarray, actions: np.ndarray, active: np.ndarray) -> None:
        total, hits = self.count(obs, actions, active)
        self.total += total
        self.hits += hits

    def result(self):
        return self.record(self.total, self.hits)


def argmax_flip(actions: np.ndarray, reference: np.ndarray, active: np.ndarray | None = None) -> tuple[int, int]:
    """(states, flips): how many states count (``active``, default all) and on how many of them the
    discrete ``actions`` differ from the ``reference`` policy's on the same states."""
    a, r = np.asarray(actions).reshape(len(actions)), np.asarray(reference).reshape(len(reference))
    mask = np.ones(len(a), dtype=bool) if active is None else np.asarray(active, dtype=bool)
    return int(mask.sum()), int(np.count_nonzero(a[mask] != r[mask]))


def evaluate_returns(predictor, env_id: str, seeds: Sequence[int], *, max_steps: int | None = None,
                     label: str | None = None, ci_level: float = 0.95, lock=None,
                     chunk: int = 25, reference=None, saturation: bool = False) -> ReturnRecord:
    """Run one deterministic episode per seed and keep every return and length.

    ``label`` names the cell in errors: a NaN or infinite action or reward raises
    :class:`MeasurementError` instead of becoming a number in a table. ``lock`` (a
    :class:`~rlbench.measure.quiet.QuietLock`) is held shared for every ``chunk`` steps, so a
    latency measurement elsewhere can pause this rollout. ``reference``: a predictor of discrete
    actions whose choices on the same states are compared with ``predictor``'s (the record's
    ``argmax_flip``); it never steers the episodes. ``saturation``: count the action components at
    a bound of the environment's (continuous) action space (the record's ``action_saturation``).
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
        observers = {}
        if reference is not None:
            observers["argmax_flip"] = _Tally(lambda o, a, act: argmax_flip(a, reference.predict(o), act), ArgmaxFlips)
        if saturation:
            space = envs[0].action_space
            if not hasattr(space, "low"):
                raise ValueError(f"{where}: saturation needs a continuous (Box) action space; {env_id} has {space}")
            observers["action_saturation"] = _Tally(lambda o, a, act: at_bound(a, space.low, space.high, act),
                                                    ActionSaturation)
        totals, lengths = _rollout(predictor, envs, seeds, obs, where, limit, lock, chunk, observers.values())
    rec = _record(predictor, env_id, seeds, totals, lengths, ci_level, limit)
    return replace(rec, **{name: o.result() for name, o in observers.items()})


def _rollout(predictor, envs, seeds, obs, where, limit, lock, chunk, observers=()) -> tuple[np.ndarray, np.ndarray]:
    """Step every episode to its end with one batched ``predict`` per step; returns totals and lengths.
    Each observer sees every step's observations, actions and running episodes before the step."""
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
                for o in observers:
                    o.observe(obs, actions, active)
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
