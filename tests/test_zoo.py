"""Loading a shipped policy refuses anything it cannot vouch for, naming the file and the fix."""

from __future__ import annotations

from rlbench.zoo.registry import pairs

import json
from pathlib import Path

import pytest

from rlbench.cli.main import main
from rlbench.core.errors import PolicyError
from rlbench.zoo.shipped import load_shipped, zoo_table
from tests._fakes import ship_fake


def test_roundtrip_through_the_real_export(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    sp = load_shipped("PPO", "Hopper-v5")
    assert sp.path == folder
    assert sp.module().current_spec().obs_dim == 11
    assert sorted(p.name for p in folder.iterdir()) == ["agent.pt", "meta.json", "policy.onnx", "policy.pt"]


def test_missing_policy_names_file_and_command(tmp_baselines):
    with pytest.raises(PolicyError) as exc:
        load_shipped("SAC", "Ant-v5")
    msg = str(exc.value)
    assert "SAC-Ant-v5/meta.json" in msg and "rlbench train SAC Ant-v5" in msg


def test_missing_file_inside_policy_folder(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    (folder / "policy.onnx").unlink()
    with pytest.raises(PolicyError, match=r"policy.onnx is missing.*rlbench train PPO Hopper-v5"):
        load_shipped("PPO", "Hopper-v5")


def test_sha256_mismatch_is_refused(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    data = bytearray((folder / "policy.pt").read_bytes())
    data[-10] ^= 0xFF
    (folder / "policy.pt").write_bytes(bytes(data))
    with pytest.raises(PolicyError, match=r"policy.pt has sha256 .* refusing it"):
        load_shipped("PPO", "Hopper-v5")


def test_corrupt_metadata_names_file(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    (folder / "meta.json").write_text("{ not json")
    with pytest.raises(PolicyError, match=r"meta.json is corrupt.*rlbench train PPO Hopper-v5"):
        load_shipped("PPO", "Hopper-v5")


def test_corrupt_weights_name_file(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    (folder / "policy.pt").write_bytes(b"garbage")
    sp = load_shipped("PPO", "Hopper-v5", verify=False)
    with pytest.raises(PolicyError, match=r"policy.pt is corrupt.*rlbench train PPO Hopper-v5"):
        sp.module()


def _edit_meta(folder, **changes):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


def test_other_environment_version_is_refused(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    _edit_meta(folder, env_id="Hopper-v4")
    with pytest.raises(PolicyError) as exc:
        load_shipped("PPO", "Hopper-v5")
    assert "Hopper-v4" in str(exc.value) and "Hopper-v5" in str(exc.value)


def test_other_observation_shape_is_refused(tmp_baselines):
    folder = ship_fake(tmp_baselines)
    _edit_meta(folder, observation_space={"shape": [17]})
    with pytest.raises(PolicyError) as exc:
        load_shipped("PPO", "Hopper-v5")
    assert "[17]" in str(exc.value) and "[11]" in str(exc.value)


def test_export_never_overwrites_silently(tmp_baselines):
    ship_fake(tmp_baselines)
    with pytest.raises(PolicyError, match="--overwrite"):
        ship_fake(tmp_baselines)


def test_zoo_table_lists_all_pairs(tmp_baselines):
    ship_fake(tmp_baselines, returns=(10.0, 20.0, 30.0))
    rows = zoo_table(verify=True)
    assert len(rows) == len(pairs()) == 25 + 2  # the paper's grid, then DQN on CartPole and LunarLander
    shipped = [r for r in rows if r["status"] != "missing"]
    assert [(r["algo"], r["env"]) for r in shipped] == [("PPO", "Hopper-v5")]
    assert shipped[0]["return_mean"] == 20.0 and shipped[0]["episodes"] == 3
    missing = [r for r in rows if r["status"] == "missing"]
    assert all(r["command"].startswith(f"rlbench train {r['algo']} {r['env']}") for r in missing)


def test_zoo_list_json_cli(tmp_baselines, capsys):
    ship_fake(tmp_baselines)
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["status"] != "missing")
    for key in ("algo", "env", "timesteps", "seed", "episodes", "return_mean", "return_std", "policy_path"):
        assert key in row
    assert row["policy_path"].endswith("PPO-Hopper-v5/policy.pt")


def test_cli_output_piped_into_a_closed_reader_exits_0(tmp_baselines, tmp_path, monkeypatch):
    class ClosedPipe:  # `rlbench zoo list | head -1`: head has exited
        def __init__(self, fd):
            self.fd = fd

        def write(self, _):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return self.fd

        def flush(self):
            pass

    with open(tmp_path / "out", "w") as real:
        monkeypatch.setattr("sys.stdout", ClosedPipe(real.fileno()))
        assert main(["zoo", "list", "--markdown"]) == 0


def test_cli_unknown_algorithm_exits_2_with_valid_names(capsys):
    assert main(["train", "A2C", "Hopper"]) == 2
    err = capsys.readouterr().err
    assert "unknown algorithm 'A2C'" in err and "TRPO, PPO, DDPG, TD3, SAC" in err


def test_zoo_markdown_sets_each_policy_beside_doing_nothing():
    from rlbench.report.zoo_table import zoo_markdown

    def row(algo, env, lo, hi):
        return {"algo": algo, "env": env, "status": "ok", "return_mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi,
                "timesteps": 200_000, "target_timesteps": 200_000}

    idle = {"Ant-v5": {"mean": 993.4, "ci": [991.6, 995.2]}, "HalfCheetah-v5": {"mean": -0.24, "ci": [-0.6, 0.1]}}
    rows = [row("SAC", "Ant-v5", 637, 862), row("TD3", "Ant-v5", 900, 1000), row("SAC", "HalfCheetah-v5", 6605, 6656),
            row("SAC", "Hopper-v5", 1283, 1440)]
    lines = zoo_markdown(rows, idle).splitlines()
    assert lines[2].endswith("| 993 (**ours below**) | not measured |")  # whole CI under the idle CI
    assert lines[3].endswith("| 993 | not measured |")  # CI reaches it: not below
    assert lines[4].endswith("| 0 | not measured |") and lines[5].endswith("| not recorded | not measured |")
    assert lines[-1].endswith("Below doing nothing (our whole CI under the doing-nothing return's): 1 of 4.")


def test_zoo_markdown_says_when_a_policy_is_its_runs_best_agent():
    from rlbench.report.zoo_table import zoo_markdown

    base = {"algo": "SAC", "env": "Hopper-v5", "return_mean": 3000.0, "ci_low": 2900.0, "ci_high": 3100.0,
            "target_timesteps": 1_000_000}
    rows = [{**base, "status": "partial-budget", "timesteps": 170_000, "trained_timesteps": 300_000},
            {**base, "status": "ok", "timesteps": 1_000_000, "trained_timesteps": 1_000_000},
            {**base, "status": "ok", "timesteps": 270_000, "trained_timesteps": 280_000, "stopped_early": True}]
    lines = zoo_markdown(rows, {}).splitlines()
    assert "| 300k of 1000k (ships its best, at 170k) |" in lines[2]
    assert "| 1000k |" in lines[3] and "best" not in lines[3]
    assert "| 280k (stopped early) (ships its best, at 270k) |" in lines[4]


def test_zoo_matrix_marks_pairs_below_the_paper_and_below_doing_nothing():
    from rlbench.report.zoo_table import zoo_matrix_markdown

    def row(algo, env, lo, hi):
        return {"algo": algo, "env": env, "status": "ok", "return_mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}

    idle = {"Ant-v5": {"mean": 993.4, "ci": [991.6, 995.2]}}
    rows = [row("SAC", "Ant-v5", 637, 862), row("TD3", "Ant-v5", 3500, 3600), row("SAC", "Hopper-v5", 2500, 2600)]
    lines = zoo_matrix_markdown(rows, idle).splitlines()
    assert lines[0] == "| env | SAC | TD3 |"
    assert lines[2] == "| Ant-v5 | **750** (4022) † | 3550 (3424) |"  # SAC: CI under both; TD3: above both
    assert lines[3] == "| Hopper-v5 | 2550 (2539) |  |"  # the CI reaches the paper's figure: not bold
    assert lines[-1].endswith("At or above the paper: 2 of 3 pairs it reports. Below doing nothing: 1 of 3 shipped pairs.")


def test_zoo_tables_show_saturation_and_name_the_saturated_pairs():
    from rlbench.report.zoo_table import zoo_markdown, zoo_matrix_markdown

    def row(algo, env, frac):
        return {"algo": algo, "env": env, "status": "ok", "return_mean": 1000.0, "ci_low": 900.0, "ci_high": 1100.0,
                "timesteps": 1_000_000, "target_timesteps": 1_000_000, "action_saturation": frac}

    rows = [row("TD3", "Humanoid-v5", 0.93), row("SAC", "Humanoid-v5", 0.5), row("SAC", "Hopper-v5", 0.017)]
    lines = zoo_markdown(rows).splitlines()
    assert [line.rsplit("|", 2)[1].strip() for line in lines[2:5]] == ["**93%**", "50%", "2%"]
    matrix = zoo_matrix_markdown(rows).splitlines()
    assert matrix[-1] == "More than 50% of their action components at a bound on these episodes: TD3-Humanoid-v5."
    assert "at a bound" not in zoo_matrix_markdown(rows[1:])  # nobody above 50%: no sentence


def test_readme_zoo_table_is_the_generated_one():
    from rlbench.core.paths import baselines_dir
    from rlbench.gate import idle
    from rlbench.report.zoo_table import zoo_matrix_markdown
    from rlbench.zoo.shipped import zoo_table

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = zoo_matrix_markdown(zoo_table(), idle.read(baselines_dir()))
    assert table in readme, "README's zoo table is stale: paste the output of `rlbench zoo list --matrix`"




def test_zoo_markdown_has_no_paper_figure_for_dqn_and_counts_it_apart():
    from rlbench.report.zoo_table import zoo_markdown

    rows = [{"algo": "DQN", "env": "CartPole-v1", "status": "ok", "return_mean": 500.0, "ci_low": 500.0,
             "ci_high": 500.0, "timesteps": 200_000, "target_timesteps": 200_000},
            {"algo": "DQN", "env": "LunarLander-v3", "status": "missing"}]
    lines = zoo_markdown(rows, {"CartPole-v1": {"mean": 22.1, "ci": [20.0, 24.0]}}).splitlines()
    assert lines[2] == "| DQN | CartPole-v1 | 500 [500, 500] | 200k | — | — | no paper figure | 22 | — |"
    assert lines[3] == "| DQN | LunarLander-v3 | not shipped yet | — | — | — | — | not recorded | — |"
    assert "0 of 0 shipped pairs the paper has a figure for; 1 of 2 not shipped yet" in lines[-1]
