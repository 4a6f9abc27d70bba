"""The benchmark matrix as data: algorithms x environments x compression variants.

``bench/`` parametrizes from :func:`cells`; ids read like ``SAC-HalfCheetah-v5-l2-0.30``.
Filter with ``-k`` on ids, ``-m smoke``, or the ``--rlbench-algo/--rlbench-env/--rlbench-method``
options.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlbench.core.cellid import match_cell_id
from rlbench.core.errors import UnknownNameError
from rlbench.zoo.registry import ALGOS, ENVS, has_pair, is_discrete

PRUNE_RATIOS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 15))  # 0.05 .. 0.70
LOWRANK_FRACTIONS: tuple[float, ...] = (0.25, 0.50)
GMP_SPARSITIES: tuple[float, ...] = (0.90,)

#: Method name -> name of its single numeric parameter (None: no parameter).
METHOD_PARAM: dict[str, str | None] = {
    "baseline": None, "ptdq": None, "ptsq": None, "int8pc": None, "fp16": None, "int4": None,
    "l1": "ratio", "l2": "ratio", "lowrank": "rank", "qat": None, "gmp": "sparsity",
}


@dataclass(frozen=True)
class Variant:
    method: str
    ratio: float | None = None

    @property
    def id(self) -> str:
        return self.method if self.ratio is None else f"{self.method}-{self.ratio:.2f}"

    def params(self) -> dict:
        key = METHOD_PARAM.get(self.method)
        return {} if key is None or self.ratio is None else {key: self.ratio}


@dataclass(frozen=True)
class Cell:
    algo: str
    env_id: str
    variant: Variant

    @property
    def pair(self) -> str:
        return f"{self.algo}-{self.env_id}"

    @property
    def id(self) -> str:
        return f"{self.pair}-{self.variant.id}"

    @property
    def baseline_id(self) -> str:
        return f"{self.pair}-baseline"


def variants() -> list[Variant]:
    """Every variant the grid runs, in report order."""
    out = [Variant("baseline"), Variant("ptdq"), Variant("ptsq"), Variant("qat"), Variant("int8pc"), Variant("fp16"),
           Variant("int4")]
    out += [Variant(m, r) for m in ("l1", "l2") for r in PRUNE_RATIOS]
    out += [Variant("lowrank", r) for r in LOWRANK_FRACTIONS]
    out += [Variant("gmp", s) for s in GMP_SPARSITIES]
    return out


#: Methods that do not apply to a discrete-action (DQN) pair, with the reason. ``qat`` and ``gmp``
#: fine-tune with an adapter per algorithm (``--signal rl``: SAC, TD3, DDPG, PPO, TRPO) or by distilling
#: the fp32 policy's continuous actions; neither has a DQN form (a DQN student would be fit to Q-values
#: or the greedy action, a different method), so the grid leaves them out rather than run a stand-in.
NOT_FOR_DISCRETE: dict[str, str] = {
    "qat": "fine-tunes with a continuous-action adapter (RL loss or action distillation); none for DQN",
    "gmp": "fine-tunes with a continuous-action adapter (RL loss or action distillation); none for DQN",
}


def inapplicable(algo: str, env_id: str, method: str) -> str | None:
    """Why ``method`` is not a cell of the pair, or None if it is (the grid's applicability rule)."""
    if is_discrete(env_id) and method in NOT_FOR_DISCRETE:
        return NOT_FOR_DISCRETE[method]
    return None


def cells(algos=ALGOS, envs=ENVS, methods=None) -> list[Cell]:
    """The grid's cells: each registered pair (DQN runs only on the discrete tasks, the others only on
    MuJoCo) times each variant that applies to it (:func:`inapplicable`)."""
    return [Cell(a, e, v) for a in algos for e in envs if has_pair(a, e) for v in variants()
            if (methods is None or v.method in methods) and inapplicable(a, e, v.method) is None]



def parse_list(value: str | None, canon) -> list | None:
    """A comma-separated option (``--algo SAC,td3``), each value canonicalised; None when not given."""
    return None if not value else [canon(v.strip()) for v in value.split(",") if v.strip()]


def parse_cell(cell_id: str) -> Cell:
    """``SAC-HalfCheetah-v5-l2-0.30`` -> Cell. Raises naming the id if it does not parse."""
    m = match_cell_id(cell_id)
    if (not m or m["algo"] not in ALGOS or m["env"] not in ENVS or m["method"] not in METHOD_PARAM
            or (m["ratio"] is not None and "." not in m["ratio"]) or not has_pair(m["algo"], m["env"])):
        raise UnknownNameError(f"not a cell id: {cell_id!r} (expected ALGO-ENV-METHOD[-RATIO], e.g. "
                               f"SAC-HalfCheetah-v5-l2-0.30; methods: {', '.join(METHOD_PARAM)})")
    return Cell(m["algo"], m["env"], Variant(m["method"], float(m["ratio"]) if m["ratio"] else None))


#: The CI subset: every method, a few cells each, on the cheapest environment (Hopper) and on
#: the two algorithms whose policies were shipped first. Baselines of all five algorithms.
SMOKE_ENVS = ("Hopper-v5",)
SMOKE_ALGOS = ("PPO", "SAC")
SMOKE_RATIOS = (0.10, 0.50)
#: Discrete-action cells in CI: CartPole's episodes (at most 500 steps of a 4-input model) cost
#: little; its baseline, and ptdq, where int8 rounding may flip an argmax.
SMOKE_DISCRETE = ("DQN-CartPole-v1-baseline", "DQN-CartPole-v1-ptdq")


def is_smoke(cell: Cell) -> bool:
    if is_discrete(cell.env_id):
        return cell.id in SMOKE_DISCRETE
    if cell.env_id not in SMOKE_ENVS:
        return False
    v = cell.variant
    if v.method == "baseline":
        return True
    if cell.algo not in SMOKE_ALGOS:
        return False
    if v.method in ("l1", "l2"):
        return v.ratio in SMOKE_RATIOS
    if v.method == "lowrank":
        return v.ratio == 0.50
    return True  # qat and gmp too: their artefacts are shipped in baselines/artefacts, not fine-tuned in CI
