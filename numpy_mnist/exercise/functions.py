"""The six exercises: which backward function, its reference, and what the learner is told.

In the book's order: the sigmoid, the book's ``mnist_loss``, the linear layer, the ReLU, then the two
losses the book points to (binary cross-entropy on logits, softmax cross-entropy).  Each
:class:`Exercise` names the reference it is checked against (:mod:`numpy_mnist.layers`,
:mod:`numpy_mnist.losses`), the forward whose slope it is, the names and shapes of its inputs and
outputs, and the starter's docstring: what to compute and the shapes, never the answer.

This module imports only NumPy and the reference: the checker's child process imports it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from numpy_mnist import layers, losses

__all__ = ["Exercise", "EXERCISES", "EXERCISE_NAMES", "get_exercise", "TRAINING_FUNCTIONS"]


@dataclass(frozen=True)
class Exercise:
    """One backward function to write.

    Attributes
    ----------
    name : the function's name, the same in the learner's file as in the reference.
    signature : its parameters as written in the starter (``"dout, x"``).
    inputs : the positional parameters' names, in order.
    outputs : the names of what it returns (one array, or ``dx, dw, db`` for the linear layer).
    like : for each output, the input (or parameter) whose shape it must have, in words.
    reference : the reference backward function (same signature).
    summary : one line for ``--help`` and the table.
    doc : the starter's docstring: what to compute, the shapes in and out; not the answer.
    loss : for a loss's backward, the name of its :class:`~numpy_mnist.losses.Loss`; else None.
    """

    name: str
    signature: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    like: tuple[str, ...]
    reference: Callable
    summary: str
    doc: str
    loss: str | None = None


_SIGMOID_DOC = '''\
Gradient through the sigmoid, y = sigmoid(x) = 1 / (1 + exp(-x)), elementwise.

    dout: (N, D), d loss / d y, the gradient arriving from above
    x:    (N, D), what the forward pass was given
    returns dx: (N, D), d loss / d x

By the chain rule, d loss / d x is dout times the slope dy/dx of the sigmoid at x.  Work out that
slope on paper first.  It must stay accurate for large |x| (x = 40 or x = -800): the slope there
is tiny but not 0, and exp of a large number overflows.
'''

_MNIST_LOSS_DOC = '''\
Gradient of the book's loss with respect to the logits.

    loss = mean(where(targets == 1, 1 - sigmoid(logits), sigmoid(logits)))

    logits:  (N, 1), one raw score z per image (no sigmoid applied yet)
    targets: (N, 1), 1.0 for a 3 and 0.0 for a 7
    returns dlogits: (N, 1), d loss / d logits

Remember that the loss is a mean over all N entries, and which way each target pulls.  Large
|logits| (40, -800) must not lose the tiny slope there or overflow.
'''

_LINEAR_DOC = '''\
Gradients of the linear layer out = x @ w + b.

    dout: (N, D_out), d loss / d out
    x:    (N, D_in),  the layer's input
    w:    (D_in, D_out), its weights (b, of shape (D_out,), is not needed here)
    returns (dx, dw, db):
        dx: (N, D_in)      d loss / d x, shaped like x
        dw: (D_in, D_out)  d loss / d w, shaped like w
        db: (D_out,)       d loss / d b, shaped like b

Write out[n, j] as a sum over i and differentiate one entry at a time; then find the matrix
products (and the sum) that compute all entries at once.  Check every shape.
With need_dx=False return None for dx (nothing upstream of the images needs it).
'''

_RELU_DOC = '''\
Gradient through the rectified linear unit, y = relu(x) = max(x, 0), elementwise.

    dout: (N, D), d loss / d y
    x:    (N, D), what the forward pass was given
    returns dx: (N, D), d loss / d x

At exactly x = 0 take the slope as 0 (the checker never asks there).
'''

_BCE_DOC = '''\
Gradient of binary cross-entropy on logits with respect to the logits.

    loss = mean(-(t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z))))

    logits:  (N, 1), raw scores z
    targets: (N, 1), t = 1.0 for a 3 and 0.0 for a 7
    returns dlogits: (N, 1), d loss / d logits

Differentiate, then simplify: much cancels.  Remember the mean.  Large |logits| must not overflow.
'''

_SOFTMAX_CE_DOC = '''\
Gradient of softmax cross-entropy with respect to the logits.

    p = softmax(z) row by row, p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])
    loss = mean over rows n of -log p[n, labels[n]]

    logits: (N, K), one row of K class scores per image
    labels: (N,), integer classes in [0, K)
    returns dlogits: (N, K), d loss / d logits

Write the loss of one row as log(sum_j exp(z_j)) - z_y and differentiate by each z_k.  Logits as
large as 800 must not overflow.
'''

EXERCISES: tuple[Exercise, ...] = (
    Exercise("sigmoid_backward", "dout, x", ("dout", "x"), ("dx",), ("x",), layers.sigmoid_backward,
             "through y = sigmoid(x)", _SIGMOID_DOC),
    Exercise("mnist_loss_backward", "logits, targets", ("logits", "targets"), ("dlogits",), ("logits",),
             losses.mnist_loss_backward, "the book's mnist_loss", _MNIST_LOSS_DOC, "mnist_loss"),
    Exercise("linear_backward", "dout, x, w, *, need_dx=True", ("dout", "x", "w"), ("dx", "dw", "db"),
             ("x", "w", "b"), layers.linear_backward, "through out = x @ w + b", _LINEAR_DOC),
    Exercise("relu_backward", "dout, x", ("dout", "x"), ("dx",), ("x",), layers.relu_backward,
             "through y = relu(x)", _RELU_DOC),
    Exercise("binary_cross_entropy_backward", "logits, targets", ("logits", "targets"), ("dlogits",),
             ("logits",), losses.binary_cross_entropy_backward, "binary cross-entropy on logits", _BCE_DOC,
             "bce"),
    Exercise("softmax_cross_entropy_backward", "logits, labels", ("logits", "labels"), ("dlogits",),
             ("logits",), losses.softmax_cross_entropy_backward, "softmax cross-entropy", _SOFTMAX_CE_DOC,
             "cross_entropy"),
)

EXERCISE_NAMES: tuple[str, ...] = tuple(e.name for e in EXERCISES)

#: The backward functions the book's simple_net with mnist_loss trains with (``check --train``).
TRAINING_FUNCTIONS: tuple[str, ...] = ("mnist_loss_backward", "linear_backward", "relu_backward")


def get_exercise(name: str) -> Exercise:
    return next(e for e in EXERCISES if e.name == name)
