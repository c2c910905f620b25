"""Losses on raw logits, each a forward (the mean loss, a 0-d array) and a hand-derived backward.

The backward returns ``d loss / d logits`` for the *mean* loss, with the shape of the logits.
Losses take logits, never probabilities: the sigmoid lives inside the loss, exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from numpy_mnist.checks import check_same_shape
from numpy_mnist.errors import InputError
from numpy_mnist.layers import sigmoid, sigmoid_derivative

__all__ = [
    "Loss",
    "LOSSES",
    "get_loss",
    "mnist_loss",
    "mnist_loss_backward",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
]


def mnist_loss(logits, targets):
    """The book's loss: ``where(targets == 1, 1 - p, p).mean()`` with ``p = sigmoid(logits)``.

    For a 3 (target 1) the loss is how far ``p`` is below 1; for a 7 (target 0), how far above 0.
    Since ``1 - sigma(z) = sigma(-z)``, with the sign ``s = 1 - 2 t`` (-1 for a 3, +1 for a 7)::

        loss = (1 / M) sum sigma(s * z)          M = number of elements of ``logits``

    which computes ``1 - p`` as ``sigma(-z)`` and so keeps every digit where ``p`` is close to 1.
    Shapes: ``logits`` and ``targets`` both (N, 1) (or any one shape, the same for both).
    """
    check_same_shape(logits, targets)
    xp = logits.__array_namespace__()
    return xp.mean(sigmoid((1 - 2 * targets) * logits))


def mnist_loss_backward(logits, targets):
    """``d mnist_loss / d z = s * sigma'(z) / M`` with ``s = 1 - 2 t`` and ``sigma' = sigma (1 - sigma)``.

    From ``loss = (1/M) sum sigma(s z)`` and the chain rule, ``d sigma(s z) / dz = s sigma'(s z)``,
    and ``sigma'`` is even (``sigma'(-z) = sigma'(z)``).  So a 3 is pushed up and a 7 pushed down,
    each by the slope of the sigmoid at its logit: nearly nothing once a prediction is confident.
    """
    check_same_shape(logits, targets)
    m = _size(logits)
    return (1 - 2 * targets) * sigmoid_derivative(logits) / m


def binary_cross_entropy(logits, targets):
    """Binary cross-entropy on logits, the better-behaved loss the book points to.

    ``loss = -(1/M) sum [t log sigma(z) + (1 - t) log(1 - sigma(z))]``, which simplifies to::

        loss = (1/M) sum [softplus(z) - t z],    softplus(z) = log(1 + e^z)
                                                             = max(z, 0) + log1p(exp(-|z|))

    The right-hand form never overflows and never takes the log of a rounded-off 0.
    """
    check_same_shape(logits, targets)
    xp = logits.__array_namespace__()
    softplus = xp.maximum(logits, xp.zeros_like(logits)) + xp.log1p(xp.exp(-xp.abs(logits)))
    return xp.mean(softplus - targets * logits)


def binary_cross_entropy_backward(logits, targets):
    """``d loss / d z = (sigma(z) - t) / M``: softplus' = sigma, and d(t z)/dz = t."""
    check_same_shape(logits, targets)
    return (sigmoid(logits) - targets) / _size(logits)


def _size(x) -> int:
    size = 1
    for n in x.shape:
        size *= n
    return size


@dataclass(frozen=True)
class Loss:
    """A named loss: ``forward(logits, targets) -> 0-d array`` and its ``backward -> dlogits``."""

    name: str
    forward: Callable
    backward: Callable


LOSSES: dict[str, Loss] = {
    "mnist_loss": Loss("mnist_loss", mnist_loss, mnist_loss_backward),
    "bce": Loss("bce", binary_cross_entropy, binary_cross_entropy_backward),
}


def get_loss(loss: str | Loss) -> Loss:
    """The :class:`Loss` called ``loss`` (or ``loss`` itself)."""
    if isinstance(loss, Loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise InputError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}") from None
