"""The zoo's learning curves: from the shipped policies' recorded training evaluations and the runs'."""

import json

from rlbench.report import curves
from rlbench.zoo.registry import pairs


def _run(root, name, evals):
    ckpt = root / name / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"evals": [{"steps": s, "return": r} for s, r in evals]}))


def test_each_pair_has_its_shipped_evaluations_and_only_runs_that_went_further(tmp_path):
    _run(tmp_path, "SAC-Ant-v5-s0", [(10_000, 983.0), (400_000, 3000.0)])  # past the shipped 200k policy
    shipped = curves.collect({}, None)
    hopper = next(c for c in shipped if c.pair.name == "SAC-Hopper-v5")
    _run(tmp_path, "SAC-Hopper-v5-s0", list(hopper.shipped))  # the shipped policy's own run
    by = {c.pair.name: c for c in curves.collect({"Ant-v5": {"mean": 993.0}}, tmp_path)}
    assert len(by) == len(pairs()) and all(c.shipped for c in by.values())
    assert by["SAC-Hopper-v5"].shipped[-1][0] == 200_000 and by["SAC-Hopper-v5"].training == ()
    assert by["SAC-Ant-v5"].training == ((10_000, 983.0), (400_000, 3000.0))
    assert by["SAC-Ant-v5"].idle == 993.0 and by["SAC-Hopper-v5"].idle is None
    assert by["SAC-Ant-v5"].paper == 4021.96


def test_write_draws_the_overview_and_on_request_one_png_per_pair(tmp_path):
    few = curves.collect({}, None)[:2]
    assert [p.name for p in curves.write(few, tmp_path)] == ["learning-curves.png"]
    written = curves.write(few, tmp_path, per_pair=True)
    assert [p.name for p in written] == [f"{c.pair.name}.png" for c in few] + ["learning-curves.png"]
    assert all(p.stat().st_size > 5000 for p in written)
