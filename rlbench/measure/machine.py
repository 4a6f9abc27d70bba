"""The machine a measurement ran on, as every record carries it."""

from __future__ import annotations

import functools

from rlbench.core.versions import host_info
from rlbench.measure.int8kernel import probe


@functools.lru_cache(maxsize=1)
def machine_info() -> dict:
    """The host's facts (:func:`rlbench.core.versions.host_info`) and its int8 kernel class, which
    int8 ONNX cells' returns depend on (:mod:`rlbench.measure.int8kernel`)."""
    return {**host_info(), "int8_kernel": probe()}
