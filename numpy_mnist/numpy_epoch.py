"""The CPU fast path: a training epoch on NumPy that writes into buffers it allocated once.

Why
---
At the book's sizes a training step is a few matrix products and a few dozen calls on small arrays
(a (256, 1) column of logits, a (256, 30) hidden layer).  The reference, written once for every
Array-API backend, finds its namespace with ``array_namespace`` in every function and makes a new
array for every intermediate; each costs about a microsecond, as much as the arithmetic it wraps.
Here the whole step of a book model is written out for NumPy alone: every intermediate is written
(``out=``) into a buffer allocated when the epoch object is built.  The loss's value is the
reference's own forward (one spelling of each loss in Python); its gradient is written out here.

What it equals
--------------
:func:`numpy_mnist.learner.train_epoch` with the model's own ``loss_and_grads`` and
:class:`~numpy_mnist.optim.SGD`, **bitwise**: every element goes through the same IEEE operations
in the same order (the derivations are the reference's, in :mod:`numpy_mnist.layers` and
:mod:`numpy_mnist.losses`; the comments below name the step of the reference each line takes), the
matrix products are the same BLAS calls, and the reductions the same NumPy reductions over arrays
of the same shape.  Parameters and batch losses are bit for bit those of the reference, which
``tests/test_numpy_epoch.py`` asserts over whole epochs, in float32 and float64.  Validation is the
reference's :func:`~numpy_mnist.learner.validate_epoch` (forward only, a small part of an epoch).

Where it applies
----------------
The ``numpy`` backend, the linear model and ``simple_net`` (``LinearModel`` and ``MLP`` with one
output), with ``mnist_loss`` or ``bce`` and plain SGD: what :func:`why_not_numpy_epoch` accepts.
:func:`numpy_mnist.fused.make_learner` chooses it; ``numpy-mnist train --reference`` runs the
reference instead.

What it gains
-------------
An epoch of the book's data (12,396 images, batch 256, float32) is the BLAS time of its matrix
products plus everything else; this path removes most of everything else.  Measured on a shared
2-core CPU, the reference's ``train_epoch`` and this path interleaved epoch by epoch in one process
(median of 31 each, wall clock and, on one BLAS thread, CPU time): ``linear1`` 23 to 39 % faster,
``simple_net`` 11 to 17 % faster (its epoch is about 85 % matrix products, the same BLAS calls).
"""

from __future__ import annotations

import math

import numpy as np

from numpy_mnist.learner import Learner, _diverged, epoch_loss
from numpy_mnist.losses import binary_cross_entropy, mnist_loss
from numpy_mnist.optim import SGD

__all__ = ["NumpyEpoch", "NumpyEpochLearner", "why_not_numpy_epoch"]

#: The losses whose gradient this path spells out, by name, with the reference forward it calls.
_LOSSES = {"mnist_loss": mnist_loss, "bce": binary_cross_entropy}


def why_not_numpy_epoch(model, opt=None) -> str | None:
    """Why ``model`` (with ``opt``) cannot train through :class:`NumpyEpoch`, or ``None`` when it can."""
    if model.backend.name != "numpy":
        return f"the NumPy epoch needs the numpy backend, and this model is on {model.backend.name}"
    if model.kind not in ("linear", "mlp") or model.outputs != 1:
        return f"the NumPy epoch trains the one-output linear model and simple_net, not {model!r}"
    if _LOSSES.get(model.loss.name) is not model.loss.forward:
        return f"the NumPy epoch spells out the gradients of mnist_loss and bce, not {model.loss.name!r}"
    if opt is not None and type(opt) is not SGD:
        return f"the NumPy epoch steps plain SGD, not {type(opt).__name__}"
    return None


