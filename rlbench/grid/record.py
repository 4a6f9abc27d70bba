"""One cell's result as one typed, immutable record, on both sides of the suite.

:func:`rlbench.grid.cell.run_cell` produces a :class:`CellRecord`; a worker hands its JSON to the
plugin's controller (``record.to_json()``), which writes it as the ``extra_info`` of the cell's
``--benchmark-json`` entry and stores its figures in ``baselines/``; every report, comparison and
export reads it back with :meth:`CellRecord.from_json` (:func:`rlbench.report.results.load_results`).
The layout is documented field by field in ``docs/grid.md``.

``extra_info`` of an entry::

    {"schema": 2, "cell": "SAC-Hopper-v5-l2-0.30",
     "figures": {...},          # machine-independent: returns, bytes, parameters (what figures.json stores)
     "machine_figures": {...},  # this machine's: latency, ratios, RSS, energy, durations (machines/<id>.json)
     "rlbench": {...},          # where and how it ran: machine id, machine, library versions, threads
     "outcome": {...} | null}   # the cell's verdict in a checking run

pytest-benchmark's ``stats`` of the variant's latency sit beside ``extra_info`` in the entry, as
pytest-benchmark writes them; :meth:`CellRecord.from_entry` reads both.

Schema 1 (written before the record had a version of its own: no top-level ``schema``, and
``rlbench.schema`` 1) has the same layout and is read as it is. A schema newer than
:data:`SCHEMA` fails, naming the file and the cell, rather than being half-read.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlbench.compress.methods import grid_methods
from rlbench.core.cellid import match_cell_id
from rlbench.core.errors import ResultsError
from rlbench.gate.checks import Status
from rlbench.measure.returns import ArgmaxFlips
from rlbench.measure.stats import bootstrap_ci
from rlbench.zoo.registry import ALGOS, ENVS, env_short

SCHEMA = 2
"""The record's layout version (``extra_info.schema``)."""
OLDEST_SCHEMA = 1
"""The oldest layout this rlbench reads (schema 1 files carry ``rlbench.schema`` and no top-level one)."""

QUANT_METHODS: tuple[str, ...] = tuple(info.name for info in grid_methods() if info.paper == "quantization")
"""The paper's quantization methods (Table 1), in its column order: the methods declaring ``paper="quantization"``."""
PRUNE_METHODS: tuple[str, ...] = tuple(info.name for info in grid_methods() if info.paper == "pruning")
"""The paper's pruning norms (Tables 2-3): the methods declaring ``paper="pruning"``."""


class Phase(enum.StrEnum):
    """A cell's phases, in order (``phase_seconds`` keys; ``rlbench floor`` attributes a cell's time by them)."""

    SETUP = "setup"
    """Loading the policy, building the artefact and (marked again) the timed predictors."""
    RETURNS = "returns"
    LOCK_WAIT = "lock_wait"
    """Waiting for the quiet lock before the timed loops."""
    TIMING = "timing"
    STATS = "stats"
    MEMORY = "memory"


# ----------------------------------------------------------------------------------------- cell ids


@dataclass(frozen=True)
class CellId:
    """A parsed cell id such as ``SAC-HalfCheetah-v5-l2-0.30``."""

    text: str
    """The id exactly as written."""
    algo: str
    env_id: str
    method: str
    """``baseline``, ``ptdq``, ``ptsq``, ``qat``, ``l1``, ``l2``, ``fp16``, ``int8pc``, ``lowrank``, ..."""
    ratio: float | None
    """The method's ratio (pruning fraction, rank fraction, sparsity), or ``None``."""

    @property
    def pair(self) -> str:
        return f"{self.algo}-{self.env_id}"

    @property
    def env_short(self) -> str:
        """The paper's environment name (``HalfCheetah``)."""
        return env_short(self.env_id)

    @property
    def variant(self) -> str:
        """``method`` or ``method-ratio`` as in the id (``l2-0.30``)."""
        return self.text[len(self.pair) + 1:]

    @property
    def is_baseline(self) -> bool:
        return self.method == "baseline"

    @property
    def is_pruning(self) -> bool:
        """L1/L2 structured pruning: the paper's Tables 2-3."""
        return self.method in PRUNE_METHODS

    def sort_key(self) -> tuple:
        """Report order: algorithms and environments as in the registry (the paper's order), then
        baseline, the paper's quantization methods, other methods, then L1 and L2 by ratio."""
        a = ALGOS.index(self.algo)
        e = ENVS.index(self.env_id) if self.env_id in ENVS else len(ENVS)
        return (a, e, self.env_id) + variant_sort_key(self.method, self.ratio)


