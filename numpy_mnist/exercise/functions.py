"""The nine exercises, one row of a table each: what to write, its reference, and how to check it.

In the book's order: the sigmoid, the book's ``mnist_loss``, the linear layer, the ReLU, the two
losses the book points to (binary cross-entropy on logits, softmax cross-entropy), then the three
layers of its ResNet-18 ("Going deeper"): the convolution, batch norm and max-pooling.  Each
:class:`Exercise` holds everything the checker asks of it, so that the checker has no case of its own:

* the reference it is checked against (:mod:`numpy_mnist.layers`, :mod:`numpy_mnist.losses`), whose
  name and signature the starter's function takes, with its docstring (what to compute and the
  shapes, never the answer);
* ``draw``: the inputs hypothesis draws, chosen to expose faults (odd sizes, large ``|z|``, ties);
* ``task``: the forward whose slope each output is (NumPy and PyTorch), for finite differences and
  autograd, and the size of the terms each right entry is summed from (the rounding floors);
* ``slips``: what common mistakes compute, each with the sentence that names it.

This module imports NumPy, the reference and its PyTorch twins (which import PyTorch only when called).
"""

from __future__ import annotations

import inspect
import textwrap
from collections import namedtuple
from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from numpy_mnist import layers, losses, torch_twin
from numpy_mnist.gradcheck import TOLERANCE

__all__ = ["Exercise", "Task", "EXERCISES", "EXERCISE_NAMES", "get_exercise", "TRAINING_FUNCTIONS", "STARTER_NAME",
           "starter_source"]


#: What an exercise's outputs are the slopes of: ``f(*at)`` (NumPy) and ``twin(*at)`` (PyTorch tensors),
#: output ``i`` the gradient with respect to ``at[i]`` of ``sum(dout * f)`` (``dout`` None: ``f`` is a
#: scalar); ``scale``, the size of ``f``'s terms (the finite difference's noise; None: the sum of
#: ``|dout * f|``); ``sizes``, per output the sizes of the terms its right entries are summed from
#: (the same sums on absolute values).
Task = namedtuple("Task", "f twin at dout scale sizes")


@dataclass(frozen=True)
class Exercise:
    """One backward function to write, named as its ``reference`` (fields: the module docstring).
    ``outputs`` are the names of what it returns, each shaped like the input its name differentiates
    (``dw`` like ``w``); ``z``: the argument holding a sigmoid's input or the logits (precision and
    overflow hints), ``overflow`` the fix when ``exp`` overflows there; ``mean``: the gradient of a
    mean (a loss); ``shrink``: smaller inputs to try after hypothesis's smallest (1: its rows, 2: its
    entries too); ``smooth(args)``: whether finite differences may be trusted at these inputs (not
    across a tie of max-pooling)."""

    reference: Callable
    outputs: tuple[str, ...]
    draw: Callable
    task: Callable
    slips: Callable
    z: int | None = None
    overflow: str | None = None
    mean: bool = False
    shrink: int = 0
    smooth: Callable = lambda *args, **kwargs: True

    @property
    def name(self) -> str:
        return self.reference.__name__

    @property
    def doc(self) -> str:
        return _DOCS[self.name]

    @property
    def parameters(self) -> list[inspect.Parameter]:
        """The reference's parameters, without their annotations."""
        return [p.replace(annotation=p.empty) for p in inspect.signature(self.reference).parameters.values()]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The positional parameters' names, in order."""
        return tuple(p.name for p in self.parameters if p.kind == p.POSITIONAL_OR_KEYWORD)


def _torch():
    import torch

    return torch


# -- the book's functions --------------------------------------------------------------------------

def _elementwise_task(forward, twin, reference, dout, x):
    return Task(forward, twin, (x,), dout, np.abs(dout * forward(x)), (np.abs(reference(np.abs(dout), x)),))


def _loss_task(name, z, t):
    loss = losses.get_loss(name)
    # log(sum_k exp(z_k - max z)) rounds to eps absolute even where a row's loss is 1e-7: its terms are >= 1.
    scale = loss.magnitude(z, t, float(loss.forward(z, t))) + (1.0 if loss.multiclass else 0.0)
    # The targets keep their dtype: float64 for the binary losses, int64 labels for cross-entropy.
    return Task(lambda z_: loss.forward(z_, t), lambda zt: torch_twin.LOSSES[name](zt, _torch().as_tensor(t)),
                (z,), None, scale, (loss.gradient_magnitude(z, t),))


