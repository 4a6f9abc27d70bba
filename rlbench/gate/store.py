"""The stored baselines: reading, locking and writing them as one transaction.

* ``baselines/figures.json``: machine-independent figures per cell (per-episode returns on
  fixed seeds, bytes, parameter counts).
* ``baselines/int8-kernels/<class>.json``: the returns of int8 ONNX Runtime cells on machines
  whose int8 kernel class is not ``exact`` (see :mod:`rlbench.measure.int8kernel`): there the
  same int8 file computes different actions, so its returns are stored per class. The returns in
  ``figures.json`` are those of exact kernels (VNNI x86, ARM).
* ``baselines/machines/<machine-id>.json``: machine-dependent figures per cell (latency ratios
  and absolute latencies, RSS, energy).
* ``baselines/findings.json`` and ``baselines/idle.json``: written by :mod:`rlbench.grid.findings` and
  :mod:`rlbench.gate.idle`, within the same update.
* ``baselines/tolerances.toml``: every tolerance (:mod:`rlbench.gate.tolerances`).

An update changes its files as one transaction (:class:`rlbench.core.io.Staging`): every new content is
staged and checked first, then all are renamed into place under a journal, so an interrupted update
is completed or discarded at the next start (:func:`recover`), never left half written. Writes touch
only the cells given; an existing figure is replaced only through an update
(``--rlbench-update-baselines``), never as a side effect. When an update cannot be written, what it
measured is kept as a :class:`Recording` outside the baselines (:func:`save_unsaved`) and can be
applied later (``rlbench baselines apply FILE``). A broken file raises :class:`BaselineError`: one
line naming it and the command that repairs it.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from rlbench.core import io
from rlbench.core.errors import BaselineError
from rlbench.core.paths import home_dir
from rlbench.gate.tolerances import Tolerances
from rlbench.measure.int8kernel import uses_int8_kernels

SCHEMA = 1
UPDATE_HINT = "pytest bench --rlbench-update-baselines -k {cell}"
#: What a cell's rollouts measure, so what depends on a machine's int8 kernels (``argmax_flip``: a
#: discrete cell's share of states whose action its compression changed).
RETURN_KEYS = ("returns", "lengths", "return_mean", "return_ci", "argmax_flip")
IDENTITY_KEYS = ("seeds", "files", "calibration", "policy_sha256")
RECORD_DIRS = ("machines", "int8-kernels")
"""Subdirectories of the baselines that hold stored figures (``policies/`` and ``artefacts/`` do not)."""


# -- reading stored files ------------------------------------------------------------------------------

def _repair(path: Path) -> str:
    """How to repair a broken stored figures file, with the command that writes it again."""
    path = Path(path)
    if path.parent.name == "machines":
        return io.repair_hint(path, "pytest bench --rlbench-record-machine", " on that machine")
    if path.parent.name == "int8-kernels":
        return io.repair_hint(path, "pytest bench --rlbench-record-machine", " on a machine of that int8 kernel class")
    record = {"idle.json": "pytest bench/test_zoo_returns.py -k idle --rlbench-update-baselines",
              "findings.json": "pytest bench/test_findings.py --rlbench-update-baselines"}
    return io.repair_hint(path, record.get(path.name, "pytest bench --rlbench-update-baselines"))


def same_policy(entry: dict, figures: dict | None) -> bool:
    """Whether a machine's or an int8 kernel class's entry of a cell was recorded from the policy of
    the cell's ``figures.json`` entry (an entry or figures without ``policy_sha256`` are taken as such)."""
    sha, ref = entry.get("policy_sha256"), (figures or {}).get("policy_sha256")
    return sha is None or ref is None or sha == ref


_PARSED: dict[Path, tuple[tuple, dict]] = {}


def read_record_file(path: Path, fresh: bool = False) -> dict:
    """A baseline file (its staged copy, inside an update), parsed and checked; a missing file reads as empty.

    Unless ``fresh``, the parse is kept per process and reused while the file's inode, size and
    mtime stay the same (an update replaces the file, so any write shows): ``figures.json`` of
    the full grid is 2.5 MB, about 46 ms a parse, and a cell reads it several times. The shared
    result must not be mutated; an update reads ``fresh`` and edits its own copy.
    """
    source = io.staged_path(path)
    try:
        st = source.stat()
    except FileNotFoundError:
        return {"schema": SCHEMA, "cells": {}}
    except OSError as exc:
        raise BaselineError(f"cannot read {path}: {_os_problem(Path(path), exc)}") from None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _PARSED.get(source)
    if not fresh and hit is not None and hit[0] == key:
        return hit[1]
    data = _parse_json(source, Path(path))
    if not fresh:
        _PARSED[source] = (key, data)
    return data


