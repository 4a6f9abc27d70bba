"""The grid: one test per algorithm x environment x compression variant.

This file only parametrizes and asserts; the measuring, the re-time policy and the recording modes
live in :func:`rlbench.grid.cell.measure_and_judge`, and the plugin's controller writes the figures.
"""

from __future__ import annotations

import pytest

from rlbench.grid.cell import check_energy, measure_and_judge, run_energy
from rlbench.core.errors import BaselineError
from rlbench.grid.matrix import cells, is_smoke
from rlbench.measure.energy import MeterError
from rlbench.zoo.shipped import is_shipped, train_command

CELLS = [pytest.param(c, id=c.id, marks=[pytest.mark.smoke] if is_smoke(c) else []) for c in cells()]


def _require_policy(cell, session):
    if not is_shipped(cell.algo, cell.env_id):
        msg = f"NOT SHIPPED: {cell.pair}: make it with: {train_command(cell.algo, cell.env_id)}"
        if session.strict:
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.mark.parametrize("cell", CELLS)
def test_cell(cell, rlbench_session, record_cell, record_outcome):
    _require_policy(cell, rlbench_session)
    try:
        run = measure_and_judge(cell, rlbench_session.store, rlbench_session.cell_options(), record=record_cell)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    if run.judged:
        record_outcome(cell.id, run.verdicts)
    assert not run.failures, "\n".join(run.failures)


@pytest.mark.parametrize("cell", CELLS)
def test_energy(cell, rlbench_session, record_energy):
    _require_policy(cell, rlbench_session)
    error = None
    try:
        energy = run_energy(cell)
        check = check_energy(cell.id, energy, rlbench_session.store, update=rlbench_session.update)
    except MeterError as exc:  # a meter that is present but fails: not a machine without one
        error = f"{cell.id}: {exc}"
    except BaselineError as exc:
        error = str(exc)
    if error:  # outside the except: one line, without the exception it replaces
        pytest.fail(error, pytrace=False)
    if check.skip:
        pytest.skip(check.skip)
    if energy["available"]:
        record_energy(cell.id, energy)
    assert not check.failures, "\n".join(check.failures)
