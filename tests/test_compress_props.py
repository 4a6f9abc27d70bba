"""Property: pruning any small MLP at any ratio in range keeps its interface and shrinks it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlbench.compress.methods.prune import PRUNE_RATIO_MAX
from rlbench.compress.methods.prune import kept_width, prune_module
from rlbench.core.errors import CompressionError
from rlbench.zoo.policy import DeployablePolicy, PolicySpec, num_params


@settings(max_examples=20, deadline=None, database=None)  # no .hypothesis/ in the repository
@given(obs_dim=st.integers(1, 12), act_dim=st.integers(1, 4),
       hidden=st.lists(st.integers(1, 48), min_size=1, max_size=3),
       ratio=st.floats(0.0, PRUNE_RATIO_MAX, exclude_min=True, allow_nan=False),
       p=st.sampled_from([1, 2]), activation=st.sampled_from(["relu", "tanh"]),
       flags=st.tuples(st.booleans(), st.booleans()), seed=st.integers(0, 2**16))
def test_pruning_keeps_shapes_and_never_adds_parameters(obs_dim, act_dim, hidden, ratio, p, activation, flags, seed):
    torch.manual_seed(seed)
    policy = DeployablePolicy(PolicySpec(obs_dim, act_dim, tuple(hidden), activation,
                                         squash=flags[0], normalize=flags[1])).eval()
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    want = tuple(kept_width(w, ratio) for w in hidden)
    if min(want) < 1:  # the ratio would empty a layer: refused, never a zero-width layer
        with pytest.raises(CompressionError, match="every neuron"):
            prune_module(policy, ratio, p)
        return
    pruned = prune_module(policy, ratio, p)
    assert pruned.current_spec().hidden == want
    assert all(k <= w for k, w in zip(want, hidden))
    assert num_params(pruned) <= num_params(policy)
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(5, obs_dim)).astype(np.float32))
    with torch.no_grad():
        assert pruned(x).shape == policy(x).shape == (5, act_dim)
        assert torch.isfinite(pruned(x)).all()
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())  # input untouched
