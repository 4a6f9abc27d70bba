"""The page's "Latency per runtime" section: absolute single-observation latency of each runtime's
fp32 policy and each method's variants, and the figure of every cell's.

Absolute times hold for the machine that measured them only, so they stand in a section of their
own; the other sections and the gates set latency against fp32 in the same process.
"""

from __future__ import annotations

from pathlib import Path

from rlbench.report.markup import Block, Heading, Para, Table
from rlbench.report.results import ResultsFile
from rlbench.report.sections.common import fmt_x, image, source_name
from rlbench.report.summary import RUNTIME_LABEL, label, latency_rows
from rlbench.report.tables import MISSING


def latency_blocks(results: ResultsFile, out: Path | None) -> list[Block]:
    """The section, its table over the file's cells and ``latency_absolute.png`` (sized from ``out``)."""
    rows = latency_rows(results)
    blocks = [Heading(2, "Latency per runtime"),
              Para("Absolute single-observation latency, the median of each cell's timing, then the median and "
                   "middle half over cells. Every cell times its variant, the fp32 policy in torch and in ONNX "
                   "Runtime and a NumPy reference interleaved in one process, so fp32 is timed once per cell. "
                   "These times hold for the machine that measured them; the gates compare ratios, never these.")]
    if not rows:
        return blocks + [Para(f"No latency figures in {source_name(results)}.")]
    torch_fp32 = next((r.median_us for r in rows if r.policy == "fp32" and r.runtime == "torch"), None)
    body = tuple((RUNTIME_LABEL.get(r.runtime, r.runtime), "fp32" if r.policy == "fp32" else label(r.policy),
                  str(r.cells), f"{r.median_us:.1f}", f"{r.quartiles_us[0]:.1f}-{r.quartiles_us[1]:.1f}",
                  fmt_x(r.ratio), fmt_x(r.median_us / torch_fp32) if torch_fp32 else MISSING) for r in rows)
    return blocks + [Table(("Runtime", "Policy", "Cells", "Median (µs)", "Middle half (µs)",
                            "vs fp32, same runtime", "vs torch fp32"), body, (2, 3, 4, 5, 6)),
                     image(out, "latency_absolute.png")]
