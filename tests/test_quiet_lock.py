"""The quiet lock: no more workers run than there are slots, timing takes one slot (or, alone,
all of them), and no one is starved."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from rlbench.measure.quiet import QuietLock, default_slots


def _reader(path, slots, start, log, stop_at, hold=0.005):
    lock = QuietLock(path, slots=slots)
    start.wait()
    while time.monotonic() < stop_at:
        with lock.shared():
            t0 = time.monotonic()
            time.sleep(hold)
            log.put(("r", t0, time.monotonic()))


def _run_readers(path, slots, n, seconds, hold=0.005):
    ctx = mp.get_context("fork")
    start, log = ctx.Event(), ctx.Queue()
    stop_at = time.monotonic() + seconds
    readers = [ctx.Process(target=_reader, args=(path, slots, start, log, stop_at, hold)) for _ in range(n)]
    for p in readers:
        p.start()
    start.set()
    return readers, log


def _drain(readers, log):
    events = []
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in readers) or not log.empty():
        while not log.empty():
            events.append(log.get())
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for p in readers:
        p.join(5)
    return events


def _time_section(lock, hold=0.3):
    """After the readers are under way, take the timing lock for ``hold`` s: (requested, in, out)."""
    time.sleep(0.2)
    t_req = time.monotonic()
    with lock.timing():
        t_in = time.monotonic()
        time.sleep(hold)
        t_out = time.monotonic()
    return t_req, t_in, t_out


def _max_overlap(intervals):
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    depth = peak = 0
    for _, d in edges:
        depth += d
        peak = max(peak, depth)
    return peak


def test_no_more_holders_than_slots_and_all_slots_used(tmp_path):
    readers, log = _run_readers(tmp_path / "q", slots=2, n=5, seconds=1.0, hold=0.01)
    events = _drain(readers, log)
    intervals = [(a, b) for _, a, b in events]
    assert len(intervals) > 50
    assert _max_overlap(intervals) == 2  # never 3 of the 5 at once, but 2 do run together


def test_timing_shares_the_machine_with_at_most_slots_minus_one(tmp_path):
    path = tmp_path / "q"
    readers, log = _run_readers(path, slots=2, n=4, seconds=1.2)
    t_req, t_in, t_out = _time_section(QuietLock(path, slots=2, timing="cores"))
    events = _drain(readers, log)
    during = [(max(a, t_in), min(b, t_out)) for _, a, b in events if a < t_out and b > t_in]
    assert during, "no background chunk ran beside the timing: the other core idled"
    assert _max_overlap(during) == 1  # one neighbour at a time, never two
    assert t_in - t_req < 0.1, "the timing waited longer than a few chunks (starved)"


def test_exclusive_holder_runs_alone(tmp_path):
    path = tmp_path / "q"
    readers, log = _run_readers(path, slots=2, n=3, seconds=1.5)
    t_req, t_in, t_out = _time_section(QuietLock(path, slots=2, timing="alone"))  # alone: exclusive()
    events = _drain(readers, log)
    inside = [a for _, a, b in events if a < t_out and b > t_in]
    assert not inside, f"{len(inside)} reader chunks ran during the exclusive section"
    assert t_in - t_req < 0.1, "the writer waited longer than a few reader chunks (starved)"
    assert any(a > t_out for _, a, _ in events), "readers did not resume after the exclusive section"


def test_shared_is_reentrant_and_exclusive_inside_it_is_refused(tmp_path):
    lock = QuietLock(tmp_path / "q", slots=1)
    with lock.shared():
        with lock.shared():  # a second slot does not exist: re-entry must not wait for one
            pass
        with pytest.raises(RuntimeError, match="own slot"):
            with lock.exclusive():
                pass
    with lock.exclusive():  # released: the one slot is free again
        pass


def test_slots_and_policy_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RLBENCH_QUIET_SLOTS", "3")
    assert default_slots() == 3
    monkeypatch.setenv("RLBENCH_QUIET_TIMING", "alone")
    assert QuietLock(tmp_path / "q").timing_policy == "alone"
    monkeypatch.setenv("RLBENCH_QUIET_SLOTS", "0")
    with pytest.raises(ValueError, match="RLBENCH_QUIET_SLOTS must be a whole number of at least 1, got '0'"):
        default_slots()
    monkeypatch.setenv("RLBENCH_QUIET_SLOTS", "2")
    monkeypatch.setenv("RLBENCH_QUIET_TIMING", "quiet")
    with pytest.raises(ValueError, match="RLBENCH_QUIET_TIMING must be one of cores, alone, got 'quiet'"):
        QuietLock(tmp_path / "q")
