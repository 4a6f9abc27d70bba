"""Stored baselines and the tolerances they are checked with.

* ``baselines/figures.json``: machine-independent figures per cell (per-episode returns on
  fixed seeds, bytes, parameter counts).
* ``baselines/int8-kernels/<class>.json``: the returns of int8 ONNX Runtime cells on machines
  whose int8 kernel class is not ``exact`` (see :mod:`rlbench.measure.int8kernel`): there the
  same int8 file computes different actions, so its returns are stored per class. The returns in
  ``figures.json`` are those of exact kernels (VNNI x86, ARM).
* ``baselines/machines/<machine-id>.json``: machine-dependent figures per cell (latency ratios
  and absolute latencies, RSS, energy).
* ``baselines/tolerances.toml``: every tolerance, parsed into :class:`Tolerances`.

Writes touch only the cells given and replace the file atomically; an existing figure is
replaced only through :meth:`BaselineStore.update` (``--rlbench-update-baselines``), never as a
side effect. A corrupt file raises :class:`BaselineError` naming it.
"""

from __future__ import annotations

import copy
import fcntl
import json
import math
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from rlbench.errors import BaselineError
from rlbench.io import atomic_write_json

SCHEMA = 1
UPDATE_HINT = "pytest bench --rlbench-update-baselines -k {cell}"
RETURN_KEYS = ("returns", "lengths", "return_mean", "return_ci")
IDENTITY_KEYS = ("seeds", "files", "calibration")


@dataclass(frozen=True)
class ReturnTolerance:
    rel_drop: float = 0.10
    """A mean return more than this fraction below the stored mean (of its magnitude) may fail..."""
    alpha: float = 0.001
    """...and fails only if a two-sided Mann-Whitney U test also resolves the difference at this level."""
    abs_floor: float = 1.0
    """Differences smaller than this many return units never fail (near-zero baselines)."""


@dataclass(frozen=True)
class LatencyTolerance:
    ratio_rel: float = 0.25
    """A stored latency ratio within one runtime (``variant/fp32``, ``variant-onnx/onnx-fp32``) may
    grow by this fraction before the cell fails."""
    cross_rel: float = 1.0
    """A stored ratio across runtimes (``*/numpy-ref``: a runtime against the NumPy reference) may
    grow by this fraction before the cell fails on its own. Such a ratio drifts with the VM's
    phases far more than a ratio within one runtime, so a runtime is judged by ``runtime_rel``."""
    ci_must_exclude: bool = True
    """Fail only if the bootstrap CI of the new ratio lies entirely above the allowed ratio."""
    runtime_rel: float = 0.08
    """A runtime yardstick (fp32 in torch or ONNX Runtime over the NumPy reference), as the median
    over every cell of the run relative to its pair's stored figure, may grow by this fraction."""
    runtime_min_cells: int = 6
    """The run-level yardstick check needs at least this many cells."""
    method_rel: float = 0.08
    """A compression method's ``variant/fp32``, as the median over the run's cells of that method
    relative to each cell's stored figure, may grow by this fraction."""

    def rel_for(self, key: str) -> float:
        """The per-cell tolerance of latency ratio ``key``."""
        return self.cross_rel if is_cross_runtime(key) else self.ratio_rel


def is_cross_runtime(key: str) -> bool:
    """A latency ratio of one runtime against the NumPy reference, which no runtime under test touches."""
    return key.endswith("/numpy-ref")


@dataclass(frozen=True)
class MemoryTolerance:
    bytes_exact: bool = True
    """Model bytes on disk are deterministic: any change fails."""
    rss_rel: float = 0.20
    """An RSS delta may grow by this fraction of its stored figure..."""
    rss_noise_k: float = 2.0
    """...and by at least this many times the machine's measured RSS noise (``rss_noise`` in
    ``machines/<id>.json``)..."""
    rss_abs_mib: float = 2.0
    """...or, on a machine with no measured noise, by at least this many MiB."""


@dataclass(frozen=True)
class EnergyTolerance:
    rel: float = 0.25


