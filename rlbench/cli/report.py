"""The commands on results files: ``report``, ``recommend``, ``compare``, ``merge``, ``export-gab``, ``floor``,
``int8-kernels``.

:func:`add_parsers` adds them to ``rlbench``'s subcommands (:mod:`rlbench.cli.main`); each handler
is ``args.func(args) -> int`` and raises :class:`~rlbench.core.errors.RLBenchError` subclasses for
bad input, which :func:`rlbench.cli.main.main` prints as one line with exit status 2.
"""

from __future__ import annotations

import json
from pathlib import Path


def cmd_report(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.core.errors import ResultsError
    from rlbench.core.paths import baselines_dir
    from rlbench.core.versions import machine_id
    from rlbench.report.build import KEEP, write_report
    from rlbench.report.recommend import check_keep, stored_results

    keep = check_keep(KEEP if args.keep is None else args.keep)
    if args.results is not None and args.machine is not None:
        raise ResultsError(f"{args.results}: --machine reports a machine's stored figures; give a results file or "
                           f"--machine, not both")
    results = args.results
    if results is None:
        root = Path(args.baselines) if args.baselines else baselines_dir()
        results = stored_results(root, args.machine or machine_id())
    files = write_report(results, args.out, paper=args.paper, keep=keep, baselines=args.baselines)
    print(f"report written to {files.markdown} and {files.html} ({len(files.images)} figures)")
    return 0


def cmd_compare(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.core.io import atomic_write_bytes
    from rlbench.report.compare import compare_files, parse_thresholds

    cmp = compare_files(args.old, args.new, tolerances=args.tolerances, thresholds=parse_thresholds(args.threshold))
    for line in cmp.lines(verbose=args.verbose):
        print(line)
    if args.markdown:
        atomic_write_bytes(Path(args.markdown), cmp.markdown().encode())
    return cmp.exit_code


def cmd_merge(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.report.merge import write_merged

    res = write_merged(args.inputs, args.output)
    dup = f"; {len(res.duplicates)} identical duplicate(s) kept once" if res.duplicates else ""
    print(f"merged {len(res.cells)} cells from {len(res.sources)} files into {args.output}{dup}")
    return 0


def cmd_export_gab(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.report.gab import export_gab

    small, big = export_gab(args.results, smaller=args.smaller, bigger=args.bigger)
    written = [f"{p} ({n} entries)" for p, n in ((args.smaller, len(small)), (args.bigger, len(big))) if p]
    print("github-action-benchmark data written to " + ", ".join(written))
    return 0


def cmd_floor(args) -> int:
    import json

    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.report.floor import floor_summary

    print(json.dumps(floor_summary(Path(args.results), cores=args.cores, wall=args.wall), indent=1))
    return 0


def cmd_int8_kernels(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.core.paths import baselines_dir
    from rlbench.report.kernels import kernel_rows, markdown

    print(markdown(kernel_rows(Path(args.baselines) if args.baselines else baselines_dir())))
    return 0


_THRESHOLD_HELP = ("override a tolerance of baselines/tolerances.toml for this comparison: FRACTION sets both, "
                   "return=FRACTION the allowed relative drop of the mean return ([returns] rel_drop), "
                   "latency=FRACTION the allowed relative rise of a latency ratio within one runtime "
                   "([latency] ratio_rel; ratios across runtimes keep cross_rel); "
                   "repeatable, e.g. --threshold return=0.2 --threshold latency=0.3")


def cmd_recommend(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.report.recommend import KEEP, markdown, recommend_file, to_json

    keep = KEEP if args.keep is None else args.keep
    recs = recommend_file(args.results, machine=args.machine, keep=keep, baselines=args.baselines)
    print(json.dumps(to_json(recs), indent=1) if args.json else markdown(recs), end="" if not args.json else "\n")
    return 0


def _source_args(p, keep_help: str) -> None:
    """What ``report`` and ``recommend`` read: a results file, or a machine's stored figures."""
    p.add_argument("results", metavar="OUT.json", nargs="?", default=None,
                   help="a results file (pytest bench --benchmark-json, rlbench merge); default: the stored figures "
                        "of --machine")
    p.add_argument("--machine", metavar="ID", default=None,
                   help="without OUT.json: whose stored figures (baselines/machines/ID.json). Default: this machine")
    p.add_argument("--keep", metavar="FRACTION", type=float, default=None, help=keep_help)
    p.add_argument("--baselines", metavar="DIR", default=None,
                   help="stored figures, tolerances and idle returns. Default: the repository's baselines/")


def add_parsers(subparsers) -> None:
    """Register ``report``, ``compare``, ``merge`` and ``export-gab`` on an argparse subparsers object."""
    r = subparsers.add_parser(
        "report", help="a page a person reads: summary, what to deploy, latency per runtime, figures, every cell",
        description="Write DIR/report.md, DIR/report.html and PNG figures from a results file (pytest bench "
                    "--benchmark-json OUT.json, or rlbench merge output), or from a machine's stored figures. The "
                    "page opens with a summary in figures, the recommend table, absolute latency per runtime and "
                    "the pairs whose fp32 baseline is weak; then figures, the paper's Tables 1-3 beside ours, "
                    "and every cell folded per pair (docs/report.md). Exit 2 on bad input.")
    _source_args(r, keep_help="the fraction of the fp32 return a variant must keep, for the recommend table "
                              "and the summary (the paper's Table 2 keeps its own 90%%). Default: 0.95")
    r.add_argument("--out", metavar="DIR", required=True, help="output directory (created if missing)")
    r.add_argument("--paper", metavar="PATH", default=None,
                   help="the paper's tables as JSON (default: the copy shipped in rlbench.zoo.paper)")
    r.set_defaults(func=cmd_report)

    c = subparsers.add_parser(
        "compare", help="per-cell verdicts between two results files; exit 1 on any regression",
        description="Compare two results files cell by cell: return (relative drop and Mann-Whitney), latency "
                    "ratios (variant/fp32 and */numpy-ref; never absolute latency), memory (bytes exact, RSS within "
                    "tolerance) and energy (only when both sides had a meter). Regressed cells are listed first, one "
                    "line each. Exit status: 0 no regression, 1 regression, 2 bad input.")
    c.add_argument("old", metavar="OLD.json")
    c.add_argument("new", metavar="NEW.json")
    c.add_argument("--tolerances", metavar="PATH", default=None,
                   help="tolerances TOML (default: baselines/tolerances.toml)")
    c.add_argument("--threshold", metavar="[METRIC=]FRACTION", action="append", default=None, help=_THRESHOLD_HELP)
    c.add_argument("--markdown", metavar="PATH", default=None, help="also write a Markdown summary (PR comment)")
    c.add_argument("-v", "--verbose", action="store_true", help="also list unchanged cells and notes")
    c.set_defaults(func=cmd_compare)

    m = subparsers.add_parser("merge", help="join shard results files into one (refuses conflicting cells)",
                              description="Join results files of grid shards into one pytest-benchmark file. A cell "
                                          "in two files must be identical (kept once); otherwise the merge is refused.")
    m.add_argument("inputs", nargs="+", metavar="A.json")
    m.add_argument("-o", "--output", metavar="ALL.json", required=True)
    m.set_defaults(func=cmd_merge)

    g = subparsers.add_parser("export-gab", help="export for github-action-benchmark (custom tools)",
                              description="Write customSmallerIsBetter (latency in us, bytes, J/1000 when measured) "
                                          "and customBiggerIsBetter (mean return with CI) JSON lists.")
    g.add_argument("results", metavar="OUT.json")
    g.add_argument("--smaller", metavar="PATH", default=None, help="customSmallerIsBetter output")
    g.add_argument("--bigger", metavar="PATH", default=None, help="customBiggerIsBetter output")
    g.set_defaults(func=cmd_export_gab)


    fl = subparsers.add_parser(
        "floor", help="a run's wall time against its floor (bare env steps and inferences / cores), as JSON",
        description="Set the session wall time recorded in OUT.json against the floor: the run's environment "
                    "steps at a bare step cost measured now, its evaluation inferences at the recorded batch-64 "
                    "throughput, and its timed latency loops, divided by the cores.")
    fl.add_argument("results", metavar="OUT.json")
    fl.add_argument("--cores", type=int, default=None, metavar="N", help="Default: the cores the run recorded")
    fl.add_argument("--wall", type=float, default=None, metavar="SECONDS",
                    help="the run's wall time (default: rlbench.session_wall_seconds in the file)")
    fl.set_defaults(func=cmd_floor)

    k = subparsers.add_parser(
        "int8-kernels", help="int8 cells' returns on saturating int8 kernels against exact ones (Markdown)",
        description="For every int8 cell with returns stored for both exact kernels (baselines/figures.json) and a "
                    "saturating kernel class (baselines/int8-kernels/), judge the difference with the grid's return "
                    "check and print a table per method, then the cells that moved.")
    k.add_argument("--baselines", metavar="DIR", default=None, help="default: the repository's baselines/")
    k.set_defaults(func=cmd_int8_kernels)
    r = subparsers.add_parser(
        "recommend", help="per pair, the smallest and the fastest variant whose return keeps --keep of fp32",
        description="For each algorithm x environment pair of a results file (or of a machine's stored figures), "
                    "the variant with the smallest deployed model and the one with the lowest latency among those "
                    "whose return is not resolved below KEEP of the fp32 return by the grid's return gate. "
                    "Pairs whose fp32 policy scores no better than doing nothing are flagged. Markdown on stdout, "
                    "or JSON with --json; exit 2 on bad input.")
    _source_args(r, keep_help="the fraction of the fp32 return a variant must not be resolved below. Default: 0.95")
    r.add_argument("--json", action="store_true", help="JSON instead of Markdown")
    r.set_defaults(func=cmd_recommend)