def variant_sort_key(method: str, ratio: float | None) -> tuple:
    if method == "baseline":
        group = 0
    elif method in QUANT_METHODS:
        group = 1 + QUANT_METHODS.index(method)
    elif method in PRUNE_METHODS:
        group = 10 + PRUNE_METHODS.index(method)
    else:
        group = 5
    return (group, method, -1.0 if ratio is None else ratio)


def parse_cell_id(cell: Any, source: str | Path | None = None) -> CellId:
    """Parse ``ALGO-Env-vN-method[-ratio]`` (:func:`rlbench.core.cellid.match_cell_id`, ALGO one of the
    registry's); any environment and method are read.

    Raises :class:`~rlbench.core.errors.ResultsError` naming ``source`` (the file) and the cell for anything else.
    """
    where = f"{source}: " if source is not None else ""
    if not isinstance(cell, str):
        raise ResultsError(f"{where}cell id {cell!r} is not a string")
    m = match_cell_id(cell)
    if m is None or m["algo"] not in ALGOS:
        raise ResultsError(
            f"{where}cell {cell!r} is not an rlbench cell id; expected ALGO-ENV-vN-METHOD[-RATIO] with ALGO one of "
            f"{', '.join(ALGOS)}, e.g. SAC-HalfCheetah-v5-baseline or SAC-HalfCheetah-v5-l2-0.30")
    ratio = m["ratio"]
    return CellId(cell, m["algo"], m["env"], m["method"], None if ratio is None else float(ratio))


# ---------------------------------------------------------------------------------------- the parts


def _ro(d: Mapping | None = None) -> Mapping:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class ReturnStat:
    """A mean return with its 95% CI and episode count."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def overlaps(self, other: ReturnStat) -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def format(self, digits: int = 1) -> str:
        return f"{self.mean:.{digits}f} ± {self.half_width:.{digits}f}"


@dataclass(frozen=True)
class Episodes:
    """The variant's return on the pair's evaluation seeds (``figures``: ``seeds``, ``returns``,
    ``lengths``, ``return_mean``, ``return_ci``)."""

    seeds: tuple[int, ...] = ()
    returns: tuple[float, ...] = ()
    """Undiscounted return of each episode, in seed order."""
    lengths: tuple[int, ...] = ()
    """Steps of each episode."""
    mean: float | None = None
    ci: tuple[float, float] | None = None
    """95% bootstrap CI of the mean."""

    def stat(self) -> ReturnStat | None:
        """Mean and 95% CI: as recorded, or derived from the per-episode returns with the suite's
        own bootstrap where only those are recorded. ``None`` without returns."""
        if self.mean is not None and self.ci is not None:
            return ReturnStat(self.mean, self.ci[0], self.ci[1], len(self.returns))
        if not self.returns:
            return None
        mean = self.mean if self.mean is not None else sum(self.returns) / len(self.returns)
        lo, hi = self.ci if self.ci is not None else bootstrap_ci(self.returns)
        return ReturnStat(float(mean), float(lo), float(hi), len(self.returns))


def _freeze(obj, names: tuple[str, ...]) -> None:
    """Read-only views of a frozen dataclass's mapping fields, whatever the caller passed."""
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, dict):
            object.__setattr__(obj, name, MappingProxyType(v))