def _linear_task(dout, x, w, *, need_dx=True):
    sizes = layers.linear_backward(np.abs(dout), np.abs(x), np.abs(w), need_dx=need_dx)
    return Task(layers.linear, lambda x_, w_, b_: x_ @ w_ + b_, (x, w, np.zeros(w.shape[1])), dout,
                float(np.sum(np.abs(dout) * (np.abs(x) @ np.abs(w)))), sizes)


def _sigmoid_slips(dout, x):
    return [(0, dout, "σ′ is missing: you passed dout through unchanged; multiply it by the sigmoid's slope at x"),
            (0, dout * layers.sigmoid(x), "you multiplied dout by σ(x), the sigmoid's value; it needs σ′(x), "
                                          "its slope"),
            (0, layers.sigmoid_derivative(x), "dout is missing: multiply the slope by the gradient arriving from "
                                              "above")]


def _mnist_loss_slips(z, t):
    s, m = 1 - 2 * t, z.size
    return [(0, s / m, "σ′ is missing: each entry of the mean moves with the sigmoid's slope at its logit"),
            (0, s * layers.sigmoid(z) / m, "you used σ(z), the sigmoid's value, where its slope σ′(z) belongs"),
            (0, (layers.sigmoid(z) - t) / m, "that is binary cross-entropy's gradient; mnist_loss is the mean of "
                                             "σ(z) for a 7 and 1 - σ(z) for a 3")]


def _linear_slips(dout, x, w, *, need_dx=True):
    return [(0, dout @ w, "dx used w where its transpose belongs (the shapes only fit because w is square)")
            ] if w.shape[0] == w.shape[1] and need_dx else []


def _relu_slips(dout, x):
    return [(0, np.where(x > 0, 0.0, dout), "the ReLU mask is inverted: the gradient must flow where x > 0 and "
                                            "stop where x < 0"),
            (0, np.where(dout > 0, dout, 0.0), "you masked by the sign of dout; the mask comes from the input x"),
            (0, (x > 0).astype(np.float64), "dout is missing: the mask must multiply the gradient from above")]


def _bce_slips(z, t):
    slope = layers.sigmoid_derivative(z) / z.size
    return [(0, (1 - 2 * t) * slope, "that is mnist_loss's gradient, not binary cross-entropy's"),
            (0, (layers.sigmoid(z) - t) * slope, "an extra σ′ factor: on logits, the log cancels the sigmoid's "
                                                 "slope")]


def _softmax_slips(z, labels):
    n, k = z.shape
    return [(0, layers.softmax(z) / n, "the one-hot subtraction is missing: the right class's logit also appears "
                                       "on its own in the loss (-z_y), which adds -1 to its slope"),
            (0, (labels[:, None] == np.arange(k)) / -n, "the softmax part is missing: log(sum_j exp z_j) "
                                                               "changes with every logit")]


# -- the ResNet's layers ---------------------------------------------------------------------------

def _conv_task(dout, x, w, *, stride=1, padding=0):
    k = {"stride": stride, "padding": padding}
    return Task(partial(layers.conv2d, **k), lambda x_, w_: _torch().nn.functional.conv2d(x_, w_, **k), (x, w), dout,
                float(np.sum(np.abs(dout) * layers.conv2d(np.abs(x), np.abs(w), **k))),
                layers.conv2d_backward(np.abs(dout), np.abs(x), np.abs(w), **k))


