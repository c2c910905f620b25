"""``exercise check``: each of the learner's backward functions against the truth, on inputs hypothesis draws.

For every exercise (:mod:`~numpy_mnist.exercise.functions`) that the learner's file implements:

1. hypothesis draws inputs: random shapes (batches of 1 to 8 rows) and values, including the extremes
   that break naive code (|z| from 15 to 750 for the sigmoid and the losses, where ``1 - sigmoid(z)``
   rounds to 0 and ``exp`` overflows) and keeping the ReLU's inputs at least 1e-3 from its kink;
2. the learner's function runs on them in the sandbox (:mod:`~numpy_mnist.exercise.sandbox`);
3. its answer must be arrays of the right shapes, finite, and in float64 agree to ``RTOL`` (1e-6)
   relative with the reference, with central finite differences of the forward
   (:func:`numpy_mnist.gradcheck.check_gradient`), and with PyTorch's autograd when it is installed;
4. a failure is shrunk by hypothesis to the smallest input that still fails, and the comparison on
   it gives a hint (:mod:`~numpy_mnist.exercise.hints`).

The absolute floor under the relative tolerance, against the reference and PyTorch, is the rounding
error allowed for a correct float64 computation: twice Higham's ``gamma_k`` times the sum of the
absolute values of the terms each entry is made of (:func:`numpy_mnist.torch_twin.gamma`), plus a few
smallest normal numbers for results that underflow.  For an elementwise function that floor is
negligible, so ``sigmoid(z) * (1 - sigmoid(z))`` fails where ``1 - sigmoid(z)`` has lost its digits:
the slope at z = 40 is 4e-18, not 0.

hypothesis is imported only here (``pip install 'numpy-mnist[exercise]'``), PyTorch only when present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from numpy_mnist import gradcheck as gc
from numpy_mnist import layers, losses, torch_twin
from numpy_mnist.errors import NumpyMnistError
from numpy_mnist.exercise import hints
from numpy_mnist.exercise.functions import EXERCISES, Exercise
from numpy_mnist.exercise.sandbox import DEFAULT_TIMEOUT, CallFailed, Foreign, Sandbox
from numpy_mnist.model_check import loss_magnitude
from numpy_mnist.torch_twin import gamma

__all__ = ["Example", "FunctionResult", "CheckReport", "check_file", "RTOL", "DEFAULT_EXAMPLES"]

#: Relative tolerance of every comparison (float64): the finite differences' own, gradcheck's default.
RTOL = gc.DEFAULT_RTOL
#: Examples hypothesis draws per function: the test suite's ``fast`` profile.
DEFAULT_EXAMPLES = 25
_TINY = float(np.finfo(np.float64).smallest_normal)


@dataclass(frozen=True)
class Example:
    """One input: positional ``args`` (named by the exercise's ``inputs``) and keyword ``kwargs``."""

    args: tuple
    kwargs: dict = field(default_factory=dict)

    def describe(self, names: tuple[str, ...]) -> str:
        parts = [f"{name} = {_show(value)}" for name, value in zip(names, self.args)]
        parts += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return ", ".join(parts)


def _show(a) -> str:
    a = np.asarray(a)
    if a.size > 24:
        return f"an array of shape {a.shape}"
    text = np.array2string(a, precision=6, separator=", ", max_line_width=10_000, floatmode="maxprec")
    return " ".join(text.split())


@dataclass(frozen=True)
class Verdict:
    """One example's outcome.

    ``rel_error``: the worst relative error against the reference and PyTorch; ``fd_error``: against
    finite differences (NaN when not compared).  For a failure, ``problem`` in one line, ``what``
    failed (``"values"``, ``"shape"``, ``"type"``, ``"NaN"``, ``"call"``) and ``hints``, every
    ``(key, sentence)`` that explains it, most telling first.
    """

    ok: bool
    rel_error: float
    fd_error: float = math.nan
    problem: str | None = None
    what: str | None = None
    hints: tuple = ()


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


class _CheckFailed(Exception):
    """Raised inside the hypothesis test for a failing example; carries its verdict."""

    def __init__(self, verdict: Verdict, example: Example, *, sticky: bool = False) -> None:
        super().__init__(verdict.problem)
        self.verdict = verdict
        self.example = example
        self.sticky = sticky


# -- one exercise: its inputs, the truth, and what a slip computes ------------------------------------

@dataclass(frozen=True)
class _Judge:
    """What checking one exercise takes."""

    exercise: Exercise
    #: ``st, hnp -> strategy of Example``.
    strategy: Callable
    #: A plain input to learn whether the function is written at all.
    probe: Example
    #: ``example -> (sizes per output, terms per sum)``: the absolute floor of a correct float64 result.
    magnitudes: Callable
    #: ``(example, learner's outputs) -> [GradReport per output]`` against finite differences.
    finite_differences: Callable
    #: ``example -> outputs`` by PyTorch's autograd (float64).
    torch: Callable
    #: ``example -> [(output index, wrong array, sentence)]``: known slips.
    mistakes: Callable = lambda example: []
    #: ``example -> N`` for the factor hints; whether the function is the gradient of a mean.
    batch: Callable = lambda example: int(np.asarray(example.args[0]).shape[0])
    mean: bool = False
    #: Index of the argument holding the (elementwise) input z, for the precision and overflow hints.
    z_arg: int | None = None

    def reference(self, example: Example) -> tuple:
        out = self.exercise.reference(*example.args, **example.kwargs)
        return tuple(out) if isinstance(out, tuple) else (out,)


def _floats(st, lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _signed(st, lo: float, hi: float):
    return st.tuples(st.booleans(), _floats(st, lo, hi)).map(lambda s: -s[1] if s[0] else s[1])


def _logits(st):
    """Moderate values, or large ones (|z| in [15, 750]) where naive sigmoid code loses digits or overflows."""
    return st.one_of(_floats(st, -6, 6), _signed(st, 15, 750))


def _arrays(hnp, shape, elements, dtype=np.float64):
    return hnp.arrays(dtype, shape, elements=elements)


def _elementwise_strategy(x_elements):
    def strategy(st, hnp):
        @st.composite
        def draw(draw):
            shape = (draw(st.integers(1, 8)), draw(st.integers(1, 6)))
            dout = draw(_arrays(hnp, shape, _floats(st, -3, 3)))
            return Example((dout, draw(_arrays(hnp, shape, x_elements(st)))))
        return draw()
    return strategy


def _binary_loss_strategy(st, hnp):
    @st.composite
    def draw(draw):
        shape = (draw(st.integers(1, 8)), 1)
        logits = draw(_arrays(hnp, shape, _logits(st)))
        return Example((logits, draw(_arrays(hnp, shape, st.sampled_from([0.0, 1.0])))))
    return draw()


def _linear_strategy(st, hnp):
    @st.composite
    def draw(draw):
        n, d_in, d_out = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
        values = _floats(st, -3, 3)
        dout, x, w = (draw(_arrays(hnp, s, values)) for s in ((n, d_out), (n, d_in), (d_in, d_out)))
        return Example((dout, x, w), {"need_dx": draw(st.booleans())})
    return draw()


def _softmax_strategy(st, hnp):
    @st.composite
    def draw(draw):
        n, k = draw(st.integers(1, 8)), draw(st.integers(2, 6))
        logits = draw(_arrays(hnp, (n, k), _logits(st)))
        return Example((logits, draw(_arrays(hnp, (n,), st.integers(0, k - 1), dtype=np.int64))))
    return draw()


def _torch_elementwise(oracle):
    """Autograd of ``sum(dout * layer(x))`` by x, from the PyTorch twin's ``oracle(x, dout)``."""
    def grads(example):
        dout, x = example.args
        return (oracle(x, dout)[1],)
    return grads


def _torch_loss(name):
    """Autograd of the PyTorch twin of the loss ``name`` by its logits."""
    def grads(example):
        import torch

        logits, targets = example.args
        zt = torch_twin.tensor(logits, requires_grad=True)
        tt = (torch.as_tensor(np.asarray(targets, dtype=np.int64)) if name == "cross_entropy"
              else torch_twin.tensor(targets))
        (g,) = torch.autograd.grad(torch_twin.LOSSES[name](zt, tt), zt)
        return (g.numpy(),)
    return grads


def _torch_linear(example):
    dout, x, w = example.args
    _, (dx, dw, db), _ = torch_twin.linear_oracle(x, w, np.zeros(w.shape[1]), dout)
    return (dx if example.kwargs.get("need_dx", True) else None), dw, db


def _fd_elementwise(forward):
    def check(example, outputs):
        dout, x = example.args
        scale = np.abs(dout * forward(x))  # entry i moves only its own term
        return [gc.check_gradient(forward, x, outputs[0], dout=dout, scale=scale, name="dx")]
    return check


def _fd_loss(forward, loss_name, floor: float = 0.0):
    """Finite differences of a loss; ``floor`` adds to the size of its terms (see the softmax's)."""
    def check(example, outputs):
        logits, targets = example.args
        value = float(forward(logits, targets))
        scale = loss_magnitude(loss_name, logits, targets, value) + floor
        return [gc.check_gradient(lambda z: forward(z, targets), logits, outputs[0], scale=scale, name="dlogits")]
    return check


def _fd_linear(example, outputs):
    dout, x, w = example.args
    b = np.zeros(w.shape[1])
    scale = float(np.sum(np.abs(dout) * (np.abs(x) @ np.abs(w))))  # what the outputs are summed from
    reports = []
    if outputs[0] is not None:
        reports.append(gc.check_gradient(lambda x_: x_ @ w, x, outputs[0], dout=dout, scale=scale, name="dx"))
    reports.append(gc.check_gradient(lambda w_: x @ w_, w, outputs[1], dout=dout, scale=scale, name="dw"))
    reports.append(gc.check_gradient(lambda b_: x @ w + b_, b, outputs[2], dout=dout, scale=scale, name="db"))
    return reports


def _onehot(labels, k: int) -> np.ndarray:
    return (np.asarray(labels)[:, None] == np.arange(k)).astype(np.float64)


def _sigmoid_mistakes(example):
    dout, x = example.args
    return [
        (0, dout, "σ′ is missing: you passed dout through unchanged; multiply it by the sigmoid's slope at x"),
        (0, dout * layers.sigmoid(x), "you multiplied dout by σ(x), the sigmoid's value; it needs σ′(x), its slope"),
        (0, layers.sigmoid_derivative(x), "dout is missing: multiply the slope by the gradient arriving from above"),
    ]


def _mnist_loss_mistakes(example):
    z, t = example.args
    s, m = 1 - 2 * t, z.size
    return [
        (0, s / m, "σ′ is missing: each entry of the mean moves with the sigmoid's slope at its logit"),
        (0, s * layers.sigmoid(z) / m, "you used σ(z), the sigmoid's value, where its slope σ′(z) belongs"),
        (0, (layers.sigmoid(z) - t) / m, "that is binary cross-entropy's gradient; mnist_loss is the mean of "
                                         "σ(z) for a 7 and 1 - σ(z) for a 3"),
    ]


def _linear_mistakes(example):
    dout, x, w = example.args
    found = []
    if w.shape[0] == w.shape[1]:
        found.append((0, dout @ w, "dx used w where its transpose belongs (the shapes only fit because w is square)"))
    return found


def _relu_mistakes(example):
    dout, x = example.args
    return [
        (0, np.where(x > 0, 0.0, dout), "the ReLU mask is inverted: the gradient must flow where x > 0 and stop "
                                        "where x < 0"),
        (0, np.where(dout > 0, dout, 0.0), "you masked by the sign of dout; the mask comes from the input x"),
        (0, (x > 0).astype(np.float64), "dout is missing: the mask must multiply the gradient from above"),
    ]


def _bce_mistakes(example):
    z, t = example.args
    m = z.size
    sigma = layers.sigmoid(z)
    return [
        (0, (1 - 2 * t) * layers.sigmoid_derivative(z) / m, "that is mnist_loss's gradient, not binary "
                                                            "cross-entropy's"),
        (0, (sigma - t) * layers.sigmoid_derivative(z) / m, "an extra σ′ factor: on logits, the log cancels the "
                                                            "sigmoid's slope"),
    ]


def _softmax_mistakes(example):
    z, labels = example.args
    n, k = z.shape
    p, onehot = layers.softmax(z), _onehot(labels, k)
    return [
        (0, p / n, "the one-hot subtraction is missing: the right class's logit also appears on its own in the "
                   "loss (-z_y), which adds -1 to its slope"),
        (0, -onehot / n, "the softmax part is missing: log(sum_j exp z_j) changes with every logit"),
    ]


def _judges() -> dict[str, _Judge]:
    by_name = {e.name: e for e in EXERCISES}
    ones = Example((np.array([[1.0, -0.5], [0.25, 2.0]]), np.array([[0.5, -1.0], [2.0, -0.3]])))
    logits = Example((np.array([[0.5], [-1.0], [2.0]]), np.array([[1.0], [0.0], [1.0]])))
    return {
        "sigmoid_backward": _Judge(
            by_name["sigmoid_backward"], _elementwise_strategy(_logits), ones,
            magnitudes=lambda ex: ((np.abs(layers.sigmoid_backward(*ex.args)),), 4),
            finite_differences=_fd_elementwise(layers.sigmoid),
            torch=_torch_elementwise(torch_twin.sigmoid_oracle), mistakes=_sigmoid_mistakes, z_arg=1),
        "mnist_loss_backward": _Judge(
            by_name["mnist_loss_backward"], _binary_loss_strategy, logits,
            magnitudes=lambda ex: ((np.abs(losses.mnist_loss_backward(*ex.args)),), 4),
            finite_differences=_fd_loss(losses.mnist_loss, "mnist_loss"),
            torch=_torch_loss("mnist_loss"), mistakes=_mnist_loss_mistakes, mean=True, z_arg=0),
        "linear_backward": _Judge(
            by_name["linear_backward"], _linear_strategy,
            Example((np.array([[1.0, -2.0], [0.5, 0.25]]), np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]]),
                     np.array([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]]))),
            magnitudes=_linear_magnitudes, finite_differences=_fd_linear, torch=_torch_linear,
            mistakes=_linear_mistakes),
        "relu_backward": _Judge(
            by_name["relu_backward"], _elementwise_strategy(lambda st: _signed(st, 1e-3, 10)), ones,
            magnitudes=lambda ex: ((np.abs(ex.args[0]),), 1),
            finite_differences=_fd_elementwise(layers.relu),
            torch=_torch_elementwise(torch_twin.relu_oracle), mistakes=_relu_mistakes),
        "binary_cross_entropy_backward": _Judge(
            by_name["binary_cross_entropy_backward"], _binary_loss_strategy, logits,
            magnitudes=lambda ex: (((layers.sigmoid(ex.args[0]) + np.abs(ex.args[1])) / ex.args[0].size,), 4),
            finite_differences=_fd_loss(losses.binary_cross_entropy, "bce"),
            torch=_torch_loss("bce"), mistakes=_bce_mistakes, mean=True, z_arg=0),
        "softmax_cross_entropy_backward": _Judge(
            by_name["softmax_cross_entropy_backward"], _softmax_strategy,
            Example((np.array([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]]), np.array([2, 0]))),
            magnitudes=lambda ex: (((layers.softmax(ex.args[0]) + _onehot(ex.args[1], ex.args[0].shape[1]))
                                    / ex.args[0].shape[0],), 2 * ex.args[0].shape[1]),
            # log(sum_k exp(z_k - max z)) takes the log of a sum whose largest term is 1: its rounding
            # error is eps absolute even where a confident row's loss is 1e-7, so the terms' size is >= 1.
            finite_differences=_fd_loss(losses.softmax_cross_entropy, "cross_entropy", floor=1.0),
            torch=_torch_loss("cross_entropy"), mistakes=_softmax_mistakes, mean=True),
    }


