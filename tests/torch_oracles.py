"""The test suite's PyTorch oracles, built on :mod:`numpy_mnist.torch_twin`.

* :func:`assert_agree`: ours against a reference, entry by entry, within ``rtol`` over a floor;
  :func:`gamma32` and :data:`TINY32`, the float32 counterparts of gradcheck's ``gamma`` and ``TINY64``.
* Single pieces, each with the rounding floor of every entry (the module docstring of
  ``torch_twin`` says how two correct float64 programs part): :func:`linear_oracle`,
  :func:`sigmoid_oracle`, :func:`relu_oracle`, :func:`loss_oracle`.
* The ResNet-18's twin, :func:`resnet18`, with :func:`resnet18_state` and
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


# == Going deeper: the ResNet-18's twin ==============================================================
#
# The twin of :class:`numpy_mnist.models.ResNet18`, written as PyTorch's functional calls on a dict
# of parameter tensors (its names, and the head's linears stored (in, out)), so that autograd can
# differentiate it.  Its layout is spelled out again here rather than read from the model.

#: The stride of each stage's first block (torchvision's ResNet-18).
RESNET18_STRIDES = (1, 2, 2, 2)


def resnet18(x, p, *, buffers=None, masks=None, training: bool = True):
    """The ResNet-18 of :func:`numpy_mnist.models.resnet18` on (N, side**2) square images ``x``: its logits.

    ``F.conv2d``, ``F.batch_norm`` (``training=True``: the batch's statistics, and ``buffers``'
    ``running_mean`` / ``running_var`` updated in place with momentum 0.1, as ``nn.BatchNorm2d``
    does; ``training=False``: those running statistics), ``F.max_pool2d``, the adaptive pools of
    fastai's ``AdaptiveConcatPool2d`` and ``F.linear``.  Dropout in training mode applies the fixed
    boolean ``masks`` (``{"head.drop1": ..., "head.drop2": ...}``) as ``x * mask / (1 - p)``, which
    is what ``F.dropout`` does with a mask of its own drawing.
    """
    import torch

    F = torch.nn.functional
    buffers = buffers or {}

    def bn(h, name):
        return F.batch_norm(h, buffers.get(f"{name}.running_mean"), buffers.get(f"{name}.running_var"),
                            p[f"{name}.weight"], p[f"{name}.bias"], training=training, momentum=0.1, eps=1e-5)

    def drop(h, name, prob):
        return h * masks[name] / (1 - prob) if training else h

    side = round(x.shape[1] ** 0.5)
    h = F.relu(bn(F.conv2d(x.reshape(-1, 1, side, side), p["conv1.weight"], stride=2, padding=3), "bn1"))
    h = F.max_pool2d(h, kernel_size=3, stride=2, padding=1)
    for stage, stride in enumerate(RESNET18_STRIDES, start=1):
        for b in range(2):
            name, s = f"layer{stage}.{b}", stride if b == 0 else 1
            out = F.relu(bn(F.conv2d(h, p[f"{name}.conv1.weight"], stride=s, padding=1), f"{name}.bn1"))
            out = bn(F.conv2d(out, p[f"{name}.conv2.weight"], padding=1), f"{name}.bn2")
            if f"{name}.downsample.0.weight" in p:
                h = bn(F.conv2d(h, p[f"{name}.downsample.0.weight"], stride=s), f"{name}.downsample.1")
            h = F.relu(out + h)
    h = torch.cat([F.adaptive_max_pool2d(h, 1), F.adaptive_avg_pool2d(h, 1)], dim=1).flatten(1)
    h = drop(bn(h, "head.bn1"), "head.drop1", 0.25)
    h = F.relu(F.linear(h, p["head.fc1.weight"].T))
    h = drop(bn(h, "head.bn2"), "head.drop2", 0.5)
    return F.linear(h, p["head.fc2.weight"].T)


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