class NumpyEpoch:
    """One training epoch of ``model`` over ``train_dl`` with ``opt``, bitwise :func:`train_epoch`.

    The buffers are sized for ``train_dl.batch_size`` rows; a shorter last batch uses their first
    rows.  ``model.params`` are updated in place, as :class:`~numpy_mnist.optim.SGD` does.
    """

    def __init__(self, model, train_dl, opt: SGD) -> None:
        why = why_not_numpy_epoch(model, opt)
        if why is not None:
            raise ValueError(why)
        self.model, self.train_dl, self.opt = model, train_dl, opt
        dtype, n = model.backend.dtype, train_dl.batch_size
        p = model.params
        self.mlp = model.kind == "mlp"

        def buffer(*shape, kind=dtype):
            return np.empty(shape, dtype=kind)

        # The logits' column and its elementwise pieces: z, e = exp(-|z|), r = 1/(1+e), dz.
        self.z, self.e, self.r, self.dz = (buffer(n, 1) for _ in range(4))
        self.mask = buffer(n, 1, kind=bool)  # t == 1 (mnist_loss) or z >= 0 (bce)
        self.grads = {name: np.empty_like(value) for name, value in p.items()}
        if self.mlp:
            hidden = p["b1"].shape[0]
            self.h, self.a, self.da = (buffer(n, hidden) for _ in range(3))
            self.off = buffer(n, hidden, kind=bool)  # not (h > 0): where ReLU passes no gradient

    def train_epoch(self, epoch: int = 1) -> float:
        """One pass over the loader with an SGD step per batch: the mean training loss.

        Raises :class:`~numpy_mnist.errors.DivergenceError` at the first NaN or infinite batch loss,
        before that batch's step, as :func:`~numpy_mnist.learner.train_epoch` does on the CPU.
        """
        lr, params = self.opt.lr, self.model.params
        losses, sizes = [], []
        for i, (xb, yb) in enumerate(self.train_dl, start=1):
            loss = self._loss_and_grads(xb, yb)
            if not math.isfinite(value := float(loss)):
                raise _diverged(value, epoch, i, len(self.train_dl), lr)
            for name, grad in self.grads.items():       # SGD.step: p -= grad * lr
                np.multiply(grad, lr, out=grad)
                np.subtract(params[name], grad, out=params[name])
            losses.append(value)
            sizes.append(xb.shape[0])
        return epoch_loss(losses, sizes, epoch=epoch, lr=lr)

    def _loss_and_grads(self, x, t):
        """``model.loss_and_grads(x, t)``, step for step, into ``self.grads``; returns the loss."""
        n, p, g = x.shape[0], self.model.params, self.grads
        z = self.z[:n]
        if self.mlp:                                     # h = x @ w1 + b1, a = relu(h), z = a @ w2 + b2
            h, a = self.h[:n], self.a[:n]
            np.add(np.matmul(x, p["w1"], out=h), p["b1"], out=h)
            np.maximum(h, 0, out=a)
            np.add(np.matmul(a, p["w2"], out=z), p["b2"], out=z)
        else:                                            # z = x @ weights + bias
            np.add(np.matmul(x, p["weights"], out=z), p["bias"], out=z)
        loss, dz = self._loss(z, t)
        if self.mlp:                                     # linear_backward, relu_backward, linear_backward
            da, off = self.da[:n], self.off[:n]
            np.matmul(dz, p["w2"].T, out=da)
            np.matmul(a.T, dz, out=g["w2"])
            np.add.reduce(dz, axis=0, out=g["b2"])
            np.logical_not(np.greater(h, 0, out=off), out=off)
            np.copyto(da, 0, where=off)                  # dh = where(h > 0, da, 0)
            np.matmul(x.T, da, out=g["w1"])
            np.add.reduce(da, axis=0, out=g["b1"])
        else:
            np.matmul(x.T, dz, out=g["weights"])
            np.add.reduce(dz, axis=0, out=g["bias"])
        return loss

    def _loss(self, z, t):
        """The batch loss on logits ``z`` (the reference's own forward) and its ``dz``, written out.

        ``dz`` shares ``e = exp(-|z|)`` and ``r = 1 / (1 + e)``: ``sigmoid(z) = r`` where ``z >= 0``,
        else ``e r``, and ``sigmoid'(z) = e r r`` (:func:`~numpy_mnist.layers.sigmoid`,
        :func:`~numpy_mnist.layers.sigmoid_derivative`).  So, as in :mod:`numpy_mnist.losses`::

            mnist_loss:  dz = where(t == 1, -e r r, e r r) / M
            bce:         dz = (sigmoid(z) - t) / M
        """
        n = z.shape[0]
        e, r, dz, mask = (b[:n] for b in (self.e, self.r, self.dz, self.mask))
        loss = _LOSSES[self.model.loss.name](z, t)
        np.exp(np.negative(np.abs(z, out=e), out=e), out=e)       # e = exp(-|z|)
        np.divide(1, np.add(1, e, out=r), out=r)                   # r = 1 / (1 + e)
        np.multiply(e, r, out=dz)                                  # e r
        if self.model.loss.name == "mnist_loss":
            np.multiply(dz, r, out=dz)                             # sigmoid'(z) = e r r
            np.negative(dz, out=dz, where=np.equal(t, 1, out=mask))
        else:
            np.copyto(dz, r, where=np.greater_equal(z, 0, out=mask))  # sigmoid(z): e r, or r where z >= 0
            np.subtract(dz, t, out=dz)
        np.divide(dz, z.size, out=dz)                              # / M
        return loss, dz


class NumpyEpochLearner(Learner):
    """A :class:`~numpy_mnist.learner.Learner` whose training epochs run through :class:`NumpyEpoch`.

    Everything else is the Learner's own: validation, the history, the timing, and putting the
    last finished epoch's parameters back after a divergence or Ctrl-C.
    """

    path = "NumPy epoch fast path"

    def __init__(self, model, train_dl, valid_dl, lr: float = 0.1, opt=None, history=None, start=None) -> None:
        super().__init__(model, train_dl, valid_dl, lr=lr, opt=opt, history=history, start=start)
        self.epoch_path = NumpyEpoch(model, train_dl, self.opt)

    def _train_epoch(self, epoch: int) -> float:
        return self.epoch_path.train_epoch(epoch)
