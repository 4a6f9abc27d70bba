"""The benchmark matrix as data: algorithms x environments x compression variants.

``bench/`` parametrizes from :func:`cells`; ids read like ``SAC-HalfCheetah-v5-l2-0.30``.
Filter with ``-k`` on ids, ``-m smoke``, or the ``--rlbench-algo/--rlbench-env/--rlbench-method``
options. The variants come from the methods' declarations (:class:`rlbench.compress.GridVariants`):
which methods are in the grid, in what order, the values each sweeps, which apply to
discrete-action pairs, and which are in the smoke tier.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlbench.compress.methods import METHODS, grid_methods
from rlbench.core.cellid import match_cell_id
from rlbench.core.errors import UnknownNameError
from rlbench.zoo.registry import ALGOS, ENVS, has_pair, is_discrete

#: The fp32 policy's variant: every pair's reference, not a compression method.
BASELINE = "baseline"


def method_names() -> tuple[str, ...]:
    """``baseline`` and every method in the grid, in the grid's order."""
    return (BASELINE,) + tuple(info.name for info in grid_methods())


@dataclass(frozen=True)
class Variant:
    method: str
    ratio: float | None = None

    @property
    def id(self) -> str:
        return self.method if self.ratio is None else f"{self.method}-{self.ratio:.2f}"

    def params(self) -> dict:
        """The method's parameters for this variant (the swept one set to ``ratio``)."""
        info = METHODS.get(self.method)
        return {} if info is None else info.grid_params(self.ratio)


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
    """Every variant the grid runs, in report order: the baseline, then each method's in its declared order."""
    out = [Variant(BASELINE)]
    for info in grid_methods():
        grid = info.grid
        out += [Variant(info.name, v) for v in grid.values] if grid.param is not None else [Variant(info.name)]
    return out


def not_for_discrete() -> dict[str, str]:
    """Methods that do not apply to a discrete-action (DQN) pair, with the reason each declares."""
    return {info.name: info.not_for_discrete for info in grid_methods() if info.not_for_discrete}


def inapplicable(algo: str, env_id: str, method: str) -> str | None:
    """Why ``method`` is not a cell of the pair, or None if it is (the grid's applicability rule)."""
    info = METHODS.get(method)
    if is_discrete(env_id) and info is not None and info.not_for_discrete:
        return info.not_for_discrete
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
    names = method_names()
    if (not m or m["algo"] not in ALGOS or m["env"] not in ENVS or m["method"] not in names
            or (m["ratio"] is not None and "." not in m["ratio"]) or not has_pair(m["algo"], m["env"])):
        raise UnknownNameError(f"not a cell id: {cell_id!r} (expected ALGO-ENV-METHOD[-RATIO], e.g. "
                               f"SAC-HalfCheetah-v5-l2-0.30; methods: {', '.join(names)})")
    return Cell(m["algo"], m["env"], Variant(m["method"], float(m["ratio"]) if m["ratio"] else None))


#: The CI subset: every method, a few cells each (the values its declaration puts in the smoke
#: tier), on the cheapest environment (Hopper) and on the two algorithms whose policies were
#: shipped first. Baselines of all five algorithms.
SMOKE_ENVS = ("Hopper-v5",)
SMOKE_ALGOS = ("PPO", "SAC")
#: Discrete-action cells in CI: CartPole's episodes (at most 500 steps of a 4-input model) cost
#: little; its baseline, and ptdq, where int8 rounding may flip an argmax.
SMOKE_DISCRETE = ("DQN-CartPole-v1-baseline", "DQN-CartPole-v1-ptdq")


def is_smoke(cell: Cell) -> bool:
    if is_discrete(cell.env_id):
        return cell.id in SMOKE_DISCRETE
    if cell.env_id not in SMOKE_ENVS:
        return False
    v = cell.variant
    if v.method == BASELINE:
        return True
    if cell.algo not in SMOKE_ALGOS:
        return False
    grid = METHODS[v.method].grid
    # qat and gmp too: their artefacts are shipped in baselines/artefacts, not fine-tuned in CI
    return grid.smoke is None or v.ratio in grid.smoke
