"""``exercise check``: each of the learner's backward functions against the truth, on inputs hypothesis draws.

For every exercise (:mod:`~numpy_mnist.exercise.functions`) that the learner's file implements:

1. hypothesis draws inputs (the exercise's ``draw``): random shapes and values, including the extremes
   that break naive code (|z| from 15 to 750 for the sigmoid and the losses, where ``1 - sigmoid(z)``
   rounds to 0 and ``exp`` overflows), the ReLU's inputs at least 1e-3 from its kink, odd image sizes,
   strides and paddings, and max-pooling's inputs from a small set of integers (tied maxima);
2. the learner's function runs on them in the sandbox (:mod:`~numpy_mnist.exercise.sandbox`);
3. its answer must be float arrays of the right shapes, finite, and agree in float64 with the
   reference, with central finite differences of the forward (where no tie makes them a blend of two
   slopes), and with PyTorch's autograd when it is installed (:func:`comparisons`), all to one
   tolerance, :data:`TOLERANCE`: ``|a - r| <= RTOL * max(|a|, |r|) + floor``, ``RTOL = 1e-6``.  The
   floors and their reasons are stated once, in :class:`numpy_mnist.gradcheck.Tolerance`: against the
   reference and PyTorch Higham's rounding bound (negligible for an elementwise function, so
   ``sigmoid(z) * (1 - sigmoid(z))`` fails where ``1 - sigmoid(z)`` has lost its digits: the slope at
   z = 40 is 4e-18, not 0); against finite differences their own noise;
4. a failure is shrunk by hypothesis to the smallest input that still fails, and the comparison on
   it gives a hint (:mod:`~numpy_mnist.exercise.hints`).

hypothesis is imported only here (``pip install 'numpy-mnist[exercise]'``), PyTorch only when present.
"""

from __future__ import annotations

import os
import tempfile
from collections import namedtuple
from functools import partial
from types import SimpleNamespace
from typing import Iterator

import numpy as np

from numpy_mnist import gradcheck as gc
from numpy_mnist import torch_twin
from numpy_mnist.errors import NumpyMnistError
from numpy_mnist.exercise import hints
from numpy_mnist.exercise.functions import EXERCISES, Exercise, get_exercise
from numpy_mnist.exercise.sandbox import Failure, Sandbox

__all__ = ["Example", "Failure", "FunctionResult", "CheckReport", "check_file", "judge", "checked_outputs",
           "comparisons", "TOLERANCE", "RTOL", "DEFAULT_EXAMPLES"]

#: The one tolerance of every comparison: :data:`numpy_mnist.gradcheck.TOLERANCE`.
TOLERANCE = gc.TOLERANCE
RTOL = TOLERANCE.rtol
#: Examples hypothesis draws per function: the test suite's ``fast`` profile.
DEFAULT_EXAMPLES = 25


#: One input: positional ``args`` (named by the exercise's ``inputs``) and keyword ``kwargs`` (never changed).
Example = namedtuple("Example", "args kwargs", defaults=({},))


class FunctionResult(namedtuple("FunctionResult", "name status examples worst fd_worst failure found note output",
                                defaults=(0, 0.0, 0.0, None, None, None, ""))):
    """One row of the table: ``status`` "to do", "pass" or "FAIL" (``note``, why it is to do); the
    ``examples`` tried; the worst relative errors (against the reference and PyTorch, against finite
    differences); the ``failure`` shown, and how it was ``found`` ("shrunk": the smallest failing input
    hypothesis found, or "first"); ``output``, what it printed (on the input shown, else the first call
    that printed)."""

    @property
    def implemented(self) -> bool:
        return self.status != "to do"

    @property
    def sticky(self) -> bool:
        """It hung or crashed: calling it again would only do so again (``--train`` leaves it out)."""
        return self.failure is not None and self.failure.sticky


class CheckReport(namedtuple("CheckReport", "results torch_missing")):
    """The whole check: one :class:`FunctionResult` per exercise; ``torch_missing``, why PyTorch was
    not used (None when it was)."""

    @property
    def implemented(self) -> list[FunctionResult]:
        return [r for r in self.results if r.implemented]

    @property
    def ok(self) -> bool:
        """Exit 0: something is implemented, and everything implemented passes."""
        return bool(self.implemented) and all(r.status == "pass" for r in self.implemented)


# -- the truth for one input --------------------------------------------------------------------------

def _reference(ex: Exercise, example: Example) -> tuple:
    out = ex.reference(*example.args, **example.kwargs)
    return out if isinstance(out, tuple) else (out,)


