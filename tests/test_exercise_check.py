"""``numpy-mnist exercise check``: the starter is all to do, the reference passes, each slip gets its hint,
and a file that hangs, crashes, raises or does not parse ends in one clear line."""

from __future__ import annotations

import re

import pytest
from exercise_files import REFERENCE, SOLUTION, WRONG, only

from numpy_mnist.cli import main
from numpy_mnist.exercise import EXERCISE_NAMES, starter_source
from numpy_mnist.exercise.sandbox import LearnerFileError, Sandbox

pytest.importorskip("hypothesis")


def check(capsys, tmp_path, text: str, *argv: str, name: str = "my_gradients.py"):
    path = tmp_path / name
    path.write_text(text)
    code = main(["exercise", "check", str(path), *argv])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("function"))
    found = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        found[cells[0]] = cells
    return found


def test_the_starter_checks_as_all_to_do_and_exits_1(capsys, tmp_path):
    code, out, _ = check(capsys, tmp_path, starter_source())
    assert code == 1
    assert {name: cells[1] for name, cells in rows(out).items()} == {name: "to do" for name in EXERCISE_NAMES}
    assert "nothing written yet" in out and "Start with sigmoid_backward" in out


@pytest.mark.parametrize("text", [SOLUTION, REFERENCE], ids=["numpy solution", "the reference itself"])
def test_right_functions_all_pass(capsys, tmp_path, text):
    code, out, _ = check(capsys, tmp_path, text)
    assert code == 0, out
    table = rows(out)
    assert list(table) == list(EXERCISE_NAMES)
    for cells in table.values():
        assert cells[1] == "pass" and float(cells[2]) <= 1e-6 and float(cells[3]) <= 1e-6
    assert "every backward function agrees with the reference" in out


def test_written_functions_pass_while_the_rest_are_to_do(capsys, tmp_path):
    code, out, _ = check(capsys, tmp_path, only(SOLUTION, "sigmoid_backward"), "--no-torch")
    assert code == 0, out
    table = rows(out)
    assert table["sigmoid_backward"][1] == "pass"
    assert table["relu_backward"][1] == "to do (not defined in the file)"
    assert f"1 of {len(EXERCISE_NAMES)} pass, {len(EXERCISE_NAMES) - 1} to do" in out
    assert "next, mnist_loss_backward" in out


@pytest.mark.parametrize("slip", list(WRONG))
def test_each_slip_fails_with_its_hint(capsys, tmp_path, slip):
    text, function, words = WRONG[slip]
    code, out, _ = check(capsys, tmp_path, only(text, function))
    assert code == 1, out
    assert rows(out)[function][1] == "FAIL"
    block = out[out.index(f"\n{function}"):]
    assert "smallest failing input hypothesis found:" in block
    hint = next(line for line in block.splitlines() if line.startswith("  hint: "))
    assert words in hint, out


def test_the_hint_names_the_shapes(capsys, tmp_path):
    code, out, _ = check(capsys, tmp_path, only(WRONG["w transposed"][0], "linear_backward"), "--no-torch")
    hint = next(line for line in out.splitlines() if line.startswith("  hint: "))
    got, want = re.search(r"your dw is (\(\d+, \d+\)); it must be (\(\d+, \d+\)), like w", hint).groups()
    assert got != want and eval(got) == eval(want)[::-1]


def one_failure(capsys, tmp_path, text, function, *argv):
    code, out, _ = check(capsys, tmp_path, text, "--no-torch", *argv)
    assert code == 1, out
    assert rows(out)[function][1] == "FAIL"
    return out[out.index("\n\n", out.index("\nfunction")):].strip().splitlines()


def test_a_function_that_hangs_ends_in_one_line(capsys, tmp_path):
    text = only(SOLUTION, "relu_backward").replace("return np.where(x > 0, dout, 0.0)", "while True:\n        pass")
    lines = one_failure(capsys, tmp_path, text, "relu_backward", "--timeout", "1")
    assert lines[0] == "relu_backward did not return within 1 s (an endless loop?)"


