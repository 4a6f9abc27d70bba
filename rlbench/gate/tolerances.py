"""The tolerances every gate checks with: ``baselines/tolerances.toml``, parsed and range-checked.

A tolerance file is edited by hand, so :meth:`Tolerances.load` names the file, the section and
the key of a value out of range, with the repair.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from rlbench.core import io
from rlbench.core.errors import BaselineError
from rlbench.gate.ratios import RatioKind


@dataclass(frozen=True)
class Interval:
    """The values a tolerance may take, shown in its error as ``(0, 1)``, ``[0, inf)``..."""

    lo: float
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.lo if self.lo_open else x >= self.lo
        below = x < self.hi if self.hi_open else x <= self.hi
        return above and below

    def __str__(self) -> str:
        def num(v):
            return "inf" if v == math.inf else f"{v:g}"

        close = ")" if self.hi_open or self.hi == math.inf else "]"
        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{close}"


def _tol(default, interval: Interval = Interval(0)):
    return field(default=default, metadata={"interval": interval})


FRACTION = Interval(0, 1)
PROBABILITY = Interval(0, 1, lo_open=True, hi_open=True)


@dataclass(frozen=True)
class ReturnTolerance:
    rel_drop: float = _tol(0.10, FRACTION)
    """A mean return more than this fraction below the stored mean (of its magnitude) may fail..."""
    alpha: float = _tol(0.001, PROBABILITY)
    """...and fails only if a two-sided Mann-Whitney U test also resolves the difference at this level."""
    abs_floor: float = _tol(1.0)
    """Differences smaller than this many return units never fail (near-zero baselines)."""


@dataclass(frozen=True)
class LatencyTolerance:
    ratio_rel: float = _tol(0.25)
    """A stored latency ratio within one runtime (``variant/fp32``, ``variant-onnx/onnx-fp32``) may
    grow by this fraction before the cell fails."""
    cross_rel: float = _tol(1.0)
    """A stored ratio across runtimes (``*/numpy-ref``: a runtime against the NumPy reference) may
    grow by this fraction before the cell fails on its own. Such a ratio drifts with the VM's
    phases far more than a ratio within one runtime, so a runtime is judged by ``runtime_rel``."""
    ci_must_exclude: bool = True
    """Fail only if the bootstrap CI of the new ratio lies entirely above the allowed ratio."""
    runtime_rel: float = _tol(0.08)
    """A runtime yardstick (fp32 in torch or ONNX Runtime over the NumPy reference), as the median
    over every cell of the run relative to its pair's stored figure, may grow by this fraction."""
    runtime_min_cells: int = _tol(6, Interval(1))
    """The run-level yardstick check needs at least this many cells (a median of none is no verdict)."""
    method_rel: float = _tol(0.08)
    """A compression method's ``variant/fp32``, as the median over the run's cells of that method
    relative to each cell's stored figure, may grow by this fraction."""

    def rel_for(self, key: str) -> float:
        """The per-cell tolerance of latency ratio ``key``."""
        return self.cross_rel if is_cross_runtime(key) else self.ratio_rel


def is_cross_runtime(key: str) -> bool:
    """A latency ratio of one runtime against the NumPy reference (:attr:`RatioKind.cross_runtime`);
    a key that is no :class:`RatioKind` is held to the tight bar."""
    try:
        return RatioKind(key).cross_runtime
    except ValueError:
        return False


@dataclass(frozen=True)
class MemoryTolerance:
    bytes_exact: bool = True
    """Model bytes on disk are deterministic: any change fails."""
    rss_rel: float = _tol(0.20)
    """An RSS delta may grow by this fraction of its stored figure..."""
    rss_noise_k: float = _tol(2.0)
    """...and by at least this many times the machine's measured RSS noise (``rss_noise`` in
    ``machines/<id>.json``)..."""
    rss_abs_mib: float = _tol(2.0)
    """...or, on a machine with no measured noise, by at least this many MiB."""


@dataclass(frozen=True)
class EnergyTolerance:
    rel: float = _tol(0.25)


@dataclass(frozen=True)
class Tolerances:
    returns: ReturnTolerance = ReturnTolerance()
    latency: LatencyTolerance = LatencyTolerance()
    memory: MemoryTolerance = MemoryTolerance()
    energy: EnergyTolerance = EnergyTolerance()

    @classmethod
    def load(cls, path: Path) -> Tolerances:
        """Parse and check ``path`` (absent: the defaults); an error names the file, section and key."""
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{path} is not valid TOML ({exc}); {_tolerance_fix(path)}") from None
        sections = {f.name for f in fields(cls)}
        if set(raw) - sections:
            raise BaselineError(f"{path}: unknown section(s) {sorted(set(raw) - sections)}; valid: {sorted(sections)}; "
                                f"{_tolerance_fix(path)}")
        parts = {}
        for f in fields(cls):
            sub = raw.get(f.name, {})
            if not isinstance(sub, dict):
                raise BaselineError(f"{path}: {f.name} must be a table ([{f.name}] with keys), got {sub!r}; "
                                    f"{_tolerance_fix(path)}")
            typ = type(getattr(cls(), f.name))
            spec = {g.name: g for g in fields(typ)}
            unknown = set(sub) - set(spec)
            if unknown:
                raise BaselineError(f"{path}: unknown key(s) {sorted(unknown)} in [{f.name}]; valid: {sorted(spec)}; "
                                    f"{_tolerance_fix(path)}")
            for key, value in sub.items():
                _check_tolerance(path, f.name, key, value, spec[key])
            parts[f.name] = typ(**sub)
        return cls(**parts)


def _tolerance_fix(path: Path) -> str:
    """A tolerance file is edited by hand: fix it there, restore it, or (absent) the defaults apply."""
    state = io.git_state(path)
    if state in ("changed", "unchanged"):
        return f"fix it there, or restore it with `git checkout -- {path}`"
    if state == "untracked":
        return f"fix it there, or delete it to use the defaults (`rm {path}`)"
    return f"fix it there, restore it with `git checkout -- {path}`, or delete it to use the defaults"


def _check_tolerance(path: Path, section: str, key: str, value, spec) -> None:
    """A tolerance has its default's type and lies in its interval; else one line naming file, section and key."""
    default = spec.default
    where = f"{path}: [{section}] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise BaselineError(f"{where} must be true or false (default {str(default).lower()}), got {value!r}; "
                                f"{_tolerance_fix(path)}")
        return
    interval = spec.metadata.get("interval", Interval(0))  # a tolerance without its own range: >= 0
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(default, int):
        ok = isinstance(value, int)
    if not ok or not math.isfinite(value) or value not in interval:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise BaselineError(f"{where} must be {kind} in {interval} (default {default!r}), got {value!r}; "
                            f"{_tolerance_fix(path)}")