def comparisons(name: str, example: Example, outputs: tuple, *, use_torch: bool = False) -> Iterator[gc.GradReport]:
    """Every comparison of the learner's ``outputs`` (float64 arrays, None where the reference has
    None) for ``example``, to :data:`TOLERANCE`: with the reference (``method`` ``"reference"``), with
    central finite differences (``"full"`` or ``"directional"``), and with PyTorch's autograd
    (``"pytorch"``)."""
    ex = get_exercise(name)
    task, right = ex.task(*example.args, **example.kwargs), _reference(ex, example)
    # Every sum here has fewer terms than twice the largest input has entries, and a few more operations.
    k = 4 + 2 * max(np.size(a) for a in example.args)
    floors = [None if s is None else TOLERANCE.rounding_floor(s, k) for s in task.sizes]
    present = [i for i, r in enumerate(right) if r is not None]
    for i in present:
        yield gc.compare(ex.outputs[i], outputs[i], right[i], rtol=RTOL, atol=floors[i], method="reference")
    for i in present if ex.smooth(*example.args, **example.kwargs) else ():
        options = gc.GradCheckOptions(ex.outputs[i], task.scale, tolerance=TOLERANCE)
        yield gc.check_gradient(lambda v, i=i: task.f(*task.at[:i], v, *task.at[i + 1:]), task.at[i], outputs[i],
                                dout=task.dout, options=options)
    if use_torch:
        _, grads = torch_twin.vjp(task.twin, list(task.at), 1.0 if task.dout is None else task.dout)
        for i in present:
            yield gc.compare(ex.outputs[i], outputs[i], grads[i], rtol=RTOL, atol=floors[i], method="pytorch")


# -- judging one answer -------------------------------------------------------------------------------

def judge(name: str, example: Example, value, *, use_torch: bool = False) -> tuple[float, float]:
    """The learner's ``value`` for ``example`` against the truth: the worst relative errors (against the
    reference and PyTorch, against finite differences), or :class:`Failure` with its hints."""
    ex = get_exercise(name)
    right, errors = _reference(ex, example), [0.0, 0.0]
    outputs = checked_outputs(ex, example, value, right)
    for report in comparisons(name, example, outputs, use_torch=use_torch):
        fd = report.method in ("full", "directional")
        errors[fd] = max(errors[fd], report.rel_error)
        if not report.ok:
            raise _value_failure(ex, example, outputs, right, report, tuple(errors))
    return errors[0], errors[1]


def checked_outputs(ex: Exercise, example: Example, value, right: tuple | None = None) -> tuple:
    """The learner's ``value`` for ``example`` as a tuple of float64 arrays (None exactly where the
    reference's ``right`` answer has None), each of the right shape and finite; else a :class:`Failure`."""
    right = _reference(ex, example) if right is None else right
    n = len(ex.outputs)
    if n > 1 and not (isinstance(value, (tuple, list)) and len(value) == n):
        raise Failure(f"{ex.name} returned {_what(value)}; it must return {n} things, ({', '.join(ex.outputs)})",
                      "type")
    if n == 1 and value is None:
        raise Failure(f"{ex.name} returned None; it must return a NumPy array: did you forget `return`?", "type")
    return tuple(_checked(ex, example, *row) for row in zip(ex.outputs, value if n > 1 else (value,), right))


def _checked(ex: Exercise, example: Example, out: str, a, r):
    """One output ``a`` against the right one ``r``: there (or None exactly where ``r`` is), a float array
    of ``r``'s shape, finite; as float64, else a :class:`Failure`.  ``out`` differentiates, and so is
    shaped like, the input ``out[1:]`` (``dw``, ``w``)."""
    if r is None and a is not None:
        raise Failure(f"{ex.name} returned an array for {out} with need_dx=False", "type",
                      [("need_dx", "with need_dx=False return None for dx: nothing upstream needs it")])
    if r is None:
        return None
    if a is None:
        raise Failure(f"{ex.name} returned None for {out}", "type",
                      [("none", f"{out} must be an array of shape {tuple(r.shape)}, like {out[1:]}")])
    if not isinstance(a, np.ndarray):
        raise Failure(f"{ex.name} returned {_what(a)} for {out}; it must be a NumPy array of shape {r.shape}", "type")
    if not np.issubdtype(a.dtype, np.floating):
        raise Failure(f"{ex.name} returned {out} of dtype {a.dtype}; it must hold floating-point numbers like "
                      "its inputs (float64 here)", "type")
    if a.shape != r.shape:
        raise Failure(f"{ex.name} returned {out} of shape {a.shape}, not {r.shape}", "shape",
                      [("shape", hints.shape_hint(out, a, r))])
    if not np.isfinite(a).all():
        i = tuple(int(k) for k in np.argwhere(~np.isfinite(a))[0])
        overflow = hints.overflow_hint(ex.overflow, example.args[ex.z or 0])
        raise Failure(f"{ex.name} returned {a[i]} in {out} at entry {i}; the right value is {r[i]:.6g}", "NaN",
                      [("overflow", overflow)] if overflow else [])
    return a.astype(np.float64, copy=False)