def _linear_magnitudes(example):
    dout, x, w = example.args
    ad, ax, aw = np.abs(dout), np.abs(x), np.abs(w)
    return (ad @ aw.T, ax.T @ ad, np.sum(ad, axis=0)), max(x.shape + w.shape)


# -- judging one answer -------------------------------------------------------------------------------

def judge(j: _Judge, example: Example, value, *, use_torch: bool) -> Verdict:
    """Compare the learner's ``value`` for ``example`` with the reference, finite differences and PyTorch."""
    ex = j.exercise
    right = j.reference(example)

    outputs, problem = _unpack(ex, value, right)
    if problem is not None:
        return Verdict(False, math.inf, problem=f"{ex.name} {problem}", what="type")

    for out, like, a, r in zip(ex.outputs, ex.like, outputs, right):
        if r is None:
            if a is not None:
                return Verdict(False, math.inf, problem=f"{ex.name} returned an array for {out} with need_dx=False",
                               what="type", hints=(("need_dx", "with need_dx=False return None for dx: nothing "
                                                               "upstream needs it"),))
            continue
        if a is None:
            return Verdict(False, math.inf, problem=f"{ex.name} returned None for {out}", what="type",
                           hints=(("none", f"{out} must be an array of shape {tuple(r.shape)}, like {like}"),))
        if a.shape != r.shape:
            return Verdict(False, math.inf, problem=f"{ex.name} returned {out} of shape {a.shape}, not {r.shape}",
                           what="shape", hints=(("shape", hints.shape_hint(out, a.shape, r.shape, like, a, r)),))
        finite = np.isfinite(a)
        if not finite.all():
            i = tuple(int(k) for k in np.argwhere(~finite)[0])
            z = example.args[j.z_arg if j.z_arg is not None else 0]
            overflow = hints.overflow_hint(ex.name, z)
            return Verdict(False, math.inf, problem=f"{ex.name} returned {a[i]} in {out} at entry {i}; the right "
                                                    f"value is {r[i]:.6g}",
                           what="NaN", hints=(("overflow", overflow),) if overflow else ())

    sizes, terms = j.magnitudes(example)
    worst, failed = 0.0, None
    for out, a, r, size in zip(ex.outputs, outputs, right, sizes):
        if r is None:
            continue
        report = gc.compare(out, a, r, rtol=RTOL, atol=2 * gamma(terms) * size + 4 * _TINY, method="reference")
        worst = max(worst, report.rel_error)
        if not report.ok and failed is None:
            failed = (out, a, r, report)
    if failed is not None:
        out, a, r, report = failed
        z = example.args[j.z_arg] if j.z_arg is not None else None
        mistakes = [(wrong, sentence) for index, wrong, sentence in j.mistakes(example)
                    if ex.outputs[index] == out]
        found = hints.value_hints(out, a, r, mistakes=mistakes, n=j.batch(example), mean=j.mean, inputs=z)
        return Verdict(False, worst, problem=f"{ex.name}: {out} is off by {report.rel_error:.1e} relative at entry "
                                             f"{report.index}: yours {report.analytic:.6g}, right "
                                             f"{report.numeric:.6g}", what="values", hints=tuple(found))

    fd_worst = 0.0
    for report in j.finite_differences(example, outputs):
        fd_worst = max(fd_worst, report.rel_error)
        if not report.ok:
            return Verdict(False, worst, fd_worst, problem=f"{ex.name}: {report.name} disagrees with central finite "
                                                           f"differences: {report}", what="values")
    if use_torch:
        for out, a, t, size in zip(ex.outputs, outputs, j.torch(example), sizes):
            if t is None:
                continue
            report = gc.compare(out, a, t, rtol=RTOL, atol=2 * gamma(terms) * size + 4 * _TINY, method="pytorch")
            worst = max(worst, report.rel_error)
            if not report.ok:
                return Verdict(False, worst, fd_worst, problem=f"{ex.name}: {out} disagrees with PyTorch's autograd: "
                                                               f"{report}", what="values")
    return Verdict(True, worst, fd_worst)


