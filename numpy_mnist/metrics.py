"""Metrics: what a person reads.  Accuracy cannot be a loss: its gradient is zero almost everywhere."""

from __future__ import annotations

from array_api_compat import array_namespace

from numpy_mnist.backends.host import to_numpy
from numpy_mnist.checks import check_same_shape
from numpy_mnist.layers import sigmoid
from numpy_mnist.losses import check_class_labels

__all__ = ["batch_accuracy", "correct_count", "confusion_matrix", "model_confusion_matrix", "confusion_table"]


def correct_count(logits, targets):
    """Number of right predictions in a batch, as a 0-d array.

    One output: the book's rule ``sigmoid(logits) > 0.5`` against ``targets == 1``.
    Several outputs: ``argmax`` of the logits against integer labels of shape (N,).
    """
    xp = array_namespace(logits)
    if logits.shape[-1] == 1:
        check_same_shape(logits, targets)
        correct = (sigmoid(logits) > 0.5) == (targets == 1)
    else:
        correct = xp.argmax(logits, axis=-1) == xp.astype(targets, xp.int64)
    return xp.sum(xp.astype(correct, logits.dtype))


def batch_accuracy(logits, targets):
    """The book's ``batch_accuracy``: the fraction of the batch predicted right (0-d array)."""
    return correct_count(logits, targets) / targets.shape[0]


def confusion_matrix(logits, labels):
    """Counts ``cm[i, j]`` of images of class ``i`` predicted as class ``j`` (argmax of the logits).

    Shapes: ``logits`` (N, K), integer ``labels`` (N,) -> int64 (K, K); the diagonal holds the right
    answers, row ``i`` sums to the number of images of class ``i``.  Computed without a scatter (which
    the Array API lacks) as a product of one-hot matrices: ``cm = onehot(labels).T @ onehot(pred)``.
    """
    check_class_labels(logits, labels)
    xp = array_namespace(logits)
    classes = xp.arange(logits.shape[-1], dtype=xp.int64)
    actual = xp.astype(xp.astype(labels, xp.int64)[:, None] == classes, xp.int64)
    predicted = xp.astype(xp.argmax(logits, axis=-1)[:, None] == classes, xp.int64)
    return actual.T @ predicted


def model_confusion_matrix(model, loader):
    """:func:`confusion_matrix` of ``model`` over every batch of ``loader``, summed (int64 (K, K))."""
    total = None
    for xb, yb in loader:
        cm = confusion_matrix(model.forward(xb), yb)
        total = cm if total is None else total + cm
    return total


def confusion_table(cm, labels=None) -> str:
    """A confusion matrix (nested lists, or an array of any backend) as an aligned text table.

    Rows are the true classes, columns the predicted ones; a last column gives each class's recall
    (the fraction of its images predicted right) and a last row the totals predicted per class.
    """
    rows = to_numpy(cm).tolist()
    k = len(rows)
    labels = [str(i) for i in range(k)] if labels is None else [str(label) for label in labels]
    width = max(5, max(len(str(v)) for r in rows for v in r) + 1, max(len(s) for s in labels) + 1)
    lines = ["true \\ predicted".ljust(17) + "".join(s.rjust(width) for s in labels) + "  recall".rjust(9)]
    for i, (label, r) in enumerate(zip(labels, rows)):
        total = sum(r)
        recall = f"{r[i] / total:.4f}" if total else "-"
        lines.append(label.ljust(17) + "".join(str(v).rjust(width) for v in r) + recall.rjust(9))
    lines.append("total".ljust(17) + "".join(str(sum(r[j] for r in rows)).rjust(width) for j in range(k)))
    return "\n".join(lines)
