"""Hints read off the comparison itself: what a wrong answer is, in terms of the right one.

Given the learner's array ``a`` and the right one ``r`` for the same inputs, a few questions tell most
mistakes apart without guessing at the code:

* the shape: is it the transposed shape, or the batch axis left in (or summed away)?
* a known mistake: is ``a`` exactly what a common slip computes (σ′ left out, the ReLU mask inverted,
  softmax without the one-hot)?  The :mod:`~numpy_mnist.exercise.checker` lists those per function
  and hands them in as ``mistakes``;
* a constant factor: is ``a = c r`` for one number ``c``?  Then ``c = -1`` is a flipped sign,
  ``c = N`` a missing ``1/N`` of the mean, ``c = 1/N`` one too many;
* a transpose: is ``a = r.T``?
* precision: is ``a`` right wherever the input is moderate and wrong only where ``|z|`` is large
  (``1 - sigmoid(z)`` rounding to 0)?

Each answer is one sentence, or None when the comparison allows none.
"""

from __future__ import annotations

import numpy as np

__all__ = ["close", "shape_hint", "value_hints", "overflow_hint", "exception_hint", "PRECISION_EDGE"]

#: Inputs at least this large in magnitude are where ``1 - sigmoid(z)`` loses its digits (float64).
PRECISION_EDGE = 15.0