def _parse_json(source: Path, shown: Path) -> dict:
    """Parse ``source``; errors name ``shown`` (the stored file, not its staged copy) and its repair."""
    def fix() -> str:
        return _repair(shown)

    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        return {"schema": SCHEMA, "cells": {}}
    except OSError as exc:
        raise BaselineError(f"cannot read {shown}: {_os_problem(shown, exc)}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{shown} is corrupt ({exc}); {fix()}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
        raise BaselineError(f"{shown} is not an rlbench baseline file (no 'cells' object); {fix()}")
    if data.get("schema") != SCHEMA:
        raise BaselineError(f"{shown} has schema {data.get('schema')!r}, this rlbench reads {SCHEMA}; {fix()}")
    for cell, value in data["cells"].items():
        if not isinstance(value, dict):
            raise BaselineError(f"{shown}: cell {cell!r} is not an object; {fix()}")
    return data


@contextmanager
def locked(path: Path):
    """An advisory lock beside the file, so xdist workers staging one file do so one at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_record_file(rel: Path) -> bool:
    """Whether ``rel`` (relative to the baselines) is a stored figures file an update may write."""
    parts = Path(rel).parts
    if not parts or Path(rel).suffix != ".json" or any(p.startswith(".") for p in parts):
        return False
    return len(parts) == 1 or (len(parts) == 2 and parts[0] in RECORD_DIRS)


def recover(root: Path) -> list[str]:
    """Complete or discard what an interrupted update left in ``root``; one line per thing done."""
    try:
        return io.recover(Path(root))
    except OSError as exc:
        raise BaselineError(f"{root}: an interrupted update could not be completed ({exc}); fix the cause and run "
                            "`rlbench baselines check` to complete it") from None


# -- what an update run measured ---------------------------------------------------------------------

@dataclass(frozen=True)
class Recording:
    """An update run's figures as they go into the store: everything needed to apply them later."""

    machine_id: str
    int8_kernel: str
    figures: dict = field(default_factory=dict)
    """Machine-independent figures per cell (``figures.json``, or the kernel file for int8 returns)."""
    machine: dict = field(default_factory=dict)
    """This machine's figures per cell (``machines/<id>.json``)."""
    machine_info: dict | None = None
    machine_only: bool = False
    """``--rlbench-record-machine``: nothing goes into ``figures.json``."""
    staged: dict = field(default_factory=dict)
    """Files the run staged besides the cells' (``idle.json``): relative path -> ``{"base": text of
    the file when first staged, or None; "new": the staged content}``, merged into the file as it is
    when applied."""
    schema: int = SCHEMA

    @property
    def cells(self) -> list[str]:
        return sorted({*self.figures, *self.machine})

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> Recording:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise BaselineError(f"{path} does not exist; an unsaved recording is written to "
                                f"{unsaved_dir()} and named in the run's summary") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BaselineError(f"{path} is not an rlbench recording ({exc}); it cannot be applied") from None
        known = {f.name for f in fields(cls)}
        if (not isinstance(raw, dict) or raw.get("schema") != SCHEMA or not {"machine_id", "int8_kernel"} <= set(raw)
                or set(raw) - known or not all(isinstance(raw.get(k, {}), dict) for k in ("figures", "machine", "staged"))):
            raise BaselineError(f"{path} is not an rlbench recording of schema {SCHEMA} (an object with machine_id, "
                                "int8_kernel, figures, machine); it cannot be applied")
        return cls(**raw)


def unsaved_dir() -> Path:
    """Where recordings that could not be written wait: outside the baselines, so a broken baselines
    directory cannot take them with it."""
    return home_dir() / "unsaved"


def save_unsaved(rec: Recording) -> Path:
    """Write ``rec`` to :func:`unsaved_dir` (else the system's temp directory); returns where."""
    import tempfile

    name = f"{time.strftime('%Y%m%d-%H%M%S')}-{rec.machine_id}-{os.getpid()}.json"
    data = io.dump_json(rec.to_json(), allow_nan=True)  # as measured: apply refuses a NaN, saying where
    errors = []
    for d in (unsaved_dir(), Path(tempfile.gettempdir()) / "rlbench-unsaved"):
        try:
            io.atomic_write_bytes(d / name, data)
            return d / name
        except OSError as exc:
            errors.append(f"{d}: {exc.strerror or exc}")
    raise BaselineError(f"could not save the run's figures anywhere ({'; '.join(errors)})")


def _merge3(base, ours, theirs):
    """``theirs`` with the changes from ``base`` to ``ours``, key by key through nested objects (an
    object both sides added is merged as if it had been empty)."""
    if not (isinstance(base, dict) and isinstance(ours, dict) and isinstance(theirs, dict)):
        return copy.deepcopy(ours)
    out = copy.deepcopy(theirs)
    for key in {*base, *ours}:
        if key in ours and key in base and ours[key] == base[key]:
            continue  # not ours to change
        if key not in ours:
            out.pop(key, None)
        elif isinstance(ours[key], dict) and isinstance(out.get(key), dict):
            out[key] = _merge3(base.get(key) if isinstance(base.get(key), dict) else {}, ours[key], out[key])
        else:
            out[key] = copy.deepcopy(ours[key])
    return out


def _json_or_none(text: str | None, where: Path):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BaselineError(f"{where} is corrupt ({exc}); {_repair(where)}") from None


def write_run(store: BaselineStore, rec: Recording, staging: io.Staging,
              stage: Iterable[Callable[[], None]] = (),
              derived: Iterable[Callable[[BaselineStore], list[str]]] = (),
              interrupted: bool = False) -> tuple[list[str], str | None]:
    """End an update run: write ``rec``, the files ``stage`` writes and ``derived``, as one transaction.

    ``stage``: writes of the run's other measured figures (``idle.json``), made into ``staging``
    first, so that they are kept with the cells' figures when the update cannot be written.
    Returns what was written and None; or, when the run was ``interrupted`` or writing failed,
    nothing and one line saying why, where the measured figures were saved (:func:`save_unsaved`)
    and the command that applies them.
    """
    why = "the run was interrupted" if interrupted else None
    try:
        with staging.active():
            for fn in stage:
                fn()
    except BaselineError as exc:  # a stored file broken during the run: nothing is written
        why = why or str(exc)
    rec = replace(rec, staged=store.staged_files(staging))
    head = f"nothing written to {store.root}"
    if why is None:
        try:
            return store.record(rec, staging, derived), None
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - whatever the cause, the figures are kept
            why = str(exc) if isinstance(exc, BaselineError) else f"writing failed ({type(exc).__name__}: {exc})"
            if (store.root / io.JOURNAL).exists():
                head = f"the update of {store.root} stopped while replacing its files"
                why += f"; the next run (or `rlbench baselines check`) completes it from {store.root / io.JOURNAL}"
    what = f"{len(rec.cells)} cell(s)" + (f" and {', '.join(rec.staged)}" if rec.staged else "")
    if not (rec.cells or rec.staged):
        return [], f"{head}: {why}; nothing had been measured"
    try:
        saved = save_unsaved(rec)
    except BaselineError as exc:
        return [], f"{head}: {why}; the figures of {what} measured are lost: {exc}"
    return [], (f"{head}: {why}; the figures of {what} measured are saved in {saved}: apply them with "
                f"`rlbench baselines apply {saved}`" + ("" if interrupted else " once the cause is fixed"))


# -- the store -------------------------------------------------------------------------------------------

class BaselineStore:
    """Read and update the stored figures of cells."""

    def __init__(self, root: Path, machine_id: str, int8_kernel: str = "exact"):
        self.root = Path(root)
        self.machine_id = machine_id
        self.int8_kernel = int8_kernel
        self._current: tuple[dict, dict, dict] | None = None  # machine_cells(): the parses it filtered, and the result

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

    def check(self, every_machine: bool = False) -> None:
        """Read the tolerances and every figures file this machine uses (``every_machine``: all of
        them); raise the first error, one line naming the file and its repair."""
        self.tolerances()
        paths = [self.figures_path, self.machine_path, *([self.kernel_path] if self.kernel_path else [])]
        if every_machine:
            paths += sorted(p for d in RECORD_DIRS for p in (self.root / d).glob("*.json"))
        for path in dict.fromkeys(paths):
            read_record_file(path)

    @classmethod
    def of_stored_machine(cls, root: Path, machine_id: str) -> BaselineStore:
        """The store of a machine with figures in ``machines/``, with that machine's int8 kernel class
        as recorded; :class:`BaselineError` listing the stored machines if it has none."""
        path = Path(root) / "machines" / f"{machine_id}.json"
        if not path.exists():
            known = sorted(p.stem for p in (Path(root) / "machines").glob("*.json"))
            raise BaselineError(f"{path}: no stored figures for machine {machine_id}; stored machines: "
                                f"{', '.join(known) or 'none'} (pick one with --machine, or record a machine's "
                                f"figures on it with: pytest bench -n 8 --rlbench-record-machine)")
        info = read_record_file(path).get("machine")
        kernel = info.get("int8_kernel") if isinstance(info, dict) else None
        return cls(root, machine_id, int8_kernel=str(kernel or "exact"))

    def cells(self) -> list[str]:
        """Every cell with figures in ``figures.json``."""
        return list(read_record_file(self.figures_path)["cells"])

    def machine_info(self) -> dict:
        """The machine facts stored with this machine's figures ({} if none)."""
        info = read_record_file(self.machine_path).get("machine")
        return copy.deepcopy(info) if isinstance(info, dict) else {}

    def figures(self, cell: str) -> dict | None:
        return copy.deepcopy(read_record_file(self.figures_path)["cells"].get(cell))

    def machine_cells(self) -> dict[str, dict]:
        """This machine's cells measured on the policies ``figures.json`` holds figures of: a cell
        recorded from a policy since retrained (another ``policy_sha256``) reads as unrecorded, so its
        latency and RSS go ungated with the recording command rather than judged against another
        policy's. Shared with the parse cache: read, do not mutate."""
        machine = read_record_file(self.machine_path)["cells"]
        figures = read_record_file(self.figures_path)["cells"]
        if self._current is None or self._current[0] is not machine or self._current[1] is not figures:
            self._current = (machine, figures,
                             {c: m for c, m in machine.items() if same_policy(m, figures.get(c))})
        return self._current[2]

    def machine_rss_noise(self) -> dict[str, float] | None:
        """This machine's measured RSS noise per RSS key (bytes), or None where none is stored."""
        noise = read_record_file(self.machine_path).get("rss_noise")
        return None if noise is None else {k: float(v) for k, v in noise.get("bytes", {}).items()}

    def record_rss_noise(self, noise: dict) -> None:
        """Store this machine's measured RSS noise (:mod:`rlbench.grid.rss_noise`), in a
        transaction like an update's (never interleaved with one's commit)."""
        _check_finite(noise, self.machine_path)
        staging = self.begin_update()
        try:
            with io.update_lock(self.root), staging.active():
                data = read_record_file(self.machine_path, fresh=True)
                data.update(schema=SCHEMA, machine_id=self.machine_id, rss_noise=noise)
                io.atomic_write_json(self.machine_path, data)  # staged
                staging.commit()
        finally:
            staging.close()

    def drop_stale(self) -> dict[Path, list[str]]:
        """Remove from every machine's and every int8 kernel class's file the cells recorded from a
        policy other than the one ``figures.json`` holds figures of (a retrained pair's old figures,
        which :meth:`machine_cells` and :meth:`require` already read as unrecorded), in one
        transaction. Returns the cells removed, per file."""
        def stale(data: dict, figures: dict) -> list[str]:
            return [c for c, m in data["cells"].items() if not same_policy(m, figures.get(c))]

        paths = sorted(p for d in RECORD_DIRS for p in (self.root / d).glob("*.json"))
        figures = read_record_file(self.figures_path)["cells"]
        if not any(stale(read_record_file(p), figures) for p in paths):
            return {}
        self._require_writable([self.root, *(p.parent for p in paths)])
        staging, dropped = io.Staging.create(self.root, is_record_file), {}
        try:
            with io.update_lock(self.root), staging.active():
                figures = read_record_file(self.figures_path, fresh=True)["cells"]
                for path in paths:
                    data = read_record_file(path, fresh=True)  # our own copy, edited
                    cells = stale(data, figures)
                    if cells:
                        data["cells"] = {c: v for c, v in data["cells"].items() if c not in cells}
                        io.atomic_write_json(path, data)  # staged
                        dropped[path] = cells
                staging.commit()
        finally:
            staging.close()
        return dropped

    def machine_figures(self, cell: str) -> dict | None:
        return copy.deepcopy(self.machine_cells().get(cell))

    def require(self, cell: str, int8: bool = False, returns: bool = True) -> dict:
        """The stored figures of a cell; ``int8``: its returns are those of this machine's int8 kernel class.

        On a machine whose int8 kernels are not exact, an int8 cell whose returns its kernel class
        has not recorded, or recorded from a policy since retrained, comes without returns (never
        the exact kernels'): its return goes ungated, naming the command that records them
        (``--rlbench-record-machine``), as latency does on a machine without figures.
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
            own = copy.deepcopy(read_record_file(self.kernel_path)["cells"].get(cell))
            if own is None or not same_policy(own, fig):
                return {k: v for k, v in fig.items() if k not in RETURN_KEYS}
            return {**fig, **own}
        if "returns" not in fig:
            raise BaselineError(f"{cell}: {self.figures_path} holds no returns of exact int8 kernels for this cell "
                                "(it was recorded only on machines whose kernels saturate); record them on a machine "
                                "with VNNI or on ARM with: " + UPDATE_HINT.format(cell=cell))
        return fig

    # -- writing ---------------------------------------------------------------------------------------

    def begin_update(self) -> io.Staging:
        """Check that every directory an update of this machine writes can be written, then open
        its staging area. Raises :class:`BaselineError` naming the directory and what to do."""
        self._require_writable([self.root, self.machine_path.parent,
                                *([self.kernel_path.parent] if self.kernel_path else [])])
        return io.Staging.create(self.root, is_record_file)

    def _require_writable(self, dirs: Iterable[Path]) -> None:
        for d in dict.fromkeys(dirs):
            try:
                io.check_writable(d)
            except OSError as exc:
                raise BaselineError(f"cannot record into {self.root}: {_unwritable(d, exc)}") from None

    def update(self, figures: dict[str, dict], machine: dict[str, dict], machine_info: dict | None = None,
               machine_only: bool = False) -> list[str]:
        """Write the given cells (and only them), all files in one transaction. Returns the cells written.

        On a machine whose int8 kernels are not exact, the returns of int8 ONNX Runtime cells go
        to :attr:`kernel_path` with the identity of the artefact that earned them; ``figures.json``
        keeps the exact kernels' figures of such a cell untouched, and gets the rest of its figures
        only if it has none. ``machine_only``: write nothing into ``figures.json``.
        """
        rec = Recording(self.machine_id, self.int8_kernel, figures, machine, machine_info, machine_only)
        return self.record(rec)

    def record(self, rec: Recording, staging: io.Staging | None = None,
               derived: Iterable[Callable[[BaselineStore], list[str]]] = ()) -> list[str]:
        """Write ``rec``, then ``derived`` (e.g. the findings over the updated figures), as one transaction.

        ``staging``: the update run's own, holding what the run staged (``idle.json``; then
        ``rec.staged`` only describes it); else a new one, into which ``rec.staged`` is merged.
        Every payload is checked before anything is staged, and nothing reaches the stored files
        unless all of it does. Returns the cells written and what ``derived`` returned.
        """
        payloads = self._payloads(rec)
        for path, new in payloads:  # every file checked before any is staged: never half an update
            _check_finite(new, path)
        if staging is None:
            if not (payloads or rec.staged or derived):
                return []
            staging, pending = self.begin_update(), rec.staged
        else:  # what the run staged, against the files as they were then
            pending = self.staged_files(staging)
        try:
            self._require_writable([self.root, *(p.parent for p, _ in payloads),
                                    *(self.root / Path(rel).parent for rel in pending)])
            with io.update_lock(self.root), staging.active():
                for rel, entry in pending.items():
                    self._stage_merged(staging, Path(rel), entry["base"], entry["new"])
                written = self._stage_payloads(payloads, rec)
                for fn in derived:
                    written += fn(self)
                # a directory broken since the run began fails here, before the journal, every file as it was
                self._require_writable(self.root / rel.parent for rel in staging.files())
                staging.commit()
        finally:
            staging.close()
        return written

    def staged_files(self, staging: io.Staging) -> dict:
        """What a run staged, as :attr:`Recording.staged` (kept when the update cannot be written)."""
        return {str(rel): {"base": staging.base_text(rel), "new": json.loads((staging.path / rel).read_text())}
                for rel in staging.files()}

    def _stage_merged(self, staging: io.Staging, rel: Path, base_text: str | None, new) -> None:
        """Stage ``new`` for ``rel``, keeping what others wrote into the file since it read ``base_text``."""
        target = self.root / rel
        now_text = target.read_text() if target.exists() else None
        if now_text == base_text and staging.staged(target) is not None:
            return  # staged against the file as it still is
        base, now = _json_or_none(base_text, target), _json_or_none(now_text, target)
        merged = new if base is None and now is None else _merge3(base or {}, new, now or {})
        staging.stage_bytes(target, io.dump_json(merged))

    def _payloads(self, rec: Recording) -> list[tuple[Path, dict]]:
        figures, kernel = dict(rec.figures), {}
        if self.kernel_path is not None:
            for cell, fig in rec.figures.items():
                if uses_int8_kernels(fig):
                    # the returns, and what produced them: a PTSQ artefact calibrates on this
                    # machine's rollouts, which differ in the last bits from another CPU's
                    kernel[cell] = {k: fig[k] for k in (*RETURN_KEYS, *IDENTITY_KEYS) if k in fig}
                    figures[cell] = {k: v for k, v in fig.items() if k not in RETURN_KEYS}
        if rec.machine_only:
            figures = {}
        machine = {}
        for cell, m in rec.machine.items():  # with the policy they were measured on (machine_cells)
            sha = rec.figures.get(cell, {}).get("policy_sha256")
            machine[cell] = {**m, "policy_sha256": sha} if sha else m
        out = [(self.figures_path, figures), (self.machine_path, machine)]
        if self.kernel_path is not None:
            out.append((self.kernel_path, kernel))
        return [(p, new) for p, new in out if new]

    def _stage_payloads(self, payloads: list[tuple[Path, dict]], rec: Recording) -> list[str]:
        merge = {c for p, new in payloads if p == self.kernel_path for c in new}
        written = []
        for path, new in payloads:
            data = read_record_file(path, fresh=True)
            data["schema"] = SCHEMA
            if path == self.machine_path:
                data["machine_id"] = self.machine_id
                if rec.machine_info:
                    data["machine"] = rec.machine_info
            elif path == self.kernel_path:
                data["int8_kernel"] = self.int8_kernel
            for cell, value in new.items():
                old = data["cells"].get(cell, {})
                if path == self.machine_path:  # cell and energy tests add different keys of one machine cell
                    data["cells"][cell] = {**old, **value}
                elif path == self.figures_path and cell in merge and "returns" in old:
                    data["cells"][cell] = {**value, **old}  # the exact kernels' figures stand
                else:
                    data["cells"][cell] = value
            data["cells"] = dict(sorted(data["cells"].items()))
            io.atomic_write_json(path, data)  # staged: the transaction's commit renames it into place
            written += list(new)
        return sorted(set(written))


def _blocker(path: Path) -> Path | None:
    """The file standing where ``path`` or one of its parents should be a directory."""
    return next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)


def _os_problem(path: Path, exc: OSError) -> str:
    """Why a stored file cannot be read, and what to do."""
    if exc.errno == errno.ENOTDIR and (blocker := _blocker(path)) is not None:
        return f"{blocker} is a file where a directory should be; move it away (`mv {blocker} {blocker}.bak`)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied; make it readable (`chmod u+r {path}`, or run as its owner)"
    return f"{exc.strerror or exc}"


def _unwritable(directory: Path, exc: OSError) -> str:
    """One line: which directory cannot be written, why, and what to do."""
    copy_hint = "or record into a writable copy with --rlbench-baselines DIR"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _blocker(directory / "x") or directory
        return (f"{blocker} is a file where a directory should be; move it away (`mv {blocker} {blocker}.bak`) "
                f"{copy_hint}")
    if exc.errno == errno.EROFS:
        return f"{directory} is on a read-only file system; {copy_hint} (e.g. a copy made with `cp -r`)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{directory} is not writable ({exc.strerror}); make it writable (`chmod -R u+w {directory}`, or "
                f"run as its owner) {copy_hint}")
    return f"{directory} cannot be written ({exc.strerror or exc}); fix that {copy_hint}"


def _check_finite(obj, path: Path, where: str = "") -> None:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise BaselineError(f"refusing to write non-finite figure {obj} at {where} into {path}")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_finite(v, path, f"{where}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_finite(v, path, f"{where}[{i}]")
