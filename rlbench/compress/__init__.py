"""Compression methods (quantization, pruning, fp16, low rank) and their artefact cache.

See :mod:`rlbench.compress.base`. Importing this package does not import onnxruntime's
quantizer or Torch-Pruning; a method's implementation is imported when it is first built.
"""

from rlbench.compress.base import (METHODS, PRUNE_RATIO_MAX, Artefact, MethodInfo, Param, build_artefact, compress,
                                   get_method, validate_params)

__all__ = ["Artefact", "METHODS", "MethodInfo", "Param", "PRUNE_RATIO_MAX", "build_artefact", "compress",
           "get_method", "validate_params"]
