"""The shape of `lung_model/`, read from its source: imports only point down the layers, no
module imports itself round a cycle, and only entry points reach for `get_settings()`.

Every import counts: at module level, inside functions, under `if TYPE_CHECKING:`. An import
inside a function keeps a heavy library off a DAG file's parse path; it does not hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lung_model

PACKAGE = "lung_model"
ROOT = Path(lung_model.__file__).parent

# Bottom first: a module may import its own layer and the ones before it, never one after.
LAYERS = (
    "settings",
    "platform",
    "imaging",
    "data",
    "training",
    "scoring",
    "lifecycle",
    "review",
    "exchange",  # DICOM in, SR and FHIR out: reads reviews for the amended report
    "pipelines",
    "cli",
)
# Top-level modules that are not a layer's folder: where they sit.
PLACED = {"__init__": "settings", "__main__": "cli"}
# Where `get_settings()` may be called: the entry points, and the module that defines it.
ENTRY_POINTS = ("cli", "pipelines")
DEFINES_GET_SETTINGS = f"{PACKAGE}.settings"


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the lung_model module it names
    line: int

    def where(self) -> str:
        return f"{path_of(self.source)}:{self.line}"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((PACKAGE, *parts))] = path
    return found


MODULES = modules()


def path_of(module: str) -> str:
    return str(MODULES[module].relative_to(ROOT.parent))


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else "__init__"
    first = PLACED.get(first, first)
    return first if first in LAYERS else None


def imports_of(module: str) -> Iterator[Import]:
    """The lung_model modules `module` names in any import statement, anywhere in it."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = nearest_module(alias.name)
                if target:
                    yield Import(module, target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(module, node.module, node.level)
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                # `from lung_model.x import y` names module x.y when y is one, else x itself.
                target = nearest_module(f"{base}.{alias.name}")
                if target:
                    yield Import(module, target, node.lineno)


def absolute(module: str, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    package = module.split(".") if is_package(module) else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def nearest_module(dotted: str) -> str | None:
    """The longest prefix of `dotted` that is a module of the package, if any."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {imported module: the first statement that imports it}."""
    graph: dict[str, dict[str, Import]] = {module: {} for module in MODULES}
    for module in MODULES:
        for found in imports_of(module):
            graph[module].setdefault(found.target, found)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's components, iteratively; only those that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    components.append(sorted(component))
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, Import]], component: list[str]) -> list[str]:
    """The shortest way from the component's first module back to itself, inside it."""
    start = component[0]
    inside = set(component)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child in inside and child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_every_module_sits_in_a_layer() -> None:
    outside = [path_of(module) for module in MODULES if layer_of(module) is None]

    assert not outside, (
        "modules outside the layers (move them into one of "
        f"{', '.join(LAYERS[1:])}, or place them in tests/test_layout.py): {outside}"
    )


def test_imports_only_point_down_the_layers() -> None:
    upward = []
    for module, targets in import_graph().items():
        here = layer_of(module)
        for target, found in targets.items():
            there = layer_of(target)
            if here and there and LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{found.where()}: {here} imports {there} ({module} -> {target})")

    assert not upward, (
        f"{len(upward)} upward imports (order, bottom first: {' <- '.join(LAYERS)}):\n"
        + "\n".join(upward)
    )


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = []
    for component in strongly_connected(graph):
        cycle = shortest_cycle(graph, component)
        steps = [
            f"    {graph[a][b].where()}: {a} -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)
        ]
        cycles.append(
            f"cycle among {len(component)} modules ({', '.join(component)}), for example:\n"
            + "\n".join(steps)
        )

    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(cycles)


def test_the_layout_checks_see_cycles_and_upward_imports() -> None:
    """The graph walk itself: relative imports resolve, imports inside functions and
    TYPE_CHECKING blocks are seen, `from package import module` names the module."""
    cli, platform_db = f"{PACKAGE}.cli.main", f"{PACKAGE}.platform.db"
    assert absolute(f"{PACKAGE}.scoring.engine", "store", 1) == f"{PACKAGE}.scoring.store"
    assert absolute(f"{PACKAGE}.scoring", "store", 1) == f"{PACKAGE}.scoring.store"
    assert absolute(f"{PACKAGE}.scoring.engine", "platform.db", 2) == platform_db
    assert nearest_module(f"{PACKAGE}.platform.db.get_engine") == platform_db
    assert nearest_module("os.path") is None
    assert (
        layer_of(f"{PACKAGE}.__main__") == "cli" and layer_of(f"{PACKAGE}.settings") == "settings"
    )
    assert layer_of(cli) == "cli" and layer_of(f"{PACKAGE}.platform") == "platform"

    graph: dict[str, dict[str, Import]] = {
        "a": {"b": Import("a", "b", 1)},
        "b": {"c": Import("b", "c", 1)},
        "c": {"a": Import("c", "a", 1), "d": Import("c", "d", 1)},
        "d": {"d": Import("d", "d", 1)},
        "e": {"a": Import("e", "a", 1)},
    }
    assert strongly_connected(graph) == [["a", "b", "c"], ["d"]]
    assert shortest_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert shortest_cycle(graph, ["d"]) == ["d", "d"]


def test_only_entry_points_call_get_settings() -> None:
    """Inside the core, settings are handed in; the CLI and the DAG tasks build them."""
    offenders = []
    for module, path in MODULES.items():
        if module == DEFINES_GET_SETTINGS or layer_of(module) in ENTRY_POINTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            named = (isinstance(node, ast.Name) and node.id == "get_settings") or (
                isinstance(node, ast.Attribute) and node.attr == "get_settings"
            )
            if named:
                offenders.append((path_of(module), node.lineno))

    assert not offenders, (
        f"get_settings() used outside the entry points ({', '.join(ENTRY_POINTS)}); "
        f"take `settings` as a parameter instead: {len(offenders)} places:\n"
        + "\n".join(f"{path}:{line}" for path, line in sorted(offenders))
    )
