"""A grid run's wall time set against its floor (``rlbench floor out.json``).

The floor is the time the run's necessary work takes in a bare loop, divided by the cores:

* **environment steps**: every recorded episode's length, at the environment's bare step cost.
  That cost is measured here, in this process, as the 10th percentile of short blocks of
  ``env.step`` on seeded random actions in windows spread over 12 s (resets on termination are
  not timed): the machine's fast phase, so that the floor does not move with the VM's speed swings;
* **evaluation inferences**: one observation per environment step, at the variant's own
  batch-64 throughput recorded in the cell (the evaluation batches all episodes of a cell);
* **timed inferences**: the seconds the cell spent inside its latency-timing loops
  (``timed_seconds``), which are bare loops by construction;
* **other checks' environment steps**: the zoo's return checks report their steps
  (``rlbench.other_env_steps``), counted at the same bare step cost (their inference is left out).

Everything else is overhead the ratio exposes: process and worker start-up, imports, loading
policies and artefacts, the fresh subprocesses of the RSS measurement, warm-up and calibration
of the timing, and, where the quiet lock made timing run alone (``RLBENCH_QUIET_TIMING=alone``,
or a results file that does not record its timing policy), the cores left idle meanwhile.
Artefact building is not in the floor: the target is stated for a warm artefact cache.

The report also gives the floor with every step at the median bare step cost of the same
measurement (``wall_over_floor_at_median_step``): the VM's slow phases then count as work, not
overhead, which separates what the harness costs from what the machine's speed swings cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.errors import ResultsError
from rlbench.grid.cell import PHASES
from rlbench.grid.matrix import parse_cell
from rlbench.measure import envsteps


@dataclass(frozen=True)
class CellFloor:
    cell: str
    env_id: str
    env_steps: int
    env_seconds: float
    infer_seconds: float
    timed_seconds: float
    cell_seconds: float | None
    phases: dict[str, float] | None = None
    """Wall seconds of the cell's phases (``machine_figures.phase_seconds``; absent in older files)."""
    phases_cpu: dict[str, float] | None = None
    """The worker's CPU seconds in the same phases (``machine_figures.phase_cpu_seconds``)."""

    @property
    def seconds(self) -> float:
        return self.env_seconds + self.infer_seconds + self.timed_seconds


def _load(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read a benchmark JSON ({exc}); write one with "
                           "`pytest bench -n 8 --benchmark-json out.json`") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    return data


def _measure_steps(env_id: str, step_cost: dict, median_cost: dict | None) -> None:
    if env_id not in step_cost:
        step_cost[env_id], median = envsteps.bare_step_costs(env_id)
        if median_cost is not None:
            median_cost[env_id] = median


def cell_floors(data: dict, step_cost: dict[str, float] | None = None,
                median_cost: dict[str, float] | None = None) -> list[CellFloor]:
    """Per-cell floor components; ``step_cost`` maps env id to seconds per step (measured if absent;
    ``median_cost`` then gets the median step cost of the same measurement)."""
    step_cost = step_cost if step_cost is not None else {}  # filled in place: the caller reports it
    out = []
    for entry in data["benchmarks"]:
        extra = entry.get("extra_info") or {}
        fig, mach = extra.get("figures"), extra.get("machine_figures")
        if not isinstance(fig, dict) or not isinstance(mach, dict):
            continue  # not an rlbench cell
        cell = parse_cell(entry.get("param") or entry["params"]["cell"])
        if "timed_seconds" not in mach:
            raise ResultsError(f"cell {cell.id}: no machine_figures.timed_seconds (written by an older rlbench); "
                               "run the cells again to get a floor")
        _measure_steps(cell.env_id, step_cost, median_cost)
        steps = int(sum(fig["lengths"]))
        thr = mach["throughput_batch64_per_s"].get("variant@64")
        infer = steps / thr if thr else 0.0
        out.append(CellFloor(cell.id, cell.env_id, steps, steps * step_cost[cell.env_id], infer, float(mach["timed_seconds"]),
                             mach.get("cell_seconds"), _phases(mach.get("phase_seconds")),
                             _phases(mach.get("phase_cpu_seconds"))))
    if not out:
        raise ResultsError("no rlbench cells in the file: nothing to set against a floor")
    return out


def _phases(recorded: dict | None) -> dict | None:
    """A cell's phases; files written before the lock had slots call the timing phase "exclusive"."""
    if recorded is None or "exclusive" not in recorded:
        return recorded
    return {("timing" if k == "exclusive" else k): v for k, v in recorded.items()}


