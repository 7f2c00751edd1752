"""The package's shape holds: no module of python/cloudkit over 500 lines, no import circle
between its modules (imports inside functions included: a circle held open by a
function-level import is still a circle; those under TYPE_CHECKING are left out), and an
import inside a function only where it saves start-up time: what it imports would load a
heavy package (torch, rasterio, zarr, the Rust extension, ...) that its module's own
top-level imports do not load already."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "cloudkit"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }


def _imported(name: str, modules: dict[str, Path]) -> str | None:
    """The module of the package that importing ``name`` loads (a name imported from a
    module is that module)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Each module and the modules of the package it imports (a package's own parents
    left out: importing a submodule runs them first, that is no circle of ours)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        targets = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cloudkit"):
                targets |= {_imported(f"{node.module}.{a.name}", modules) for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {_imported(a.name, modules) for a in node.names}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


#: packages whose import costs start-up time (tenths of a second to seconds, or memory)
HEAVY = frozenset(
    [
        "numpy",
        "torch",
        "torchvision",
        "rasterio",
        "zarr",
        "numcodecs",
        "dask",
        "distributed",
        "xarray",
        "rioxarray",
        "matplotlib",
        "onnxruntime",
        "h5py",
        "lightgbm",
        "s2cloudless",
        "ukis_csmask",
        "faiss",
        "scipy",
        "fsspec",
        "s3fs",
        "obstore",
        "PIL",
        "rich",
        "typer",
        "click",
        "cloudkit._core",
        "torch._inductor",
    ]
)


def _module_level(body: list[ast.stmt]):
    """The statements that run when the module is imported (module level, inside a
    module-level ``if`` or ``try`` too)."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
            for handler in getattr(node, "handlers", []):
                yield from _module_level(handler.body)


def _imports(tree: ast.AST, modules: dict[str, Path]):
    """``(node, target)`` of each import outside TYPE_CHECKING: a module of the package,
    the Rust extension, or a third-party or standard package by its top name."""
    skip = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            full = [f"{module}.{a.name}" for a in node.names] if module else []
        else:
            full = [a.name for a in node.names]
        for name in full:
            if name.startswith("cloudkit._core"):
                yield node, "cloudkit._core"
            elif name.startswith("cloudkit"):
                yield node, _imported(name, modules)
            elif name.startswith("torch._inductor"):  # the compiler: seconds on top of torch
                yield node, "torch._inductor"
            else:
                yield node, name.split(".")[0]


def lazy_imports_without_a_reason() -> list[str]:
    """``module:line`` of each function-level import statement that loads no heavy package
    the module's own top-level imports (and its packages' ``__init__``) leave out."""
    modules = _modules()
    top: dict[str, set[str]] = {}
    lazy: dict[str, dict[int, set[str]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        at_import = {id(n) for n in _module_level(tree.body)}
        top[name], lazy[name] = set(), {}
        for node, target in _imports(tree, modules):
            if target is None:
                continue
            if id(node) in at_import:
                top[name].add(target)
            else:
                lazy[name].setdefault(node.lineno, set()).add(target)

    loads: dict[str, frozenset[str]] = {}

    def heavy(target: str, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """The heavy packages importing ``target`` loads."""
        if target in loads:
            return loads[target]
        if target not in modules:
            return frozenset({target} & HEAVY)
        if target in seen:
            return frozenset()
        seen = seen | {target}
        parts = target.split(".")
        found: set[str] = set()
        for i in range(1, len(parts)):  # a submodule's import runs its packages first
            found |= heavy(".".join(parts[:i]), seen)
        for dep in top[target]:
            found |= heavy(dep, seen)
        loads[target] = frozenset(found)
        return loads[target]

    return [
        f"{name}:{line} imports {', '.join(sorted(targets))}"
        for name in sorted(lazy)
        for line, targets in sorted(lazy[name].items())
        if not frozenset().union(*(heavy(t) for t in targets)) - heavy(name)
    ]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_is_over_500_lines():
    long = {
        str(path.relative_to(PACKAGE.parent)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_one():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_a_function_level_import_saves_start_up_time():
    assert lazy_imports_without_a_reason() == []
