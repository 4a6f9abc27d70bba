"""The shipped policy zoo: loading with every check, listing, and the training queue.

Loading refuses anything it cannot vouch for, with an error that names the file and the
command that regenerates it: a missing or corrupt file, a sha256 that does not match
``meta.json`` (saying which of the two is wrong where git can tell), or a policy recorded for
another environment version or observation shape.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.errors import PolicyError
from rlbench.core.io import git_state, sha256_file
from rlbench.core.paths import policies_dir, runs_dir
from rlbench.zoo.registry import get_config, pairs

FILES = ("policy.pt", "policy.onnx", "agent.pt")


def train_command(algo: str, env_id: str) -> str:
    cfg = get_config(algo, env_id)
    return f"rlbench train {cfg.algo} {cfg.env_id} --timesteps {cfg.timesteps} --seed 0"


@dataclass(frozen=True)
class ShippedPolicy:
    """A validated shipped policy: its folder, metadata and the loaded torch module."""

    algo: str
    env_id: str
    path: Path
    meta: dict

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.env_id}"

    @property
    def policy_pt(self) -> Path:
        return self.path / "policy.pt"

    @property
    def policy_onnx(self) -> Path:
        return self.path / "policy.onnx"

    @property
    def agent_pt(self) -> Path:
        return self.path / "agent.pt"

    @property
    def sha256(self) -> str:
        return self.meta["files"]["policy.pt"]["sha256"]

    def module(self):
        """A fresh torch module each call: callers may transform it without touching the zoo."""
        # deferred: it loads torch, which importing this module does not
        from rlbench.zoo.policy import load_policy

        try:
            return load_policy(self.policy_pt)
        except Exception as exc:  # torch raises many types for a corrupt zip
            first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            raise PolicyError(f"{self.policy_pt} is corrupt ({type(exc).__name__}: {first}); regenerate it with: "
                              f"{train_command(self.algo, self.env_id)} --overwrite") from exc

    @property
    def recorded_returns(self) -> list[float]:
        return list(self.meta["evaluation"]["returns"])

    @property
    def recorded_seeds(self) -> list[int]:
        return list(self.meta["evaluation"]["seeds"])


def policy_dir(algo: str, env_id: str, root: Path | None = None) -> Path:
    cfg = get_config(algo, env_id)
    return (root or policies_dir()) / cfg.name


def is_shipped(algo: str, env_id: str, root: Path | None = None) -> bool:
    return (policy_dir(algo, env_id, root) / "meta.json").exists()


@functools.lru_cache(maxsize=None)
def _env_obs_shape(env_id: str) -> tuple[int, ...]:
    # deferred: it loads gymnasium, which importing this module does not
    from rlbench.zoo.envs import make_env

    env = make_env(env_id)
    try:
        return tuple(env.observation_space.shape)
    finally:
        env.close()


def load_shipped(algo: str, env_id: str, root: Path | None = None, verify: bool = True) -> ShippedPolicy:
    """Validate and return a shipped policy; raise :class:`PolicyError` naming the file otherwise."""
    cfg = get_config(algo, env_id)
    folder = policy_dir(cfg.algo, cfg.env_id, root)
    regen = train_command(cfg.algo, cfg.env_id)
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        raise PolicyError(f"no shipped policy for {cfg.name}: {meta_path} is missing; make it with: {regen}")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or "files" not in meta or "env_id" not in meta:
            raise ValueError("not an rlbench policy metadata file")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{meta_path} is corrupt ({exc}); regenerate it with: {regen} --overwrite") from exc
    if meta["env_id"] != cfg.env_id or meta.get("algo") != cfg.algo:
        raise PolicyError(f"{meta_path} records {meta.get('algo')} on {meta['env_id']} but {cfg.algo} on "
                          f"{cfg.env_id} was requested; regenerate it with: {regen} --overwrite")
    want_shape = list(_env_obs_shape(cfg.env_id))
    got_shape = list(meta.get("observation_space", {}).get("shape", []))
    if got_shape != want_shape:
        raise PolicyError(f"{meta_path} records observation shape {got_shape} but {cfg.env_id} has {want_shape}; "
                          f"regenerate it with: {regen} --overwrite")
    for name in FILES:
        f = folder / name
        if not f.exists():
            raise PolicyError(f"{f} is missing; regenerate it with: {regen} --overwrite")
        if verify:
            digest = sha256_file(f)
            if digest != meta["files"][name]["sha256"]:
                raise PolicyError(_sha_mismatch(f, meta_path, digest, meta["files"][name]["sha256"], cfg))
    return ShippedPolicy(cfg.algo, cfg.env_id, folder, meta)


def _sha_mismatch(f: Path, meta_path: Path, digest: str, recorded: str, cfg) -> str:
    """Which side of a sha256 mismatch is wrong, as far as git can tell, and the repair of each side.

    The file changed since its commit and meta.json did not: the file is wrong. meta.json changed
    and the file did not: meta.json is. Otherwise (both changed, both as committed, no git) there
    is no telling, and both repairs are offered.
    """
    file_state, meta_state = git_state(f), git_state(meta_path)
    export = (f"export it again with `rlbench export {cfg.algo} {cfg.env_id} --overwrite` (needs the run's checkpoint "
              f"under {runs_dir()}; without it: `{train_command(cfg.algo, cfg.env_id)} --overwrite`)")
    if file_state == "changed" and meta_state == "unchanged":
        return (f"{f} has sha256 {digest[:12]}… but {meta_path} records {recorded[:12]}…; refusing it: the file has "
                f"changed since it was committed and meta.json has not. Restore it with `git checkout -- {f}`")
    if meta_state == "changed" and file_state == "unchanged":
        return (f"{meta_path} records sha256 {recorded[:12]}… for {f.name}, but {f} hashes to {digest[:12]}… and is "
                f"as committed: meta.json is the wrong side (it has changed since it was committed); refusing the "
                f"policy. Restore meta.json with `git checkout -- {meta_path}`")
    if file_state == meta_state == "unchanged":
        return (f"{f} has sha256 {digest[:12]}… but {meta_path} records {recorded[:12]}…; refusing it. Both are as "
                f"committed, so the commit itself pairs them wrongly: {export}")
    return (f"{f} has sha256 {digest[:12]}… but {meta_path} records {recorded[:12]}…; refusing it. If the file is "
            f"wrong, restore it with `git checkout -- {f}`; if it is the intended one and meta.json is wrong, restore "
            f"meta.json with `git checkout -- {meta_path}` or {export}")


def zoo_table(root: Path | None = None, verify: bool = False) -> list[dict]:
    """One row per pair of the grid: shipped policies with their figures, the rest as missing."""
    rows = []
    for p in pairs():
        folder = policy_dir(p.algo, p.env_id, root)
        row = {"algo": p.algo, "env": p.env_id, "policy_path": str(folder / "policy.pt")}
        if not (folder / "meta.json").exists():
            row.update(status="missing", command=train_command(p.algo, p.env_id), timesteps=None, seed=None,
                       episodes=None, return_mean=None, return_std=None, ci_low=None, ci_high=None)
            rows.append(row)
            continue
        try:
            sp = load_shipped(p.algo, p.env_id, root, verify=verify)
            if verify:
                sp.module()  # a file that hashes as recorded can still have been recorded broken
        except PolicyError as exc:
            row.update(status="invalid", error=str(exc))
            rows.append(row)
            continue
        ev = sp.meta["evaluation"]
        row.update(status="ok" if sp.meta.get("budget_complete") else "partial-budget",
                   timesteps=sp.meta["timesteps"], trained_timesteps=sp.meta.get("trained_timesteps", sp.meta["timesteps"]),
                   stopped_early=bool(sp.meta.get("stopped_early")),
                   target_timesteps=get_config(p.algo, p.env_id).timesteps,
                   seed=sp.meta["seed"], episodes=len(ev["returns"]), return_mean=ev["mean"], return_std=ev["std"],
                   ci_low=ev["ci_low"], ci_high=ev["ci_high"], sha256=sp.sha256,
                   action_saturation=(ev.get("action_saturation") or {}).get("fraction"))
        rows.append(row)
    return rows
