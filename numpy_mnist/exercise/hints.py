"""Hints read off the comparison itself: what a wrong answer is, in terms of the right one.

Given the learner's array ``a`` and the right one ``r`` for the same inputs, a few questions tell most
mistakes apart without guessing at the code:

* the shape: is it the transposed shape, or the batch axis left in (or summed away)?
* a known slip (each exercise's ``slips``): is ``a`` exactly what it computes (σ′ left out, the ReLU
  mask inverted, softmax without the one-hot, a kernel flipped, a batch-norm sum left out)?
* a constant factor: is ``a = c r`` for one number ``c``?  Then ``c = -1`` is a flipped sign,
  ``c = N`` a missing ``1/N`` of the mean, ``c = 1/N`` one too many;
* a transpose: is ``a`` the right one with its last two axes swapped?
* precision: is ``a`` right wherever the input is moderate and wrong only where ``|z|`` is large
  (``1 - sigmoid(z)`` rounding to 0)?

"Exactly" is to the checker's one tolerance (:data:`numpy_mnist.gradcheck.TOLERANCE`).  Each answer
is one sentence, or None when the comparison allows none.
"""

from __future__ import annotations

import numpy as np

from numpy_mnist.exercise.sandbox import MEMORY_LIMIT
from numpy_mnist.gradcheck import TOLERANCE

__all__ = ["close", "shape_hint", "value_hints", "overflow_hint", "call_hints", "PRECISION_EDGE"]

#: Inputs at least this large in magnitude are where ``1 - sigmoid(z)`` loses its digits (float64).
PRECISION_EDGE = 15.0
_RTOL = TOLERANCE.rtol


def _bad(a, b, floor: float | None = None) -> np.ndarray:
    """Entries where ``a`` and ``b`` differ beyond the tolerance; the floor (by default ``rtol / 1000``
    of ``b``'s largest entry) covers entries that are 0 in one of them."""
    floor = 1e-3 * _RTOL * float(np.max(np.abs(b), initial=0.0)) + 1e-300 if floor is None else floor
    return ~(np.abs(a - b) <= _RTOL * np.maximum(np.abs(a), np.abs(b)) + floor)


def close(a, b) -> bool:
    """True when ``a`` and ``b`` have one shape, are finite, and agree to the tolerance."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool(np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and not _bad(a, b).any())


def shape_hint(output: str, a, r) -> str:
    """``"your dw is (1, 3); it must be (3, 1), like w"`` and what the difference suggests, for the
    learner's ``a`` and the right ``r`` (``output`` differentiates, and is shaped like, ``output[1:]``)."""
    got, want = a.shape, r.shape
    text = f"your {output} is {got}; it must be {want}, like {output[1:]}"
    if len(got) >= 2 and got[:-2] + got[:-3:-1] == want:
        return text + (": yours is exactly its transpose" if close(a, np.swapaxes(r, -1, -2)) else
                       ": the transposed shape (check which operand of each product is transposed)")
    if len(got) == len(want) + 1 and got[1:] == want:
        return text + ": one entry per output, so sum over the batch axis (axis 0)"
    if len(want) == 2 and want[1] == 1 and got == want[:1]:
        return text + ": keep the column axis (the result must broadcast exactly like the logits)"
    return text


def value_hints(output: str, a, r, *, mistakes=(), n: int = 1, mean: bool = False,
                inputs=None) -> list[tuple[str, str]]:
    """Every ``(key, sentence)`` that explains how ``a`` (the learner's, shaped like the right ``r``)
    differs, most telling first; the key names its kind (``"factor:N"``, ``"mistake:0"``, ...).

    ``mistakes``: ``(array, sentence)`` pairs, what known slips compute here; ``n``: the batch size,
    to recognise a factor N or 1/N; ``mean``: the function is the gradient of a mean; ``inputs``: the
    input z of an elementwise function, to recognise a loss of precision at large |z|.  On a small
    input several can fit at once (at z = 0, sigma(z) is twice sigma'(z)); the checker keeps the
    one that also fits another failing input.
    """
    found = [(f"mistake:{i}", sentence) for i, (wrong, sentence) in enumerate(mistakes)
             if close(a, wrong) and not close(wrong, r)]
    if inputs is not None and (precision := _precision_hint(a, r, np.asarray(inputs, dtype=np.float64))):
        found.append(("precision", precision))
    if (factor := _factor(a, r)) is not None:
        found.append(_factor_sentence(output, factor, n, mean))
    if a.ndim >= 2 and a.shape[-2] == a.shape[-1] > 1 and close(a, np.swapaxes(r, -1, -2)):
        found.append(("transpose", f"your {output} is exactly the transpose of the right one"))
    return found


