from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rlbench.core.errors import MeasurementError
from rlbench.measure.returns import ActionSaturation, ReturnRecord, at_bound, evaluate_returns
from rlbench.measure.stats import bootstrap_ci
from rlbench.zoo.policy import DeployablePolicy, PolicySpec
from rlbench.runtime.predictors import OrtPredictor, TorchPredictor


def _policy(seed=0):
    torch.manual_seed(seed)
    return DeployablePolicy(PolicySpec(11, 3, (32, 32), squash=True)).eval()


def test_returns_are_identical_run_after_run():
    p = TorchPredictor(_policy())
    a = evaluate_returns(p, "Hopper-v5", [1, 2, 3, 4])
    b = evaluate_returns(p, "Hopper-v5", [1, 2, 3, 4])
    assert a.returns == b.returns and a.lengths == b.lengths
    assert len(a.returns) == 4 and all(n > 0 for n in a.lengths)
    assert a.ci_low <= a.mean <= a.ci_high


def test_batched_evaluation_matches_one_episode_at_a_time():
    """Episodes are independent of their batch-mates. Not bit-identical: BLAS picks kernels by
    batch size (differences ~1e-8 relative), which is why a cell always evaluates its full,
    stored seed list as one constant-shape batch."""
    p = TorchPredictor(_policy())
    together = evaluate_returns(p, "Hopper-v5", [5, 6, 7])
    alone = [evaluate_returns(p, "Hopper-v5", [s]).returns[0] for s in (5, 6, 7)]
    np.testing.assert_allclose(together.returns, alone, rtol=1e-6)


def test_torch_and_onnx_give_the_same_returns_for_a_fixed_policy():
    from rlbench.zoo.onnx_graph import onnx_bytes

    m = _policy(3)
    a = evaluate_returns(TorchPredictor(m), "Hopper-v5", [11, 12])
    b = evaluate_returns(OrtPredictor(onnx_bytes(m)), "Hopper-v5", [11, 12])
    np.testing.assert_allclose(a.returns, b.returns, rtol=1e-3)


class _NaNPredictor:
    name, runtime = "nan", "fake"

    def predict(self, obs):
        return np.full((obs.shape[0], 3), np.nan, dtype=np.float32)


def test_nan_action_is_an_error_naming_the_cell():
    with pytest.raises(MeasurementError, match=r"PPO-Hopper-v5-ptdq: non-finite action"):
        evaluate_returns(_NaNPredictor(), "Hopper-v5", [1], label="PPO-Hopper-v5-ptdq")


def test_record_serialises_and_round_trips():
    rec = evaluate_returns(TorchPredictor(_policy()), "Hopper-v5", [1, 2])
    d = json.loads(json.dumps(rec.to_json()))
    assert d["kind"] == "return" and d["schema"] == 1 and d["machine"]["cpu_count"] >= 1
    assert d["versions"]["torch"] and d["settings"]["episodes"] == 2
    assert ReturnRecord.from_json(d) == rec


def test_bootstrap_ci_is_deterministic_and_covers_the_mean():
    x = np.random.default_rng(0).normal(100, 10, size=50)
    lo, hi = bootstrap_ci(x)
    assert (lo, hi) == bootstrap_ci(x)
    assert lo < x.mean() < hi and 2 < hi - lo < 10


def test_reused_environments_give_the_returns_of_new_ones(monkeypatch):
    """A cell takes its environments from the process's pool; a seeded reset must erase whatever
    the last user left, including an episode cut short or abandoned by an error."""
    from rlbench.zoo import envs as envs_mod

    monkeypatch.setattr(envs_mod, "_pool", {})
    p = TorchPredictor(_policy(1))
    fresh = evaluate_returns(p, "Hopper-v5", [21, 22, 23])
    built = {id(e) for e in envs_mod._pool["Hopper-v5"]}
    assert len(built) == 3
    evaluate_returns(p, "Hopper-v5", [31, 32, 33], max_steps=7)
    with pytest.raises(MeasurementError):
        evaluate_returns(_NaNPredictor(), "Hopper-v5", [1, 2, 3])
    again = evaluate_returns(p, "Hopper-v5", [21, 22, 23])
    assert {id(e) for e in envs_mod._pool["Hopper-v5"]} == built  # the same three, reused
    assert again.returns == fresh.returns and again.lengths == fresh.lengths


def test_env_pool_keeps_at_most_its_limit(monkeypatch):
    from rlbench.zoo import envs as envs_mod

    monkeypatch.setattr(envs_mod, "_pool", {})
    monkeypatch.setattr(envs_mod, "POOL_LIMIT", 2)
    evaluate_returns(TorchPredictor(_policy()), "Hopper-v5", [1, 2, 3], max_steps=3)
    assert len(envs_mod._pool["Hopper-v5"]) == 2


