"""How far the RSS deltas of checking runs' cells moved from this machine's stored ones, read from
their results files (the other half of :mod:`rlbench.grid.rss_noise`)."""

from __future__ import annotations

from rlbench.report.results import load_results


def moves_in_results(store, paths) -> dict[str, dict[str, int]]:
    """Per cell of the results files that ran on this machine: its RSS deltas minus the stored ones."""
    out: dict[str, dict[str, int]] = {}
    for path in paths:
        for rec in load_results(path).records:
            stored = (store.machine_figures(rec.id) or {}).get("memory")
            if rec.context.machine_id != store.machine_id or not stored:
                continue
            out[f"{rec.id} ({path})"] = {k: int(v - stored[k]) for k, v in rec.memory.items()
                                         if k.startswith("rss_delta") and k in stored
                                         and isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out
