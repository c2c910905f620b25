"""``exercise check``: each of the learner's backward functions against the truth, on inputs hypothesis draws.

For every exercise (:mod:`~numpy_mnist.exercise.functions`) that the learner's file implements:

1. hypothesis draws inputs: random shapes (batches of 1 to 8 rows) and values, including the extremes
   that break naive code (|z| from 15 to 750 for the sigmoid and the losses, where ``1 - sigmoid(z)``
   rounds to 0 and ``exp`` overflows) and keeping the ReLU's inputs at least 1e-3 from its kink;
2. the learner's function runs on them in the sandbox (:mod:`~numpy_mnist.exercise.sandbox`);
3. its answer must be float arrays of the right shapes, finite, and agree in float64 with the
   reference, with central finite differences of the forward, and with PyTorch's autograd when it is
   installed (:func:`comparisons`), all to one tolerance, :data:`TOLERANCE`: ``|a - r| <= RTOL *
   max(|a|, |r|) + floor``, ``RTOL = 1e-6``.  The floors and their reasons are stated once, in
   :class:`numpy_mnist.gradcheck.Tolerance`: against the reference and PyTorch Higham's rounding
   bound (negligible for an elementwise function, so ``sigmoid(z) * (1 - sigmoid(z))`` fails where
   ``1 - sigmoid(z)`` has lost its digits: the slope at z = 40 is 4e-18, not 0); against finite
   differences their own noise;
4. a failure is shrunk by hypothesis to the smallest input that still fails, and the comparison on
   it gives a hint (:mod:`~numpy_mnist.exercise.hints`).

hypothesis is imported only here (``pip install 'numpy-mnist[exercise]'``), PyTorch only when present.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from numpy_mnist import gradcheck as gc
from numpy_mnist import layers, losses, torch_twin
from numpy_mnist.errors import NumpyMnistError
from numpy_mnist.exercise import hints
from numpy_mnist.exercise.functions import EXERCISES, Exercise, get_exercise
from numpy_mnist.exercise.sandbox import DEFAULT_TIMEOUT, CallFailed, Foreign, Sandbox
from numpy_mnist.model_check import loss_magnitude

__all__ = ["Example", "Failure", "FunctionResult", "CheckReport", "check_file", "judge", "comparisons",
           "TOLERANCE", "RTOL", "DEFAULT_EXAMPLES"]

#: The one tolerance of every comparison: :data:`numpy_mnist.gradcheck.TOLERANCE`.
TOLERANCE = gc.TOLERANCE
RTOL = TOLERANCE.rtol
#: Examples hypothesis draws per function: the test suite's ``fast`` profile.
DEFAULT_EXAMPLES = 25
_ELEMENTWISE = {"sigmoid_backward": (layers.sigmoid, torch_twin.sigmoid),
                "relu_backward": (layers.relu, lambda t: t.relu())}


@dataclass(frozen=True)
class Example:
    """One input: positional ``args`` (named by the exercise's ``inputs``) and keyword ``kwargs``."""

    args: tuple
    kwargs: dict = field(default_factory=dict)

    def describe(self, names: tuple[str, ...]) -> str:
        parts = [f"{name} = {_show(value)}" for name, value in zip(names, self.args)]
        return ", ".join(parts + [f"{k}={v!r}" for k, v in self.kwargs.items()])


def _show(a) -> str:
    a = np.asarray(a)
    if a.size > 24:
        return f"an array of shape {a.shape}"
    return " ".join(np.array2string(a, precision=6, separator=", ", max_line_width=10_000,
                                    floatmode="maxprec").split())


class Failure(Exception):
    """One input's failure: ``problem`` in one line; ``what`` failed (``"values"``, ``"shape"``,
    ``"type"``, ``"NaN"``, ``"call"``); ``hints``, every ``(key, sentence)`` that explains it, most
    telling first; ``errors``, the worst relative errors so far (against the reference and PyTorch,
    against finite differences); ``sticky``: it hung or crashed, and calling again would do so again;
    ``how``: for a failed call, :attr:`CallFailed.kind` (``"raised"``, ``"forked"``, ``"timeout"``, ...);
    ``output``: what the call printed."""

    def __init__(self, problem: str, what: str, hints=(), errors=(math.inf, 0.0), *, sticky: bool = False,
                 how: str | None = None, output: str = "") -> None:
        super().__init__(problem)
        self.problem, self.what, self.hints, self.errors, self.sticky = problem, what, tuple(hints), errors, sticky
        self.how, self.output = how, output
        self.example: Example | None = None


@dataclass(frozen=True)
class FunctionResult:
    """One row of the table."""

    name: str
    status: str  # "to do", "pass" or "FAIL"
    examples: int = 0
    #: Worst relative errors against the reference (and PyTorch), and against finite differences.
    worst: float | None = None
    fd_worst: float | None = None
    problem: str | None = None
    #: What failed: "values", "shape", "type", "NaN" or "call" (it raised, hung or crashed).
    what: str | None = None
    hint: str | None = None
    example: str | None = None
    #: How ``example`` was found: "shrunk" (the smallest failing input hypothesis found) or "first".
    found: str | None = None
    note: str | None = None
    #: It hung or crashed: calling it again would only do so again (``--train`` leaves it out).
    sticky: bool = False
    #: For a failed call, what it did: "raised", "forked", "modified", "timeout" or "crashed".
    how: str | None = None
    #: What the function printed: on the input shown, else the first call that printed ("" for nothing).
    output: str = ""

    @property
    def implemented(self) -> bool:
        return self.status != "to do"

    @property
    def ok(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class CheckReport:
    """The whole check: one :class:`FunctionResult` per exercise, and what was compared with."""

    path: Path
    results: list[FunctionResult]
    examples: int
    #: Why PyTorch was not used, or None when it was.
    torch_missing: str | None

    @property
    def implemented(self) -> list[FunctionResult]:
        return [r for r in self.results if r.implemented]

    @property
    def ok(self) -> bool:
        """Exit 0: something is implemented, and everything implemented passes."""
        return bool(self.implemented) and all(r.ok for r in self.implemented)


# -- the truth for one input --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Piece:
    """Output ``index`` as a slope: of ``f`` (NumPy; ``twin`` in PyTorch) at ``at``, upstream ``dout``
    (None for a scalar ``f``), ``scale`` the size of ``f``'s terms (the finite difference's noise)."""

    index: int
    f: Callable
    twin: Callable
    at: np.ndarray
    dout: np.ndarray | None
    scale: object


def _reference(ex: Exercise, example: Example) -> tuple:
    out = ex.reference(*example.args, **example.kwargs)
    return tuple(out) if isinstance(out, tuple) else (out,)


def _pieces(ex: Exercise, example: Example) -> tuple[list[_Piece], tuple]:
    """The forward whose slope each output is, and per output the sizes of the terms each right entry
    is summed from (the magnitude network: the same sums on absolute values)."""
    if ex.name in _ELEMENTWISE:
        (dout, x), (f, twin) = example.args, _ELEMENTWISE[ex.name]
        return [_Piece(0, f, twin, x, dout, np.abs(dout * f(x)))], (np.abs(ex.reference(np.abs(dout), x)),)
    if ex.name == "linear_backward":
        return _linear_pieces(*example.args, need_dx=example.kwargs.get("need_dx", True))
    z, t = example.args
    loss, twin = losses.get_loss(ex.loss), torch_twin.LOSSES[ex.loss]
    # log(sum_k exp(z_k - max z)) takes the log of a sum whose largest term is 1: its rounding error is
    # eps absolute even where a confident row's loss is 1e-7, so the terms' size is >= 1.
    scale = loss_magnitude(ex.loss, z, t, float(loss.forward(z, t))) + (1.0 if loss.multiclass else 0.0)
    piece = _Piece(0, lambda z_: loss.forward(z_, t), lambda zt: twin(zt, _torch_targets(t, loss.multiclass)),
                   z, None, scale)
    return [piece], (loss.gradient_magnitude(z, t),)


def _linear_pieces(dout, x, w, *, need_dx: bool):
    ad, ax, aw = np.abs(dout), np.abs(x), np.abs(w)
    scale = float(np.sum(ad * (ax @ aw)))  # what the outputs are summed from
    b = np.zeros(w.shape[1])
    t = torch_twin.tensor
    pieces = [_Piece(1, lambda w_: x @ w_, lambda wt: t(x) @ wt, w, dout, scale),
              _Piece(2, lambda b_: x @ w + b_, lambda bt: t(x) @ t(w) + bt, b, dout, scale)]
    if need_dx:
        pieces.insert(0, _Piece(0, lambda x_: x_ @ w, lambda xt: xt @ t(w), x, dout, scale))
    return pieces, (ad @ aw.T, ax.T @ ad, np.sum(ad, axis=0))


def _torch_targets(t, multiclass: bool):
    import torch

    return torch.as_tensor(np.asarray(t, dtype=np.int64)) if multiclass else torch_twin.tensor(t)


def comparisons(name: str, example: Example, outputs: tuple, *, use_torch: bool = False) -> Iterator[gc.GradReport]:
    """Every comparison of the learner's ``outputs`` (float64 arrays, None where the reference has
    None) for ``example``, to :data:`TOLERANCE`: with the reference (``method`` ``"reference"``), with
    central finite differences (``"full"``), and with PyTorch's autograd (``"pytorch"``)."""
    ex = get_exercise(name)
    pieces, sizes = _pieces(ex, example)
    # Every sum here has at most twice the largest dimension of an input terms, and a few more operations.
    k = 4 + 2 * max(max(np.shape(a), default=1) for a in example.args)
    floors = [TOLERANCE.rounding_floor(s, k) for s in sizes]
    for out, a, r, floor in zip(ex.outputs, outputs, _reference(ex, example), floors):
        if r is not None:
            yield gc.compare(out, a, r, rtol=RTOL, atol=floor, method="reference")
    for p in pieces:
        options = gc.GradCheckOptions(ex.outputs[p.index], p.scale, tolerance=TOLERANCE)
        yield gc.check_gradient(p.f, p.at, outputs[p.index], dout=p.dout, options=options)
    for p in pieces if use_torch else ():
        _, (grad,) = torch_twin.vjp(p.twin, [p.at], 1.0 if p.dout is None else p.dout)
        yield gc.compare(ex.outputs[p.index], outputs[p.index], grad, rtol=RTOL, atol=floors[p.index],
                         method="pytorch")


# -- judging one answer -------------------------------------------------------------------------------

def judge(name: str, example: Example, value, *, use_torch: bool = False) -> tuple[float, float]:
    """The learner's ``value`` for ``example`` against the truth: the worst relative errors (against the
    reference and PyTorch, against finite differences), or :class:`Failure` with its hints."""
    ex = get_exercise(name)
    right = _reference(ex, example)
    outputs = _unpack(ex, value, right)
    _check_arrays(ex, example, outputs, right)
    errors = [0.0, 0.0]
    for report in comparisons(name, example, outputs, use_torch=use_torch):
        fd = report.method in ("full", "directional")
        errors[fd] = max(errors[fd], report.rel_error)
        if not report.ok:
            raise _value_failure(ex, example, outputs[ex.outputs.index(report.name)], report, tuple(errors))
    return errors[0], errors[1]


def _unpack(ex: Exercise, value, right: tuple) -> tuple:
    """The learner's outputs as a tuple of float64 arrays (or None), or a :class:`Failure`."""
    n = len(ex.outputs)
    if n > 1 and not (isinstance(value, (tuple, list)) and len(value) == n):
        raise Failure(f"{ex.name} returned {_what(value)}; it must return {n} things, ({', '.join(ex.outputs)})",
                      "type")
    if n == 1 and value is None:
        raise Failure(f"{ex.name} returned None; it must return a NumPy array: did you forget `return`?", "type")
    return tuple(_as_array(ex, out, a, r) for out, a, r in zip(ex.outputs, tuple(value) if n > 1 else (value,), right))


def _as_array(ex: Exercise, out: str, a, r):
    """One output as a float64 array (or None), or a :class:`Failure`."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        shape = f" of shape {tuple(r.shape)}" if r is not None else ""
        raise Failure(f"{ex.name} returned {_what(a)} for {out}; it must be a NumPy array{shape}", "type")
    if not np.issubdtype(a.dtype, np.floating):
        raise Failure(f"{ex.name} returned {out} of dtype {a.dtype}; it must hold floating-point numbers like "
                      "its inputs (float64 here)", "type")
    return a.astype(np.float64, copy=False)


def _what(value) -> str:
    if isinstance(value, Foreign):
        return f"a {value.type_name} ({value.text})"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return "None" if value is None else f"a {type(value).__name__} ({value!r})"


def _check_arrays(ex: Exercise, example: Example, outputs: tuple, right: tuple) -> None:
    """Each output is there (or None exactly where it must be), of the right shape, and finite."""
    for out, like, a, r in zip(ex.outputs, ex.like, outputs, right):
        if r is None and a is not None:
            raise Failure(f"{ex.name} returned an array for {out} with need_dx=False", "type",
                          [("need_dx", "with need_dx=False return None for dx: nothing upstream needs it")])
        if r is None:
            continue
        if a is None:
            raise Failure(f"{ex.name} returned None for {out}", "type",
                          [("none", f"{out} must be an array of shape {tuple(r.shape)}, like {like}")])
        if a.shape != r.shape:
            raise Failure(f"{ex.name} returned {out} of shape {a.shape}, not {r.shape}", "shape",
                          [("shape", hints.shape_hint(out, a.shape, r.shape, like, a, r))])
        if not np.isfinite(a).all():
            i = tuple(int(k) for k in np.argwhere(~np.isfinite(a))[0])
            overflow = hints.overflow_hint(ex.name, example.args[_z_index(ex) or 0])
            raise Failure(f"{ex.name} returned {a[i]} in {out} at entry {i}; the right value is {r[i]:.6g}", "NaN",
                          [("overflow", overflow)] if overflow else [])


def _z_index(ex: Exercise) -> int | None:
    """The argument holding the input z of a sigmoid, for the precision and overflow hints."""
    return {"sigmoid_backward": 1, "mnist_loss_backward": 0, "binary_cross_entropy_backward": 0}.get(ex.name)


def _value_failure(ex: Exercise, example: Example, a, report: gc.GradReport, errors: tuple) -> Failure:
    if report.method == "pytorch":
        return Failure(f"{ex.name}: {report.name} disagrees with PyTorch's autograd: {report}", "values", (), errors)
    if report.method != "reference":
        return Failure(f"{ex.name}: {report.name} disagrees with central finite differences: {report}", "values",
                       (), errors)
    index = ex.outputs.index(report.name)
    r = _reference(ex, example)[index]
    z = _z_index(ex)
    mistakes = [(wrong, sentence) for i, wrong, sentence in hints.MISTAKES[ex.name](*example.args) if i == index]
    found = hints.value_hints(report.name, a, r, mistakes=mistakes, n=int(np.shape(example.args[0])[0]),
                              mean=ex.loss is not None, inputs=None if z is None else example.args[z])
    return Failure(f"{ex.name}: {report.name} is off by {report.rel_error:.1e} relative at entry {report.index}: "
                   f"yours {report.analytic:.6g}, right {report.numeric:.6g}", "values", found, errors)


# -- the inputs ---------------------------------------------------------------------------------------

def _strategy(ex: Exercise):
    """The hypothesis strategy of :class:`Example` for ``ex``."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    def floats(lo, hi):
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)

    def signed(lo, hi):
        return st.tuples(st.booleans(), floats(lo, hi)).map(lambda s: -s[1] if s[0] else s[1])

    # Moderate values, or large ones (|z| in [15, 750]) where naive sigmoid code loses digits or overflows;
    # 40 and 750 themselves often, so that every run meets both, whatever the seed.
    logits = st.one_of(floats(-6, 6), signed(15, 750), st.sampled_from([40.0, -40.0, 750.0, -750.0]))

    @st.composite
    def draw(draw):
        n, d, k = draw(st.integers(1, 8)), draw(st.integers(1, 6)), draw(st.integers(2, 6))

        def arrays(shape, elements, dtype=np.float64):
            return draw(hnp.arrays(dtype, shape, elements=elements))

        if ex.name in _ELEMENTWISE:
            x = logits if ex.name == "sigmoid_backward" else signed(1e-3, 10)
            return Example((arrays((n, d), floats(-3, 3)), arrays((n, d), x)))
        if ex.name == "linear_backward":
            dout, x, w = (arrays(s, floats(-3, 3)) for s in ((n, k), (n, d), (d, k)))
            return Example((dout, x, w), {"need_dx": draw(st.booleans())})
        if losses.get_loss(ex.loss).multiclass:
            return Example((arrays((n, k), logits), arrays((n,), st.integers(0, k - 1), np.int64)))
        return Example((arrays((n, 1), logits), arrays((n, 1), st.sampled_from([0.0, 1.0]))))

    return draw()


def _parts(ex: Exercise, example: Example) -> Iterator[Example]:
    """Single entries (elementwise functions), then single rows, of a multi-row ``example``."""
    first = np.asarray(example.args[0])
    if ex.name == "linear_backward" or first.size <= 1:
        return
    if ex.name in _ELEMENTWISE:
        for i in np.ndindex(first.shape):
            yield Example(tuple(np.asarray(a)[i][None, None] for a in example.args), example.kwargs)
    for row in range(first.shape[0] if first.shape[0] > 1 else 0):
        yield Example(tuple(np.asarray(a)[row:row + 1] for a in example.args), example.kwargs)


# -- the check ----------------------------------------------------------------------------------------

def check_file(path: str | Path, *, examples: int = DEFAULT_EXAMPLES, timeout: float = DEFAULT_TIMEOUT,
               use_torch: bool = True, sandbox: Sandbox | None = None) -> CheckReport:
    """Check every exercise in the learner's file; a :class:`CheckReport`.

    Raises :class:`~numpy_mnist.exercise.sandbox.LearnerFileError` when the file cannot be loaded, and
    a :class:`~numpy_mnist.errors.NumpyMnistError` when hypothesis is missing.
    """
    given, settings = _hypothesis(examples)
    stack = contextlib.ExitStack()
    torch_missing = None if use_torch else "not asked for"
    if use_torch and not torch_twin.available():
        torch_missing = "not installed"
    box = sandbox if sandbox is not None else Sandbox(path, timeout=timeout)
    try:
        box.start()
        stack.enter_context(_storage_elsewhere())
        results = []
        for e in EXERCISES:
            def test(attempt, e=e):
                settings(given(_strategy(e))(lambda example: attempt(example)))()

            results.append(_check_one(_Run(box, e, torch_missing is None), test))
    finally:
        stack.close()
        if sandbox is None:
            box.close()
    return CheckReport(Path(path), results, examples, torch_missing)


def _hypothesis(examples: int):
    try:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    except ImportError:
        raise NumpyMnistError("exercise check needs hypothesis: pip install 'numpy-mnist[exercise]'") from None
    chosen = settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                      report_multiple_bugs=False, print_blob=False,
                      phases=[Phase.explicit, Phase.generate, Phase.shrink])
    return given, chosen


