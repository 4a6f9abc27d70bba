"""Each shipped policy's deterministic return on its recorded seeds reproduces the recorded figure."""

from __future__ import annotations

import numpy as np
import pytest

from rlbench.registry import pairs
from rlbench.zoo import is_shipped, load_shipped, train_command

PAIRS = [pytest.param(p, id=f"zoo-{p.name}") for p in pairs()]


@pytest.mark.parametrize("pair", PAIRS)
def test_recorded_return_reproduces(pair, rlbench_session, record_env_steps):
    from rlbench.checks import check_return
    from rlbench.measure.quiet import quiet_lock
    from rlbench.measure.returns import evaluate_returns
    from rlbench.runtime import TorchPredictor

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
