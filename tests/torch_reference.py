"""PyTorch oracles for the gradient tests: the same mathematics, differentiated by autograd in float64.

Every oracle returns PyTorch's values and gradients as host float64 arrays, and beside them the
*rounding floor* of each entry, so that a test can ask for::

    |ours - torch| <= 1e-10 * max(|ours|, |torch|) + floor                  (assert_agree)

Why a floor at all, and why this one: both sides compute in float64 but may add in a different
order (BLAS blocks a matmul one way, PyTorch another).  A sum of ``k`` terms is then off by at most
``gamma_k * sum |terms|`` on each side (Higham, *Accuracy and Stability of Numerical Algorithms*,
sec. 3.1, ``gamma_k = k eps / (1 - k eps)``), so two correct programs can differ by twice that.
Where the terms do not cancel, that is about ``k * 1e-16`` relative, far inside ``1e-10``; only
where they cancel (an entry much smaller than the terms it is summed from) does the floor decide.
Below the smallest normal float64 (2.2e-308) numbers carry only absolute precision, so that is
added too.  Elementwise pieces (sigmoid, ReLU, the losses' derivatives) sum nothing: their floor is
just that smallest normal.

The sigmoid here is ``exp(logsigmoid(z))``: its autograd derivative is ``sigma(z) sigma(-z)``,
exact in both tails, like ours (``torch.sigmoid``'s backward ``y (1 - y)`` loses every digit of
``1 - y`` once ``y`` rounds to 1).  The losses and models are the package's own PyTorch twins
(:data:`numpy_mnist.gradcheck.TORCH_LOSSES`, :data:`~numpy_mnist.gradcheck.TORCH_MODELS`), so the
model-level oracle and these are one and the same code.
"""

from __future__ import annotations

import numpy as np
import pytest


class MissingTorch:
    """What ``torch`` is here when PyTorch is not installed: touching any of it skips the test.

    So a test module that imports this one still runs its finite-difference checks without PyTorch,
    and each test that asks the autograd oracle is skipped at that point, not failed.
    """

    REASON = "PyTorch is not installed: the autograd oracle is skipped (the finite-difference checks still run)"

    def __getattr__(self, name):
        if name.startswith("_") or name == "pytestmark":  # pytest looking the module over, not a test
            raise AttributeError(name)
        pytest.skip(self.REASON)


try:
    import torch
except ImportError:
    torch = MissingTorch()
else:
    # The oracles are small problems: one thread is faster than two spin-waiting on a shared machine.
    torch.set_num_threads(1)

from backends import to_numpy  # noqa: E402
from numpy_mnist.gradcheck import TORCH_LOSSES, TORCH_RTOL, compare, gamma, loss_magnitude, torch_sigmoid  # noqa: E402

#: Below this, float64 has only absolute precision (subnormals step by 4.9e-324).
TINY64 = float(np.finfo(np.float64).smallest_normal)
TINY32 = float(np.finfo(np.float32).smallest_normal)
EPS32 = float(np.finfo(np.float32).eps)


def gamma32(k: int) -> float:
    """Higham's ``gamma_k`` for float32 sums."""
    return k * EPS32 / (1 - k * EPS32)


def tensor(a, requires_grad: bool = False):
    """A float64 tensor copied from an array of any backend (through the host)."""
    return torch.tensor(to_numpy(a, np.float64), dtype=torch.float64, requires_grad=requires_grad)


def host(t) -> np.ndarray:
    return t.detach().numpy().copy()


def vjp(fn, inputs, dout):
    """``fn(*inputs)`` and the gradients of ``sum(dout * fn(*inputs))`` for every input, by autograd."""
    ts = [tensor(a, requires_grad=True) for a in inputs]
    out = fn(*ts)
    grads = torch.autograd.grad(out, ts, grad_outputs=tensor(dout))
    return host(out), [host(g) for g in grads]


# -- layers ---------------------------------------------------------------------------------------

def torch_linear(x, w, b):
    return x @ w + b


def linear_oracle(x, w, b, dout):
    """``out, (dx, dw, db)`` of ``x @ w + b`` and their floors ``(out, dx, dw, db)``.

    The floors come from the same computation on absolute values (``|x| @ |w| + |b|`` driven by
    ``|dout|``): exactly the sums of ``|terms|`` each entry is made of.
    """
    out, grads = vjp(torch_linear, [x, w, b], dout)
    mags = [np.abs(to_numpy(a, np.float64)) for a in (x, w, b)]
    out_mag, grad_mags = vjp(torch_linear, mags, np.abs(to_numpy(dout, np.float64)))
    k = max(x.shape[0], w.shape[0], w.shape[1]) + 1
    floors = [2 * gamma(k) * m + TINY64 for m in (out_mag, *grad_mags)]
    return out, grads, floors


def sigmoid_oracle(x, dout):
    """``sigmoid(x)`` and ``dout * sigma'(x)``; elementwise, so their floor is :data:`TINY64`."""
    out, (dx,) = vjp(torch_sigmoid, [x], dout)
    return out, dx


def relu_oracle(x, dout):
    """``relu(x)`` and its gradient, with PyTorch's convention ``relu'(0) = 0``."""
    out, (dx,) = vjp(torch.relu, [x], dout)
    return out, dx


# -- losses ---------------------------------------------------------------------------------------

def loss_oracle(name: str, z, t):
    """``value, dz`` of the loss ``name`` on logits ``z`` and targets ``t``, and their floors.

    ``mnist_loss`` averages positive terms and its derivative is elementwise: no cancellation, the
    floor is :data:`TINY64`.  Binary cross-entropy averages ``softplus(z) - t z``, which cancels for
    a confident right answer, and its derivative ``(sigma(z) - t) / M`` cancels likewise: floors
    from ``softplus(z) + |t z|`` and ``(sigma(z) + |t|) / M``.  PyTorch's
    ``binary_cross_entropy_with_logits`` (the independent oracle here) moreover takes
    ``log(1 + e^-|z|)`` as the log of a rounded ``1 + e^-|z|``, an absolute error of ``eps`` per term
    (ours uses ``log1p``): hence the ``+ 1`` among the terms.
    """
    zt, tt = tensor(z, requires_grad=True), tensor(t)
    value = TORCH_LOSSES[name](zt, tt)
    (dz,) = torch.autograd.grad(value, [zt])
    value, dz = float(value.detach()), host(dz)
    z, t = to_numpy(z, np.float64), to_numpy(t, np.float64)
    m = z.size
    if name == "bce":
        value_floor = 2 * gamma(m + 4) * (loss_magnitude(name, z, t, value) + 1) + TINY64
        dz_floor = 2 * gamma(4) * (host(torch_sigmoid(tensor(z))) + np.abs(t)) / m + TINY64
    else:
        value_floor, dz_floor = TINY64, np.full(z.shape, TINY64)
    return value, dz, value_floor, dz_floor


def book_mnist_loss(z, t):
    """The book's own form: ``torch.where(t == 1, 1 - torch.sigmoid(z), torch.sigmoid(z)).mean()``."""
    p = torch.sigmoid(z)
    return torch.where(t == 1, 1 - p, p).mean()


# -- comparing ------------------------------------------------------------------------------------

def assert_agree(name: str, ours, reference, floor=TINY64, rtol: float = TORCH_RTOL):
    """Assert ``|ours - reference| <= rtol * max(|ours|, |reference|) + floor`` entry by entry."""
    report = compare(name, to_numpy(ours, np.float64), to_numpy(reference, np.float64),
                     rtol=rtol, atol=floor, method="pytorch")
    assert report.ok, str(report)
    return report
