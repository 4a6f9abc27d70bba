"""The pytest plugin: options, one session object, one fixture, and result forwarding.

pytest-benchmark disables itself under xdist (pytest-benchmark issue #65), so
``pytest bench -n 8 --benchmark-json out.json`` would write nothing. Cells therefore time
with rlbench's interleaved harness inside the worker, compute the statistics with
pytest-benchmark's own ``Stats``, and attach them to the test report. The controller (the
only process under xdist that writes files) turns each into an entry of pytest-benchmark's
session, so pytest-benchmark itself writes ``--benchmark-json``, ``--benchmark-save`` and its
table, in its own schema, with or without xdist. Stored baselines are likewise written only
by the controller, once, at the end of the session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RESULT_KEY = "rlbench_result"


def pytest_addoption(parser):
    group = parser.getgroup("rlbench", "rlbench benchmark cells")
    group.addoption("--rlbench-update-baselines", action="store_true", default=False,
                    help="record the figures of the cells that ran into baselines/ (atomically; only those "
                         "cells). Default: %(default)r")
    group.addoption("--rlbench-strict", action="store_true", default=False,
                    help="fail, rather than skip, a cell whose policy is not shipped. Default: %(default)r")
    group.addoption("--rlbench-baselines", metavar="DIR", default=None,
                    help="baselines directory. Default: the repository's baselines/")
    group.addoption("--rlbench-gate-latency", action="store_true", default=False,
                    help="also fail cells whose latency ratios moved beyond tolerance (off by default: "
                         "see README, 'Latency under -n'). Default: %(default)r")
    group.addoption("--rlbench-rounds", metavar="N", type=int, default=40,
                    help="interleaved latency rounds per cell. Default: %(default)r")


@dataclass
class RLBenchSession:
    """Options read once, and the stores the fixtures hand out."""

    update: bool
    strict: bool
    rounds: int
    store: object
    gate_latency: bool = False
    results: dict = field(default_factory=dict)
    missing: dict = field(default_factory=dict)
    written: list = field(default_factory=list)

    @classmethod
    def from_config(cls, config) -> RLBenchSession:
        from rlbench.baselines import BaselineStore
        from rlbench.paths import baselines_dir
        from rlbench.versions import machine_id

        root = Path(config.getoption("rlbench_baselines") or baselines_dir())
        return cls(update=config.getoption("rlbench_update_baselines"), strict=config.getoption("rlbench_strict"),
                   rounds=config.getoption("rlbench_rounds"), store=BaselineStore(root, machine_id()),
                   gate_latency=config.getoption("rlbench_gate_latency"))


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    from rlbench.envs import quiet_mujoco
    from rlbench.runtime import pin_threads

    pin_threads(1)
    quiet_mujoco()
    config._rlbench = RLBenchSession.from_config(config)
    if not _is_worker(config):
        config.pluginmanager.register(_Collector(config), "rlbench-collector")


class _Collector:
    """Controller side: gathers cell results from reports (local or from xdist workers)."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        rs: RLBenchSession = self.config._rlbench
        for key, value in report.user_properties:
            if key != RESULT_KEY:
                continue
            payload = json.loads(value)
            rs.results[payload["cell"]] = payload
            bs = getattr(self.config, "_benchmarksession", None)
            if bs is not None:
                bs.benchmarks.append(_ForwardedBenchmark(payload))


@pytest.fixture(scope="session")
def rlbench_session(pytestconfig) -> RLBenchSession:
    return pytestconfig._rlbench


@pytest.fixture
def record_cell(request):
    """Attach a :class:`~rlbench.cell.CellResult` to the report (crosses xdist to the controller)."""

    def _record(result) -> None:
        payload = {"cell": result.cell, "figures": result.figures, "machine": result.machine,
                   "benchmark": result.benchmark, "nodeid": request.node.nodeid, "name": request.node.name}
        request.node.user_properties.append((RESULT_KEY, json.dumps(payload)))

    return _record


class _ForwardedBenchmark:
    """Quacks like pytest-benchmark's ``Metadata`` for stats computed in a worker."""

    has_error = False
    cprofile_stats = None

    def __init__(self, payload: dict):
        self.name = payload["name"]
        self.fullname = payload["nodeid"]
        self.group = None
        self.param = payload["cell"]
        self.params = {"cell": payload["cell"]}
        self.extra_info = {"figures": payload["figures"], "machine_figures": payload["machine"]}
        self.options = {"timer": "perf_counter", "interleaved": True, "threads": 1}
        self._stats = dict(payload["benchmark"])
        self.iterations = self._stats.get("iterations", 1)
        self.stats = self

    def __bool__(self):
        return True

    def __getitem__(self, key):
        return self._stats[key] if key in self._stats else getattr(self, key)

    def get(self, key, default=None):
        return self._stats.get(key, getattr(self, key, default))

    def as_dict(self, include_data=True, flat=False, stats=True, cprofile=None):
        result = {"group": self.group, "name": self.name, "fullname": self.fullname, "params": self.params,
                  "param": self.param, "extra_info": self.extra_info, "options": self.options}
        if stats:
            st = {k: v for k, v in self._stats.items() if include_data or k != "data"}
            if flat:
                result.update(st)
            else:
                result["stats"] = st
        return result


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _is_worker(config):
        return
    rs: RLBenchSession = config._rlbench
    if rs.update and rs.results:
        from rlbench.versions import machine_info

        figures = {c: r["figures"] for c, r in rs.results.items()}
        machine = {c: r["machine"] for c, r in rs.results.items()}
        rs.written = rs.store.update(figures, machine, machine_info())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _is_worker(config):
        return
    rs: RLBenchSession = config._rlbench
    missing = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "NOT SHIPPED" in reason:
            pair = reason.split("NOT SHIPPED: ", 1)[-1].split(":")[0]
            missing[pair] = reason.split("make it with: ", 1)[-1]
    if missing:
        terminalreporter.section("rlbench: policies not shipped (these cells did not run)", yellow=True)
        for pair, cmd in sorted(missing.items()):
            terminalreporter.write_line(f"{pair}: {cmd}")
    if rs.written:
        terminalreporter.section("rlbench: baselines written", green=True)
        terminalreporter.write_line(f"{len(rs.written)} cell(s) into {rs.store.root}: {', '.join(rs.written[:10])}"
                                    + (" ..." if len(rs.written) > 10 else ""))
