"""Every command that writes refuses a read-only output location in one line, before any work.

The folder is made read-only for real, without root's privileges over it: as an ordinary user by
its permission bits, and as root (who passes permission bits) by a read-only bind mount in a
mount namespace of the command's own (``unshare``), where this system allows one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exercise_files import SOLUTION


def _read_only_runner(folder: Path):
    """A function running ``argv`` (a Python command line) with ``folder`` read-only, or a skip."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda argv, **kw: subprocess.run([sys.executable, *argv], **kw)
    unshare = shutil.which("unshare")
    probe = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && ! touch "{folder}/x"'
    if unshare is None or subprocess.run([unshare, "-m", "sh", "-c", probe], capture_output=True).returncode:
        pytest.skip("running as root, and no mount namespace can be made here to make a folder read-only")
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro "{folder}" && exec "$@"'
    return lambda argv, **kw: subprocess.run([unshare, "-m", "sh", "-c", script, "sh", sys.executable, *argv],
                                             **kw)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    run = _read_only_runner(folder)
    yield folder, run
    folder.chmod(0o755)


def _commands(ro: Path, learner_file: Path) -> dict[str, list[str]]:
    return {
        "train --out": ["train", "--out", str(ro)],
        "train --out (a folder below)": ["train", "--out", str(ro / "sub")],
        "train --save": ["train", "--out", str(ro.parent / "out"), "--save", str(ro / "model.ckpt")],
        "baseline --out": ["baseline", "--out", str(ro)],
        "exercise new": ["exercise", "new", str(ro)],
        "exercise check --train --out": ["exercise", "check", str(learner_file), "--train", "--out", str(ro)],
    }


def test_each_writing_command_refuses_a_read_only_folder_in_one_line_before_any_work(read_only, tmp_path):
    ro, run = read_only
    learner_file = tmp_path / "my_gradients.py"
    learner_file.write_text(SOLUTION)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for name, argv in _commands(ro, learner_file).items():
        started = time.perf_counter()
        done = run(["-m", "numpy_mnist", *argv], capture_output=True, text=True, env=env, cwd=tmp_path)
        seconds = time.perf_counter() - started
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert len(lines) == 1 and "cannot be written" in lines[0] and str(ro) in lines[0], (name, done.stderr)
        assert "Traceback" not in done.stderr and done.stdout == "", (name, done.stdout)
        assert seconds < 30, (name, seconds)  # refused up front: nothing was trained or checked
    assert list(ro.iterdir()) == []