def _what(value) -> str:
    """What the learner returned, in words (the sandbox describes anything but arrays and sequences)."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return "None" if value is None else value if isinstance(value, str) else f"a {type(value).__name__} ({value!r})"


def _value_failure(ex: Exercise, example: Example, outputs, right, report: gc.GradReport, errors) -> Failure:
    if report.method != "reference":
        against = "PyTorch's autograd" if report.method == "pytorch" else "central finite differences"
        return Failure(f"{ex.name}: {report.name} disagrees with {against}: {report}", "values", (), errors)
    i = ex.outputs.index(report.name)
    mistakes = [(wrong, sentence) for j, wrong, sentence in ex.slips(*example.args, **example.kwargs) if j == i]
    found = hints.value_hints(report.name, outputs[i], right[i], mistakes=mistakes, n=len(example.args[0]),
                              mean=ex.mean, inputs=None if ex.z is None else example.args[ex.z])
    return Failure(f"{ex.name}: {report.name} is off by {report.rel_error:.1e} relative at entry {report.index}: "
                   f"yours {report.analytic:.6g}, right {report.numeric:.6g}", "values", found, errors)


# -- the inputs ---------------------------------------------------------------------------------------

def _strategy(ex: Exercise):
    """The hypothesis strategy of :class:`Example` for ``ex``: its ``draw`` given the helpers it uses."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    floats = partial(st.floats, allow_nan=False, allow_infinity=False, allow_subnormal=False)

    # Moderate values, or large ones (|z| in [15, 750]) where naive sigmoid code loses digits or overflows;
    # 40 and 750 themselves often, so that every run meets both, whatever the seed.
    logits = st.one_of(floats(-6, 6), floats(15, 750), floats(-750, -15), st.sampled_from([40.0, -40.0, 750.0, -750.0]))

    @st.composite
    def example(draw):
        def arrays(elements, dtype=np.float64, unique=False):
            return lambda shape: draw(hnp.arrays(dtype, shape, elements=elements, unique=unique))

        d = SimpleNamespace(int=lambda lo, hi: draw(st.integers(lo, hi)), bool=lambda: draw(st.booleans()),
                            floats=arrays(floats(-3, 3)), distinct=arrays(floats(-3, 3), unique=True),
                            logits=arrays(logits), away_from_0=arrays(st.one_of(floats(1e-3, 10), floats(-10, -1e-3))),
                            choice=lambda shape, values: arrays(st.sampled_from(values))(shape),
                            integers=lambda shape, lo, hi: arrays(st.integers(lo, hi), np.int64)(shape))
        return Example(*ex.draw(d))

    return example()


def _parts(ex: Exercise, example: Example) -> Iterator[Example]:
    """Single entries (``shrink`` 2), then single rows (``shrink`` 1 or 2), of a larger ``example``."""
    first = np.asarray(example.args[0])
    for i in np.ndindex(first.shape) if ex.shrink == 2 and first.size > 1 else ():
        yield Example(tuple(np.asarray(a)[i][None, None] for a in example.args), example.kwargs)
    for row in range(first.shape[0] if ex.shrink and first.shape[0] > 1 else 0):
        yield Example(tuple(np.asarray(a)[row:row + 1] for a in example.args), example.kwargs)


# -- the check ----------------------------------------------------------------------------------------

def check_file(box: Sandbox, *, examples: int = DEFAULT_EXAMPLES, use_torch: bool = True) -> CheckReport:
    """Check every exercise in the learner's file, running in ``box``; a :class:`CheckReport`.

    Raises :class:`~numpy_mnist.exercise.sandbox.LearnerFileError` when the file cannot be loaded, and
    a :class:`~numpy_mnist.errors.NumpyMnistError` when hypothesis is missing.
    """
    try:
        from hypothesis import HealthCheck, Phase, Verbosity, configuration, settings
    except ImportError:
        raise NumpyMnistError("exercise check needs hypothesis: pip install 'numpy-mnist[exercise]'") from None
    chosen = settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=False,
                      suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, report_multiple_bugs=False,
                      phases=[Phase.explicit, Phase.generate, Phase.shrink])
    torch_missing = "not asked for" if not use_torch else None if torch_twin.available() else "not installed"
    box.start()
    # database=None keeps no examples, but hypothesis still caches what it reads of the source: in a
    # temporary folder, not the one the check runs in, unless the user chose one.
    chosen_home = getattr(configuration, "__hypothesis_home_directory", None)
    with tempfile.TemporaryDirectory(prefix="numpy-mnist-hypothesis-") as folder:
        configuration.set_hypothesis_home_dir(chosen_home or os.getenv("HYPOTHESIS_STORAGE_DIRECTORY") or folder)
        try:
            results = [_Run(box, ex, torch_missing is None).check(chosen) for ex in EXERCISES]
        finally:
            configuration.set_hypothesis_home_dir(chosen_home)
    return CheckReport(results, torch_missing)


