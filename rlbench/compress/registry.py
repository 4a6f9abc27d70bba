"""What a compression method declares about itself, and the registry the declarations go into.

Each method module declares its methods once, at module level, with :func:`register`: the name,
the parameters and their valid ranges (:class:`Param`), the runtime its artefact is measured in,
the build function, its preparation (calibration rollouts, a training context), the
implementation version and the libraries that go into its cache key, whether its grid
artefacts are shipped, whether it applies to discrete-action policies, and its grid variants
(:class:`GridVariants`). The rest is generated from these declarations: the ``rlbench compress``
flags (:mod:`rlbench.cli.compress`), the grid's variants (:mod:`rlbench.grid.matrix`) and the
cache key (:mod:`rlbench.compress.base`). The :mod:`rlbench.compress.methods` package holds
rlbench's method modules and imports them all; a method defined elsewhere (a test, a user's
script) registers itself the same way.

Why declarations hold functions and method modules keep heavy imports inside them: listing the
methods (``rlbench --help``, importing :mod:`rlbench.compress`) imports every method module, and
must not pay for onnxruntime's quantizer, Torch-Pruning, SB3 or torch.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench.core.errors import CompressionError, UnknownNameError

REQUIRED = object()
RUNTIMES = ("onnxruntime", "torch")
#: The reference paper's tables a method can be a column of: Table 1 (quantization), Tables 2-3 (pruning).
PAPER_TABLES = ("quantization", "pruning")
#: A method name is a cell id's method field (:data:`rlbench.core.cellid.CELL_RE`).
METHOD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# ---------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One method parameter: its type, default and valid values, checked by :meth:`check`."""

    name: str
    kind: str
    """``float``, ``int``, ``bool`` or ``choice``."""
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """The lower bound is excluded: ``(low, high]``."""
    high_open: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    def valid_range(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        if self.high is None:
            return f"an integer >= {self.low:g}" if self.kind == "int" else f"a number >= {self.low:g}"
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} in {lo}{self.low:g}, {self.high:.2f}{hi}" if self.kind == "float" else \
            f"{what} in {lo}{self.low:g}, {self.high:g}{hi}"

    def check(self, method: str, value: Any) -> Any:
        bad = CompressionError(f"{method}: {self.name} must be {self.valid_range()}; got {value!r}")
        if self.kind == "choice":
            if not isinstance(value, str) or value.lower() not in self.choices:
                raise bad
            return value.lower()
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise bad
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad
        if self.kind == "int":
            if not float(value).is_integer():
                raise bad
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad
        return value


# -------------------------------------------------------------------------------------- source
@dataclass(frozen=True)
class Source:
    """What a method is applied to, as its preparation and build see it."""

    module: Any
    """The :class:`~rlbench.zoo.policy.DeployablePolicy` (never modified)."""
    onnx_bytes: bytes
    """Its fp32 ONNX graph."""
    sha256: str
    """The policy's identity in the cache key."""
    env_id: str | None
    """Its environment (rollouts for calibration and fine-tuning), when known."""
    agent_pt: Path | None = None
    """The SB3 agent of a shipped policy (``signal='rl'`` fine-tuning), when it has one."""


#: ``build(policy_module, onnx_model_bytes, params, context) -> {file name: bytes}``; ``context``
#: holds ``obs_dim``, ``act_dim``, what the preparation returned, and a ``summary`` dict to fill.
Build = Callable[[Any, bytes, dict, dict], dict[str, bytes]]
#: ``prepare(info, params, source, calibration_obs) -> (context, key material)``: what the build
#: needs beyond the policy (calibration data, an environment, an agent) and what of it decides
#: the artefact's bytes, for the cache key. It may fill in defaulted ``params`` (``n_calib``).
Prepare = Callable[["MethodInfo", dict, Source, Any], tuple[dict, dict]]


# ---------------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class GridVariants:
    """How a method enters the benchmark grid (:func:`rlbench.grid.matrix.variants`)."""

    order: int
    """Where its variants sit in the grid's order (the order of ``bench/`` and ``rlbench warm``), lowest
    first; rlbench's methods use 10, 20, ..., 100, so a method can be placed between two of them."""
    param: str | None = None
    """The parameter the grid sweeps, whose value is the cell id's ratio (``l2-0.30``); None: one
    variant at the defaults."""
    values: tuple[float, ...] = ()
    smoke: tuple[float, ...] | None = None
    """The values in the smoke tier (CI, ``-m smoke``); None: all of them."""


