"""The test suite's PyTorch oracles, built on :mod:`numpy_mnist.torch_twin`.

* :func:`assert_agree`: ours against a reference, entry by entry, within ``rtol`` over a floor;
  :func:`gamma32` and :data:`TINY32`, the float32 counterparts of gradcheck's ``gamma`` and ``TINY64``.
* Single pieces, each with the rounding floor of every entry (the module docstring of
  ``torch_twin`` says how two correct float64 programs part): :func:`linear_oracle`,
  :func:`sigmoid_oracle`, :func:`relu_oracle`, :func:`loss_oracle`.
* For the ResNet-18's twin (``torch_twin.resnet18``): :func:`resnet18_state` and
  :func:`resnet18_loss_and_grads`.

PyTorch is imported only when a function here runs, as in ``torch_twin``: a test module that
imports this one still runs its other tests without it.
"""

from __future__ import annotations

import numpy as np

from numpy_mnist import losses
from numpy_mnist.backends.host import to_numpy
from numpy_mnist.gradcheck import TINY64, TORCH_RTOL, GradReport, compare, gamma
from numpy_mnist.torch_twin import (
    binary_cross_entropy,
    loss_twin,
    parameters,
    resnet18,
    sigmoid,
    softmax_cross_entropy,
    tensor,
    vjp,
)

EPS32 = float(np.finfo(np.float32).eps)
#: Below these (and gradcheck's TINY64), floats have only absolute precision (subnormals).
TINY32 = float(np.finfo(np.float32).smallest_normal)


def gamma32(k: int) -> float:
    """Higham's ``gamma_k`` for float32 sums."""
    return k * EPS32 / (1 - k * EPS32)


def assert_agree(name: str, ours, reference, floor=TINY64, rtol: float = TORCH_RTOL) -> GradReport:
    """Raise ``AssertionError`` (naming the worst entry) unless, entry by entry,
    ``|ours - reference| <= rtol * max(|ours|, |reference|) + floor``; return the report."""
    report = compare(name, to_numpy(ours, np.float64), to_numpy(reference, np.float64),
                     rtol=rtol, atol=floor, method="pytorch")
    if not report.ok:
        raise AssertionError(str(report))
    return report


def binary_cross_entropy_floors(loss, z, t, value: float):
    """The floors of ``torch_twin.binary_cross_entropy`` against ``loss`` (see its docstring): from the
    terms' size ``softplus(z) + |t z|`` (``loss.magnitude``) plus 1 for the rounded ``1 + e^-|z|``,
    and from ``(sigma(z) + |t|) / M``."""
    m = z.size
    value_floor = 2 * gamma(m + 4) * (loss.magnitude(z, t, value) + 1) + TINY64
    dz_floor = 2 * gamma(4) * (to_numpy(sigmoid(tensor(z))) + np.abs(t)) / m + TINY64
    return value_floor, dz_floor


def linear_oracle(x, w, b, dout):
    """``out, (dx, dw, db)`` of ``x @ w + b``, and the floors of ``(out, dx, dw, db)``.

    The floors come from the same computation on absolute values (``|x| @ |w| + |b|`` driven by
    ``|dout|``): exactly the sums of ``|terms|`` each entry is made of.
    """
    def affine(a, m, c):
        return a @ m + c

    out, grads = vjp(affine, [x, w, b], dout)
    mags = [np.abs(to_numpy(a, np.float64)) for a in (x, w, b)]
    out_mag, grad_mags = vjp(affine, mags, np.abs(to_numpy(dout, np.float64)))
    k = max(x.shape[0], w.shape[0], w.shape[1]) + 1
    return out, grads, [2 * gamma(k) * m + TINY64 for m in (out_mag, *grad_mags)]


def sigmoid_oracle(x, dout):
    """``sigmoid(x)`` and ``dout * sigma'(x)``; elementwise, so their floor is :data:`TINY64`."""
    out, (dx,) = vjp(sigmoid, [x], dout)
    return out, dx


def relu_oracle(x, dout):
    """``relu(x)`` and its gradient, with PyTorch's convention ``relu'(0) = 0``."""
    import torch

    out, (dx,) = vjp(torch.relu, [x], dout)
    return out, dx


def loss_oracle(loss, z, t):
    """``value, dz`` of ``loss`` (a :class:`~numpy_mnist.losses.Loss` or its name) on logits ``z``
    and targets ``t`` by its twin, and their floors.

    ``mnist_loss`` averages positive terms and its derivative is elementwise; the twin of
    softmax cross-entropy computes ours term by term: their floor is :data:`TINY64`.  Binary
    cross-entropy's twin rounds otherwise where terms cancel: :func:`binary_cross_entropy_floors`.
    """
    import torch

    loss = losses.get_loss(loss)
    twin = loss_twin(loss)
    zt, tt = tensor(z, requires_grad=True), tensor(t)
    value = twin(zt, tt)
    (dz,) = torch.autograd.grad(value, [zt])
    value, dz = float(value.detach()), to_numpy(dz)
    z, t = to_numpy(z, np.float64), to_numpy(t, np.float64)
    if twin is binary_cross_entropy:
        return (value, dz, *binary_cross_entropy_floors(loss, z, t, value))
    return value, dz, TINY64, np.full(z.shape, TINY64)


# == Going deeper: the ResNet-18's twin's state and gradients ==========================================

def resnet18_state(model, *, dtype=None) -> tuple[dict, dict]:
    """Copies of a ResNet-18's ``params`` (leaf tensors that require grad) and ``buffers`` (float64
    unless ``dtype``)."""
    return parameters(model, dtype=dtype), {k: tensor(v, dtype=dtype) for k, v in model.buffers.items()}


def resnet18_loss_and_grads(model, x, y, masks) -> tuple[float, dict, dict]:
    """``model.loss_and_grads(x, y)`` by autograd on the twin in float64, from the model's parameters
    and running statistics as they are now, with the dropout ``masks``: ``(loss, grads, buffers)``,
    the gradients and the running statistics after the pass as host arrays."""
    import torch

    params, buffers = resnet18_state(model)
    masks = {k: torch.as_tensor(np.asarray(m)) for k, m in masks.items()}
    labels = torch.as_tensor(to_numpy(y)).to(torch.int64)
    loss = softmax_cross_entropy(resnet18(tensor(x), params, buffers=buffers, masks=masks), labels)
    grads = torch.autograd.grad(loss, list(params.values()))
    return (float(loss.detach()), {k: to_numpy(g) for k, g in zip(params, grads)},
            {k: to_numpy(b) for k, b in buffers.items()})