@dataclass(frozen=True)
class Latency:
    """Single-observation latency, timed interleaved with the yardsticks (``machine_figures``)."""

    stats: Mapping[str, Any] = field(default_factory=_ro)
    """pytest-benchmark's statistics of the variant's samples (seconds a call; ``data``: the samples)."""
    latency_s: Mapping[str, float] = field(default_factory=_ro)
    """Median wall seconds a call, per predictor (``variant``, ``torch-fp32``, ``onnx-fp32``, ``numpy-ref``)."""
    latency_cpu_s: Mapping[str, float] = field(default_factory=_ro)
    """Median thread CPU seconds a call, per predictor."""
    throughput_batch64_per_s: Mapping[str, float] = field(default_factory=_ro)
    """Observations a second at batch 64 (``variant@64``, ``numpy-ref@64``)."""
    ratios: Mapping[str, float] | None = None
    """Median paired per-round ratio, per :class:`rlbench.gate.ratios.RatioKind` key; ``None``: not timed."""
    ratio_ci: Mapping[str, tuple[float, float]] = field(default_factory=_ro)
    """95% bootstrap CI of each ratio."""
    ratio_clock: str | None = None
    """The clock the ratios are taken on (``thread CPU time``)."""
    noisy: tuple[str, ...] = ()
    """Predictors whose samples spread beyond the harness's noise warning."""
    confirmed: bool = False
    """Whether the ratios pool a second timing (a re-time, or a recording's second timing)."""

    def __post_init__(self):
        _freeze(self, ("stats", "latency_s", "latency_cpu_s", "throughput_batch64_per_s", "ratios", "ratio_ci"))


@dataclass(frozen=True)
class Durations:
    """Where a cell's time went (``machine_figures``), for ``rlbench floor``."""

    cell_seconds: float | None = None
    timed_seconds: float | None = None
    """Seconds inside the timed loops."""
    phase_seconds: Mapping[str, float] | None = None
    """Wall seconds per :class:`Phase`."""
    phase_cpu_seconds: Mapping[str, float] | None = None
    """The worker's CPU seconds per :class:`Phase`."""

    def __post_init__(self):
        _freeze(self, ("phase_seconds", "phase_cpu_seconds"))


@dataclass(frozen=True)
class Energy:
    """Energy of a cell. ``joules_per_1000`` is ``None`` whenever ``available`` is false."""

    available: bool
    reason: str | None
    """Why there is no figure (no meter on this machine)."""
    joules_per_1000: float | None
    """Joules per 1000 single-observation inferences, idle subtracted."""
    calls: int | None = None
    seconds: float | None = None
    meter: str | None = None

    def describe(self) -> str:
        if self.available:
            return f"{self.joules_per_1000:.4g} J/1000"
        return f"no meter: {self.reason or 'no reason recorded'}"

    @classmethod
    def from_json(cls, data: Mapping, cell: str = "?") -> Energy:
        """An energy figure as :func:`rlbench.grid.cell.run_energy` returns it (``machine_figures.energy``)."""
        return _energy(_Fields("", cell), {"energy": data})

    def to_json(self) -> dict:
        out = {"available": self.available, "reason": self.reason, "joules_per_1000": self.joules_per_1000}
        if self.available:
            out.update(calls=self.calls, seconds=self.seconds, meter=self.meter)
        return out


@dataclass(frozen=True)
class Outcome:
    """A checking run's verdict on the cell (``outcome``)."""

    status: Status
    notes: tuple[str, ...] = ()
    """Why the cell is ungated or unsettled, one line each."""

    def to_json(self) -> dict:
        return {"outcome": str(self.status), "notes": list(self.notes)}


@dataclass(frozen=True)
class RunContext:
    """Where and how a cell ran (``rlbench``)."""

    machine_id: str | None = None
    machine: Mapping[str, Any] = field(default_factory=_ro)
    versions: Mapping[str, Any] = field(default_factory=_ro)
    """Library versions (torch, onnxruntime, ...)."""
    threads: int | None = None
    schema: int | None = SCHEMA
    """The layout version the record was read from (or is written in)."""

    def __post_init__(self):
        _freeze(self, ("machine", "versions"))

    def to_json(self) -> dict:
        return {"machine_id": self.machine_id, "machine": dict(self.machine), "versions": dict(self.versions),
                "threads": self.threads}


#: ``figures`` keys the record types; every other key is the compression's own summary, kept as it is.
_TYPED_FIGURES = ("seeds", "returns", "lengths", "return_mean", "return_ci", "runtime", "model_bytes", "bytes_total",
                  "params", "int8_weight_tensors", "compression_factor", "policy_sha256", "argmax_flip")
