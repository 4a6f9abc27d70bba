"""The grid as data: ids, the smoke tier, and what the smoke tier must not do in CI."""

from __future__ import annotations

import pytest

from rlbench.core.errors import UnknownNameError
from rlbench.grid.matrix import cells, inapplicable, is_smoke, method_names, not_for_discrete, parse_cell, variants
from rlbench.zoo.registry import ALGOS, DISCRETE_ENVS, MUJOCO_ENVS


def test_grid_has_every_variant_of_every_pair_with_readable_ids():
    grid = cells()
    discrete = len(variants()) - len(not_for_discrete())
    assert len(grid) == 25 * 38 + len(DISCRETE_ENVS) * discrete == len({c.id for c in grid})
    assert parse_cell("SAC-HalfCheetah-v5-l2-0.30").id == "SAC-HalfCheetah-v5-l2-0.30"
    assert parse_cell("DQN-LunarLander-v3-ptdq").id == "DQN-LunarLander-v3-ptdq"
    assert all(parse_cell(c.id) == c for c in grid)


def test_applicability_rule_leaves_fine_tuning_out_of_discrete_pairs_only():
    grid = cells()
    for env in DISCRETE_ENVS:
        methods = {c.variant.method for c in grid if c.env_id == env}
        assert methods == set(method_names()) - {"qat", "gmp"}
        assert {c.algo for c in grid if c.env_id == env} == {"DQN"}
        assert "DQN" in (inapplicable("DQN", env, "qat") or "") and inapplicable("DQN", env, "ptdq") is None
    for env in MUJOCO_ENVS:
        assert {c.variant.method for c in grid if c.env_id == env} == set(method_names())
        assert inapplicable("SAC", env, "qat") is None
    assert not [c for c in grid if c.algo == "DQN" and c.env_id in MUJOCO_ENVS]


@pytest.mark.parametrize("bad", ["DQN-Hopper-v5-baseline", "SAC-CartPole-v1-ptdq"])
def test_cell_ids_of_pairs_outside_the_registry_do_not_parse(bad):
    with pytest.raises(UnknownNameError):
        parse_cell(bad)


def test_smoke_tier_covers_every_method_and_every_algorithm_baseline():
    smoke = [c for c in cells() if is_smoke(c)]
    assert {c.variant.method for c in smoke} == set(method_names())
    assert {c.algo for c in smoke if c.variant.method == "baseline"} == set(ALGOS)
    assert {c.env_id for c in smoke} == {"Hopper-v5", "CartPole-v1"}
    # baselines of all five, then PPO and SAC: ptdq, ptsq, int8pc, fp16, int4, qat, l1/l2 at 0.10 and 0.50,
    # lowrank, gmp; DQN on CartPole: baseline and ptdq
    assert len(smoke) == 5 + 2 * 12 + 2
    assert {c.id for c in smoke if c.algo == "DQN"} == {"DQN-CartPole-v1-baseline", "DQN-CartPole-v1-ptdq"}
    assert sum(c.variant.method in ("l1", "l2") for c in smoke) == 8


@pytest.mark.parametrize("cell", [c for c in cells() if is_smoke(c) and c.variant.method in ("qat", "gmp")],
                         ids=lambda c: c.id)
def test_smoke_fine_tuned_artefacts_are_shipped_so_ci_never_fine_tunes(cell):
    from rlbench.compress.base import shipped_entry_for
    from rlbench.zoo.shipped import is_shipped, load_shipped

    if not is_shipped(cell.algo, cell.env_id):
        pytest.skip(f"{cell.pair} is not shipped (its cells skip too)")
    entry = shipped_entry_for(load_shipped(cell.algo, cell.env_id), cell.variant.method, cell.variant.params())
    assert (entry / "artefact.json").is_file(), f"{cell.id}: run `rlbench ship-artefacts --algo {cell.algo} --env {cell.env_id}`"
