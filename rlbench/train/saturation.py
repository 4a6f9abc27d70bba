"""How many of a shipped policy's action components sit at a bound of the action space, on its own
evaluation rollouts (:class:`rlbench.measure.returns.ActionSaturation`).

A policy that saturates its actions returns the same figure whatever compression does to its
weights, so its cells cannot fail. The export records the figure in ``meta.json``'s evaluation;
:func:`measure` re-runs the recorded evaluation seeds for a policy shipped without it, and
:func:`write` adds it to the policy's ``meta.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlbench.core.errors import PolicyError
from rlbench.core.io import atomic_write_json
from rlbench.measure.returns import ActionSaturation, evaluate_returns
from rlbench.runtime.predictors import TorchPredictor
from rlbench.zoo.registry import is_discrete
from rlbench.zoo.shipped import ShippedPolicy


@dataclass(frozen=True)
class Measured:
    """One policy's saturation on its recorded evaluation seeds, and whether those rollouts were
    the recorded ones (every return as recorded, to 1e-6). A policy exported on another machine
    class can take other trajectories on the same seeds (its float arithmetic differs, and MuJoCo
    is chaotic); the figure is then of this machine's episodes, and says so."""

    name: str
    saturation: ActionSaturation
    identical: bool
    mean: float

    def to_json(self, recorded_mean: float) -> dict:
        episodes = ("recorded" if self.identical else
                    f"re-run: mean return {self.mean:.1f} against the recorded {recorded_mean:.1f}")
        return {**self.saturation.to_json(), "episodes": episodes}


def measure(sp: ShippedPolicy) -> Measured:
    """Re-run ``sp``'s recorded evaluation (same seeds, torch, deterministic) counting saturated components."""
    if is_discrete(sp.env_id):
        raise PolicyError(f"{sp.name}: {sp.env_id} has discrete actions; saturation is a figure of continuous ones")
    rec = evaluate_returns(TorchPredictor(sp.module()), sp.env_id, sp.recorded_seeds, label=sp.name, saturation=True)
    identical = bool(np.allclose(rec.returns, sp.recorded_returns, rtol=0, atol=1e-6))
    return Measured(sp.name, rec.action_saturation, identical, rec.mean)


def write(sp: ShippedPolicy, m: Measured, overwrite: bool = False) -> bool:
    """Add ``m`` to ``sp``'s ``meta.json`` evaluation; True if the file changed. A figure already
    recorded is kept unless ``overwrite`` (a different one raises :class:`PolicyError` saying so)."""
    meta = dict(sp.meta)
    evaluation = dict(meta["evaluation"])
    old = evaluation.get("action_saturation")
    new = m.to_json(float(np.mean(sp.recorded_returns)))
    if old is not None and ActionSaturation.from_json(old) == m.saturation:
        return False  # the same counts (the export's record says nothing of re-runs: its episodes are the recorded ones)
    if old is not None and not overwrite:
        raise PolicyError(f"{sp.path / 'meta.json'} records action_saturation {old}, this run measured {new}; "
                          f"pass --overwrite to replace it")
    evaluation["action_saturation"] = new
    meta["evaluation"] = evaluation
    atomic_write_json(sp.path / "meta.json", meta)
    return True
