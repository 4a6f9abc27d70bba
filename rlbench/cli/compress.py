"""``rlbench compress ALGO ENV METHOD --out DIR``: build (or fetch from the cache) one artefact.

Wire it into the main parser with ``add_parser(sub)``, where ``sub`` is the object returned by
``parser.add_subparsers(...)``; it sets ``func`` like the other commands. The method options are
generated from the registered methods' parameters (:func:`add_method_options`): one ``--NAME``
per parameter name (``--no-NAME`` for a switch that defaults to on), shared by the methods that
take it. Only the options given on the command line are passed to the method, so an option a
method does not take (``--ratio`` for ``ptdq``) is an error naming the method's valid
parameters, not silently ignored; values are checked by the method's :class:`Param`, not by
argparse, so the error names the valid range. Errors are
:class:`~rlbench.core.errors.RLBenchError` subclasses (the main CLI prints them and exits 2).

The artefact files and ``summary.json`` are written into ``DIR`` atomically, each through a
temporary file and a rename; existing files are refused, all checked before any is written,
unless ``--overwrite``. Stdout gets one line of JSON: the summary plus ``out`` and ``key``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlbench.compress.base import cached_entry, compress, ship_artefact
from rlbench.compress.methods import METHODS, get_method, shipped_methods
from rlbench.compress.registry import REQUIRED, MethodInfo, Param
from rlbench.core.errors import CompressionError
from rlbench.core.io import atomic_write_bytes, atomic_write_json
from rlbench.grid.matrix import BASELINE, cells, inapplicable, method_names, parse_list, variants
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
    add_method_options(c)
    c.add_argument("--out", required=True, type=Path, metavar="DIR", help="directory to write the artefact into")
    c.add_argument("--overwrite", action="store_true", help="replace files already in DIR")
    c.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="artefact cache (default: $RLBENCH_CACHE or ~/.cache/rlbench/artefacts)")
    c.add_argument("--rebuild", action="store_true",
                   help=f"{'/'.join(shipped_methods())}: build under the installed libraries even if "
                        "baselines/artefacts ships this one")
    c.set_defaults(func=run)

    s = subparsers.add_parser(
        "ship-artefacts", help=f"make the grid's {', '.join(shipped_methods())} artefacts once and copy them into "
                               "baselines/artefacts",
        description="For every shipped policy (filtered by --algo/--env) and every grid variant of the methods, "
                    "build the artefact through the cache and copy it into baselines/artefacts/"
                    "ALGO-ENV-METHOD-<key>/ for committing. An entry holding different bytes is refused unless "
                    "--overwrite. One JSON line per artefact.")
    _add_pair_filters(s)
    s.add_argument("--method", default=",".join(shipped_methods()), metavar="M,N", help="Default: %(default)s")
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

    grid = [m for m in method_names() if m != BASELINE]
    methods = _pick(args.method, str, grid)
    bad = [m for m in methods if m not in grid]
    if bad:
        raise CompressionError(f"--method {','.join(bad)}: not a compression method of the grid; valid: "
                               f"{', '.join(grid)}")
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
    shipped = shipped_methods()
    bad = [m for m in methods if m not in shipped]
    if bad:
        raise CompressionError(f"--method {','.join(bad)}: only {', '.join(shipped)} artefacts are shipped "
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


#: Options of ``rlbench compress`` that are not method parameters: a parameter of that name could not have a flag.
RESERVED = frozenset({"algo", "env", "method", "out", "overwrite", "cache_dir", "rebuild", "func", "command", "help"})


def method_options() -> dict[str, list[tuple[MethodInfo, Param]]]:
    """Each parameter name of the registered methods, with the methods (and their Param) that take it."""
    out: dict[str, list[tuple[MethodInfo, Param]]] = {}
    for info in METHODS.values():
        for p in info.params:
            out.setdefault(p.name, []).append((info, p))
    return out


def _option_help(uses: list[tuple[MethodInfo, Param]]) -> str:
    by_text: dict[str, list[str]] = {}
    for info, p in uses:  # methods sharing one Param (qat's and gmp's lr) share one sentence
        if p.kind == "bool":  # a switch: the flag itself says which way it turns
            text = ("turns off: " if p.default is True else "") + (p.doc or p.name.replace("_", " "))
        else:
            text = f"{p.doc + '; ' if p.doc else ''}{p.valid_range()}"
            if p.default is not None and p.default is not REQUIRED:
                text += f" (default {p.default!r})"
        by_text.setdefault(text, []).append(info.name)
    return "; ".join(f"{'/'.join(names)}: {text}" for text, names in by_text.items()).replace("%", "%%")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """One option per method parameter name (:func:`method_options`); each defaults to None, "not given"."""
    group = parser.add_argument_group("method parameters", "generated from the methods' declarations; only the "
                                      "options given are passed to the method")
    for name, uses in method_options().items():
        kinds = {(p.kind, p.default is True) for _, p in uses}
        if name in RESERVED or len(kinds) != 1:
            why = "is an option of rlbench compress" if name in RESERVED else "has different kinds across methods"
            raise CompressionError(f"parameter {name!r} of {', '.join(i.name for i, _ in uses)} {why}; "
                                   "rename it in the method's declaration")
        kind, on_by_default = kinds.pop()
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            group.add_argument(f"--no-{name.replace('_', '-')}" if on_by_default else flag, dest=name,
                               action="store_false" if on_by_default else "store_true", default=None,
                               help=_option_help(uses))
        else:
            group.add_argument(flag, dest=name, default=None, metavar=name.upper(),
                               type={"int": int, "float": float}.get(kind, str), help=_option_help(uses))


def params_from_args(args) -> dict:
    """The method parameters given on the command line."""
    return {name: getattr(args, name) for name in method_options() if getattr(args, name, None) is not None}


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
