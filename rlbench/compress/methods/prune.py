"""Structured L1/L2 pruning of hidden neurons with Torch-Pruning's dependency graph.

``tp.pruner.BasePruner`` (``MetaPruner`` is the same class in 1.6) with
``GroupMagnitudeImportance(p=1 or 2)`` ranks each hidden neuron by the mean p-norm of the
weights that would go with it (its row in the layer and its column in the next layer: the
DepGraph group), per layer (``global_pruning=False``), and removes the lowest-ranked ones. The
output head is in ``ignored_layers``, so the action shape and the head's outputs are unchanged;
the head loses input columns when the last hidden layer narrows. Neurons are really removed: the
Linear layers get smaller weight matrices, not masks.

Torch-Pruning's rounding (``BasePruner._prune`` in 1.6.1): a layer of width ``w`` keeps
``int(w * (1 - ratio))`` neurons, i.e. ``floor`` of the kept fraction in float arithmetic, so
64 neurons at ratio 0.05 keep 60 (not 61), at 0.30 keep 44 and at 0.70 keep 19.
:func:`kept_width` is that rule; pruning checks the result against it.

Deterministic: magnitudes and ``torch.topk`` involve no randomness, so no seed is needed.
Pure: the module is deep-copied first, because the pruner rewrites modules in place.
"""

from __future__ import annotations

import copy

from rlbench.compress.registry import REQUIRED, GridVariants, MethodInfo, Param, register
from rlbench.core.errors import CompressionError

#: The paper's one-shot pruning ratios reach 0.70: above that there is no reference figure, and
#: at 0.70 already ~91% of the hidden-layer parameters are gone. Ratios are open at 0 (nothing
#: to prune) and closed at 0.70.
PRUNE_RATIO_MAX = 0.70
#: The grid's ratios, as in the paper: 0.05 .. 0.70.
PRUNE_RATIOS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 15))
#: The ratios of the smoke tier (CI): a light and a heavy cut.
SMOKE_RATIOS: tuple[float, ...] = (0.10, 0.50)


def kept_width(width: int, ratio: float) -> int:
    """Neurons Torch-Pruning keeps in a layer of ``width`` at ``ratio`` (local pruning)."""
    return int(width * (1 - ratio))


def expected_hidden(hidden, ratio: float) -> tuple[int, ...]:
    return tuple(kept_width(w, ratio) for w in hidden)


def prune_module(module, ratio: float, p: int):
    """A pruned deep copy of ``module`` (a :class:`~rlbench.zoo.policy.DeployablePolicy`)."""
    import torch
    import torch_pruning as tp

    if not 0 < ratio < 1:
        raise CompressionError(f"pruning ratio must be in (0, 1); got {ratio!r}")
    spec = module.current_spec()
    want = expected_hidden(spec.hidden, ratio)
    if any(k < 1 for k in want):
        raise CompressionError(f"ratio {ratio} would remove every neuron of a hidden layer (widths {list(spec.hidden)} "
                               f"-> {list(want)}); use a smaller ratio")
    pruned = copy.deepcopy(module).eval()
    # a discrete policy's output is an argmax, which has no gradient graph for DepGraph to trace;
    # the Q-values before it have the same layers and dependencies
    forward = (lambda m, x: m.head_output(x)) if spec.discrete else None
    pruner = tp.pruner.BasePruner(
        pruned, torch.zeros(1, spec.obs_dim), importance=tp.importance.GroupMagnitudeImportance(p=p),
        pruning_ratio=ratio, ignored_layers=[pruned.head], global_pruning=False, forward_fn=forward)
    pruner.step()
    del pruner  # drops the dependency graph's references to the module
    got = pruned.current_spec()
    if got.hidden != want or got.obs_dim != spec.obs_dim or pruned.head.out_features != spec.act_dim \
            or pruned.linears()[0].in_features != spec.obs_dim:
        raise CompressionError(f"Torch-Pruning gave hidden widths {list(got.hidden)} for {list(spec.hidden)} at "
                               f"ratio {ratio}; expected {list(want)} (int(width * (1 - ratio))) with the "
                               f"input ({spec.obs_dim}) and action ({spec.act_dim}) sizes unchanged")
    pruned.spec = got
    return pruned


def _build(module, params: dict, p: int) -> dict[str, bytes]:
    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import save_policy

    pruned = prune_module(module, float(params["ratio"]), p)
    return {"model.pt": save_policy(pruned, None), "model.onnx": onnx_bytes(pruned)}


def build_l1(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    return _build(module, params, 1)


def build_l2(module, onnx_model: bytes, params: dict, context: dict) -> dict[str, bytes]:
    return _build(module, params, 2)



# -------------------------------------------------------------------------------- declarations
RATIO = Param("ratio", "float", REQUIRED, low=0.0, high=PRUNE_RATIO_MAX, low_open=True,
              doc="fraction of each hidden layer's neurons removed (Torch-Pruning keeps int(width*(1-ratio)))")

L1 = register(MethodInfo(
    "l1", "torch", build_l1, params=(RATIO,),
    grid=GridVariants(order=70, param="ratio", values=PRUNE_RATIOS, smoke=SMOKE_RATIOS), paper="pruning",
    doc="structured L1 pruning of hidden neurons (Torch-Pruning DepGraph, GroupMagnitudeImportance p=1)"))
L2 = register(MethodInfo(
    "l2", "torch", build_l2, params=(RATIO,),
    grid=GridVariants(order=80, param="ratio", values=PRUNE_RATIOS, smoke=SMOKE_RATIOS), paper="pruning",
    doc="structured L2 pruning of hidden neurons (Torch-Pruning DepGraph, GroupMagnitudeImportance p=2)"))
