"""The packages of otseam import each other in one direction only (docs/architecture.md).

Every import between two packages, `TYPE_CHECKING` ones included, is an edge; the test fails on any
cycle, naming the files that close it, and on an import that points up the layers listed below.
Plugins (each folder under drivers/, sources/, sinks/, replica/ and protocols/) count as packages of
their own: a sink may use the diode, but the diode must not import a sink.
"""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "otseam"
PLUGIN_FOLDERS = {"drivers", "sources", "sinks", "replica", "protocols"}

#: Lowest first. A package may import from its own layer's lower entries and from lower layers only.
LAYERS = [
    {"contract"},
    {"core"},
    {"journal", "pipeline", "compute", "protocols", "audit"},
    {"runtime"},
]
#: The top: command modules and the entry point; nothing imports them. (`seam demo` is a command that
#: has a package of its own.)
TOP = {"commands", "demo", "(top)"}


def package_of(parts: list[str]) -> str:
    if len(parts) == 1:
        return "(top)"
    head = parts[0]
    if head in PLUGIN_FOLDERS and len(parts) > 2:
        return f"{head}/{parts[1]}"
    return head


def imports() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in ROOT.rglob("*.py"):
        source = package_of(list(path.relative_to(ROOT).parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("otseam."):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names if alias.name.startswith("otseam.")]
            for name in names:
                parts = name.split(".")[1:]
                target = package_of([*parts, "x"]) if parts[0] in PLUGIN_FOLDERS else parts[0]
                if target != source:
                    edges[(source, target)].append(str(path.relative_to(ROOT)))
    return edges


def test_no_import_cycle_between_packages() -> None:
    edges = imports()
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loop = [*stack[stack.index(nxt) :], nxt]
                cycles.append(" -> ".join(f"{a} ({edges[(a, b)][0]})" for a, b in itertools.pairwise(loop)))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_imports_point_down_the_layers() -> None:
    rank = {package: level for level, packages in enumerate(LAYERS) for package in packages}
    upward = []
    for (source, target), files in sorted(imports().items()):
        if target in TOP and source not in TOP:
            upward.append(f"{source} imports the command layer ({target}) in {files[0]}")
        source_rank, target_rank = rank.get(source.split("/")[0]), rank.get(target.split("/")[0])
        if source_rank is not None and target_rank is not None and target_rank > source_rank:
            upward.append(f"{source} (layer {source_rank}) imports {target} (layer {target_rank}) in {files[0]}")
    assert not upward, "\n".join(upward)
