"""Running the learner's file where it cannot take the checker down: in a child process.

The learner's file is untrusted input.  It may not parse, fail to import, raise, return anything,
write into its arguments, loop forever or kill its own process.  :class:`Sandbox` imports it in a
child process (``multiprocessing``'s *spawn*: a fresh interpreter, nothing shared) and calls its
functions there, one request at a time over a pipe, waiting at most ``timeout`` seconds for each
answer.  Whatever goes wrong comes back as one line:

* the file cannot be loaded (syntax error, failing import, an import that never ends):
  :class:`LearnerFileError`, a :class:`~numpy_mnist.errors.NumpyMnistError` (exit status 2);
* a call raises, writes into an argument, forks, takes longer than the time limit, or its process
  dies: :class:`Failure`, whose ``problem`` names it and, for an exception, the line of the
  learner's file it came from; what it returns that is not arrays comes back described in words.

``check --train`` calls the learner's functions there too, batch by batch.  A call that timed out
or crashed leaves no process: the next call starts a fresh one (and imports the file again).  In
the child every NumPy floating-point warning is silenced: an overflow shows up in the result (NaN,
inf, or a lost digit), which the checker reports.

What the child may do (:func:`_confine`, set before the learner's file is imported):

* it works in a fresh, empty folder of its own, removed with the child's last process: files the
  learner's code writes by relative path go there;
* its address space is limited to :data:`MEMORY_LIMIT` bytes beyond what it holds after start-up
  (an allocation past that is a ``MemoryError``), its files to :data:`FILE_LIMIT` bytes each, its
  CPU time to :data:`CPU_LIMIT` seconds, and its user's processes to a few more than it found
  (where the system enforces that: not for root);
* a process it forks ends at once, before the learner's code runs in it (``os.register_at_fork``),
  so nothing but the child itself can write to the results channel, and the call says it forked;
* what it prints is captured, the first :data:`OUTPUT_LIMIT` characters per call kept (the rest
  counted), and comes back with the call's answer instead of reaching the terminal.

This guards against honest mistakes and careless code, **not against a determined attacker**: the
child runs as the same user, can read and write any file that user can by absolute path, can use
the network, and can start programs (``subprocess``) whose own forks no hook sees.  Run code you do
not trust in a container or a virtual machine.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import runpy
import signal
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np

from numpy_mnist.errors import NumpyMnistError
from numpy_mnist.exercise.functions import EXERCISE_NAMES, get_exercise

try:
    import resource
except ImportError:  # not a POSIX system: no limits to set
    resource = None

__all__ = ["Sandbox", "Failure", "LearnerFileError", "DEFAULT_TIMEOUT", "MEMORY_LIMIT",
           "FILE_LIMIT", "CPU_LIMIT", "OUTPUT_LIMIT"]

#: Seconds one call of a learner's function may take (its inputs are a few dozen numbers).
DEFAULT_TIMEOUT = 5.0
#: Bytes of address space the child may take beyond what it holds once started (2 GiB).
MEMORY_LIMIT = 2 << 30
#: The largest file the child may write, in bytes.
FILE_LIMIT = 16 << 20
#: CPU seconds the child may use in all (a check takes seconds; ``--train``'s 40 epochs a minute).
CPU_LIMIT = 600
#: Characters of a call's printed output kept (the rest is counted, not kept).
OUTPUT_LIMIT = 4096
#: Processes the child's user may start beyond those running when it starts.
EXTRA_PROCESSES = 4
#: The longest one-line message taken from the learner's exception.
_MAX_MESSAGE = 240


class LearnerFileError(NumpyMnistError):
    """The learner's file cannot be loaded: it does not parse, its import fails, or never ends."""


