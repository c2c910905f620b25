"""No function of the package is too tangled to read in one go: radon's cyclomatic complexity of
every function and method is at most 15 (the branches a reader must hold in mind at once)."""

from __future__ import annotations

from pathlib import Path

import pytest

radon_complexity = pytest.importorskip("radon.complexity", reason="radon (a test dependency) is not installed")

REPO = Path(__file__).resolve().parents[1]
LIMIT = 15


def _blocks(path: Path):
    for block in radon_complexity.cc_visit(path.read_text()):
        yield block
        yield from getattr(block, "methods", [])  # a class's methods, one by one


def test_no_function_is_above_the_limit():
    files = [p for folder in ("numpy_mnist", "backends", "scripts") for p in sorted((REPO / folder).rglob("*.py"))]
    too_complex = [f"{p.relative_to(REPO)}:{b.lineno} {b.name} ({b.complexity})" for p in files for b in _blocks(p)
                   if b.complexity > LIMIT and type(b).__name__ != "Class"]
    assert too_complex == []


def test_the_measure_sees_a_tangled_function(tmp_path):
    branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(LIMIT + 1))
    blocks = radon_complexity.cc_visit(f"def tangled(x):\n{branches}\n")
    assert blocks[0].complexity == LIMIT + 2
