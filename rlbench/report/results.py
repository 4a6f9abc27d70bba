"""Reading the suite's output: a pytest-benchmark JSON file whose entries are rlbench cells.

``pytest bench --benchmark-json OUT.json`` writes one entry per grid cell (see
:mod:`rlbench.plugin.pytest_plugin`): pytest-benchmark's latency ``stats`` plus rlbench's figures under
``extra_info``. :func:`load_results` validates such a file and turns it into immutable
:class:`CellRecord` objects; every report, comparison, merge and export reads through it, so a
bad file fails the same way everywhere, naming the file (and the cell).

A file written by ``rlbench merge`` has the same shape plus a top-level ``rlbench_merge`` key
listing its sources, so it is read by the same code (and by ``pytest-benchmark compare``).

Missing keys stay missing: a baseline cell without ``bytes_total`` has ``bytes_total=None``, never
a number made up from other figures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlbench.core.errors import ResultsError
from rlbench.grid.record import (PRUNE_METHODS, QUANT_METHODS, CellId, CellRecord, Energy, ReturnStat, RunContext,
                                 parse_cell_id, variant_sort_key)

__all__ = ["MERGE_KEY", "PRUNE_METHODS", "QUANT_METHODS", "CellId", "CellRecord", "Energy", "ResultsFile", "ReturnStat",
           "RunContext", "entry_cell", "load_results", "parse_cell_id", "read_results_json", "record_from_entry",
           "variant_sort_key"]

#: Top-level key that ``rlbench merge`` adds (pytest-benchmark ignores unknown top-level keys).
MERGE_KEY = "rlbench_merge"


@dataclass(frozen=True)
class ResultsFile:
    """A loaded results file: its records in report order and its top-level context."""

    path: str
    records: tuple[CellRecord, ...]
    machine_info: Mapping[str, Any]
    commit_info: Mapping[str, Any]
    datetime: str | None
    version: str | None
    merged_from: tuple[Mapping[str, Any], ...] = ()
    """``rlbench_merge.sources`` of a merged file (path, machine_info, datetime, cells), else empty."""

    def by_cell(self) -> dict[str, CellRecord]:
        return {r.id: r for r in self.records}

    def get(self, cell: str) -> CellRecord | None:
        return self.by_cell().get(cell)

    def by_pair(self) -> dict[str, dict[str, CellRecord]]:
        """Pair (:attr:`CellId.pair`, ``SAC-Hopper-v5``) -> variant -> record, both in the file's
        (report) order: the one index the report's tables, summary and plots look a pair's cells up in."""
        out: dict[str, dict[str, CellRecord]] = {}
        for r in self.records:
            out.setdefault(r.cell.pair, {})[r.cell.variant] = r
        return out

    def pairs(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for r in self.records:
            seen.setdefault((r.cell.algo, r.cell.env_id), None)
        return list(seen)

    def machine_ids(self) -> list[str]:
        return sorted({r.context.machine_id for r in self.records if r.context.machine_id})

    def versions(self) -> dict[str, list[str]]:
        """Every library version any cell recorded, per library (one value unless cells differ)."""
        out: dict[str, set[str]] = {}
        for r in self.records:
            for lib, ver in r.context.versions.items():
                out.setdefault(lib, set()).add(str(ver))
        return {k: sorted(v) for k, v in sorted(out.items())}

    def threads(self) -> list[int]:
        return sorted({r.context.threads for r in self.records if r.context.threads is not None})

    def datetimes(self) -> list[str]:
        if self.merged_from:
            return [str(s.get("datetime")) for s in self.merged_from if s.get("datetime")]
        return [self.datetime] if self.datetime else []


# ------------------------------------------------------------------------------------------ reading


def _truncation_state(text: str) -> bool:
    """True if the text ends inside a string or with brackets still open: a cut-off JSON document."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_str or depth > 0


def read_results_json(path: str | Path) -> dict:
    """Read and validate the raw JSON of a results file (shape only; cells are parsed by
    :func:`load_results`). Raises :class:`ResultsError` naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ResultsError(f"{path}: no such results file") from exc
    except IsADirectoryError as exc:
        raise ResultsError(f"{path} is a directory, not a results file") from exc
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path} is not JSON (not UTF-8 text: {exc.reason} at byte {exc.start})") from exc
    if not text.strip():
        raise ResultsError(f"{path} is empty; pytest-benchmark writes --benchmark-json at the end of the session "
                           f"(was the run interrupted?)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip()[:1] in "{[" and _truncation_state(text):
            raise ResultsError(
                f"{path} looks truncated: its JSON stops at line {exc.lineno} column {exc.colno} before the "
                f"document is complete ({exc.msg}); was the run interrupted or the file cut while copying? "
                f"Re-run or re-download it") from exc
        raise ResultsError(f"{path} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    not_ours = (f"{path} is JSON but not an rlbench results file: expected pytest-benchmark's --benchmark-json "
                f"output of `pytest bench` (or `rlbench merge`)")
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{not_ours}; it has no 'benchmarks' list")
    for i, entry in enumerate(data["benchmarks"]):
        if not isinstance(entry, dict):
            raise ResultsError(f"{not_ours}; benchmarks[{i}] is not an object")
        extra = entry.get("extra_info")
        if not isinstance(extra, dict) or not isinstance(extra.get("figures"), dict):
            label = entry.get("param") or entry.get("name") or f"benchmarks[{i}]"
            raise ResultsError(f"{not_ours}; entry {label!r} has no extra_info.figures (written without the "
                               f"rlbench plugin?)")
        if entry_cell(entry) is None:
            label = entry.get("name") or f"benchmarks[{i}]"
            raise ResultsError(f"{path}: entry {label!r} has no cell id (neither 'param' nor params.cell)")
    return data


def entry_cell(entry: dict) -> Any:
    """The cell id of a benchmark entry: ``param``, else ``params.cell`` (``None`` if neither)."""
    params = entry.get("params")
    if entry.get("param") is not None:
        return entry["param"]
    if isinstance(params, dict):
        return params.get("cell")
    return None


def load_results(path: str | Path) -> ResultsFile:
    """Load a results file (``--benchmark-json`` output or ``rlbench merge`` output).

    Raises :class:`ResultsError` naming the file (and the cell) when the file is missing, not
    JSON, truncated, not rlbench's, holds no cells, repeats a cell, or holds a malformed figure.
    """
    data = read_results_json(path)
    if not data["benchmarks"]:
        raise ResultsError(f"{path} holds no cells (every cell skipped or deselected?)")
    records: dict[str, CellRecord] = {}
    for entry in data["benchmarks"]:
        rec = record_from_entry(entry, str(path))
        if rec.id in records:
            raise ResultsError(f"{path}: cell {rec.id} appears twice; a results file holds each cell once "
                               f"(`rlbench merge` joins shards)")
        records[rec.id] = rec
    merge = data.get(MERGE_KEY) if isinstance(data.get(MERGE_KEY), dict) else {}
    sources = tuple(MappingProxyType(dict(s)) for s in merge.get("sources", []) if isinstance(s, dict))
    return ResultsFile(
        path=str(path), records=tuple(sorted(records.values(), key=lambda r: r.cell.sort_key())),
        machine_info=_ro(data.get("machine_info") or {}), commit_info=_ro(data.get("commit_info") or {}),
        datetime=data.get("datetime"), version=data.get("version"), merged_from=sources)


def _ro(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


def record_from_entry(entry: dict, source: str) -> CellRecord:
    """One benchmark entry -> :class:`CellRecord` (the entry must have passed :func:`read_results_json`)."""
    return CellRecord.from_entry(entry, source, cell=entry_cell(entry))