def test_a_function_that_kills_its_process_ends_in_one_line(capsys, tmp_path):
    text = only(SOLUTION, "relu_backward").replace("return np.where(x > 0, dout, 0.0)", "import os; os._exit(3)")
    lines = one_failure(capsys, tmp_path, text, "relu_backward")
    assert lines[0] == "relu_backward ended the process running your file (exit status 3)"


def test_a_function_that_raises_names_the_line(capsys, tmp_path):
    text = only(WRONG["w transposed"][0].replace("dw = dout.T @ x", "dw = x @ dout"), "linear_backward")
    line_no = next(i for i, line in enumerate(text.splitlines(), 1) if "dw = x @ dout" in line)
    lines = one_failure(capsys, tmp_path, text, "linear_backward")
    assert lines[0].startswith("linear_backward raised ValueError: matmul")
    assert lines[0].endswith(f"(my_gradients.py, line {line_no})")
    assert any(line.startswith("  hint: the shapes do not fit") for line in lines)


@pytest.mark.parametrize("body, problem", [
    ("np.where(x > 0, dout, 0.0)", "relu_backward returned None; it must return a NumPy array: did you forget"),
    ("return [1.0]", "relu_backward returned a list of length 1 for dx; it must be a NumPy array of shape"),
    ("return (x > 0)", "relu_backward returned dx of dtype bool"),
    ("dout[x <= 0] = 0\n    return dout", "relu_backward wrote into its argument dout"),
    ("return dout * np.nan", "relu_backward returned nan in dx"),
])
def test_wrong_returns_are_named(capsys, tmp_path, body, problem):
    text = only(SOLUTION, "relu_backward").replace("return np.where(x > 0, dout, 0.0)", body)
    lines = one_failure(capsys, tmp_path, text, "relu_backward")
    assert lines[0].startswith(problem), lines


@pytest.mark.parametrize("text, message", [
    (SOLUTION.replace("def relu_backward(dout, x):", "def relu_backward(dout, x)"),
     r"my_gradients\.py, line \d+: SyntaxError: expected ':'; nothing was checked"),
    ("import numpyy\n" + SOLUTION,
     r"my_gradients\.py cannot be imported: ModuleNotFoundError: No module named 'numpyy' \(my_gradients\.py, "
     r"line 1\)"),
    ("import sys\nsys.exit(3)\n", r"my_gradients\.py cannot be imported: SystemExit: 3"),
])
def test_a_file_that_does_not_load_is_one_line_and_exit_2(capsys, tmp_path, text, message):
    code, out, err = check(capsys, tmp_path, text)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert re.match(r"numpy-mnist exercise: error: " + message, err), err


def test_a_missing_file_is_one_line(capsys, tmp_path):
    assert main(["exercise", "check", str(tmp_path / "nowhere.py")]) == 2
    assert "nowhere.py is not there" in capsys.readouterr().err


def test_an_import_that_never_ends_is_stopped(tmp_path):
    path = tmp_path / "my_gradients.py"
    path.write_text("while True:\n    pass\n")
    box = Sandbox(path, timeout=1, import_timeout=2)
    with pytest.raises(LearnerFileError, match=r"importing it did not finish within 2 s"):
        box.start()
    box.close()


def test_torch_is_a_yes_or_no_flag_on_by_default(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["exercise", "check", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--torch, --no-torch" in help_text and "(default: True)" in help_text.split("--torch, --no-torch")[1]
    text = only(SOLUTION, "relu_backward")
    _, out, _ = check(capsys, tmp_path, text, "--no-torch", "--examples", "2")
    assert "(PyTorch: not asked for)" in out
    _, out, _ = check(capsys, tmp_path, text, "--torch", "--examples", "2")
    assert "not asked for" not in out
