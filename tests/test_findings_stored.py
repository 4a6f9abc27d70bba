"""``baselines/findings.json`` against the stored figures it is computed from.

A finding is stored exactly, and ``bench/test_findings.py`` fails a run whose machine's stored
figures give another figure than the stored one. The RSS finding is per machine, computed from
that machine's cells of the shipped policies, so a pair retrained and recorded on one machine
moves every other machine's RSS finding: :func:`rlbench.grid.findings.record` recomputes them all.
"""

from __future__ import annotations

import json
import shutil

import pytest

from rlbench.core.paths import REPO_ROOT
from rlbench.gate.store import BaselineStore
from rlbench.grid import findings

BASELINES = REPO_ROOT / "baselines"
MACHINES = sorted(p.stem for p in (BASELINES / "machines").glob("*.json"))


@pytest.mark.parametrize("mid", MACHINES)
def test_every_stored_machines_rss_finding_is_what_its_stored_cells_give(mid):
    store = BaselineStore.of_stored_machine(BASELINES, mid)
    f, stored = findings.current(store)["rss"], findings.stored_finding(store, "rss")
    assert (f.ours, f.n) == ((stored["ours"], stored["n"]) if stored else ({}, 0)), (
        f"{BASELINES / 'findings.json'}: machine {mid}'s RSS finding is {stored and (stored['ours'], stored['n'])}, "
        f"its stored cells give {(f.ours, f.n)}; a smoke run on that machine fails test_finding[rss]. "
        f"Recompute them: `rlbench baselines check --write-findings`")


@pytest.fixture
def retrained(tmp_path):
    """A copy of the stored figures in which one pair was retrained: its figures.json cells name
    another policy, so every machine's cells of it read as the old policy's."""
    base = shutil.copytree(BASELINES, tmp_path / "baselines", ignore=shutil.ignore_patterns("policies", "artefacts"))
    path = base / "figures.json"
    data = json.loads(path.read_text())
    pair = "TRPO-Hopper-v5"
    cells = [c for c in data["cells"] if c.startswith(f"{pair}-")]
    assert cells
    for c in cells:
        data["cells"][c]["policy_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    return base


def test_recording_on_one_machine_recomputes_every_machines_rss_finding(retrained):
    others = [m for m in MACHINES if findings.current(BaselineStore.of_stored_machine(retrained, m))["rss"].n]
    assert len(others) >= 2
    before = json.loads((retrained / "findings.json").read_text())
    findings.record(BaselineStore(retrained, "x86_64-2cpu-elsewhere"))  # a machine with no figures
    after = json.loads((retrained / "findings.json").read_text())
    moved = []
    for mid in MACHINES:
        store = BaselineStore.of_stored_machine(retrained, mid)
        f, stored = findings.current(store)["rss"], findings.stored_finding(store, "rss")
        assert (stored["ours"], stored["n"]) == (f.ours, f.n), mid
        if before["machines"][mid]["rss"] != after["machines"][mid]["rss"]:
            moved.append(mid)
    assert moved  # the retrained pair's cells were in some machine's RSS finding
    assert "x86_64-2cpu-elsewhere" not in after["machines"]  # no cells, no finding
    changed = {c.key for c in findings.changes(before, after, "x86_64-2cpu-elsewhere")}
    assert changed >= {f"rss@{m}" for m in moved}  # and the update says so


def test_baselines_check_fails_on_findings_the_stored_figures_no_longer_give_and_can_recompute_them(retrained, capsys):
    from rlbench.cli.main import main

    assert main(["baselines", "check", "--baselines", str(retrained)]) == 1
    err = capsys.readouterr().err
    assert "findings.json: findings the stored figures no longer give" in err and "--write-findings" in err
    assert "finding rss" in err  # this machine's (`rss`) or another's (`rss@ID`)
    assert main(["baselines", "check", "--baselines", str(retrained), "--write-findings"]) == 0
    assert "findings.json recomputed from the stored figures" in capsys.readouterr().out
    assert main(["baselines", "check", "--baselines", str(retrained)]) == 0
