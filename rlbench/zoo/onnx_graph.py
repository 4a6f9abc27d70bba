"""Build the ONNX graph of a :class:`~rlbench.zoo.policy.DeployablePolicy` directly from its weights.

Why not ``torch.onnx.export``: its default moved to the dynamo exporter, whose output changes
with torch releases and is not byte-stable; the TorchScript exporter is deprecated. A policy here
is a fixed shape (normalise -> MLP -> squash -> clip), so writing the graph with ``onnx.helper``
gives byte-identical files for identical weights, the same node names in every variant, and no
dependence on the exporter a torch upgrade ships. Linear layers become ``MatMul`` + ``Add``, the
form ONNX Runtime's dynamic and static quantizers both rewrite (``MatMulInteger`` / QDQ).
A test checks the graph against the torch module on real observations.

A discrete-action policy (DQN) ends in ``ArgMax`` over the Q-values (axis 1, first maximum on ties):
the deployable graph returns the action index, int64 [batch], what the environment takes, and every
compression of it is judged on the actions it picks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rlbench.core.io import atomic_write_bytes
from rlbench.zoo.policy import DeployablePolicy, policy_weights_numpy

OPSET = 17
INPUT = "obs"
OUTPUT = "action"


#: One Linear layer's inputs: given the name of the layer's input, it appends whatever the layer
#: needs before its ``MatMul`` (initializers, quantize/dequantize nodes) and returns the
#: ``MatMul``'s two input names and the name of the bias the ``Add`` takes.
LinearInputs = Callable[[str], tuple[list[str], str]]


def mlp_model(spec, const: Callable[..., str], nodes: list, inits: list, layers: Sequence[tuple[str, LinearInputs]],
              mean, std, low, high) -> onnx.ModelProto:
    """The one writer of a policy graph: normalisation, each layer as ``MatMul`` + ``Add`` (an activation
    between layers), squashing and clipping or the argmax. The fp32 graph (:func:`build_onnx`) and the QDQ
    graph of a fake-quantised policy (:func:`rlbench.compress.qdq.qdq_onnx`) differ only in their
    ``layers``, so every variant has the same graph shape and node names."""
    x = input_nodes(nodes, const, spec, mean, std)
    act_op = {"relu": "Relu", "tanh": "Tanh"}[spec.activation]
    for i, (name, inputs) in enumerate(layers):
        mm_in, bias = inputs(x)
        nodes.append(helper.make_node("MatMul", mm_in, [f"{name}_mm"], name=f"{name}_MatMul"))
        nodes.append(helper.make_node("Add", [f"{name}_mm", bias], [f"{name}_out"], name=f"{name}_Add"))
        x = f"{name}_out"
        if i < len(layers) - 1:
            nodes.append(helper.make_node(act_op, [x], [f"{name}_act"]))
            x = f"{name}_act"
    output_nodes(nodes, const, spec, x, low, high)
    return policy_model(nodes, inits, spec)


def build_onnx(policy: DeployablePolicy) -> onnx.ModelProto:
    """The fp32 graph of ``policy``: its weights as float32 initializers."""
    spec = policy.current_spec()
    w = policy_weights_numpy(policy)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def fp32(key: str) -> LinearInputs:
        name = key.replace(".", "_")
        return lambda x: ([x, const(f"{name}_weight_t", w[f"{key}.weight"].T)], const(f"{name}_bias", w[f"{key}.bias"]))

    keys = [k[: -len(".weight")] for k in w if k.endswith(".weight")]
    return mlp_model(spec, const, nodes, inits, [(k.replace(".", "_"), fp32(k)) for k in keys],
                     w["obs_mean"], w["obs_std"], w["act_low"], w["act_high"])


def input_nodes(nodes: list, const: Callable[[str, np.ndarray], str], spec, mean, std) -> str:
    """Append the observation normalisation (if ``spec.normalize``); returns the MLP's input name.

    ``const(name, array)`` adds an initializer and returns its name: the fp32 and the QDQ writer
    each pass their own, so the same graph shape serves both."""
    if not spec.normalize:
        return INPUT
    nodes.append(helper.make_node("Sub", [INPUT, const("obs_mean", mean)], ["obs_centered"]))
    nodes.append(helper.make_node("Div", ["obs_centered", const("obs_std", std)], ["obs_scaled"]))
    nodes.append(helper.make_node("Clip", ["obs_scaled", const("clip_lo", np.float32(-spec.clip_obs)),
                                           const("clip_hi", np.float32(spec.clip_obs))], ["obs_norm"]))
    return "obs_norm"


def output_nodes(nodes: list, const: Callable[[str, np.ndarray], str], spec, x: str, low, high) -> None:
    """Append the squashing (if ``spec.squash``) and the clip to the action bounds, ending in ``OUTPUT``;
    for a discrete policy, the argmax over the Q-values instead."""
    if getattr(spec, "discrete", False):
        nodes.append(helper.make_node("ArgMax", [x], [OUTPUT], name="action_ArgMax", axis=1, keepdims=0,
                                      select_last_index=0))
        return
    if spec.squash:
        nodes.append(helper.make_node("Tanh", [x], ["squashed"]))
        nodes.append(helper.make_node("Mul", ["squashed", const("act_half", (high - low) / 2)], ["scaled"]))
        nodes.append(helper.make_node("Add", ["scaled", const("act_mid", (high + low) / 2)], ["unscaled"]))
        x = "unscaled"
    nodes.append(helper.make_node("Min", [x, const("act_high", high)], ["clipped_hi"]))
    nodes.append(helper.make_node("Max", ["clipped_hi", const("act_low", low)], [OUTPUT]))


def policy_model(nodes: list, inits: list, spec) -> onnx.ModelProto:
    """The checked model of a policy graph: ``INPUT`` [batch, obs_dim] -> ``OUTPUT`` [batch, act_dim]."""
    graph = helper.make_graph(
        nodes, "rlbench_policy",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", spec.obs_dim])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.INT64, ["batch"]) if getattr(spec, "discrete", False)
         else helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", spec.act_dim])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rlbench", producer_version="1")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnx_bytes(policy: DeployablePolicy) -> bytes:
    return build_onnx(policy).SerializeToString(deterministic=True)


def save_onnx(policy: DeployablePolicy, path: Path) -> bytes:
    data = onnx_bytes(policy)
    atomic_write_bytes(path, data)
    return data