def _unpack(ex: Exercise, value, right: tuple):
    """The learner's outputs as a tuple of float arrays (or None), or a problem in words."""
    if len(ex.outputs) > 1:
        if not isinstance(value, (tuple, list)) or len(value) != len(ex.outputs):
            return None, (f"returned {_what(value)}; it must return {len(ex.outputs)} things, "
                          f"({', '.join(ex.outputs)})")
        values = tuple(value)
    else:
        values = (value,)
    outputs = []
    for out, a, r in zip(ex.outputs, values, right):
        if a is None:
            outputs.append(None)
            continue
        if not isinstance(a, np.ndarray):
            shape = f" of shape {tuple(r.shape)}" if r is not None else ""
            hint = "; did you forget `return`?" if value is None else ""
            return None, f"returned {_what(a)} for {out}; it must be a NumPy array{shape}{hint}"
        if not np.issubdtype(a.dtype, np.floating):
            return None, (f"returned {out} of dtype {a.dtype}; it must hold floating-point numbers like its "
                          "inputs (float64 here)")
        outputs.append(a.astype(np.float64, copy=False))
    if len(ex.outputs) == 1 and outputs[0] is None:
        return None, "returned None; it must return a NumPy array: did you forget `return`?"
    return tuple(outputs), None


def _what(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, Foreign):
        return f"a {value.type_name} ({value.text})"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    return f"a {type(value).__name__} ({value!r})"


