"""NumPy fast paths: the loss chain and the linear backward, operation for operation, with less overhead.

For the book's sizes a training step is dozens of NumPy calls on small arrays (a (256, 1) column, a
(256, 30) hidden layer), and each call costs about a microsecond before any arithmetic: comparable
to the arithmetic itself.  The functions here do exactly the operations of their Array-API
originals in :mod:`numpy_mnist.layers` and :mod:`numpy_mnist.losses`, in the same order and the
same precision, so their results are bitwise the same; they only take NumPy's cheaper entry points:

* ``np.add.reduce`` instead of ``np.sum`` (the same reduction, without the Python wrapper around it);
* ``np.zeros(shape, dtype)`` instead of ``np.zeros_like`` (the same zeros, without its Python layer);
* ``out=`` to write a result over a temporary this function made itself and no longer needs
  (never over an argument).

The math and its derivation are documented once, in the originals.  The models use these functions
on the NumPy backend only (:func:`numpy_mnist.models.layer_ops_for` and
:func:`numpy_mnist.models.value_and_grad_for`); ``tests/test_numpy_kernels.py`` checks them bitwise
against the originals.  (ReLU and its backward stay the Array-API functions of :mod:`numpy_mnist.layers`
everywhere: a faster NumPy spelling saves under 1 % of an epoch.)
"""

from __future__ import annotations

import math

import numpy as np

from numpy_mnist.checks import check_same_shape

__all__ = ["linear_backward", "mnist_loss_value_and_grad", "binary_cross_entropy_value_and_grad",
           "fused_value_and_grad"]

_sum = np.add.reduce


def linear_backward(dout, x, w, *, need_dx: bool = True):
    """:func:`numpy_mnist.layers.linear_backward`: ``(dout @ w.T, x.T @ dout, sum_n dout)``."""
    dx = dout @ w.T if need_dx else None
    return dx, x.T @ dout, _sum(dout, axis=0)


def mnist_loss_value_and_grad(logits, targets):
    """:func:`numpy_mnist.losses.mnist_loss_value_and_grad`, step for step."""
    check_same_shape(logits, targets)
    m = math.prod(logits.shape)
    s = np.multiply(2, targets)
    np.subtract(1, s, out=s)                      # s = 1 - 2 t
    u = np.multiply(s, logits)                    # u = s z
    e = np.abs(u)
    np.negative(e, out=e)
    np.exp(e, out=e)                              # e = exp(-|u|)
    r = np.add(1, e)
    np.divide(1, r, out=r)                        # r = 1 / (1 + e)
    er = np.multiply(e, r)
    loss = _sum(np.where(u >= 0, r, er), axis=None) / m
    np.multiply(er, r, out=er)
    np.multiply(s, er, out=er)
    np.divide(er, m, out=er)                      # s (e r r) / M
    return loss, er


def binary_cross_entropy_value_and_grad(logits, targets):
    """:func:`numpy_mnist.losses.binary_cross_entropy_value_and_grad`, step for step."""
    check_same_shape(logits, targets)
    m = math.prod(logits.shape)
    e = np.abs(logits)
    np.negative(e, out=e)
    np.exp(e, out=e)                              # e = exp(-|z|)
    softplus = np.maximum(logits, np.zeros(logits.shape, logits.dtype))
    np.add(softplus, np.log1p(e), out=softplus)   # max(z, 0) + log1p(e)
    np.subtract(softplus, np.multiply(targets, logits), out=softplus)
    loss = _sum(softplus, axis=None) / m
    r = np.add(1, e)
    np.divide(1, r, out=r)
    p = np.where(logits >= 0, r, np.multiply(e, r))
    np.subtract(p, targets, out=p)
    np.divide(p, m, out=p)                        # (sigma(z) - t) / M
    return loss, p


def fused_value_and_grad(loss):
    """The NumPy ``(logits, targets) -> (loss, dlogits)`` for the stock ``mnist_loss`` or ``bce``, else ``None``."""
    from numpy_mnist import losses

    if loss.name == "mnist_loss" and loss.forward is losses.mnist_loss:
        return mnist_loss_value_and_grad
    if loss.name == "bce" and loss.forward is losses.binary_cross_entropy:
        return binary_cross_entropy_value_and_grad
    return None
