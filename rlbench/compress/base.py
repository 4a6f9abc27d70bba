"""Compression methods as pure functions, their parameters, and the on-disk artefact cache.

A method takes a policy and returns a deployable artefact; it never changes the policy it is
given (pruning deep-copies first: Torch-Pruning's pruner rewrites the module in place). Every
method declares itself in its own module (:mod:`rlbench.compress.registry`): its parameters and
their valid ranges, the runtime its artefact is measured in, its preparation and a
``build(policy_module, onnx_model_bytes, params, context) -> {filename: bytes}`` function.
:func:`compress` validates, prepares, looks the artefact up in the cache, and otherwise builds
it and stores it atomically.

Why a cache keyed by content: the benchmark grid measures each variant on many cells and
workers, and a static quantization or a pruning run is too slow to repeat per test. The key is
the sha256 of everything that decides the artefact's bytes: the policy's sha256, the method,
its (defaulted) parameters and implementation version from its declaration, what its
preparation returns (where calibration data comes from, the training settings), and the
versions of the libraries that write the files (:data:`KEY_LIBRARIES` and the declaration's
own). Same key, same bytes: building is deterministic (tests build twice into separate caches
and compare sha256).

Shipped artefacts. QAT and GMP fine-tune for minutes, so, like the zoo, the grid artefacts of
the methods declared ``shipped`` are made once and committed under ``baselines/artefacts/``
(``rlbench ship-artefacts``). :func:`compress` looks there first. A shipped entry is found by its *ship
key*: the cache key without the library versions, because a shipped artefact, like a shipped
policy, is what an upgrade is measured against, not something the upgrade remakes. Its
``artefact.json`` still records the versions that made it. ``use_shipped=False`` (``rlbench
compress --rebuild``) builds under the installed libraries instead.

Why a temporary directory plus ``os.rename``: pytest-xdist workers race on the same entry. Each
builds into its own hidden temporary directory and renames it into place; the rename of a
directory onto an existing, non-empty directory fails, and the loser discards its copy and uses
the winner's. A build that fails removes its temporary directory, so no partial entry is left.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench.compress.methods import METHODS, get_method
from rlbench.compress.names import MODEL_ONNX, MODEL_PT
from rlbench.compress.registry import MethodInfo, Source
from rlbench.compress.summary import summarise
from rlbench.core.errors import CompressionError, UnknownNameError
from rlbench.core.io import replace_dir, sha256_bytes, sha256_file
from rlbench.core.paths import baselines_dir, cache_dir
from rlbench.core.versions import library_versions

ARTEFACT_FORMAT = "rlbench.artefact/1"
META_FILE = "artefact.json"
#: Library versions that decide an artefact's bytes (gymnasium and mujoco: calibration rollouts).
KEY_LIBRARIES = ("torch", "onnx", "onnxruntime", "torch-pruning", "numpy", "gymnasium", "mujoco")
SHIP_COMMAND = "rlbench ship-artefacts"


def validate_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``method``'s defaulted, type-normalised parameters (:meth:`MethodInfo.validate`)."""
    return get_method(method).validate(params)


# ----------------------------------------------------------------------------------- artefact
@dataclass(frozen=True)
class Artefact:
    """A deployable compressed policy.

    ``files`` maps file names to paths in the cache entry (from :func:`compress`) or to bytes
    (from :func:`build_artefact`, uncached). Every artefact has ``model.onnx``; pruned ones also
    ``model.pt`` (:func:`rlbench.zoo.policy.load_policy` rebuilds the narrower module).
    """

    method: str
    params: dict
    files: dict
    runtime: str
    summary: dict
    key: str = ""
    path: Path | None = None
    """The cache entry's directory (None when built uncached)."""

    def data(self, name: str) -> bytes:
        f = self.files[name]
        return f if isinstance(f, bytes) else Path(f).read_bytes()

    def sha256(self, name: str = MODEL_ONNX) -> str:
        return sha256_bytes(self.data(name))

    def module(self):
        """The torch module of a torch artefact (pruned policies)."""
        # deferred: it loads torch, which importing this module does not
        from rlbench.zoo.policy import load_policy

        if MODEL_PT not in self.files:
            raise CompressionError(f"{self.method} artefact has no {MODEL_PT}; it runs in onnxruntime only")
        f = self.files[MODEL_PT]
        return load_policy(io.BytesIO(f) if isinstance(f, bytes) else Path(f))

    def predictor(self, runtime: str | None = None, name: str | None = None):
        """A :class:`~rlbench.runtime.predictors.Predictor` for the artefact in its runtime (or the one asked for)."""
        # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
        from rlbench.runtime.predictors import OrtPredictor, TorchPredictor

        runtime = runtime or self.runtime
        label = name or f"{self.method}-{runtime}"
        if runtime == "torch":
            return TorchPredictor(self.module(), name=label)
        if runtime == "onnxruntime":
            f = self.files[MODEL_ONNX]
            return OrtPredictor(f if isinstance(f, bytes) else Path(f), name=label)
        raise UnknownNameError(f"unknown runtime {runtime!r}; valid runtimes: torch, onnxruntime")