def _conv_slips(dout, x, w, *, stride=1, padding=0):
    backward = partial(layers.conv2d_backward, dout, x, stride=stride, padding=padding)
    dw = backward(w)[1]
    found = [(0, backward(w[:, :, ::-1, ::-1])[0], "dx used the kernel flipped (rotated by 180°): each input entry "
                                                   "gets dout times the very weight it was multiplied by in the "
                                                   "forward pass"),
             (1, dw[:, :, ::-1, ::-1], "your dw is the right one flipped (rotated by 180°): dw[f, c, a, b] pairs "
                                       "dout with the input at offset (a, b), not (KH-1-a, KW-1-b)")]
    if w.shape[2] == w.shape[3]:
        found += [(0, backward(np.swapaxes(w, 2, 3))[0], "dx used the kernel transposed (its rows and columns "
                                                         "swapped): offset (a, b) moves a along the height and b "
                                                         "along the width"),
                  (1, np.swapaxes(dw, 2, 3), "your dw is the right one transposed (its rows and columns swapped): "
                                             "offset (a, b) moves a along the height and b along the width")]
    return found


def _per_channel(v):
    return v[None, :, None, None]


def _batch_norm_stats(x, eps):
    """Per channel of (N, C, H, W): ``M``, ``mean`` and ``sigma = sqrt(var + eps)``, and ``xhat``."""
    m = x.size // x.shape[1]
    mean = x.mean(axis=(0, 2, 3))
    sigma = np.sqrt(x.var(axis=(0, 2, 3)) + eps)
    return m, mean, sigma, (x - _per_channel(mean)) / _per_channel(sigma)


def _batch_norm_task(dout, x, gamma, *, eps=1e-5):
    m, mean, sigma, _ = _batch_norm_stats(x, eps)
    # Where x - mean cancels, xhat is known to eps (|x| + |mean|) / sigma, not to eps |xhat|.
    size = (np.abs(x) + np.abs(_per_channel(mean))) / _per_channel(sigma)
    ad, ag = np.abs(dout), np.abs(gamma)
    sum_d, sum_dx = ad.sum(axis=(0, 2, 3)), (ad * size).sum(axis=(0, 2, 3))
    dx = _per_channel(ag / (m * sigma)) * (m * ad + _per_channel(sum_d) + size * _per_channel(sum_dx))
    # A difference moves x, gamma or beta by h (xhat by h / sigma), however small they are.
    h = TOLERANCE.h
    scale = float(np.sum(ad * (_per_channel(ag + h) * (size + h / _per_channel(sigma)) + h)))
    return Task(lambda x_, g_, b_: layers.batch_norm(x_, g_, b_, eps=eps)[0],
                lambda x_, g_, b_: _torch().nn.functional.batch_norm(x_, None, None, g_, b_, training=True, eps=eps),
                (x, gamma, np.zeros_like(gamma)), dout, scale, (dx, sum_dx, sum_d))


def _batch_norm_slips(dout, x, gamma, *, eps=1e-5):
    m, _, sigma, xhat = _batch_norm_stats(x, eps)
    dx, dgamma, dbeta = layers.batch_norm_backward(dout, x, gamma, eps=eps)
    scale = _per_channel(gamma / (m * sigma))
    return [(0, dx + scale * _per_channel(dbeta), "the mean's term is missing: every x_j moves the channel's mean, "
                                                  "and with it every xhat_i; subtract sum_i dout_i (dbeta) from "
                                                  "M dout_j"),
            (0, dx + scale * xhat * _per_channel(dgamma), "the variance's term is missing: every x_j moves the "
                                                          "channel's variance, and with it every xhat_i; subtract "
                                                          "xhat_j sum_i dout_i xhat_i (xhat_j dgamma)"),
            (0, dx + scale * (_per_channel(dbeta) + xhat * _per_channel(dgamma)),
             "both sums are missing: the mean and the variance are computed from x, so they move with it too")]


def _pool_task(dout, x, *, kernel=3, stride=2, padding=1):
    return Task(partial(layers.max_pool2d, kernel=kernel, stride=stride, padding=padding),
                lambda x_: _torch().nn.functional.max_pool2d(x_, kernel, stride, padding), (x,), dout, None,
                (layers.max_pool2d_backward(np.abs(dout), x, kernel=kernel, stride=stride, padding=padding),))


