"""The latency ratios a cell records, by kind: which runtime each sets against which.

Every ratio is a paired per-round ratio of thread CPU times (:func:`rlbench.measure.latency.paired_ratio`)
between two predictors timed interleaved in one process. A ratio within one runtime moves only with
what is under test; a ratio against the NumPy reference crosses runtimes, and drifts with the
machine's phases as well, so the gate holds it to a wider bar (``[latency] cross_rel``).
"""

from __future__ import annotations

from enum import StrEnum


class RatioKind(StrEnum):
    """A ``ratios`` key of a cell's machine figures."""

    TORCH_YARDSTICK = "torch-fp32/numpy-ref"
    """The fp32 policy in torch over the NumPy reference (a runtime yardstick)."""
    ONNX_YARDSTICK = "onnx-fp32/numpy-ref"
    """The fp32 policy in ONNX Runtime over the NumPy reference (a runtime yardstick)."""
    VARIANT = "variant/fp32"
    """The variant over the fp32 policy in the variant's own runtime (what a compression costs)."""
    VARIANT_REF = "variant/numpy-ref"
    """The variant over the NumPy reference (comparable across runtimes)."""
    VARIANT_ONNX = "variant-onnx/onnx-fp32"
    """A torch variant's ONNX export over the fp32 policy in ONNX Runtime."""

    @property
    def cross_runtime(self) -> bool:
        """Whether the ratio sets a runtime against the NumPy reference, which no runtime under test touches."""
        return self in (RatioKind.TORCH_YARDSTICK, RatioKind.ONNX_YARDSTICK, RatioKind.VARIANT_REF)


#: Each runtime's fp32 policy over the NumPy reference.
YARDSTICKS = (RatioKind.TORCH_YARDSTICK, RatioKind.ONNX_YARDSTICK)
