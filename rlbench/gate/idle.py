"""What doing nothing scores: each environment's return under a zero-action policy (on a discrete
task, the registry's idle action, or a uniformly random one where none means no actuation:
:data:`rlbench.zoo.registry.IDLE_ACTION`).

A policy that scores below standing still has learnt nothing worth compressing: Ant-v5 pays a
healthy reward of 1 per step, so a motionless ant earns about 995 over 1000 steps, more than
every Ant policy of our zoo and the paper's TRPO and DDPG Ant baselines. The findings that
measure a share of the baseline return (``rlbench.grid.findings``) report their counts over the
pairs whose baseline beats this return as well, and name the ones that do not.

The returns are machine-independent (no network runs; MuJoCo alone), stored per environment in
``baselines/idle.json`` and recorded like every other figure: ``bench/test_zoo_returns.py``
checks them, and on ``--rlbench-update-baselines`` hands them to the plugin's controller, which
writes them with the run's other figures.
"""

from __future__ import annotations

from pathlib import Path

from rlbench.core.errors import BaselineError
from rlbench.core.io import atomic_write_json, read_stored_json
from rlbench.gate.store import locked
from rlbench.measure.returns import eval_seeds, evaluate_returns
from rlbench.runtime.predictors import idle_predictor

SCHEMA = 1
EPISODES = 50
"""As many as a grid cell evaluates (:data:`rlbench.grid.cell.MAX_EPISODES`), on the same seeds: the
return gate compares a cell's new return with doing nothing's on the cell's own seeds."""


def idle_path(root: Path) -> Path:
    return Path(root) / "idle.json"


def measure(env_id: str, episodes: int = EPISODES, lock=None):
    """Doing nothing's returns (:func:`~rlbench.runtime.predictors.idle_predictor`) on the first
    ``episodes`` evaluation seeds."""
    return evaluate_returns(idle_predictor(env_id), env_id, eval_seeds(episodes), label=f"idle-{env_id}", lock=lock)


def read(root: Path) -> dict[str, dict]:
    """The stored idle returns by environment ({} if the file is absent); a broken file names itself."""
    path = idle_path(root)
    data = read_stored_json(path, "pytest bench/test_zoo_returns.py -k idle --rlbench-update-baselines")
    if data is None:
        return {}
    if not isinstance(data, dict):
        data = {}
    if data.get("schema") != SCHEMA:
        raise BaselineError(f"{path} has schema {data.get('schema')!r}, this rlbench reads {SCHEMA}; restore it "
                            f"with `git checkout -- {path}`")
    envs = data.get("envs")
    if not isinstance(envs, dict) or not all(isinstance(v, dict) and isinstance(v.get("returns"), list)
                                             and v["returns"] and isinstance(v.get("ci"), list)
                                             and len(v["ci"]) == 2 for v in envs.values()):
        raise BaselineError(f"{path} is not an rlbench idle-return file (an 'envs' object of "
                            f"{{'returns': [...], 'ci': [low, high]}} entries); restore it with "
                            f"`git checkout -- {path}`")
    return envs


def by_seed(root: Path) -> dict[str, dict[int, float]]:
    """Doing nothing's return per evaluation seed, per environment (environments stored without
    seeds are left out); what the return gate's doing-nothing test reads."""
    return {env: {int(s): float(r) for s, r in zip(e["seeds"], e["returns"])}
            for env, e in read(root).items() if "seeds" in e}


def entry(rec) -> dict:
    """One environment's stored form of its idle returns (a :class:`~rlbench.measure.returns.ReturnRecord`)."""
    return {"returns": [float(r) for r in rec.returns], "lengths": [int(n) for n in rec.lengths],
            "seeds": [int(s) for s in rec.seeds], "mean": float(rec.mean), "ci": [float(rec.ci_low), float(rec.ci_high)]}


def record(root: Path, env_id: str, rec) -> None:
    """Store one environment's idle returns, atomically, under the baseline files' lock."""
    record_entries(root, {env_id: entry(rec)})


def record_entries(root: Path, entries: dict[str, dict]) -> None:
    """Store idle entries (:func:`entry`) by environment, keeping the others' (nothing if there are none)."""
    if not entries:
        return
    path = idle_path(root)
    with locked(path):
        envs = read(root)
        envs.update(entries)
        atomic_write_json(path, {"schema": SCHEMA, "envs": dict(sorted(envs.items()))})


def below_idle(policy_ci_high: float, idle_entry: dict) -> bool:
    """True if a policy's return is resolvably below doing nothing: its whole 95% CI (``policy_ci_high``,
    its upper end) lies under the stored idle return's CI. The findings and the zoo table both ask this."""
    return policy_ci_high < idle_entry["ci"][0]
