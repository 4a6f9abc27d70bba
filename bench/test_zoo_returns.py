"""Each shipped policy's deterministic return on its recorded seeds reproduces the recorded figure,
and so does each environment's zero-action return (what doing nothing scores, ``rlbench.gate.idle``)."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.zoo.registry import pairs
from rlbench.zoo.shipped import is_shipped, load_shipped, train_command

PAIRS = [pytest.param(p, id=f"zoo-{p.name}") for p in pairs()]
ENVS = [pytest.param(e, id=f"idle-{e}") for e in sorted({p.env_id for p in pairs()})]


@pytest.mark.parametrize("pair", PAIRS)
def test_recorded_return_reproduces(pair, rlbench_session, record_env_steps):
    from rlbench.gate.checks import check_return
    from rlbench.measure.quiet import quiet_lock
    from rlbench.measure.returns import evaluate_returns
    from rlbench.runtime.predictors import TorchPredictor

    if not is_shipped(pair.algo, pair.env_id):
        pytest.skip(f"NOT SHIPPED: {pair.name}: make it with: {train_command(pair.algo, pair.env_id)}")
    sp = load_shipped(pair.algo, pair.env_id)
    rec = evaluate_returns(TorchPredictor(sp.module()), pair.env_id, sp.recorded_seeds, label=pair.name,
                           lock=quiet_lock())
    record_env_steps(pair.env_id, sum(rec.lengths))
    recorded = sp.recorded_returns
    identical = np.allclose(rec.returns, recorded, rtol=0, atol=1e-6)
    print(f"\n{pair.name}: {rec.mean:.1f} vs recorded {np.mean(recorded):.1f} "
          f"({'identical per episode' if identical else 'differs per episode'})")
    v = check_return(pair.name, list(rec.returns), recorded, rlbench_session.store.tolerances().returns)
    assert not v.failed, v.message


@pytest.mark.parametrize("env_id", ENVS)
def test_idle_return_reproduces(env_id, rlbench_session, record_env_steps, record_idle):
    from rlbench.gate import idle
    from rlbench.gate.checks import check_return
    from rlbench.core.errors import BaselineError
    from rlbench.measure.quiet import quiet_lock

    root = rlbench_session.store.root
    try:
        stored = idle.read(root).get(env_id)
    except BaselineError as exc:
        pytest.fail(str(exc), pytrace=False)
    rec = idle.measure(env_id, lock=quiet_lock())
    record_env_steps(env_id, sum(rec.lengths))
    print(f"\nidle-{env_id}: zero actions return {rec.mean:.1f} [{rec.ci_low:.1f}, {rec.ci_high:.1f}] "
          f"over {len(rec.returns)} episodes")
    if rlbench_session.update:  # the controller writes it into idle.json at the end of the run
        assert record_idle(env_id, rec)["returns"] == list(rec.returns)
        return
    if stored is None:
        pytest.fail(f"idle-{env_id}: no zero-action return stored in {idle.idle_path(root)}; record it with: "
                    f"pytest bench/test_zoo_returns.py -k idle-{env_id} --rlbench-update-baselines", pytrace=False)
    v = check_return(f"idle-{env_id}", list(rec.returns), stored["returns"], rlbench_session.store.tolerances().returns)
    assert not v.failed, v.message