class Failure(Exception):
    """One input's failure, in one line (``problem``): ``what`` failed (``"values"``, ``"shape"``,
    ``"type"``, ``"NaN"``, or ``"call"``: it gave no usable answer); ``hints``, every ``(key, sentence)``
    that explains it, most telling first; ``errors``, the worst relative errors so far (against the
    reference and PyTorch, against finite differences); for a call, ``how`` it failed: ``"raised"``
    (``exception``: the type's name), ``"modified"`` (it wrote into an argument), ``"forked"`` (it
    started a process of its own), ``"timeout"`` or ``"crashed"``.  A timeout or a crash is *sticky*:
    calling again would only wait or crash again.  The checker adds the ``example`` it failed on, the
    ``output`` the call printed and the ``hint`` it chose."""

    def __init__(self, problem: str, what: str, hints=(), errors=(math.inf, 0.0), *, how: str | None = None,
                 exception: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.what, self.hints, self.errors = problem, what, tuple(hints), errors
        self.how, self.exception, self.output, self.example, self.hint = how, exception, "", None, None

    @property
    def sticky(self) -> bool:
        return self.how in ("timeout", "crashed")


class Sandbox:
    """The learner's file, imported in a child process; :meth:`call` its functions there.

    Use as a context manager (or call :meth:`close`) so the child ends with the check.
    ``defined`` maps each exercise name to ``"function"``, ``"missing"`` or ``"not callable"``;
    ``output`` is what the last call printed (the first :data:`OUTPUT_LIMIT` characters, and how
    many more).
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
                 import_timeout: float | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            what = "a folder, not a file" if self.path.is_dir() else "not there"
            raise LearnerFileError(f"{self.path} is {what}: give the path of your my_gradients.py "
                                   "(`numpy-mnist exercise new` writes one)")
        self.timeout = float(timeout)
        self.import_timeout = float(import_timeout) if import_timeout is not None else max(30.0, 4 * self.timeout)
        self.defined, self.output = {}, ""
        self._process = self._conn = self._folder = None

    def start(self) -> None:
        """Start the child and import the file there (no-op when running); :class:`LearnerFileError`."""
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._folder = tempfile.TemporaryDirectory(prefix="numpy-mnist-sandbox-", ignore_cleanup_errors=True)
        self._process = context.Process(target=_child_main, args=(child, str(self.path.resolve()), self._folder.name),
                                        daemon=True, name="numpy-mnist exercise sandbox")
        self._process.start()
        child.close()
        try:
            reply = self._ask(None, self.import_timeout, f"importing it did not finish within {self.import_timeout:g} "
                              "s (code at the top level that never ends?)",
                              "the process running your file ended ({}) while importing it")
        except Failure as failed:
            raise LearnerFileError(f"{self.path.name}: {failed.problem}") from None
        if reply[0] == "import-failed":
            self.close()
            raise LearnerFileError(f"{reply[1]}; nothing was checked: fix it and check again")
        self.defined = reply[1]

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, name: str, args: tuple, kwargs: dict | None = None):
        """``name(*args, **kwargs)`` in the child; its return value (arrays, or what it is in words: :func:`portable`).

        Raises :class:`Failure` when it raised, wrote into an argument, forked, timed out or crashed.
        """
        self.start()
        self.output = ""
        kind, value, message, self.output = self._ask(
            (name, args, kwargs or {}), self.timeout,
            f"{name} did not return within {self.timeout:g} s (an endless loop?)",
            f"{name} ended the process running your file ({{}})")
        if kind != "ok":
            raise Failure(message, "call", how=kind, exception=value)
        return value

    def _ask(self, message, timeout: float, timed_out: str, crashed: str):
        """Send ``message`` (None: none) and wait for the child's answer; :class:`Failure` when
        none comes within ``timeout`` s (``timed_out``), or the child died or garbled its answer
        (``crashed``, ``{}`` filled with how it ended).  Either way that child is ended."""
        try:
            if message:
                self._conn.send(message)
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            raise Failure(crashed.format(self.close(wait=5)), "call", how="crashed") from None
        except Exception:  # the channel carried something that is not an answer: end that child
            raise Failure(crashed.format(f"its answers were garbled, {self.close()}"), "call", how="crashed") from None
        self.close()
        raise Failure(timed_out, "call", how="timeout")

    def close(self, wait: float = 0.0) -> str:
        """End the child after ``wait`` seconds, by force if need be, and remove its folder; its exit in words."""
        process, self._process = self._process, None
        if process is None:
            return "it was not running"
        process.join(timeout=wait)
        process.kill()
        process.join()
        self._conn.close()
        self._folder.cleanup()
        return _exit_text(process.exitcode)


def _exit_text(code: int | None) -> str:
    if code is None or code >= 0:
        return f"exit status {code}"
    name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
    return {"SIGXCPU": f"it used its {CPU_LIMIT} s of CPU time",
            "SIGXFSZ": "it wrote too large a file"}.get(name, f"killed by signal {name}")


# -- the child ----------------------------------------------------------------------------------------

class _Capture(io.TextIOBase):
    """``sys.stdout`` and ``sys.stderr`` in the child: keeps the first :data:`OUTPUT_LIMIT`
    characters written since :meth:`take`, and counts the rest."""

    kept, dropped = "", 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        keep = text[:max(OUTPUT_LIMIT - len(self.kept), 0)]
        self.kept, self.dropped = self.kept + keep, self.dropped + len(text) - len(keep)
        return len(text)

    def take(self) -> str:
        """What was written since the last take (and how much more was not kept); then forget it."""
        text = self.kept + (f"\n[... {self.dropped:,} more characters not shown]" if self.dropped else "")
        self.kept, self.dropped = "", 0
        return text


#: One entry per fork the child's code made.
_FORKS: list = []


def _confine(folder: str) -> _Capture:
    """Put the child in its own folder, under its limits, its forks ended and its output captured."""
    os.chdir(folder)
    os.environ["HOME"] = os.environ["TMPDIR"] = folder
    if resource is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past the limit: an OSError, not death
        used = _address_space()
        limits = {"RLIMIT_AS": used and used + MEMORY_LIMIT, "RLIMIT_FSIZE": FILE_LIMIT, "RLIMIT_CPU": CPU_LIMIT,
                  "RLIMIT_NPROC": _processes() + EXTRA_PROCESSES}
        for name, value in limits.items():
            if value and hasattr(resource, name):
                with contextlib.suppress(ValueError, OSError):  # the system refuses this limit
                    resource.setrlimit(getattr(resource, name), (value, value))
    os.register_at_fork(before=lambda: _FORKS.append(1), after_in_child=lambda: os._exit(70))
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):  # output written below Python (C code, os.write) goes nowhere
        os.dup2(devnull, fd)
    sys.stdout = sys.stderr = _Capture()
    return sys.stdout


def _address_space() -> int | None:
    """The child's address space in bytes now (Linux), else None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    return None


def _processes() -> int:
    """How many processes this user runs now (Linux; a generous count elsewhere)."""
    count = 0
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            count += process.stat().st_uid == os.getuid()
    return count or 256


def _child_main(conn, path: str, folder: str) -> None:
    """The child process: confine itself, import the learner's file, then answer requests until the
    parent ends it.  Every answer to a call ends with what the learner's code printed meanwhile."""
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    capture = _confine(folder)
    try:
        sys.path.insert(0, str(Path(path).parent))
        if Path(path).suffix != ".py":
            raise ImportError(f"cannot import {path} as Python")
        namespace = runpy.run_path(path, run_name="learner_gradients")
    except BaseException as exc:  # the learner's code may raise anything, SystemExit included
        conn.send(("import-failed", _import_error(exc, path), capture.take()))
        return
    conn.send(("ready", {name: "missing" if name not in namespace else "function" if callable(namespace[name]) else
                         "not callable" for name in EXERCISE_NAMES}, capture.take()))
    for message in iter(conn.recv, None):  # every request, until the parent ends this process (it sends no None)
        reply = _call(namespace, path, *message)
        try:
            conn.send((*reply, capture.take()))
        except Exception as exc:  # pickling what the learner returned failed
            conn.send(("raised", type(exc).__name__, f"{message[0]} returned something that cannot be passed back "
                                                     f"({_one_line(exc)})", capture.take()))


def _call(namespace: dict, path: str, name: str, args: tuple, kwargs: dict) -> tuple:
    """``(kind, value or exception type, message)`` of one call, kind as :attr:`Failure.how` or "ok"."""
    before, forks = [np.array(a, copy=True) for a in args], len(_FORKS)
    try:
        reply = ("ok", portable(namespace[name](*args, **kwargs)), "")
    except (Exception, SystemExit) as exc:  # the learner's code may raise anything
        reply = ("raised", type(exc).__name__, f"{name} raised {describe_exception(exc, path)}")
    changed = [i for i, (now, then) in enumerate(zip(args, before))
               if not (np.shape(now) == then.shape and np.array_equal(now, then, equal_nan=then.dtype.kind == "f"))]
    if len(_FORKS) != forks:
        return ("forked", None, f"{name} started a process of its own (os.fork): the sandbox ended it at once; a "
                                "backward function needs none")
    if changed:
        arg = dict(enumerate(get_exercise(name).inputs)).get(changed[0], f"argument {changed[0] + 1}")
        return ("modified", None, f"{name} wrote into its argument {arg}: a backward function must leave its "
                                  "inputs alone and return new arrays")
    return reply


def portable(value):
    """``value`` as it may cross the pipe: arrays, tuples and lists of them, and None as they are;
    anything else described in words (``"a float (1.5)"``), so that no type of the learner's own
    reaches the checker."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, (tuple, list)) and len(value) <= 16:
        return (tuple if isinstance(value, tuple) else list)(portable(v) for v in value)
    text = f"{len(value)} items" if isinstance(value, (tuple, list)) else repr(value)
    return f"a {type(value).__name__} ({text[:60]})"


def describe_exception(exc: BaseException, path: str) -> str:
    """``"ValueError: message (my_gradients.py, line 12)"``: the deepest line of the learner's file."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == path]
    message = _one_line(exc)
    return (type(exc).__name__ + (f": {message}" if message else "")
            + (f" ({Path(path).name}, line {lines[-1]})" if lines else ""))


def _import_error(exc: BaseException, path: str) -> str:
    if isinstance(exc, SyntaxError):
        where = f"{Path(path).name}, line {exc.lineno}" if exc.lineno else Path(path).name
        return f"{where}: {type(exc).__name__}: {exc.msg}"
    return f"{Path(path).name} cannot be imported: {describe_exception(exc, path)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."
