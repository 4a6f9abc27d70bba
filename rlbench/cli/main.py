"""``rlbench`` command line: train, export, zoo, baselines, compress, report, compare, merge."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlbench.core.errors import RLBenchError
from rlbench.core.threads import default_thread_env


def _cmd_train(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.train.loop import train

    out = train(args.algo, args.env, timesteps=args.timesteps, seed=args.seed, resume=args.resume,
                checkpoint_every=args.checkpoint_every, export=not args.no_export, overwrite=args.overwrite,
                eval_episodes=args.eval_episodes, trainer=args.trainer, init_from_shipped=args.init_from_shipped)
    if out is not None:
        print(f"shipped policy written to {out}")
    return 0


def _cmd_export(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.train.loop import export_run

    out = export_run(args.algo, args.env, seed=args.seed, overwrite=args.overwrite, eval_episodes=args.eval_episodes,
                     snapshot=args.snapshot)
    print(f"shipped policy written to {out}")
    return 0


def _cmd_rss_noise(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.gate.store import BaselineStore
    from rlbench.measure.int8kernel import probe
    from rlbench.grid.rss_noise import measure
    from rlbench.report.rss_moves import moves_in_results
    from rlbench.core.paths import baselines_dir
    from rlbench.core.versions import machine_id

    store = BaselineStore(baselines_dir(), machine_id(), int8_kernel=probe())
    moves = moves_in_results(store, args.results) if args.results else None
    rec = measure(store, args.cells.split(",") if args.cells else None, moves=moves)
    print(json.dumps(rec.to_json()["bytes"]))
    if args.write:
        store.record_rss_noise(rec.to_json())
        print(f"written into {store.machine_path}")
    return 0


def _cmd_zoo_curves(args) -> int:
    # deferred: matplotlib is loaded only by the commands that draw
    from rlbench.core.paths import baselines_dir, runs_dir
    from rlbench.gate import idle
    from rlbench.report import curves

    for path in curves.write(curves.collect(idle.read(baselines_dir()), runs_dir() if args.runs else None), args.out,
                              per_pair=args.pairs):
        print(path)
    return 0


def _cmd_zoo_runs(args) -> int:
    import json

    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.core.paths import baselines_dir, runs_dir
    from rlbench.gate import idle
    from rlbench.train.runs import markdown, runs

    rows = runs(runs_dir(), idle.read(baselines_dir()))
    print(json.dumps([r.to_json() for r in rows], indent=1) if args.json else markdown(rows))
    return 0


def _cmd_zoo(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.zoo.shipped import zoo_table

    rows = zoo_table(verify=args.verify)
    if getattr(args, "markdown", False) or getattr(args, "matrix", False):
        from rlbench.gate import idle
        from rlbench.core.paths import baselines_dir
        from rlbench.report.zoo_table import zoo_markdown, zoo_matrix_markdown

        table = zoo_matrix_markdown if args.matrix else zoo_markdown
        print(table(rows, idle.read(baselines_dir())))
        return _zoo_errors(rows)
    if args.json:
        print(json.dumps(rows, indent=1))
        return _zoo_errors(rows)
    cols = ["algo", "env", "timesteps", "seed", "episodes", "return_mean", "return_std", "ci95", "status"]
    table = [[("—" if r.get(c) is None else str(r[c])) if c != "ci95" else (f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]" if r.get("ci_low") is not None else "")
              for c in cols] for r in rows]
    for r, row in zip(rows, table):
        for i, c in enumerate(cols):
            if c in ("return_mean", "return_std") and r.get(c) is not None:
                row[i] = f"{r[c]:.1f}"
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    return _zoo_errors(rows)


def _cmd_zoo_saturation(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.core.errors import PolicyError
    from rlbench.train import saturation
    from rlbench.zoo.registry import is_discrete, pairs
    from rlbench.zoo.shipped import is_shipped, load_shipped

    chosen = [p for p in pairs() if not is_discrete(p.env_id) and is_shipped(p.algo, p.env_id)
              and (not args.pairs or p.name in args.pairs)]
    unknown = sorted(set(args.pairs) - {p.name for p in pairs()})
    if unknown:
        print(f"rlbench: error: no pair {', '.join(unknown)}; `rlbench zoo list` names the pairs", file=sys.stderr)
        return 2
    failed = 0
    for p in chosen:
        sp = load_shipped(p.algo, p.env_id)
        m = saturation.measure(sp)
        s = m.saturation
        line = (f"{p.name}: {100 * s.fraction:.1f}% of {s.components} action components at a bound "
                f"({'the recorded episodes' if m.identical else 'episodes differ from the recorded ones'})")
        if args.write:
            try:
                line += "; written" if saturation.write(sp, m, overwrite=args.overwrite) else "; as recorded"
            except PolicyError as exc:
                print(f"rlbench: error: {exc}", file=sys.stderr)
                failed += 1
        print(line, flush=True)
    return 2 if failed else 0


def _zoo_errors(rows: list[dict]) -> int:
    """One line per shipped policy that did not load or verify, naming its file and the reason; exit 2 if any."""
    bad = [r for r in rows if r["status"] == "invalid"]
    for r in bad:
        print(f"rlbench: error: {r['algo']}-{r['env']}: {r['error']}", file=sys.stderr)
    return 2 if bad else 0


def _cmd_zoo_train(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.train.queue import train_queue, train_queue_file

    if bool(args.pairs) == bool(args.queue):
        raise SystemExit("rlbench zoo train: give either pairs or --queue FILE")
    if args.queue:
        train_queue_file(args.queue, args.seed, args.init_from_shipped)
    else:
        train_queue(args.pairs, args.seed, args.trainer, args.init_from_shipped)
    return 0


def _baselines_root(args):
    from pathlib import Path

    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.gate.store import recover
    from rlbench.core.paths import baselines_dir

    root = Path(args.baselines) if args.baselines else baselines_dir()
    for note in recover(root):
        print(f"rlbench: {note}", file=sys.stderr)
    return root


def _cmd_baselines_apply(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.grid import findings
    from rlbench.gate.store import BaselineStore, Recording

    rec = Recording.load(args.file)
    root = _baselines_root(args)
    store = BaselineStore(root, rec.machine_id, rec.int8_kernel)
    store.check()  # a broken stored file is named before anything is staged
    written = store.record(rec, derived=[lambda s: [f"finding:{k}" for k in findings.record(s)]])
    cells = [w for w in written if not w.startswith("finding:")]
    print(f"applied {args.file} to {root}: {len(cells)} cell(s) of machine {rec.machine_id}"
          + (f", {', '.join(rec.staged)}" if rec.staged else "") + f", findings recomputed; {args.file} may be deleted")
    return 0


def _cmd_baselines_check(args) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.grid import findings
    from rlbench.gate import idle
    from rlbench.gate.store import BaselineStore, Recording
    from rlbench.core.versions import machine_id

    root = _baselines_root(args)
    store = BaselineStore(root, machine_id())
    store.check(every_machine=True)
    findings.read_stored(store)
    idle.read(root)
    print(f"{root}: the tolerances and every stored figures file read")
    stale = findings.stale(store)
    if stale and args.write_findings:
        store.record(Recording(store.machine_id, store.int8_kernel),
                     derived=[lambda s: [f"finding:{k}" for k in findings.record(s)]])
        print("\n".join(["findings.json recomputed from the stored figures:", *(c.line() for c in stale)]))
    elif stale:
        print("\n".join([f"{findings.findings_path(store)}: findings the stored figures no longer give (a run "
                         "fails test_finding on them); recompute them with `rlbench baselines check "
                         "--write-findings`:", *(c.line() for c in stale)]), file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlbench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one algorithm on one environment (checkpointed, resumable)")
    t.add_argument("algo", metavar="ALGO")
    t.add_argument("env", metavar="ENV")
    t.add_argument("--timesteps", type=int, default=None, metavar="N", help="training budget (default: the registry's)")
    t.add_argument("--seed", type=int, default=0, metavar="S", help="Default: %(default)r")
    t.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    t.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="steps between checkpoints (default: 10k off-policy, 50k on-policy)")
    t.add_argument("--no-export", action="store_true", help="train only; do not write baselines/policies")
    t.add_argument("--overwrite", action="store_true", help="replace an already shipped policy")
    t.add_argument("--eval-episodes", type=int, default=50, metavar="N", help="recorded evaluation episodes. Default: %(default)r")
    t.add_argument("--trainer", choices=("sb3", "sbx"), default=None,
                   help="who runs the updates of a new run: sb3, or sbx (JAX; SAC, TD3, DDPG; pip install -e "
                        "'.[train-sbx]'); the policy shipped is SB3's either way, and a resumed run keeps its own. "
                        "Default: sb3")
    t.add_argument("--init-from-shipped", action="store_true",
                   help="start a new SAC, TD3 or DDPG run from the shipped policy's agent.pt and step count "
                        "(a new replay buffer and optimiser states), e.g. when the run's checkpoint is gone")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("export", help="ship a run's best agent (or its latest checkpoint) as baselines/policies/ALGO-ENV")
    e.add_argument("algo", metavar="ALGO")
    e.add_argument("env", metavar="ENV")
    e.add_argument("--seed", type=int, default=0, metavar="S")
    e.add_argument("--overwrite", action="store_true")
    e.add_argument("--eval-episodes", type=int, default=50, metavar="N")
    e.add_argument("--snapshot", choices=("best", "latest"), default="best",
                   help="best: the agent of the run's best confirmation evaluation (the latest checkpoint if the run "
                        "has none); latest: its latest checkpoint. Default: %(default)s")
    e.set_defaults(func=_cmd_export)

    z = sub.add_parser("zoo", help="the shipped policy zoo")
    zsub = z.add_subparsers(dest="zoo_command", required=True)
    zl = zsub.add_parser("list", help="print the shipped zoo as a table")
    zl.add_argument("--json", action="store_true", help="one JSON object per policy")
    zl.add_argument("--verify", action="store_true",
                    help="also check every file's sha256 against meta.json and load policy.pt (exit 2 naming each "
                         "policy that fails, the file and the reason)")
    zl.add_argument("--markdown", action="store_true", help="the table of docs/zoo.md: ours beside the paper and rl-zoo")
    zl.add_argument("--matrix", action="store_true", help="the README's table: environments by algorithms, ours and the paper's")
    zl.set_defaults(func=_cmd_zoo)
    zc = zsub.add_parser("curves", help="learning curves: each pair's training evaluations beside the paper and "
                                        "doing nothing, all pairs in DIR/learning-curves.png")
    zc.add_argument("--out", type=Path, default=Path("docs/zoo"), metavar="DIR", help="Default: docs/zoo")
    zc.add_argument("--runs", action="store_true",
                    help="also draw the training runs under RLBENCH_HOME/runs that have gone past the shipped policy")
    zc.add_argument("--pairs", action="store_true", help="also one larger PNG per pair, DIR/ALGO-ENV.png")
    zc.set_defaults(func=_cmd_zoo_curves)
    zs = zsub.add_parser("saturation", help="the fraction of each shipped continuous policy's action components at a "
                                            "bound, on its recorded evaluation seeds")
    zs.add_argument("pairs", nargs="*", metavar="ALGO-ENV", help="Default: every shipped continuous-action pair")
    zs.add_argument("--write", action="store_true",
                    help="add the figure to each policy's meta.json (only where the rollouts reproduce the recorded "
                         "returns)")
    zs.add_argument("--overwrite", action="store_true", help="with --write: replace a different recorded figure")
    zs.set_defaults(func=_cmd_zoo_saturation)
    zr = zsub.add_parser("runs", help="the training runs under $RLBENCH_HOME/runs: steps, last and best evaluation, "
                                      "and which best agents are candidates to export")
    zr.add_argument("--json", action="store_true", help="one JSON object per run instead of a Markdown table")
    zr.set_defaults(func=_cmd_zoo_runs)
    zt = zsub.add_parser("train", help="train several pairs in order (resumes; skips pairs shipped at full budget)")
    zt.add_argument("pairs", nargs="*", metavar="ALGO-ENV", help="e.g. SAC-Hopper-v5 PPO-Ant-v5")
    zt.add_argument("--queue", metavar="FILE", default=None,
                    help="train the file's ALGO-ENV[:TRAINER] lines from the top instead, re-reading it before each "
                         "pair and removing a line once its pair has finished; two processes can share one file")
    zt.add_argument("--seed", type=int, default=0, metavar="S")
    zt.add_argument("--trainer", choices=("sb3", "sbx"), default=None,
                    help="trainer of the runs this starts: sbx applies to SAC, TD3 and DDPG, PPO and TRPO train "
                         "with sb3; runs already started keep theirs. Default: sb3")
    zt.add_argument("--init-from-shipped", action="store_true",
                    help="a SAC, TD3 or DDPG pair without a checkpoint starts its new run from the shipped agent "
                         "(rlbench train --init-from-shipped) instead of fresh weights")
    zt.set_defaults(func=_cmd_zoo_train)
    from rlbench.cli.land import add_parser as add_land_parser

    add_land_parser(zsub)
    rn = sub.add_parser("rss-noise", help="measure how far this machine's RSS deltas move from its stored ones "
                                          "(the RSS gate's floor)")
    rn.add_argument("--cells", metavar="A,B", default=None,
                    help="cells to measure. Default: every pair's baseline, fp16, int8pc and ptsq cells with "
                         "stored RSS figures")
    rn.add_argument("--from", dest="results", metavar="RESULTS.json", nargs="+", default=None,
                    help="also the cells of these checking runs' --benchmark-json files (this machine's)")
    rn.add_argument("--write", action="store_true", help="store the result in baselines/machines/<id>.json")
    rn.set_defaults(func=_cmd_rss_noise)
    b = sub.add_parser("baselines", help="the stored baselines: check them, apply figures an update could not write")
    bsub = b.add_subparsers(dest="baselines_command", required=True)
    ba = bsub.add_parser("apply", help="write a recording an update run saved because it could not write it "
                                       "(named in that run's summary; kept under $RLBENCH_HOME/unsaved)")
    ba.add_argument("file", metavar="FILE")
    ba.add_argument("--baselines", metavar="DIR", default=None, help="Default: the repository's baselines/")
    ba.set_defaults(func=_cmd_baselines_apply)
    bc = bsub.add_parser("check", help="complete or discard an interrupted update, then read the tolerances and "
                                       "every stored figures file (exit 2 naming the first that does not read), "
                                       "and check that findings.json is what the stored figures give (exit 1 "
                                       "naming each finding that is not)")
    bc.add_argument("--baselines", metavar="DIR", default=None, help="Default: the repository's baselines/")
    bc.add_argument("--write-findings", action="store_true",
                    help="recompute findings.json from the stored figures where it is not what they give")
    bc.set_defaults(func=_cmd_baselines_check)
    sc = sub.add_parser("selfcheck", help="benchmark the harness: overhead and latency-ratio spread (JSON)")
    sc.add_argument("--runs", type=int, default=10, metavar="N", help="repeated measurements. Default: %(default)r")
    sc.set_defaults(func=lambda a: (print(json.dumps(__import__("rlbench.grid.selfcheck", fromlist=["x"])
                                                     .selfcheck(a.runs), indent=1)), 0)[1])

    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.cli.compress import add_parser as add_compress_parser

    add_compress_parser(sub)
    from rlbench.cli.report import add_parsers as add_report_parsers

    add_report_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    default_thread_env()  # one thread per job: two jobs on 2 cores otherwise run 4x slower
    args = build_parser().parse_args(argv)
    try:
        if args.command != "baselines":  # those recover the directory they are given
            # deferred: each command loads only what it runs, so `rlbench --help` stays light
            from rlbench.gate.store import recover
            from rlbench.core.paths import baselines_dir

            for note in recover(baselines_dir()):
                print(f"rlbench: {note}", file=sys.stderr)
        return args.func(args)
    except RLBenchError as exc:
        print(f"rlbench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rlbench zoo list | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
