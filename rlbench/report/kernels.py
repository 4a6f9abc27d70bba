"""What saturating int8 kernels do to returns: each int8 cell's returns on such a machine against
the exact kernels' returns of the same cell (``rlbench int8-kernels``).

Both sides come from the stored baselines (``baselines/figures.json`` and
``baselines/int8-kernels/<class>.json``), judged with the grid's own return check: a difference
counts only if it exceeds the tolerance *and* Mann-Whitney resolves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlbench.core.errors import BaselineError
from rlbench.gate.checks import Status, check_return
from rlbench.gate.store import read_record_file, same_policy
from rlbench.gate.tolerances import Tolerances
from rlbench.grid.matrix import parse_cell


@dataclass(frozen=True)
class KernelRow:
    cell: str
    method: str
    kernel: str
    exact_mean: float
    exact_ci: tuple[float, float]
    mean: float
    ci: tuple[float, float]
    identical: bool
    """The same per-episode returns: on these episodes no pair of products saturated."""
    status: Status
    """The return check of the saturating returns against the exact ones: regressed/improved/unchanged."""


def kernel_rows(root: Path) -> list[KernelRow]:
    exact = read_record_file(root / "figures.json")["cells"]
    tol = Tolerances.load(root / "tolerances.toml").returns
    rows = []
    for path in sorted((root / "int8-kernels").glob("*.json")):
        data = read_record_file(path)
        kernel = data.get("int8_kernel") or path.stem
        for cell, fig in sorted(data["cells"].items()):
            ref = exact.get(cell)
            if ref is None or "returns" not in ref:
                continue  # recorded only on saturating machines: nothing to compare with
            if not same_policy(fig, ref):
                continue  # recorded from a policy since retrained: not the policy of the exact figures
            if "returns" not in fig:
                raise BaselineError(f"{path}: cell {cell!r} has no returns; re-record it with "
                                    f"pytest bench --rlbench-update-baselines -k {cell}")
            v = check_return(cell, fig["returns"], ref["returns"], tol)
            rows.append(KernelRow(cell, parse_cell(cell).variant.method, kernel, ref["return_mean"],
                                  tuple(ref["return_ci"]),
                                  fig["return_mean"], tuple(fig["return_ci"]), fig["returns"] == ref["returns"],
                                  v.status))
    return rows


def markdown(rows: list[KernelRow]) -> str:
    if not rows:
        return "No int8 cell has returns stored for both exact and saturating kernels."
    out = ["| method | kernel class | cells | identical returns | lower (resolved) | higher (resolved) |",
           "|---|---|---|---|---|---|"]
    for (method, kernel) in sorted({(r.method, r.kernel) for r in rows}):
        sel = [r for r in rows if (r.method, r.kernel) == (method, kernel)]
        out.append(f"| {method} | {kernel} | {len(sel)} | {sum(r.identical for r in sel)} | "
                   f"{sum(r.status is Status.REGRESSED for r in sel)} | {sum(r.status is Status.IMPROVED for r in sel)} |")
    moved = [r for r in rows if r.status in (Status.REGRESSED, Status.IMPROVED)]
    if moved:
        out += ["", "| cell | exact kernels | saturating kernels |", "|---|---|---|"]
        for r in moved:
            bold = "**" if r.status is Status.REGRESSED else ""
            out.append(f"| {r.cell} | {r.exact_mean:.0f} [{r.exact_ci[0]:.0f}, {r.exact_ci[1]:.0f}] | "
                       f"{bold}{r.mean:.0f}{bold} [{r.ci[0]:.0f}, {r.ci[1]:.0f}] |")
    return "\n".join(out)
