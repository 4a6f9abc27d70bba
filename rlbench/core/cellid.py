"""Cell ids: ``ALGO-Env-vN-METHOD[-RATIO]``, the name of a grid cell in every file and command.

One rule splits an id: the pair is its first three dash-separated fields (``SAC-Hopper-v5``: an
environment id is ``Name-vN``), the variant the rest (``l2-0.30``), whose first field is the
method. :func:`match_cell_id` is the one syntax check; the grid (:func:`rlbench.grid.matrix.parse_cell`)
and the results reader (:func:`rlbench.report.results.parse_cell_id`) add what each requires of it.
"""

from __future__ import annotations

import re

CELL_RE = re.compile(r"^(?P<algo>[A-Z0-9]+)-(?P<env>[A-Za-z][A-Za-z0-9]*-v\d+)"
                     r"-(?P<method>[a-z][a-z0-9_]*)(?:-(?P<ratio>\d+(?:\.\d+)?))?$")


def match_cell_id(cell_id: str) -> re.Match | None:
    """The id's fields (``algo``, ``env``, ``method``, ``ratio`` as written), or None if it is not one."""
    return CELL_RE.match(cell_id)


def split_cell_id(cell_id: str) -> tuple[str, str]:
    """``SAC-Hopper-v5-l2-0.30`` -> (``SAC-Hopper-v5``, ``l2-0.30``)."""
    parts = cell_id.split("-")
    return "-".join(parts[:3]), "-".join(parts[3:])


def pair_of(cell_id: str) -> str:
    """``SAC-Hopper-v5-l1-0.20`` -> ``SAC-Hopper-v5``."""
    return split_cell_id(cell_id)[0]


def env_of(cell_id: str) -> str:
    """``SAC-Hopper-v5-l1-0.20`` -> ``Hopper-v5``."""
    return pair_of(cell_id).split("-", 1)[1]


def method_of(cell_id: str) -> str:
    """``SAC-Hopper-v5-l1-0.20`` -> ``l1``; ``SAC-Hopper-v5-ptdq`` -> ``ptdq``."""
    return cell_id.split("-")[3]


def split_variant(variant: str) -> tuple[str, float | None]:
    """``l2-0.30`` -> (``l2``, 0.3); ``ptdq`` -> (``ptdq``, None); a variant whose ratio is not a number
    is a method name of its own."""
    method, _, ratio = variant.partition("-")
    try:
        return method, float(ratio) if ratio else None
    except ValueError:
        return variant, None
