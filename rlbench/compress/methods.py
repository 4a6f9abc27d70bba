"""The compression methods rlbench ships: importing this module registers every one of them.

Each module below declares its own methods (:func:`rlbench.compress.registry.register`); this is
the one list of them. They are imported in the order their methods are listed (``rlbench compress
--help``, error messages); the grid orders its variants by :attr:`GridVariants.order` instead.
"""

from __future__ import annotations

import rlbench.compress.quantize  # noqa: F401  ptdq, int8pc, ptsq
import rlbench.compress.prune  # noqa: F401  l1, l2
import rlbench.compress.fp16  # noqa: F401
import rlbench.compress.lowrank  # noqa: F401
import rlbench.compress.int4  # noqa: F401
import rlbench.compress.qat  # noqa: F401
import rlbench.compress.gmp  # noqa: F401
from rlbench.compress.registry import METHODS, MethodInfo
from rlbench.core.errors import UnknownNameError


def get_method(name: str) -> MethodInfo:
    """The registered method, or :class:`UnknownNameError` listing the valid ones."""
    if isinstance(name, str) and name.lower() in METHODS:
        return METHODS[name.lower()]
    raise UnknownNameError(f"unknown compression method {name!r}; valid methods: {', '.join(METHODS)}")


def shipped_methods() -> tuple[str, ...]:
    """The methods whose grid artefacts are shipped in ``baselines/artefacts/``."""
    return tuple(name for name, info in METHODS.items() if info.shipped)


def grid_methods() -> tuple[MethodInfo, ...]:
    """The methods in the benchmark grid, in its order (:attr:`GridVariants.order`, then registration)."""
    found = [info for info in METHODS.values() if info.grid is not None]
    return tuple(sorted(found, key=lambda info: info.grid.order))


__all__ = ["METHODS", "get_method", "grid_methods", "shipped_methods"]