@dataclass(frozen=True)
class Tolerances:
    returns: ReturnTolerance = ReturnTolerance()
    latency: LatencyTolerance = LatencyTolerance()
    memory: MemoryTolerance = MemoryTolerance()
    energy: EnergyTolerance = EnergyTolerance()

    @classmethod
    def load(cls, path: Path) -> Tolerances:
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{path} is not valid TOML: {exc}") from exc
        sections = {f.name for f in fields(cls)}
        if set(raw) - sections:
            raise BaselineError(f"{path}: unknown section(s) {sorted(set(raw) - sections)}; valid: {sorted(sections)}")
        parts = {}
        for f in fields(cls):
            sub = raw.get(f.name, {})
            if not isinstance(sub, dict):
                raise BaselineError(f"{path}: {f.name} must be a table ([{f.name}] with keys), got {sub!r}")
            default = getattr(cls(), f.name)
            typ = type(default)
            known = {g.name for g in fields(typ)}
            unknown = set(sub) - known
            if unknown:
                raise BaselineError(f"{path}: unknown key(s) {sorted(unknown)} in [{f.name}]; valid: {sorted(known)}")
            for key, value in sub.items():
                _check_tolerance(path, f"{f.name}.{key}", value, getattr(default, key))
            parts[f.name] = typ(**sub)
        return cls(**parts)


def _check_tolerance(path: Path, name: str, value, default) -> None:
    """A tolerance has its default's type and is a finite number >= 0; else an error naming file and key."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise BaselineError(f"{path}: {name} must be true or false, got {value!r}")
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(default, int):
        ok = isinstance(value, int)
    if not ok or not math.isfinite(value) or value < 0:
        kind = "an integer" if isinstance(default, int) else "a number"
        raise BaselineError(f"{path}: {name} must be {kind} >= 0 (default {default!r}), got {value!r}")


_PARSED: dict[Path, tuple[tuple, dict]] = {}


def _read_json(path: Path, fresh: bool = False) -> dict:
    """A baseline file, parsed and checked; a missing file reads as empty.

    Unless ``fresh``, the parse is kept per process and reused while the file's inode, size and
    mtime stay the same (an update replaces the file, so any write shows): ``figures.json`` of
    the full grid is 2.5 MB, about 46 ms a parse, and a cell reads it several times. The shared
    result must not be mutated; an update reads ``fresh`` and edits its own copy.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return {"schema": SCHEMA, "cells": {}}
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _PARSED.get(path)
    if not fresh and hit is not None and hit[0] == key:
        return hit[1]
    data = _parse_json(path)
    if not fresh:
        _PARSED[path] = (key, data)
    return data


def _parse_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"schema": SCHEMA, "cells": {}}
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path} is corrupt ({exc}); restore it with `git checkout -- {path}` "
                            f"or regenerate it with --rlbench-update-baselines") from exc
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
        raise BaselineError(f"{path} is not an rlbench baseline file (no 'cells' object); restore it with "
                            f"`git checkout -- {path}`")
    if data.get("schema") != SCHEMA:
        raise BaselineError(f"{path} has schema {data.get('schema')!r}, this rlbench reads {SCHEMA}")
    for cell, value in data["cells"].items():
        if not isinstance(value, dict):
            raise BaselineError(f"{path}: cell {cell!r} is not an object")
    return data


