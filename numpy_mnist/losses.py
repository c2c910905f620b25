"""Losses on raw logits, each a forward (the mean loss, a 0-d array) and a hand-derived backward.

The backward returns ``d loss / d logits`` for the *mean* loss, with the shape of the logits.
Losses take logits, never probabilities: the sigmoid (or softmax) lives inside the loss, exactly once.

Two kinds of targets:

* one logit per image (``mnist_loss``, ``bce``): logits (N, 1), float targets (N, 1) of 0 and 1;
* ``cross_entropy`` (softmax cross-entropy): logits (N, K), K >= 2, integer labels (N,) in [0, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from array_api_compat import array_namespace

from numpy_mnist.checks import check_same_shape
from numpy_mnist.errors import InputError
from numpy_mnist.layers import log_softmax, sigmoid, sigmoid_derivative, softmax

__all__ = [
    "Loss",
    "LOSSES",
    "get_loss",
    "mnist_loss",
    "mnist_loss_backward",
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_backward",
    "check_class_labels",
    "positive_terms_magnitude",
    "softplus_terms_magnitude",
    "logsumexp_terms_magnitude",
    "any_terms_magnitude",
    "gradient_entries_magnitude",
    "sigmoid_minus_target_magnitude",
    "softmax_minus_onehot_magnitude",
]


def mnist_loss(logits, targets):
    """The book's loss: ``where(targets == 1, 1 - p, p).mean()`` with ``p = sigmoid(logits)``.

    For a 3 (target 1) the loss is how far ``p`` is below 1; for a 7 (target 0), how far above 0::

        loss = (1 / M) sum_i [1 - sigma(z_i) if t_i == 1 else sigma(z_i)]     M = number of logits
             = (1 / M) sum_i [sigma(-z_i)    if t_i == 1 else sigma(z_i)]

    The two lines are the same number (``1 - 1 / (1 + e^-z) = e^-z / (1 + e^-z) = sigma(-z)``);
    the second is what is computed, because ``1 - sigma(z)`` loses every digit once ``sigma(z)``
    rounds to 1, while ``sigma(-z)`` keeps them all.  Shapes: ``logits`` and ``targets`` both
    (N, 1) (or any one shape, the same for both).
    """
    check_same_shape(logits, targets)
    xp = array_namespace(logits)
    return xp.mean(xp.where(targets == 1, sigmoid(-logits), sigmoid(logits)))


def mnist_loss_backward(logits, targets):
    """``d mnist_loss / d z_i = -sigma'(z_i) / M`` where ``t_i == 1``, else ``+sigma'(z_i) / M``.

    By the chain rule ``d sigma(-z) / dz = -sigma'(-z)``, and ``sigma'`` is even
    (``sigma'(-z) = sigma(-z) sigma(z) = sigma'(z)``), so both branches need only
    ``sigma'(z) = sigma(z) (1 - sigma(z))``.  A 3 is pushed up and a 7 pushed down, each by the
    slope of the sigmoid at its logit: nearly nothing once a prediction is confident.  This is the
    exact derivative of :func:`mnist_loss` for any targets (a target other than 1 counts as a 7).
    """
    check_same_shape(logits, targets)
    xp = array_namespace(logits)
    slope = sigmoid_derivative(logits)
    return xp.where(targets == 1, -slope, slope) / _size(logits)


def binary_cross_entropy(logits, targets):
    """Binary cross-entropy on logits, the better-behaved loss the book points to.

    ``loss = -(1/M) sum [t log sigma(z) + (1 - t) log(1 - sigma(z))]``, which simplifies to::

        loss = (1/M) sum [softplus(z) - t z],    softplus(z) = log(1 + e^z)
                                                             = max(z, 0) + log1p(exp(-|z|))

    The right-hand form never overflows and never takes the log of a rounded-off 0.
    """
    check_same_shape(logits, targets)
    xp = array_namespace(logits)
    softplus = xp.maximum(logits, xp.zeros_like(logits)) + xp.log1p(xp.exp(-xp.abs(logits)))
    return xp.mean(softplus - targets * logits)


def binary_cross_entropy_backward(logits, targets):
    """``d loss / d z = (sigma(z) - t) / M``: softplus' = sigma, and d(t z)/dz = t."""
    check_same_shape(logits, targets)
    return (sigmoid(logits) - targets) / _size(logits)


