"""The package's imports form one-way layers: no cycle, and nothing imports upwards.

Every ``import`` statement of every module is read, function-level ones included, with
``ast`` (nothing is executed), and resolved to the fastbp module it names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastbp"

# Lower layers first; a module may import only from its own layer or below.
LAYERS = [
    ("kernels", ["fastbp.kernels"]),
    ("core", ["fastbp.core"]),
    ("ops", ["fastbp.ops"]),
    ("functions", ["fastbp.functions", "fastbp.gradcheck", "fastbp.viz", "fastbp.autograd"]),
    ("nn / optim / data", ["fastbp.nn", "fastbp.optim", "fastbp.data", "fastbp.serialization"]),
    ("jit", ["fastbp.jit"]),
    ("top", ["fastbp", "fastbp.distributed", "fastbp.examples", "fastbp.interop"]),
]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """The fastbp modules that the file at ``path`` imports, at any depth of its code."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from pkg import sub`` imports the submodule sub when there is one.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem
                       for a in node.names]  # fmt: skip
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("fastbp") and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(files)
    return {name: imports_of(path, modules, root) for name, path in files.items()}


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} belongs to no layer: add it to LAYERS"
    return rank


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in sorted(import_graph().items())
        for b in sorted(targets)
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "\n".join(upward)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "fastbp"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "core" / "b.py").write_text("from .a import f\n")
    graph = import_graph(pkg)
    assert graph["fastbp.core.a"] == {"fastbp.core.b"}
    assert find_cycle(graph) in (
        ["fastbp.core.a", "fastbp.core.b", "fastbp.core.a"],
        ["fastbp.core.b", "fastbp.core.a", "fastbp.core.b"],
    )


@pytest.mark.parametrize("module", ["fastbp.core.engine"])
def test_the_engine_is_short(module):
    """The engine proper stays at most 250 lines of code (docstrings and comments aside)."""
    path = PACKAGE / (module.removeprefix("fastbp.").replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    code = [
        line
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#") and i not in doc_lines
    ]
    assert len(code) <= 250, f"{module} has {len(code)} lines of code"
