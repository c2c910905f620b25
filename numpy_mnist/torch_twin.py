"""The PyTorch twin of every model and loss: the same mathematics, for autograd to differentiate.

One spelling of each formula in PyTorch, shared by ``numpy-mnist gradcheck``, the notebook, the
tests and the benchmark.  PyTorch is a test dependency, never a runtime one: it is imported only
when a function here runs (:func:`available` says whether it can be).

* Losses on logits: :func:`mnist_loss`, :func:`binary_cross_entropy`, :func:`softmax_cross_entropy`;
  each :class:`~numpy_mnist.losses.Loss` names its own twin (``Loss.twin``), which
  :func:`loss_twin` finds (:data:`LOSSES` holds them by the losses' names).
* Models on a dict of parameter tensors (:data:`MODELS`, keyed by ``model.kind``): :func:`linear`
  (``linear1``, ``linear10``) and :func:`mlp` (``simple_net``, ``mlp10``); :func:`parameters`
  copies a numpy-mnist model's parameters into leaf tensors, :func:`forward` runs its twin.
* :func:`loss_and_grads`: ``model.loss_and_grads`` by autograd in float64, and
  :func:`compare_model`, every parameter's gradient against it (what ``gradcheck`` prints).
* :func:`vjp`: the gradients of any function of arrays by autograd.  (The test suite builds on
  these its oracles for single pieces, each with the rounding floor of every entry, and its float32
  floors: ``tests/torch_oracles.py``.)
* :func:`resnet18`: the ResNet-18's twin, for the tests and the benchmark's PyTorch epoch.

How close two correct float64 programs come
-------------------------------------------
Both sides compute the same mathematics and may differ only in the order of their additions (BLAS
blocks a product one way, PyTorch another).  A float64 sum of ``k`` terms is off by at most
``gamma_k * sum |terms|`` (Higham, *Accuracy and Stability of Numerical Algorithms*, sec. 3.1,
``gamma_k = k eps / (1 - k eps)``), so two correct programs can differ by twice that: the *floor*
of an entry.  The sums of ``|terms|`` come from the same computation on absolute values (the
"magnitude network": the same graph on ``|x|`` and ``|params|``, through which a ReLU of
non-negative values passes everything, so it over-counts, never under-counts).  Where the terms do
not cancel, the floor is about ``k * 1e-16`` relative, far inside the ``1e-10`` asked; only where
they cancel (an entry much smaller than the terms it is summed from) does it decide.  Below the
smallest normal float64 only absolute precision exists, so that is added too.

The sigmoid here is ``exp(logsigmoid(z))``: its autograd derivative is ``sigma(z) sigma(-z)``,
exact in both tails, as :func:`numpy_mnist.layers.sigmoid_derivative` is (``torch.sigmoid``'s
backward ``y (1 - y)`` loses every digit of ``1 - y`` once ``y`` rounds to 1).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from numpy_mnist import losses
from numpy_mnist.backends.host import to_numpy
from numpy_mnist.gradcheck import TINY64, TORCH_RTOL, GradReport, compare, gamma

__all__ = [
    "available", "sigmoid", "mnist_loss", "binary_cross_entropy", "softmax_cross_entropy",
    "loss_twin", "LOSSES", "linear", "mlp", "MODELS", "tensor", "parameters", "forward", "loss_and_grads", "gamma",
    "compare_model", "vjp", "TINY64", "resnet18", "RESNET18_STRIDES",
]

def _torch():
    import torch

    return torch


def available() -> bool:
    """True when PyTorch can be imported."""
    try:
        return _torch() is not None
    except ImportError:
        return False


# -- losses on logits --------------------------------------------------------------------------------

def sigmoid(z):
    """``sigma(z) = exp(log sigma(z))``: autograd then gives ``sigma(z) sigma(-z)``, exact for any z."""
    torch = _torch()
    return torch.exp(torch.nn.functional.logsigmoid(z))


def mnist_loss(z, t):
    """The book's ``where(t == 1, 1 - sigma(z), sigma(z)).mean()``, with ``1 - sigma(z)`` as ``sigma(-z)``."""
    return _torch().where(t == 1, sigmoid(-z), sigmoid(z)).mean()


def binary_cross_entropy(z, t):
    """PyTorch's own ``binary_cross_entropy_with_logits``.

    Its rounding differs from ours where the terms cancel: it averages ``softplus(z) - t z``
    (cancelling for a confident right answer) and takes ``log(1 + e^-|z|)`` as the log of a rounded
    ``1 + e^-|z|``, an absolute error of ``eps`` per term (ours uses ``log1p``); its derivative
    ``(sigma(z) - t) / M`` cancels likewise.  It is the only twin whose rounding differs from ours
    (every other computes ours term by term): the test suite's ``loss_oracle`` widens its floors.
    """
    return _torch().nn.functional.binary_cross_entropy_with_logits(z, t)


def softmax_cross_entropy(z, labels):
    return _torch().nn.functional.cross_entropy(z, labels)


def loss_twin(loss) -> Callable:
    """The PyTorch twin of ``loss`` (a :class:`~numpy_mnist.losses.Loss` or its name): the function of
    this module its ``twin`` names.  Raises ``NotImplementedError`` for a loss without one."""
    loss = losses.get_loss(loss)
    if loss.twin is None:
        raise NotImplementedError(f"no PyTorch twin for the loss {loss.name!r}")
    return globals()[loss.twin]


