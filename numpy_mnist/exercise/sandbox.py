"""Running the learner's file where it cannot take the checker down: in a child process.

The learner's file is untrusted input.  It may not parse, fail to import, raise, return anything,
write into its arguments, loop forever or kill its own process.  :class:`Sandbox` imports it in a
child process (``multiprocessing``'s *spawn*: a fresh interpreter, nothing shared) and calls its
functions there, one request at a time over a pipe, waiting at most ``timeout`` seconds for each
answer.  Whatever goes wrong comes back as one line:

* the file cannot be loaded (syntax error, failing import, an import that never ends):
  :class:`LearnerFileError`, a :class:`~numpy_mnist.errors.NumpyMnistError` (exit status 2);
* a call raises, writes into an argument, returns something that is not arrays, takes longer than
  the time limit, or its process dies: :class:`CallFailed`, whose ``message`` names the problem and,
  for an exception, the line of the learner's file it came from.

``check --train`` trains there too (:meth:`Sandbox.train`): simple_net with the learner's functions,
one message per epoch.  A call that timed out or crashed leaves no process: the next call starts a
fresh one (and imports the file again).  In the child every NumPy floating-point warning is
silenced: an overflow shows up in the result (NaN, inf, or a lost digit), which the checker reports.

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

import importlib.util
import io
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numpy_mnist.errors import DivergenceError, NumpyMnistError
from numpy_mnist.exercise.functions import EXERCISE_NAMES
from numpy_mnist.exercise.training import TrainConfig, reference_functions, train

__all__ = ["Sandbox", "CallFailed", "LearnerFileError", "Foreign", "DEFAULT_TIMEOUT", "MEMORY_LIMIT",
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


class CallFailed(Exception):
    """A call of the learner's function gave no usable answer.

    ``kind`` is ``"raised"`` (``exception`` holds the exception's type name), ``"modified"`` (it wrote
    into an argument), ``"forked"`` (it started a process of its own), ``"timeout"`` or
    ``"crashed"``; ``message`` says it in one line.  A timeout or
    a crash is *sticky*: calling again would only wait or crash again.
    """

    def __init__(self, kind: str, message: str, exception: str | None = None, detail: str = "",
                 output: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.exception = exception
        #: For a crash: how the process ended, in words.
        self.detail = detail
        #: What the call printed (the first :data:`OUTPUT_LIMIT` characters, and how many more).
        self.output = output

    @property
    def sticky(self) -> bool:
        return self.kind in ("timeout", "crashed")


@dataclass(frozen=True)
class Foreign:
    """What the learner returned where arrays were expected, described: its type and a short repr."""

    type_name: str
    text: str


class Sandbox:
    """The learner's file, imported in a child process; :meth:`call` its functions there.

    Use as a context manager (or call :meth:`close`) so the child ends with the check.
    ``defined`` maps each exercise name to ``"function"``, ``"missing"`` or ``"not callable"``.
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
        self.defined: dict[str, str] = {}
        #: What the last call printed (the first :data:`OUTPUT_LIMIT` characters, and how many more).
        self.output = ""
        self._process = None
        self._conn = None
        self._folder: str | None = None

    # -- the child's life ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child and import the file there (no-op when running); :class:`LearnerFileError`."""
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._folder = tempfile.mkdtemp(prefix="numpy-mnist-sandbox-")
        process = context.Process(target=_child_main, args=(child, str(self.path.resolve()), self._folder),
                                  daemon=True, name="numpy-mnist exercise sandbox")
        process.start()
        self._process, self._conn = process, parent
        child.close()
        try:
            reply = self._receive(self.import_timeout, f"importing it did not finish within {self.import_timeout:g} s "
                                                       "(code at the top level that never ends?)")
        except CallFailed as failed:
            message = (failed.message if failed.kind == "timeout"
                       else f"the process running your file ended ({failed.message}) while importing it")
            raise LearnerFileError(f"{self.path.name}: {message}") from None
        if reply[0] == "import-failed":
            self.close()
            raise LearnerFileError(f"{reply[1]}; nothing was checked: fix it and check again")
        self.defined = reply[1]

    def close(self) -> None:
        """End the child (politely, then by force)."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is not None:
            try:
                conn.send(("exit",))
            except (OSError, ValueError):
                pass
            process.join(timeout=1)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, name: str, args: tuple, kwargs: dict | None = None, *, arg_names: tuple[str, ...] = ()):
        """``name(*args, **kwargs)`` in the child; its return value (arrays, or :class:`Foreign`).

        Raises :class:`CallFailed` when it raised, wrote into an argument, timed out or crashed.
        """
        self.start()
        try:
            reply = self._request(("call", name, args, kwargs or {}), self.timeout,
                                  f"{name} did not return within {self.timeout:g} s (an endless loop?)")
        except CallFailed as failed:
            if failed.kind != "crashed":
                raise
            raise CallFailed("crashed", f"{name} ended the process running your file ({failed.message})") from None
        self.output = reply[-1]
        if reply[0] == "raised":
            raise CallFailed("raised", f"{name} raised {reply[2]}", exception=reply[1], output=self.output)
        if reply[0] == "forked":
            raise CallFailed("forked", f"{name} started a process of its own (os.fork): the sandbox ended it "
                                       "at once; a backward function needs none", output=self.output)
        if reply[0] == "modified":
            arg = arg_names[reply[1]] if reply[1] < len(arg_names) else f"argument {reply[1] + 1}"
            raise CallFailed("modified", f"{name} wrote into its argument {arg}: a backward function must "
                                         "leave its inputs alone and return new arrays", output=self.output)
        return reply[1]

    def train(self, config: dict, *, epoch_timeout: float):
        """Train with the learner's functions in the child (:func:`_train_in_child`); yield its messages.

        Yields ``("epoch", record dict)`` per epoch, then one of ``("trained",)``, ``("raised",
        message)``, ``("diverged", message)``, or ``("failed", message)`` when an epoch takes longer
        than ``epoch_timeout`` or the child dies.
        """
        timed_out = f"an epoch of training with your functions did not end within {epoch_timeout:g} s"
        try:
            self.start()
            reply = self._request(("train", config), epoch_timeout, timed_out)
            while reply[0] == "epoch":
                yield reply
                reply = self._receive(epoch_timeout, timed_out)
            yield reply
        except CallFailed as failed:
            crashed = f"the process running your file ended ({failed.message})"
            yield ("failed", crashed if failed.kind == "crashed" else failed.message)

    def _request(self, message, timeout: float, timed_out: str):
        try:
            self._conn.send(message)
        except (OSError, ValueError):
            raise CallFailed("crashed", self._reap()) from None
        return self._receive(timeout, timed_out)

    def _receive(self, timeout: float, timed_out: str):
        """The child's next message; :class:`CallFailed` (``message`` how it ended, for a crash)."""
        if not self._conn.poll(timeout):
            self._process.kill()
            self._reap()
            raise CallFailed("timeout", timed_out)
        try:
            return self._conn.recv()
        except (EOFError, OSError):
            how = self._reap()
            raise CallFailed("crashed", how, detail=how) from None
        except Exception:  # the channel carried something that is not an answer: end that child
            self._process.kill()
            how = f"its answers were garbled, {self._reap()}"
            raise CallFailed("crashed", how, detail=how) from None

    def _reap(self) -> str:
        """Forget a child that died or was killed; its exit in words."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        process.join(timeout=5)
        if conn is not None:
            conn.close()
        self._remove_folder()
        return _exit_text(process.exitcode)


#: Signals the child's limits send, in words.
_LIMIT_SIGNALS = {"SIGXCPU": f"it used its {CPU_LIMIT} s of CPU time", "SIGXFSZ": "it wrote too large a file"}


def _exit_text(code: int | None) -> str:
    if code is None:
        return "it did not stop"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        return _LIMIT_SIGNALS.get(name, f"killed by signal {name}")
    return f"exit status {code}"


# -- the child ----------------------------------------------------------------------------------------

class _Capture(io.TextIOBase):
    """``sys.stdout`` and ``sys.stderr`` in the child: keeps the first :data:`OUTPUT_LIMIT`
    characters written since :meth:`take`, and counts the rest."""

    def __init__(self) -> None:
        self._kept: list[str] = []
        self._size = self._dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = OUTPUT_LIMIT - self._size
        self._kept.append(text[:room])
        self._size += min(len(text), max(room, 0))
        self._dropped += max(len(text) - max(room, 0), 0)
        return len(text)

    def take(self) -> str:
        """What was written since the last take (and how much more was not kept); then forget it."""
        text = "".join(self._kept) + (f"\n[... {self._dropped:,} more characters not shown]" if self._dropped else "")
        self._kept, self._size, self._dropped = [], 0, 0
        return text


class _Forks:
    """Forks in the child: each new process ends before it runs anything; the child counts them."""

    count = 0

    @classmethod
    def watch(cls) -> None:
        os.register_at_fork(before=cls._note, after_in_child=lambda: os._exit(70))

    @classmethod
    def _note(cls) -> None:
        cls.count += 1


def _confine(folder: str) -> _Capture:
    """Put the child in its own folder, under its limits, its forks ended and its output captured."""
    os.chdir(folder)
    os.environ["HOME"] = os.environ["TMPDIR"] = folder
    try:
        import resource
    except ImportError:  # not a POSIX system: no limits to set
        resource = None
    if resource is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file past the limit: an OSError, not death
        used = _address_space()
        limits = {"RLIMIT_AS": used + MEMORY_LIMIT if used else None, "RLIMIT_FSIZE": FILE_LIMIT,
                  "RLIMIT_CPU": CPU_LIMIT, "RLIMIT_NPROC": _processes() + EXTRA_PROCESSES}
        for name, value in limits.items():
            if value is not None and hasattr(resource, name):
                try:
                    resource.setrlimit(getattr(resource, name), (value, value))
                except (ValueError, OSError):  # the system refuses or does not know this limit
                    pass
    _Forks.watch()
    capture = _Capture()
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):  # output written below Python (C code, os.write) goes nowhere
        os.dup2(devnull, fd)
    sys.stdout = sys.stderr = capture
    return capture


def _address_space() -> int | None:
    """The child's address space in bytes now (Linux), else None."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _processes() -> int:
    """How many processes this user runs now (Linux; a generous count elsewhere)."""
    try:
        uid = os.getuid()
        return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid)
    except OSError:
        return 256


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _child_main(conn, path: str, folder: str) -> None:
    """The child process: confine itself, import the learner's file, then answer requests until
    told to exit.  Every answer ends with what the learner's code printed meanwhile."""
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    capture = _confine(folder)
    try:
        module = _load(path)
    except BaseException as exc:  # the learner's code may raise anything, SystemExit included
        conn.send(("import-failed", _describe_import_error(exc, path), capture.take()))
        return
    conn.send(("ready", {name: "missing" if not hasattr(module, name) else
                         "function" if callable(getattr(module, name)) else "not callable" for name in EXERCISE_NAMES},
               capture.take()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "call":
            forks = _Forks.count
            reply = _call(module, path, *message[1:])
            if _Forks.count != forks:
                reply = ("forked",)
            try:
                conn.send((*reply, capture.take()))
            except Exception as exc:  # pickling what the learner returned failed
                conn.send(("raised", type(exc).__name__,
                           f"returned something that cannot be passed back ({_one_line(exc)})", capture.take()))
        elif message[0] == "train":
            _train_in_child(conn, module, path, message[1])
        else:
            return


def _load(path: str):
    sys.path.insert(0, str(Path(path).parent))
    spec = importlib.util.spec_from_file_location("learner_gradients", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _call(module, path: str, name: str, args: tuple, kwargs: dict):
    before = [np.copy(a) if isinstance(a, np.ndarray) else None for a in args]
    try:
        value = getattr(module, name)(*args, **kwargs)
    except BaseException as exc:  # the learner's code may raise anything, SystemExit included
        if isinstance(exc, KeyboardInterrupt):
            raise
        return ("raised", type(exc).__name__, describe_exception(exc, path))
    for index, (now, then) in enumerate(zip(args, before)):
        if then is not None and not (now.shape == then.shape and np.array_equal(now, then, equal_nan=True)):
            return ("modified", index)
    return ("ok", portable(value))


def portable(value):
    """``value`` as it may cross the pipe: arrays, tuples/lists of them, None and numbers as they
    are; anything else as a :class:`Foreign` description."""
    if value is None or isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return value
    if isinstance(value, (tuple, list)) and len(value) <= 16:
        return type(value)(portable(v) for v in value)
    text = repr(value) if not isinstance(value, (tuple, list)) else f"{len(value)} items"
    return Foreign(type(value).__name__, text[:60])


def describe_exception(exc: BaseException, path: str) -> str:
    """``"ValueError: message (my_gradients.py, line 12)"``: the deepest line of the learner's file."""
    target = Path(path).resolve()
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if _is(frame.filename, target)]
    message = _one_line(exc)
    text = type(exc).__name__ + (f": {message}" if message else "")
    return text + (f" ({target.name}, line {lines[-1]})" if lines else "")


def _is(filename: str, target: Path) -> bool:
    try:
        return Path(filename).resolve() == target
    except (OSError, ValueError):
        return False


def _describe_import_error(exc: BaseException, path: str) -> str:
    name = Path(path).name
    if isinstance(exc, SyntaxError):
        where = f"{name}, line {exc.lineno}" if exc.lineno else name
        return f"{where}: {type(exc).__name__}: {exc.msg}"
    return f"{name} cannot be imported: {describe_exception(exc, path)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."


# -- training, in the child ---------------------------------------------------------------------------

class _LearnerCallError(NumpyMnistError):
    """One of the learner's functions raised, or returned the wrong shapes, during training."""


def _guarded(name: str, function, path: str):
    """The learner's ``function``, its exceptions and wrong shapes turned into :class:`_LearnerCallError`."""
    def call(*args, **kwargs):
        try:
            out = function(*args, **kwargs)
        except Exception as exc:  # the learner's code may raise anything
            raise _LearnerCallError(f"{name} raised {describe_exception(exc, path)}") from None
        if name != "linear_backward":
            want, got = [args[0].shape], [out]
        elif isinstance(out, (tuple, list)) and len(out) == 3:
            _, x, w = args
            want, got = [x.shape if kwargs.get("need_dx", True) else None, w.shape, (w.shape[1],)], out
        else:
            raise _LearnerCallError(f"{name} returned {type(out).__name__}, not (dx, dw, db)")
        for shape, value in zip(want, got):
            if shape is not None and (not isinstance(value, np.ndarray) or value.shape != shape):
                have = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise _LearnerCallError(f"{name} returned {have} where {shape} was needed")
        return out

    return call


def _train_in_child(conn, module, path: str, config: dict) -> None:
    """The ``train`` request: simple_net trained with the learner's functions, each epoch sent on ``conn``."""
    cfg = TrainConfig(**{**config, "learner_functions": tuple(config["learner_functions"])})
    functions = {**reference_functions(),
                 **{name: _guarded(name, getattr(module, name), path) for name in cfg.learner_functions}}
    try:
        train(functions, cfg, on_epoch=lambda record: conn.send(("epoch", record.as_dict())))
    except _LearnerCallError as exc:
        conn.send(("raised", str(exc)))
    except DivergenceError as exc:
        conn.send(("diverged", str(exc)))
    else:
        conn.send(("trained",))
