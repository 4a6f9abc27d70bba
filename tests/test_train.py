"""Training checkpoints outside the repository and resumes without losing more than one interval."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest

from rlbench.core.errors import RLBenchError
from rlbench.zoo.agents import latest_checkpoint, run_dir
from rlbench.train.loop import train
from rlbench.zoo.registry import get_config


def test_resume_continues_from_the_checkpoint(tmp_baselines):
    train("SAC", "Hopper", timesteps=600, checkpoint_every=300, export=False, progress=False)
    paths = run_dir(get_config("SAC", "Hopper"), 0)
    state = json.loads((latest_checkpoint(paths) / "state.json").read_text())
    assert state["num_timesteps"] == 600 and [e["steps"] for e in state["evals"]] == [300, 600]
    assert state["versions"]["torch"] and state["seed"] == 0 and state["threads"] == 1
    assert str(paths.root).startswith(str(tmp_baselines.parent / "home"))  # outside the repository
    with pytest.raises(RLBenchError, match="--resume"):
        train("SAC", "Hopper", timesteps=900, checkpoint_every=300, export=False, progress=False)
    train("SAC", "Hopper", timesteps=900, checkpoint_every=300, resume=True, export=False, progress=False)
    state = json.loads((latest_checkpoint(paths) / "state.json").read_text())
    assert state["num_timesteps"] == 900 and state["resumed"] == 1
    assert [e["steps"] for e in state["evals"]] == [300, 600, 900]
    assert (latest_checkpoint(paths) / "replay.npz").exists()


def test_a_killed_run_loses_at_most_one_interval(tmp_baselines):
    cmd = [sys.executable, "-m", "rlbench", "train", "TD3", "Hopper", "--timesteps", "100000",
           "--checkpoint-every", "500", "--no-export"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    paths = run_dir(get_config("TD3", "Hopper"), 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and latest_checkpoint(paths) is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.wait()
    ckpt = latest_checkpoint(paths)
    assert ckpt is not None, "no checkpoint survived the kill"
    done = json.loads((ckpt / "state.json").read_text())["num_timesteps"]
    assert done >= 500 and done % 500 == 0
    train("TD3", "Hopper", timesteps=done + 500, checkpoint_every=500, resume=True, export=False, progress=False)
    assert json.loads((latest_checkpoint(paths) / "state.json").read_text())["num_timesteps"] == done + 500


def test_a_resumed_run_draws_new_random_streams(tmp_baselines):
    """load() reseeds with the run's seed; a resume must not replay the start's noise and episodes."""
    import numpy as np

    from rlbench.zoo.registry import get_config
    from rlbench.zoo.agents import latest_checkpoint, load_checkpoint, run_dir
    from rlbench.train.loop import train

    train("TD3", "Hopper", timesteps=300, checkpoint_every=300, export=False, progress=False, early_stop=False)
    cfg = get_config("TD3", "Hopper")
    model, state = load_checkpoint(cfg, 0, latest_checkpoint(run_dir(cfg, 0)))
    assert state["num_timesteps"] == 300
    resumed = [model.action_space.sample() for _ in range(5)]
    model.set_random_seed(0)
    fresh = [model.action_space.sample() for _ in range(5)]
    assert not np.allclose(resumed, fresh)


def test_the_export_ships_the_runs_best_agent_and_says_so(tmp_baselines, monkeypatch):
    """An evaluation that reaches the best confirmed return is confirmed on further seeds; the agent
    with the highest confirmation is kept in best/ and shipped, not the last checkpoint."""
    import torch

    import rlbench.train.loop as loop
    from rlbench.zoo.agents import best_checkpoint
    from rlbench.zoo.shipped import load_shipped

    quick = {300: 100.0, 600: 300.0, 900: 200.0}
    confirmed = {300: 90.0, 600: 280.0, 900: 150.0}
    calls = []

    def scripted(model, cfg, episodes=loop.TRAIN_EVAL_EPISODES, first=0):
        calls.append((int(model.num_timesteps), episodes, first))
        return (confirmed if first else quick)[int(model.num_timesteps)]

    monkeypatch.setattr(loop, "quick_eval", scripted)
    train("TD3", "Hopper", timesteps=900, checkpoint_every=300, export=False, progress=False, early_stop=False)
    confirm = (loop.BEST_EVAL_EPISODES, loop.TRAIN_EVAL_EPISODES)
    assert calls == [(300, 5, 0), (300, *confirm), (600, 5, 0), (600, *confirm), (900, 5, 0)]  # 200 < 280: none
    paths = run_dir(get_config("TD3", "Hopper"), 0)
    best = json.loads((best_checkpoint(paths) / "state.json").read_text())
    assert best["num_timesteps"] == 600 and not (best_checkpoint(paths) / "replay.npz").exists()
    state = json.loads((latest_checkpoint(paths) / "state.json").read_text())
    assert state["best"] == {"steps": 600, "return": 280.0, "episodes": 20, "seeds": [10_005, 10_024]}
    assert [e.get("confirmed") for e in state["evals"]] == [90.0, 280.0, None]

    loaded = []
    load = loop.load_checkpoint
    monkeypatch.setattr(loop, "load_checkpoint", lambda cfg, seed, ckpt: loaded.append(ckpt.name) or load(cfg, seed, ckpt))
    loop.export_run("TD3", "Hopper", eval_episodes=2)
    meta = load_shipped("TD3", "Hopper-v5", verify=False).meta
    assert loaded == ["best"] and (meta["timesteps"], meta["trained_timesteps"]) == (600, 900)
    assert meta["snapshot"] == {"kind": "best", "steps": 600, "confirmation": state["best"]}
    assert [e["steps"] for e in meta["train_evals"]] == [300, 600, 900] and meta["budget_complete"] is False

    loop.export_run("TD3", "Hopper", eval_episodes=2, overwrite=True, snapshot="latest")
    meta = load_shipped("TD3", "Hopper-v5", verify=False).meta
    assert loaded == ["best", "ckpt"] and (meta["timesteps"], meta["snapshot"]) == (900, {"kind": "latest", "steps": 900})
    import shutil

    shutil.rmtree(paths.best)  # a run without best/: its latest checkpoint
    loop.export_run("TD3", "Hopper", eval_episodes=2, overwrite=True)
    assert load_shipped("TD3", "Hopper-v5", verify=False).meta["snapshot"] == {"kind": "latest", "steps": 900}
    with pytest.raises(RLBenchError, match="unknown snapshot 'first'"):
        loop.export_run("TD3", "Hopper", snapshot="first")


def test_a_run_resumed_without_a_best_agent_confirms_its_checkpoint_first(tmp_baselines, monkeypatch):
    import rlbench.train.loop as loop
    from rlbench.zoo.agents import best_checkpoint

    keep_best = loop.keep_best
    monkeypatch.setattr(loop, "keep_best", lambda *args: False)  # a run that has no best agent
    monkeypatch.setattr(loop, "quick_eval", lambda model, cfg, episodes=5, first=0: 50.0 + first)
    train("TD3", "Hopper", timesteps=300, checkpoint_every=300, export=False, progress=False, early_stop=False)
    paths = run_dir(get_config("TD3", "Hopper"), 0)
    assert best_checkpoint(paths) is None and str(paths.root).startswith(str(tmp_baselines.parent))
    monkeypatch.setattr(loop, "keep_best", keep_best)
    calls = []
    monkeypatch.setattr(loop, "quick_eval", lambda model, cfg, episodes=5, first=0:
                        calls.append((int(model.num_timesteps), episodes)) or 50.0 + first)
    train("TD3", "Hopper", timesteps=600, checkpoint_every=300, resume=True, export=False, progress=False,
          early_stop=False)
    assert calls == [(300, 20), (600, 5)]  # 600's 50 is below the confirmed 55: not confirmed
    assert json.loads((best_checkpoint(paths) / "state.json").read_text())["best"]["steps"] == 300


@pytest.mark.parametrize("trainer", ["sb3", "sbx"])
def test_a_warm_start_continues_the_shipped_agent(tmp_baselines, trainer):
    """--init-from-shipped: the new run's agent is the shipped one (before its first update it scores
    exactly what the shipped agent scored on the same seeds), counts on from the shipped steps, and
    its export says what it was continued from."""
    if trainer == "sbx":
        pytest.importorskip("sbx")
    train("TD3", "Hopper", timesteps=300, checkpoint_every=300, eval_episodes=2, progress=False, early_stop=False)
    shipped = json.loads((tmp_baselines / "policies" / "TD3-Hopper-v5" / "meta.json").read_text())
    train("TD3", "Hopper", timesteps=600, checkpoint_every=300, seed=1, init_from_shipped=True, overwrite=True,
          eval_episodes=2, progress=False, early_stop=False, trainer=trainer)
    state = json.loads((latest_checkpoint(run_dir(get_config("TD3", "Hopper"), 1)) / "state.json").read_text())
    assert state["init"]["steps"] == 300 and state["init"]["agent_sha256"] == shipped["files"]["agent.pt"]["sha256"]
    assert [e["steps"] for e in state["evals"]] == [600]  # one chunk: 300 shipped + 300 new
    assert state["evals"][0]["return"] == shipped["train_evals"][0]["return"]  # learning_starts: no update yet
    meta = json.loads((tmp_baselines / "policies" / "TD3-Hopper-v5" / "meta.json").read_text())
    assert meta["init"]["agent_sha256"] == shipped["files"]["agent.pt"]["sha256"]
    assert meta["regenerate"].endswith("--init-from-shipped")
    assert any("--init-from-shipped" in d for d in meta["hyperparameters"]["departures"])


def test_a_warm_start_needs_a_shipped_off_policy_agent(tmp_baselines):
    with pytest.raises(RLBenchError, match="TD3-Hopper-v5"):
        train("TD3", "Hopper", timesteps=600, init_from_shipped=True, export=False, progress=False)
    with pytest.raises(RLBenchError, match="not PPO"):
        train("PPO", "Hopper", timesteps=600, init_from_shipped=True, export=False, progress=False)


def test_a_sac_warm_start_restarts_at_the_agents_entropy_coefficient():
    """agent.pt records SAC's log entropy coefficient; one that does not restarts at the fallback."""
    from rlbench.zoo.agents import build_model, load_agent_state, make_vec_env
    from rlbench.zoo.export import agent_state

    cfg = get_config("SAC", "Hopper")
    trained = build_model(cfg, make_vec_env(cfg, 0), 0)
    trained.log_ent_coef.data.fill_(-2.5)
    agent = agent_state(trained)
    assert agent["log_ent_coef"] == -2.5
    fresh = build_model(cfg, make_vec_env(cfg, 1), 1)
    load_agent_state(fresh, agent, source=None, ent_coef=0.01)
    assert fresh.log_ent_coef.item() == -2.5
    del agent["log_ent_coef"]
    load_agent_state(fresh, agent, source=None, ent_coef=0.01)
    assert fresh.log_ent_coef.item() == pytest.approx(math.log(0.01))
