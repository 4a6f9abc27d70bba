"""Compression methods (quantization, pruning, fp16, low rank, fine-tuning) and their artefact cache.

Each method declares itself (:mod:`rlbench.compress.registry`) in its own module of the
:mod:`rlbench.compress.methods` package, which imports them all; :mod:`rlbench.compress.base`
builds and caches artefacts. Importing this package does not import onnxruntime's quantizer, Torch-Pruning, SB3 or
torch; a method's implementation is imported when it is first built.
"""

from rlbench.compress.base import Artefact, build_artefact, compress, validate_params
from rlbench.compress.methods import METHODS, get_method, grid_methods, shipped_methods
from rlbench.compress.methods.prune import PRUNE_RATIO_MAX
from rlbench.compress.registry import GridVariants, MethodInfo, Param, Source, register, unregister

__all__ = ["Artefact", "GridVariants", "METHODS", "MethodInfo", "PRUNE_RATIO_MAX", "Param", "Source", "build_artefact",
           "compress", "get_method", "grid_methods", "register", "shipped_methods", "unregister", "validate_params"]
