"""``rlbench merge A.json B.json ... -o ALL.json``: join the results files of grid shards.

The output is a pytest-benchmark file (``machine_info``, ``commit_info``, ``benchmarks``,
``datetime``, ``version``), so ``pytest-benchmark compare ALL.json`` and every ``rlbench``
command read it. Each entry keeps its own ``extra_info.rlbench`` (machine id, machine, versions,
threads); the top-level ``rlbench_merge`` key records every source file with its own top-level
``machine_info``, ``commit_info``, ``datetime`` and cells, because pytest-benchmark's
``machine_info`` can hold only one machine (the first source's).

A cell in two files must be the same measurement (same ``extra_info`` and ``stats``): it is then
kept once. Otherwise the merge is refused, naming the cell and both files: picking one silently
would hide that the shards disagree.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.core.errors import ResultsError
from rlbench.report.results import MERGE_KEY, entry_cell, parse_cell_id, read_results_json

MERGE_SCHEMA = 1


@dataclass(frozen=True)
class MergeResult:
    data: dict
    """The merged document."""
    cells: tuple[str, ...]
    duplicates: tuple[str, ...]
    """Cells found identical in more than one file (kept once)."""
    sources: tuple[str, ...]


def _differences(a: dict, b: dict) -> list[str]:
    parts = []
    ea, eb = a.get("extra_info", {}), b.get("extra_info", {})
    for key in sorted(set(ea) | set(eb)):
        if ea.get(key) != eb.get(key):
            sub = ""
            if isinstance(ea.get(key), dict) and isinstance(eb.get(key), dict):
                keys = sorted(k for k in set(ea[key]) | set(eb[key]) if ea[key].get(k) != eb[key].get(k))
                sub = f" ({', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''})"
            parts.append(f"extra_info.{key}{sub}")
    if a.get("stats") != b.get("stats"):
        parts.append("stats")
    return parts


def merge_results(paths: list[str | Path]) -> MergeResult:
    """Merge results files (shard outputs or earlier merges) into one document."""
    if not paths:
        raise ResultsError("rlbench merge needs at least one results file")
    entries: dict[str, tuple[dict, str]] = {}
    duplicates: list[str] = []
    sources: list[dict] = []
    first: dict | None = None
    for p in paths:
        data = read_results_json(p)
        first = first or data
        cells = []
        for entry in data["benchmarks"]:
            cell = parse_cell_id(entry_cell(entry), p).text
            cells.append(cell)
            if cell in entries:
                prev, prev_path = entries[cell]
                diff = _differences(prev, entry)
                if diff:
                    raise ResultsError(f"cell {cell} appears in both {prev_path} and {p} with different figures "
                                       f"({'; '.join(diff)}); refusing to merge: drop one of the two files or "
                                       f"re-run the cell")
                duplicates.append(cell)
                continue
            entries[cell] = (entry, str(p))
        nested = data.get(MERGE_KEY, {}).get("sources") if isinstance(data.get(MERGE_KEY), dict) else None
        if nested:
            sources.extend(nested)  # an earlier merge: keep its original sources, not the merge file
        else:
            sources.append({"path": str(p), "machine_info": data.get("machine_info"),
                            "commit_info": data.get("commit_info"), "datetime": data.get("datetime"),
                            "version": data.get("version"), "cells": cells})
    benchmarks = [e for e, _ in sorted(entries.values(), key=lambda ep: parse_cell_id(entry_cell(ep[0])).sort_key())]
    machine_ids = sorted({str(e.get("extra_info", {}).get("rlbench", {}).get("machine_id"))
                          for e in benchmarks if e.get("extra_info", {}).get("rlbench", {}).get("machine_id")})
    doc = {
        "machine_info": first.get("machine_info", {}),
        "commit_info": first.get("commit_info", {}),
        "benchmarks": benchmarks,
        "datetime": first.get("datetime") or _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "version": first.get("version"),
        MERGE_KEY: {"schema": MERGE_SCHEMA, "merged_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                    "machine_ids": machine_ids, "sources": sources},
    }
    return MergeResult(doc, tuple(entry_cell(e) for e in benchmarks), tuple(dict.fromkeys(duplicates)),
                       tuple(str(p) for p in paths))


def write_merged(paths: list[str | Path], out: str | Path) -> MergeResult:
    """Merge and write ``out`` atomically (a failed merge leaves no file behind)."""
    result = merge_results(paths)
    atomic_write_bytes(Path(out), (json.dumps(result.data, indent=1) + "\n").encode())
    return result
