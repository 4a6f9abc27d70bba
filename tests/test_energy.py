"""Energy meters on fake powercap trees and a fake NVML: exact joules, an honest "absent", or a
failure naming the meter and the error."""

from __future__ import annotations

import dataclasses
import errno
import itertools
import json
from pathlib import Path

import pytest

from rlbench.measure.energy import (
    EnergyMeter,
    EnergyReading,
    MeterError,
    NullMeter,
    NvmlMeter,
    RaplMeter,
    detect_meter,
    measure_energy_per_inference,
)

MAX32 = 2**32  # a 32-bit microjoule range, as on some CPUs


def make_domain(root: Path, dirname: str, name: str, uj: int, max_uj: int = MAX32) -> Path:
    d = root / dirname
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def set_uj(d: Path, uj: int) -> None:
    (d / "energy_uj").write_text(f"{uj}\n")


def seconds_clock(step: float = 1.0):
    """A clock that advances ``step`` seconds per reading: a window of one step, whatever the machine does."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


def refusing(bad: Path, error: OSError):
    """A sysfs read that raises ``error`` for ``bad`` (root ignores chmod 000, so the kernel's refusal is injected)."""
    def read(path: Path) -> str:
        if path == bad:
            raise error
        return path.read_text()
    return read


@pytest.fixture
def tree(tmp_path):
    """Two sockets, a core and dram sub-domain, psys and an mmio duplicate of package-0."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # control-type dir without a counter
    return root, {
        "p0": make_domain(root, "intel-rapl:0", "package-0", 1_000_000),
        "core0": make_domain(root, "intel-rapl:0:0", "core", 500_000),
        "dram0": make_domain(root, "intel-rapl:0:1", "dram", 0),
        "p1": make_domain(root, "intel-rapl:1", "package-1", 2_000_000),
        "psys": make_domain(root, "intel-rapl:2", "psys", 10_000_000),
        "mmio": make_domain(root, "intel-rapl-mmio:0", "package-0", 7_000_000),
    }


def test_rapl_normal_reading_sums_packages_only(tree):
    root, d = tree
    meter = RaplMeter(root)
    with meter:
        set_uj(d["p0"], 2_500_000)  # +1.5 J
        set_uj(d["core0"], 1_500_000)  # +1.0 J, inside package-0
        set_uj(d["dram0"], 250_000)  # +0.25 J
        set_uj(d["p1"], 2_750_000)  # +0.75 J
        set_uj(d["psys"], 15_000_000)  # +5 J, contains the packages
        set_uj(d["mmio"], 8_500_000)  # +1.5 J, duplicates package-0
    r = meter.result()
    assert r.available and r.reason is None
    assert r.joules == 1.5 + 0.75  # no core/dram/psys/mmio in the total
    assert dict(r.domains) == {
        "intel-rapl:0/package-0": 1.5, "intel-rapl:0:0/core": 1.0, "intel-rapl:0:1/dram": 0.25,
        "intel-rapl:1/package-1": 0.75, "intel-rapl:2/psys": 5.0,
        "intel-rapl-mmio:0/package-0": 1.5,
    }
    assert r.samples["intel-rapl:0/package-0"] == (1_000_000, 2_500_000)
    assert r.unit == "J" and r.raw_unit == "uJ" and r.schema == 1 and r.seconds >= 0
    json.dumps(r.to_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.joules = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.domains["intel-rapl:0/package-0"] = 0.0  # type: ignore[index]


def test_rapl_wraparound_uses_domain_range(tmp_path):
    root = tmp_path / "powercap"
    p0 = make_domain(root, "intel-rapl:0", "package-0", MAX32 - 300_000)
    p1 = make_domain(root, "intel-rapl:1", "package-1", 999_000, max_uj=1_000_000)
    meter = RaplMeter(root, clock=seconds_clock())
    with meter:
        set_uj(p0, 200_000)  # wrapped: 300_000 to the top + 200_000 = 0.5 J
        set_uj(p1, 1_000)  # wrapped with its own range: 1_000 + 1_000 = 0.002 J
    r = meter.result()
    assert r.domains["intel-rapl:0/package-0"] == 0.5
    assert r.domains["intel-rapl:1/package-1"] == 0.002
    assert r.joules == pytest.approx(0.502, abs=1e-12)


@pytest.mark.parametrize(("error", "says"), [
    (PermissionError(errno.EACCES, "Permission denied"), "permission denied (energy_uj is root-only"),
    (OSError(errno.EIO, "Input/output error"), "Input/output error"),
])
def test_a_present_rapl_meter_that_cannot_read_a_counter_fails_naming_meter_and_error(tree, error, says):
    root, d = tree
    bad = d["p1"] / "energy_uj"
    meter = RaplMeter(root, read=refusing(bad, error))
    with pytest.raises(MeterError, match=r"^energy meter rapl failed: cannot read .*") as exc:
        meter.probe()
    assert str(bad) in str(exc.value) and says in str(exc.value)
    with meter:
        pass
    r = meter.result()  # a reading still, never a number: failed, not absent
    assert r.failed and not r.available and r.joules is None and dict(r.domains) == {}
    assert str(bad) in r.reason and says in r.reason and r.to_json()["failed"] is True
    with pytest.raises(MeterError, match=rf"energy meter rapl failed: cannot read {bad}.*\(idle window\)"):
        measure_energy_per_inference(lambda: None, lambda: RaplMeter(root, read=refusing(bad, error)),
                                     min_window=0.01, sleep=lambda s: None)
    assert isinstance(detect_meter(root, nvml=FakeNvml()), RaplMeter)  # present: not passed over for NVML


def test_a_rapl_counter_that_goes_backwards_fails_and_one_that_wraps_does_not(tree):
    root, d = tree
    meter = RaplMeter(root, clock=seconds_clock())
    with meter:
        set_uj(d["p1"], 1_999_000)  # 1 mJ lower: as a wrap of the 32-bit range, 4295 J in 1 s
    r = meter.result()
    assert r.failed and r.joules is None
    assert r.reason.startswith("energy meter rapl failed: the counter of intel-rapl:1/package-1 went backwards "
                               "(2000000 -> 1999000 uJ in 1 s")
    with meter:  # a true wrap: 100 J over the top in 1 s
        set_uj(d["p1"], MAX32 - 50_000_000)
    with meter:
        set_uj(d["p1"], 50_000_000)
    assert meter.result().domains["intel-rapl:1/package-1"] == 100.0 and not meter.result().failed


def test_a_rapl_counter_that_is_not_a_number_fails(tree):
    root, d = tree
    (d["p0"] / "energy_uj").write_text("garbage\n")
    with pytest.raises(MeterError, match=r"energy meter rapl failed: .*intel-rapl:0/energy_uj does not hold an integer"):
        RaplMeter(root).probe()


def test_rapl_counter_lost_inside_window_fails(tree):
    root, d = tree
    meter = RaplMeter(root)
    with meter:
        (d["core0"] / "energy_uj").unlink()
    r = meter.result()
    assert r.failed and not r.available and r.joules is None and "intel-rapl:0:0" in r.reason


def test_rapl_without_a_package_domain_is_absent(tmp_path):
    root = tmp_path / "powercap"
    make_domain(root, "intel-rapl:0:0", "core", 0)  # a sub-domain only
    meter = RaplMeter(root)
    assert "no intel-rapl:N package domain" in meter.probe()
    with meter:
        pass
    assert not meter.result().failed and not meter.result().available


def test_rapl_missing_tree(tmp_path):
    root = tmp_path / "nope"
    meter = RaplMeter(root)
    with meter:
        pass
    r = meter.result()
    assert not r.available and not r.failed and r.joules is None and str(root) in r.reason


def test_result_before_exit_raises(tree):
    with pytest.raises(RuntimeError):
        RaplMeter(tree[0]).result()


def nvml_error(name: str, text: str) -> Exception:
    """An error like pynvml's, which makes one class per NVML return code."""
    return type(name, (Exception,), {})(text)


class FakeNvml:
    """Just the pynvml calls the meter uses; the counter advances by ``step_mj`` per read."""

    def __init__(self, start_mj: int = 1_000_000, step_mj: int = 2_500, init_error=None):
        self.mj, self.step, self.init_error = start_mj, step_mj, init_error

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        value, self.mj = self.mj, self.mj + self.step
        return value


def test_nvml_fake_counter():
    meter = NvmlMeter(1, nvml=FakeNvml())
    with meter:
        pass
    r = meter.result()
    assert r.available and r.joules == 2.5 and dict(r.domains) == {"gpu1": 2.5}
    assert r.samples["gpu1"] == (1_000_000, 1_002_500) and r.raw_unit == "mJ"


def test_nvml_without_a_driver_is_absent():
    meter = NvmlMeter(nvml=FakeNvml(init_error=nvml_error("NVMLError_DriverNotLoaded", "Driver Not Loaded")))
    assert "Driver Not Loaded" in meter.probe()
    with meter:
        pass
    r = meter.result()
    assert not r.available and not r.failed and r.joules is None and "Driver Not Loaded" in r.reason


def test_nvml_that_errs_or_goes_backwards_fails_naming_meter_and_error():
    lost = NvmlMeter(nvml=FakeNvml(init_error=nvml_error("NVMLError_GpuIsLost", "GPU is lost")))
    with pytest.raises(MeterError, match=r"energy meter nvml failed: NVML: NVMLError_GpuIsLost: GPU is lost"):
        lost.probe()
    meter = NvmlMeter(nvml=FakeNvml(step_mj=-5))
    with meter:
        pass
    r = meter.result()
    assert r.failed and r.joules is None
    assert r.reason == "energy meter nvml failed: the NVML energy counter of gpu0 went backwards (1000000 -> 999995 mJ)"


def test_null_meter_and_detect(tmp_path, tree):
    null = NullMeter("no meter on this box")
    with null:
        pass
    assert null.result().reason == "no meter on this box" and null.result().joules is None

    no_gpu = FakeNvml(init_error=nvml_error("NVMLError_LibraryNotFound", "no libnvidia-ml"))
    m = detect_meter(tmp_path / "nope", nvml=no_gpu)
    assert isinstance(m, NullMeter)
    assert "no RAPL" in m.reason and str(tmp_path / "nope") in m.reason
    assert "no NVML" in m.reason and "no libnvidia-ml" in m.reason
    assert isinstance(detect_meter(tmp_path / "nope", nvml=FakeNvml()), NvmlMeter)
    assert isinstance(detect_meter(tree[0], nvml=no_gpu), RaplMeter)
    failing = FakeNvml(init_error=nvml_error("NVMLError_Unknown", "unknown error"))
    assert isinstance(detect_meter(tmp_path / "nope", nvml=failing), NvmlMeter)  # present, failing: not a NullMeter


class World:
    """Deterministic clock and energy: sleeping draws 8 W, each fn() call 0.375 s at 32 W."""

    def __init__(self):
        self.t, self.j = 0.0, 0.0

    def sleep(self, s: float) -> None:
        self.t, self.j = self.t + s, self.j + 8.0 * s

    def fn(self) -> None:
        self.t, self.j = self.t + 0.375, self.j + 32.0 * 0.375

    def clock(self) -> float:
        return self.t


class WorldMeter(EnergyMeter):
    name = "fake"

    def __init__(self, world: World):
        super().__init__(clock=world.clock)
        self.world = world

    def _sample(self):
        return {"fake": self.world.j}


def test_energy_per_inference_subtracts_scaled_idle():
    w = World()
    res = measure_energy_per_inference(w.fn, lambda: WorldMeter(w), min_window=1.0,
                                       sleep=w.sleep, clock=w.clock)
    assert res.available and res.reason is None
    assert res.calls == 3 and res.seconds == 1.125  # 3 x 0.375 s >= 1.0 s
    assert res.busy_joules == 36.0  # 32 W x 1.125 s
    assert res.idle.joules == 8.0 and res.idle.seconds == 1.0
    assert res.idle_joules == 9.0  # 8 W scaled to 1.125 s
    assert res.net_joules == 27.0 and res.joules_per_1000 == 9000.0
    json.dumps(res.to_json())

    w2 = World()
    res2 = measure_energy_per_inference(w2.fn, lambda: WorldMeter(w2), min_window=1.0,
                                        idle_window=2.0, sleep=w2.sleep, clock=w2.clock)
    assert res2.idle.seconds == 2.0 and res2.idle_joules == 9.0 and res2.net_joules == 27.0


def test_energy_per_inference_unavailable_meter():
    calls = []
    res = measure_energy_per_inference(lambda: calls.append(1), lambda: NullMeter("no RAPL here"),
                                       min_window=0.01, sleep=lambda s: None)
    assert not res.available and res.reason == "no RAPL here"
    assert (res.busy_joules, res.idle_joules, res.net_joules, res.joules_per_1000) == (None,) * 4
    assert isinstance(res.idle, EnergyReading) and not res.idle.available
    json.dumps(res.to_json())


def test_this_machine_never_invents_a_number():
    meter = detect_meter()
    with meter:
        pass
    r = meter.result()
    if r.available:
        assert isinstance(r.joules, float) and r.joules >= 0
    else:
        assert r.joules is None and r.reason
    if not Path("/sys/class/powercap").exists():
        assert not isinstance(meter, RaplMeter) and not r.failed  # absent, so an energy cell skips
        assert "/sys/class/powercap is missing" in RaplMeter().probe()
        if not r.available:
            assert "/sys/class/powercap" in r.reason


# -- the grid's energy cells: a failing meter fails, only an absent one skips -------------------------

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parent.parent

METER_CONFTEST = '''
import itertools, os
from pathlib import Path
import pytest
import rlbench.grid.cell as cell
import rlbench.measure.energy as energy

@pytest.fixture(autouse=True)
def meter(monkeypatch, tmp_path):
    root = tmp_path / "powercap"
    d = root / "intel-rapl:0"
    d.mkdir(parents=True)
    (d / "name").write_text("package-0\\n")
    (d / "energy_uj").write_text("5000000\\n")
    (d / "max_energy_range_uj").write_text(f"{2**32}\\n")
    kind = os.environ["METER"]
    if kind == "absent":
        factory = lambda: energy.NullMeter("no RAPL: fake; no NVML: fake")
    elif kind == "permission":
        def read(path):
            if path.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(path))
            return path.read_text()
        factory = lambda: energy.RaplMeter(root, read=read)
    else:  # backwards: each read of the counter 1 mJ lower than the last
        counts = itertools.count()
        def read(path):
            return str(5000000 - 1000 * next(counts)) if path.name == "energy_uj" else path.read_text()
        factory = lambda: energy.RaplMeter(root, read=read)
    monkeypatch.setattr(cell, "detect_meter", factory)
'''


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "outcome", "line"), [
    ("absent", "skipped", "SKIPPED * no meter on this machine: no RAPL: fake; no NVML: fake"),
    ("permission", "failed", "PPO-Hopper-v5-baseline: energy meter rapl failed: cannot read */energy_uj: "
                             "permission denied*"),
    ("backwards", "failed", "PPO-Hopper-v5-baseline: energy meter rapl failed: the counter of "
                            "intel-rapl:0/package-0 went backwards * (idle window)"),
])
def test_an_energy_cell_fails_on_a_failing_meter_and_skips_only_without_one(pytester, monkeypatch, tmp_path,
                                                                           kind, outcome, line):
    pytester.makeconftest(METER_CONFTEST)
    pytester.makepyfile(test_grid=f"import sys\nsys.path.insert(0, {str(REPO / 'bench')!r})\n"
                                  "from test_cells import test_energy  # noqa: F401\n")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("METER", kind)
    monkeypatch.delenv("RLBENCH_BASELINES", raising=False)  # the shipped zoo; no stored figures below
    res = pytester.runpytest_subprocess("-p", "rlbench.plugin.pytest_plugin", "-p", "no:cacheprovider", "-rsf",
                                        f"--rlbench-baselines={tmp_path / 'bl'}", "-k", "PPO-Hopper-v5-baseline")
    res.assert_outcomes(**{outcome: 1})
    res.stdout.fnmatch_lines([line])  # the failure's whole report: one line
    assert "Traceback" not in res.stdout.str() and "During handling" not in res.stdout.str()
