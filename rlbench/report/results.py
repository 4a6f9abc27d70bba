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
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlbench.core.cellid import match_cell_id
from rlbench.core.errors import ResultsError
from rlbench.measure.stats import bootstrap_ci
from rlbench.zoo.registry import ALGOS, ENVS, env_short

#: Top-level key that ``rlbench merge`` adds (pytest-benchmark ignores unknown top-level keys).
MERGE_KEY = "rlbench_merge"

QUANT_METHODS: tuple[str, ...] = ("ptdq", "ptsq", "qat")
"""The paper's quantization methods (Table 1), in its column order."""
PRUNE_METHODS: tuple[str, ...] = ("l1", "l2")
"""The paper's pruning norms (Tables 2-3)."""


# ----------------------------------------------------------------------------------------- cell ids


@dataclass(frozen=True)
class CellId:
    """A parsed cell id such as ``SAC-HalfCheetah-v5-l2-0.30``."""

    text: str
    """The id exactly as written in the results file."""
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
    registry's) for every report module; any environment and method are read.

    Raises :class:`ResultsError` naming ``source`` (the file) and the cell for anything else.
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


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Energy:
    """Energy of a cell. ``joules_per_1000`` is ``None`` whenever ``available`` is false."""

    available: bool
    reason: str | None
    joules_per_1000: float | None

    def describe(self) -> str:
        if self.available:
            return f"{self.joules_per_1000:.4g} J/1000"
        return f"no meter: {self.reason or 'no reason recorded'}"


@dataclass(frozen=True)
class RunContext:
    """Where and how a cell ran (``extra_info.rlbench``)."""

    machine_id: str | None
    machine: Mapping[str, Any]
    versions: Mapping[str, Any]
    threads: int | None
    schema: int | None


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
class CellRecord:
    """One cell of one results file. Mappings are read-only views; sequences are tuples."""

    cell: CellId
    source: str
    """The results file the record came from."""
    name: str | None
    returns: tuple[float, ...]
    seeds: tuple[int, ...]
    lengths: tuple[int, ...]
    return_mean: float | None
    return_ci: tuple[float, float] | None
    runtime: str | None
    model_bytes: Mapping[str, int]
    bytes_total: int | None
    params: int | None
    int8_weight_tensors: int | None
    channel_ratio: float | None
    param_ratio: float | None
    compression_factor: float | None
    policy_sha256: str | None
    stats: Mapping[str, Any]
    """pytest-benchmark stats of the single-observation latency (seconds)."""
    latency_s: Mapping[str, float]
    latency_cpu_s: Mapping[str, float]
    ratios: Mapping[str, float]
    ratio_ci: Mapping[str, tuple[float, float]]
    memory: Mapping[str, Any]
    energy: Energy | None
    context: RunContext
    argmax_flip: float | None = None
    """Discrete-action cells: the share of the variant's rollout states whose action differs from the
    fp32 policy's (``figures.argmax_flip.fraction``); None for continuous cells."""

    @property
    def id(self) -> str:
        return self.cell.text

    @property
    def method(self) -> str:
        return self.cell.method

    @property
    def latency_median_s(self) -> float | None:
        v = self.stats.get("median")
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None

    def return_stat(self) -> ReturnStat | None:
        """Mean and 95% CI of the return: as recorded, or, when the file has only the per-episode
        returns, derived from them with the suite's own bootstrap. ``None`` without returns."""
        if self.return_mean is not None and self.return_ci is not None:
            return ReturnStat(self.return_mean, self.return_ci[0], self.return_ci[1], len(self.returns))
        if not self.returns:
            return None

        mean = self.return_mean if self.return_mean is not None else sum(self.returns) / len(self.returns)
        lo, hi = self.return_ci if self.return_ci is not None else bootstrap_ci(self.returns)
        return ReturnStat(float(mean), float(lo), float(hi), len(self.returns))


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


