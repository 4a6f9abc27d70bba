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
    try:
        check = findings.check_stored(rlbench_session.store, key, current, update=rlbench_session.update)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    if check.line is not None:
        with capsys.disabled():
            print(f"\n{check.line}")
    if check.check is findings.Check.SKIP:
        pytest.skip(check.message)
    assert check.check is findings.Check.PASS, check.message
