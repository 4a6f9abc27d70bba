"""Reports, comparisons, merges and exports of the suite's results files.

The input everywhere is pytest-benchmark's ``--benchmark-json`` file written by ``pytest bench``
(one entry per cell, rlbench's figures under ``extra_info``), or the output of ``rlbench merge``:

* :mod:`~rlbench.report.results`: validated loading into immutable records, the cell-id parser;
* :mod:`~rlbench.report.tables`: the paper's Tables 1-3 from our figures, beside the paper's;
* :mod:`~rlbench.report.summary`: what the report says first (per-variant medians, latency per runtime,
  flagged baselines); :mod:`~rlbench.report.plots`: PNG figures; :mod:`~rlbench.report.build`: ``report.md``/``.html``,
  a section of the page per module of :mod:`~rlbench.report.sections`;
* :mod:`~rlbench.report.compare`: per-cell verdicts between two files;
* :mod:`~rlbench.report.recommend`: per pair, the smallest and the fastest variant that keeps the return;
* :mod:`~rlbench.report.merge`: joining shard files; :mod:`~rlbench.report.gab`: github-action-benchmark;
"""

from rlbench.report.results import CellId, CellRecord, ResultsFile, load_results, parse_cell_id

__all__ = ["CellId", "CellRecord", "ResultsFile", "load_results", "parse_cell_id"]