# -- the check ----------------------------------------------------------------------------------------

def check_file(path: str | Path, *, examples: int = DEFAULT_EXAMPLES, timeout: float = DEFAULT_TIMEOUT,
               use_torch: bool = True, sandbox: Sandbox | None = None) -> CheckReport:
    """Check every exercise in the learner's file; a :class:`CheckReport`.

    Raises :class:`~numpy_mnist.exercise.sandbox.LearnerFileError` when the file cannot be loaded, and
    a :class:`~numpy_mnist.errors.NumpyMnistError` when hypothesis is missing.
    """
    given, settings = _hypothesis(examples)
    torch_missing = None if use_torch else "not asked for"
    if use_torch and not torch_twin.available():
        torch_missing = "not installed"
    judges = _judges()
    own = sandbox is None
    box = sandbox if sandbox is not None else Sandbox(path, timeout=timeout)
    try:
        box.start()
        results = [_check_one(box, judges[e.name], given, settings, use_torch=torch_missing is None)
                   for e in EXERCISES]
    finally:
        if own:
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


def _check_one(box: Sandbox, j: _Judge, given, settings, *, use_torch: bool) -> FunctionResult:
    ex = j.exercise
    kind = box.defined.get(ex.name, "missing")
    if kind == "missing":
        return FunctionResult(ex.name, "to do", note="not defined in the file")
    if kind != "function":
        return FunctionResult(ex.name, "FAIL", problem=f"{ex.name} is defined but is not a function", what="type")

    try:
        box.call(ex.name, j.probe.args, j.probe.kwargs, arg_names=ex.inputs)
    except CallFailed as failed:
        if failed.kind == "raised" and failed.exception == "NotImplementedError":
            return FunctionResult(ex.name, "to do")
        if failed.sticky:
            return FunctionResult(ex.name, "FAIL", examples=1, problem=failed.message, what="call",
                                  example=j.probe.describe(ex.inputs), found="first", sticky=True)

    from hypothesis.errors import Flaky

    state = {"examples": 0, "worst": 0.0, "fd_worst": 0.0, "sticky": None, "first": None}

    def attempt(example: Example) -> None:
        if state["sticky"] is not None:  # calling again would only hang or crash again
            raise state["sticky"]
        failure = _attempt(box, j, example, use_torch, state)
        if failure is not None:
            if failure.verdict.what == "call" and state["sticky"] is None and failure.sticky:
                state["sticky"] = failure
            if state["first"] is None:
                state["first"] = failure
            raise failure

    test = settings(given(j.strategy(*_strategy_modules()))(attempt))
    try:
        test()
    except _CheckFailed as failure:
        sticky = state["sticky"] is not None
        shown = state["sticky"] if sticky else _smallest(box, j, failure, use_torch, state)
        hint = _choose_hint(shown.verdict.hints, state["first"].verdict.hints if state["first"] else ())
        return FunctionResult(ex.name, "FAIL", examples=state["examples"], worst=state["worst"],
                              fd_worst=state["fd_worst"], problem=shown.verdict.problem, hint=hint,
                              what=shown.verdict.what, example=shown.example.describe(ex.inputs),
                              found="first" if sticky else "shrunk", sticky=sticky)
    except Flaky:
        return FunctionResult(ex.name, "FAIL", examples=state["examples"], worst=state["worst"],
                              fd_worst=state["fd_worst"], what="call",
                              problem=f"{ex.name} fails on some runs and not on others for the same input "
                                      "(does it use random numbers or keep state between calls?)")
    return FunctionResult(ex.name, "pass", examples=state["examples"], worst=state["worst"],
                          fd_worst=state["fd_worst"])


