"""The pytest plugin: options, one session object, one fixture, and result forwarding.

pytest-benchmark disables itself under xdist (pytest-benchmark issue #65), so
``pytest bench -n 8 --benchmark-json out.json`` would write nothing. Cells therefore time
with rlbench's interleaved harness inside the worker, compute the statistics with
pytest-benchmark's own ``Stats``, and attach them to the test report. The controller (the
only process under xdist that writes files) turns each into an entry of pytest-benchmark's
session, so pytest-benchmark itself writes ``--benchmark-json``, ``--benchmark-save`` and its
table, in its own schema, with or without xdist. Stored baselines are likewise written only
by the controller, once, at the end of the session: tests hand their figures to it through the
report (``record_cell``, ``record_energy``, ``record_idle``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rlbench.core.errors import RLBenchError
from rlbench.core.io import Staging
from rlbench.core.paths import baselines_dir
from rlbench.core.versions import library_versions, machine_id
from rlbench.gate import idle
from rlbench.gate.checks import RETURN_UNGATED, Status, outcome
from rlbench.grid.record import CellRecord, Energy, Outcome, RunContext
from rlbench.gate.store import BaselineStore, Recording, is_record_file, recover, write_run
from rlbench.grid import findings
from rlbench.grid.cell import CellOptions, Mode, check_runtime_yardsticks
from rlbench.grid.matrix import method_names, parse_list
from rlbench.grid.shard import order_by_cost, parse_shard, select_shard, stored_figures
from rlbench.measure.int8kernel import probe
from rlbench.measure.machine import machine_info
from rlbench.measure.quiet import quiet_lock
from rlbench.plugin.benchmark import benchmark_stats
from rlbench.core.threads import DEFAULT_THREADS, pin_threads
from rlbench.zoo.registry import canonical_algo, canonical_env

RESULT_KEY = "rlbench_result"
ENERGY_KEY = "rlbench_energy"
STEPS_KEY = "rlbench_env_steps"
OUTCOME_KEY = "rlbench_outcome"
IDLE_KEY = "rlbench_idle"
#: Passing outcomes reported as themselves, with pytest's one-letter progress mark.
OWN_OUTCOMES = {Status.UNGATED: "G", Status.UNSETTLED: "S"}


def pytest_addoption(parser):
    group = parser.getgroup("rlbench", "rlbench benchmark cells")
    group.addoption("--rlbench-update-baselines", action="store_true", default=False,
                    help="record the figures of the cells that ran into baselines/ (atomically; only those "
                         "cells). Default: %(default)r")
    group.addoption("--rlbench-record-machine", action="store_true", default=False,
                    help="record only this machine's figures (latency, RSS, energy; and int8 returns where its "
                         "int8 kernels are not exact) of the cells that ran, leaving baselines/figures.json alone: "
                         "for a new machine or CI runner. Default: %(default)r")
    group.addoption("--rlbench-strict", action="store_true", default=False,
                    help="fail, rather than skip, a cell whose policy is not shipped. Default: %(default)r")
    group.addoption("--rlbench-baselines", metavar="DIR", default=None,
                    help="baselines directory. Default: the repository's baselines/")
    group.addoption("--rlbench-no-latency-gate", action="store_true", default=False,
                    help="record latency ratios but do not fail on them. Default: %(default)r")
    group.addoption("--rlbench-no-memory", action="store_true", default=False,
                    help="skip the fresh-subprocess RSS measurements (faster). Default: %(default)r")
    group.addoption("--rlbench-algo", metavar="A,B", default=None, help="only these algorithms. Default: all")
    group.addoption("--rlbench-env", metavar="E,F", default=None, help="only these environments. Default: all")
    group.addoption("--rlbench-method", metavar="M,N", default=None, help="only these methods. Default: all")
    group.addoption("--rlbench-shard", metavar="K/N", default=None,
                    help="run shard K of N (1-based): a stable slice of the cells balanced by measured cost. "
                         "Default: all cells")
    group.addoption("--rlbench-rounds", metavar="N", type=_rounds, default=40,
                    help=f"interleaved latency rounds per cell, at least {MIN_ROUNDS}. Default: %(default)r")


#: Fewest latency rounds a cell may take: a bootstrap CI of a median needs a few samples.
MIN_ROUNDS = 5


def _rounds(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rlbench-rounds {text!r}: expected an integer >= {MIN_ROUNDS}") from None
    if n < MIN_ROUNDS:
        raise argparse.ArgumentTypeError(f"--rlbench-rounds {n}: expected an integer >= {MIN_ROUNDS}")
    return n


@dataclass
class RLBenchSession:
    """Options read once, and the stores the fixtures hand out."""

    update: bool
    strict: bool
    rounds: int
    store: object
    gate_latency: bool = True
    memory: bool = True
    machine_only: bool = False
    """``--rlbench-record-machine``: a recording run (``update``) that leaves figures.json alone."""
    results: dict[str, CellRecord] = field(default_factory=dict)
    """Per cell id: its record, as the latest measurement of the cell left it."""
    entries: dict = field(default_factory=dict)
    """Per cell id: its ``--benchmark-json`` entry (which shows the record as it is at the end)."""
    energy: dict[str, Energy] = field(default_factory=dict)
    idle: dict = field(default_factory=dict)
    """Per env id: the zero-action returns an update run measured (``idle.json`` entries)."""
    missing: dict = field(default_factory=dict)
    written: list = field(default_factory=list)
    runtime_verdicts: list = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    """Per cell: its outcome and the lines that explain it."""
    other_env_steps: dict = field(default_factory=dict)
    """Environment steps of checks that are not cells (the zoo's return checks), per env id."""
    timeline: dict = field(default_factory=dict)
    """Per worker: its first test's start, last test's end, and the seconds inside cells and other tests."""
    finding_checks: list = field(default_factory=list)
    """A checking run's findings over its own figures laid over the stored ones (:func:`rlbench.grid.findings.check_run`)."""
    findings_before: dict | None = None
    """An update run's ``findings.json`` before it records the findings: the summary prints what changed."""
    finding_errors: list = field(default_factory=list)
    """Why the findings could not be checked (a stored file that does not read): the run fails."""

    @property
    def mode(self) -> Mode:
        return Mode.RECORD_MACHINE if self.machine_only else Mode.UPDATE if self.update else Mode.CHECK

    def cell_options(self) -> CellOptions:
        """How this run measures and judges a cell (:func:`rlbench.grid.cell.measure_and_judge`)."""
        return CellOptions(mode=self.mode, rounds=self.rounds, memory=self.memory, gate_latency=self.gate_latency,
                           strict=self.strict)

    def with_outcome(self, status: Status) -> list[str]:
        """Cells of this run whose outcome was ``status`` (e.g. ungated: a figure went unchecked)."""
        return sorted(c for c, o in self.outcomes.items() if o.status is status)

    @classmethod
    def from_config(cls, config) -> RLBenchSession:
        root = Path(config.getoption("rlbench_baselines") or baselines_dir())
        machine_only = config.getoption("rlbench_record_machine")
        return cls(update=config.getoption("rlbench_update_baselines") or machine_only,
                   strict=config.getoption("rlbench_strict"), machine_only=machine_only,
                   rounds=config.getoption("rlbench_rounds"),
                   store=BaselineStore(root, machine_id(), int8_kernel=probe()),
                   gate_latency=not config.getoption("rlbench_no_latency_gate"),
                   memory=not config.getoption("rlbench_no_memory"))


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import quiet_mujoco

    pin_threads(1)
    quiet_mujoco()
    config._rlbench = RLBenchSession.from_config(config)
    config._rlbench_t0 = time.perf_counter()
    config._rlbench_t0_unix = time.time()  # test reports carry wall-clock start and stop times
    if not _is_worker(config):
        _open_baselines(config)
        config.pluginmanager.register(_Collector(config), "rlbench-collector")
    elif config.workerinput.get("rlbench_staging"):
        Staging.join(config._rlbench.store.root, Path(config.workerinput["rlbench_staging"]), is_record_file).activate()


def _open_baselines(config) -> None:
    """Before any test: complete or discard an interrupted update, refuse a stored file or tolerance
    that does not read (a usage error of one line, not a traceback from a hook), and for an update
    run check that the baselines can be written and open the transaction its figures are staged in."""
    rs: RLBenchSession = config._rlbench
    try:
        config._rlbench_notes = recover(rs.store.root)
    except RLBenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if rs.update:
        try:
            config._rlbench_staging = rs.store.begin_update()
        except RLBenchError as exc:
            raise pytest.UsageError(f"{exc} (checked before measuring: no cell ran)") from None
    try:
        rs.store.check()
        findings.read_stored(rs.store)
        idle.read(rs.store.root)
    except RLBenchError as exc:
        if rs.update:
            config._rlbench_staging.close()
        raise pytest.UsageError(str(exc)) from None
    if rs.update:
        config._rlbench_staging.activate()  # the controller's writes at the end join the update


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: workers join the controller's transaction, so a write of theirs could not bypass it
    (they write none: their figures travel to the controller in the reports)."""
    staging = getattr(node.config, "_rlbench_staging", None)
    if staging is not None:
        node.workerinput["rlbench_staging"] = str(staging.path)


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    for note in getattr(session.config, "_rlbench_notes", []):
        if tr is not None:
            tr.write_line(f"rlbench: {note}", yellow=True)


def pytest_unconfigure(config):
    staging = getattr(config, "_rlbench_staging", None)
    if staging is not None:  # an update that never reached its commit: nothing of it stays
        staging.deactivate()
        staging.close()


class _Collector:
    """Controller side: gathers cell results from reports (local or from xdist workers)."""

    def __init__(self, config):
        self.config = config

    def pytest_runtest_logreport(self, report):
        _add_to_timeline(self.config._rlbench.timeline, report)
        if report.when != "call":
            return
        rs: RLBenchSession = self.config._rlbench
        latest: dict[str, tuple[CellRecord, dict]] = {}  # a confirmation run replaces the first measurement
        for key, value in report.user_properties:
            if key == ENERGY_KEY:
                payload = json.loads(value)
                cell, energy = payload["cell"], Energy.from_json(payload["energy"], payload["cell"])
                rs.energy[cell] = energy
                if cell in rs.results:  # the cell's entry is already in the JSON: add it there
                    rs.results[cell] = rs.results[cell].with_energy(energy)
                    rs.entries[cell].record = rs.results[cell]
            elif key == RESULT_KEY:
                payload = json.loads(value)
                rec = CellRecord.from_json(payload["record"], f"the report of {report.nodeid}")
                latest[rec.id] = (rec, payload)
            elif key == OUTCOME_KEY:
                payload = json.loads(value)
                rs.outcomes[payload["cell"]] = Outcome(Status(payload["outcome"]), tuple(payload["notes"]))
            elif key == IDLE_KEY:
                payload = json.loads(value)
                rs.idle[payload["env_id"]] = payload["entry"]
            elif key == STEPS_KEY:
                payload = json.loads(value)
                rs.other_env_steps[payload["env_id"]] = rs.other_env_steps.get(payload["env_id"], 0) + payload["steps"]
        bs = getattr(self.config, "_benchmarksession", None)
        for cell, (rec, payload) in latest.items():
            if cell in rs.outcomes:
                rec = rec.with_outcome(rs.outcomes[cell])
            if cell in rs.energy:  # its energy test ran first (another worker, or -p randomly)
                rec = rec.with_energy(rs.energy[cell])
            rs.results[cell] = rec
            entry = rs.entries[cell] = _ForwardedBenchmark(rec, payload["nodeid"])
            if bs is not None:
                bs.benchmarks.append(entry)


def _add_to_timeline(timeline: dict, report) -> None:
    """Where each worker's time went, for ``rlbench floor``: before its first test (start-up and
    collection), inside cells, inside other tests, between tests, and after its last test."""
    start, stop = getattr(report, "start", None), getattr(report, "stop", None)
    if start is None or stop is None:
        return
    worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None) or "main"
    w = timeline.setdefault(worker, {"first_start": start, "last_stop": stop, "cells_s": 0.0, "other_tests_s": 0.0})
    w["first_start"], w["last_stop"] = min(w["first_start"], start), max(w["last_stop"], stop)
    w["cells_s" if "::test_cell[" in report.nodeid else "other_tests_s"] += stop - start


def pytest_collection_modifyitems(session, config, items):
    """``--rlbench-algo/env/method`` filters and ``--rlbench-shard`` on cells (other tests untouched),
    then the most expensive tests first (:func:`rlbench.grid.shard.order_by_cost`)."""
    def as_set(values):
        return None if values is None else set(values)

    def method(name):
        if name not in method_names():
            raise pytest.UsageError(f"--rlbench-method: unknown method {name!r}; valid: {', '.join(method_names())}")
        return name

    try:
        algos = as_set(parse_list(config.getoption("rlbench_algo"), canonical_algo))
        envs = as_set(parse_list(config.getoption("rlbench_env"), canonical_env))
    except KeyError as exc:
        raise pytest.UsageError(str(exc)) from None
    methods = as_set(parse_list(config.getoption("rlbench_method"), method))
    shard = config.getoption("rlbench_shard")
    keep, drop = [], []
    for item in items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if cell is None or not hasattr(cell, "variant"):
            keep.append(item)
            continue
        ok = ((algos is None or cell.algo in algos) and (envs is None or cell.env_id in envs)
              and (methods is None or cell.variant.method in methods))
        (keep if ok else drop).append(item)
    stored = stored_figures(config._rlbench.store)  # read once: the shard and the order both weigh by it
    if shard:
        try:
            k, n = parse_shard(shard)
        except RLBenchError as exc:  # a usage error, not an INTERNALERROR from a collection hook
            raise pytest.UsageError(str(exc)) from None
        keep, more = select_shard(keep, k, n, stored)
        drop += more
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = order_by_cost(keep, stored)


@pytest.fixture(scope="session")
def rlbench_session(pytestconfig) -> RLBenchSession:
    return pytestconfig._rlbench


@pytest.fixture
def record_cell(request):
    """Attach a :class:`~rlbench.grid.record.CellRecord` to the report (crosses xdist to the controller):
    its JSON, with pytest-benchmark's statistics of its latency samples and this session's context."""

    def _record(record: CellRecord) -> None:
        record = record.with_stats(benchmark_stats(record.stats)).with_context(
            RunContext(machine_id(), machine_info(), library_versions(), DEFAULT_THREADS))
        payload = {"record": {**record.to_json(), "name": request.node.name}, "nodeid": request.node.nodeid}
        request.node.user_properties.append((RESULT_KEY, json.dumps(payload)))

    return _record


@pytest.fixture
def record_outcome(request):
    """Attach a cell's outcome (from its verdicts) to the report: the terminal shows an ungated or
    unsettled cell as such, and ``--benchmark-json`` holds it."""

    def _record(cell_id: str, verdicts) -> None:
        notes = [v.message for v in verdicts if v.status in (Status.UNGATED, Status.UNSETTLED)]
        request.node.user_properties.append(
            (OUTCOME_KEY, json.dumps({"cell": cell_id, "outcome": str(outcome(verdicts)), "notes": notes})))

    return _record


def pytest_report_teststatus(report, config):
    """An ungated or unsettled cell passes, and is counted and shown as itself (not as "passed")."""
    if report.when != "call" or not report.passed:
        return None
    for key, value in report.user_properties:
        if key == OUTCOME_KEY:
            status = Status(json.loads(value)["outcome"])
            if status in OWN_OUTCOMES:
                return str(status), OWN_OUTCOMES[status], status.upper()
    return None


@pytest.fixture
def record_env_steps(request):
    """Report the environment steps a check that is not a cell made, so ``rlbench floor`` counts them."""

    def _record(env_id: str, steps: int) -> None:
        request.node.user_properties.append((STEPS_KEY, json.dumps({"env_id": env_id, "steps": int(steps)})))

    return _record


@pytest.fixture
def record_idle(request):
    """Hand an environment's measured zero-action returns to the controller, which writes them into
    ``idle.json`` at the end of an update run, with the other stored figures. Returns the entry."""

    def _record(env_id: str, rec) -> dict:
        entry = idle.entry(rec)
        request.node.user_properties.append((IDLE_KEY, json.dumps({"env_id": env_id, "entry": entry})))
        return entry

    return _record


@pytest.fixture
def record_energy(request):
    """Attach an energy figure of a cell to the report (merged into its machine figures)."""

    def _record(cell_id: str, energy: dict) -> None:
        request.node.user_properties.append((ENERGY_KEY, json.dumps({"cell": cell_id, "energy": energy})))

    return _record


class _ForwardedBenchmark:
    """Quacks like pytest-benchmark's ``Metadata`` for a record measured in a worker: its
    ``extra_info`` is the record's JSON, its ``stats`` the record's statistics."""

    has_error = False
    cprofile_stats = None

    def __init__(self, record: CellRecord, nodeid: str):
        self.record = record
        self.name = record.name
        self.fullname = nodeid
        self.group = None
        self.param = record.id
        self.params = {"cell": record.id}
        self.options = {"timer": "perf_counter", "interleaved": True, "threads": 1}
        self._stats = dict(record.stats)
        self.iterations = self._stats.get("iterations", 1)
        self.stats = self

    @property
    def extra_info(self) -> dict:
        out = self.record.to_json(stats=False)
        out.pop("name", None)  # the entry's own
        return out

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


def _quiet_lock_info() -> dict:
    """How timing shared the machine: ``rlbench floor`` counts idle cores only where it ran alone."""
    lock = quiet_lock()
    return {"slots": lock.slots, "timing": lock.timing_policy}


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The session's wall time and parallelism, which ``rlbench floor`` sets against the floor."""
    if _is_worker(config):
        return
    output_json["rlbench"] = {
        "session_wall_seconds": round(time.perf_counter() - config._rlbench_t0, 2),
        "workers": getattr(config.option, "numprocesses", None) or 0,
        "cores": os.cpu_count(),
        "quiet_lock": _quiet_lock_info(),
        "cells": len(config._rlbench.results),
        "other_env_steps": dict(sorted(config._rlbench.other_env_steps.items())),
        "timeline": {"session_start_unix": round(config._rlbench_t0_unix, 3), "session_end_unix": round(time.time(), 3),
                     "workers": {k: {kk: round(vv, 3) for kk, vv in v.items()}
                                 for k, v in sorted(config._rlbench.timeline.items())}},
        "update_baselines": config._rlbench.update,
        "latency_rounds": config._rlbench.rounds,
        "machine_id": config._rlbench.store.machine_id,
        "int8_kernel": config._rlbench.store.int8_kernel,
        "outcomes": {str(status): config._rlbench.with_outcome(status)
                     for status in (Status.REGRESSED, Status.UNGATED, Status.UNSETTLED, Status.IMPROVED,
                                    Status.UNCHANGED)},
        "run_verdicts": [{"metric": str(v.metric), "status": str(v.status), "message": v.message}
                         for v in config._rlbench.runtime_verdicts],
    }


