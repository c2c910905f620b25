"""The sandbox's walls, each tried by a hostile learner's file: memory, forks, files, printing,
exits, ``MemoryError`` and endless loops each end in one answer naming what the function did, and
the other functions keep working."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from numpy_mnist.exercise.sandbox import OUTPUT_LIMIT, CallFailed, Sandbox

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
        with pytest.raises(CallFailed) as failed:
            _call_hostile(box)
        assert failed.value.kind == expected[0]
        assert expected[1] in failed.value.message
        x = np.array([[-1.0, 2.0]])
        assert np.array_equal(box.call("relu_backward", (np.ones((1, 2)), x)), [[0.0, 1.0]])


def test_writes_land_in_the_sandboxs_own_folder_which_is_removed(tmp_path):
    path = _file(tmp_path, "write")
    before = set(os.listdir(tmp_path / "learner"))
    cwd = set(os.listdir())
    with Sandbox(path, timeout=5) as box:
        _call_hostile(box)
        folder = box._folder
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
        with pytest.raises(CallFailed, match="garbled|ended"):
            box.call("relu_backward", (np.ones((1, 2)), np.ones((1, 2))))
        assert np.array_equal(box.call("relu_backward", (np.ones((1, 2)), np.ones((1, 2)))), [[1.0, 1.0]])