@contextmanager
def _locked(path: Path):
    """An advisory lock beside the file, so xdist workers or parallel runs update one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class BaselineStore:
    """Read and update the stored figures of cells."""

    def __init__(self, root: Path, machine_id: str, int8_kernel: str = "exact"):
        self.root = Path(root)
        self.machine_id = machine_id
        self.int8_kernel = int8_kernel

    @property
    def figures_path(self) -> Path:
        return self.root / "figures.json"

    @property
    def kernel_path(self) -> Path | None:
        """Where this machine's int8 kernel class keeps its returns (None: exact, in figures.json)."""
        return None if self.int8_kernel == "exact" else self.root / "int8-kernels" / f"{self.int8_kernel}.json"

    @property
    def machine_path(self) -> Path:
        return self.root / "machines" / f"{self.machine_id}.json"

    def tolerances(self) -> Tolerances:
        return Tolerances.load(self.root / "tolerances.toml")

    def figures(self, cell: str) -> dict | None:
        return copy.deepcopy(_read_json(self.figures_path)["cells"].get(cell))

    def machine_cells(self) -> dict[str, dict]:
        """This machine's cells (shared with the parse cache: read, do not mutate)."""
        return _read_json(self.machine_path)["cells"]

    def machine_rss_noise(self) -> dict[str, float] | None:
        """This machine's measured RSS noise per RSS key (bytes), or None where none is stored."""
        noise = _read_json(self.machine_path).get("rss_noise")
        return None if noise is None else {k: float(v) for k, v in noise.get("bytes", {}).items()}

    def record_rss_noise(self, noise: dict) -> None:
        """Store this machine's measured RSS noise (:mod:`rlbench.measure.rss_noise`), atomically."""
        _check_finite(noise, self.machine_path)
        with _locked(self.machine_path):
            data = _read_json(self.machine_path, fresh=True)
            data.update(schema=SCHEMA, machine_id=self.machine_id, rss_noise=noise)
            atomic_write_json(self.machine_path, data)

    def machine_figures(self, cell: str) -> dict | None:
        return copy.deepcopy(self.machine_cells().get(cell))

    def require(self, cell: str, int8: bool = False, returns: bool = True) -> dict:
        """The stored figures of a cell; ``int8``: its returns are those of this machine's int8 kernel class.

        ``returns=False``: the cell's other figures, whether or not returns for this machine's
        kernels are stored (a machine recording writes them).
        """
        fig = self.figures(cell)
        if fig is None:
            raise BaselineError(f"{cell}: no stored baseline in {self.figures_path}; record one with: "
                                + UPDATE_HINT.format(cell=cell))
        if not returns:
            return fig
        if int8 and self.kernel_path is not None:
            own = copy.deepcopy(_read_json(self.kernel_path)["cells"].get(cell))
            if own is None:
                raise BaselineError(f"{cell}: this machine's onnxruntime int8 kernels are {self.int8_kernel!r} (not "
                                    f"exact), and {self.kernel_path} holds no returns of this cell for them; record "
                                    "them on this machine with: " + UPDATE_HINT.format(cell=cell))
            return {**fig, **own}
        if "returns" not in fig:
            raise BaselineError(f"{cell}: {self.figures_path} holds no returns of exact int8 kernels for this cell "
                                "(it was recorded only on machines whose kernels saturate); record them on a machine "
                                "with VNNI or on ARM with: " + UPDATE_HINT.format(cell=cell))
        return fig

    def update(self, figures: dict[str, dict], machine: dict[str, dict], machine_info: dict | None = None,
               machine_only: bool = False) -> list[str]:
        """Write the given cells (and only them), each file atomically. Returns the cells written.

        On a machine whose int8 kernels are not exact, the returns of int8 ONNX Runtime cells go
        to :attr:`kernel_path` with the identity of the artefact that earned them; ``figures.json``
        keeps the exact kernels' figures of such a cell untouched, and gets the rest of its figures
        only if it has none. ``machine_only``: write nothing into ``figures.json``.
        """
        from rlbench.measure.int8kernel import uses_int8_kernels

        figures, kernel, merge = dict(figures), {}, set()
        if self.kernel_path is not None:
            for cell, fig in figures.items():
                if uses_int8_kernels(fig):
                    # the returns, and what produced them: a PTSQ artefact calibrates on this
                    # machine's rollouts, which differ in the last bits from another CPU's
                    kernel[cell] = {k: fig[k] for k in (*RETURN_KEYS, *IDENTITY_KEYS) if k in fig}
                    figures[cell] = {k: v for k, v in fig.items() if k not in RETURN_KEYS}
                    merge.add(cell)
        if machine_only:
            figures = {}
        written = []
        payloads = ((self.figures_path, figures), (self.kernel_path, kernel), (self.machine_path, machine))
        for path, new in payloads:  # every file checked before any is written: never half an update
            if new:
                _check_finite(new, path)
        for path, new in payloads:
            if not new:
                continue
            with _locked(path):
                data = _read_json(path, fresh=True)
                data["schema"] = SCHEMA
                if path == self.machine_path:
                    data["machine_id"] = self.machine_id
                    if machine_info:
                        data["machine"] = machine_info
                elif path == self.kernel_path:
                    data["int8_kernel"] = self.int8_kernel
                for cell, value in new.items():
                    # cell and energy tests add different keys of one machine cell
                    old = data["cells"].get(cell, {})
                    if path == self.machine_path:
                        data["cells"][cell] = {**old, **value}
                    elif path == self.figures_path and cell in merge and "returns" in old:
                        data["cells"][cell] = {**value, **old}  # the exact kernels' figures stand
                    else:
                        data["cells"][cell] = value
                data["cells"] = dict(sorted(data["cells"].items()))
                atomic_write_json(path, data)
            written += list(new)
        return sorted(set(written))


def _check_finite(obj, path: Path, where: str = "") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise BaselineError(f"refusing to write non-finite figure {obj} at {where} into {path}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, path, f"{where}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, path, f"{where}[{i}]")