class _Fields:
    """Typed reads of one entry's figures; errors name the file, the cell and the key."""

    def __init__(self, source: str, cell: str):
        self.source, self.cell = source, cell

    def fail(self, key: str, value: Any, want: str) -> ResultsError:
        return ResultsError(f"{self.source}: cell {self.cell}: {key} is {value!r}, expected {want}")

    def number(self, d: dict, key: str, prefix: str = "") -> float | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(prefix + key, v, "a number")
        return float(v)

    def integer(self, d: dict, key: str, prefix: str = "") -> int | None:
        v = d.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise self.fail(prefix + key, v, "an integer")
        return int(v)

    def numbers(self, d: dict, key: str, prefix: str = "", cast=float) -> tuple:
        v = d.get(key)
        if v is None:
            return ()
        if not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
            raise self.fail(prefix + key, v if not isinstance(v, list) else "a list with a non-number", "a list of numbers")
        return tuple(cast(x) for x in v)

    def interval(self, v: Any, key: str) -> tuple[float, float] | None:
        if v is None:
            return None
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise self.fail(key, v, "[low, high]")
        return float(v[0]), float(v[1])

    def mapping(self, d: dict, key: str, prefix: str = "") -> dict:
        v = d.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(prefix + key, v, "an object")
        return v

    def number_map(self, d: dict, key: str, prefix: str = "") -> dict[str, float]:
        m = self.mapping(d, key, prefix)
        out = {}
        for k, v in m.items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise self.fail(f"{prefix}{key}.{k}", v, "a number")
            out[str(k)] = v
        return out


def _ro(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


def record_from_entry(entry: dict, source: str) -> CellRecord:
    """One benchmark entry -> :class:`CellRecord` (the entry must have passed :func:`read_results_json`)."""
    cid = parse_cell_id(entry_cell(entry), source)
    f = _Fields(source, cid.text)
    extra = entry["extra_info"]
    fig = extra["figures"]
    mach = f.mapping(extra, "machine_figures", "extra_info.")
    ctx = f.mapping(extra, "rlbench", "extra_info.")
    stats = entry.get("stats")
    if stats is not None and not isinstance(stats, dict):
        raise f.fail("stats", stats, "an object")

    ratio_ci = {}
    for k, v in f.mapping(mach, "ratio_ci", "machine_figures.").items():
        iv = f.interval(v, f"machine_figures.ratio_ci.{k}")
        if iv is not None:
            ratio_ci[str(k)] = iv
    energy = None
    e = f.mapping(mach, "energy", "machine_figures.")
    if e:
        joules = f.number(e, "joules_per_1000", "machine_figures.energy.")
        available = bool(e.get("available")) and joules is not None
        reason = e.get("reason")
        if bool(e.get("available")) and joules is None:
            reason = "meter reported available but recorded no figure"
        energy = Energy(available, None if available else (str(reason) if reason is not None else None),
                        joules if available else None)
    model_bytes = f.number_map(fig, "model_bytes", "figures.")
    return CellRecord(
        cell=cid, source=source, name=entry.get("name"),
        returns=f.numbers(fig, "returns", "figures."), seeds=f.numbers(fig, "seeds", "figures.", int),
        lengths=f.numbers(fig, "lengths", "figures.", int),
        return_mean=f.number(fig, "return_mean", "figures."),
        return_ci=f.interval(fig.get("return_ci"), "figures.return_ci"),
        runtime=fig.get("runtime"),
        model_bytes=_ro({k: int(v) for k, v in model_bytes.items()}),
        bytes_total=f.integer(fig, "bytes_total", "figures."), params=f.integer(fig, "params", "figures."),
        int8_weight_tensors=f.integer(fig, "int8_weight_tensors", "figures."),
        channel_ratio=f.number(fig, "channel_ratio", "figures."), param_ratio=f.number(fig, "param_ratio", "figures."),
        compression_factor=f.number(fig, "compression_factor", "figures."),
        policy_sha256=fig.get("policy_sha256"),
        stats=_ro(stats or {}),
        latency_s=_ro(f.number_map(mach, "latency_s", "machine_figures.")),
        latency_cpu_s=_ro(f.number_map(mach, "latency_cpu_s", "machine_figures.")),
        ratios=_ro(f.number_map(mach, "ratios", "machine_figures.")),
        ratio_ci=_ro(ratio_ci),
        memory=_ro(f.mapping(mach, "memory", "machine_figures.")),
        energy=energy,
        context=RunContext(machine_id=ctx.get("machine_id"), machine=_ro(f.mapping(ctx, "machine", "rlbench.")),
                           versions=_ro(f.mapping(ctx, "versions", "rlbench.")),
                           threads=f.integer(ctx, "threads", "rlbench."),
                           schema=ctx.get("schema")),
        argmax_flip=f.number(f.mapping(fig, "argmax_flip", "figures."), "fraction", "figures.argmax_flip."),
    )