# ------------------------------------------------------------------ discrete actions: argmax flips
def test_argmax_flip_counts_active_states_only():
    from rlbench.measure.returns import ArgmaxFlips, argmax_flip

    actions = np.array([0, 1, 2, 3, 1])
    reference = np.array([0, 2, 2, 0, 0])
    assert argmax_flip(actions, reference) == (5, 3)
    # the last two episodes have ended: their (frozen) states do not count
    assert argmax_flip(actions, reference, np.array([True, True, True, False, False])) == (3, 1)
    assert ArgmaxFlips(3, 1).to_json() == {"states": 3, "flips": 1, "fraction": 1 / 3}
    assert ArgmaxFlips(0, 0).fraction == 0.0 and ArgmaxFlips.from_json(ArgmaxFlips(3, 1).to_json()) == ArgmaxFlips(3, 1)


def test_evaluate_returns_reports_flips_against_a_reference_on_the_variants_own_states():
    from rlbench.measure.returns import ArgmaxFlips
    from rlbench.runtime.predictors import ConstantActionPredictor

    seeds = [1_000_000, 1_000_001, 1_000_002]
    left = ConstantActionPredictor(0)
    rec = evaluate_returns(left, "CartPole-v1", seeds, reference=ConstantActionPredictor(1))
    # every state the always-left policy visits, the always-right reference would have pushed right
    assert rec.argmax_flip == ArgmaxFlips(states=sum(rec.lengths), flips=sum(rec.lengths))
    assert ReturnRecord.from_json(rec.to_json()) == rec
    same = evaluate_returns(left, "CartPole-v1", seeds, reference=ConstantActionPredictor(0))
    assert same.argmax_flip.flips == 0 and same.returns == rec.returns  # the reference never steers
    plain = evaluate_returns(left, "CartPole-v1", seeds)
    assert plain.argmax_flip is None and "argmax_flip" not in plain.to_json()


def test_doing_nothing_on_discrete_tasks():
    from rlbench.runtime.predictors import ConstantActionPredictor, RandomActionPredictor, ZeroPredictor, idle_predictor

    lunar = idle_predictor("LunarLander-v3")
    assert isinstance(lunar, ConstantActionPredictor) and lunar.action == 0  # no engine fires
    cart = idle_predictor("CartPole-v1")
    assert isinstance(cart, RandomActionPredictor) and cart.n_actions == 2  # no action leaves the cart alone
    assert isinstance(idle_predictor("Hopper-v5"), ZeroPredictor)
    obs = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    a = cart.predict(obs)
    assert a.dtype == np.int64 and set(a.tolist()) == {0, 1} and 0.4 < a.mean() < 0.6
    # a state's draw does not depend on the batch it comes in: per-seed idle returns are well defined
    assert np.array_equal(cart.predict(obs[:7]), a[:7]) and np.array_equal(cart.predict(obs[::-1]), a[::-1])
    seeds = [1_000_000, 1_000_001]
    both = evaluate_returns(cart, "CartPole-v1", seeds).returns
    assert evaluate_returns(cart, "CartPole-v1", seeds[1:]).returns == both[1:]


def test_at_bound_counts_components_within_a_thousandth_of_the_range_on_active_rows():
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 4.0])
    actions = np.array([[1.0, 2.0], [-0.9995, 3.997], [0.5, 4.0]])
    assert at_bound(actions, low, high) == (6, 4)  # 1.0 and -0.9995 (tol 0.002), 3.997 (tol 0.004), 4.0
    assert at_bound(actions, low, high, active=np.array([True, False, True])) == (4, 2)
    assert at_bound(np.array([[0.997, 0.0041]]), low, high) == (2, 0)  # just outside both tolerances


class _Constant:
    """A predictor that answers every observation with one action."""

    name, runtime, threads = "constant", "numpy", 1

    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float32)

    def predict(self, obs):
        return np.tile(self.action, (len(obs), 1))


def test_evaluate_returns_counts_saturated_components_of_its_own_rollouts():
    hard = evaluate_returns(_Constant([1.0, -1.0, 1.0]), "Hopper-v5", [1, 2], saturation=True)
    mild = evaluate_returns(_Constant([1.0, 0.0, 0.3]), "Hopper-v5", [1, 2], saturation=True)
    assert hard.action_saturation == ActionSaturation(3 * sum(hard.lengths), 3 * sum(hard.lengths))
    assert mild.action_saturation == ActionSaturation(3 * sum(mild.lengths), sum(mild.lengths))
    assert evaluate_returns(_Constant([0.0, 0.0, 0.0]), "Hopper-v5", [1]).action_saturation is None
    back = ReturnRecord.from_json(json.loads(json.dumps(mild.to_json())))
    assert back == mild and back.action_saturation.fraction == pytest.approx(1 / 3)
    assert "action_saturation" not in evaluate_returns(_Constant([0.0] * 3), "Hopper-v5", [1]).to_json()


def test_saturation_of_a_discrete_action_space_is_an_error():
    with pytest.raises(ValueError, match="Box"):
        evaluate_returns(_Constant([0]), "CartPole-v1", [1], saturation=True)
