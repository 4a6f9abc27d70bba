"""The benchmark matrix as data: algorithms x environments x compression variants.

``bench/`` parametrizes from :func:`cells`; ids read like ``SAC-HalfCheetah-v5-l2-0.30``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlbench.registry import ALGOS, ENVS

PRUNE_RATIOS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 15))  # 0.05 .. 0.70


@dataclass(frozen=True)
class Variant:
    method: str
    ratio: float | None = None

    @property
    def id(self) -> str:
        return self.method if self.ratio is None else f"{self.method}-{self.ratio:.2f}"


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
    """Every variant the grid runs, in report order. Methods are added here as they land."""
    return [Variant("baseline")]


def cells(algos=ALGOS, envs=ENVS) -> list[Cell]:
    return [Cell(a, e, v) for a in algos for e in envs for v in variants()]


#: The CI subset: a few cells of every method, on the cheapest environment (Hopper).
SMOKE_ENVS = ("Hopper-v5",)


def is_smoke(cell: Cell) -> bool:
    return cell.env_id in SMOKE_ENVS
