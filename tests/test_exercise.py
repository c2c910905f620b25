"""``numpy-mnist exercise new``: the starter file, in the book's order, that checks as all to do."""

from __future__ import annotations

import ast
import importlib.util
import inspect

import pytest

from numpy_mnist.cli import SUBCOMMANDS, main
from numpy_mnist.exercise import EXERCISE_NAMES, EXERCISES, STARTER_NAME


def load(path):
    spec = importlib.util.spec_from_file_location("starter_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_registered():
    assert "exercise" in SUBCOMMANDS


def test_new_writes_the_nine_functions_in_the_books_order(tmp_path, capsys):
    assert main(["exercise", "new", str(tmp_path)]) == 0
    path = tmp_path / STARTER_NAME
    assert str(path) in capsys.readouterr().out
    text = path.read_text()
    functions = [node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
    assert [f.name for f in functions] == list(EXERCISE_NAMES) == [
        "sigmoid_backward", "mnist_loss_backward", "linear_backward", "relu_backward",
        "binary_cross_entropy_backward", "softmax_cross_entropy_backward", "conv2d_backward", "batch_norm_backward",
        "max_pool2d_backward"]
    module = load(path)
    for exercise in EXERCISES:
        mine = getattr(module, exercise.name)
        # the reference's signature, parameter for parameter: names, kinds and defaults
        assert parameters(mine) == parameters(exercise.reference)
        doc = inspect.getdoc(mine)
        assert "returns" in doc and "(N," in doc  # what to compute, the shapes in and out
        with pytest.raises(NotImplementedError):
            mine(*([None] * len(exercise.inputs)))


def test_the_docstrings_do_not_give_the_answer():
    for exercise in EXERCISES:
        for formula in ("sigmoid(x) * (1 - sigmoid(x))", "dout @ w.T", "x.T @ dout", "softmax(z) - onehot",
                        "(sigmoid(z) - t)", "x > 0, dout", "M dout", "sum_i dout", "xhat * dgamma", "::-1"):
            assert formula not in exercise.doc


def test_new_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    assert main(["exercise", "new", str(tmp_path)]) == 0
    (tmp_path / STARTER_NAME).write_text("# my work\n")
    capsys.readouterr()
    assert main(["exercise", "new", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "already exists" in err and "--force" in err
    assert (tmp_path / STARTER_NAME).read_text() == "# my work\n"
    assert main(["exercise", "new", str(tmp_path), "--force"]) == 0
    assert "NotImplementedError" in (tmp_path / STARTER_NAME).read_text()


def test_new_into_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("")
    assert main(["exercise", "new", str(target)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