@contextlib.contextmanager
def _storage_elsewhere():
    """hypothesis's storage (``database=None`` keeps no examples, but hypothesis still caches what it
    reads of the source in ``.hypothesis/``) in a temporary folder, not in the folder the check runs in;
    unless the user chose one (``HYPOTHESIS_STORAGE_DIRECTORY``)."""
    from hypothesis import configuration

    chosen = getattr(configuration, "__hypothesis_home_directory", None)
    if chosen is not None or os.getenv("HYPOTHESIS_STORAGE_DIRECTORY"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="numpy-mnist-hypothesis-") as folder:
        configuration.set_hypothesis_home_dir(folder)
        try:
            yield
        finally:
            configuration.set_hypothesis_home_dir(None)


class _ToDo(Exception):
    """The function's first call raised NotImplementedError: it is still the starter's."""


class _Run:
    """Checking one exercise in the sandbox: the inputs tried, the worst errors, the first failure
    hypothesis met and a sticky one (after which the function is not called again)."""

    def __init__(self, box: Sandbox, ex: Exercise, use_torch: bool) -> None:
        self.box, self.ex, self.use_torch = box, ex, use_torch
        self.examples, self.worst, self.fd_worst = 0, 0.0, 0.0
        self.first: Failure | None = None
        self.sticky: Failure | None = None
        self.todo = False
        #: What the first call that printed anything printed.
        self.output = ""

    def attempt(self, example: Example) -> None:
        """The hypothesis test's body: raise the failure of ``example``, if any."""
        failure = self.sticky if self.sticky is not None or self.todo else self.run(example)
        if self.todo:
            raise _ToDo()
        if failure is not None:  # one raise for every failure: hypothesis tells failures apart by their line
            self.first = self.first or failure
            self.sticky = failure if failure.sticky else None
            raise failure

    def run(self, example: Example) -> Failure | None:
        """Call and judge one example; its failure, or None."""
        self.examples += 1
        ex = self.ex
        try:
            value = self.box.call(ex.name, example.args, example.kwargs, arg_names=ex.inputs)
        except CallFailed as failed:
            self.todo = self.examples == 1 and failed.exception == "NotImplementedError"
            failure = Failure(failed.message, "call", _exception_hints(ex, example, failed), sticky=failed.sticky,
                              how=failed.kind, output=failed.output)
        else:
            try:
                errors, failure = judge(ex.name, example, value, use_torch=self.use_torch), None
            except Failure as failed:
                errors, failure = failed.errors, failed
            self.worst, self.fd_worst = max(self.worst, errors[0]), max(self.fd_worst, errors[1])
            if failure is not None:
                failure.output = self.box.output
        self.output = self.output or (failure.output if failure is not None else self.box.output)
        if failure is not None:
            failure.example = example
        return failure

    def smallest(self, failure: Failure) -> Failure:
        """hypothesis's smallest failing input, or smaller still: one of its rows or entries that fails
        alone (hypothesis cannot always bring the one failing entry to the front)."""
        for smaller in _parts(self.ex, failure.example):
            found = self.run(smaller)
            if found is not None and (found.what == failure.what or found.sticky):
                return found if found.what == failure.what else failure
        return failure

    def result(self, status: str, failure: Failure | None = None, **fields) -> FunctionResult:
        if failure is not None:
            fields.update(problem=failure.problem, what=failure.what, example=failure.example.describe(self.ex.inputs),
                          hint=_choose_hint(failure.hints, self.first.hints if self.first else ()), how=failure.how)
        shown = failure.output if failure is not None and failure.output else self.output
        fields.setdefault("output", shown)
        return FunctionResult(self.ex.name, status, self.examples, self.worst, self.fd_worst, **fields)


