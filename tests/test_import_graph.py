"""No import circles among first-party modules (sdt3_event, sdt3_event.datasets, sdt3_event.apps).

The graph is read from the source with ``ast``: every ``import`` statement counts, those inside
functions too (a lazy import hides a circle, it does not remove it); only ``if TYPE_CHECKING:``
blocks are left out, as they never run. An edge goes to the module a statement loads (for
``from package import name`` the submodule ``package.name`` when there is one, else the package).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Installed name -> source folder, as pyproject's package-dir maps them.
PACKAGES = {
    "sdt3_event": "sdt3_event",
    "sdt3_event.datasets": "datasets",
    "sdt3_event.apps": "apps",
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """First-party modules that ``module`` imports."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(module)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        name: _imports(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def test_walker_sees_the_package():
    graph = import_graph()
    assert {"sdt3_event.registry", "sdt3_event.datasets.synthetic", "sdt3_event.apps.cli"} <= set(
        graph
    )
    assert "sdt3_event.layers.snn" in graph["sdt3_event.layers.lif"]


def test_find_cycles_finds_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def _circles(in_stream: bool) -> list[list[str]]:
    return [
        c
        for c in find_cycles(import_graph())
        if any(m.startswith("sdt3_event.stream.") for m in c) == in_stream
    ]


def test_no_import_circles():
    cycles = _circles(in_stream=False)
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_circles_in_stream():
    cycles = _circles(in_stream=True)
    assert cycles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


# Every app module has these entry points (the CLI convention); they are not shared helpers.
_APP_ENTRY_POINTS = {"main", "add_parser", "configure", "run"}


def test_no_public_name_is_defined_twice():
    # one of each: a public module-level function, class or constant exists in one module only
    # (re-exports are imports, not definitions, and do not count)
    where: dict[str, list[str]] = {}
    for module, path in _modules().items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            for name in names:
                if name.startswith("_") or name in {"log", "logger", "__all__"}:
                    continue
                if module.startswith("sdt3_event.apps.") and name in _APP_ENTRY_POINTS:
                    continue
                where.setdefault(name, []).append(module)
    twice = {name: mods for name, mods in where.items() if len(mods) > 1}
    assert not twice, f"defined in more than one module: {twice}"