# ------------------------------------------------------------------------------------- source
def _resolve(source, env_id: str | None) -> Source:
    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import DeployablePolicy, save_policy

    if isinstance(source, DeployablePolicy):
        return Source(source, onnx_bytes(source), sha256_bytes(save_policy(source, None)), env_id)
    if hasattr(source, "module") and hasattr(source, "policy_onnx") and hasattr(source, "sha256"):
        meta_env = getattr(source, "meta", {}).get("env_id")
        if env_id is not None and meta_env is not None and env_id != meta_env:
            raise CompressionError(f"{source.name} was trained on {meta_env}, not {env_id}")
        agent = getattr(source, "agent_pt", None)
        return Source(source.module(), Path(source.policy_onnx).read_bytes(), source.sha256, env_id or meta_env,
                      Path(agent) if agent is not None else None)
    raise CompressionError(f"cannot compress a {type(source).__name__}: pass a ShippedPolicy "
                           "(rlbench.zoo.shipped.load_shipped) or a DeployablePolicy")


# ------------------------------------------------------------------------------------ building
def build_artefact(source, method: str, params: Mapping[str, Any] | None = None, *,
                   env_id: str | None = None, calibration_obs=None) -> Artefact:
    """Build an artefact without the cache: ``files`` holds bytes. Pure: ``source`` is unchanged."""
    info, params, src, context, key_extra = _prepare(source, method, params, env_id, calibration_obs)
    return _build(info, params, src, context, key=_key(info, params, src, key_extra))


def compress(source, method: str, params: Mapping[str, Any] | None = None, cache_root: Path | str | None = None,
             *, env_id: str | None = None, calibration_obs=None, use_shipped: bool = True) -> Artefact:
    """The artefact of ``method`` applied to ``source``, from the cache or built and cached.

    ``source`` is a :class:`~rlbench.zoo.shipped.ShippedPolicy` or a bare
    :class:`~rlbench.zoo.policy.DeployablePolicy`. ``ptsq`` calibrates on rollouts of the policy in
    ``meta["env_id"]`` of a shipped policy (or ``env_id=`` for a bare module), or on the
    ``calibration_obs`` array [N, obs_dim] of raw observations. ``cache_root`` defaults to
    :func:`rlbench.core.paths.cache_dir`. Bad parameters raise :class:`CompressionError` before
    anything is written; an unknown method raises :class:`UnknownNameError`. With
    ``use_shipped`` a QAT or GMP artefact shipped in ``baselines/artefacts/`` is used as is.
    """
    info, params, src, context, key_extra = _prepare(source, method, params, env_id, calibration_obs)
    key_material = _key_material(info, params, src, key_extra)
    key = _hash(key_material)
    if use_shipped and info.shipped:
        entry = shipped_entry(source, key_material)
        if entry is not None and (entry / META_FILE).exists():
            return _load_shipped(entry, key_material)
    root = Path(cache_root) if cache_root is not None else cache_dir()
    final = root / key
    if (final / META_FILE).exists():
        return _load_entry(final)
    art = _build(info, params, src, context, key=key)
    return _store(root, final, art, key_material)


