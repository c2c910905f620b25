"""Differentiable pieces as forward/backward pairs, every derivative written out by hand.

Each ``*_backward`` takes the upstream gradient ``dout`` (d loss / d output) and what the forward
pass saw, and returns new arrays: it never writes into ``dout`` or its other inputs.  All functions
work on any Array-API namespace (NumPy, CuPy, array_api_strict); the namespace is read off the
arguments.
"""

from __future__ import annotations

from array_api_compat import array_namespace

__all__ = [
    "linear",
    "linear_backward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_derivative",
    "relu",
    "relu_backward",
    "log_softmax",
    "softmax",
]


def linear(x, w, b):
    """The book's linear model ``xb @ weights + bias``.

    Shapes: ``x`` (N, D_in), ``w`` (D_in, D_out), ``b`` (D_out,) -> (N, D_out).
    """
    return x @ w + b


def linear_backward(dout, x, w, *, need_dx: bool = True):
    """Gradients of ``out = x @ w + b``.

    With ``out[n, j] = sum_i x[n, i] w[i, j] + b[j]``::

        d loss / d x = dout @ w.T          (N, D_in)
        d loss / d w = x.T  @ dout         (D_in, D_out)
        d loss / d b = sum_n dout[n, :]    (D_out,)

    ``need_dx=False`` skips ``dx`` (returned as ``None``): nothing upstream of the images needs it,
    and it is the largest product of the layer.
    """
    xp = array_namespace(dout)
    dx = dout @ w.T if need_dx else None
    dw = x.T @ dout
    db = xp.sum(dout, axis=0)
    return dx, dw, db


def sigmoid(x):
    """The logistic function ``sigma(x) = 1 / (1 + exp(-x))``, without overflow.

    ``exp(-x)`` overflows for x < -88.7 in float32.  With ``e = exp(-|x|)``, which lies in (0, 1]::

        sigma(x) = 1 / (1 + e)      for x >= 0
        sigma(x) = e / (1 + e)      for x <  0   (multiply top and bottom by exp(x))

    Both branches are exact rewritings, are accurate to the last bits, and never overflow.
    """
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)


def sigmoid_derivative(x):
    """``d sigma / dx = sigma(x) (1 - sigma(x)) = sigma(x) sigma(-x) = e / (1 + e)^2``, ``e = exp(-|x|)``.

    The textbook form ``y * (1 - y)`` loses every digit of ``1 - y`` once ``y`` rounds to 1
    (x > 16.6 in float32); the symmetric form keeps full relative precision for all x.
    """
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return e * r * r


def sigmoid_backward(dout, x):
    """Gradient through ``y = sigmoid(x)``: ``dx = dout * sigma(x) * (1 - sigma(x))`` (elementwise)."""
    return dout * sigmoid_derivative(x)


def relu(x):
    """Rectified linear unit ``max(x, 0)``, elementwise."""
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros_like(x))


def relu_backward(dout, x):
    """Gradient through ``relu``: ``dx = dout`` where ``x > 0``, else 0.

    The derivative at exactly ``x = 0`` is taken as 0, as PyTorch does.
    """
    xp = array_namespace(x)
    return xp.where(x > 0, dout, xp.zeros_like(dout))


def log_softmax(z):
    """``log softmax(z)`` along the last axis, without overflow: ``z - logsumexp(z)``.

    With ``m = max_k z[..., k]`` (a shift that changes nothing, since softmax is invariant to adding
    a constant to every logit of a row)::

        log softmax(z)_j = (z_j - m) - log sum_k exp(z_k - m)

    Every ``exp`` argument is <= 0, so nothing overflows, and the largest term of the sum is exactly
    1, so the ``log`` never sees 0.  Shapes: (..., K) -> (..., K).
    """
    xp = array_namespace(z)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(z):
    """``softmax(z)_j = exp(z_j) / sum_k exp(z_k)`` along the last axis, computed as ``exp(z_j - m) /
    sum_k exp(z_k - m)`` with ``m = max_k z_k`` so that no ``exp`` overflows.  Shapes: (..., K) -> (..., K).

    Rows sum to 1.  Its Jacobian, ``d softmax_j / d z_i = softmax_j ([i == j] - softmax_i)``, is never
    needed on its own here: composed with cross-entropy it collapses to ``softmax - onehot`` (see
    :func:`numpy_mnist.losses.softmax_cross_entropy_backward`).
    """
    xp = array_namespace(z)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)
