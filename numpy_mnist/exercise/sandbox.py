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
"""


from __future__ import annotations

import importlib.util
import multiprocessing
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numpy_mnist.errors import DivergenceError, NumpyMnistError
from numpy_mnist.exercise.functions import EXERCISE_NAMES
from numpy_mnist.exercise.training import TrainConfig, reference_functions, train

__all__ = ["Sandbox", "CallFailed", "LearnerFileError", "Foreign", "DEFAULT_TIMEOUT"]

#: Seconds one call of a learner's function may take (its inputs are a few dozen numbers).
DEFAULT_TIMEOUT = 5.0
#: The longest one-line message taken from the learner's exception.
_MAX_MESSAGE = 240


class LearnerFileError(NumpyMnistError):
    """The learner's file cannot be loaded: it does not parse, its import fails, or never ends."""


class CallFailed(Exception):
    """A call of the learner's function gave no usable answer.

    ``kind`` is ``"raised"`` (``exception`` holds the exception's type name), ``"modified"`` (it wrote
    into an argument), ``"timeout"`` or ``"crashed"``; ``message`` says it in one line.  A timeout or
    a crash is *sticky*: calling again would only wait or crash again.
    """

    def __init__(self, kind: str, message: str, exception: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.exception = kind, message, exception
        self.sticky = kind in ("timeout", "crashed")


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
        self._process = self._conn = None

    def start(self) -> None:
        """Start the child and import the file there (no-op when running); :class:`LearnerFileError`."""
        if self._process is not None:
            return
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(child, str(self.path.resolve())), daemon=True,
                                        name="numpy-mnist exercise sandbox")
        self._process.start()
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
        if process is None:
            return
        try:
            conn.send(("exit",))
        except (OSError, ValueError):
            pass
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
        conn.close()

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
        if reply[0] == "raised":
            raise CallFailed("raised", f"{name} raised {reply[2]}", exception=reply[1])
        if reply[0] == "modified":
            arg = arg_names[reply[1]] if reply[1] < len(arg_names) else f"argument {reply[1] + 1}"
            raise CallFailed("modified", f"{name} wrote into its argument {arg}: a backward function must "
                                         "leave its inputs alone and return new arrays")
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
            raise CallFailed("crashed", self._reap()) from None

    def _reap(self) -> str:
        """Forget a child that died or was killed; its exit in words."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        process.join(timeout=5)
        conn.close()
        code = process.exitcode
        if code is None or code >= 0:
            return "it did not stop" if code is None else f"exit status {code}"
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"


# -- the child ----------------------------------------------------------------------------------------

def _child_main(conn, path: str) -> None:
    """The child process: import the learner's file, then answer requests until told to exit."""
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    try:
        module = _load(path)
    except BaseException as exc:  # the learner's code may raise anything, SystemExit included
        conn.send(("import-failed", _describe_import_error(exc, path)))
        return
    conn.send(("ready", {name: "missing" if not hasattr(module, name) else
                         "function" if callable(getattr(module, name)) else "not callable" for name in EXERCISE_NAMES}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "call":
            reply = _call(module, path, *message[1:])
            try:
                conn.send(reply)
            except Exception as exc:  # pickling what the learner returned failed
                conn.send(("raised", type(exc).__name__,
                           f"returned something that cannot be passed back ({_one_line(exc)})"))
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