@pytest.hookimpl(hookwrapper=True, tryfirst=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_judge_runtimes(session, exitstatus):
    """The run-level latency gate, before pytest-benchmark's own session finish writes
    ``--benchmark-json``, so the file holds the verdicts."""
    config = session.config
    rs: RLBenchSession | None = None if _is_worker(config) else config._rlbench
    if rs is not None and not rs.update and rs.gate_latency and rs.results:
        rs.runtime_verdicts = check_runtime_yardsticks({c: r.machine_json() for c, r in rs.results.items()}, rs.store)
        if any(v.failed for v in rs.runtime_verdicts) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if _is_worker(config):
        return
    rs: RLBenchSession = config._rlbench
    if rs.update:  # also when only bench/test_findings.py ran: a changed finding rule is recorded that way
        _write_baselines(session, exitstatus)


def _write_baselines(session, exitstatus) -> None:
    """The update's one transaction (:func:`rlbench.gate.store.write_run`): the cells' figures, the
    zero-action returns the run measured (``idle.json``) and the findings over them, or nothing and
    one line saying where the measured figures were saved instead."""
    config = session.config
    rs: RLBenchSession = config._rlbench
    machine = {c: r.machine_json() for c, r in rs.results.items()}
    for c, e in rs.energy.items():
        machine.setdefault(c, {})["energy"] = e.to_json()
    rec = Recording(rs.store.machine_id, rs.store.int8_kernel, {c: r.figures_json() for c, r in rs.results.items()},
                    machine, machine_info(), rs.machine_only)
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    rs.written, config._rlbench_unsaved = write_run(
        rs.store, rec, config._rlbench_staging, stage=[lambda: idle.record_entries(rs.store.root, rs.idle)],
        derived=[lambda s: [f"finding:{k}" for k in findings.record(s)]],
        interrupted=interrupted)
    if config._rlbench_unsaved and not interrupted:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_unsaved(terminalreporter, exitstatus, config):
    """An update that wrote nothing says so, and where its figures went."""
    note = None if _is_worker(config) else getattr(config, "_rlbench_unsaved", None)
    if note:
        terminalreporter.section("rlbench: baselines NOT written", red=True)
        terminalreporter.write_line(note)


@pytest.hookimpl(hookwrapper=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_findings(session, exitstatus):
    """The paper's findings over a checking run's own figures, where all results are gathered: a
    finding the run overturns fails it. On an update run, the findings as stored before it records."""
    config = session.config
    rs: RLBenchSession | None = None if _is_worker(config) else config._rlbench
    if rs is not None:
        try:
            if rs.update:
                rs.findings_before = findings.read_stored(rs.store)
            elif rs.results:
                rs.finding_checks = findings.check_run(rs.store, rs.results)
        except RLBenchError as exc:
            rs.finding_errors.append(f"findings not checked: {exc}")
        failed = rs.finding_errors or findings.overturned_any(rs.finding_checks)
        if failed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    yield


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_findings(terminalreporter, exitstatus, config):
    if _is_worker(config):
        return

    rs: RLBenchSession = config._rlbench
    if rs.finding_checks or rs.finding_errors:
        bad = bool(rs.finding_errors) or findings.overturned_any(rs.finding_checks)
        terminalreporter.section("rlbench: the paper's findings over this run's figures", red=bad, green=not bad)
        for line in findings.summary_lines(rs.finding_checks) + rs.finding_errors:
            terminalreporter.write_line(line)
    if rs.findings_before is not None:  # after the update wrote findings.json: what it changed
        terminalreporter.section(f"rlbench: findings changed by this update ({findings.findings_path(rs.store)})")
        for line in findings.update_lines(rs.store, rs.findings_before):
            terminalreporter.write_line(line)


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
    if rs.runtime_verdicts:
        bad = any(v.failed for v in rs.runtime_verdicts)
        terminalreporter.section("rlbench: run-level latency gates (runtime yardsticks, compression methods)",
                                 red=bad, green=not bad)
        for v in rs.runtime_verdicts:
            terminalreporter.write_line(f"{v.status.upper():10} {v.message}")
    ungated = rs.with_outcome(Status.UNGATED)
    if ungated:
        terminalreporter.section("rlbench: ungated cells (a figure went unchecked; --rlbench-strict fails them)",
                                 yellow=True)
        unrecorded = [c for c in ungated if c not in rs.store.machine_cells()]
        if unrecorded:
            terminalreporter.write_line(
                f"{len(unrecorded)} of {len(rs.results)} cells have no figures for machine {rs.store.machine_id} in "
                f"{rs.store.machine_path}: their returns (but any listed below) and bytes were checked, their latency "
                "and RSS were not. "
                "Record this machine's figures with: pytest bench --rlbench-record-machine -k '<cells>' "
                f"(first: {', '.join(unrecorded[:3])}{' ...' if len(unrecorded) > 3 else ''})")
        for c in ungated:
            for note in rs.outcomes[c].notes:
                if c not in unrecorded or RETURN_UNGATED in note:
                    terminalreporter.write_line(note)
    unsettled = rs.with_outcome(Status.UNSETTLED)
    if unsettled:
        terminalreporter.section("rlbench: unsettled cells (a latency ratio above its limit, CI reaching below "
                                 "it, after one re-time)", yellow=True)
        for c in unsettled:
            for note in rs.outcomes[c].notes:
                terminalreporter.write_line(note)
    if not rs.update and rs.results and (not rs.gate_latency or not rs.memory):
        off = [what for what, on in (("latency (--rlbench-no-latency-gate)", rs.gate_latency),
                                     ("RSS (--rlbench-no-memory)", rs.memory)) if not on]
        terminalreporter.section("rlbench: not gated in this run by option", yellow=True)
        terminalreporter.write_line(f"{' and '.join(off)}: measured where it ran, judged in no cell")
    if rs.written:
        terminalreporter.section("rlbench: baselines written", green=True)
        terminalreporter.write_line(f"{len(rs.written)} cell(s) into {rs.store.root}: {', '.join(rs.written[:10])}"
                                    + (" ..." if len(rs.written) > 10 else ""))
