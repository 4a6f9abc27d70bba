"""Compression methods as pure functions, their parameters, and the on-disk artefact cache.

A method takes a policy and returns a deployable artefact; it never changes the policy it is
given (pruning deep-copies first: Torch-Pruning's pruner rewrites the module in place). Every
method is registered in :data:`METHODS` with its parameters and their valid ranges, the runtime
its artefact is measured in, and a ``build(policy_module, onnx_model_bytes, params, context) ->
{filename: bytes}`` function. :func:`compress` validates, looks the artefact up in the cache,
and otherwise builds it and stores it atomically.

Why a cache keyed by content: the benchmark grid measures each variant on many cells and
workers, and a static quantization or a pruning run is too slow to repeat per test. The key is
the sha256 of everything that decides the artefact's bytes: the policy's sha256, the method,
its (defaulted) parameters, the implementation version of the method, where calibration data
comes from, and the versions of the libraries that write the files. Same key, same bytes:
building is deterministic (tests build twice into separate caches and compare sha256).

Shipped artefacts. QAT and GMP fine-tune for minutes, so, like the zoo, their artefacts for the
grid's parameters are made once and committed under ``baselines/artefacts/`` (``rlbench
ship-artefacts``). :func:`compress` looks there first. A shipped entry is found by its *ship
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

import importlib
import io
import json
import math
import numbers
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlbench.compress.names import MODEL_ONNX, MODEL_PT
from rlbench.core.errors import CompressionError, UnknownNameError
from rlbench.core.io import replace_dir, sha256_bytes, sha256_file
from rlbench.core.paths import baselines_dir, cache_dir
from rlbench.core.versions import library_versions
from rlbench.zoo.registry import CALIBRATION_SEED_BASE

ARTEFACT_FORMAT = "rlbench.artefact/1"
META_FILE = "artefact.json"
#: Library versions that decide an artefact's bytes (gymnasium and mujoco: calibration rollouts).
KEY_LIBRARIES = ("torch", "onnx", "onnxruntime", "torch-pruning", "numpy", "gymnasium", "mujoco")
#: Methods whose grid artefacts are shipped in ``baselines/artefacts/`` (minutes of fine-tuning each).
SHIPPED_METHODS = ("qat", "gmp")
SHIP_COMMAND = "rlbench ship-artefacts"

REQUIRED = object()


# ---------------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One method parameter: its type, default and valid values, checked by :meth:`check`."""

    name: str
    kind: str
    """``float``, ``int``, ``bool`` or ``choice``."""
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    """The lower bound is excluded: ``(low, high]``."""
    high_open: bool = False
    choices: tuple[str, ...] = ()
    doc: str = ""

    def valid_range(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        if self.high is None:
            return f"an integer >= {self.low:g}" if self.kind == "int" else f"a number >= {self.low:g}"
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} in {lo}{self.low:g}, {self.high:.2f}{hi}" if self.kind == "float" else \
            f"{what} in {lo}{self.low:g}, {self.high:g}{hi}"

    def check(self, method: str, value: Any) -> Any:
        bad = CompressionError(f"{method}: {self.name} must be {self.valid_range()}; got {value!r}")
        if self.kind == "choice":
            if not isinstance(value, str) or value.lower() not in self.choices:
                raise bad
            return value.lower()
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise bad
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad
        if self.kind == "int":
            if not float(value).is_integer():
                raise bad
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad
        return value


