"""The paper's findings as checks over the grid's stored figures.

Each prints our figure next to the paper's. A finding that does not reproduce is a reported
result; the check fails only when our own stored figure for the finding moves. With
``--rlbench-update-baselines`` the figures are recorded by the controller at the end of the
session, after the cells' own figures (so they describe the updated grid), and the controller
prints which findings changed.

These checks see only stored files: a worker cannot see the run's other cells. The run's own
figures reach the findings in the controller at the end of a checking run
(:func:`rlbench.grid.findings.check_fresh`, called by the plugin), which fails the run when they
overturn a finding.
"""

from __future__ import annotations

import pytest

from rlbench.grid import findings
from rlbench.core.errors import BaselineError

KEYS = ["bytes", "ptdq_vs_ptsq", "l2_vs_l1", "keep90_at_0.05", "keep90_at_0.50", "rss"]


@pytest.fixture(scope="module")
def current(rlbench_session):
    return findings.current(rlbench_session.store)


@pytest.mark.smoke
@pytest.mark.parametrize("key", KEYS)
def test_finding(key, current, rlbench_session, capsys):
    store = rlbench_session.store
    path = findings.findings_path(store)
    try:
        stored = findings.stored_finding(store, key)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    f = current.get(key)
    if f is None or f.n == 0:
        if stored is not None and stored.get("n", 0) > 0:
            pytest.fail(f"finding {key}: {path} holds it over n={stored['n']} cells, but the stored figures give "
                        f"it over none now (cells lost from the baselines, or the computation broke); test {key}",
                        pytrace=False)
        pytest.skip(f"finding {key}: no cells with the figures it needs are stored yet")
    with capsys.disabled():
        print(f"\n{f.line()}")
    if rlbench_session.update:
        pytest.skip(f"finding {key}: recorded at the end of this --rlbench-update-baselines session")
    if stored is None:
        pytest.fail(f"finding {key}: no stored figure in {path}; record it with: "
                    f"pytest bench --rlbench-update-baselines", pytrace=False)
    msg = findings.moved(key, f, stored)
    assert msg is None, f"{msg}; test {key}"