_MACHINE_KEYS = ("latency_s", "latency_cpu_s", "throughput_batch64_per_s", "ratio_clock", "ratios", "ratio_ci",
                 "noisy", "confirmed", "memory", "energy", "cell_seconds", "timed_seconds", "phase_seconds",
                 "phase_cpu_seconds")


# -------------------------------------------------------------------------------------------- record


@dataclass(frozen=True)
class CellRecord:
    """One cell's result. Mappings are read-only views; sequences are tuples."""

    cell: CellId
    episodes: Episodes = Episodes()
    runtime: str | None = None
    """``torch`` or ``onnxruntime``: where the variant runs."""
    model_bytes: Mapping[str, int] = field(default_factory=_ro)
    """Bytes of each file of the artefact."""
    bytes_total: int | None = None
    """Bytes of the deployed ONNX graph."""
    params: int | None = None
    int8_weight_tensors: int | None = None
    compression_factor: float | None = None
    policy_sha256: str | None = None
    """The shipped policy the cell was measured from."""
    argmax_flip: ArgmaxFlips | None = None
    """Discrete-action pairs: the fraction of observations whose greedy action the compression changes."""
    summary: Mapping[str, Any] = field(default_factory=_ro)
    """The rest of ``figures``: the compression's own summary (``method``, ``ratio``, ``channel_ratio``,
    ``settings``, ...), as the method wrote it."""
    latency: Latency = Latency()
    memory: Mapping[str, int] = field(default_factory=_ro)
    """Peak-RSS deltas and stand-ins, bytes (``rss_delta_bytes``, ``rss_delta_bytes_arena_off``, ...);
    empty: not measured (``--rlbench-no-memory``)."""
    energy: Energy | None = None
    durations: Durations = Durations()
    context: RunContext = RunContext()
    outcome: Outcome | None = None
    name: str | None = None
    """The test's name (pytest-benchmark's ``name``)."""
    source: str | None = field(default=None, compare=False)
    """The results file the record was read from (not written)."""

    # -- the names the report reads
    @property
    def id(self) -> str:
        return self.cell.text

    @property
    def method(self) -> str:
        return self.cell.method

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.episodes.seeds

    @property
    def returns(self) -> tuple[float, ...]:
        return self.episodes.returns

    @property
    def lengths(self) -> tuple[int, ...]:
        return self.episodes.lengths

    @property
    def return_mean(self) -> float | None:
        return self.episodes.mean

    @property
    def return_ci(self) -> tuple[float, float] | None:
        return self.episodes.ci

    def return_stat(self) -> ReturnStat | None:
        return self.episodes.stat()

    @property
    def channel_ratio(self) -> float | None:
        return self.summary.get("channel_ratio")

    @property
    def param_ratio(self) -> float | None:
        return self.summary.get("param_ratio")

    @property
    def stats(self) -> Mapping[str, Any]:
        return self.latency.stats

    @property
    def latency_s(self) -> Mapping[str, float]:
        return self.latency.latency_s

    @property
    def latency_cpu_s(self) -> Mapping[str, float]:
        return self.latency.latency_cpu_s

    @property
    def ratios(self) -> Mapping[str, float]:
        return self.latency.ratios if self.latency.ratios is not None else _ro({})

    @property
    def ratio_ci(self) -> Mapping[str, tuple[float, float]]:
        return self.latency.ratio_ci

    @property
    def latency_median_s(self) -> float | None:
        v = self.stats.get("median")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def __post_init__(self):
        _freeze(self, ("model_bytes", "summary", "memory"))

    @classmethod
    def from_figures(cls, cell: str, figures: Mapping | None = None, machine: Mapping | None = None,
                     stats: Mapping | None = None) -> CellRecord:
        """A record from the dicts ``figures.json`` and ``machines/<id>.json`` hold for a cell (and
        pytest-benchmark ``stats``): :meth:`from_json` of them, for scripts and tests."""
        return cls.from_json({"schema": SCHEMA, "cell": cell, "figures": figures or {}, "machine_figures": machine or {},
                              "stats": stats or {}})

    def with_stats(self, stats: Mapping[str, Any]) -> CellRecord:
        return replace(self, latency=replace(self.latency, stats=stats))

    def with_context(self, context: RunContext) -> CellRecord:
        return replace(self, context=context)

    def with_energy(self, energy: Energy | None) -> CellRecord:
        return replace(self, energy=energy)

    def with_outcome(self, outcome: Outcome | None) -> CellRecord:
        return replace(self, outcome=outcome)

    # -- writing
    def figures_json(self) -> dict:
        """``figures``: the machine-independent figures, as ``baselines/figures.json`` stores them."""
        e = self.episodes
        out = dict(self.summary)
        typed = {"seeds": list(e.seeds) if e.seeds else None, "returns": list(e.returns) if e.returns else None,
                 "lengths": list(e.lengths) if e.lengths else None, "return_mean": e.mean,
                 "return_ci": list(e.ci) if e.ci is not None else None, "runtime": self.runtime,
                 "model_bytes": dict(self.model_bytes) if self.model_bytes else None, "bytes_total": self.bytes_total,
                 "params": self.params, "int8_weight_tensors": self.int8_weight_tensors,
                 "compression_factor": self.compression_factor, "policy_sha256": self.policy_sha256,
                 "argmax_flip": self.argmax_flip.to_json() if self.argmax_flip is not None else None}
        out.update({k: v for k, v in typed.items() if v is not None})
        return out

    def machine_json(self) -> dict:
        """``machine_figures``: this machine's figures, as ``baselines/machines/<id>.json`` stores them."""
        lat, d = self.latency, self.durations
        out: dict[str, Any] = {}
        for key in ("latency_s", "latency_cpu_s", "throughput_batch64_per_s"):
            if getattr(lat, key):
                out[key] = dict(getattr(lat, key))
        if lat.ratio_clock is not None:
            out["ratio_clock"] = lat.ratio_clock
        if lat.ratios is not None:
            out["ratios"] = dict(lat.ratios)
        if lat.ratios is not None or lat.ratio_ci:
            out["ratio_ci"] = {k: list(v) for k, v in lat.ratio_ci.items()}
        if lat.noisy or lat.ratios is not None:
            out["noisy"] = list(lat.noisy)
        if lat.confirmed:
            out["confirmed"] = True
        if self.memory:
            out["memory"] = dict(self.memory)
        if self.energy is not None:
            out["energy"] = self.energy.to_json()
        for key in ("cell_seconds", "timed_seconds"):
            if getattr(d, key) is not None:
                out[key] = getattr(d, key)
        for key in ("phase_seconds", "phase_cpu_seconds"):
            if getattr(d, key) is not None:
                out[key] = dict(getattr(d, key))
        return out

    def to_json(self, stats: bool = True) -> dict:
        """The record as JSON: ``extra_info`` of its ``--benchmark-json`` entry, plus (``stats``) the
        pytest-benchmark statistics that the entry holds beside it."""
        out = {"schema": SCHEMA, "cell": self.id, "figures": self.figures_json(), "machine_figures": self.machine_json(),
               "rlbench": self.context.to_json(), "outcome": self.outcome.to_json() if self.outcome else None}
        if self.name is not None:
            out["name"] = self.name
        if stats:
            out["stats"] = dict(self.latency.stats)
        return out

    # -- reading
    @classmethod
    def from_json(cls, data: Any, source: str | Path | None = None, cell: str | None = None) -> CellRecord:
        """A record from :meth:`to_json`'s output (or an entry's ``extra_info`` with ``stats`` added).

        ``cell``: the id where ``data`` has none (a schema 1 ``extra_info``; the entry's ``param``).
        Raises :class:`~rlbench.core.errors.ResultsError` naming ``source``, the cell and the field
        for anything malformed, and for a schema this rlbench does not read.
        """
        where = f"{source}: " if source is not None else ""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{where}cell {cell or '?'}: record is {type(data).__name__}, expected an object")
        cid = parse_cell_id(data.get("cell", cell), source)
        f = _Fields(where, cid.text)
        if cell is not None and data.get("cell", cell) != cell:
            raise f.fail("cell", data.get("cell"), f"the entry's cell id {cell!r}")
        ctx = f.mapping(data, "rlbench")
        schema = _schema(f, data, ctx)
        fig = f.mapping(data, "figures")
        mach = f.mapping(data, "machine_figures")
        stats = f.mapping(data, "stats")
        p = "figures."
        episodes = Episodes(seeds=f.numbers(fig, "seeds", p, int), returns=f.numbers(fig, "returns", p),
                            lengths=f.numbers(fig, "lengths", p, int), mean=f.number(fig, "return_mean", p),
                            ci=f.interval(fig.get("return_ci"), p + "return_ci"))
        summary = {k: v for k, v in fig.items() if k not in _TYPED_FIGURES}
        for key in ("channel_ratio", "param_ratio"):
            f.number(summary, key, p)
        m = "machine_figures."
        ratio_ci = {}
        for k, v in f.mapping(mach, "ratio_ci", m).items():
            iv = f.interval(v, f"{m}ratio_ci.{k}")
            if iv is not None:
                ratio_ci[str(k)] = iv
        noisy = mach.get("noisy") or []
        if not isinstance(noisy, list) or not all(isinstance(x, str) for x in noisy):
            raise f.fail(m + "noisy", noisy, "a list of predictor names")
        latency = Latency(stats=_ro(stats), latency_s=_ro(f.number_map(mach, "latency_s", m)),
                          latency_cpu_s=_ro(f.number_map(mach, "latency_cpu_s", m)),
                          throughput_batch64_per_s=_ro(f.number_map(mach, "throughput_batch64_per_s", m)),
                          ratios=_ro(f.number_map(mach, "ratios", m)) if mach.get("ratios") is not None else None,
                          ratio_ci=_ro(ratio_ci), ratio_clock=f.text(mach, "ratio_clock", m), noisy=tuple(noisy),
                          confirmed=bool(mach.get("confirmed", False)))
        memory = _ro({k: int(v) for k, v in f.number_map(mach, "memory", m).items()})
        durations = Durations(cell_seconds=f.number(mach, "cell_seconds", m),
                              timed_seconds=f.number(mach, "timed_seconds", m),
                              phase_seconds=_opt_map(f, mach, "phase_seconds", m),
                              phase_cpu_seconds=_opt_map(f, mach, "phase_cpu_seconds", m))
        model_bytes = f.number_map(fig, "model_bytes", p)
        return cls(
            cell=cid, episodes=episodes, runtime=f.text(fig, "runtime", p),
            model_bytes=_ro({k: int(v) for k, v in model_bytes.items()}),
            bytes_total=f.integer(fig, "bytes_total", p), params=f.integer(fig, "params", p),
            int8_weight_tensors=f.integer(fig, "int8_weight_tensors", p),
            compression_factor=f.number(fig, "compression_factor", p), policy_sha256=f.text(fig, "policy_sha256", p),
            argmax_flip=_flips(f, fig, p), summary=_ro(summary), latency=latency, memory=memory,
            energy=_energy(f, mach), durations=durations,
            context=RunContext(machine_id=f.text(ctx, "machine_id", "rlbench."),
                               machine=_ro(f.mapping(ctx, "machine", "rlbench.")),
                               versions=_ro(f.mapping(ctx, "versions", "rlbench.")),
                               threads=f.integer(ctx, "threads", "rlbench."), schema=schema),
            outcome=_outcome(f, data.get("outcome")), name=data.get("name") if isinstance(data.get("name"), str) else None,
            source=None if source is None else str(source))

    @classmethod
    def from_entry(cls, entry: Mapping, source: str | Path | None = None, cell: str | None = None) -> CellRecord:
        """A record from a ``--benchmark-json`` entry: its ``extra_info``, ``stats`` and ``name``."""
        extra = dict(entry.get("extra_info") or {})
        stats = entry.get("stats")
        if stats is not None and not isinstance(stats, Mapping):
            raise ResultsError(f"{source}: cell {cell}: stats is {stats!r}, expected an object")
        return cls.from_json({**extra, "stats": stats or {}, "name": entry.get("name")}, source, cell)


