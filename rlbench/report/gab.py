"""Export for github-action-benchmark (``tool: customSmallerIsBetter`` / ``customBiggerIsBetter``).

Each is a JSON list of ``{"name", "unit", "value", "extra"}``:

* smaller is better: the median single-observation latency (``stats.median``, in µs) of every
  cell, its model bytes (``bytes_total``, and each file of ``model_bytes``), and joules per 1000
  inferences where a meter measured them (never when it did not);
* bigger is better: the mean return, with its 95% CI and episode count in ``extra``.

Names are ``<cell> <figure>`` so each series is one cell's history. Absolute latency is
machine-dependent: track it per runner (the ``extra`` names the machine id).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.core.errors import ResultsError
from rlbench.report.results import ResultsFile, load_results


def _extra(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def smaller_is_better(results: ResultsFile) -> list[dict]:
    out = []
    for rec in results.records:
        machine = f"machine {rec.context.machine_id}" if rec.context.machine_id else ""
        med = rec.latency_median_s
        if med is not None:
            ratio = rec.ratios.get("variant/fp32")
            out.append({"name": f"{rec.id} latency", "unit": "us", "value": round(med * 1e6, 4),
                        "extra": _extra(f"median of {rec.stats.get('rounds', '?')} rounds, single observation",
                                        f"variant/fp32 ratio {ratio:.3f}" if ratio is not None else "", machine)})
        if rec.bytes_total is not None:
            out.append({"name": f"{rec.id} bytes_total", "unit": "bytes", "value": rec.bytes_total,
                        "extra": _extra(f"compression factor {rec.compression_factor:g}"
                                        if rec.compression_factor is not None else "")})
        for fname, nbytes in sorted(rec.model_bytes.items()):
            out.append({"name": f"{rec.id} bytes {fname}", "unit": "bytes", "value": nbytes, "extra": ""})
        if rec.energy is not None and rec.energy.available:
            out.append({"name": f"{rec.id} energy", "unit": "J/1000 inferences",
                        "value": rec.energy.joules_per_1000, "extra": machine})
    return out


def bigger_is_better(results: ResultsFile) -> list[dict]:
    out = []
    for rec in results.records:
        st = rec.return_stat()
        if st is None:
            continue
        out.append({"name": f"{rec.id} return", "unit": "return", "value": round(st.mean, 4),
                    "extra": f"95% CI [{st.lo:.2f}, {st.hi:.2f}], n={st.n} episodes"})
    return out


def export_gab(results: ResultsFile | str | Path, smaller: str | Path | None = None,
               bigger: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """Write the two lists (each only if a path is given); returns them."""
    if smaller is None and bigger is None:
        raise ResultsError("export-gab: give --smaller PATH and/or --bigger PATH")
    if not isinstance(results, ResultsFile):
        results = load_results(results)
    small, big = smaller_is_better(results), bigger_is_better(results)
    for path, data in ((smaller, small), (bigger, big)):
        if path is not None:
            atomic_write_bytes(Path(path), (json.dumps(data, indent=1) + "\n").encode())
    return small, big
