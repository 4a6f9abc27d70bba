"""A shipped policy's action saturation: measured on its recorded seeds, written into its meta.json
saying whether the episodes were the recorded ones, never replaced silently."""

from __future__ import annotations

import json

import pytest

from rlbench.core.errors import PolicyError
from rlbench.measure.returns import ActionSaturation
from rlbench.train import saturation
from rlbench.zoo.shipped import load_shipped, zoo_table
from tests._fakes import ship_fake


def test_written_figure_reaches_the_zoo_table_and_is_never_replaced_silently(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    sp = load_shipped("PPO", "Hopper-v5")
    m = saturation.Measured(sp.name, ActionSaturation(300, 30), identical=True, mean=100.0)
    assert saturation.write(sp, m) is True
    written = json.loads((folder / "meta.json").read_text())["evaluation"]["action_saturation"]
    assert written == {"components": 300, "at_bound": 30, "fraction": 0.1, "episodes": "recorded"}
    row = next(r for r in zoo_table(verify=True) if r["status"] != "missing")  # the files still verify
    assert row["action_saturation"] == 0.1
    sp = load_shipped("PPO", "Hopper-v5")
    assert saturation.write(sp, m) is False  # the same figure: nothing to write
    rerun = saturation.Measured(sp.name, ActionSaturation(300, 30), identical=False, mean=90.0)
    assert saturation.write(sp, rerun) is False  # the same counts from other episodes: kept as recorded
    other = saturation.Measured(sp.name, ActionSaturation(300, 60), identical=True, mean=100.0)
    with pytest.raises(PolicyError, match="--overwrite"):
        saturation.write(sp, other)
    assert saturation.write(sp, other, overwrite=True) is True


def test_rollouts_that_differ_from_the_recorded_ones_say_so(tmp_baselines):
    ship_fake(tmp_baselines, returns=(1e6, 1e6, 1e6))  # an untrained agent cannot score these
    sp = load_shipped("PPO", "Hopper-v5")
    m = saturation.measure(sp)
    assert not m.identical and 0 < m.saturation.components
    assert saturation.write(sp, m)
    written = load_shipped("PPO", "Hopper-v5").meta["evaluation"]["action_saturation"]
    assert written["episodes"].startswith("re-run: mean return") and "against the recorded 1000000.0" in written["episodes"]
    assert ActionSaturation.from_json(written) == m.saturation
