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
    assert by["SAC-Hopper-v5"].training == ()
    assert by["SAC-Ant-v5"].training == ((10_000, 983.0), (400_000, 3000.0))
    assert by["SAC-Ant-v5"].idle == 993.0 and by["SAC-Hopper-v5"].idle is None
    assert by["SAC-Ant-v5"].paper == 4021.96


def test_write_draws_the_overview_and_on_request_one_png_per_pair(tmp_path):
    few = curves.collect({}, None)[:2]
    assert [p.name for p in curves.write(few, tmp_path)] == ["learning-curves.png"]
    written = curves.write(few, tmp_path, per_pair=True)
    assert [p.name for p in written] == [f"{c.pair.name}.png" for c in few] + ["learning-curves.png"]
    assert all(p.stat().st_size > 5000 for p in written)


def test_a_policy_that_is_its_runs_best_agent_is_marked_on_its_curve(tmp_path):
    import shutil

    from rlbench.core.paths import policies_dir

    shutil.copytree(policies_dir() / "SAC-Hopper-v5", tmp_path / "SAC-Hopper-v5")
    meta_path = tmp_path / "SAC-Hopper-v5" / "meta.json"
    meta = json.loads(meta_path.read_text())
    at, ret = meta["train_evals"][4]["steps"], meta["train_evals"][4]["return"]
    by = {c.pair.name: c for c in curves.collect({}, None, tmp_path)}
    assert by["SAC-Hopper-v5"].ships is None  # the last agent: nothing to mark
    meta["snapshot"] = {"kind": "best", "steps": at}
    meta_path.write_text(json.dumps(meta))
    by = {c.pair.name: c for c in curves.collect({}, None, tmp_path)}
    assert by["SAC-Hopper-v5"].ships == (at, ret)
    assert [p.name for p in curves.write([by["SAC-Hopper-v5"]], tmp_path / "png", per_pair=True)][0] == \
        "SAC-Hopper-v5.png"