#: The twins of :data:`numpy_mnist.losses.LOSSES`, by the losses' names.
LOSSES: dict[str, Callable] = {name: loss_twin(loss) for name, loss in losses.LOSSES.items()}


# -- models -----------------------------------------------------------------------------------------

def linear(x, p):
    """``x @ weights + bias``: the twin of :class:`~numpy_mnist.models.LinearModel`.

    As ``torch.addmm(bias, x, weights)``, one kernel, which is what ``torch.nn.Linear`` runs: the
    same sum, its bias added in another order (within the floors below), at PyTorch's full speed.
    """
    return _torch().addmm(p["bias"], x, p["weights"])


def mlp(x, p):
    """``relu(x @ w1 + b1) @ w2 + b2``: the twin of :class:`~numpy_mnist.models.MLP` (``addmm`` as above)."""
    torch = _torch()
    return torch.addmm(p["b2"], torch.relu(torch.addmm(p["b1"], x, p["w1"])), p["w2"])


#: The twins of the models, by ``model.kind``.
MODELS: dict[str, Callable] = {"linear": linear, "simple_net": mlp}


def tensor(a, requires_grad: bool = False, dtype=None, device=None):
    """A tensor copied from an array of any backend, through the host (float64 unless ``dtype``)."""
    torch = _torch()
    return torch.tensor(to_numpy(a, np.float64), dtype=dtype or torch.float64, device=device,
                        requires_grad=requires_grad)


def parameters(model, *, dtype=None, device=None, requires_grad: bool = True) -> dict:
    """Copies of ``model.params`` as leaf tensors, keyed alike (float64 unless ``dtype``)."""
    return {name: tensor(value, requires_grad, dtype, device) for name, value in model.params.items()}


def forward(model, x, params):
    """The twin of ``model.forward(x)`` with the parameter tensors ``params``."""
    twin = MODELS.get(getattr(model, "kind", None))
    if twin is None or model.loss.twin is None:
        raise NotImplementedError(f"no PyTorch twin for model kind {getattr(model, 'kind', '?')!r} "
                                  f"with loss {model.loss.name!r}")
    return twin(x, params)


def loss_and_grads(model, x, y, *, magnitudes: bool = False):
    """``model.loss_and_grads(x, y)`` by PyTorch's autograd in float64: ``(loss, grads)``.

    ``grads`` are host float64 arrays keyed like ``model.params``.  With ``magnitudes=True`` also
    ``(k, sizes)``: ``sizes[name]`` bounds, entry by entry, the sum of the absolute values of the
    terms a gradient entry is summed from, and ``k`` the number of terms in any one sum (see the
    module's docstring).  Raises ``NotImplementedError`` for a model or loss without a twin.
    """
    torch = _torch()
    params, xt = parameters(model), tensor(x)
    z, t = forward(model, xt, params), torch.as_tensor(to_numpy(y))
    loss = loss_twin(model.loss)(z, t.to(torch.int64 if model.loss.multiclass else torch.float64))
    dz, *grads = torch.autograd.grad(loss, [z, *params.values()])
    out = (float(loss.detach()), {k: to_numpy(g) for k, g in zip(params, grads)})
    if not magnitudes:
        return out
    # The magnitude network, driven by |dz| + 2/N: 2/N covers the rounding of the loss derivative
    # itself, e.g. of (sigma(z) - t) / N where sigma(z) rounds near t.
    mags = {k: v.detach().abs().requires_grad_(True) for k, v in params.items()}
    upstream = dz.abs() + 2.0 / z.shape[0]
    sizes = torch.autograd.grad((forward(model, xt.abs(), mags) * upstream).sum(), list(mags.values()))
    k = xt.shape[0] + sum(int(v.shape[0]) for v in model.params.values() if len(v.shape) == 2)
    return out + ((k, {name: to_numpy(s) for name, s in zip(params, sizes)}),)


def compare_model(model, x, y, *, rtol: float = TORCH_RTOL) -> tuple[float, dict[str, GradReport]]:
    """Every parameter's gradient from ``model.loss_and_grads`` against autograd's: ``(loss, reports)``.

    Entry by entry ``|ours - torch| <= rtol * max(|ours|, |torch|) + floor``, the floor twice
    Higham's bound on the rounding of the sums (``gamma_k`` times the magnitude network's sizes)
    plus the smallest normal float64.
    """
    backend = model.backend
    xb, yb = backend.asarray(x), backend.asarray(y)
    _, grads = model.loss_and_grads(xb, yb)
    loss, ref, (k, sizes) = loss_and_grads(model, xb, yb, magnitudes=True)
    return loss, {name: compare(name, backend.to_host(grads[name]), ref[name], rtol=rtol,
                                atol=2 * gamma(k) * sizes[name] + TINY64, method="pytorch")
                  for name in model.params}


# -- single pieces ---------------------------------------------------------------------------------

def vjp(fn, inputs, dout):
    """``fn(*inputs)`` and the gradients of ``sum(dout * fn(*inputs))`` for every input, by autograd."""
    ts = [tensor(a, requires_grad=True) for a in inputs]
    out = fn(*ts)
    grads = _torch().autograd.grad(out, ts, grad_outputs=tensor(dout))
    return to_numpy(out), [to_numpy(g) for g in grads]


# -- Going deeper: the ResNet-18's twin ---------------------------------------------------------------
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

    F, buffers = torch.nn.functional, buffers or {}

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