def overflow_hint(fix: str | None, inputs) -> str | None:
    """For a NaN or inf where the right answer is finite: the input large enough to overflow ``exp``,
    and ``fix``, the exercise's way around it."""
    largest = float(np.max(np.abs(np.asarray(inputs, dtype=np.float64)), initial=0.0))
    return f"exp overflows past 709 (here |z| = {largest:.4g}): {fix}" if fix and largest >= 709 else None


def call_hints(failure, names, args, results: dict[str, tuple]) -> list[tuple[str, str]]:
    """For a call that raised (``failure``, a :class:`~numpy_mnist.exercise.sandbox.Failure`) on
    ``args`` (named ``names``): a ``MemoryError`` against the sandbox's memory limit, and a shape
    error against the shapes in and the ``results`` wanted."""
    given = ", ".join(f"{k} is {tuple(np.shape(v))}" for k, v in zip(names, args))
    if failure.how != "raised":
        return []
    if failure.exception == "MemoryError":
        return [("memory", f"it ran out of memory (MemoryError): the sandbox lets your function allocate at most "
                           f"{MEMORY_LIMIT / 2**30:g} GiB, and inputs like these ({given}) need a few kilobytes; look "
                           "for an array sized by something other than the inputs' shapes")]
    if any(word in failure.problem for word in ("shape", "broadcast", "matmul", "dimension", "aligned")):
        wanted = ", ".join(f"{k} {v}" for k, v in results.items())
        return [("exception", f"the shapes do not fit: here {given}; the result must be {wanted}")]
    return []


def _factor(a: np.ndarray, r: np.ndarray) -> float | None:
    """``c`` when ``a = c r`` for one number ``c`` (least squares, then checked entry by entry)."""
    rr = float(np.sum(r * r))
    if not rr > 0 or not np.all(np.isfinite(a)):
        return None
    c = float(np.sum(a * r)) / rr
    return None if c == 0 or _near(c, 1) or not close(a, c * r) else c


def _near(c: float, target: float) -> bool:
    return abs(c - target) <= _RTOL * abs(target)


def _factor_sentence(output: str, c: float, n: int, mean: bool) -> tuple[str, str]:
    """The sentence for ``a = c r``; for a factor N or 1/N, one for the gradient of a mean (a loss) and
    one for a layer's (whose gradients are sums over the batch)."""
    sentences = {
        -1: ("factor:-1", f"your {output} is exactly the negative of the right one: a sign is flipped"),
        2: ("factor:2", f"your {output} is exactly twice the right one"),
        0.5: ("factor:1/2", f"your {output} is exactly half the right one"),
    }
    if n > 1:
        sentences.update({
            n: ("factor:N", f"off by exactly 1/N (N = {n}): the mean's 1/N is missing" if mean
                else f"your {output} is exactly N times too large (N = {n})"),
            -n: ("factor:-N", f"exactly -N times the right one (N = {n}): a sign is flipped and the mean's 1/N "
                              "is missing"),
            1 / n: ("factor:1/N", f"exactly N times too small (N = {n}): divided by N once too often" if mean
                    else f"exactly N times too small (N = {n}): a layer's gradients are sums over the batch, "
                         "not means"),
            -1 / n: ("factor:-1/N", f"exactly -1/N times the right one (N = {n}): a sign is flipped and divided "
                                    "by N once too often"),
        })
    return next((s for target, s in sentences.items() if _near(c, target)),
                ("factor", f"your {output} is a constant {c:.6g} times the right one"))


def _precision_hint(a: np.ndarray, r: np.ndarray, z: np.ndarray) -> str | None:
    bad = _bad(a, r, floor=1e-300) if z.shape == a.shape else None
    if bad is None or not bad.any() or np.any(bad & (np.abs(z) < PRECISION_EDGE)):
        return None
    i = tuple(int(k) for k in np.argwhere(bad)[0])
    return (f"right for moderate inputs, but it loses its digits at large |z| (at z = {z[i]:.6g}: yours "
            f"{a[i]:.6g}, right {r[i]:.6g}): 1 - sigmoid(z) rounds to 0 once sigmoid(z) rounds to 1; "
            "write the slope so that nothing is taken from a number close to 1 (sigmoid(-z) = 1 - sigmoid(z))")
