"""The sections of the report page, one module each, in the page's order; :mod:`rlbench.report.build`
loads the inputs, puts the sections together and writes ``report.md`` and ``report.html``.

* :mod:`~rlbench.report.sections.summary`: the run in sentences and a table per variant;
* :mod:`~rlbench.report.sections.recommend`: which variant to deploy, per pair;
* :mod:`~rlbench.report.sections.latency`: absolute latency per runtime;
* :mod:`~rlbench.report.sections.flags`: the pairs whose fp32 baseline is weak or degenerate;
* :mod:`~rlbench.report.sections.figures`: the figures per variant and pair, pruning and Pareto;
* :mod:`~rlbench.report.sections.paper`: the paper's Tables 1-3 beside ours, and its findings;
* :mod:`~rlbench.report.sections.cells`: every cell, folded per pair;
* :mod:`~rlbench.report.sections.context`: the run's files, machines and library versions.

A section turns figures into blocks (:mod:`rlbench.report.markup`); the figures themselves are
computed in :mod:`rlbench.report.summary`, :mod:`rlbench.report.tables` and
:mod:`rlbench.report.recommend`. What several sections share is in
:mod:`~rlbench.report.sections.common`, so no section imports another.
"""
