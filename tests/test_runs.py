"""``rlbench zoo runs``: each training run's progress, its best agent, and whether to export it."""

from __future__ import annotations

import json
import shutil

from rlbench.train.runs import markdown, runs


def _run(root, name, steps, evals, best=None, stopped=False, best_dir=True):
    ckpt = root / name / "ckpt"
    ckpt.mkdir(parents=True)
    state = {"num_timesteps": steps, "target_timesteps": 1_000_000, "trainer": "sbx",
             "evals": [{"steps": s, "return": r} for s, r in evals]}
    if best:
        state["best"] = {"steps": best[0], "return": best[1], "episodes": 20}
        if best_dir:
            (root / name / "best").mkdir()
            for f in ("state.json", "model.zip"):
                (root / name / "best" / f).write_text("{}")
    if stopped:
        state["stopped_early"] = {"steps": steps}
    (ckpt / "state.json").write_text(json.dumps(state))
    (ckpt / "model.zip").write_text("")


def test_each_run_is_set_beside_its_shipped_policy_and_candidates_are_named(tmp_baselines, tmp_path):
    root = tmp_path / "runs"
    _run(root, "SAC-Hopper-v5-s0", 280_000, [(270_000, 3415.0), (280_000, 3444.0)], best=(280_000, 3443.9),
         stopped=True)
    _run(root, "TD3-Hopper-v5-s0", 50_000, [(50_000, 900.0)], best=(40_000, 100.0))  # below doing nothing
    _run(root, "PPO-Hopper-v5-s0", 50_000, [(50_000, 900.0)], best=(50_000, 950.0), best_dir=False)
    (root / "not-a-run").mkdir()
    (root / "SAC-Ant-v5-s0").mkdir()  # no checkpoint yet
    idle = {"Hopper-v5": {"mean": 150.0}}
    rows = runs(root, idle)
    assert [r.run for r in rows] == ["PPO-Hopper-v5-s0", "SAC-Hopper-v5-s0", "TD3-Hopper-v5-s0"]
    ppo, sac, td3 = rows
    assert (sac.steps, sac.best_steps, sac.best_return, sac.stopped_early, sac.paper) == \
        (280_000, 280_000, 3443.9, True, 2539.05)
    assert sac.shipped_return is None and sac.candidate  # nothing shipped in this tree: any best beating idle
    assert not td3.candidate and td3.best_return == 100.0
    assert ppo.best_return is None and not ppo.candidate  # state names a best, but best/ is gone
    table = markdown(rows).splitlines()
    assert table[3].startswith("| SAC-Hopper-v5-s0 | sbx | 280k of 1000k (stopped early) | 3444 | 3444 at 280k | — |")
    assert table[3].endswith("| **candidate**: `rlbench export SAC Hopper-v5 --overwrite` |")
    assert table[4].endswith("| 150 | no |")
    assert json.loads(json.dumps([r.to_json() for r in rows]))[1]["candidate"] is True
    assert runs(tmp_path / "none", idle) == []


def test_a_best_that_does_not_beat_the_shipped_policy_is_no_candidate(tmp_baselines, tmp_path, monkeypatch):
    import rlbench.train.runs as mod

    monkeypatch.setattr(mod, "is_shipped", lambda algo, env: True)

    class Shipped:
        meta = {"evaluation": {"mean": 3500.0}, "timesteps": 280_000}

    monkeypatch.setattr(mod, "load_shipped", lambda algo, env, verify: Shipped)
    _run(tmp_path, "SAC-Hopper-v5-s0", 300_000, [(300_000, 3400.0)], best=(290_000, 3450.0))
    (row,) = runs(tmp_path, {"Hopper-v5": {"mean": -0.2}})
    assert row.shipped_return == 3500.0 and row.shipped_trained == 280_000 and not row.candidate
    assert "| 0 | no |" in markdown([row])


def test_the_shipped_best_agent_is_no_candidate_and_a_later_one_is_judged_on_the_same_seeds(tmp_baselines, tmp_path,
                                                                                             monkeypatch):
    """The shipped policy's own confirmation (training-evaluation seeds) is what a run's best is set
    against, not its return on the 50 evaluation seeds; and the agent it ships is no candidate."""
    import rlbench.train.runs as mod

    monkeypatch.setattr(mod, "is_shipped", lambda algo, env: True)

    class Shipped:
        meta = {"evaluation": {"mean": 9205.0}, "timesteps": 970_000, "trained_timesteps": 1_000_000, "seed": 0,
                "snapshot": {"kind": "best", "steps": 970_000, "confirmation": {"return": 9387.0}}}

    monkeypatch.setattr(mod, "load_shipped", lambda algo, env, verify: Shipped)
    _run(tmp_path, "TD3-HalfCheetah-v5-s0", 1_000_000, [(1_000_000, 9391.0)], best=(970_000, 9387.0))
    idle = {"HalfCheetah-v5": {"mean": 0.0}}
    (row,) = runs(tmp_path, idle)
    assert row.best_is_shipped and not row.candidate
    assert markdown([row]).splitlines()[2].endswith("| shipped |")
    for best, candidate in ((9380.0, False), (9400.0, True)):  # both above the 50-seed 9205
        shutil.rmtree(tmp_path / "TD3-HalfCheetah-v5-s0")
        _run(tmp_path, "TD3-HalfCheetah-v5-s0", 1_000_000, [(1_000_000, 9391.0)], best=(990_000, best))
        (row,) = runs(tmp_path, idle)
        assert not row.best_is_shipped and row.candidate is candidate, best
    _run(tmp_path, "TD3-HalfCheetah-v5-s1", 1_000_000, [(1_000_000, 9391.0)], best=(970_000, 9390.0))
    assert runs(tmp_path, idle)[1].candidate  # another seed's run: the shipped agent is not its
