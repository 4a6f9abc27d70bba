"""The paper's findings as checks over the grid's stored figures.

Each prints our figure next to the paper's. A finding that does not reproduce is a reported
result; the check fails only when our own stored figure for the finding moves. With
``--rlbench-update-baselines`` the figures are recorded by the controller at the end of the
session, after the cells' own figures (so they describe the updated grid).
"""

from __future__ import annotations

import json

import pytest

from rlbench import findings

KEYS = ["bytes", "ptdq_vs_ptsq", "l2_vs_l1", "keep90_at_0.05", "keep90_at_0.50", "rss"]


@pytest.fixture(scope="module")
def current(rlbench_session):
    return findings.current(rlbench_session.store)


@pytest.mark.smoke
@pytest.mark.parametrize("key", KEYS)
def test_finding(key, current, rlbench_session, capsys):
    f = current.get(key)
    if f is None or f.n == 0:
        pytest.skip(f"finding {key}: no cells with the figures it needs are stored yet")
    with capsys.disabled():
        print(f"\n{f.line()}")
    if rlbench_session.update:
        pytest.skip(f"finding {key}: recorded at the end of this --rlbench-update-baselines session")
    store = rlbench_session.store
    path = findings.findings_path(store)
    try:
        stored = json.loads(path.read_text()) if path.exists() else {}
    except ValueError as exc:
        pytest.fail(f"{path} is corrupt ({exc}); restore it with `git checkout -- {path}`", pytrace=False)
    slot = stored.get("machines", {}).get(store.machine_id, {}) if key == "rss" else stored
    if key not in slot:
        pytest.fail(f"finding {key}: no stored figure in {path}; record it with: "
                    f"pytest bench --rlbench-update-baselines", pytrace=False)
    msg = findings.moved(key, f, slot[key], store.tolerances().memory)
    assert msg is None, f"{msg}; test {key}"
