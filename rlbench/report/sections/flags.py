"""The page's "Weak or degenerate baselines" section: the pairs whose fp32 policy is no better than
doing nothing, below the paper's Table 1 figure, or saturated under pruning.

A variant is judged against its pair's fp32 policy, so these pairs' figures are listed where a reader
checks them before trusting the pair; the flags are :func:`rlbench.report.summary.baseline_flags`.
"""

from __future__ import annotations

from rlbench.report.markup import Block, Heading, Para, Table
from rlbench.report.sections.common import PageInputs
from rlbench.report.summary import BELOW_PAPER, SATURATED
from rlbench.report.tables import MISSING, fmt_num


def flag_blocks(inp: PageInputs) -> list[Block]:
    """The section and a row per flagged pair, the flags that discount a pair's figures first."""
    # the flags that discount a pair's figures first; below the paper alone is the mildest
    flagged = sorted((f for f in inp.flags if f.flags), key=lambda f: f.flags == (BELOW_PAPER,))
    blocks = [Heading(2, "Weak or degenerate baselines"),
              Para("A compressed variant is judged against its pair's fp32 policy, so a weak fp32 policy makes "
                   "every figure of its pair weak too. Flagged: fp32 whose 95% CI lies below doing nothing's "
                   "(the zero-action return on the same seeds, `baselines/idle.json`) or does not lie clearly "
                   "above it (`recommend` does not recommend these); fp32 whose whole CI lies below the paper's "
                   "Table 1 baseline (its -v4 environments; a lower figure is not a fault but a different policy); "
                   "and a saturated pair, whose return is the same to 0.1% at every pruning ratio, so return "
                   "does not tell a pruned policy from the original.")]
    if not flagged:
        return blocks + [Para("No pair is flagged.")]
    body = []
    for f in flagged:
        what = [("**" + w + "**" if w != BELOW_PAPER else w) for w in f.flags]
        if f.saturated:
            what = [w if SATURATED not in w else f"{w}: {f.saturated}" for w in what]
        body.append((f.pair, MISSING if f.fp32 is None else f"{f.fp32.mean:.1f} [{f.fp32.lo:.1f}, {f.fp32.hi:.1f}]",
                     MISSING if f.idle is None else f"{f.idle[0]:.1f} [{f.idle[1]:.1f}, {f.idle[2]:.1f}]",
                     fmt_num(f.paper), "; ".join(what)))
    return blocks + [Table(("Pair", "fp32 return (95% CI)", "Doing nothing (95% CI)", "Paper, Table 1", "Flags"),
                           tuple(body), (1, 2, 3))]