def cached_entry(source, method: str, params: Mapping[str, Any] | None = None,
                 cache_root: Path | str | None = None) -> Path | None:
    """Where :func:`compress` would find this artefact without building it (shipped or cached), else None."""
    info, params, src, _, key_extra = _prepare(source, method, params, None, None)
    key_material = _key_material(info, params, src, key_extra)
    if info.shipped:
        entry = shipped_entry(source, key_material)
        if entry is not None and (entry / META_FILE).exists():
            return entry
    final = (Path(cache_root) if cache_root is not None else cache_dir()) / _hash(key_material)
    return final if (final / META_FILE).exists() else None


def _prepare(source, method, params, env_id, calibration_obs):
    info = get_method(method)
    params = info.validate(params)
    if not info.calibration and calibration_obs is not None:
        takes = [m.name for m in METHODS.values() if m.calibration]
        raise CompressionError(f"{info.name} takes no calibration data (only {', '.join(takes)} "
                               f"{'does' if len(takes) == 1 else 'do'})")
    src = _resolve(source, env_id)
    if info.not_for_discrete and getattr(src.module.spec, "discrete", False):  # fails clearly, not deep in a build
        raise CompressionError(f"{info.name} does not apply to a discrete-action policy: {info.not_for_discrete}")
    context: dict[str, Any] = {"obs_dim": src.module.spec.obs_dim, "act_dim": src.module.spec.act_dim}
    key_extra: dict[str, Any] = {}
    if info.prepare is not None:
        ctx, key_extra = info.prepare(info, params, src, calibration_obs)
        context.update(ctx)
    return info, params, src, context, key_extra


def _key_material(info: MethodInfo, params: dict, src: Source, key_extra: dict) -> dict:
    """Everything from the declaration and the preparation that decides the artefact's bytes."""
    return {"format": ARTEFACT_FORMAT, "policy_sha256": src.sha256, "method": info.name,
            "method_version": info.version, "params": dict(sorted(params.items())),
            "versions": library_versions(KEY_LIBRARIES + info.libraries), **key_extra}


def _hash(material: dict) -> str:
    return sha256_bytes(json.dumps(material, sort_keys=True, separators=(",", ":")).encode())


def _key(info, params, src, key_extra) -> str:
    return _hash(_key_material(info, params, src, key_extra))


def _build(info: MethodInfo, params: dict, src: Source, context: dict, key: str) -> Artefact:
    before = _fingerprint(src.module)
    context = dict(context, summary={})
    try:
        files = info.build(src.module, src.onnx_bytes, dict(params), context)
    except (CompressionError, UnknownNameError):
        raise
    except Exception as exc:
        raise CompressionError(f"{info.name} failed ({type(exc).__name__}: {exc})") from exc
    if _fingerprint(src.module) != before:  # the contract every method keeps: the policy is not touched
        raise CompressionError(f"{info.name} modified the policy it was given (internal error)")
    if MODEL_ONNX not in files or not all(isinstance(v, bytes) for v in files.values()):
        raise CompressionError(f"{info.name} did not produce {MODEL_ONNX} as bytes (internal error)")
    summary = summarise(info, params, files, src.module, len(src.onnx_bytes), context["summary"])
    return Artefact(info.name, dict(params), dict(sorted(files.items())), info.runtime, summary, key, None)


def _fingerprint(module) -> str:
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import save_policy

    return sha256_bytes(save_policy(module, None))


# ---------------------------------------------------------------------------- shipped artefacts
def ship_key(key_material: Mapping[str, Any]) -> str:
    """The cache key without library versions: what a shipped artefact is looked up by."""
    return _hash({k: v for k, v in key_material.items() if k != "versions"})


def shipped_entry(source, key_material: Mapping[str, Any], root: Path | None = None) -> Path | None:
    """``baselines/artefacts/ALGO-ENV-METHOD-<ship key[:12]>`` for a shipped policy, else None."""
    algo, env_id = getattr(source, "algo", None), getattr(source, "env_id", None)
    if not algo or not env_id:
        return None  # a bare module has no place in the shipped tree
    root = Path(root) if root is not None else baselines_dir() / "artefacts"
    return root / f"{algo}-{env_id}-{key_material['method']}-{ship_key(key_material)[:12]}"