def _schema(f: _Fields, data: Mapping, ctx: Mapping) -> int:
    raw = data.get("schema", ctx.get("schema", OLDEST_SCHEMA))
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise f.fail("schema", raw, f"an integer layout version ({OLDEST_SCHEMA} to {SCHEMA})")
    if raw > SCHEMA:
        raise ResultsError(f"{f.where}cell {f.cell}: schema is {raw}, newer than this rlbench reads ({OLDEST_SCHEMA} "
                           f"to {SCHEMA}): upgrade rlbench to read this file, or re-run the cells with this one")
    if raw < OLDEST_SCHEMA:
        raise ResultsError(f"{f.where}cell {f.cell}: schema is {raw}, older than this rlbench reads ({OLDEST_SCHEMA} "
                           f"to {SCHEMA}): re-run the cells with this rlbench")
    return raw


def _opt_map(f: _Fields, d: Mapping, key: str, prefix: str) -> Mapping[str, float] | None:
    return _ro(f.number_map(d, key, prefix)) if d.get(key) is not None else None


def _flips(f: _Fields, fig: Mapping, prefix: str) -> ArgmaxFlips | None:
    d = f.mapping(fig, "argmax_flip", prefix)
    if not d:
        return None
    states, flips = f.integer(d, "states", prefix + "argmax_flip."), f.integer(d, "flips", prefix + "argmax_flip.")
    if states is None or flips is None or not 0 <= flips <= states:
        raise f.fail(prefix + "argmax_flip", dict(d), "an object with integers 0 <= flips <= states")
    return ArgmaxFlips(states, flips)