@dataclass(frozen=True)
class MethodInfo:
    """A registered compression method."""

    name: str
    runtime: str
    """Where the artefact is measured: ``onnxruntime`` or ``torch``."""
    builder: str
    """``module:function`` of ``build(policy_module, onnx_model_bytes, params, context) -> {name: bytes}``
    (imported on first use, so listing methods does not import onnxruntime or Torch-Pruning)."""
    params: tuple[Param, ...] = ()
    doc: str = ""
    version: str = "1"
    """Bumped when the implementation changes the bytes it writes: part of the cache key."""
    libraries: tuple[str, ...] = ()
    """Libraries beyond :data:`KEY_LIBRARIES` that write this method's bytes: their versions join its key."""

    @property
    def build(self) -> Callable[..., dict[str, bytes]]:
        mod, func = self.builder.split(":")
        return getattr(importlib.import_module(mod), func)

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaulted, type-normalised parameters; :class:`CompressionError` naming the valid range."""
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(f"{p.name} ({p.valid_range()})" for p in self.params) or "none"
            raise CompressionError(f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                                   f"valid parameters: {valid}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params and params[p.name] is not None:
                out[p.name] = p.check(self.name, params[p.name])
            elif p.default is REQUIRED:
                raise CompressionError(f"{self.name}: parameter {p.name} is required; it must be {p.valid_range()}")
            elif p.default is not None:
                out[p.name] = p.default
        return out


#: The paper's one-shot pruning ratios reach 0.70: above that there is no reference figure, and
#: at 0.70 already ~91% of the hidden-layer parameters are gone. Ratios are open at 0 (nothing
#: to prune) and closed at 0.70.
PRUNE_RATIO_MAX = 0.70
_RATIO = Param("ratio", "float", REQUIRED, low=0.0, high=PRUNE_RATIO_MAX, low_open=True,
               doc="fraction of each hidden layer's neurons removed (Torch-Pruning keeps int(width*(1-ratio)))")
#: Calibration sets above this size only cost memory: ranges are taken over one batch.
N_CALIB_MAX = 100_000
#: Fine-tuning methods (qat, gmp): training steps, learning rate, seed and training signal.
STEPS_MAX = 10_000_000
_SIGNAL = Param("signal", "choice", "distill", choices=("distill", "rl"),
                doc="distill: DAgger distillation from the fp32 policy; rl: the algorithm's own loss "
                    "(SAC/TD3/DDPG; needs a shipped policy's agent.pt)")
_LR = Param("lr", "float", 1e-4, low=0.0, high=1.0, low_open=True, high_open=True, doc="Adam learning rate")
_REDUCE_RANGE = Param("reduce_range", "bool", False,
                      doc="7-bit weights: onnxruntime's remedy for the saturating uint8 x int8 kernels of x86 "
                          "without VNNI (rlbench.measure.int8kernel); off by default, as in the paper")
_SEED = Param("seed", "int", 0, low=0, high=999_999, doc="seeds batch sampling and SB3 (rl)")

METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("ptdq", "onnxruntime", "rlbench.compress.quantize:build_ptdq", params=(_REDUCE_RANGE,),
               doc="post-training dynamic quantization: int8 weights (per tensor), activations "
                   "quantized at run time (onnxruntime quantize_dynamic, MatMulInteger)"),
    MethodInfo("int8pc", "onnxruntime", "rlbench.compress.quantize:build_int8pc", params=(_REDUCE_RANGE,),
               doc="dynamic quantization with per-channel int8 weights (quantize_dynamic per_channel=True)"),
    MethodInfo("ptsq", "onnxruntime", "rlbench.compress.quantize:build_ptsq", version="1", params=(
        Param("calibration", "choice", "minmax", choices=("minmax", "entropy", "percentile"),
              doc="how activation ranges are chosen from the calibration set"),
        Param("n_calib", "int", None, low=1, high=N_CALIB_MAX,
              doc="calibration observations (default 1000 from rollouts; all rows of explicit calibration_obs)"),
        Param("format", "choice", "qdq", choices=("qdq", "qoperator"),
              doc="QDQ (Quantize/DequantizeLinear pairs) or QOperator (QLinearMatMul/QLinearAdd)"),
        Param("activation_type", "choice", "uint8", choices=("uint8", "int8")),
        Param("weight_type", "choice", "int8", choices=("int8", "uint8")),
        Param("per_channel", "bool", False)),
               doc="post-training static quantization calibrated on the policy's own rollouts"),
    MethodInfo("l1", "torch", "rlbench.compress.prune:build_l1", params=(_RATIO,),
               doc="structured L1 pruning of hidden neurons (Torch-Pruning DepGraph, GroupMagnitudeImportance p=1)"),
    MethodInfo("l2", "torch", "rlbench.compress.prune:build_l2", params=(_RATIO,),
               doc="structured L2 pruning of hidden neurons (Torch-Pruning DepGraph, GroupMagnitudeImportance p=2)"),
    MethodInfo("fp16", "onnxruntime", "rlbench.compress.fp16:build_fp16",
               doc="float16 weights and hidden-layer arithmetic; normalisation, squashing and I/O in float32"),
    MethodInfo("lowrank", "onnxruntime", "rlbench.compress.lowrank:build_lowrank", params=(
        Param("rank", "float", REQUIRED, low=0.0, high=1.0, low_open=True,
              doc="kept singular values as a fraction of min(in, out) per hidden layer"),),
               doc="truncated SVD of each hidden Linear layer where it reduces parameters"),
    MethodInfo("int4", "onnxruntime", "rlbench.compress.int4:build_int4", libraries=("onnx-ir",), params=(
        Param("block_size", "int", 32, low=16, high=256,
              doc="weights per block along K, each with its own scale: 16, 32, 64, 128 or 256"),
        Param("symmetric", "bool", False, doc="no zero points (codes -8..7 around 0); default: a 4-bit zero "
                                              "point per block"),
        Param("accuracy_level", "int", 0, low=0, high=4,
              doc="MatMulNBits' lowest compute precision: 0 unset (float32 on CPU), 4 int8 activations"),
        Param("float_layers", "choice", "none", choices=("none", "first", "first+head"),
              doc="Linear layers left float32: none, the input layer, or the input layer and the head")),
               doc="4-bit block-wise weights: onnxruntime's MatMulNBits quantizer (round to nearest), "
                   "float32 activations by default"),
    MethodInfo("qat", "onnxruntime", "rlbench.compress.qat:build_qat", params=(
        _SIGNAL, Param("steps", "int", 2000, low=1, high=STEPS_MAX,
                       doc="distill: gradient steps; rl: environment steps"), _LR, _SEED),
               doc="quantization-aware training: int8 fake-quantised fine-tuning (straight-through "
                   "gradients) from the fp32 policy, deployed as a QDQ int8 ONNX graph"),
    MethodInfo("gmp", "onnxruntime", "rlbench.compress.gmp:build_gmp", params=(
        Param("sparsity", "float", 0.8, low=0.5, high=0.95,
              doc="final fraction of zero weights in every Linear layer (biases are kept)"),
        Param("qat", "bool", True, doc="follow pruning with 8-bit QAT (20% more steps): an int8 QDQ graph"),
        _SIGNAL, Param("steps", "int", 5000, low=1, high=STEPS_MAX,
                       doc="steps of the pruning run (distill: gradient steps; rl: environment steps)"),
        _LR, _SEED),
               doc="gradual magnitude pruning during fine-tuning (cubic schedule, Zhu & Gupta / Ivanov "
                   "et al. 2024), optionally followed by 8-bit QAT"),
)}


def get_method(name: str) -> MethodInfo:
    """The registered method, or :class:`UnknownNameError` listing the valid ones."""
    if isinstance(name, str) and name.lower() in METHODS:
        return METHODS[name.lower()]
    raise UnknownNameError(f"unknown compression method {name!r}; valid methods: {', '.join(METHODS)}")


def validate_params(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
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
@dataclass
class _Source:
    module: Any
    onnx_bytes: bytes
    sha256: str
    env_id: str | None


def _resolve(source, env_id: str | None) -> _Source:
    # deferred: it loads onnx and torch, which importing this module does not
    from rlbench.zoo.onnx_graph import onnx_bytes
    # deferred: it loads torch, which importing this module does not
    from rlbench.zoo.policy import DeployablePolicy, save_policy

    if isinstance(source, DeployablePolicy):
        return _Source(source, onnx_bytes(source), sha256_bytes(save_policy(source, None)), env_id)
    if hasattr(source, "module") and hasattr(source, "policy_onnx") and hasattr(source, "sha256"):
        meta_env = getattr(source, "meta", {}).get("env_id")
        if env_id is not None and meta_env is not None and env_id != meta_env:
            raise CompressionError(f"{source.name} was trained on {meta_env}, not {env_id}")
        return _Source(source.module(), Path(source.policy_onnx).read_bytes(), source.sha256, env_id or meta_env)
    raise CompressionError(f"cannot compress a {type(source).__name__}: pass a ShippedPolicy "
                           "(rlbench.zoo.shipped.load_shipped) or a DeployablePolicy")


def _calibration_context(info: MethodInfo, params: dict, src: _Source, calibration_obs) -> tuple[dict, dict]:
    """ptsq's calibration source: explicit observations, or rollouts of the policy in its env."""
    import numpy as np

    obs_dim = src.module.spec.obs_dim
    if calibration_obs is not None:
        obs = np.asarray(calibration_obs, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[1] != obs_dim:
            raise CompressionError(f"{info.name}: calibration_obs must have shape [N, {obs_dim}]; got {list(obs.shape)}")
        if obs.shape[0] < 1:
            raise CompressionError(f"{info.name}: calibration needs at least 1 observation (n_calib must be "
                                   f"an integer in [1, {N_CALIB_MAX}]); calibration_obs has 0 rows")
        if not np.all(np.isfinite(obs)):
            raise CompressionError(f"{info.name}: calibration_obs holds NaN or inf")
        n = params.get("n_calib") or min(obs.shape[0], N_CALIB_MAX)
        if n > obs.shape[0]:
            raise CompressionError(f"{info.name}: n_calib={n} but calibration_obs has only {obs.shape[0]} rows; "
                                   f"n_calib must be in [1, {obs.shape[0]}]")
        obs = np.ascontiguousarray(obs[:n])
        params["n_calib"] = n
        return ({"calibration_obs": obs},
                {"calibration": {"source": "explicit", "sha256": sha256_bytes(obs.tobytes()), "shape": list(obs.shape)}})
    if src.env_id is None:
        raise CompressionError(f"{info.name}: calibration needs observations: compress a shipped policy, or pass "
                               "env_id= (rollouts) or calibration_obs= (an [N, obs_dim] array)")
    params["n_calib"] = params.get("n_calib") or 1000
    return ({"env_id": src.env_id},
            {"calibration": {"source": "rollouts", "env_id": src.env_id, "seed_base": CALIBRATION_SEED_BASE}})


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
    if use_shipped and info.name in SHIPPED_METHODS:
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
    if info.name in SHIPPED_METHODS:
        entry = shipped_entry(source, key_material)
        if entry is not None and (entry / META_FILE).exists():
            return entry
    final = (Path(cache_root) if cache_root is not None else cache_dir()) / _hash(key_material)
    return final if (final / META_FILE).exists() else None


def _prepare(source, method, params, env_id, calibration_obs):
    info = get_method(method)
    params = info.validate(params)
    if info.name != "ptsq" and calibration_obs is not None:
        raise CompressionError(f"{info.name} takes no calibration data (only ptsq does)")
    src = _resolve(source, env_id)
    context: dict[str, Any] = {"obs_dim": src.module.spec.obs_dim, "act_dim": src.module.spec.act_dim}
    key_extra: dict[str, Any] = {}
    if info.name == "ptsq":
        ctx, key_extra = _calibration_context(info, params, src, calibration_obs)
        context.update(ctx)
    elif info.name in ("qat", "gmp"):  # fine-tuning: rollouts in the policy's env (rl: also its agent.pt)
        # deferred: it loads torch, which importing this module does not
        from rlbench.compress.qat import training_context

        ctx, key_extra = training_context(info.name, params, source, src.env_id)
        context.update(ctx)
    return info, params, src, context, key_extra


def _key_material(info: MethodInfo, params: dict, src: _Source, key_extra: dict) -> dict:
    return {"format": ARTEFACT_FORMAT, "policy_sha256": src.sha256, "method": info.name,
            "method_version": info.version, "params": dict(sorted(params.items())),
            "versions": library_versions(KEY_LIBRARIES + info.libraries), **key_extra}


def _hash(material: dict) -> str:
    return sha256_bytes(json.dumps(material, sort_keys=True, separators=(",", ":")).encode())


def _key(info, params, src, key_extra) -> str:
    return _hash(_key_material(info, params, src, key_extra))


def _build(info: MethodInfo, params: dict, src: _Source, context: dict, key: str) -> Artefact:
    # deferred: it loads numpy, which listing the methods (`rlbench --help`) does not need
    from rlbench.compress.summary import summarise

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


__all__ = ["Artefact", "METHODS", "MethodInfo", "Param", "PRUNE_RATIO_MAX", "SHIPPED_METHODS", "build_artefact",
           "compress", "get_method", "ship_artefact", "ship_key", "shipped_entry", "shipped_entry_for",
           "validate_params"]