# -------------------------------------------------------------------------------------- method
@dataclass(frozen=True)
class MethodInfo:
    """A compression method's declaration."""

    name: str
    runtime: str
    """Where the artefact is measured: ``onnxruntime`` or ``torch``."""
    build: Build
    params: tuple[Param, ...] = ()
    doc: str = ""
    version: str = "1"
    """Bumped when the implementation changes the bytes it writes: part of the cache key."""
    libraries: tuple[str, ...] = ()
    """Libraries beyond :data:`rlbench.compress.base.KEY_LIBRARIES` that write this method's bytes: their
    versions join its key."""
    prepare: Prepare | None = None
    """Runs before the cache lookup, so what it returns can go into the key; None: nothing to prepare."""
    calibration: bool = False
    """It takes explicit calibration observations (``calibration_obs=``); its ``prepare`` checks them."""
    shipped: bool = False
    """Its grid artefacts are made once and committed under ``baselines/artefacts/`` (minutes of
    fine-tuning each), and :func:`~rlbench.compress.base.compress` looks there first."""
    not_for_discrete: str | None = None
    """Why it does not apply to a discrete-action (DQN) policy: the grid has no such cells, and
    :func:`~rlbench.compress.base.compress` refuses one with this reason; None: it applies."""
    grid: GridVariants | None = None
    """Its variants in the benchmark grid; None: it is not in the grid."""
    paper: str | None = None
    """The paper's table it is a column of (:data:`PAPER_TABLES`), in grid order, so the report sets its
    figures beside the paper's; None: the paper has no figure for it."""

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaulted, type-normalised parameters; :class:`CompressionError` naming the valid range."""
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(f"{p.name} ({p.valid_range()})" for p in self.params) or "none"
            raise CompressionError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                                   f"valid parameters: {valid}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params and params[p.name] is not None:
                out[p.name] = p.check(self.name, params[p.name])
            elif p.default is REQUIRED:
                raise CompressionError(f"{self.name}: parameter {p.name} is required; it must be {p.valid_range()}")
            elif p.default is not None:
                out[p.name] = p.default
        return out

    def grid_params(self, value: float | None) -> dict[str, Any]:
        """The parameters of its grid variant with ``value`` of the swept parameter (None: the defaults)."""
        if self.grid is None or self.grid.param is None or value is None:
            return {}
        return {self.grid.param: value}


# ------------------------------------------------------------------------------------ registry
#: Every registered method by name, in the grid's order (:attr:`GridVariants.order`; methods without grid
#: variants after them, in registration order): the order of ``rlbench compress --help``, of error
#: messages and of the grid's cells.
METHODS: dict[str, MethodInfo] = {}


def _listing_order(info: MethodInfo) -> float:
    return info.grid.order if info.grid is not None else math.inf


def register(info: MethodInfo, *, replace: bool = False) -> MethodInfo:
    """Add ``info`` to :data:`METHODS` after checking the declaration; returns it.

    A name already taken is an error unless ``replace`` (the fault injection of
    :mod:`rlbench.testing.inject` swaps a method's build for a corrupting one).
    """
    name = info.name
    if not METHOD_NAME.match(name) or name == "baseline":
        raise CompressionError(f"method name {name!r}: a lower-case letter, then lower-case letters, digits or '_' "
                               "(what a cell id's method field reads), and not 'baseline' (the grid's fp32 variant)")
    if name in METHODS and not replace:
        raise CompressionError(f"compression method {name!r} is already registered")
    if info.runtime not in RUNTIMES:
        raise CompressionError(f"{name}: runtime must be one of {', '.join(RUNTIMES)}; got {info.runtime!r}")
    names = [p.name for p in info.params]
    if len(set(names)) != len(names):
        raise CompressionError(f"{name}: parameter names repeat ({', '.join(names)})")
    if info.calibration and info.prepare is None:
        raise CompressionError(f"{name}: a method taking calibration data needs a prepare function to check it")
    if info.paper is not None and (info.paper not in PAPER_TABLES or info.grid is None):
        raise CompressionError(f"{name}: paper must be one of {', '.join(PAPER_TABLES)} and the method in the grid; "
                               f"got {info.paper!r}")
    grid = info.grid
    if grid is not None:
        if grid.param is None and (grid.values or grid.smoke):
            raise CompressionError(f"{name}: grid values need the parameter they set (GridVariants.param)")
        if grid.param is not None:
            if grid.param not in names or not grid.values:
                raise CompressionError(f"{name}: the grid sweeps {grid.param!r}, which needs to be one of its "
                                       f"parameters ({', '.join(names) or 'none'}) with at least one value")
            param = info.params[names.index(grid.param)]
            for v in grid.values:
                param.check(name, v)
            if grid.smoke is not None and not set(grid.smoke) <= set(grid.values):
                raise CompressionError(f"{name}: smoke values {list(grid.smoke)} are not all grid values")
    METHODS[name] = info
    listed = sorted(METHODS.values(), key=_listing_order)  # stable: equal orders keep registration order
    METHODS.clear()
    METHODS.update((m.name, m) for m in listed)
    return info


def unregister(name: str) -> MethodInfo:
    """Remove a registered method (a test's own method, after the test); returns its declaration."""
    try:
        return METHODS.pop(name)
    except KeyError:
        raise UnknownNameError(f"compression method {name!r} is not registered") from None


__all__ = ["Build", "GridVariants", "METHODS", "MethodInfo", "PAPER_TABLES", "Param", "Prepare", "REQUIRED", "RUNTIMES",
           "Source",
           "register", "unregister"]