class _Run:
    """Checking one exercise in the sandbox: the inputs tried, the worst errors, the first failure
    hypothesis met and a sticky one (after which the function is not called again: it hangs or
    crashes, or its first call raised NotImplementedError, ``todo``: it is still the starter's)."""

    def __init__(self, box: Sandbox, ex: Exercise, use_torch: bool) -> None:
        self.box, self.ex, self.use_torch = box, ex, use_torch
        self.examples, self.worst, self.fd_worst, self.todo = 0, 0.0, 0.0, False
        self.first = self.sticky = None  # Failure | None
        self.output = ""  # what the first call that printed anything printed

    def attempt(self, example: Example) -> None:
        """The hypothesis test's body: raise the failure of ``example``, if any."""
        failure = self.sticky if self.sticky is not None else self.run(example)
        if failure is not None:  # one raise for every failure: hypothesis tells failures apart by their line
            self.first = self.first or failure
            self.sticky = failure if failure.sticky or self.todo else None
            raise failure

    def run(self, example: Example) -> Failure | None:
        """Call and judge one example; its failure, or None."""
        self.examples += 1
        try:
            value = self.box.call(self.ex.name, example.args, example.kwargs)
        except Failure as failed:
            self.todo = self.examples == 1 and failed.exception == "NotImplementedError"
            results = {out: r.shape for out, r in zip(self.ex.outputs, _reference(self.ex, example)) if r is not None}
            failure, failed.hints = failed, tuple(hints.call_hints(failed, self.ex.inputs, example.args, results))
        else:
            try:
                errors, failure = judge(self.ex.name, example, value, use_torch=self.use_torch), None
            except Failure as failed:
                errors, failure = failed.errors, failed
            self.worst, self.fd_worst = max(self.worst, errors[0]), max(self.fd_worst, errors[1])
        self.output = self.output or self.box.output
        if failure is not None:
            failure.example, failure.output = example, self.box.output
        return failure

    def smallest(self, failure: Failure) -> Failure:
        """hypothesis's smallest failing input, or smaller still: one of its rows or entries that fails
        alone (hypothesis cannot always bring the one failing entry to the front)."""
        for smaller in _parts(self.ex, failure.example):
            found = self.run(smaller)
            if found is not None and (found.what == failure.what or found.sticky):
                return found if found.what == failure.what else failure
        return failure

    def check(self, chosen) -> FunctionResult:
        """The row of this exercise, :meth:`attempt` run by hypothesis with the settings ``chosen``."""
        from hypothesis import given
        from hypothesis.errors import Flaky

        name, kind = self.ex.name, self.box.defined.get(self.ex.name, "missing")
        if kind != "function":
            return (FunctionResult(name, "to do", note="not defined in the file") if kind == "missing" else
                    FunctionResult(name, "FAIL", failure=Failure(f"{name} is defined but is not a function", "type")))
        try:
            chosen(given(_strategy(self.ex))(self.attempt))()
        except Failure as failure:
            if self.todo:
                return FunctionResult(name, "to do")
            if self.sticky is not None:
                return self.result("FAIL", self.sticky, found="first")
            return self.result("FAIL", self.smallest(failure), found="shrunk")
        except Flaky:
            return self.result("FAIL", Failure(f"{name} fails on some runs and not on others for the same input (does "
                                               "it use random numbers or keep state between calls?)", "call"))
        return self.result("pass")

    def result(self, status: str, failure: Failure | None = None, found: str | None = None) -> FunctionResult:
        if failure is not None:
            failure.hint = _choose_hint(failure.hints, self.first.hints if self.first else ())
        return FunctionResult(self.ex.name, status, self.examples, self.worst, self.fd_worst, failure, found,
                              output=failure.output if failure is not None and failure.output else self.output)


def _choose_hint(shown: tuple, first: tuple) -> str | None:
    """The hint for the input shown: of its explanations, the first that also explains the first failure
    hypothesis met (a larger, random input, where coincidences are rare); else its first."""
    first_keys = {key for key, _ in first}
    chosen = [s for key, s in shown if key in first_keys] + [s for _, s in shown] + [s for _, s in first]
    return chosen[0] if chosen else None