def _attempt(box: Sandbox, j: _Judge, example: Example, use_torch: bool, state: dict) -> _CheckFailed | None:
    """Run and judge one example; the failure, or None when it passes."""
    ex = j.exercise
    state["examples"] += 1
    try:
        value = box.call(ex.name, example.args, example.kwargs, arg_names=ex.inputs)
    except CallFailed as failed:
        hint = _exception_hint(j, example, failed)
        verdict = Verdict(False, math.inf, problem=failed.message, what="call",
                          hints=(("exception", hint),) if hint else ())
        return _CheckFailed(verdict, example, sticky=failed.sticky)
    verdict = judge(j, example, value, use_torch=use_torch)
    state["worst"] = max(state["worst"], verdict.rel_error)
    if not math.isnan(verdict.fd_error):
        state["fd_worst"] = max(state["fd_worst"], verdict.fd_error)
    return None if verdict.ok else _CheckFailed(verdict, example)


def _smallest(box: Sandbox, j: _Judge, failure: _CheckFailed, use_torch: bool, state: dict) -> _CheckFailed:
    """hypothesis's smallest failing input, or smaller still: one of its rows or entries that fails alone.

    (hypothesis shrinks an array's shape and its values, but cannot always bring the one failing
    entry to the front; for a function that works row by row a single row says the same, shorter.)
    """
    for smaller in _parts(j, failure.example):
        found = _attempt(box, j, smaller, use_torch, state)
        if found is not None and found.verdict.what == failure.verdict.what:
            return found
        if found is not None and found.sticky:
            break
    return failure


