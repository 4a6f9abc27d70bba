"""Run one benchmark cell: load, compress, measure, and compare with the stored figures.

This is the logic behind ``bench/test_cells.py`` (:func:`measure_and_judge`: measuring, the re-time
policy and the recording modes); it runs from a script as well::

    from rlbench.grid.cell import run_cell
    from rlbench.grid.matrix import parse_cell
    result = run_cell(parse_cell("PPO-Hopper-v5-l2-0.30"))
    result.record.return_stat(), result.record.ratios["variant/fp32"]

Every cell measures the same things whatever its method (one code path):

* return of the variant on the pair's stored seeds (one constant-shape batch);
* single-observation latency of the variant, the fp32 policy in torch and in ONNX Runtime, and
  the NumPy reference, interleaved in short rounds while the quiet lock holds the other workers
  (:mod:`rlbench.measure.quiet`); the gated figures are paired per-round CPU-time ratios;
* batch-64 throughput of the variant and the NumPy reference;
* bytes, parameter counts and (for pruning) channel and parameter ratios;
* for a discrete-action pair, ``argmax_flip``: the share of the variant's rollout states on which
  its action differs from the fp32 policy's (:func:`rlbench.measure.returns.argmax_flip`);
* peak-RSS deltas of the artefact in a fresh subprocess (ONNX Runtime with the arena on and off;
  torch for torch artefacts).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from rlbench.compress.base import compress
from rlbench.core.cellid import env_of
from rlbench.core.errors import BaselineError
from rlbench.gate import idle
from rlbench.gate.checks import (CELL_METRICS, IDENTITY_METRICS, CellFigures, Metric, Status, check_methods, check_runtimes,
                                 judge_cell, pair_of, pool_yardsticks)
from rlbench.core.threads import DEFAULT_THREADS
from rlbench.core.versions import library_versions, machine_id
from rlbench.gate.ratios import RatioKind
from rlbench.grid.matrix import Cell
from rlbench.grid.record import CellRecord, Durations, Episodes, Latency, Phase, RunContext, parse_cell_id
from rlbench.measure.energy import detect_meter, measure_energy_per_inference
from rlbench.measure.int8kernel import uses_int8_kernels
from rlbench.measure.latency import paired_ratio, time_interleaved
from rlbench.measure.machine import machine_info
from rlbench.measure.memory import measure_memory
from rlbench.measure.quiet import quiet_lock
from rlbench.measure.returns import evaluate_returns
from rlbench.measure.stats import bootstrap_ci
from rlbench.runtime.predictors import NumpyPredictor, OrtPredictor, TorchPredictor
from rlbench.zoo.registry import EVAL_SEED_BASE, is_discrete
from rlbench.zoo.shipped import load_shipped

MIN_EPISODES = 10
MAX_EPISODES = 50
#: Episode counts are chosen so that a drop of this fraction of the mean return is resolvable.
DETECTABLE_DROP = 0.10
BATCH = 64


def choose_episodes(returns, detectable: float = DETECTABLE_DROP, z: float = 1.96) -> int:
    """Episodes needed for a 95% CI half-width of ``detectable/2`` of the mean, from the spread.

    Comparing two means each with half-width h resolves a difference of about 2h, so h is set
    to half the drop we want to see. Clamped to [MIN_EPISODES, MAX_EPISODES].
    """
    x = np.asarray(returns, dtype=float)
    mu, sd = abs(float(x.mean())), float(x.std(ddof=1)) if x.size > 1 else 0.0
    if mu == 0:
        return MAX_EPISODES
    n = math.ceil((z * sd / (detectable / 2 * mu)) ** 2)
    return int(min(max(n, MIN_EPISODES), MAX_EPISODES))


@dataclass(frozen=True)
class CellResult:
    """A measured cell: its :class:`~rlbench.grid.record.CellRecord`, and the per-round latency
    ratios behind the record's ratio medians, which stay in the worker (a re-time pools them,
    :func:`pool_latency`)."""

    record: CellRecord
    ratio_samples: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def cell(self) -> str:
        return self.record.id


def _seeds_for(cell: Cell, store, shipped) -> list[int]:
    stored = store.figures(cell.baseline_id) if store is not None else None
    if stored is not None:
        return list(stored["seeds"])
    n = choose_episodes(shipped.recorded_returns)
    return list(range(EVAL_SEED_BASE, EVAL_SEED_BASE + n))


def _first_obs(env_id: str, seed: int) -> np.ndarray:
    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import pooled_envs

    with pooled_envs(env_id, 1) as (env,):
        obs, _ = env.reset(seed=seed)
    return obs


def build_variant(cell: Cell, shipped):
    """The cell's artefact (cached) or None for the uncompressed baseline."""
    if cell.variant.method == "baseline":
        return None

    return compress(shipped, cell.variant.method, cell.variant.params())


