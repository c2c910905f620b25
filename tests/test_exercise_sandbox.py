"""The sandbox's walls, each tried by a hostile learner's file: memory, forks, files, printing,
exits, ``MemoryError`` and endless loops each end in one answer naming what the function did, and
the other functions keep working."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from numpy_mnist.exercise.sandbox import OUTPUT_LIMIT, Failure, Sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox's limits are tested on Linux")

#: A correct function beside each hostile one: it must keep answering.
GOOD = '''
import numpy as np

def relu_backward(dout, x):
    return dout * (x > 0)
'''

HOSTILE = {
    "terabytes": "    return np.ones(2**40, dtype=np.uint8)",
    "fork": "    import os\n    for _ in range(3):\n        os.fork()\n    return dout * (x > 0)",
    "write": "    open('pwned.txt', 'w').write('x')\n    return dout * (x > 0)",
    "print": "    print('y' * 10_000_000)\n    return dout * (x > 0)",
    "exit": "    import os\n    os._exit(3)",
    "memory_error": "    raise MemoryError",
    "loop": "    while True:\n        pass",
}


def _file(tmp_path, kind: str):
    path = tmp_path / "learner" / "my_gradients.py"
    path.parent.mkdir()
    path.write_text(GOOD + "\n\ndef linear_backward(dout, x, w, b=None, need_dx=True):\n" + HOSTILE[kind] + "\n")
    return path


def _call_hostile(box):
    x = np.ones((2, 3))
    return box.call("linear_backward", (x, x, np.ones((3, 3))))


@pytest.mark.parametrize("kind, expected", [
    ("terabytes", ("raised", "MemoryError")),
    ("memory_error", ("raised", "MemoryError")),
    ("fork", ("forked", "started a process of its own")),
    ("exit", ("crashed", "ended the process running your file (exit status 3)")),
    ("loop", ("timeout", "did not return within 2 s")),
])
def test_a_hostile_call_is_one_answer_and_the_other_functions_still_work(tmp_path, kind, expected):
    with Sandbox(_file(tmp_path, kind), timeout=2) as box:
        with pytest.raises(Failure) as failed:
            _call_hostile(box)
        assert failed.value.what == "call" and failed.value.how == expected[0]
        assert expected[1] in failed.value.problem
        x = np.array([[-1.0, 2.0]])
        assert np.array_equal(box.call("relu_backward", (np.ones((1, 2)), x)), [[0.0, 1.0]])


def test_writes_land_in_the_sandboxs_own_folder_which_is_removed(tmp_path):
    path = _file(tmp_path, "write")
    before = set(os.listdir(tmp_path / "learner"))
    cwd = set(os.listdir())
    with Sandbox(path, timeout=5) as box:
        _call_hostile(box)
        folder = box._folder.name
        assert os.listdir(folder) == ["pwned.txt"]
    assert not os.path.exists(folder)
    assert set(os.listdir(tmp_path / "learner")) == before and set(os.listdir()) == cwd


def test_printing_is_captured_and_capped(tmp_path, capfd):
    with Sandbox(_file(tmp_path, "print"), timeout=10) as box:
        _call_hostile(box)
        output = box.output
    out, err = capfd.readouterr()
    assert out == err == ""
    assert output.startswith("y" * OUTPUT_LIMIT) and output.endswith("[... 9,995,905 more characters not shown]")


def test_a_garbled_channel_ends_that_child_only(tmp_path):
    """Something not an answer on the results channel: that child is ended, the next call starts anew."""
    with Sandbox(_file(tmp_path, "exit"), timeout=2) as box:
        box.start()
        box._process and os.write(box._conn.fileno(), b"\x00\x00\x00\x05junk!")  # what a stray writer could do
        with pytest.raises(Failure, match="garbled|ended"):
            box.call("relu_backward", (np.ones((1, 2)), np.ones((1, 2))))
        assert np.array_equal(box.call("relu_backward", (np.ones((1, 2)), np.ones((1, 2)))), [[1.0, 1.0]])


# -- the same walls through `numpy-mnist exercise check`: one row says what the hostile function did ----

#: What each hostile linear_backward does first (before the right body), and words of its row and detail.
CHECKED = {
    "terabytes": ("np.ones(2**40, dtype=np.uint8)", "raised", ["MemoryError", "ran out of memory", "2 GiB"]),
    "memory_error": ("raise MemoryError", "raised", ["MemoryError", "ran out of memory"]),
    "fork": ("import os\n    os.fork()", "forked", ["started a process of its own"]),
    "print": ("print('y' * 10_000_000)", "pass", ["it printed:", "yyyy", "more characters not shown]"]),
    "exit": ("import os\n    os._exit(3)", "crashed", ["ended the process running your file (exit status 3)"]),
    "loop": ("while True:\n        pass", "hung", ["did not return within 2 s"]),
    "write": ("open('pwned.txt', 'w').write('x')", "pass", []),
}


def _details(out: str) -> str:
    """The output between the table and the summary."""
    return out.split("\n\n")[2] if out.count("\n\n") >= 3 else ""


@pytest.mark.parametrize("kind", list(CHECKED))
def test_the_checker_gives_a_hostile_function_one_row_and_the_others_pass(tmp_path, monkeypatch, capsys, kind):
    pytest.importorskip("hypothesis")
    from exercise_files import SOLUTION
    from test_exercise_check import rows

    from numpy_mnist.cli import main
    from numpy_mnist.exercise import EXERCISE_NAMES

    statement, status, words = CHECKED[kind]
    head = "def linear_backward(dout, x, w, *, need_dx=True):\n"
    learner = tmp_path / "learner"
    learner.mkdir()
    path = learner / "my_gradients.py"
    path.write_text(SOLUTION.replace(head, head + f"    {statement}\n"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["exercise", "check", str(path), "--examples", "3", "--timeout", "2", "--no-torch"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(out) < 20_000, out[:2000]
    table = rows(out)
    assert list(table) == list(EXERCISE_NAMES)
    for name, cells in table.items():
        assert cells[1] == "pass" or name == "linear_backward", (name, cells)
    row = table["linear_backward"]
    assert (row[1] if status == "pass" else row[2]) == status, row
    assert code == (0 if status == "pass" else 1)
    details = out.split(table["softmax_cross_entropy_backward"][0], 1)[1]
    for word in words:
        assert word in details, (word, out[-3000:])
    assert "shapes do not fit" not in out
    if not words:
        assert "it printed" not in out
    assert os.listdir(work) == [] and sorted(os.listdir(learner)) == ["my_gradients.py"]


def test_a_check_in_its_own_process_leaves_nothing_in_the_working_folder(tmp_path):
    """hypothesis keeps no database (``database=None``) and its source cache goes to a temporary folder;
    the learner's writes land in the sandbox's folder.  In a fresh process, where hypothesis has not yet
    chosen its folder."""
    pytest.importorskip("hypothesis")
    import subprocess
    from pathlib import Path

    from exercise_files import SOLUTION

    head = "def linear_backward(dout, x, w, *, need_dx=True):\n"
    path = tmp_path / "my_gradients.py"
    path.write_text(SOLUTION.replace(head, head + "    open('pwned.txt', 'w').write('x')\n"))
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-m", "numpy_mnist", "exercise", "check", path.name, "--examples", "2",
                           "--timeout", "2", "--no-torch"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.listdir(tmp_path) == ["my_gradients.py"]