def _energy(f: _Fields, mach: Mapping) -> Energy | None:
    p = "machine_figures.energy."
    e = f.mapping(mach, "energy", "machine_figures.")
    if not e:
        return None
    joules = f.number(e, "joules_per_1000", p)
    said = bool(e.get("available"))
    available = said and joules is not None
    reason = e.get("reason")
    if said and joules is None:
        reason = "meter reported available but recorded no figure"
    calls = f.integer(e, "calls", p)
    return Energy(available, None if available else (str(reason) if reason is not None else None),
                  joules if available else None, calls=calls, seconds=f.number(e, "seconds", p),
                  meter=f.text(e, "meter", p))


def _outcome(f: _Fields, raw: Any) -> Outcome | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise f.fail("outcome", raw, "an object")
    try:
        status = Status(raw.get("outcome"))
    except ValueError:
        raise f.fail("outcome.outcome", raw.get("outcome"), "one of " + ", ".join(s.value for s in Status)) from None
    notes = raw.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise f.fail("outcome.notes", notes, "a list of strings")
    return Outcome(status, tuple(notes))


class _Fields:
    """Typed reads of one record's fields; errors name the file, the cell and the field."""

    def __init__(self, where: str, cell: str):
        self.where, self.cell = where, cell

    def fail(self, key: str, value: Any, want: str) -> ResultsError:
        return ResultsError(f"{self.where}cell {self.cell}: {key} is {value!r}, expected {want}")

    def number(self, d: Mapping, key: str, prefix: str = "") -> float | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(prefix + key, v, "a number")
        return float(v)

    def integer(self, d: Mapping, key: str, prefix: str = "") -> int | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise self.fail(prefix + key, v, "an integer")
        return int(v)

    def text(self, d: Mapping, key: str, prefix: str = "") -> str | None:
        v = d.get(key)
        if v is not None and not isinstance(v, str):
            raise self.fail(prefix + key, v, "a string")
        return v

    def numbers(self, d: Mapping, key: str, prefix: str = "", cast=float) -> tuple:
        v = d.get(key)
        if v is None:
            return ()
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise self.fail(prefix + key, v if not isinstance(v, list) else "a list with a non-number", "a list of numbers")
        if cast is int and any(isinstance(x, float) and not x.is_integer() for x in v):
            raise self.fail(prefix + key, "a list with a non-integer", "a list of integers")
        return tuple(cast(x) for x in v)

    def interval(self, v: Any, key: str) -> tuple[float, float] | None:
        if v is None:
            return None
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise self.fail(key, v, "[low, high]")
        return float(v[0]), float(v[1])

    def mapping(self, d: Mapping, key: str, prefix: str = "") -> Mapping:
        v = d.get(key)
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise self.fail(prefix + key, v, "an object")
        return v

    def number_map(self, d: Mapping, key: str, prefix: str = "") -> dict[str, float]:
        out = {}
        for k, v in self.mapping(d, key, prefix).items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(f"{prefix}{key}.{k}", v, "a number")
            out[str(k)] = v
        return out
