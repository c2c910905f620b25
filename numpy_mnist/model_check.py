"""Checking a model's hand-derived gradients: finite differences of its own loss, and PyTorch.

:func:`check_model_gradients` compares every parameter's gradient from ``model.loss_and_grads``
with central differences of the model's loss (:func:`numpy_mnist.gradcheck.check_gradient`, in
float64 on the model's backend); :func:`numpy_mnist.torch_twin.compare_model` compares them with
PyTorch's autograd of the same computation; :func:`check_model` runs both, and is what
``numpy-mnist gradcheck`` prints.  The tolerances and their reasons are in :mod:`numpy_mnist.gradcheck`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from numpy_mnist import torch_twin
from numpy_mnist.backends.host import to_numpy
from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_H, GradCheckOptions, GradReport, Tolerance, check_gradient
from numpy_mnist.losses import Loss, get_loss

__all__ = ["ModelCheck", "check_model", "check_model_gradients", "loss_magnitude", "rows_near_relu_kink",
           "kink_margin"]


@dataclass(frozen=True)
class ModelCheck:
    """A model's gradients against finite differences and, when available, PyTorch."""

    loss: float
    finite_differences: dict[str, GradReport]
    pytorch: dict[str, GradReport] | None
    pytorch_missing: str | None = None  #: why there is no PyTorch comparison, else None

    @property
    def reports(self) -> list[GradReport]:
        return [*self.finite_differences.values(), *(self.pytorch or {}).values()]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    @property
    def failures(self) -> list[GradReport]:
        return [r for r in self.reports if not r.ok]


def check_model_gradients(model, x, y, *, h: float = DEFAULT_H, **options: Any) -> tuple[float, dict[str, GradReport]]:
    """Every parameter's gradient from ``model.loss_and_grads(x, y)`` against finite differences.

    Each parameter in turn is perturbed in a float64 twin of the model on the same backend, whose
    loss ``model.loss.forward(model.forward(x), y)`` is differenced.  The noise scale is the size of
    the terms the loss sums (:func:`loss_magnitude`) plus ``sum |d loss / d z| * S``, ``S`` being
    the same network on ``|x|`` and ``|params|``: a logit of -20 made of terms of size 4 carries a
    rounding error of a few ``eps * 20``, which a saturated ``sigma(z)`` turns into a relative error
    (this holds for networks of linear layers and ReLUs).  ``options`` go to :class:`GradCheckOptions`.
    Returns ``(loss, {param name: GradReport})``.
    """
    if model.backend.dtype_name != "float64":
        raise InputError("gradient checks need a float64 model (dtype='float64'): float32 cannot resolve "
                         "a finite difference better than about 1e-3")
    backend, xp = model.backend, model.backend.xp
    xb, yb = backend.asarray(x), backend.asarray(y)
    loss, grads = model.loss_and_grads(xb, yb)
    twin = copy.copy(model)  # only twin.params is ever replaced, never written into
    logits = model.forward(xb)
    twin.params = {name: xp.abs(value) for name, value in model.params.items()}
    logit_sizes = backend.to_host(twin.forward(xp.abs(xb)))
    dlogits = backend.to_host(model.loss.backward(logits, yb))
    scale = (loss_magnitude(model.loss, backend.to_host(logits), backend.to_host(yb), float(loss))
             + float(np.sum(np.abs(dlogits) * logit_sizes)))
    params, tolerance = dict(model.params), Tolerance(h=h)

    def loss_at(p, name):
        twin.params = {**params, name: p}
        return twin.loss.forward(twin.forward(xb), yb)

    return float(loss), {name: check_gradient(lambda p, name=name: loss_at(p, name), value, grads[name],
                                              options=GradCheckOptions(name, scale, backend, tolerance, **options))
                         for name, value in params.items()}


def loss_magnitude(loss: str | Loss, logits, targets, value: float) -> float:
    """The size of the terms ``loss`` (a :class:`~numpy_mnist.losses.Loss` or its name) sums, which
    sets the rounding noise of its differences: its own :attr:`~numpy_mnist.losses.Loss.magnitude`,
    on host float64 copies of ``logits`` and ``targets`` (arrays of any backend)."""
    return get_loss(loss).magnitude(to_numpy(logits, np.float64), to_numpy(targets), value)


def rows_near_relu_kink(model, x, margin: float) -> np.ndarray:
    """Boolean (N,): rows of ``x`` with a ReLU pre-activation within ``margin`` of the kink at 0.

    A step ``h`` in ``w1`` or ``b1`` moves row ``n``'s pre-activations by at most
    ``h * (|x_n| + 1)`` (Cauchy-Schwarz, unit direction).  Models without a ReLU have no such rows.
    """
    host = to_numpy(x, np.float64)
    if getattr(model, "kind", None) != "simple_net":
        return np.zeros(host.shape[0], dtype=bool)
    w1, b1 = (to_numpy(model.params[k], np.float64) for k in ("w1", "b1"))
    return np.any(np.abs(host @ w1 + b1) < margin, axis=1)


def kink_margin(x, h: float = DEFAULT_H) -> float:
    """The smallest safe distance from a ReLU kink for differences of step ``h`` on ``x``."""
    return 2 * h * (1 + float(np.max(np.linalg.norm(to_numpy(x, np.float64), axis=1), initial=0.0)))


def check_model(model, x, y, *, h: float = DEFAULT_H, use_torch: bool = True) -> ModelCheck:
    """Both checks of a model on one batch: finite differences, and PyTorch when it is installed
    (:func:`numpy_mnist.torch_twin.compare_model`).  What ``numpy-mnist gradcheck`` prints."""
    loss, fd = check_model_gradients(model, x, y, h=h)
    missing = "not asked for" if not use_torch else None if torch_twin.available() else "torch not installed"
    if missing is None:
        try:
            return ModelCheck(loss, fd, torch_twin.compare_model(model, x, y)[1])
        except NotImplementedError as exc:
            missing = str(exc)
    return ModelCheck(loss, fd, None, missing)
