"""Training queues: a file of pairs trained from the top, fed while it runs, shared by two processes."""

from __future__ import annotations

import pytest

import rlbench.train.queue as queue
from rlbench.core.errors import RLBenchError
from rlbench.train.loop import RunBusyError


@pytest.fixture
def trained(monkeypatch, tmp_baselines):
    """What the queue trains, in order, instead of training it; a pair in ``busy`` is another process's."""
    calls, busy = [], set()

    def fake_train(algo, env, seed=0, resume=False, overwrite=False, trainer=None, init_from_shipped=False):
        name = f"{algo}-{env}"
        if name in busy:
            raise RunBusyError(f"{name} is being trained by another process")
        calls.append((name, trainer) + (("warm",) if init_from_shipped else ()))

    monkeypatch.setattr(queue, "train", fake_train)
    return calls, busy


def test_the_file_is_trained_from_the_top_and_each_line_removed_once_its_pair_finished(trained, tmp_path):
    calls, _ = trained
    path = tmp_path / "queue.txt"
    path.write_text("# the zoo's queue\nSAC-Hopper-v5:sbx\n\nPPO-Ant-v5:sbx\nTD3-Hopper-v5\n")
    seen = []
    real_remove = queue.remove_line

    def remove_and_feed(p, line):
        seen.append(p.read_text())
        real_remove(p, line)
        if line == "SAC-Hopper-v5:sbx":  # fed while the queue runs: taken in its turn
            with open(p, "a") as fh:
                fh.write("DDPG-Hopper-v5:sbx\n")

    queue.remove_line = remove_and_feed
    try:
        queue.train_queue_file(path)
    finally:
        queue.remove_line = real_remove
    assert calls == [("SAC-Hopper-v5", "sbx"), ("PPO-Ant-v5", None), ("TD3-Hopper-v5", None),
                     ("DDPG-Hopper-v5", "sbx")]  # PPO trains with sb3 whatever the line says
    assert seen[0].startswith("# the zoo's queue\nSAC-Hopper-v5:sbx\n")  # removed only after it trained
    assert path.read_text() == "# the zoo's queue\n\n"


def test_a_pair_another_process_trains_is_passed_over_and_kept(trained, tmp_path):
    calls, busy = trained
    busy.add("SAC-Hopper-v5")
    path = tmp_path / "queue.txt"
    path.write_text("SAC-Hopper-v5\nTD3-Hopper-v5\n")
    queue.train_queue_file(path)
    assert calls == [("TD3-Hopper-v5", None)] and path.read_text() == "SAC-Hopper-v5\n"


def test_a_killed_queue_keeps_the_pair_it_was_training(trained, tmp_path, monkeypatch):
    path = tmp_path / "queue.txt"
    path.write_text("SAC-Hopper-v5\nTD3-Hopper-v5\n")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(queue, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        queue.train_queue_file(path)
    assert path.read_text() == "SAC-Hopper-v5\nTD3-Hopper-v5\n"


@pytest.mark.parametrize("line, message", [
    ("SAC-Hoper-v5", r"queue.txt:2: 'SAC-Hoper-v5' is not ALGO-ENV\[:TRAINER\] of a registered pair"),
    ("SACHopper", r"queue.txt:2: 'SACHopper' is not ALGO-ENV"),
    ("SAC-Hopper-v5:jax", r"queue.txt:2: unknown trainer 'jax'; valid trainers: sb3, sbx"),
])
def test_a_bad_line_is_refused_naming_the_file_and_line_before_anything_trains(trained, tmp_path, line, message):
    calls, _ = trained
    path = tmp_path / "queue.txt"
    path.write_text(f"TD3-Hopper-v5\n{line}\n")
    with pytest.raises(RLBenchError, match=message):
        queue.train_queue_file(path)
    assert calls == [] and path.read_text() == f"TD3-Hopper-v5\n{line}\n"


def test_a_missing_queue_file_says_what_to_write(tmp_path):
    with pytest.raises(RLBenchError, match="no such queue file; write one ALGO-ENV"):
        queue.train_queue_file(tmp_path / "none.txt")


def test_a_started_run_keeps_its_trainer_and_a_shipped_full_budget_pair_is_skipped(trained, tmp_path, monkeypatch):
    calls, _ = trained
    monkeypatch.setattr(queue, "latest_checkpoint", lambda paths: paths.root if "SAC" in paths.root.name else None)
    monkeypatch.setattr(queue, "finished", lambda cfg: "shipped from 1000000 steps" if cfg.algo == "PPO" else None)
    queue.train_queue(["SAC-Hopper-v5", "TD3-Hopper-v5", "PPO-Hopper-v5"], trainer="sbx")
    assert calls == [("SAC-Hopper-v5", None), ("TD3-Hopper-v5", "sbx")]


def test_init_from_shipped_warm_starts_only_new_off_policy_runs_of_shipped_pairs(trained, monkeypatch):
    calls, _ = trained
    monkeypatch.setattr(queue, "latest_checkpoint", lambda paths: paths.root if "SAC" in paths.root.name else None)
    monkeypatch.setattr(queue, "finished", lambda cfg: None)
    monkeypatch.setattr(queue, "is_shipped", lambda algo, env: algo != "DDPG")
    queue.train_queue(["SAC-Hopper-v5", "TD3-Hopper-v5", "DDPG-Hopper-v5", "PPO-Hopper-v5"], trainer="sbx",
                      init_from_shipped=True)
    assert calls == [("SAC-Hopper-v5", None), ("TD3-Hopper-v5", "sbx", "warm"), ("DDPG-Hopper-v5", "sbx"),
                     ("PPO-Hopper-v5", None)]