def shipped_entry_for(source, method: str, params: Mapping[str, Any] | None = None) -> Path | None:
    """Where ``baselines/artefacts`` holds (or would hold) this policy's ``method`` artefact."""
    info, params, src, _, key_extra = _prepare(source, method, params, None, None)
    return shipped_entry(source, _key_material(info, params, src, key_extra))


def _load_shipped(entry: Path, key_material: Mapping[str, Any]) -> Artefact:
    try:
        art = _load_entry(entry)
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        if ship_key(meta["key_material"]) != ship_key(key_material):
            raise CompressionError(f"its key material is not this policy's {key_material['method']} "
                                   "with these parameters")
    except (CompressionError, KeyError, ValueError, OSError) as exc:
        raise CompressionError(f"shipped artefact {entry} is corrupt or misplaced ({exc}); regenerate it with "
                               f"`{SHIP_COMMAND} --overwrite` (or delete it to build in the cache)") from exc
    return art


def ship_artefact(source, method: str, params: Mapping[str, Any] | None = None, *, root: Path | None = None,
                  overwrite: bool = False) -> tuple[Path, str]:
    """Build (through the cache) and commit-ready copy one artefact into ``baselines/artefacts``.

    Returns the entry and ``"written"``, ``"replaced"`` or ``"unchanged"``. An entry holding
    different bytes is replaced only with ``overwrite``; the copy is written beside it and
    renamed into place, so an interrupted run leaves the old entry or the new one, never half.
    """
    art = compress(source, method, params, use_shipped=False)
    material = json.loads((Path(art.path) / META_FILE).read_text(encoding="utf-8"))["key_material"]
    entry = shipped_entry(source, material, root)
    if entry is None:
        raise CompressionError(f"{method}: only shipped policies (rlbench.zoo.shipped.load_shipped) have shipped artefacts")
    status = "written"
    if (entry / META_FILE).exists():
        try:
            old = _load_entry(entry)
            same = {n: old.sha256(n) for n in old.files} == {n: art.sha256(n) for n in art.files}
        except CompressionError:
            same = False
        if same:
            return entry, "unchanged"
        if not overwrite:
            raise CompressionError(f"{entry} already holds a different {method} artefact; pass --overwrite to "
                                   "replace it (the policy or the libraries changed)")
        status = "replaced"
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    try:
        for f in [*art.files.values(), Path(art.path) / META_FILE]:
            shutil.copyfile(f, tmp / Path(f).name)
        os.chmod(tmp, 0o755)
        replace_dir(tmp, entry, Path(tempfile.mkdtemp(prefix=f".old-{entry.name}-", dir=entry.parent)))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _load_shipped(entry, material)  # read back: sha256 of every file and the key
    return entry, status


# --------------------------------------------------------------------------------------- cache
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _store(root: Path, final: Path, art: Artefact, key_material: dict) -> Artefact:
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{art.key[:16]}-", dir=root))
    try:
        for name, data in art.files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        meta = {"format": ARTEFACT_FORMAT, "key": art.key, "key_material": key_material, "method": art.method,
                "params": art.params, "runtime": art.runtime, "summary": art.summary}
        with open(tmp / META_FILE, "w", encoding="utf-8") as fh:  # written last: its presence marks a whole entry
            fh.write(json.dumps(meta, indent=1, sort_keys=True, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        _fsync_dir(tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / META_FILE).exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another worker won the race: use its entry
        else:
            _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load_entry(final)


def _load_entry(entry: Path) -> Artefact:
    try:
        meta = json.loads((entry / META_FILE).read_text(encoding="utf-8"))
        files = {name: entry / name for name in meta["summary"]["files"]}
        for name, rec in meta["summary"]["files"].items():
            if not files[name].is_file() or sha256_file(files[name]) != rec["sha256"]:
                raise ValueError(f"{name} is missing or does not match its recorded sha256")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompressionError(f"artefact cache entry {entry} is corrupt ({exc}); delete that directory "
                               "and it will be rebuilt") from exc
    return Artefact(meta["method"], meta["params"], files, meta["runtime"], meta["summary"], meta["key"], entry)


__all__ = ["ARTEFACT_FORMAT", "Artefact", "KEY_LIBRARIES", "METHODS", "build_artefact", "cached_entry", "compress",
           "get_method", "ship_artefact", "ship_key", "shipped_entry", "shipped_entry_for", "validate_params"]
