"""The import graph of voicegw/: no module imports another in a circle, config/ does
not import the engine, and a name is imported from the module that defines it.

Every import counts, wherever it stands: at module level, inside a function (an
import moved into a function still ties the two modules together), or under
``if TYPE_CHECKING:``. The check reads the source with ``ast``; nothing is imported.
A cycle is a strongly connected component of the graph (Tarjan), reported with its
modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOT = REPO / "voicegw"
PACKAGE = ROOT.name


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py under voicegw/ (a package is its
    ``__init__``)."""
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The dotted names an import statement reaches (``from x import y`` reaches
    ``x.y`` when that is a module, else ``x``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = module.split(".")
    if path.name == "__init__.py":
        base.append("__init__")
    if node.level:
        prefix = base[: len(base) - node.level]
        target = ".".join([*prefix, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    for alias in node.names:
        yield f"{target}.{alias.name}"
        yield target


def import_graph() -> dict[str, set[str]]:
    """module -> the voicegw modules it imports (packages' ``__init__`` left out:
    importing ``voicegw.store`` for its facade is not a dependency on every module)."""
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, path, node):
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if (target in mods and target != module and not module.startswith(target + ".")
                        and mods[target].name != "__init__.py"):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "voicegw.transport.tcp" in graph["voicegw.transport.endpoint"]
    assert "voicegw.engine.b2bua" in graph["voicegw.daemon"]  # a function-local import


def test_the_check_finds_a_cycle_through_a_function_local_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_voicegw() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(", ".join(c) for c in found)


def test_config_does_not_import_the_engine() -> None:
    """Config converts to plain settings (voicegw/settings.py, flow/); the daemon hands
    them to the engine. config/ importing the engine would put it above the engine."""
    graph = import_graph()
    bad = {m: sorted(t for t in targets if t.startswith("voicegw.engine."))
           for m, targets in graph.items() if m.startswith("voicegw.config.")}
    assert not {m: t for m, t in bad.items() if t}


def test_engine_helpers_do_not_import_the_call_host() -> None:
    """The helpers reach the Engine through engine/ports.py, never by importing b2bua."""
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "voicegw.engine.b2bua" in targets)
    assert all(not m.startswith("voicegw.engine.") for m in importers), importers


def defined_names(path: Path) -> set[str]:
    """The names a module defines at its top level (functions, classes, assignments,
    also inside top-level ``if``/``try`` blocks); imported names do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for statement in tree.body:
        nodes = ast.walk(statement) if isinstance(statement, (ast.If, ast.Try)) else [statement]
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names.update(n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def test_names_are_imported_from_the_module_that_defines_them() -> None:
    """After a module is split, importers take each name from its new home; the old
    module does not re-export it (a package's ``__init__`` may: it is a facade)."""
    mods = modules()
    defined = {m: defined_names(p) for m, p in mods.items() if p.name != "__init__.py"}
    files = [p for folder in ("voicegw", "tests", "scripts") for p in sorted((REPO / folder).rglob("*.py"))]
    found: list[str] = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level and not path.is_relative_to(ROOT):
                continue  # a relative import in tests/ or scripts/ is not voicegw's
            if node.level:
                module = ".".join((PACKAGE, *path.relative_to(ROOT).with_suffix("").parts))
                base = module.split(".")
                if path.name == "__init__.py":
                    base.append("__init__")
                target = ".".join([*base[: len(base) - node.level], *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target not in defined:
                continue
            for alias in node.names:
                if f"{target}.{alias.name}" not in mods and alias.name not in defined[target]:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {alias.name} from {target}")
    assert not found, "import these from where they are defined:\n" + "\n".join(found)
