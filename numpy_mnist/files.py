"""Writing files so that a crash or Ctrl-C never leaves one half-written.

Every file is first written to a temporary file beside its target, named
``.<target name>.<writer's process id>.<8 hex digits>.tmp``, then renamed over the target.  The
temporary is created with mode ``0o666`` and the user's umask applied by the operating system, so
the finished file has the permissions any new file of the user's gets (0644 under umask 022).

A write that is killed (SIGKILL, a power cut) cannot remove its temporary.  The next write to the
same target removes the leftovers of that target only, and only those that no running process can
still be writing: those whose process id is not a running process on this machine.  So two
processes writing the same file at once never remove each other's temporary; the later rename
wins, whole.  (On a folder shared between machines a writer on another machine has a process id
this one cannot see; its temporary is then taken for stale only if that process id is free here
too -- do not write one file from two machines at once.)

What is written is gathered in memory first and reaches the disk only when the ``with`` block
has finished.  So a write that fails at the disk (a folder made read-only during a run, a full
disk) has lost nothing: the bytes go to a file in the system's temporary folder instead, and the
:class:`~numpy_mnist.errors.OutputError` names it.  The commands also check every output location
before any work starts (:func:`check_folder_target`, :func:`check_file_target`), so a folder that
cannot be written is refused in one line before a run, not after it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import tempfile
from pathlib import Path

from numpy_mnist.errors import InputError, OutputError

__all__ = ["atomic_write", "check_file_target", "check_folder_target", "write_json"]


def _file_above(path: Path) -> Path | None:
    """The nearest existing path above ``path`` when it is a file (so no folder can be made there)."""
    nearest = next((p for p in path.parents if p.exists()), None)
    return None if nearest is None or nearest.is_dir() else nearest


def _refuse_file_above(path: Path, flag: str) -> None:
    blocker = _file_above(path)
    if blocker is not None:
        raise InputError(f"{flag} {path} lies under {blocker}, which is a file, not a folder: choose another {flag}")


def _refuse_unwritable(path: Path, flag: str) -> None:
    """Refuse ``path`` when the nearest existing folder at or above it takes no new file.

    Asked of the file system itself, by creating and removing a nameless file there: permission
    bits alone do not tell (root passes them, a read-only mount refuses everyone)."""
    folder = next(p for p in (path, *path.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = "" if folder == path else f" (its folder {folder} exists)"
        raise InputError(f"{flag} {path} cannot be written{where}: {reason}; choose another {flag}") from None


def check_folder_target(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, in one line naming ``flag``, a folder path that cannot be a folder (it, or a folder
    above it, is a file) or cannot be written.  Creates nothing that stays."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path} is a file, not a folder: choose another {flag}")
    _refuse_file_above(path, flag)
    _refuse_unwritable(path, flag)
    return path


def check_file_target(path: str | os.PathLike, flag: str) -> Path:
    """Refuse, in one line naming ``flag``, a file path that cannot be written: it is a folder, a
    folder above it is a file, or its folder takes no new file.  Creates nothing that stays."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder, not a file: name a file, e.g. {path / 'model.ckpt'}")
    _refuse_file_above(path, flag)
    _refuse_unwritable(path.parent, flag if path.parent == path else f"{flag} {path}: the folder")
    return path


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process: running
        return True
    except (OSError, OverflowError):  # no such process, or a pid out of range for this system
        return False
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries that interrupted writes to ``path`` left behind; return them.

    Only names of ``path``'s own pattern, and only those no running process can still be writing
    (see the module's docstring)."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<pid>\d+)\.[0-9a-f]{{8}}\.tmp")
    removed, entries = [], []
    with contextlib.suppress(OSError):  # (a folder that cannot be listed has nothing to remove)
        entries = list(os.scandir(path.parent))
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        with contextlib.suppress(OSError):  # (one entry that cannot be read or removed stops no other)
            if match and entry.is_file(follow_symlinks=False) and not _running(int(match["pid"])):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Gather a file in memory; when the ``with`` block ends, write it to ``path`` atomically.

    Yields an in-memory file (``io.BytesIO`` for ``"wb"``, ``io.StringIO`` for ``"w"``).  Readers
    of ``path`` see either the old file or the complete new one, never a part (:func:`_replace`).
    An exception raised inside the ``with`` block writes nothing.  A write the disk refuses
    (:class:`OSError`: no permission, a read-only or full file system) keeps the bytes in a file of
    the system's temporary folder and raises :class:`~numpy_mnist.errors.OutputError` naming it.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write writes whole files: mode 'wb' or 'w', not {mode!r}")
    path = Path(path)
    buffer = io.BytesIO() if mode == "wb" else io.StringIO()
    yield buffer
    data = buffer.getvalue() if mode == "wb" else buffer.getvalue().encode("utf-8")
    try:
        _replace(path, data)
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}; {_keep_elsewhere(path, data)}") from None


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``.

    After the rename the folder is fsynced too, so the rename survives a power cut.  The new file
    gets the permissions the umask gives (0644 under 022), and the temporaries of earlier, killed
    writes to ``path`` are removed first.  On any failure the temporary is removed.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(errno.ENOTDIR, f"{_file_above(path) or path.parent} is a file, not a folder") from None
    remove_stale_temporaries(path)
    fd = None
    while fd is None:  # (a name another write has taken: draw again)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        with contextlib.suppress(FileExistsError):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename made durable (POSIX); a no-op where folders cannot be opened
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _keep_elsewhere(path: Path, data: bytes) -> str:
    """Save ``data``, refused at ``path``, in the system's temporary folder; say where (or that it is lost)."""
    try:
        with tempfile.NamedTemporaryFile(prefix=f"{path.name}.", suffix=".kept", delete=False) as kept:
            kept.write(data)
    except OSError as exc:
        return f"nothing was written (the temporary folder refused a copy too: {exc.strerror or exc})"
    return f"its contents are kept in {kept.name}: copy that file where you want it"


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically; return the path, as :func:`~numpy_mnist.plots.save_figure` does."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    return Path(path)
