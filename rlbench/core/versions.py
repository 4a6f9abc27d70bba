"""Library versions and machine facts, recorded with every artefact and measurement."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from importlib import metadata

#: Libraries whose versions can move a figure. Recorded everywhere.
TRACKED = ("rlbench", "torch", "onnx", "onnxruntime", "numpy", "gymnasium", "mujoco",
           "stable-baselines3", "sb3-contrib", "torch-pruning", "pytest-benchmark")


def library_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where not installed); a fresh dict on every call."""
    return dict(_versions(tuple(names)))


@functools.lru_cache(maxsize=8)
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str | None], ...]:
    # Read once per process: importlib.metadata parses each package's METADATA file, about 3 ms a
    # package, and every measurement record carries the versions (0.2 s a grid cell, uncached). A
    # process keeps the modules it imported, so a later `pip install` could not change its figures.
    out = []
    for name in names:
        try:
            out.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            out.append((name, None))
    return tuple(out)


@functools.lru_cache(maxsize=1)
def host_info() -> dict:
    """CPU model, relevant flags, core count, OS and Python: what latency figures depend on.

    :func:`rlbench.measure.machine.machine_info` adds the int8 kernel class, which takes an ONNX
    Runtime session to find out."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "", platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni")
    return {
        "cpu_model": model,
        "cpu_flags": sorted(f for f in wanted if f in flags),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def machine_id(info: dict | None = None) -> str:
    """A stable id for baselines that depend on the machine: readable prefix + hash of the facts.

    ``RLBENCH_MACHINE_ID`` overrides it (CI runners that differ only in hostname share one id).
    """
    if os.environ.get("RLBENCH_MACHINE_ID"):
        return os.environ["RLBENCH_MACHINE_ID"]
    info = info or host_info()
    keyed = {k: info[k] for k in ("cpu_model", "cpu_flags", "cpu_count", "machine")}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:10]
    return f"{info['machine']}-{info['cpu_count']}cpu-{digest}"
