"""`rlbench zoo list --verify` fails on a broken policy naming the file and the reason, and a sha256
mismatch says which side is wrong (each repair it names is carried out here)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rlbench.cli.main import main
from rlbench.core.errors import PolicyError
from tests._repair import command, commit, git_repo


@pytest.fixture
def shipped_repo(tmp_path, monkeypatch):
    """A fake shipped policy in a committed git repository."""
    from tests._fakes import ship_fake

    repo = git_repo(tmp_path / "repo")
    root = repo / "baselines"
    monkeypatch.setenv("RLBENCH_BASELINES", str(root))
    monkeypatch.setenv("RLBENCH_HOME", str(tmp_path / "home"))
    folder = ship_fake(root)
    commit(repo)
    return repo, folder


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))


def test_zoo_list_verify_fails_on_a_corrupt_policy_naming_file_and_reason(shipped_repo, capsys):
    from rlbench.zoo.shipped import load_shipped

    repo, folder = shipped_repo
    assert main(["zoo", "list", "--verify"]) == 0
    _flip_byte(folder / "policy.pt")
    assert main(["zoo", "list", "--verify"]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rlbench: error:")]
    assert len(errors) == 1
    assert errors[0].startswith(f"rlbench: error: PPO-Hopper-v5: {folder / 'policy.pt'} has sha256 ")
    assert "the file has changed since it was committed and meta.json has not" in errors[0]
    subprocess.run(command(errors[0].split("Restore it with ", 1)[1]), cwd=repo, check=True)
    load_shipped("PPO", "Hopper-v5")
    assert main(["zoo", "list", "--verify"]) == 0


def test_a_policy_recorded_broken_fails_verify_though_its_hash_matches(shipped_repo, capsys):
    from rlbench.core.io import sha256_file

    _, folder = shipped_repo
    (folder / "policy.pt").write_bytes(b"garbage")
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["policy.pt"]["sha256"] = sha256_file(folder / "policy.pt")
    (folder / "meta.json").write_text(json.dumps(meta))
    assert main(["zoo", "list", "--verify"]) == 2
    assert f"{folder / 'policy.pt'} is corrupt (" in capsys.readouterr().err


def _record_a_wrong_sha256(folder):
    """meta.json's record of policy.pt's hash changed; the file itself intact."""
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["policy.pt"]["sha256"] = "0" * 64
    (folder / "meta.json").write_text(json.dumps(meta))


def test_a_wrong_sha256_in_meta_json_is_blamed_on_meta_json_not_the_intact_file(shipped_repo):
    from rlbench.zoo.shipped import load_shipped

    repo, folder = shipped_repo
    _record_a_wrong_sha256(folder)
    with pytest.raises(PolicyError) as exc:
        load_shipped("PPO", "Hopper-v5")
    message = str(exc.value)
    assert message.startswith(f"{folder / 'meta.json'} records sha256 000000000000… for policy.pt, but "
                              f"{folder / 'policy.pt'} hashes to ")
    assert "meta.json is the wrong side" in message and "\n" not in message
    subprocess.run(command(message.split("Restore meta.json with ", 1)[1]), cwd=repo, check=True)
    load_shipped("PPO", "Hopper-v5")


def test_a_mismatch_git_cannot_settle_offers_both_repairs(shipped_repo):
    from rlbench.zoo.shipped import load_shipped

    repo, folder = shipped_repo
    subprocess.run(["rm", "-rf", str(repo / ".git")], check=True)  # no history to tell which side moved
    _record_a_wrong_sha256(folder)
    with pytest.raises(PolicyError) as exc:
        load_shipped("PPO", "Hopper-v5")
    message = str(exc.value)
    assert f"meta.json records 000000000000…" in message.replace(str(folder) + "/", "")
    assert f"restore it with `git checkout -- {folder / 'policy.pt'}`" in message
    assert f"restore meta.json with `git checkout -- {folder / 'meta.json'}`" in message
    assert "rlbench export PPO Hopper-v5 --overwrite" in message
