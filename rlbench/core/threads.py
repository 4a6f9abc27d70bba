"""Thread counts, pinned in one place: every figure is measured, and every artefact built, on a
known number of threads (one by default; CleanRL's benchmarks pin ``OMP_NUM_THREADS=1`` too).

Two jobs at default threads on 2 cores run 4x slower, and a multi-threaded BLAS call (an SVD in a
compression build, say) leaves worker threads spinning on the cores the latency harness times.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, MutableMapping

DEFAULT_THREADS = 1
#: The native thread pools' variables, read once when NumPy, torch or ONNX Runtime load.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_env(n: int = DEFAULT_THREADS) -> dict[str, str]:
    """The native pools' variables for ``n`` threads (a child process's environment)."""
    return {var: str(n) for var in THREAD_VARS}


def default_thread_env(env: MutableMapping[str, str] = os.environ, n: int = DEFAULT_THREADS) -> None:
    """Set the native pools' variables that ``env`` does not set already. Effective only before
    NumPy, torch or ONNX Runtime load their pools: call it first."""
    for var, value in thread_env(n).items():
        env.setdefault(var, value)


def pin_threads(n: int = DEFAULT_THREADS) -> None:
    """Pin torch's intra- and inter-op pools."""
    import torch  # deferred: core loads no third-party library at import

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:
        pass  # may only be set once per process, before any inter-op work


@contextlib.contextmanager
def torch_threads(n: int = DEFAULT_THREADS) -> Iterator[None]:
    """Torch's intra-op pool at ``n`` threads for the block, restored after it: a build's result
    must not depend on the caller's thread count."""
    import torch  # deferred: core loads no third-party library at import

    threads = torch.get_num_threads()
    if threads != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if threads != n:
            torch.set_num_threads(threads)


def ort_threads(opts, n: int = DEFAULT_THREADS):
    """ONNX Runtime ``SessionOptions`` with its intra- and inter-op pools at ``n`` threads."""
    opts.intra_op_num_threads = n
    opts.inter_op_num_threads = n
    return opts