def _pool_slips(dout, x, *, kernel=3, stride=2, padding=1):
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    windows = sliding_window_view(x_pad, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    ties = (windows == windows.max(axis=(4, 5), keepdims=True)) * dout[..., None, None]
    every = np.zeros_like(x_pad)
    for a, b in np.ndindex(kernel, kernel):
        every[:, :, a:a + stride * dout.shape[2]:stride, b:b + stride * dout.shape[3]:stride] += ties[..., a, b]
    every = every[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]
    return [(0, every, "you sent a window's gradient to every entry equal to its maximum; where several tie, only "
                       "the first (in row-major order) is the max, as in PyTorch: the gradient must not be copied")]


def _no_ties(dout, x, **kwargs):
    """No two entries within the reach of a difference's step: none of them is a tie for a maximum."""
    return bool(np.all(np.diff(np.sort(x, axis=None)) > 4 * TOLERANCE.h))


# -- the inputs hypothesis draws (``d``: the checker's drawing helper) -----------------------------

def _draw_elementwise(values, d):
    n, m = d.int(1, 8), d.int(1, 6)
    return (d.floats((n, m)), getattr(d, values)((n, m))), {}


def _draw_binary(d):
    n = d.int(1, 8)
    return (d.logits((n, 1)), d.choice((n, 1), [0.0, 1.0])), {}


def _draw_multiclass(d):
    n, k = d.int(1, 8), d.int(2, 6)
    return (d.logits((n, k)), d.integers((n,), 0, k - 1)), {}


def _draw_linear(d):
    n, m, k = d.int(1, 8), d.int(1, 6), d.int(1, 6)
    return (d.floats((n, k)), d.floats((n, m)), d.floats((m, k))), {"need_dx": d.bool()}


def _draw_conv(d):
    """Small odd images: 1 or 2 images of up to 3 channels, kernels up to 3 x 3, stride up to 2, padding up to 1."""
    n, c, f, kh, kw, stride, padding = (d.int(1, 2), d.int(1, 3), d.int(1, 3), d.int(1, 3), d.int(1, 3), d.int(1, 2),
                                        d.int(0, 1))
    x = d.floats((n, c, d.int(kh, 7), d.int(kw, 7)))
    oh, ow = ((x.shape[2] + 2 * padding - kh) // stride + 1, (x.shape[3] + 2 * padding - kw) // stride + 1)
    return (d.floats((n, f, oh, ow)), x, d.floats((f, c, kh, kw))), {"stride": stride, "padding": padding}


def _draw_batch_norm(d):
    shape = (d.int(2, 3), d.int(1, 3), d.int(1, 3), d.int(1, 3))  # PyTorch asks for more than one value per channel
    return (d.floats(shape), d.floats(shape), d.floats(shape[1:2])), {}


def _draw_pool(d):
    """Inputs from a small set of integers, so that windows hold tied maxima, or else distinct values.  The
    tied ones are hypothesis's simpler branch (its booleans lean to False): most runs draw them, a few the
    distinct ones that finite differences can check."""
    kernel, stride = d.int(1, 3), d.int(1, 3)
    padding = d.int(0, kernel // 2)
    shape = (d.int(1, 2), d.int(1, 2), d.int(max(kernel - 2 * padding, 1), 7), d.int(max(kernel - 2 * padding, 1), 7))
    x = d.distinct(shape) if d.bool() else d.choice(shape, [0.0, 1.0, 2.0])
    oh, ow = ((s + 2 * padding - kernel) // stride + 1 for s in shape[2:])
    return (d.floats(shape[:2] + (oh, ow)), x), {"kernel": kernel, "stride": stride, "padding": padding}


#: What each function's docstring in the starter says: what to compute and the shapes, never the answer.
_DOCS = {
    "sigmoid_backward": '''\
Gradient through the sigmoid, y = sigmoid(x) = 1 / (1 + exp(-x)), elementwise.

    dout: (N, D), d loss / d y, the gradient arriving from above
    x:    (N, D), what the forward pass was given
    returns dx: (N, D), d loss / d x

By the chain rule, d loss / d x is dout times the slope dy/dx of the sigmoid at x.  Work out that
slope on paper first.  It must stay accurate for large |x| (x = 40 or x = -800): the slope there
is tiny but not 0, and exp of a large number overflows.
''',
    "mnist_loss_backward": '''\
Gradient of the book's loss with respect to the logits.

    loss = mean(where(targets == 1, 1 - sigmoid(logits), sigmoid(logits)))

    logits:  (N, 1), one raw score z per image (no sigmoid applied yet)
    targets: (N, 1), 1.0 for a 3 and 0.0 for a 7
    returns dlogits: (N, 1), d loss / d logits

Remember that the loss is a mean over all N entries, and which way each target pulls.  Large
|logits| (40, -800) must not lose the tiny slope there or overflow.
''',
    "linear_backward": '''\
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
''',
    "relu_backward": '''\
Gradient through the rectified linear unit, y = relu(x) = max(x, 0), elementwise.

    dout: (N, D), d loss / d y
    x:    (N, D), what the forward pass was given
    returns dx: (N, D), d loss / d x

At exactly x = 0 take the slope as 0 (the checker never asks there).
''',
    "binary_cross_entropy_backward": '''\
Gradient of binary cross-entropy on logits with respect to the logits.

    loss = mean(-(t * log(sigmoid(z)) + (1 - t) * log(1 - sigmoid(z))))

    logits:  (N, 1), raw scores z
    targets: (N, 1), t = 1.0 for a 3 and 0.0 for a 7
    returns dlogits: (N, 1), d loss / d logits

Differentiate, then simplify: much cancels.  Remember the mean.  Large |logits| must not overflow.
''',
    "softmax_cross_entropy_backward": '''\
Gradient of softmax cross-entropy with respect to the logits.

    p = softmax(z) row by row, p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])
    loss = mean over rows n of -log p[n, labels[n]]

    logits: (N, K), one row of K class scores per image
    labels: (N,), integer classes in [0, K)
    returns dlogits: (N, K), d loss / d logits

Write the loss of one row as log(sum_j exp(z_j)) - z_y and differentiate by each z_k.  Logits as
large as 800 must not overflow.
''',
    "conv2d_backward": '''\
Gradients of the 2-D convolution (cross-correlation, as in PyTorch; no bias):

    out[n, f, i, j] = sum over c, a, b of x_pad[n, c, i*stride + a, j*stride + b] * w[f, c, a, b]

with x_pad the input padded by `padding` zeros on each side of its height and width.

    dout: (N, F, OH, OW), d loss / d out, OH = (H + 2 padding - KH) // stride + 1, OW alike
    x:    (N, C, H, W), the images
    w:    (F, C, KH, KW), the kernel: F filters of C channels
    returns (dx, dw):
        dx: (N, C, H, W)    d loss / d x, shaped like x
        dw: (F, C, KH, KW)  d loss / d w, shaped like w

Differentiate one entry at a time: which outputs does w[f, c, a, b] take part in, and which
outputs does x[n, c, y, z] reach (through which weights)?  The padding is not an input: drop its
gradient.  Loops over the kernel's offsets (a, b) are fine; the checker's images are small.
''',
    "batch_norm_backward": '''\
Gradients of batch normalisation in training mode, per channel c (statistics over N, H and W,
M = N * H * W values x_i per channel):

    mean = (1/M) sum_i x_i,   var = (1/M) sum_i (x_i - mean)^2   (biased)
    xhat_i = (x_i - mean) / sqrt(var + eps),   out_i = gamma * xhat_i + beta

    dout:  (N, C, H, W), d loss / d out
    x:     (N, C, H, W), the input
    gamma: (C,), the scale (beta, (C,), is not needed here)
    returns (dx, dgamma, dbeta):
        dx:     (N, C, H, W)  shaped like x
        dgamma: (C,)          shaped like gamma
        dbeta:  (C,)          shaped like beta

Careful: mean and var are computed from x, so every x_j moves every xhat_i of its channel, through
the mean and through the variance.  Derive d xhat_i / d x_j first.
''',
    "max_pool2d_backward": '''\
Gradient of max-pooling over kernel x kernel windows moved by stride, the input padded by
`padding` entries of -inf on each side of its height and width:

    out[n, c, i, j] = max over a, b < kernel of x_pad[n, c, i*stride + a, j*stride + b]

    dout: (N, C, OH, OW), d loss / d out, OH = (H + 2 padding - kernel) // stride + 1, OW alike
    x:    (N, C, H, W), the input
    returns dx: (N, C, H, W), d loss / d x

Where several entries of a window tie for its maximum, give the window's gradient to the first of
them in row-major order (smallest a, then smallest b), as PyTorch does.  Windows may overlap.
''',
}

_SIGMOID_OVERFLOW = "write the sigmoid and its slope with exp(-|z|), which never exceeds 1"
#: The binary losses on logits: the gradient of a mean, at the logits, where exp overflows as in the sigmoid.
_BINARY_LOSS = {"z": 0, "overflow": _SIGMOID_OVERFLOW, "mean": True, "shrink": 1}

EXERCISES: tuple[Exercise, ...] = (
    Exercise(layers.sigmoid_backward, ("dx",), partial(_draw_elementwise, "logits"),
             partial(_elementwise_task, layers.sigmoid, torch_twin.sigmoid, layers.sigmoid_backward), _sigmoid_slips,
             z=1, overflow=_SIGMOID_OVERFLOW, shrink=2),
    Exercise(losses.mnist_loss_backward, ("dlogits",), _draw_binary, partial(_loss_task, "mnist_loss"),
             _mnist_loss_slips, **_BINARY_LOSS),
    Exercise(layers.linear_backward, ("dx", "dw", "db"), _draw_linear, _linear_task, _linear_slips),
    Exercise(layers.relu_backward, ("dx",), partial(_draw_elementwise, "away_from_0"),
             partial(_elementwise_task, layers.relu, lambda t: t.relu(), layers.relu_backward), _relu_slips, shrink=2),
    Exercise(losses.binary_cross_entropy_backward, ("dlogits",), _draw_binary, partial(_loss_task, "bce"),
             _bce_slips, **_BINARY_LOSS),
    Exercise(losses.softmax_cross_entropy_backward, ("dlogits",), _draw_multiclass,
             partial(_loss_task, "cross_entropy"), _softmax_slips, mean=True, shrink=1,
             overflow="softmax does not change when the same number is taken from every logit of a row, so take "
                      "each row's largest first"),
    Exercise(layers.conv2d_backward, ("dx", "dw"), _draw_conv, _conv_task, _conv_slips),
    Exercise(layers.batch_norm_backward, ("dx", "dgamma", "dbeta"), _draw_batch_norm, _batch_norm_task,
             _batch_norm_slips),
    Exercise(layers.max_pool2d_backward, ("dx",), _draw_pool, _pool_task, _pool_slips, smooth=_no_ties),
)

EXERCISE_NAMES: tuple[str, ...] = tuple(e.name for e in EXERCISES)

#: The backward functions the book's simple_net with mnist_loss trains with (``check --train``).
TRAINING_FUNCTIONS: tuple[str, ...] = ("mnist_loss_backward", "linear_backward", "relu_backward")


def get_exercise(name: str) -> Exercise:
    return next(e for e in EXERCISES if e.name == name)


# -- ``exercise new``: the starter file ------------------------------------------------------------

#: The file ``exercise new DIR`` writes into DIR.
STARTER_NAME = "my_gradients.py"

_HEADER = f'''\
"""Derive it yourself: the backward functions of chapter 4 and its ResNet-18, written by you.

Fill in each function below (in this order, the book's), then check your work:

    numpy-mnist exercise check {STARTER_NAME}            # one row per function, with hints
    numpy-mnist exercise check {STARTER_NAME} --train    # train simple_net with your gradients

A function that still raises NotImplementedError counts as "to do".  Use NumPy; you may call the
forward functions (numpy_mnist.layers.sigmoid, softmax, conv2d, ...), but the point is to write every
derivative yourself, so leave the reference *_backward functions alone.
"""

import numpy as np
'''


def starter_source() -> str:
    """The text of the starter file: every exercise, raising ``NotImplementedError``."""
    quotes = '"' * 3
    return _HEADER + "".join(f"\n\ndef {e.name}{inspect.Signature(e.parameters)}:\n"
                             f"{textwrap.indent(quotes + e.doc + quotes, '    ')}\n"
                             f'    raise NotImplementedError("{e.name}: not written yet")\n' for e in EXERCISES)
