"""Atomic writes: the umask decides the mode, killed writes' temporaries go on the next write, a
path that cannot be written is refused in one line, and a write the disk refuses keeps its bytes."""

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import numpy_mnist.files as files
from numpy_mnist.errors import InputError, OutputError
from numpy_mnist.files import (
    atomic_write,
    check_file_target,
    check_folder_target,
    remove_stale_temporaries,
    write_json,
)


@pytest.fixture
def umask():
    """Set a umask for the test and restore the old one afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_the_umask_decides_the_mode(tmp_path, umask, mask, expected):
    umask(mask)
    write_json(tmp_path / "new.json", {"a": 1})
    with atomic_write(tmp_path / "new.bin") as f:
        f.write(b"x")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == expected
    assert (tmp_path / "new.bin").stat().st_mode & 0o777 == expected


def _dead_pid() -> int:
    """The process id of a process that has finished (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writes_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "ck.npz"
    # Killed inside the final write, after the temporary exists and before its rename.
    script = (f"import os, time\nfrom numpy_mnist.files import atomic_write\n"
              f"def stall(fd):\n    print('writing', flush=True); time.sleep(60)\n"
              f"os.fsync = stall\n"
              f"with atomic_write({str(target)!r}) as f:\n"
              f"    f.write(b'half')\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.stdout.readline() == "writing\n"
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".ck.npz.") and left[0].endswith(".tmp")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert [p.name for p in tmp_path.iterdir()] == left  # a SIGKILL cannot clean up

    write_json(target, [1])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]


def test_only_abandoned_temporaries_of_the_same_target_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = {
        f".ck.npz.{dead}.0123abcd.tmp": True,          # its writer is gone
        f".ck.npz.{alive}.0123abcd.tmp": False,        # its writer still runs: a concurrent write
        f".ck.npz.{10**30}.0123abcd.tmp": True,        # no process id this system can have
        ".ck.npz.ab_c9XyZ.tmp": False,                 # no process id: not a name this writer gives
        f".other.npz.{dead}.0123abcd.tmp": False,      # another target's
        f".ck.npz.{dead}.0123abcd.tmp.keep": False,    # not a temporary's name
        "ck.npz.tmp": False,
    }
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = remove_stale_temporaries(tmp_path / "ck.npz")
    assert sorted(p.name for p in removed) == sorted(n for n, stale in names.items() if stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, stale in names.items() if not stale)


def test_a_failed_write_leaves_no_temporary_and_the_old_file(tmp_path):
    target = tmp_path / "h.json"
    write_json(target, {"old": True})
    with pytest.raises(RuntimeError, match="a check failed"), atomic_write(target, "w") as f:
        f.write("partial")
        raise RuntimeError("a check failed")
    assert target.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]


def test_a_file_where_a_folder_is_expected_is_one_clear_error(tmp_path):
    (tmp_path / "plain").write_text("x")
    with pytest.raises(OutputError, match=r"could not write .*plain/x\.json: .*plain is a file, not a folder"):
        write_json(tmp_path / "plain" / "x.json", {})
    with pytest.raises(InputError, match=r"^--out .*plain is a file, not a folder: choose another --out$"):
        check_folder_target(tmp_path / "plain", "--out")
    with pytest.raises(InputError, match=r"^--out .*plain/deeper lies under .*plain, which is a file"):
        check_folder_target(tmp_path / "plain" / "deeper", "--out")
    with pytest.raises(InputError, match=r"^--save .*plain/x\.ckpt lies under .*plain, which is a file"):
        check_file_target(tmp_path / "plain" / "x.ckpt", "--save")
    with pytest.raises(InputError, match=r"^--save .* is a folder, not a file: name a file"):
        check_file_target(tmp_path, "--save")
    assert check_folder_target(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert check_file_target(tmp_path / "new" / "x.ckpt", "--save") == tmp_path / "new" / "x.ckpt"
    assert not (tmp_path / "new").exists()


def test_a_write_the_disk_refuses_keeps_its_bytes_elsewhere_and_says_where(tmp_path, monkeypatch):
    def refuse(path, data):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files, "_replace", refuse)
    with pytest.raises(OutputError) as caught:
        write_json(tmp_path / "history.json", {"epochs": [1, 2]})
    message = str(caught.value)
    assert message.startswith(f"could not write {tmp_path / 'history.json'}: Read-only file system; ")
    kept = message.split("kept in ")[1].split(":")[0]
    try:
        assert Path(kept).read_text() == '{\n  "epochs": [\n    1,\n    2\n  ]\n}\n'
    finally:
        os.unlink(kept)
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_written_before_the_with_block_ends(tmp_path):
    target = tmp_path / "x.bin"
    with atomic_write(target) as f:
        f.write(b"abc")
        assert list(tmp_path.iterdir()) == []
    assert target.read_bytes() == b"abc"


def test_a_folder_that_takes_no_file_is_refused_before_any_work(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.tempfile, "TemporaryFile", refuse)
    with pytest.raises(InputError, match=r"^--out .*ro/sub cannot be written \(its folder .* exists\): "
                                         r"Permission denied; choose another --out$"):
        check_folder_target(tmp_path / "ro" / "sub", "--out")
    with pytest.raises(InputError, match=r"^--save .*ck: the folder .* cannot be written: Permission denied"):
        check_file_target(tmp_path / "ck", "--save")
