"""The package's import graph, read with ``ast``: no circles, no arrow the data flow does not have,
and imports inside functions only where an optional dependency needs them.

A circle means two modules that can only be read together; an import inside a function hides an
arrow of the graph from the top of the file.  Both made the package harder to read, so this keeps
them out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("numpy_mnist", "backends")
#: Third-party modules a user may not have installed: importing them inside the function that needs
#: them is what lets the rest work without them.
OPTIONAL = {"torch", "cupy", "cupyx", "matplotlib", "hypothesis", "PIL", "array_api_strict", "IPython",
            "jupytext", "nbclient", "nbformat", "tqdm"}
#: First-party modules imported inside a function, and why: each is where an optional dependency
#: (CuPy) would load, on a path that runs only with a GPU.
LOADED_WITH_A_GPU = {
    "numpy_mnist.fused.trainer": "the fused CUDA graph: imported only for a model on CuPy",
    "numpy_mnist.fused.learner": "the fused CUDA graph: imported only for a model on CuPy",
    "numpy_mnist.fused.cupy_device": "NVRTC and CUDA graphs through CuPy",
}
#: The reference: it never reaches the fast paths.
REFERENCE = ("numpy_mnist.layers", "numpy_mnist.losses", "numpy_mnist.models", "numpy_mnist.optim",
             "numpy_mnist.learner", "numpy_mnist.metrics")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    parts = ["numpy_mnist", *parts] if parts[0] == "backends" else parts  # backends/ installs as numpy_mnist.backends
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules an import statement names (``from a import b`` is ``a.b`` when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parent = module.split(".")[: len(module.split(".")) - (node.level - is_package)]
        base = ".".join([*parent, *([node.module] if node.module else [])])
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _imports(module: str) -> list[tuple[str, bool, int]]:
    """``(imported module, inside a function?, line)`` for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    is_package = path.name == "__init__.py"
    return [(target, id(node) in inner, node.lineno) for node in ast.walk(tree)
            for target in _imported(node, module, is_package)]


GRAPH = {m: sorted({t for t, _, _ in _imports(m) if t in MODULES and t != m}) for m in MODULES}


def _cycle() -> list[str] | None:
    """One circle of the graph, or None (depth-first search, colouring the modules it is inside)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = "open"
        stack.append(m)
        for n in GRAPH[m]:
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in GRAPH:
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_import_graph_has_no_circles():
    assert _cycle() is None, " -> ".join(_cycle())


def test_the_bench_never_imports_the_command_line():
    arrows = [(m, t) for m in MODULES if m.startswith("numpy_mnist.bench") for t in GRAPH[m]
              if t.startswith("numpy_mnist.cli")]
    assert arrows == []


@pytest.mark.parametrize("module", REFERENCE)
def test_the_reference_never_imports_a_fast_path(module):
    assert [t for t in GRAPH[module] if t.startswith("numpy_mnist.fused")] == []


def test_imports_inside_functions_are_of_optional_dependencies_only():
    inside = [f"{MODULES[m].relative_to(REPO)}:{line} imports {t}" for m in MODULES
              for t, in_function, line in _imports(m)
              if in_function and t.split(".")[0] not in OPTIONAL and t not in LOADED_WITH_A_GPU
              and not t.startswith(("array_api_compat.cupy", "array_api_compat.torch"))  # they import CuPy, torch
              and t != "resource"]  # POSIX only: the exercise sandbox's limits, where the system has them
    assert inside == [], f"{len(inside)} imports inside functions:\n" + "\n".join(inside)


def test_the_walk_finds_the_arrows_it_should():
    """The reader above is right: known arrows are found, and a made-up circle would be seen."""
    assert "numpy_mnist.layers" in GRAPH["numpy_mnist.models"]
    assert "numpy_mnist.backends.errors" in GRAPH["numpy_mnist.errors"]
    saved = dict(GRAPH)
    try:
        GRAPH["numpy_mnist.layers"] = [*GRAPH["numpy_mnist.layers"], "numpy_mnist.models"]
        assert _cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)