def run_cell(cell: Cell, store=None, rounds: int = 40, memory: bool = True, reuse: CellResult | None = None) -> CellResult:
    """Measure a cell. Raises :class:`~rlbench.core.errors.PolicyError` if its policy is not shipped.

    ``reuse``: an earlier result of this cell whose returns and memory are kept; only latency is
    measured again (the confirmation run of a latency verdict).
    """
    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import num_params

    import time

    t_start = time.perf_counter()
    phases = _Phases()
    lock = quiet_lock()
    with lock.shared():  # everything but the timing is background work that timing may pause
        shipped = load_shipped(cell.algo, cell.env_id)
        module = shipped.module()
        torch_fp32 = TorchPredictor(module, name="torch-fp32")
        onnx_fp32 = OrtPredictor(shipped.policy_onnx, name="onnx-fp32")
        ref = NumpyPredictor(module, name="numpy-ref")
        art = build_variant(cell, shipped)
        base_onnx_bytes = len(onnx_bytes(module))
        if art is None:
            variant, same_runtime_fp32, runtime = torch_fp32, torch_fp32, "torch"
            summary = {"method": "baseline", "ratio": None, "runtime": "torch",
                       "model_bytes": {"policy.pt": shipped.meta["files"]["policy.pt"]["bytes"],
                                       "policy.onnx": base_onnx_bytes},
                       "bytes_total": base_onnx_bytes, "params": num_params(module), "int8_weight_tensors": 0,
                       "compression_factor": 1.0}
        else:
            runtime = art.runtime
            variant = art.predictor(name="variant")
            same_runtime_fp32 = torch_fp32 if runtime == "torch" else onnx_fp32
            summary = dict(art.summary)
            summary["runtime"] = runtime
            summary["model_bytes"] = {name: len(art.data(name)) for name in sorted(art.files)}
            summary["bytes_total"] = summary["model_bytes"]["model.onnx"]  # the deployed ONNX, as for baseline
        seeds = _seeds_for(cell, store, shipped)
        obs1 = np.asarray([_first_obs(cell.env_id, seeds[0])], dtype=np.float32)
    phases.mark(Phase.SETUP)
    if reuse is None:
        reference = torch_fp32 if is_discrete(cell.env_id) else None
        rec = evaluate_returns(variant, cell.env_id, seeds, label=cell.id, lock=lock, reference=reference)
        episodes = Episodes(tuple(seeds), tuple(rec.returns), tuple(rec.lengths), rec.mean, (rec.ci_low, rec.ci_high))
        flips = rec.argmax_flip
    else:
        episodes, flips = reuse.record.episodes, reuse.record.argmax_flip
    phases.mark(Phase.RETURNS)

    obs64 = np.repeat(obs1, BATCH, axis=0)
    fns = {p.name: (lambda p=p: p.predict(obs1)) for p in (torch_fp32, onnx_fp32, ref)}
    if art is not None:
        fns["variant"] = lambda: variant.predict(obs1)
        if runtime == "torch" and "model.onnx" in art.files:
            v_onnx = art.predictor(runtime="onnxruntime", name="variant-onnx")
            fns["variant-onnx"] = lambda: v_onnx.predict(obs1)
    batch_fns = {"variant@64": lambda: variant.predict(obs64), "numpy-ref@64": lambda: ref.predict(obs64)}
    phases.mark(Phase.SETUP)  # the timed predictors (a second session for a torch variant's ONNX)
    with lock.timing():
        phases.mark(Phase.LOCK_WAIT)
        lat = time_interleaved(fns, rounds=rounds, settings={"batch": 1, "threads": 1})
        lat64 = time_interleaved(batch_fns, rounds=max(rounds // 4, 5), settings={"batch": BATCH, "threads": 1})
        phases.mark(Phase.TIMING)
    vname = "variant" if art is not None else "torch-fp32"
    ratios = {RatioKind.TORCH_YARDSTICK: paired_ratio(lat["torch-fp32"], lat["numpy-ref"]),
              RatioKind.ONNX_YARDSTICK: paired_ratio(lat["onnx-fp32"], lat["numpy-ref"])}
    if art is not None:  # a baseline cell's variant is torch-fp32: its ratios would be 1 or a yardstick again
        ratios[RatioKind.VARIANT] = paired_ratio(lat[vname], lat[same_runtime_fp32.name])
        ratios[RatioKind.VARIANT_REF] = paired_ratio(lat[vname], lat["numpy-ref"])
    if "variant-onnx" in lat:
        ratios[RatioKind.VARIANT_ONNX] = paired_ratio(lat["variant-onnx"], lat["onnx-fp32"])
    latency = Latency(
        stats={"data": list(lat[vname].samples), "iterations": lat[vname].iterations},  # the plugin adds the statistics
        latency_s={k: v.median for k, v in lat.items()}, latency_cpu_s={k: v.cpu_median for k, v in lat.items()},
        throughput_batch64_per_s={k: BATCH / v.median for k, v in lat64.items()},
        ratios={str(k): r.median for k, r in ratios.items()},
        ratio_ci={str(k): (r.ci_low, r.ci_high) for k, r in ratios.items()},
        ratio_clock="thread CPU time", noisy=tuple(sorted(k for k, v in lat.items() if v.noisy)))
    phases.mark(Phase.STATS)
    mem = {}
    if reuse is not None and reuse.record.memory:
        mem = reuse.record.memory
    elif memory:
        with lock.shared():
            mem = cell_memory(shipped, art)
        phases.mark(Phase.MEMORY)
    cell_seconds = round(time.perf_counter() - t_start, 2)
    wall, cpu = phases.record()
    # seconds spent inside the timed loops: the part of the cell's latency work a floor counts
    timed = round(sum(sum(r.samples) * r.iterations for recs in (lat, lat64) for r in recs.values()), 3)
    typed = {k: summary.pop(k, None) for k in ("runtime", "model_bytes", "bytes_total", "params",
                                               "int8_weight_tensors", "compression_factor")}
    record = CellRecord(
        cell=parse_cell_id(cell.id), episodes=episodes, **typed, policy_sha256=shipped.sha256, argmax_flip=flips,
        summary=summary,
        latency=latency, memory=mem, durations=Durations(cell_seconds, timed, wall, cpu),
        context=RunContext(machine_id(), machine_info(), library_versions(), DEFAULT_THREADS))
    return CellResult(record, {str(k): tuple(r.samples) for k, r in ratios.items()})


#: A cell's phases, in order (``setup`` is marked twice: loading, then building the timed predictors).
PHASES = tuple(Phase)


class _Phases:
    """Wall and CPU seconds of a cell's successive phases, for ``rlbench floor``'s attribution.

    Wall time alone misleads under ``-n 8`` on 2 cores: a worker's rollout phase then includes the
    time it waited for a core. The worker's own CPU time does not; the "timing" phase's wall
    time is the one that counts, since the quiet lock gives the timing a core of its own.
    """

    def __init__(self):
        import time

        self._clock, self._cpu = time.perf_counter, time.process_time
        self.wall: dict[Phase, float] = {}
        self.cpu: dict[Phase, float] = {}
        self._t, self._c = self._clock(), self._cpu()

    def mark(self, name: Phase) -> None:
        """Close the phase ``name``: the time since the previous mark."""
        try:
            name = Phase(name)
        except ValueError:
            raise ValueError(f"unknown cell phase {name!r}; add it to rlbench.grid.record.Phase for rlbench floor") from None
        t, c = self._clock(), self._cpu()
        self.wall[name] = self.wall.get(name, 0.0) + t - self._t
        self.cpu[name] = self.cpu.get(name, 0.0) + c - self._c
        self._t, self._c = t, c

    def record(self) -> tuple[dict[str, float], dict[str, float]]:
        return ({str(k): round(v, 3) for k, v in self.wall.items()}, {str(k): round(v, 3) for k, v in self.cpu.items()})


def cell_memory(shipped, art) -> dict:
    """Peak-RSS deltas (model minus stand-in) in fresh subprocesses; one repeat per setting."""
    onnx_path = Path(art.files["model.onnx"]) if art is not None else shipped.policy_onnx
    out = {}
    if isinstance(onnx_path, Path):
        on = measure_memory(onnx_path, "onnxruntime", arena=True, repeats=1)
        off = measure_memory(onnx_path, "onnxruntime", arena=False, repeats=1)
        out.update(rss_delta_bytes=on.delta_bytes, rss_delta_bytes_arena_off=off.delta_bytes,
                   rss_empty_bytes=on.peak_rss_empty_bytes, param_bytes_onnx=on.param_bytes)
    pt = shipped.policy_pt if art is None else (Path(art.files["model.pt"]) if "model.pt" in art.files else None)
    if isinstance(pt, Path):
        t = measure_memory(pt, "torch", repeats=1)
        out.update(rss_delta_bytes_torch=t.delta_bytes, rss_empty_bytes_torch=t.peak_rss_empty_bytes)
    return out


def pool_latency(first: CellResult, second: CellResult) -> CellResult:
    """A confirmation run's latency ratios pooled with the first run's: the per-round ratios of
    both are one sample (twice the rounds, a narrower CI), so a verdict that one run could not
    settle is settled by more data rather than by a second coin toss."""
    a, b = first.ratio_samples, second.ratio_samples
    ratios, cis, samples = {}, {}, {}
    for key in second.record.ratios:
        x = np.asarray([*a.get(key, ()), *b[key]])
        samples[key] = tuple(x.tolist())
        ratios[key] = float(np.median(x))
        cis[key] = tuple(bootstrap_ci(x, statistic=np.median, resamples=2000))
    rec = second.record
    latency = replace(rec.latency, ratios=MappingProxyType(ratios), ratio_ci=MappingProxyType(cis), confirmed=True)
    return CellResult(replace(rec, latency=latency, durations=_summed_durations(first.record.durations, rec.durations)),
                      samples)


def _summed_durations(first: Durations, second: Durations) -> Durations:
    """The cell's cost is both runs: the first one's rollouts and timing, then the confirmation's timing.

    Keeping the confirmation's durations alone would make every recorded ``cell_seconds`` its
    timing phase (0.9 to 7 s), and ``rlbench floor`` would leave the first run's rollouts
    unattributed and its timed loops out of the floor.
    """
    def total(x, y):
        return None if x is None and y is None else round(float(x or 0.0) + float(y or 0.0), 3)

    def phases(x, y):
        x, y = x or {}, y or {}
        if not (x or y):
            return None
        return MappingProxyType({k: round(x.get(k, 0.0) + y.get(k, 0.0), 3) for k in dict.fromkeys([*x, *y])})

    return Durations(total(first.cell_seconds, second.cell_seconds), total(first.timed_seconds, second.timed_seconds),
                     phases(first.phase_seconds, second.phase_seconds),
                     phases(first.phase_cpu_seconds, second.phase_cpu_seconds))


def stored_figures(store, cell_id: str, int8: bool = False, returns: bool = True, pooled=None):
    """The stored side of a grid cell's judgement: its figures, and this machine's with each
    yardstick replaced by its pair's pooled figure (:func:`rlbench.gate.checks.pool_yardsticks`;
    ``pooled``: the pools of this machine's stored cells, where the caller has them already)."""
    fig = store.require(cell_id, int8=int8, returns=returns)
    machine_cells = store.machine_cells()
    stored = CellFigures.from_dicts(cell_id, fig, machine_cells.get(cell_id), machine_id=store.machine_id)
    if stored.ratios is not None:
        pair = pair_of(cell_id)
        if pooled is None:
            pooled = pool_yardsticks({c: m.get("ratios") or {} for c, m in machine_cells.items() if pair_of(c) == pair})
        stored = stored.with_ratios({k: v for k, v in pooled.get(pair, {}).items() if k in stored.ratios})
    return stored


def idle_by_seed(store, env_id: str) -> dict[int, float] | None:
    """Doing nothing's return per evaluation seed in ``env_id`` (``idle.json``), or None if unrecorded."""
    return idle.by_seed(store.root).get(env_id)


def check_runtime_yardsticks(machine_by_cell: dict[str, dict], store) -> list:
    """Run-level latency gates over the run's cells against the stored (pooled) figures: per
    runtime yardstick (:func:`rlbench.gate.checks.check_runtimes`) and per compression method and
    runtime (:func:`rlbench.gate.checks.check_methods`)."""
    pooled = pool_yardsticks({c: m.get("ratios") or {} for c, m in store.machine_cells().items()})  # once a run
    stored, kernels = {}, {}
    for cell_id in machine_by_cell:
        try:
            s = stored_figures(store, cell_id, returns=False, pooled=pooled)
        except BaselineError:  # a cell without stored figures has failed its own test already
            continue
        if s.ratios is not None:
            stored[cell_id] = s.ratios
            kernels[cell_id] = s.kernel
    cells = [(machine_by_cell[c].get("ratios") or {}, stored[c]) for c in sorted(stored)]
    tol = store.tolerances().latency
    return check_runtimes(cells, tol) + check_methods(
        {c: (machine_by_cell[c].get("ratios") or {}, stored[c]) for c in sorted(stored)}, tol, kernels)


def check_recording(record: CellRecord, store) -> list:
    """What a machine recording (``--rlbench-record-machine``) must agree on before it stores this
    machine's latency and RSS bars: the machine-independent figures (returns, seeds, bytes,
    parameters, the policy). A broken build must fail, not become the bar. On a machine whose int8
    kernels are not exact, an int8 cell's returns are what the recording writes, so only its
    bytes, parameters and policy are checked."""
    scope = IDENTITY_METRICS
    if store.kernel_path is not None and uses_int8_kernels(record.figures_json()):
        scope = scope - {Metric.RETURN, Metric.SEEDS}
    return check_cell(record, store, scope=scope)


def check_cell(record: CellRecord, store, gate_latency: bool = True, memory: bool = True, scope=None) -> list:
    """Verdicts of a cell's record against the stored figures (:func:`rlbench.gate.checks.judge_cell`; raises
    :class:`~rlbench.core.errors.BaselineError` if none are stored). ``scope``: the metrics judged
    (default: all but energy; without ``gate_latency`` not latency, without ``memory`` not RSS:
    the run's summary says so)."""
    if scope is None:
        scope = CELL_METRICS - ({Metric.LATENCY} if not gate_latency else set()) - ({Metric.MEMORY} if not memory else set())
    returns = Metric.RETURN in scope
    figures = record.figures_json()
    stored = stored_figures(store, record.id, int8=uses_int8_kernels(figures), returns=returns)
    new = CellFigures.from_dicts(record.id, figures, record.machine_json())
    return judge_cell(new, stored, store.tolerances(), idle=idle_by_seed(store, env_of(record.id)), scope=scope,
                      rss_noise=store.machine_rss_noise(),
                      record_hint=f"pytest bench --rlbench-record-machine -k {record.id}")


class Mode(enum.Enum):
    """What a run does with a measured cell."""

    CHECK = "check"
    """Judge it against the stored figures (the default)."""
    UPDATE = "update"
    """``--rlbench-update-baselines``: record its figures."""
    RECORD_MACHINE = "record-machine"
    """``--rlbench-record-machine``: record this machine's figures, once its machine-independent
    figures agree with the stored ones (:func:`check_recording`)."""


@dataclass(frozen=True)
class CellOptions:
    """How a cell is measured and judged (the plugin builds it from its options)."""

    mode: Mode = Mode.CHECK
    rounds: int = 40
    memory: bool = True
    gate_latency: bool = True
    strict: bool = False
    """Fail, rather than pass as ungated, a cell with a figure that went unchecked."""


@dataclass
class CellRun:
    """What :func:`measure_and_judge` made of a cell."""

    result: CellResult
    verdicts: list
    """The verdicts on the result; empty on a recording run."""
    failures: list[str]
    """Why the cell fails, one message a line; empty if it passes."""
    judged: bool
    """Whether ``verdicts`` are the cell's outcome (a checking run)."""


def measure_and_judge(cell: Cell, store, options: CellOptions = CellOptions(),
                      record: Callable[[CellRecord], None] = lambda record: None) -> CellRun:
    """Measure a cell and judge it, or time it again for a recording, as ``options.mode`` says.

    ``record`` receives each result's record to hand on, latest last (a later one replaces an earlier:
    the plugin's ``record_cell``); a machine recording whose machine-independent figures
    disagree with the stored ones hands on nothing. A latency verdict that one timing leaves
    regressed or unsettled is timed again and judged over both timings' rounds. Raises
    :class:`~rlbench.core.errors.BaselineError` where a stored figure the judgement needs is
    missing or broken.
    """
    result = run_cell(cell, store, rounds=options.rounds, memory=options.memory)
    if options.mode is Mode.RECORD_MACHINE:
        failures = [v.message for v in check_recording(result.record, store) if v.failed]
        if failures:
            return CellRun(result, [], [*failures, "(nothing recorded for this cell)"], judged=False)
    if options.mode is not Mode.CHECK:
        # A stored figure is the bar for every later run, so it is timed twice, before and after
        # the cell's memory subprocesses, and the rounds pooled: one timing caught in a lucky
        # phase of this VM can store 0.709 where its neighbours read 0.83-0.94.
        result = pool_latency(result, run_cell(cell, store, rounds=options.rounds, memory=options.memory,
                                               reuse=result))
        record(result.record)
        return CellRun(result, [], [], judged=False)  # the plugin's controller writes the figures at the end
    record(result.record)
    judge = dict(gate_latency=options.gate_latency, memory=options.memory)
    verdicts = check_cell(result.record, store, **judge)
    if any(v.metric is Metric.LATENCY and v.status in (Status.REGRESSED, Status.UNSETTLED) for v in verdicts):
        # Settle a latency verdict with more data before failing: re-time (returns and memory are
        # kept) and pool the rounds of both timings. A real slowdown persists; noise averages out.
        again = run_cell(cell, store, rounds=options.rounds, memory=options.memory, reuse=result)
        result = pool_latency(result, again)
        record(result.record)
        verdicts = check_cell(result.record, store, **judge)
    failures = [v.message for v in verdicts if v.failed]
    if options.strict:
        failures += [f"{v.message} (--rlbench-strict)" for v in verdicts if v.status is Status.UNGATED]
    return CellRun(result, verdicts, failures, judged=True)


@dataclass(frozen=True)
class EnergyCheck:
    """What :func:`check_energy` made of a cell's energy figure."""

    skip: str | None = None
    """Why there is nothing to judge or record (no meter on this machine)."""
    failures: list[str] = field(default_factory=list)


def check_energy(cell_id: str, energy: dict, store, update: bool = False) -> EnergyCheck:
    """Judge a cell's energy figure (:func:`run_energy`) against this machine's stored one.

    A machine that had a meter when its figure was recorded and has none now fails rather than
    skips; a meter without a stored figure fails until one is recorded. An ``update`` run judges
    nothing. Raises :class:`~rlbench.core.errors.BaselineError` if the machine's file does not read.
    """
    stored = (store.machine_figures(cell_id) or {}).get("energy")
    if not energy["available"]:
        if stored and stored.get("joules_per_1000") is not None and not update:
            return EnergyCheck(failures=[f"{cell_id}: energy stored for this machine ({stored['joules_per_1000']:.4g} "
                                         f"J/1000 inferences) but no meter now: {energy['reason']}"])
        return EnergyCheck(skip=f"no meter on this machine: {energy['reason']}")
    if update:
        return EnergyCheck()
    new = CellFigures(cell_id, energy=energy["joules_per_1000"])
    old = CellFigures(cell_id, energy=(stored or {}).get("joules_per_1000"), machine_id=store.machine_id)
    verdicts = judge_cell(new, old, store.tolerances(), scope=frozenset({Metric.ENERGY}),
                          record_hint=f"pytest bench --rlbench-record-machine -k {cell_id}")
    failures = [v.message for v in verdicts if v.failed]
    if verdicts and verdicts[0].status is Status.UNGATED:  # a meter and no stored figure: record one
        failures.append(verdicts[0].message)
    return EnergyCheck(failures=failures)


def run_energy(cell: Cell, meter_factory=None, window: float = 1.0) -> dict:
    """Joules per 1000 single-observation inferences of the cell's variant, idle subtracted.

    Returns ``{"available": False, "reason": ...}`` where no meter exists: never a number.
    """
    factory = meter_factory or detect_meter
    probe = factory()
    reason = probe.probe() if hasattr(probe, "probe") else None
    if reason is not None:
        return {"available": False, "reason": reason, "joules_per_1000": None}
    shipped = load_shipped(cell.algo, cell.env_id)
    art = build_variant(cell, shipped)
    if art is None:
        pred = TorchPredictor(shipped.module())
    else:
        pred = art.predictor()
    obs1 = np.asarray([_first_obs(cell.env_id, 0)], dtype=np.float32)
    with quiet_lock().exclusive():
        res = measure_energy_per_inference(lambda: pred.predict(obs1), factory, min_window=window)
    return {"available": res.available, "reason": res.reason, "joules_per_1000": res.joules_per_1000,
            "calls": res.calls, "seconds": res.seconds, "meter": res.idle.meter if hasattr(res.idle, "meter") else None}
