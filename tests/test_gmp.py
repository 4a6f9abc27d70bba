"""GMP: gradual magnitude pruning while distilling, then 8-bit QAT; exact zeros in the ONNX graph.

The policy is test_qat's tiny ReLU policy (obs 11, hidden (32, 32), act 3). Sparsity is counted in
the artefact's own weight initializers, not taken from the summary.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from rlbench.compress import compress
from rlbench.compress.methods.gmp import (cubic_sparsity, gmp_plan, onnx_weights, prune_layer, pruned_count, storage_figures,
                                  train_gmp)
from rlbench.compress.fakequant import QuantLinear
from rlbench.compress.qdq import qdq_onnx
from rlbench.core.errors import CompressionError
from rlbench.measure.int8kernel import EXACT, probe
from rlbench.runtime.predictors import ReferencePredictor
from tests.test_qat import ENV, held_out, make_policy, ship_tiny, student_actions

STEPS = 300
SHAPES = {"body_0": (11, 32), "body_2": (32, 32), "head": (32, 3)}  # stored [in, out]


# ---------------------------------------------------------------------------------- schedule
def test_schedule_is_the_cubic_formula_at_the_pruning_steps():
    sf, t0, t_end, n = 0.8, 20, 80, 6  # dt = 10
    for k in range(n + 1):
        t = t0 + k * 10
        assert cubic_sparsity(t, sf, t0, t_end, n) == pytest.approx(sf + (0.0 - sf) * (1 - (t - t0) / (n * 10)) ** 3)
        if k < n:  # constant until the next pruning step
            assert cubic_sparsity(t + 9, sf, t0, t_end, n) == cubic_sparsity(t, sf, t0, t_end, n)
    assert cubic_sparsity(0, sf, t0, t_end, n) == cubic_sparsity(19, sf, t0, t_end, n) == 0.0
    assert cubic_sparsity(20, sf, t0, t_end, n) == 0.0 and cubic_sparsity(30, sf, t0, t_end, n) > 0
    assert cubic_sparsity(50, sf, t0, t_end, n) == pytest.approx(0.8 * (1 - 0.5 ** 3))  # 0.7 halfway
    assert cubic_sparsity(80, sf, t0, t_end, n) == cubic_sparsity(10_000, sf, t0, t_end, n) == sf
    values = [cubic_sparsity(t, sf, t0, t_end, n) for t in range(100)]
    assert values == sorted(values)  # sparsity only grows


def test_plan_follows_ivanov_fractions():
    plan, rec = gmp_plan(1000, 0.9, qat=True)
    assert (rec["prune_start"], rec["prune_end"], rec["prune_events"], rec["qat_steps"]) == (200, 800, 100, 200)
    assert (plan.total, plan.quant_start, plan.observe_until) == (1200, 1000, 1100)
    plan, rec = gmp_plan(1000, 0.9, qat=False)
    assert plan.total == 1000 and plan.quant_start is None and rec["qat_steps"] == 0


def test_prune_layer_removes_the_smallest_weights_and_never_revives_one():
    lin = torch.nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, -5.0, 0.3, -0.2], [4.0, 0.05, -3.0, 2.0]]))
    layer = QuantLinear(lin)
    prune_layer(layer, 0.5)
    assert layer.mask.tolist() == [[0, 1, 0, 0], [1, 0, 1, 1]]
    with torch.no_grad():
        lin.weight[0, 0] = 100.0  # a pruned weight that grew (masked weights get no gradient, Adam may move them)
    prune_layer(layer, 0.25)  # lower target: nothing changes
    prune_layer(layer, 0.75)
    assert layer.mask.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]
    assert pruned_count(352, 0.8) == 282 and pruned_count(96, 0.95) == 91


# ------------------------------------------------------------------------------- the artefact
@pytest.fixture(scope="module")
def policy():
    return make_policy("relu")


@pytest.fixture(scope="module")
def gmp_art(policy, tmp_path_factory):
    return compress(policy, "gmp", {"sparsity": 0.8, "steps": STEPS, "lr": 1e-3}, tmp_path_factory.mktemp("gmp"),
                    env_id=ENV)


def test_artefact_reaches_the_sparsity_exactly_and_keeps_shapes(gmp_art):
    data = gmp_art.data("model.onnx")
    inits = {t.name: t for t in onnx.load_from_string(data).graph.initializer}
    total = zeros = 0
    for layer, shape in SHAPES.items():
        t = inits[f"{layer}_weight_t_quantized"]
        assert t.data_type == onnx.TensorProto.INT8 and tuple(t.dims) == shape
        w = numpy_helper.to_array(t)
        assert np.count_nonzero(w == 0) == pruned_count(w.size, 0.8), layer  # round(0.8 * numel) per layer
        total, zeros = total + w.size, zeros + np.count_nonzero(w == 0)
    assert (total, zeros) == (352 + 1024 + 96, 282 + 819 + 77)
    s = gmp_art.summary
    assert s["sparsity"] == zeros / total == pytest.approx(0.8, abs=1e-3)
    layers = s["pruning"]["layers"]
    assert [(l["layer"], l["zeros"]) for l in layers] == [("body_0", 282), ("body_2", 819), ("head", 77)]
    assert s["int8_weight_tensors"] == s["weight_tensors"] == 3 and s["params"] == s["params_fp32"]
    assert s["training"]["gradient_steps"] == STEPS + 60 and s["pruning"]["qat_steps"] == 60


def test_artefact_is_deterministic_and_ort_runs_the_sparse_student(policy, gmp_art):
    trained, _ = train_gmp(policy, ENV, sparsity=0.8, steps=STEPS, lr=1e-3)  # an independent second build
    assert qdq_onnx(trained.student) == gmp_art.data("model.onnx")
    obs = held_out(policy)
    want = student_actions(trained.student, obs)
    assert np.abs(ReferencePredictor(gmp_art.data("model.onnx")).predict(obs) - want).max() < 1e-5
    if probe() == EXACT:  # ONNX Runtime computes the same where its int8 kernels are exact
        assert np.abs(gmp_art.predictor().predict(obs) - want).max() < 1e-5
    # pruned weights are zero in the student too, and the masks are what the graph stores
    for layer, name in zip(trained.student.layers, trained.student.names):
        assert torch.equal(layer.mask == 0, torch.from_numpy(onnx_weights(gmp_art.data("model.onnx"))[name].T == 0))


def test_compression_figures(gmp_art):
    s = gmp_art.summary
    layers = [{"in": i, "out": o, "numel": i * o, "nonzeros": i * o - z}
              for (i, o), z in zip(SHAPES.values(), (282, 819, 77))]
    dense = 4 * (352 + 1024 + 96 + 32 + 32 + 3)
    # CSR: int8 values + uint8 column indices (every layer has <= 256 inputs) + uint32 row pointers,
    # fp32 biases, and per layer a weight scale and an input scale with zero point (10 bytes)
    csr = sum(l["nonzeros"] * 2 + 4 * (l["out"] + 1) + 4 * l["out"] + 10 for l in layers)
    assert s["storage"]["dense_fp32_bytes"] == dense and s["storage"]["csr_bytes"] == csr
    assert s["compression_factor_sparse"] == pytest.approx(dense / csr)
    assert s["compression_factor_values_only"] == pytest.approx(4 / (1 - s["sparsity"]))
    assert s["compression_factor_sparse"] > s["compression_factor"]  # on disk the zeros are stored densely
    assert "CSR" in s["storage"]["sparse_format"] and any("dense tensors" in n for n in s["notes"])
    fig = storage_figures([{"in": 300, "out": 2, "numel": 600, "nonzeros": 60}], bits=8, quantised=True)
    assert fig["csr_bytes"] == 60 + 60 * 2 + 12 + 8 + 10  # 300 inputs need uint16 indices


def test_without_qat_the_graph_is_fp32_with_exact_zeros(policy, tmp_path):
    art = compress(policy, "gmp", {"sparsity": 0.5, "qat": False, "steps": 100}, tmp_path, env_id=ENV)
    inits = {t.name: t for t in onnx.load_from_string(art.data("model.onnx")).graph.initializer}
    for layer, shape in SHAPES.items():
        t = inits[f"{layer}_weight_t"]
        assert t.data_type == onnx.TensorProto.FLOAT and tuple(t.dims) == shape
        assert np.count_nonzero(numpy_helper.to_array(t) == 0) == pruned_count(shape[0] * shape[1], 0.5)
    s = art.summary
    assert "QuantizeLinear" not in s["ops"] and s["int8_weight_tensors"] == 0 and "quantization" not in s
    assert s["compression_factor_values_only"] == pytest.approx(2.0) and s["storage"]["weight_bits"] == 32
    assert s["training"]["gradient_steps"] == 100 and s["graph_vs_fake_quant"]["max"] < 1e-5


def test_rl_signal_prunes_the_sac_actor_while_it_trains(tmp_path):
    shipped = ship_tiny(tmp_path, "SAC", [32, 32])
    art = compress(shipped, "gmp", {"signal": "rl", "steps": 300, "sparsity": 0.9}, tmp_path / "cache")
    s = art.summary
    assert [l["zeros"] for l in s["pruning"]["layers"]] == [pruned_count(n, 0.9) for n in (11 * 32, 32 * 32, 32 * 3)]
    assert (s["training"]["signal"], s["training"]["env_steps"]) == ("rl", 300 + 60)
    assert s["int8_weight_tensors"] == 3 and s["graph_vs_fake_quant"]["max"] < 1e-5


# ------------------------------------------------------------------------------ bad parameters
@pytest.mark.parametrize("params,match", [
    ({"sparsity": 0.99}, r"gmp: sparsity must be a number in \[0\.5, 0\.95\]; got 0\.99"),
    ({"sparsity": 0.4}, r"gmp: sparsity must be a number in \[0\.5, 0\.95\]; got 0\.4"),
    ({"steps": 0}, r"gmp: steps must be an integer in \[1, 1e\+07\]; got 0"),
    ({"signal": "foo"}, r"gmp: signal must be one of 'distill', 'rl'; got 'foo'"),
    ({"qat": "maybe"}, r"gmp: qat must be true or false; got 'maybe'"),
    ({"ratio": 0.5}, r"gmp: unknown parameter\(s\) ratio"),
])
def test_bad_parameters_name_the_valid_range_and_write_nothing(policy, tmp_path, params, match):
    cache = tmp_path / "cache"
    with pytest.raises(CompressionError, match=match):
        compress(policy, "gmp", params, cache, env_id=ENV)
    assert not cache.exists()