def softmax_cross_entropy(logits, labels):
    """Softmax cross-entropy of logits ``z`` (N, K) against integer labels ``y`` (N,): a 0-d array.

    The model's probability of class ``k`` is ``p_nk = softmax(z_n)_k = exp(z_nk) / sum_j exp(z_nj)``,
    and the loss is the mean negative log-probability of the right class::

        loss = -(1/N) sum_n log p_{n, y_n}
             =  (1/N) sum_n [logsumexp(z_n) - z_{n, y_n}],    logsumexp(z_n) = log sum_k exp(z_nk)

    computed as ``-log_softmax(z)[n, y_n]`` with the row maximum shifted out (see
    :func:`numpy_mnist.layers.log_softmax`): no ``exp`` overflows and no ``log`` sees 0, for logits
    of any size.  The right class is picked with the one-hot mask ``y[:, None] == arange(K)``.

    A label outside ``[0, K)`` picks no class; its row's loss is NaN (not a silent 0), which the
    training loop reports.  Values are not checked here because that would make a GPU wait on every
    batch; the :class:`~numpy_mnist.learner.Learner` checks its labels once, when it is built.

    Raises :class:`~numpy_mnist.errors.InputError` unless ``logits`` is (N, K) with K >= 2 and
    ``labels`` is an integer array of shape (N,).
    """
    check_class_labels(logits, labels)
    return _mean_picked_nll(log_softmax(logits), _onehot_mask(logits, labels))


def softmax_cross_entropy_backward(logits, labels):
    """``d loss / d z = (softmax(z) - onehot(y)) / N``, shape (N, K) like the logits.

    Derivation, for one row (drop ``n``; ``p = softmax(z)``, ``L = logsumexp(z) - z_y``)::

        d logsumexp(z) / d z_j = exp(z_j) / sum_k exp(z_k) = p_j
        d z_y / d z_j          = [j == y]                       (the one-hot of y)
        => d L / d z_j         = p_j - [j == y]

    and the mean over the batch divides by N.  Each row of the gradient sums to 0 (``sum_j p_j = 1``):
    the right class is pushed up by ``1 - p_y`` and every other class down by its probability, so a
    confident right answer gets almost no push, a confident wrong one the full push.  The softmax
    Jacobian ``p_j ([i == j] - p_i)`` never has to be formed: the chain through the log cancels it.
    """
    check_class_labels(logits, labels)
    xp = array_namespace(logits)
    onehot = xp.astype(_onehot_mask(logits, labels), logits.dtype)
    return (softmax(logits) - onehot) / logits.shape[0]


def check_class_labels(logits, labels) -> None:
    """Refuse anything but logits (N, K), K >= 2, with integer labels (N,); an :class:`InputError`."""
    xp = array_namespace(logits)
    shape = tuple(logits.shape)
    if len(shape) != 2:
        raise InputError(f"cross_entropy needs logits of shape (N, K), one row of K class scores per "
                         f"image, got shape {shape}")
    n, k = shape
    if k < 2:
        raise InputError(f"cross_entropy needs logits with K >= 2 classes, got shape {shape}; for one "
                         "logit per image use bce or mnist_loss")
    if tuple(labels.shape) != (n,):
        hint = " (flatten them, e.g. y[:, 0])" if tuple(labels.shape) == (n, 1) else ""
        raise InputError(f"labels must have shape (N,) = ({n},), one class index per row of the logits "
                         f"{shape}, got shape {tuple(labels.shape)}{hint}")
    if not xp.isdtype(labels.dtype, "integral"):
        raise InputError(f"labels must be integer class indices in [0, {k}), got dtype {labels.dtype}")


def _mean_picked_nll(log_p, hit):
    """``-(1/N) sum_n log_p[n, y_n]``, the class of row ``n`` picked by the one-hot ``hit``.

    A row whose label is outside ``[0, K)`` picks no class and gives NaN, never a silent 0.
    """
    xp = array_namespace(log_p)
    picked = xp.sum(xp.where(hit, log_p, xp.zeros_like(log_p)), axis=-1)
    return xp.mean(xp.where(xp.any(hit, axis=-1), -picked, xp.full_like(picked, float("nan"))))


def _onehot_mask(logits, labels):
    """Boolean (N, K): ``mask[n, k] = (labels[n] == k)``."""
    xp = array_namespace(logits)
    return labels[:, None] == xp.arange(logits.shape[-1], dtype=labels.dtype)


def _size(x) -> int:
    size = 1
    for n in x.shape:
        size *= n
    return size


# -- the size of the terms each loss sums: the rounding noise of a finite difference of it -------------

def positive_terms_magnitude(logits, targets, value: float) -> float:
    """``mnist_loss`` sums positive terms: their size is the loss itself, ``|loss|``."""
    return abs(value)


def softplus_terms_magnitude(logits, targets, value: float) -> float:
    """Binary cross-entropy sums ``softplus(z) - t z``, which cancels for a confident right answer
    (z = 30, t = 1: 30 - 30): the terms' size is ``mean(softplus(z) + |t z|)``."""
    xp = array_namespace(logits)
    softplus = xp.logaddexp(logits, xp.zeros_like(logits))
    return float(xp.mean(softplus + xp.abs(targets * logits)))