def _parts(j: _Judge, example: Example):
    """Single entries (elementwise functions), then single rows, of a multi-row ``example``."""
    if j.exercise.name == "linear_backward":
        return
    first = np.asarray(example.args[0])
    if first.size <= 1:
        return
    if j.exercise.name in ("sigmoid_backward", "relu_backward"):
        for i in np.ndindex(first.shape):
            yield Example(tuple(np.asarray(a)[i][None, None] for a in example.args), example.kwargs)
    if first.shape[0] > 1:
        for row in range(first.shape[0]):
            yield Example(tuple(np.asarray(a)[row:row + 1] for a in example.args), example.kwargs)


def _choose_hint(shown: tuple, first: tuple) -> str | None:
    """The hint for the input shown: of its explanations, the first that also explains the first failure
    hypothesis met (a larger, random input, where coincidences are rare); else its first."""
    first_keys = {key for key, _ in first}
    for key, sentence in shown:
        if key in first_keys:
            return sentence
    if shown:
        return shown[0][1]
    return first[0][1] if first else None


def _strategy_modules():
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    return st, hnp


def _exception_hint(j: _Judge, example: Example, failed: CallFailed) -> str | None:
    if failed.kind != "raised":
        return None
    ex = j.exercise
    shapes = {name: tuple(np.shape(a)) for name, a in zip(ex.inputs, example.args)}
    results = {name: tuple(r.shape) for name, r in zip(ex.outputs, j.reference(example)) if r is not None}
    return hints.exception_hint(failed.message, shapes, results)
