"""``rlbench report``: one results file (or a machine's stored figures) -> ``report.md``,
``report.html`` and PNG figures in a directory.

The page answers first and documents after: a summary in sentences with the run's figures, the
variant to deploy per pair (:mod:`rlbench.report.recommend`), absolute latency per runtime, the
pairs whose fp32 baseline is weak or degenerate, the figures, the paper's Tables 1-3 beside ours,
every cell folded per pair, and the run's machine and library versions last. Every figure comes
from the results; the derived ones are computed in :mod:`rlbench.report.summary`.

Each section is a module of :mod:`rlbench.report.sections`; this one loads the inputs once, draws
the figures, puts the sections in the page's order and writes both renderings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.io import atomic_write_bytes
from rlbench.report import plots
from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Document, to_html, to_markdown
from rlbench.report.results import ResultsFile, load_results
from rlbench.report.sections.cells import cells_blocks
from rlbench.report.sections.common import (PLOTS, PageInputs, compressed_algos, page_inputs, pareto_name, png_size,
                                            source_name)
from rlbench.report.sections.context import context_blocks
from rlbench.report.sections.figures import figure_blocks
from rlbench.report.sections.flags import flag_blocks
from rlbench.report.sections.latency import latency_blocks
from rlbench.report.sections.paper import paper_blocks
from rlbench.report.sections.recommend import recommend_blocks
from rlbench.report.sections.summary import summary_blocks
from rlbench.report.summary import BELOW_PAPER
from rlbench.zoo.paper import load_paper

# PLOTS, pareto_name and png_size live with the sections that place the figures; they are named here
# too because a caller who writes a report asks this module which files it wrote
__all__ = ["KEEP", "PLOTS", "ReportFiles", "build_document", "pareto_name", "png_size", "write_report"]

KEEP = rec_mod.KEEP
"""The report's default ``keep``: the fraction of the fp32 return a variant must keep (recommend's)."""


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    markdown: Path
    html: Path
    images: tuple[Path, ...]


def write_report(results: ResultsFile | str | Path, out_dir: str | Path, paper: Mapping | str | Path | None = None,
                 keep: float = KEEP, baselines: str | Path | None = None) -> ReportFiles:
    """Write ``report.md``, ``report.html`` and the PNGs of :data:`PLOTS` (and one Return against
    latency figure per algorithm) into ``out_dir``.

    ``results`` is a loaded file or a path; ``paper`` the paper's tables (default: the copy in
    :mod:`rlbench.zoo.paper`) or a JSON file of them; ``keep`` the fraction of the fp32 return a
    variant must keep to be recommended and counted as keeping it (the paper's Table 2 keeps its
    own 90%); ``baselines`` where tolerances and doing nothing's returns are read (default: the
    repository's ``baselines/``).
    """
    if not isinstance(results, ResultsFile):
        results = load_results(results)
    if not isinstance(paper, Mapping):
        paper = load_paper(paper)
    rec_mod.check_keep(keep)
    inputs = page_inputs(results, paper, keep, baselines)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    marked = {f.pair for f in inputs.flags if f.flags and f.flags != (BELOW_PAPER,)}
    images = [plots.plot_latency_absolute(results, out / "latency_absolute.png"),
              plots.plot_grid(results, "return", out / "return_relative.png", marked),
              plots.plot_grid(results, "latency", out / "latency_relative.png"),
              plots.plot_grid(results, "memory", out / "memory_relative.png"),
              plots.plot_grid(results, "size", out / "model_size.png"),
              plots.plot_grid(results, "energy", out / "energy_relative.png"),
              plots.plot_pruning_curves(results, out / "pruning_curves.png", keep)]
    images += [plots.plot_pareto(results, out / pareto_name(a), a) for a in compressed_algos(results)]
    doc = _document(inputs, out)
    md, html = out / "report.md", out / "report.html"
    atomic_write_bytes(md, to_markdown(doc).encode())
    atomic_write_bytes(html, to_html(doc).encode())
    return ReportFiles(md, html, tuple(images))


def build_document(results: ResultsFile, paper: Mapping, keep: float = KEEP,
                   baselines: str | Path | None = None) -> Document:
    """The report's content as blocks (rendered to Markdown and HTML by :mod:`rlbench.report.markup`),
    without writing the figures it links."""
    return _document(page_inputs(results, paper, keep, baselines), None)


def _document(inp: PageInputs, out: Path | None) -> Document:
    """The sections in the page's order; ``out`` is where the figures are (None: not drawn)."""
    doc = Document(f"rlbench report: {source_name(inp.results)}", toc=True)
    doc.add(*summary_blocks(inp))
    doc.add(*recommend_blocks(inp.recs, inp.flags))
    doc.add(*latency_blocks(inp.results, out))
    doc.add(*flag_blocks(inp))
    doc.add(*figure_blocks(inp, out))
    doc.add(*paper_blocks(inp))
    doc.add(*cells_blocks(inp))
    doc.add(*context_blocks(inp.results))
    return doc