def floor_summary(path: Path, cores: int | None = None, wall: float | None = None) -> dict:
    data = _load(path)
    session = data.get("rlbench") or {}
    wall = wall if wall is not None else session.get("session_wall_seconds")
    if wall is None:
        raise ResultsError(f"{path}: no rlbench.session_wall_seconds; pass --wall SECONDS (e.g. from `time`)")
    cores = cores or session.get("cores") or 1
    # a results file that does not record its timing policy is read as timing alone
    timing = (session.get("quiet_lock") or {}).get("timing", "alone")
    steps_cost: dict[str, float] = {}
    median_cost: dict[str, float] = {}
    floors = cell_floors(data, steps_cost, median_cost)
    # steps of checks that are not cells (the zoo's return checks), at the same bare step cost
    other = {k: int(v) for k, v in (session.get("other_env_steps") or {}).items()}
    for env_id in other:
        _measure_steps(env_id, steps_cost, median_cost)
    other_seconds = sum(n * steps_cost[env_id] for env_id, n in other.items())
    work = sum(f.seconds for f in floors) + other_seconds
    floor = work / cores
    # the same floor with every step at the median cost: the VM's slow phases count as work, not overhead
    steps = dict(other)
    for f in floors:
        steps[f.env_id] = steps.get(f.env_id, 0) + f.env_steps
    slow = sum(n * (median_cost.get(e, steps_cost[e]) - steps_cost[e]) for e, n in steps.items())
    floor_median = (work + slow) / cores
    cell_sec = sum(f.cell_seconds or 0.0 for f in floors)  # wall per cell: includes waiting for a core and the lock
    return {
        "file": str(path), "cells": len(floors), "cores": cores, "workers": session.get("workers"),
        "wall_seconds": round(wall, 1), "floor_seconds": round(floor, 1),
        "wall_over_floor": round(wall / floor, 2) if floor > 0 else None,
        "floor_seconds_at_median_step": round(floor_median, 1),
        "wall_over_floor_at_median_step": round(wall / floor_median, 2) if floor_median > 0 else None,
        "work_seconds": {"env_steps": round(sum(f.env_seconds for f in floors), 1),
                         "eval_inference": round(sum(f.infer_seconds for f in floors), 1),
                         "latency_timing": round(sum(f.timed_seconds for f in floors), 1),
                         "other_checks_env_steps": round(other_seconds, 1)},
        "env_steps": sum(f.env_steps for f in floors) + sum(other.values()),
        "bare_step_us": {k: round(v * 1e6, 2) for k, v in sorted(steps_cost.items())},
        "median_step_us": {k: round(v * 1e6, 2) for k, v in sorted(median_cost.items())},
        "sum_cell_wall_seconds": round(cell_sec, 1),
        "overhead_core_seconds": round(wall * cores - work, 1),
        "timing_policy": timing,
        **_overhead(floors, cores, alone=timing == "alone"),
        **_timeline(session.get("timeline")),
    }


def _timeline(timeline: dict | None) -> dict:
    """Each worker's wall time, split by what it was doing (files before the timeline have none).

    Worker-seconds: with as many workers as cores they are the run's core-seconds; with more
    (``-n 8`` on 2 cores) a worker's test time includes waiting for a core. Time before a worker's
    first test is its start-up and collection; after its last test it idles while others finish.
    """
    workers = (timeline or {}).get("workers") or {}
    if not workers:
        return {}
    s0, s1 = timeline["session_start_unix"], timeline["session_end_unix"]
    parts = {"start_up_and_collection": 0.0, "cell_tests": 0.0, "other_tests": 0.0, "between_tests": 0.0,
             "after_last_test": 0.0}
    for w in workers.values():
        busy = w["cells_s"] + w["other_tests_s"]
        parts["start_up_and_collection"] += w["first_start"] - s0
        parts["cell_tests"] += w["cells_s"]
        parts["other_tests"] += w["other_tests_s"]
        parts["between_tests"] += max(0.0, w["last_stop"] - w["first_start"] - busy)
        parts["after_last_test"] += s1 - w["last_stop"]
    return {"worker_seconds": {k: round(v, 1) for k, v in parts.items()}, "timeline_workers": len(workers)}


def _overhead(floors: list[CellFloor], cores: int, alone: bool) -> dict:
    """Measured attribution of the overhead, where every cell recorded its phases.

    ``alone``: timing held the whole quiet lock, so timing sections never overlapped and the sum of
    their wall time is time in which one core worked and the other ``cores - 1`` idled. Under the
    default policy a timing holds one slot and the other cores keep working, so no idle time is
    attributed to it. Inside a timing section, all but the timed loops is warm-up, calibration and
    bookkeeping. The other phases are counted in the
    worker's CPU seconds, which exclude waiting for a core. Rollouts beyond the floor are what
    stepping and batching cost in the harness over bare ``env.step`` and batch-64 inference. The
    rest (worker start-up, imports, pytest, the memory children's own CPU) is left unattributed.
    """
    if not floors or any(not f.phases or not f.phases_cpu for f in floors):
        return {}
    wall = {k: round(sum(f.phases.get(k, 0.0) for f in floors), 1) for k in PHASES}
    cpu = {k: round(sum(f.phases_cpu.get(k, 0.0) for f in floors), 1) for k in PHASES}
    timing, timed = wall["timing"], sum(f.timed_seconds for f in floors)
    floor_rollouts = sum(f.env_seconds + f.infer_seconds for f in floors)
    return {
        "phase_wall_seconds": wall,
        "phase_cpu_seconds": cpu,
        "overhead_measured_core_seconds": {
            "idle_cores_while_timing_alone": round(timing * (cores - 1), 1) if alone else 0.0,
            "timing_warmup_and_calibration": round(timing - timed, 1),
            "rollouts_beyond_bare_steps": round(cpu["returns"] - floor_rollouts, 1),
            "setup_load_and_build": cpu["setup"],
            "ratio_statistics": cpu["stats"],
            "memory_worker_side": cpu["memory"],
        },
    }
