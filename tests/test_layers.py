"""The package's layers: imports run one way, from the CLI and the pytest plugin down to the core.

Every import in ``rlbench/`` (at module level and inside functions alike) is read with ``ast``.
A module may import from its own layer or a lower one; an import that runs upward, an import
cycle, or an import of another module's private name (``_x``) fails here, naming both modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rlbench"

#: Lowest first: a layer imports only from itself and the layers before it.
LAYERS = ("core", "zoo", "runtime", "measure", "compress", "train", "gate", "grid", "report", "plugin", "cli")
#: Packages that sit on a layer of another name.
SAME_LAYER = {"testing": "plugin"}
#: Top-level modules of ``rlbench/`` itself.
TOP_LEVEL = {"rlbench": "core", "rlbench.__main__": "cli"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    package = module.split(".")[1]
    return SAME_LAYER.get(package, package)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for every rlbench import of a module."""
    out = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "rlbench"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - (0 if is_package else 1) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "rlbench":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in known else (base, alias.name, node.lineno))
    return out


def graph() -> dict[str, list[tuple[str, str | None, int]]]:
    mods = modules()
    return {m: imports(m, p, set(mods)) for m, p in mods.items()}


def test_every_package_has_a_layer():
    unknown = sorted({layer_of(m) for m in modules()} - set(LAYERS))
    assert not unknown, f"packages of rlbench/ with no layer in tests/test_layers.py LAYERS: {', '.join(unknown)}"


def test_no_import_runs_upward():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = [f"{m}:{line} imports {target} ({layer_of(m)} layer imports the {layer_of(target)} layer above it)"
           for m, found in graph().items() for target, _name, line in found
           if rank[layer_of(target)] > rank[layer_of(m)]]
    assert not bad, "imports that run upward (order: " + " < ".join(LAYERS) + "):\n" + "\n".join(bad)


def test_no_private_name_is_imported_from_another_module():
    bad = [f"{m}:{line} imports the private name {name} of {target}"
           for m, found in graph().items() for target, name, line in found
           if name is not None and name.startswith("_") and not name.startswith("__") and target != m]
    assert not bad, "\n".join(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle():
    # a package's __init__ re-exporting its own modules is not a cycle: the edge from a module to
    # its parent package is the only one that goes through __init__
    edges = {m: {t for t, _n, _l in found if t != m and not m.startswith(t + ".")} for m, found in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
])
def test_the_cycle_finder_finds_a_planted_cycle(edges, expected):
    assert find_cycle(edges) == expected
