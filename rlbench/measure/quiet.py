"""A cross-process lock that makes latency timing quiet while the grid runs in parallel.

Under ``pytest bench -n 8`` on 2 cores, a worker that times inference shares the cores with
seven others stepping MuJoCo. Measured here, that moved a torch/NumPy latency ratio from 3.5
to 4.3-5.8 even on thread CPU time (caches and frequency are shared too). So timing takes this
lock exclusively, and everything else (rollouts, compression builds) takes it shared in short
chunks: when a worker wants to time, the others pause at their next chunk boundary, the timing
runs alone, and the grid carries on. The lock prefers writers (a turnstile that readers pass
through), so a timing request is not starved by a stream of overlapping readers.

It is a pair of ``flock`` files, so it also coordinates separate pytest processes on one machine
(two CI shards on one runner). ``RLBENCH_QUIET_LOCK`` names it; ``off`` disables it.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class QuietLock:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._turnstile = os.open(f"{self.path}.turnstile", os.O_RDWR | os.O_CREAT, 0o644)
        self._resource = os.open(f"{self.path}.resource", os.O_RDWR | os.O_CREAT, 0o644)

    @contextmanager
    def shared(self):
        """Background work: many holders at once; blocks while a timing request waits."""
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        fcntl.flock(self._resource, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._resource, fcntl.LOCK_UN)

    @contextmanager
    def exclusive(self):
        """Timing: waits for current chunks to finish, holds off new ones, runs alone."""
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._resource, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._resource, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)


class _NoLock:
    @contextmanager
    def shared(self):
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
            from rlbench.paths import cache_dir

            _LOCK = QuietLock(where or cache_dir().parent / "locks" / "quiet")
    return _LOCK
