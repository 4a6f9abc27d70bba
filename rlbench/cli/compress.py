"""``rlbench compress ALGO ENV METHOD --out DIR``: build (or fetch from the cache) one artefact.

Wire it into the main parser with ``add_parser(sub)``, where ``sub`` is the object returned by
``parser.add_subparsers(...)``; it sets ``func`` like the other commands. Only the options given
on the command line are passed to the method, so an option a method does not take (``--ratio``
for ``ptdq``) is an error naming the method's valid parameters, not silently ignored. Errors
are :class:`~rlbench.core.errors.RLBenchError` subclasses (the main CLI prints them and exits 2).

The artefact files and ``summary.json`` are written into ``DIR`` atomically, each through a
temporary file and a rename; existing files are refused, all checked before any is written,
unless ``--overwrite``. Stdout gets one line of JSON: the summary plus ``out`` and ``key``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlbench.compress.base import METHODS, SHIPPED_METHODS, cached_entry, compress, get_method, ship_artefact
from rlbench.core.errors import CompressionError
from rlbench.core.io import atomic_write_bytes, atomic_write_json
from rlbench.grid.matrix import METHOD_PARAM, cells, inapplicable, parse_list, variants
from rlbench.zoo.registry import ALGOS, ENVS, canonical_algo, canonical_env, has_pair
from rlbench.zoo.shipped import is_shipped, load_shipped

SUMMARY_FILE = "summary.json"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``compress`` on ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    c = subparsers.add_parser(
        "compress", help="compress a shipped policy into a deployable artefact (cached)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("algo", metavar="ALGO")
    c.add_argument("env", metavar="ENV")
    c.add_argument("method", metavar="METHOD", help=f"one of: {', '.join(METHODS)}")
    c.add_argument("--ratio", type=float, default=None, metavar="R",
                   help="l1/l2: fraction of each hidden layer's neurons removed, in (0, 0.70]")
    c.add_argument("--calibration", default=None, metavar="NAME", help="ptsq: minmax (default), entropy or percentile")
    c.add_argument("--n-calib", type=int, default=None, metavar="N",
                   help="ptsq: calibration observations from the policy's rollouts (default 1000)")
    c.add_argument("--format", default=None, metavar="FMT", help="ptsq: qdq (default) or qoperator")
    c.add_argument("--activation-type", default=None, metavar="T", help="ptsq: uint8 (default) or int8")
    c.add_argument("--weight-type", default=None, metavar="T", help="ptsq: int8 (default) or uint8")
    c.add_argument("--per-channel", action="store_true", default=None, help="ptsq: per-channel weight scales")
    c.add_argument("--reduce-range", action="store_true", default=None,
                   help="ptdq/int8pc: 7-bit weights, exact on x86 without VNNI (see docs/int8-kernels.md)")
    c.add_argument("--rank", type=float, default=None, metavar="F",
                   help="lowrank: kept singular values as a fraction of min(in, out), in (0, 1]")
    c.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="int4: weights per block, 16, 32 (default), 64, 128 or 256")
    c.add_argument("--symmetric", action="store_true", default=None, help="int4: no zero points")
    c.add_argument("--accuracy-level", type=int, default=None, metavar="L",
                   help="int4: MatMulNBits accuracy_level, 0 (default: float32 on CPU) to 4 (int8 activations)")
    c.add_argument("--float-layers", default=None, metavar="L",
                   help="int4: layers left float32: none (default), first, first+head")
    c.add_argument("--signal", default=None, metavar="S", help="qat/gmp: distill (default) or rl")
    c.add_argument("--steps", type=int, default=None, metavar="N", help="qat/gmp: training steps")
    c.add_argument("--lr", type=float, default=None, metavar="LR", help="qat/gmp: learning rate")
    c.add_argument("--seed", type=int, default=None, metavar="S", help="qat/gmp: seed")
    c.add_argument("--sparsity", type=float, default=None, metavar="F", help="gmp: target sparsity in [0.5, 0.95]")
    c.add_argument("--no-qat", dest="qat", action="store_false", default=None, help="gmp: skip the 8-bit QAT stage")
    c.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write the artefact into")
    c.add_argument("--overwrite", action="store_true", help="replace files already in DIR")
    c.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="artefact cache (default: $RLBENCH_CACHE or ~/.cache/rlbench/artefacts)")
    c.add_argument("--rebuild", action="store_true",
                   help="qat/gmp: build under the installed libraries even if baselines/artefacts ships this one")
    c.set_defaults(func=run)

    s = subparsers.add_parser(
        "ship-artefacts", help="make the grid's QAT and GMP artefacts once and copy them into baselines/artefacts",
        description="For every shipped policy (filtered by --algo/--env) and every grid variant of the methods, "
                    "build the artefact through the cache and copy it into baselines/artefacts/"
                    "ALGO-ENV-METHOD-<key>/ for committing. An entry holding different bytes is refused unless "
                    "--overwrite. One JSON line per artefact.")
    _add_pair_filters(s)
    s.add_argument("--method", default="qat,gmp", metavar="M,N", help="Default: %(default)s")
    s.add_argument("--overwrite", action="store_true", help="replace entries whose bytes differ")
    s.set_defaults(func=run_ship)

    w = subparsers.add_parser(
        "warm", help="build every grid artefact of the shipped policies into the cache before a timed run",
        description="Find or build, in the artefact cache, the artefact of every grid cell of the shipped policies "
                    "(filtered by --algo/--env/--method), so that a timed run measures its cells and not the "
                    "builds (`rlbench floor` assumes a warm cache). QAT and GMP come from baselines/artefacts. "
                    "One JSON line per artefact (status cached or built, seconds), then a summary line.")
    _add_pair_filters(w)
    w.add_argument("--method", default=None, metavar="M,N", help="Default: every compression method of the grid")
    w.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="artefact cache (default: $RLBENCH_CACHE or ~/.cache/rlbench/artefacts)")
    w.set_defaults(func=run_warm)
    return c


def _add_pair_filters(parser) -> None:
    parser.add_argument("--algo", default=None, metavar="A,B", help="Default: all algorithms")
    parser.add_argument("--env", default=None, metavar="E,F", help="Default: all environments")


def _pick(value: str | None, canon, every) -> list:
    """A comma-separated option's values (:func:`rlbench.grid.matrix.parse_list`); every value when not given."""
    picked = parse_list(value, canon)
    return list(every) if picked is None else picked