def logsumexp_terms_magnitude(logits, labels, value: float) -> float:
    """Softmax cross-entropy sums ``logsumexp(z) - z_y``: the terms' size is
    ``mean(|logsumexp(z)| + |z_y|)``."""
    xp = array_namespace(logits)
    top = xp.max(logits, axis=-1)
    logsumexp = top + xp.log(xp.sum(xp.exp(logits - top[:, None]), axis=-1))
    hit = _onehot_mask(logits, xp.astype(labels, xp.int64))
    picked = xp.sum(xp.where(hit, logits, xp.zeros_like(logits)), axis=-1)
    return float(xp.mean(xp.abs(logsumexp) + xp.abs(picked)))


# -- the size of the terms each gradient subtracts: the rounding floor of a check of a backward ----------

def gradient_entries_magnitude(logits, targets):
    """A gradient computed without cancellation (``mnist_loss``'s ``-+sigma'(z) / M``): its entries."""
    xp = array_namespace(logits)
    return xp.abs(mnist_loss_backward(logits, targets))


def sigmoid_minus_target_magnitude(logits, targets):
    """Binary cross-entropy's ``(sigma(z) - t) / M`` cancels for a right answer: ``(sigma(z) + |t|) / M``."""
    xp = array_namespace(logits)
    return (sigmoid(logits) + xp.abs(targets)) / _size(logits)


def softmax_minus_onehot_magnitude(logits, labels):
    """Softmax cross-entropy's ``(softmax(z) - onehot(y)) / N``: ``(softmax(z) + onehot(y)) / N``."""
    xp = array_namespace(logits)
    onehot = xp.astype(_onehot_mask(logits, xp.astype(labels, xp.int64)), logits.dtype)
    return (softmax(logits) + onehot) / logits.shape[0]


def any_terms_magnitude(logits, targets, value: float) -> float:
    """A loss that says nothing of its terms: ``|loss| + mean |z|``."""
    xp = array_namespace(logits)
    return abs(value) + float(xp.mean(xp.abs(logits)))


@dataclass(frozen=True)
class Loss:
    """A named loss, and everything the rest of the package asks of it, said once, here.

    ``forward(logits, targets) -> 0-d array`` is the mean loss and ``backward(logits, targets)``
    its ``d loss / d logits``.  The other fields answer the questions other modules would otherwise
    ask by the loss's name: what its targets are (``multiclass``), how large the terms it sums are
    (``magnitude``: the gradient checker's rounding floors), its PyTorch twin (``twin``), its fused
    kernels (``kernel_code``), and how a run of it gets stuck (``saturates``).
    """

    name: str
    forward: Callable
    backward: Callable
    #: True for integer class labels (N,) against logits (N, K); False for one logit per image.
    multiclass: bool = False
    #: ``magnitude(logits, targets, value) -> float``: the size of the terms the loss sums, on host
    #: float64 arrays; it sets the rounding noise of a finite difference of the loss
    #: (:func:`numpy_mnist.model_check.loss_magnitude`, :mod:`numpy_mnist.torch_twin`).
    magnitude: Callable = any_terms_magnitude
    #: ``gradient_magnitude(logits, targets) -> array`` shaped like the logits: the size of the terms
    #: each entry of ``backward`` is computed from, the rounding floor of a check of it (the exercise
    #: checker's).
    gradient_magnitude: Callable = gradient_entries_magnitude
    #: The name of its PyTorch twin in :mod:`numpy_mnist.torch_twin` (None: it has none).  A name,
    #: not the function, so that PyTorch stays optional: the twin is looked up only when it is used.
    twin: str | None = None
    #: Its ``LOSS`` template argument in the fused kernels (``fused/kernels/common.cuh``); None:
    #: there are no kernels for it, and it trains on the reference path only.
    kernel_code: int | None = None
    #: True when its gradient vanishes wherever the sigmoid saturates, for right and wrong answers
    #: alike (``mnist_loss``): a run stuck at chance accuracy is then most likely a saturated
    #: sigmoid (:mod:`numpy_mnist.diagnosis`).
    saturates: bool = False


LOSSES: dict[str, Loss] = {
    "mnist_loss": Loss("mnist_loss", mnist_loss, mnist_loss_backward, magnitude=positive_terms_magnitude,
                       twin="mnist_loss", kernel_code=0, saturates=True),
    "bce": Loss("bce", binary_cross_entropy, binary_cross_entropy_backward, magnitude=softplus_terms_magnitude,
                gradient_magnitude=sigmoid_minus_target_magnitude, twin="binary_cross_entropy", kernel_code=1),
    "cross_entropy": Loss("cross_entropy", softmax_cross_entropy, softmax_cross_entropy_backward, multiclass=True,
                          magnitude=logsumexp_terms_magnitude, gradient_magnitude=softmax_minus_onehot_magnitude,
                          twin="softmax_cross_entropy", kernel_code=2),
}


def get_loss(loss: str | Loss) -> Loss:
    """The :class:`Loss` called ``loss`` (or ``loss`` itself)."""
    if isinstance(loss, Loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise InputError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}") from None
