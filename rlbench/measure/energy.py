"""Energy meters as context managers with one interface: ``with meter: ...; meter.result()``.

Every meter returns the same frozen :class:`EnergyReading`. Two ways of not measuring are kept
apart. A meter that is absent (no powercap tree, no RAPL package domain, no NVML library, driver or
GPU) returns a reading with ``available=False``, ``joules=None`` and a ``reason`` saying what is
missing: on such a machine an energy cell is skipped. A meter that is present but fails (a counter
it cannot read: permission denied, an I/O error, text that is not a number; a counter that went
backwards) returns a reading with ``failed=True`` too, whose reason names the meter and the error;
:meth:`EnergyMeter.probe` and :func:`measure_energy_per_inference` raise :class:`MeterError` for
it, and an energy cell fails. A number is never made up: callers must be able to tell "0 J" from
"could not measure".

Why not pyRAPL (the package on the design card): it has been unmaintained since 2019, it
does not handle counter wraparound (a wrapped window yields a huge negative or garbage
figure), and it reads only the package/dram domains of whole sockets. :class:`RaplMeter`
reads the Linux powercap sysfs tree directly: every package and sub-domain, with wraparound.

Why ``nvidia-ml-py`` rather than the ``pynvml`` PyPI package: the latter is a deprecated
third-party wrapper; ``nvidia-ml-py`` is NVIDIA's maintained binding and is what provides
the ``pynvml`` module imported here (``pip install nvidia-ml-py``, extra ``rlbench[gpu]``).

Windows must be shorter than one counter wrap period: a single wrap per window is corrected,
two are not detectable. With a 32-bit microjoule range (~4295 J) that is ~60 s at ~70 W;
many CPUs report a far larger ``max_energy_range_uj`` (hours). Keep windows to seconds.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rlbench.core.errors import MeasurementError

SCHEMA = 1
POWERCAP = "/sys/class/powercap"
_PACKAGE_DIR = re.compile(r"intel-rapl:\d+")  # top level; "intel-rapl:0:0" is a sub-domain


MAX_WATTS = 1000.0
"""A RAPL counter lower at the end of a window than at its start wrapped once, unless the wrap
would mean more than this mean power in one domain: then it went backwards (a reset, a driver
bug). No CPU package, DRAM or platform domain draws a kilowatt."""


class Unavailable(Exception):
    """Raised inside a meter that is absent here; its text becomes ``reading.reason``."""


class Fault(Exception):
    """Raised inside a meter that is present but fails; its text becomes the error in ``reading.reason``."""


class MeterError(MeasurementError):
    """A present energy meter failed: the message names the meter and the error."""


@dataclass(frozen=True)
class EnergyReading:
    """One measured window. Mappings are read-only views so the reading stays immutable."""

    meter: str
    available: bool
    reason: str | None
    joules: float | None
    """Total over the window; for RAPL the sum of ``package-N`` domains only."""
    domains: Mapping[str, float] = field(default_factory=dict)
    """Joules per domain, sub-domains included (they overlap the packages: do not sum)."""
    seconds: float | None = None
    """Wall time of the window (``time.perf_counter`` unless a clock was injected)."""
    samples: Mapping[str, tuple[int | float, int | float]] = field(default_factory=dict)
    """Raw (start, end) counter values per domain, in ``raw_unit``."""
    raw_unit: str = "J"
    unit: str = "J"
    failed: bool = False
    """The meter is present but failed (``reason`` names it and the error), as opposed to absent."""
    schema: int = SCHEMA

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))
        object.__setattr__(self, "samples", MappingProxyType(dict(self.samples)))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (mapping proxies and tuples become dicts and lists)."""
        return {
            "meter": self.meter, "available": self.available, "reason": self.reason,
            "joules": self.joules, "domains": dict(self.domains), "seconds": self.seconds,
            "samples": {k: list(v) for k, v in self.samples.items()},
            "raw_unit": self.raw_unit, "unit": self.unit, "failed": self.failed, "schema": self.schema,
        }


