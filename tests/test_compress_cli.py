"""``rlbench compress`` through ``add_parser``, on a tiny policy shipped through the real export path."""

from __future__ import annotations

import argparse
import json

import pytest

from rlbench.cli.compress import add_parser
from rlbench.core.errors import CompressionError, UnknownNameError
from tests._fakes import ship_fake


def _run(argv):
    parser = argparse.ArgumentParser(prog="rlbench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_compress_cli_writes_files_and_one_json_line(tmp_baselines, tmp_path, capsys):
    ship_fake(tmp_baselines)
    out = tmp_path / "out"
    assert _run(["compress", "ppo", "hopper", "l2", "--ratio", "0.5", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["method"] == "l2" and summary["ratio"] == 0.5 and summary["policy"] == "PPO-Hopper-v5"
    assert summary["hidden_before"] == [256, 256] and summary["hidden_after"] == [128, 128]
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.pt", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["key"] == summary["key"]

    with pytest.raises(CompressionError, match="already exist.*--overwrite"):
        _run(["compress", "PPO", "Hopper-v5", "l2", "--ratio", "0.5", "--out", str(out)])
    capsys.readouterr()
    assert _run(["compress", "PPO", "Hopper-v5", "l2", "--ratio", "0.5", "--out", str(out), "--overwrite"]) == 0
    assert json.loads(capsys.readouterr().out)["key"] == summary["key"]  # served from the cache

    # ptsq calibrates on the shipped policy's own environment (meta["env_id"])
    assert _run(["compress", "PPO", "Hopper-v5", "ptsq", "--n-calib", "100", "--out", str(tmp_path / "q")]) == 0
    q = json.loads(capsys.readouterr().out)
    assert q["calibration"]["env_id"] == "Hopper-v5" and q["calibration"]["source"] == "rollouts"
    assert q["int8_weight_tensors"] == 3

    with pytest.raises(CompressionError, match=r"ratio must be a number in \(0, 0\.70\]; got 0\.95"):
        _run(["compress", "PPO", "Hopper-v5", "l1", "--ratio", "0.95", "--out", str(tmp_path / "x")])
    with pytest.raises(CompressionError, match="ptdq: unknown parameter"):
        _run(["compress", "PPO", "Hopper-v5", "ptdq", "--ratio", "0.3", "--out", str(tmp_path / "x")])
    with pytest.raises(UnknownNameError, match="valid methods: ptdq"):
        _run(["compress", "PPO", "Hopper-v5", "int2", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()


def test_warm_builds_each_grid_artefact_once_then_finds_it(tmp_baselines, capsys):
    ship_fake(tmp_baselines)  # PPO Hopper only: the other 24 pairs are not shipped and have no cells to warm
    assert _run(["warm", "--method", "fp16,l2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    *per, total = lines
    assert [x["cell"] for x in per] == ["PPO-Hopper-v5-fp16"] + [f"PPO-Hopper-v5-l2-{r:.2f}" for r in
                                                                 (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                                                  0.5, 0.55, 0.6, 0.65, 0.7)]
    assert {x["status"] for x in per} == {"built"} and total == {**total, "artefacts": 15, "built": 15, "cached": 0}
    assert _run(["warm", "--algo", "ppo", "--env", "hopper", "--method", "l2"]) == 0
    *per, total = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert {x["status"] for x in per} == {"cached"} and total["cached"] == 14 and total["built"] == 0
    with pytest.raises(CompressionError, match="--method baseline,l3: not a compression method of the grid; valid: ptdq"):
        _run(["warm", "--method", "baseline,l3"])
