"""The page's Run section, last: the results file, dates, threads, schema, the machines that
measured the cells and the library versions, so a reader can tell where each figure comes from.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping

from rlbench.report.markup import Block, Bullets, Heading, Para, Table
from rlbench.report.results import ResultsFile
from rlbench.report.tables import MISSING


def context_blocks(results: ResultsFile) -> list[Block]:
    """The Run section; a file whose cells ran with different library versions says so."""
    blocks = [Heading(2, "Run")]
    dates = results.datetimes()
    items = [f"Results: {results.path} ({len(results.records)} cells, {len(results.pairs())} "
             f"algorithm x environment pairs)",
             f"Run date: {', '.join(dates) if dates else MISSING}",
             f"Report generated: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}"]
    threads = results.threads()
    items.append(f"Threads per cell: {', '.join(map(str, threads)) if threads else MISSING}")
    schemas = sorted({str(r.context.schema) for r in results.records if r.context.schema is not None})
    items.append(f"rlbench result schema: {', '.join(schemas) if schemas else MISSING}")
    if results.merged_from:
        items.append("Merged from: " + ", ".join(f"`{s.get('path')}` ({len(s.get('cells', []))} cells)"
                                                 for s in results.merged_from))
    blocks.append(Bullets(tuple(items)))
    machines: dict[str, Mapping] = {}
    for r in results.records:
        machines.setdefault(r.context.machine_id or MISSING, r.context.machine)
    rows = []
    for mid, m in machines.items():
        n = sum(1 for r in results.records if (r.context.machine_id or MISSING) == mid)
        rows.append((mid, str(m.get("cpu_model", MISSING)), ", ".join(m.get("cpu_flags", []) or []) or MISSING,
                     str(m.get("cpu_count", MISSING)), str(m.get("system", MISSING)), str(m.get("python", MISSING)),
                     str(n)))
    blocks += [Heading(3, "Machine" + ("s" if len(rows) > 1 else "")),
               Table(("Machine id", "CPU", "Flags", "CPUs", "System", "Python", "Cells"), tuple(rows), (3, 6))]
    versions = results.versions()
    if versions:
        blocks += [Heading(3, "Library versions"),
                   Table(("Library", "Version"), tuple((lib, " / ".join(v) if v != ["None"] else MISSING)
                                                       for lib, v in versions.items()))]
        if any(len(v) > 1 for v in versions.values()):
            blocks.append(Para("**Cells ran with different library versions** (listed with `/`): figures from "
                               "different versions sit side by side in this report."))
    return blocks
