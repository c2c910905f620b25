"""``numpy-mnist exercise check --train``: simple_net trained with the learner's functions, beside the reference."""

from __future__ import annotations

import re

import pytest
from exercise_files import REFERENCE, SOLUTION, WRONG, only

from numpy_mnist.cli import main
from numpy_mnist.exercise.training import exercise_net, reference_functions

pytest.importorskip("hypothesis")


def train(capsys, tmp_path, text: str, *argv: str):
    path = tmp_path / "my_gradients.py"
    path.write_text(text)
    code = main(["exercise", "check", str(path), "--no-torch", "--examples", "5", "--train",
                 "--out", str(tmp_path / "out"), *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out[out.out.index("training the book's simple_net"):]


def curve(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line)]


def test_exercise_net_with_the_reference_functions_is_simple_net():
    """The same parameters, loss and gradients as the book's model, bit for bit."""
    import numpy as np

    from numpy_mnist.data import load_mnist_sample
    from numpy_mnist.models import simple_net

    x, y, _, _ = load_mnist_sample()
    x, y = x[::97].astype(np.float64), y[::97].astype(np.float64)
    mine, book = exercise_net(reference_functions()), simple_net(seed=0, dtype="float64")
    (loss, grads), (book_loss, book_grads) = mine.loss_and_grads(x, y), book.loss_and_grads(x, y)
    assert loss == book_loss
    for name in book.params:
        np.testing.assert_allclose(grads[name], book_grads[name], rtol=1e-12, atol=1e-15)


def test_the_reference_trains_exactly_like_the_reference(capsys, tmp_path):
    code, out = train(capsys, tmp_path, REFERENCE, "--epochs", "2")
    assert code == 0, out
    rows = curve(out)
    assert len(rows) == 2 and all(r[1:4] == r[4:7] for r in rows)
    assert "the runs agree to 1e-06 relative in every epoch" in out


def test_a_slip_parts_the_runs_in_the_first_epoch(capsys, tmp_path):
    code, out = train(capsys, tmp_path, WRONG["1/N missing"][0], "--epochs", "2")
    assert code == 1
    assert curve(out)[0][-1] == "part" and "the runs part in epoch 1: valid loss" in out


def test_an_exception_in_training_stops_only_the_learners_run(capsys, tmp_path):
    text = SOLUTION.replace("dw = x.T @ dout", "dw = x @ dout")
    code, out = train(capsys, tmp_path, text, "--epochs", "2")
    assert code == 1
    rows = curve(out)
    assert len(rows) == 2 and all(r[4:] == ["-", "-", "-"] for r in rows)
    assert re.search(r"your run stopped in epoch 1: linear_backward raised ValueError: matmul.*line \d+\)", out)


def test_functions_still_to_do_come_from_the_reference(capsys, tmp_path):
    code, out = train(capsys, tmp_path, only(SOLUTION, "relu_backward"), "--epochs", "1")
    assert code == 0
    assert "with yours (relu_backward); the reference's mnist_loss_backward, linear_backward stands in" in out


def test_nothing_to_train_with(capsys, tmp_path):
    path = tmp_path / "my_gradients.py"
    path.write_text(only(SOLUTION, "sigmoid_backward"))
    code = main(["exercise", "check", str(path), "--no-torch", "--examples", "5", "--train"])
    out = capsys.readouterr().out
    assert code == 1 and "nothing of yours to train with" in out


@pytest.mark.slow
def test_the_books_run_with_your_functions_reaches_098(capsys, tmp_path):
    """The book's defaults (40 epochs): your functions, if right, reach the book's accuracy, as the reference does."""
    code, out = train(capsys, tmp_path, SOLUTION)
    assert code == 0, out
    rows = curve(out)
    assert len(rows) == 40 and float(rows[-1][6]) >= 0.98 and rows[-1][3] == rows[-1][6]
    assert re.search(r"final valid accuracy: reference 0\.98\d\d, yours 0\.98\d\d", out)
    assert (tmp_path / "out" / "exercise_training.png").exists() or "matplotlib is not installed" in out


def test_the_curves_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from numpy_mnist.exercise.training import plot_curves
    from numpy_mnist.learner import EpochRecord

    reference = [EpochRecord(e, 0.3 / e, 0.4 / e, 0.9 + e / 100, 0.1) for e in (1, 2, 3)]
    path = plot_curves(reference, reference[:1], tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
