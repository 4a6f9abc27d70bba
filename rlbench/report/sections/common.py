"""What the report's sections share: the inputs the page is computed from, the figures' files and
captions, and the short forms a figure takes in a sentence.

The inputs are loaded once (:func:`page_inputs`) because the recommendations and the baseline flags
are read by several sections (the summary counts them, the recommend table lists them, the cell
tables mark them) and must be the same figures in each. A section imports from here and from the
modules that compute its figures, never from another section, so each reads on its own.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rlbench.core.paths import baselines_dir
from rlbench.gate import idle as idle_store
from rlbench.gate.tolerances import Tolerances
from rlbench.report import recommend as rec_mod
from rlbench.report.markup import Image
from rlbench.report.results import ResultsFile
from rlbench.report.summary import BaselineFlag, baseline_flags
from rlbench.report.tables import MISSING

#: The PNGs every report writes (name -> caption); :func:`pareto_name` adds one per algorithm.
PLOTS: dict[str, str] = {
    "latency_absolute.png": "Latency per runtime: each cell's median single-observation time, µs on a log scale",
    "return_relative.png": "Mean return over the pair's fp32 mean, per variant and pair",
    "latency_relative.png": "Latency over fp32 in the variant's own runtime (variant/fp32), per variant and pair",
    "memory_relative.png": "RSS delta over the pair's fp32 cell, per variant and pair",
    "model_size.png": "Compression: fp32 bytes over each variant's deployed bytes, per variant and pair",
    "energy_relative.png": "Energy per 1000 inferences over the pair's fp32 cell (only where a meter measured)",
    "pruning_curves.png": "Return over fp32 against L1/L2 pruning ratio, one panel per algorithm",
}


def pareto_name(algo: str) -> str:
    """The file of one algorithm's Return against latency figure (one per algorithm, so not in :data:`PLOTS`)."""
    return f"pareto_{algo}.png"


@dataclass(frozen=True)
class PageInputs:
    """What the page is computed from, loaded once."""

    results: ResultsFile
    paper: Mapping
    """The paper's tables (:func:`rlbench.zoo.paper.load_paper`)."""
    recs: rec_mod.Recommendations
    flags: tuple[BaselineFlag, ...]
    """Every pair's baseline flags (an empty tuple: a sound baseline)."""


def page_inputs(results: ResultsFile, paper: Mapping, keep: float, baselines: str | Path | None) -> PageInputs:
    """Recommend ``results`` at ``keep`` and flag its baselines, with the tolerances and doing
    nothing's returns of ``baselines`` (default: the repository's ``baselines/``), as
    ``rlbench recommend`` does, so the page and the command agree."""
    root = Path(baselines) if baselines is not None else baselines_dir()
    seeds = idle_store.by_seed(root)
    recs = rec_mod.recommend(results, keep, Tolerances.load(root / "tolerances.toml"), seeds)
    flags = baseline_flags(results, paper, recs, idle_store.read(root), seeds)
    return PageInputs(results, paper, recs, tuple(flags))


def compressed_algos(results: ResultsFile) -> list[str]:
    """The algorithms with at least one compressed cell (the others have nothing to set against fp32)."""
    return list(dict.fromkeys(r.cell.algo for r in results.records if not r.cell.is_baseline))


def png_size(path: Path | None) -> tuple[int | None, int | None]:
    """A PNG's width and height in pixels from its header, or ``(None, None)``."""
    try:
        head = Path(path).read_bytes()[:24] if path is not None else b""
    except OSError:
        return None, None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None, None
    return struct.unpack(">II", head[16:24])


def image(out: Path | None, name: str, caption: str | None = None) -> Image:
    """An image block sized from the PNG in ``out`` (unsized when ``out`` is None: a document built
    without its figures), captioned from :data:`PLOTS` unless ``caption`` is given."""
    w, h = png_size(out / name if out is not None else None)
    return Image(name, caption or PLOTS[name], w, h)


def source_name(results: ResultsFile) -> str:
    """The results file's name, or the stored figures' machine (the Run section gives the whole path)."""
    if str(results.path).endswith(".json"):
        return Path(results.path).name
    return re.sub(r" \(.*\)$", "", str(results.path))


def fmt_us(v: float | None) -> str:
    """Microseconds to the precision a reader compares them at: whole above 10 µs, one decimal below."""
    if v is None:
        return MISSING
    return f"{v:.0f} µs" if v >= 10 else f"{v:.1f} µs"


def fmt_x(v: float | None, digits: int = 2) -> str:
    """A ratio as ``1.23x``, or :data:`~rlbench.report.tables.MISSING`."""
    return MISSING if v is None else f"{v:.{digits}f}x"


def join_and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``: a list in a sentence."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