def close(a, b, *, rtol: float = 1e-6) -> bool:
    """True when ``a`` and ``b`` have one shape and agree to ``rtol`` relative (a tiny absolute floor
    scaled by ``b``'s largest entry covers entries that are 0 in one of them)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    floor = 1e-9 * float(np.max(np.abs(b), initial=0.0)) + 1e-300
    return bool(np.all(np.abs(a - b) <= rtol * np.maximum(np.abs(a), np.abs(b)) + floor))


def shape_hint(output: str, got: tuple, want: tuple, like: str, a=None, r=None) -> str:
    """``"your dw is (1, 3); it must be (3, 1), like w"`` and what the difference suggests."""
    text = f"your {output} is {got}; it must be {want}, like {like}"
    if len(got) == 2 and got == want[::-1] and got != want:
        if a is not None and r is not None and close(a, np.asarray(r).T):
            return text + ": yours is exactly its transpose"
        return text + ": the transposed shape (check which operand of each product is transposed)"
    if len(got) == len(want) + 1 and got[1:] == want:
        return text + ": one entry per output, so sum over the batch axis (axis 0)"
    if len(want) == 2 and want[1] == 1 and got == want[:1]:
        return text + ": keep the column axis (the result must broadcast exactly like the logits)"
    return text


def value_hints(output: str, a, r, *, mistakes=(), n: int | None = None, mean: bool = False,
                inputs=None) -> list[tuple[str, str]]:
    """Every sentence that explains how ``a`` (the learner's, same shape as ``r``) differs from the right
    ``r``, most telling first, each with a key naming its kind (``"factor:N"``, ``"mistake:0"``, ...).

    ``mistakes``: ``(array, sentence)`` pairs, each what a known slip computes for these inputs.
    ``n``: the batch size N, to recognise a factor N or 1/N; ``mean``: the function is the gradient
    of a mean (so a factor N is the mean's missing 1/N).  ``inputs``: the input of an elementwise
    function (same shape), to recognise a loss of precision at large |z|.

    On a small input several explanations can fit at once (at z = 0, sigma(z) is exactly twice
    sigma'(z)); the checker keeps the one that also fits another failing input.
    """
    a, r = np.asarray(a, dtype=np.float64), np.asarray(r, dtype=np.float64)
    found = []
    for i, (wrong, sentence) in enumerate(mistakes):
        if wrong is not None and close(a, wrong) and not close(wrong, r):
            found.append((f"mistake:{i}", sentence))
    if inputs is not None:
        precision = _precision_hint(a, r, np.asarray(inputs, dtype=np.float64))
        if precision is not None:
            found.append(("precision", precision))
    factor = _factor(a, r)
    if factor is not None:
        found.append(_factor_sentence(output, factor, n, mean))
    if a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 and close(a, r.T):
        found.append(("transpose", f"your {output} is exactly the transpose of the right one"))
    return found


def overflow_hint(function: str, inputs) -> str | None:
    """For a NaN or inf where the right answer is finite: the input large enough to overflow ``exp``."""
    inputs = np.asarray(inputs, dtype=np.float64)
    largest = float(np.max(np.abs(inputs), initial=0.0))
    if largest < 709:
        return None
    if function == "softmax_cross_entropy_backward":
        return (f"exp overflows past 709 (here a logit of {largest:.4g}): softmax does not change when the same "
                "number is taken from every logit of a row, so take each row's largest first")
    return (f"exp overflows past 709 (here |z| = {largest:.4g}): write the sigmoid and its slope with "
            "exp(-|z|), which never exceeds 1")


def exception_hint(message: str, shapes: dict[str, tuple], results: dict[str, tuple]) -> str | None:
    """For a shape error raised inside the learner's code: the shapes in and the shapes wanted."""
    words = ("shape", "broadcast", "matmul", "dimension", "aligned")
    if not any(w in message for w in words):
        return None
    given = ", ".join(f"{k} is {v}" for k, v in shapes.items())
    wanted = ", ".join(f"{k} {v}" for k, v in results.items())
    return f"the shapes do not fit: here {given}; the result must be {wanted}"


def _factor(a: np.ndarray, r: np.ndarray) -> float | None:
    """``c`` when ``a = c r`` for one number ``c`` (least squares, then checked entry by entry)."""
    rr = float(np.sum(r * r))
    if not rr > 0 or not np.all(np.isfinite(a)):
        return None
    c = float(np.sum(a * r)) / rr
    if c == 0 or _near(c, 1) or not close(a, c * r):
        return None
    return c


def _near(c: float, target: float) -> bool:
    return abs(c - target) <= 1e-6 * abs(target)


def _factor_sentence(output: str, c: float, n: int | None, mean: bool) -> tuple[str, str]:
    if _near(c, -1):
        return "factor:-1", f"your {output} is exactly the negative of the right one: a sign is flipped"
    if n is not None and n > 1:
        if _near(c, n):
            return "factor:N", (f"off by exactly 1/N (N = {n}): the mean's 1/N is missing" if mean
                                else f"your {output} is exactly N times too large (N = {n})")
        if _near(c, -n):
            return "factor:-N", (f"exactly -N times the right one (N = {n}): a sign is flipped and the mean's "
                                 "1/N is missing")
        if _near(c, 1 / n):
            return "factor:1/N", (f"exactly N times too small (N = {n}): divided by N once too often" if mean
                                  else f"exactly N times too small (N = {n}): a layer's gradients are sums over "
                                       "the batch, not means")
        if _near(c, -1 / n):
            return "factor:-1/N", (f"exactly -1/N times the right one (N = {n}): a sign is flipped and divided "
                                   "by N once too often")
    if _near(c, 2):
        return "factor:2", f"your {output} is exactly twice the right one"
    if _near(c, 0.5):
        return "factor:1/2", f"your {output} is exactly half the right one"
    return "factor", f"your {output} is a constant {c:.6g} times the right one"


def _precision_hint(a: np.ndarray, r: np.ndarray, z: np.ndarray) -> str | None:
    if z.shape != a.shape:
        return None
    bad = np.abs(a - r) > 1e-6 * np.maximum(np.abs(a), np.abs(r)) + 1e-300
    if not bad.any() or np.any(bad & (np.abs(z) < PRECISION_EDGE)):
        return None
    i = tuple(int(k) for k in np.argwhere(bad)[0])
    return (f"right for moderate inputs, but it loses its digits at large |z| (at z = {z[i]:.6g}: yours "
            f"{a[i]:.6g}, right {r[i]:.6g}): 1 - sigmoid(z) rounds to 0 once sigmoid(z) rounds to 1; "
            "write the slope so that nothing is taken from a number close to 1 (sigmoid(-z) = 1 - sigmoid(z))")
