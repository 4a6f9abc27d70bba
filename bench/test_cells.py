"""The grid: one test per algorithm x environment x compression variant.

This file only parametrizes and asserts; the measuring lives in :mod:`rlbench.cell`.
"""

from __future__ import annotations

import pytest

from rlbench.cell import check_cell, run_cell
from rlbench.errors import BaselineError
from rlbench.matrix import cells, is_smoke
from rlbench.zoo import is_shipped, train_command

CELLS = [pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if is_smoke(c) else []) for c in cells()]


@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell, rlbench_session, record_cell):
    if not is_shipped(cell.algo, cell.env_id):
        msg = f"NOT SHIPPED: {cell.pair}: make it with: {train_command(cell.algo, cell.env_id)}"
        if rlbench_session.strict:
            pytest.fail(msg)
        pytest.skip(msg)
    result = run_cell(cell, rlbench_session.store, rounds=rlbench_session.rounds)
    record_cell(result)
    if rlbench_session.update:
        return  # recording run: the figures are written by the controller at the end
    try:
        verdicts = check_cell(result, rlbench_session.store, gate_latency=rlbench_session.gate_latency)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    failures = [v.message for v in verdicts if v.failed]
    assert not failures, "\n".join(failures)
