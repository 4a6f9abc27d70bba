"""``rlbench zoo land ALGO ENV``: everything measured from a retrained policy, once it is exported.

A retrained pair lands on ``main`` in one commit with everything measured from it (docs/zoo.md,
"Landing a retrained policy"). After ``rlbench export ALGO ENV --overwrite`` (or a finished run's
own export) this command does every step that is generated:

1. its QAT and GMP artefacts, built from the new policy into ``baselines/artefacts``, and the old
   policy's folders there removed;
2. its cells on this machine: ``pytest bench -k PAIR --rlbench-update-baselines`` (figures, this
   machine's latency and RSS, the findings);
3. the cells other machines and the saturating int8 class recorded from the old policy, removed
   (:meth:`~rlbench.gate.store.BaselineStore.drop_stale`);
4. the README's zoo matrix, docs/zoo.md's table and the learning curves, rewritten in place.

What it cannot generate, the prose that quotes the pair's figures, it lists at the end, one line per
place (each line naming the pair, or quoting the old policy's return or CI bounds as last
committed), for the commit to update by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from rlbench.core.errors import PolicyError, RLBenchError
from rlbench.core.paths import REPO_ROOT

LANDING_DOC = "docs/zoo.md, \"Landing a retrained policy\""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``land`` on the ``rlbench zoo`` subcommands."""
    p = subparsers.add_parser("land", help="after exporting a retrained policy: its QAT/GMP artefacts, its cells on "
                                           "this machine, the old policy's figures removed, the zoo tables and curves; "
                                           "then the lines of the docs that quote the pair",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algo", metavar="ALGO")
    p.add_argument("env", metavar="ENV")
    p.add_argument("--no-record", action="store_true",
                   help="skip the recording run (its cells were recorded already, e.g. by an interrupted landing)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="xdist workers of the recording run. Default: 2")
    p.set_defaults(func=lambda a: land(a.algo, a.env, REPO_ROOT, record=not a.no_record, workers=a.workers))
    return p


def splice(text: str, generated: str, where: str) -> str:
    """``text`` with its copy of a generated block replaced by ``generated``.

    The old block starts at the line equal to ``generated``'s first (a table header) and ends at the
    first line after it that opens like ``generated``'s last (a generated sentence); ``where`` names
    the file in the error raised when either cannot be found."""
    lines, new = text.split("\n"), generated.rstrip("\n").split("\n")
    opening = " ".join(new[-1].split()[:4])
    try:
        start = lines.index(new[0])
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(opening))
    except (ValueError, StopIteration):
        raise RLBenchError(f"{where}: found no block opening with {new[0][:40]!r} and closing with a line "
                           f"opening {opening!r}; paste the command's output there by hand") from None
    return "\n".join(lines[:start] + new + lines[end + 1:])


def stale_artefacts(root: Path, pair: str, keep: set[Path]) -> list[Path]:
    """The pair's folders under ``baselines/artefacts`` other than ``keep`` (the new policy's)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{pair}-") and p not in keep)


def old_figures(repo: Path, pair: str) -> list[str]:
    """The old policy's 50-seed return and CI bounds as the docs print them (``1323``, ``1,323``),
    from ``meta.json`` as last committed, where the working tree holds another policy; three
    digits or more, so that they name it. [] where git cannot tell."""
    rel = f"baselines/policies/{pair}/meta.json"
    try:
        shown = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{rel}"], capture_output=True, text=True,
                               timeout=30, check=False)
        committed, current = json.loads(shown.stdout), json.loads((repo / rel).read_text(encoding="utf-8"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    if committed.get("files") == current.get("files"):
        return []  # not retrained since the last commit
    ev = committed["evaluation"]
    values = {round(v) for v in (ev["mean"], ev["ci_low"], ev["ci_high"]) if abs(v) >= 99.5}
    return sorted({t for v in values for t in (str(v), f"{v:,}")})


def quoting_lines(repo: Path, algo: str, env_id: str, generated: set[str], figures: list[str] = ()) -> list[str]:
    """``FILE:LINE`` of every line of the README and docs/ naming the pair or quoting one of
    ``figures`` (:func:`old_figures`) as a number of its own, but the generated ones."""
    short = env_id.split("-")[0]
    names = (f"{algo}-{env_id}", f"{algo} {short}", f"{algo} {env_id}")
    number = re.compile(r"(?<![\w.,])(?:%s)(?!\w|[.,]\d)" % "|".join(map(re.escape, figures))) if figures else None
    out = []
    for path in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if line not in generated and (any(name in line for name in names) or number and number.search(line)):
                out.append(f"{path.relative_to(repo)}:{n}: {line.strip()[:100]}")
    return out


def land(algo: str, env_id: str, repo: Path, record: bool = True, workers: int = 2) -> int:
    # deferred: each command loads only what it runs, so `rlbench --help` stays light
    from rlbench.compress.base import ship_artefact
    from rlbench.compress.methods import shipped_methods
    from rlbench.core.paths import baselines_dir
    from rlbench.core.versions import machine_id
    from rlbench.gate import idle
    from rlbench.gate.store import BaselineStore
    from rlbench.grid.matrix import inapplicable, variants
    from rlbench.report import curves
    from rlbench.report.zoo_table import zoo_markdown, zoo_matrix_markdown
    from rlbench.zoo.registry import canonical_algo, canonical_env, is_discrete
    from rlbench.zoo.shipped import load_shipped, zoo_table

    algo, env_id = canonical_algo(algo), canonical_env(env_id)
    pair, root = f"{algo}-{env_id}", baselines_dir()
    if not (repo / "bench").is_dir():
        raise RLBenchError(f"{repo}: no bench/ here; run `rlbench zoo land` from a checkout of the repository "
                           "(installed with `pip install -e .`)")
    sp = load_shipped(algo, env_id)
    figures = old_figures(repo, pair)  # before anything is rewritten
    if not is_discrete(env_id) and sp.meta["evaluation"].get("action_saturation") is None:
        raise PolicyError(f"{sp.path / 'meta.json'}: no action saturation recorded; run "
                          f"`rlbench zoo saturation {pair} --write` first ({LANDING_DOC})")

    print(f"{pair}: artefacts", flush=True)
    keep = set()
    for v in variants():
        if v.method in shipped_methods() and inapplicable(algo, env_id, v.method) is None:
            entry, status = ship_artefact(sp, v.method, v.params(), overwrite=True)
            keep.add(entry)
            print(f"  {entry.name}: {status}", flush=True)
    for old in stale_artefacts(root / "artefacts", pair, keep):
        shutil.rmtree(old)
        print(f"  {old.name}: removed (the old policy's)", flush=True)

    if record:
        cmd = [sys.executable, "-m", "pytest", "bench", "-k", pair, "-n", str(workers),
               "--rlbench-update-baselines", "-q", "-p", "no:cacheprovider"]
        print(f"{pair}: {' '.join(cmd[2:])}", flush=True)
        if subprocess.run(cmd, cwd=repo).returncode != 0:
            raise RLBenchError(f"{pair}: the recording run failed (its output is above); nothing past the artefacts "
                               f"was changed; fix it and run `rlbench zoo land {pair}` again")

    for path, cells in BaselineStore(root, machine_id()).drop_stale().items():
        print(f"  {path.relative_to(root.parent)}: the old policy's {len(cells)} cell(s) removed", flush=True)

    rows, still = zoo_table(), idle.read(root)
    generated = set()
    for rel, table in (("README.md", zoo_matrix_markdown(rows, still)), ("docs/zoo.md", zoo_markdown(rows, still))):
        path = repo / rel
        path.write_text(splice(path.read_text(encoding="utf-8"), table, rel), encoding="utf-8")
        generated |= set(table.split("\n"))
        print(f"  {rel}: zoo table rewritten", flush=True)
    for path in curves.write(curves.collect(still), repo / "docs" / "zoo"):
        print(f"  {path.relative_to(repo)}: drawn", flush=True)

    quoted = quoting_lines(repo, algo, env_id, generated, figures)
    print(f"\nStill by hand ({LANDING_DOC}, step 3): the figures these lines quote, the findings table of "
          "docs/findings.md (baselines/findings.json), recommend.md's example, int8-kernels.md's tables "
          "(`rlbench int8-kernels`), compressions.md's int4 rows and zoo.md's saturation table"
          + (f"; lines quoting the old policy's {', '.join(figures)} are among them" if figures else "") + ":")
    for line in quoted:
        print(f"  {line}")
    return 0
