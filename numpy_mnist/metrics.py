"""Metrics: what a person reads.  Accuracy cannot be a loss: its gradient is zero almost everywhere."""

from __future__ import annotations

from numpy_mnist.checks import check_same_shape
from numpy_mnist.layers import sigmoid

__all__ = ["batch_accuracy", "correct_count"]


def correct_count(logits, targets):
    """Number of right predictions in a batch, as a 0-d array.

    One output: the book's rule ``sigmoid(logits) > 0.5`` against ``targets == 1``.
    Several outputs: ``argmax`` of the logits against integer labels of shape (N,).
    """
    xp = logits.__array_namespace__()
    if logits.shape[-1] == 1:
        check_same_shape(logits, targets)
        correct = (sigmoid(logits) > 0.5) == (targets == 1)
    else:
        correct = xp.argmax(logits, axis=-1) == xp.astype(targets, xp.int64)
    return xp.sum(xp.astype(correct, logits.dtype))


def batch_accuracy(logits, targets):
    """The book's ``batch_accuracy``: the fraction of the batch predicted right (0-d array)."""
    return correct_count(logits, targets) / targets.shape[0]