def _check_one(run: _Run, test: Callable) -> FunctionResult:
    from hypothesis.errors import Flaky

    ex = run.ex
    kind = run.box.defined.get(ex.name, "missing")
    if kind != "function":
        return (FunctionResult(ex.name, "to do", note="not defined in the file") if kind == "missing" else
                FunctionResult(ex.name, "FAIL", problem=f"{ex.name} is defined but is not a function", what="type"))
    try:
        test(run.attempt)
    except _ToDo:
        return FunctionResult(ex.name, "to do")
    except Failure as failure:
        if run.sticky is not None:
            return run.result("FAIL", run.sticky, found="first", sticky=True)
        return run.result("FAIL", run.smallest(failure), found="shrunk")
    except Flaky:
        return run.result("FAIL", what="call", problem=f"{ex.name} fails on some runs and not on others for the "
                          "same input (does it use random numbers or keep state between calls?)")
    return run.result("pass")


def _choose_hint(shown: tuple, first: tuple) -> str | None:
    """The hint for the input shown: of its explanations, the first that also explains the first failure
    hypothesis met (a larger, random input, where coincidences are rare); else its first."""
    first_keys = {key for key, _ in first}
    chosen = [s for key, s in shown if key in first_keys] + [s for _, s in shown] + [s for _, s in first]
    return chosen[0] if chosen else None


def _exception_hints(ex: Exercise, example: Example, failed: CallFailed) -> list:
    if failed.kind != "raised":
        return []
    if failed.exception == "MemoryError":
        return [("memory", hints.memory_hint(ex.inputs, example.args))]
    shapes = {name: tuple(np.shape(a)) for name, a in zip(ex.inputs, example.args)}
    results = {name: tuple(r.shape) for name, r in zip(ex.outputs, _reference(ex, example)) if r is not None}
    hint = hints.exception_hint(failed.message, shapes, results)
    return [("exception", hint)] if hint else []