class EnergyMeter:
    """Base of all meters: sample counters on enter and exit, turn the deltas into joules.

    Subclasses implement :meth:`_sample` (raw counters per domain, or raise :class:`Unavailable`
    when absent, :class:`Fault` when failing) and :meth:`_joules`. The base owns timing and error
    handling so every meter behaves the same way. A meter can be reused; each ``with`` makes a new
    result.
    """

    name = "meter"
    raw_unit = "J"

    def __init__(self, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._reading: EnergyReading | None = None
        self._start: dict[str, int | float] = {}
        self._error: str | None = None
        self._failed = False
        self._t0 = 0.0

    def _sample(self) -> dict[str, int | float]:
        raise NotImplementedError

    def _joules(self, domain: str, start: int | float, end: int | float, seconds: float) -> float:
        return float(end - start)

    def _failure(self, fault: Fault) -> str:
        return f"energy meter {self.name} failed: {fault}"

    def _total(self, deltas: Mapping[str, float]) -> float:
        return sum(deltas.values())

    def probe(self) -> str | None:
        """Take one sample: ``None`` if this meter can measure here, else why it is absent.

        Raises :class:`MeterError` if the meter is present but fails.
        """
        try:
            self._sample()
        except Unavailable as e:
            return str(e)
        except Fault as e:
            raise MeterError(self._failure(e)) from None
        return None

    def __enter__(self) -> EnergyMeter:
        self._reading, self._error, self._failed, self._start = None, None, False, {}
        try:
            self._start = self._sample()
        except Unavailable as e:
            self._error = str(e)
        except Fault as e:
            self._error, self._failed = self._failure(e), True
        self._t0 = self._clock()
        return self

    def __exit__(self, *exc: object) -> bool:
        seconds = self._clock() - self._t0
        common = dict(meter=self.name, seconds=seconds, raw_unit=self.raw_unit)
        if self._error is None:
            try:
                end = self._sample()
                deltas = {d: self._joules(d, s, end[d], seconds) for d, s in self._start.items()}
                self._reading = EnergyReading(
                    available=True, reason=None, joules=self._total(deltas), domains=deltas,
                    samples={d: (s, end[d]) for d, s in self._start.items()}, **common)
                return False
            except Unavailable as e:
                self._error = str(e)
            except Fault as e:
                self._error, self._failed = self._failure(e), True
        self._reading = EnergyReading(available=False, reason=self._error, joules=None, failed=self._failed, **common)
        return False  # never swallow the body's exception

    def result(self) -> EnergyReading:
        """The reading of the last completed ``with`` block."""
        if self._reading is None:
            raise RuntimeError(f"{self.name}: result() is only defined after the with-block exits")
        return self._reading


def _read_text(path: Path) -> str:
    return path.read_text()


class RaplMeter(EnergyMeter):
    """Intel/AMD RAPL through powercap sysfs: every ``intel-rapl*`` domain under ``root``.

    Domains are keyed ``"<dir>/<name>"`` (e.g. ``intel-rapl:0:0/core``) because sub-domain
    names repeat across sockets. The total sums only top-level ``intel-rapl:N`` dirs named
    ``package-N``: sub-domains (core, uncore, dram) and ``psys`` (whole platform, which
    contains the packages) would be double counted; ``intel-rapl-mmio`` duplicates a package.
    ``read`` is injectable because root can read a chmod-000 file, so tests cannot rely on it.

    Absent: no ``root``, or no package domain under it. Failing: a counter file that cannot be
    read or does not hold an integer, or a counter that went backwards (see :data:`MAX_WATTS`).
    """

    name = "rapl"
    raw_unit = "uJ"

    def __init__(self, root: str | Path = POWERCAP, *, read: Callable[[Path], str] = _read_text,
                 clock: Callable[[], float] = time.perf_counter, max_watts: float = MAX_WATTS) -> None:
        super().__init__(clock=clock)
        self.root = Path(root)
        self._read = read
        self.max_watts = max_watts
        self._dirs: dict[str, Path] = {}
        self._max: dict[str, int] = {}
        self._packages: set[str] = set()

    def _text(self, path: Path) -> str:
        try:
            return self._read(path).strip()
        except PermissionError as e:
            raise Fault(
                f"cannot read {path}: permission denied (energy_uj is root-only since Linux "
                "5.10, CVE-2020-8694); needs root or a udev rule / chmod a+r on energy_uj") from e
        except OSError as e:
            raise Fault(f"cannot read {path}: {e.strerror or e}") from e

    def _int(self, path: Path) -> int:
        text = self._text(path)
        try:
            return int(text)
        except ValueError as e:
            raise Fault(f"{path} does not hold an integer: {text!r}") from e

    def _discover(self) -> None:
        if not self.root.is_dir():
            raise Unavailable(f"{self.root} is missing (no powercap sysfs: not Linux, "
                              "a VM without RAPL passthrough, or /sys not mounted)")
        dirs, maxes, packages = {}, {}, set()
        for d in sorted(self.root.iterdir()):
            if not d.name.startswith("intel-rapl") or not (d / "energy_uj").exists():
                continue  # e.g. the "intel-rapl" control-type dir has no counter
            key = f"{d.name}/{self._text(d / 'name')}"
            dirs[key], maxes[key] = d, self._int(d / "max_energy_range_uj")
            if _PACKAGE_DIR.fullmatch(d.name) and key.split("/")[1].startswith("package"):
                packages.add(key)
        if not packages:
            raise Unavailable(f"no intel-rapl:N package domain with energy_uj under {self.root}")
        self._dirs, self._max, self._packages = dirs, maxes, packages

    def _sample(self) -> dict[str, int]:
        if not self._dirs:
            self._discover()
        return {key: self._int(d / "energy_uj") for key, d in self._dirs.items()}

    def _joules(self, domain: str, start: int, end: int, seconds: float) -> float:
        if end >= start:
            return (end - start) / 1e6
        wrapped = (end + self._max[domain] - start) / 1e6  # one wrap...
        if wrapped > self.max_watts * seconds:  # ...or a counter that went backwards
            raise Fault(f"the counter of {domain} went backwards ({start} -> {end} uJ in {seconds:.3g} s; as one wrap "
                        f"of its {self._max[domain]} uJ range that would be {wrapped:.4g} J, over {self.max_watts:g} W)")
        return wrapped

    def _total(self, deltas: Mapping[str, float]) -> float:
        return sum(j for key, j in deltas.items() if key in self._packages)


NVML_ABSENT = frozenset({"NVMLError_LibraryNotFound", "NVMLError_DriverNotLoaded", "NVMLError_NotFound",
                         "NVMLError_InvalidArgument", "NVMLError_NotSupported", "NVMLError_FunctionNotFound"})
"""pynvml's errors (classes it makes per NVML return code) that mean no NVML meter here."""


class NvmlMeter(EnergyMeter):
    """NVIDIA GPU energy via NVML's total-energy counter (mJ since driver load, Volta+).

    ``nvml`` is the ``pynvml`` module (from ``nvidia-ml-py``); pass a fake to test without a
    GPU. Initialisation is lazy, so constructing the meter never fails.

    Absent: no ``pynvml`` module, or one of :data:`NVML_ABSENT` (no library, driver or GPU, or
    a GPU without an energy counter). Any other NVML error, or a counter that went backwards, is
    a failure.
    """

    name = "nvml"
    raw_unit = "mJ"

    def __init__(self, index: int = 0, *, nvml: Any = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(clock=clock)
        self.index = index
        self._nvml = nvml
        self._handle: Any = None

    def _sample(self) -> dict[str, int]:
        try:
            if self._handle is None:
                if self._nvml is None:
                    self._nvml = importlib.import_module("pynvml")
                self._nvml.nvmlInit()
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(self.index)
            mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except ImportError as e:
            raise Unavailable(f"NVML: {type(e).__name__}: {e} (pip install nvidia-ml-py)") from e
        except Exception as e:  # NVMLError_* of the return code
            if type(e).__name__ in NVML_ABSENT:
                raise Unavailable(f"NVML: {type(e).__name__}: {e}") from e
            raise Fault(f"NVML: {type(e).__name__}: {e}") from e
        return {f"gpu{self.index}": int(mj)}

    def _joules(self, domain: str, start: int, end: int, seconds: float) -> float:
        if end < start:  # 64-bit counter: going backwards means the driver was reloaded
            raise Fault(f"the NVML energy counter of {domain} went backwards ({start} -> {end} mJ)")
        return (end - start) / 1e3


class NullMeter(EnergyMeter):
    """A meter that never measures; it carries the reason why no real meter is available."""

    name = "null"

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def _sample(self) -> dict[str, int | float]:
        raise Unavailable(self.reason)


def detect_meter(root: str | Path = POWERCAP, *, index: int = 0, nvml: Any = None) -> EnergyMeter:
    """RAPL if a powercap tree with a package domain exists, else NVML if present, else a NullMeter.

    A present meter is returned even if it fails, so that using it reports the failure: a
    machine whose RAPL counters cannot be read is not a machine without a meter.
    """
    rapl = RaplMeter(root)
    try:
        if (rapl_reason := rapl.probe()) is None:
            return rapl
    except MeterError:
        return rapl
    gpu = NvmlMeter(index, nvml=nvml)
    try:
        if (nvml_reason := gpu.probe()) is None:
            return gpu
    except MeterError:
        return gpu
    return NullMeter(f"no RAPL: {rapl_reason}; no NVML: {nvml_reason}")


@dataclass(frozen=True)
class EnergyPerInference:
    """Net energy of ``fn`` calls: busy window minus idle draw scaled to the busy duration."""

    available: bool
    reason: str | None
    calls: int
    seconds: float | None
    busy_joules: float | None
    idle_joules: float | None
    """Idle energy scaled to the busy window's duration (the baseline that is subtracted)."""
    net_joules: float | None
    """May be slightly negative when idle noise exceeds the signal: reported, not clamped."""
    joules_per_1000: float | None
    idle: EnergyReading
    busy: EnergyReading | None

    def to_json(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("available", "reason", "calls", "seconds",
               "busy_joules", "idle_joules", "net_joules", "joules_per_1000")}
        out.update(idle=self.idle.to_json(), busy=self.busy and self.busy.to_json())
        return out


def measure_energy_per_inference(
    fn: Callable[[], object], meter_factory: Callable[[], EnergyMeter], min_window: float = 1.0,
    idle_window: float | None = None, *, sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.perf_counter,
) -> EnergyPerInference:
    """Idle window first (``sleep``), then call ``fn`` for at least ``min_window`` seconds.

    Idle is measured because the counters include everything else on the socket; what
    the policy costs is the difference. Both windows use fresh meters from ``meter_factory``.
    An absent meter gives ``available=False`` and its reason; a failing one raises :class:`MeterError`.
    """
    if min_window <= 0 or (idle_window is not None and idle_window <= 0):
        raise ValueError("min_window and idle_window must be > 0")
    with meter_factory() as idle_meter:
        sleep(min_window if idle_window is None else idle_window)
    idle = idle_meter.result()
    if idle.failed:
        raise MeterError(f"{idle.reason} (idle window)")
    none = dict(busy_joules=None, idle_joules=None, net_joules=None, joules_per_1000=None)
    if not idle.available:
        return EnergyPerInference(False, idle.reason, 0, None, idle=idle, busy=None, **none)
    calls = 0
    with meter_factory() as busy_meter:
        t0 = clock()
        while True:
            fn()
            calls += 1
            if clock() - t0 >= min_window:
                break
    busy = busy_meter.result()
    if busy.failed:
        raise MeterError(f"{busy.reason} (busy window)")
    if not busy.available:
        return EnergyPerInference(False, busy.reason, calls, busy.seconds, idle=idle, busy=busy,
                                  **none)
    assert busy.joules is not None and idle.joules is not None
    assert busy.seconds is not None and idle.seconds is not None
    if idle.seconds <= 0:  # a clock that did not advance: no honest way to scale the idle draw
        return EnergyPerInference(False, "idle window has zero duration", calls, busy.seconds,
                                  idle=idle, busy=busy, **none)
    idle_scaled = idle.joules * busy.seconds / idle.seconds
    net = busy.joules - idle_scaled
    return EnergyPerInference(True, None, calls, busy.seconds, busy.joules, idle_scaled, net,
                              net / calls * 1000, idle=idle, busy=busy)
