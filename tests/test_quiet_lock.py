"""The quiet lock: timing runs alone, rollouts pause for it and are not starved by it."""

from __future__ import annotations

import multiprocessing as mp
import time

from rlbench.measure.quiet import QuietLock


def _reader(path, start, log, stop_at):
    lock = QuietLock(path)
    start.wait()
    while time.monotonic() < stop_at:
        with lock.shared():
            log.put(("r", time.monotonic()))
            time.sleep(0.005)


def test_exclusive_holder_runs_alone(tmp_path):
    ctx = mp.get_context("fork")
    path = tmp_path / "q"
    start, log = ctx.Event(), ctx.Queue()
    stop_at = time.monotonic() + 1.5
    readers = [ctx.Process(target=_reader, args=(path, start, log, stop_at)) for _ in range(3)]
    for p in readers:
        p.start()
    start.set()
    time.sleep(0.2)
    lock = QuietLock(path)
    t_req = time.monotonic()
    with lock.exclusive():
        t_in = time.monotonic()
        time.sleep(0.3)
        t_out = time.monotonic()
    for p in readers:
        p.join(5)
    events = []
    while not log.empty():
        events.append(log.get())
    inside = [t for _, t in events if t_in < t < t_out]
    assert not inside, f"{len(inside)} reader chunks ran during the exclusive section"
    assert t_in - t_req < 0.1, "the writer waited longer than a few reader chunks (starved)"
    assert any(t > t_out for _, t in events), "readers did not resume after the exclusive section"
