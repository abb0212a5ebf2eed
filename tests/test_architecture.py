"""The import rules of the package, read from the source with `ast` (nothing is imported):

- no module imports a private name (one starting with ``_``) from another module: what a module keeps
  private stays in it, and what others need is public in the module that owns the idea;
- the module-level imports between the package's modules form no cycle (a cycle makes the import order
  matter and hides which module is the lower one).

Every module of harness/ counts, and the built-in filters (the top-level folder baselines/, imported as
``harness.baselines``).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"harness": REPO / "harness", "harness.baselines": REPO / "baselines"}

# (importing module, imported module, name)
ALLOWED_PRIVATE: set[tuple[str, str, str]] = set()  # (module, imported from, name): none today
# (importing module, imported module) edges of a cycle through imports inside functions
ALLOWED_LAZY_EDGES: set[tuple[str, str]] = set()  # (importer, imported) edges a cycle may use: none


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py below the roots."""
    found: dict[str, Path] = {}
    for prefix, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The module an ``from X import ...`` names, relative levels resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, module_level_only: bool, source: str | None = None) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import in ``module`` (its file, or
    ``source`` read as that module's text).

    module_level_only: the imports that run when the module is imported (not those in functions or
    under ``if TYPE_CHECKING:``); otherwise every import statement."""
    if source is None:
        source = MODULES[module].read_text()
    tree = ast.parse(source, filename=str(MODULES[module]))
    out: list[tuple[str, str | None, int]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.extend((alias.name, None, node.lineno) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(module, node)
                out.extend((target, alias.name, node.lineno) for alias in node.names)
            elif isinstance(node, ast.If) and _type_checking_only(node) and module_level_only:
                visit(node.orelse)
                continue
            if module_level_only and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list) and children and isinstance(children[0], ast.stmt | ast.excepthandler):
                    visit(children)  # type: ignore[arg-type]

    visit(tree.body)
    return out


def _edges(module: str, module_level_only: bool = True) -> set[str]:
    """The package's modules that ``module`` imports directly (by default: those its import runs)."""
    edges = set()
    for target, name, _ in _imports(module, module_level_only):
        if name is not None and f"{target}.{name}" in MODULES:
            edges.add(f"{target}.{name}")  # from pkg import submodule
        elif target in MODULES:
            edges.add(target)
    edges.discard(module)
    return edges


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
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
            strongconnect(v)
    return found


def test_the_package_is_found() -> None:
    # the rules below mean nothing if the walk misses the tree
    for module in ("harness.cli", "harness.pool", "harness.world.build", "harness.baselines",
                   "harness.baselines.hype.plugin"):
        assert module in MODULES


def test_every_import_of_the_package_names_one_of_its_modules() -> None:
    # a relative import left behind by a move fails only when its function runs: catch it here
    offences = [f"{MODULES[m].relative_to(REPO)}:{line} imports {target}"
                for m in sorted(MODULES) for target, _, line in _imports(m, module_level_only=False)
                if target.split(".")[0] == "harness" and target not in MODULES]
    assert not offences, "imports of modules that do not exist:\n" + "\n".join(offences)


def test_no_module_imports_a_private_name_from_another() -> None:
    offences = []
    for module in sorted(MODULES):
        for target, name, line in _imports(module, module_level_only=False):
            if name is None or not name.startswith("_") or name.startswith("__") or target == module:
                continue
            if target.split(".")[0] != "harness":
                # a library's private name (numpy's _reconstruct for the pickle allow-list, webdataset's
                # _shuffle) is pinned by requirements.lock, not by this rule
                continue
            if (module, target, name) in ALLOWED_PRIVATE:
                continue
            offences.append(f"{MODULES[module].relative_to(REPO)}:{line} imports {name} from {target}")
    assert not offences, "private names imported across modules:\n" + "\n".join(offences)


def test_module_level_imports_form_no_cycle() -> None:
    graph = {m: _edges(m) for m in MODULES}
    cycles = _cycles(graph)
    assert not cycles, "import cycles among module-level imports:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cycle_even_through_imports_inside_functions() -> None:
    # an import moved into a function to dodge a cycle still ties the two modules together
    graph = {m: _edges(m, module_level_only=False) for m in MODULES}
    for a, b in ALLOWED_LAZY_EDGES:
        graph[a].discard(b)
    cycles = _cycles(graph)
    assert not cycles, "import cycles (counting imports in functions):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checks_catch_what_they_are_for() -> None:
    # a made-up text of harness/world/io.py: relative imports resolve, function and TYPE_CHECKING
    # imports count only when asked for
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .build import _secret\n"
        "from .. import pool\n"
        "if TYPE_CHECKING:\n"
        "    from harness.stages import Stage\n"
        "try:\n"
        "    import harness.cli\n"
        "except ImportError:\n"
        "    from harness import plugins\n"
        "def f():\n"
        "    from harness.selection import _hidden\n"
    )
    eager = _imports("harness.world.io", module_level_only=True, source=source)
    every = _imports("harness.world.io", module_level_only=False, source=source)
    assert [(t, n) for t, n, _ in eager] == [
        ("typing", "TYPE_CHECKING"), ("harness.world.build", "_secret"), ("harness", "pool"), ("harness.cli", None),
        ("harness", "plugins")]
    assert ("harness.selection", "_hidden", 11) in every and ("harness.stages", "Stage", 5) in every
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