def run_warm(args) -> int:
    import time

    methods = _pick(args.method, str, [m for m in METHOD_PARAM if m != "baseline"])
    bad = [m for m in methods if m not in METHOD_PARAM or m == "baseline"]
    if bad:
        raise CompressionError(f"--method {','.join(bad)}: not a compression method of the grid; valid: "
                               f"{', '.join(m for m in METHOD_PARAM if m != 'baseline')}")
    todo = [c for c in cells(_pick(args.algo, canonical_algo, ALGOS), _pick(args.env, canonical_env, ENVS))
            if c.variant.method in methods and is_shipped(c.algo, c.env_id)]
    counts = {"cached": 0, "built": 0}
    t_all = time.perf_counter()
    for cell in todo:
        t0 = time.perf_counter()
        shipped = load_shipped(cell.algo, cell.env_id)
        params = cell.variant.params()
        status = "cached" if cached_entry(shipped, cell.variant.method, params, args.cache_dir) else "built"
        if status == "built":
            compress(shipped, cell.variant.method, params, cache_root=args.cache_dir)
        counts[status] += 1
        print(json.dumps({"cell": cell.id, "status": status, "seconds": round(time.perf_counter() - t0, 2)}),
              flush=True)
    print(json.dumps({"artefacts": len(todo), **counts, "seconds": round(time.perf_counter() - t_all, 1)}))
    return 0


def run_ship(args) -> int:
    import time

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    bad = [m for m in methods if m not in SHIPPED_METHODS]
    if bad:
        raise CompressionError(f"--method {','.join(bad)}: only {', '.join(SHIPPED_METHODS)} artefacts are shipped "
                               "(the others build in seconds)")
    todo = [(a, e, v) for a in _pick(args.algo, canonical_algo, ALGOS) for e in _pick(args.env, canonical_env, ENVS)
            if has_pair(a, e) and is_shipped(a, e) for v in variants()
            if v.method in methods and inapplicable(a, e, v.method) is None]
    for algo, env_id, v in todo:
        t0 = time.perf_counter()
        entry, status = ship_artefact(load_shipped(algo, env_id), v.method, v.params(), overwrite=args.overwrite)
        print(json.dumps({"cell": f"{algo}-{env_id}-{v.id}", "entry": str(entry), "status": status,
                          "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return 0


_OPTION_PARAMS = {"ratio": "ratio", "calibration": "calibration", "n_calib": "n_calib", "format": "format",
                  "activation_type": "activation_type", "weight_type": "weight_type",
                  "per_channel": "per_channel", "rank": "rank", "signal": "signal", "steps": "steps", "lr": "lr",
                  "seed": "seed", "sparsity": "sparsity", "qat": "qat", "reduce_range": "reduce_range",
                  "block_size": "block_size", "symmetric": "symmetric", "accuracy_level": "accuracy_level",
                  "float_layers": "float_layers"}


def params_from_args(args) -> dict:
    return {param: getattr(args, opt) for opt, param in _OPTION_PARAMS.items() if getattr(args, opt) is not None}


def write_artefact(art, out: Path, overwrite: bool = False) -> dict[str, Path]:
    """Copy an artefact's files and its summary into ``out`` (atomically per file)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CompressionError(f"--out {out} exists and is not a directory")
    targets = {name: out / name for name in art.files}
    targets[SUMMARY_FILE] = out / SUMMARY_FILE
    if not overwrite:
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing:
            raise CompressionError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    try:
        for name in art.files:
            atomic_write_bytes(targets[name], art.data(name))
        atomic_write_json(targets[SUMMARY_FILE], {"key": art.key, **art.summary})
    except OSError as exc:
        raise CompressionError(f"cannot write the artefact into {out}: {exc}") from exc
    return targets


def run(args) -> int:
    get_method(args.method)  # an unknown method fails before the policy is loaded
    shipped = load_shipped(args.algo, args.env)
    art = compress(shipped, args.method, params_from_args(args), cache_root=args.cache_dir,
                   use_shipped=not args.rebuild)
    write_artefact(art, args.out, overwrite=args.overwrite)
    line = {"out": str(args.out), "key": art.key, "policy": shipped.name, **art.summary}
    print(json.dumps(line, sort_keys=True, separators=(",", ":")), flush=True)
    return 0
