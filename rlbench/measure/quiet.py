"""A cross-process lock that keeps latency timing honest while the grid runs in parallel.

Under ``pytest bench -n 8`` on 2 cores, a worker that times inference shares the cores with
seven others stepping MuJoCo. Measured here, that moved a torch/NumPy latency ratio from 3.5
to 4.3-5.8 even on thread CPU time (caches and frequency are shared too). What moves the ratio
is oversubscription, not a neighbour: on a 2-core Xeon, 15 repeats of three cells' interleaved
timing per condition gave torch-fp32/numpy-ref medians of 4.09 alone, 4.10 with one process
stepping MuJoCo beside it, 4.25 with three and 4.41 with seven (PPO HalfCheetah l2-0.30: 2.82,
2.86, 3.02, 3.06, its spread across repeats 1.6%, 1.8%, 4.4%, 23%).

So the lock has as many slots as the process may use cores (``RLBENCH_QUIET_SLOTS`` overrides).
Every piece of work, background chunks (rollouts, compression builds, memory subprocesses) and
timing alike, holds one slot, so no more processes run than there are cores, and a timing shares
the machine with at most ``slots - 1`` neighbours, each on its own core. The slots are ``flock``
files, tried in turn by whoever is at the head of a queue (a turnstile that everyone passes
through), which polls every few milliseconds while all are taken; so a worker is not starved by
a stream of others, and a process that dies releases its slot. ``exclusive()`` takes every slot
and runs alone: energy windows need it (a package meter counts every core), and
``RLBENCH_QUIET_TIMING=alone`` makes timing do the same (slower: one core idles while a cell
times).

The files coordinate separate pytest processes on one machine too (two CI shards on one runner).
``RLBENCH_QUIET_LOCK`` names them; ``off`` disables the lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from rlbench.core.paths import cache_dir

POLL_SECONDS = 0.002  # head of the queue re-tries the slots this often while all are taken
TIMING_POLICIES = ("cores", "alone")


def default_slots() -> int:
    """Cores this process may use, or ``RLBENCH_QUIET_SLOTS``."""
    raw = os.environ.get("RLBENCH_QUIET_SLOTS")
    if raw is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"RLBENCH_QUIET_SLOTS must be a whole number of at least 1, got {raw!r}")
    return n


def timing_policy(value: str | None = None) -> str:
    """``cores`` (time beside at most slots-1 neighbours) or ``alone``: ``value``, else ``RLBENCH_QUIET_TIMING``."""
    raw = value if value is not None else os.environ.get("RLBENCH_QUIET_TIMING", "cores")
    if raw not in TIMING_POLICIES:
        raise ValueError(f"RLBENCH_QUIET_TIMING must be one of {', '.join(TIMING_POLICIES)}, got {raw!r}")
    return raw


class QuietLock:
    def __init__(self, path: Path | str, slots: int | None = None, timing: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.slots = default_slots() if slots is None else int(slots)
        if self.slots < 1:
            raise ValueError(f"a quiet lock needs at least 1 slot, got {self.slots}")
        self.timing_policy = timing_policy(timing)
        self._turnstile = os.open(f"{self.path}.turnstile", os.O_RDWR | os.O_CREAT, 0o644)
        self._slot_fds = [os.open(f"{self.path}.slot{i}", os.O_RDWR | os.O_CREAT, 0o644) for i in range(self.slots)]
        self._held: int | None = None  # the slot this process holds, and how deeply
        self._depth = 0

    def _take_one(self) -> int:
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            while True:
                for i, fd in enumerate(self._slot_fds):
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        return i
                    except BlockingIOError:
                        pass
                time.sleep(POLL_SECONDS)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    @contextmanager
    def shared(self):
        """Background work: one slot, so at most ``slots`` holders run at once.

        Re-entrant within a process: a nested call keeps the slot already held (taking a second
        one could deadlock two workers that each hold one).
        """
        if self._held is not None:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._held, self._depth = self._take_one(), 1
        try:
            yield
        finally:
            fd, self._held, self._depth = self._slot_fds[self._held], None, 0
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def timing(self):
        """Latency timing: one slot (neighbours on the other cores only), or every slot under ``alone``."""
        if self.timing_policy == "alone":
            with self.exclusive():
                yield
        else:
            with self.shared():
                yield

    @contextmanager
    def exclusive(self):
        """Runs alone: holds the turnstile so no one queues past, then waits for every slot."""
        if self._held is not None:
            raise RuntimeError("QuietLock.exclusive() inside shared() would wait for its own slot")
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        taken = []
        try:
            for fd in self._slot_fds:
                fcntl.flock(fd, fcntl.LOCK_EX)
                taken.append(fd)
            yield
        finally:
            for fd in taken:
                fcntl.flock(fd, fcntl.LOCK_UN)
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)


class _NoLock:
    slots = None
    timing_policy = "off"

    @contextmanager
    def shared(self):
        yield

    @contextmanager
    def timing(self):
        yield

    @contextmanager
    def exclusive(self):
        yield


_LOCK = None


def quiet_lock():
    """The process's lock (from ``RLBENCH_QUIET_LOCK``, default under the cache dir)."""
    global _LOCK
    if _LOCK is None:
        where = os.environ.get("RLBENCH_QUIET_LOCK")
        if where == "off":
            _LOCK = _NoLock()
        else:
            _LOCK = QuietLock(where or cache_dir().parent / "locks" / "quiet")
    return _LOCK
