"""The compression methods rlbench ships, one module each in this package; importing it registers them.

Every module of this package is a method module: it declares its methods at module level
(:func:`rlbench.compress.registry.register`) and is imported here, so adding a method is adding its
module. :data:`METHODS` lists them in the grid's order (:attr:`GridVariants.order`), whatever the
order of their modules' imports.
Code the methods share lives beside this package (:mod:`rlbench.compress.calibration`,
:mod:`rlbench.compress.finetune`, ...), not in it.
"""

from __future__ import annotations

import importlib
import pkgutil

from rlbench.compress.registry import METHODS, MethodInfo
from rlbench.core.errors import UnknownNameError

#: The method modules, by name: every module of this package whose name does not start with ``_``.
MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))
for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def get_method(name: str) -> MethodInfo:
    """The registered method, or :class:`UnknownNameError` listing the valid ones."""
    if isinstance(name, str) and name.lower() in METHODS:
        return METHODS[name.lower()]
    raise UnknownNameError(f"unknown compression method {name!r}; valid methods: {', '.join(METHODS)}")


def shipped_methods() -> tuple[str, ...]:
    """The methods whose grid artefacts are shipped in ``baselines/artefacts/``."""
    return tuple(name for name, info in METHODS.items() if info.shipped)


def grid_methods() -> tuple[MethodInfo, ...]:
    """The methods in the benchmark grid, in its order (:data:`METHODS`' order)."""
    return tuple(info for info in METHODS.values() if info.grid is not None)


__all__ = ["METHODS", "MODULES", "get_method", "grid_methods", "shipped_methods"]
