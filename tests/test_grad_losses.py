"""mnist_loss and binary cross-entropy: values and derivatives against finite differences and PyTorch.

* Finite differences in float64 (relative error <= 1e-6) on logits |z| <= 4, where the loss is
  smooth and its slope large enough for a difference to resolve, over batches of 1 to 8 images.
* PyTorch autograd in float64 (1e-10 relative plus the rounding floor of :mod:`numpy_mnist.torch_twin`)
  on logits out to |z| = 1e3 (saturated: no warning, no NaN).  The PyTorch ``mnist_loss`` writes
  ``1 - sigma(z)`` as ``sigma(-z)``, the same mathematics as ours; a separate test shows that it
  equals the book's own ``where(t == 1, 1 - sigmoid(z), sigmoid(z)).mean()`` at moderate logits.
* Targets all 3s, all 7s, or mixed; a batch of one; float32 against float64.
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracles import TINY32, assert_agree, gamma32, loss_oracle

from numpy_mnist import torch_twin
from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.losses import get_loss
from numpy_mnist.model_check import loss_magnitude
from numpy_mnist.torch_twin import tensor

F32_RTOL = 1e-5


@st.composite
def loss_case(draw, lo, hi, extremes=()):
    n = draw(gs.batch_sizes)
    values = gs.floats(lo, hi) if not extremes else st.one_of(gs.floats(lo, hi), st.sampled_from(extremes))
    z = draw(gs.hnp.arrays(np.float64, (n, 1), elements=values))
    return z, draw(gs.targets((n, 1)))


@gs.with_backend
@given(name=gs.losses, case=loss_case(-4.0, 4.0))
def test_loss_backward_matches_finite_differences(backend, name, case):
    z, t = case
    loss = get_loss(name)
    zb, tb = backend.asarray(z), backend.asarray(t)
    dz = loss.backward(zb, tb)
    assert tuple(dz.shape) == z.shape
    value = float(loss.forward(zb, tb))
    report = check_gradient(lambda z_: loss.forward(z_, tb), zb, dz, options=GradCheckOptions(
        f"d {name}", loss_magnitude(name, z, t, value), backend))
    assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(name=gs.losses, case=loss_case(-1e3, 1e3, extremes=(-1e3, 1e3, -745.0, 745.0, -40.0, 40.0, 0.0)))
def test_loss_and_backward_match_torch_out_to_saturation(backend, name, case):
    z, t = case
    loss = get_loss(name)
    zb, tb = backend.asarray(z), backend.asarray(t)
    value, dz = float(loss.forward(zb, tb)), backend.to_host(loss.backward(zb, tb))
    assert np.isfinite(value) and np.all(np.isfinite(dz))
    ref_value, ref_dz, value_floor, dz_floor = loss_oracle(name, z, t)
    assert_agree(name, value, ref_value, value_floor)
    assert_agree(f"d {name}", dz, ref_dz, dz_floor)


@gs.with_backend
@given(case=loss_case(-4.0, 4.0), t=st.sampled_from([-1.0, 0.25, 0.5, 2.0]))
def test_mnist_loss_backward_is_the_derivative_of_its_forward_for_any_targets(backend, case, t):
    """The pair is one function for every input it accepts: a target other than 1 counts as a 7."""
    z, targets = case
    targets = np.where(targets == 1, 1.0, t)
    loss = get_loss("mnist_loss")
    zb, tb = backend.asarray(z), backend.asarray(targets)
    report = check_gradient(lambda z_: loss.forward(z_, tb), zb, loss.backward(zb, tb),
                            options=GradCheckOptions(backend=backend))
    assert report.ok, str(report)


def book_mnist_loss(z, t):
    """The book's own form: ``torch.where(t == 1, 1 - torch.sigmoid(z), torch.sigmoid(z)).mean()``."""
    import torch

    p = torch.sigmoid(z)
    return torch.where(t == 1, 1 - p, p).mean()


@gs.needs_torch
@given(case=loss_case(-8.0, 8.0))
def test_torch_twin_mnist_loss_equals_the_books_form_at_moderate_logits(case):
    """Our PyTorch twin writes 1 - sigma(z) as sigma(-z); the book writes 1 - sigmoid(z).

    At |z| <= 8 the book's form loses at most a few digits of 1e-16 / sigma(-8), so the two agree to
    1e-10, values and gradients: the oracle is the book's loss.
    """
    z, t = case
    values, grads = [], []
    for fn in (torch_twin.mnist_loss, book_mnist_loss):
        value, (grad,) = torch_twin.vjp(lambda a, fn=fn: fn(a, tensor(t)), [z], np.ones(()))
        values.append(float(value))
        grads.append(grad)
    assert_agree("mnist_loss", values[0], values[1])
    assert_agree("d mnist_loss", grads[0], grads[1])


@gs.needs_torch
def test_books_form_loses_digits_where_ours_does_not():
    """At z = 30 the book's ``1 - sigmoid(z)`` keeps about 3 digits; ``sigma(-z)`` keeps them all."""
    z, t = np.array([[30.0]]), np.array([[1.0]])
    exact = float(torch_twin.sigmoid(tensor(-z)))
    ours = float(get_loss("mnist_loss").forward(z, t))
    assert_agree("mnist_loss", ours, exact, rtol=1e-14)  # a few ulps
    book = float(book_mnist_loss(tensor(z), tensor(t)))
    assert abs(book - exact) > 1e-4 * exact


@gs.needs_torch
@pytest.mark.parametrize("name", ["mnist_loss", "bce"])
@pytest.mark.parametrize("kind", ["all threes", "all sevens", "mixed"])
@pytest.mark.parametrize("n", [1, 5])
def test_batch_of_one_and_one_sided_targets(backend, name, kind, n):
    rng = np.random.default_rng(n)
    z = rng.uniform(-4, 4, (n, 1))
    t = {"all threes": np.ones((n, 1)), "all sevens": np.zeros((n, 1)),
         "mixed": (np.arange(n) % 2).reshape(n, 1).astype(float)}[kind]
    loss = get_loss(name)
    zb, tb = backend.asarray(z), backend.asarray(t)
    dz = loss.backward(zb, tb)
    value, ref_dz, value_floor, dz_floor = loss_oracle(name, z, t)
    assert_agree(name, float(loss.forward(zb, tb)), value, value_floor)
    assert_agree(f"d {name}", backend.to_host(dz), ref_dz, dz_floor)
    report = check_gradient(lambda z_: loss.forward(z_, tb), zb, dz,
                            options=GradCheckOptions(scale=loss_magnitude(name, z, t, value), backend=backend))
    assert report.ok, str(report)
    # All 3s: every logit is pushed up (negative gradient); all 7s: every logit pushed down.
    signs = np.sign(backend.to_host(dz))
    if kind == "all threes":
        assert np.all(signs < 0)
    if kind == "all sevens":
        assert np.all(signs > 0)


@gs.needs_torch
@gs.with_backend
@given(name=gs.losses, case=loss_case(-30.0, 30.0))
def test_float32_losses_match_float64_on_the_same_inputs(backend32, name, case):
    z, t = case
    z = z.astype(np.float32).astype(np.float64)
    loss = get_loss(name)
    zb, tb = backend32.asarray(z), backend32.asarray(t)
    assert zb.dtype == backend32.dtype
    value, dz = loss.forward(zb, tb), loss.backward(zb, tb)
    assert value.dtype == backend32.dtype and dz.dtype == backend32.dtype
    # float64 reference values carry their own floors (PyTorch's bce rounds 1 + e^-|z|: 1e-15
    # absolute, which at z = -23, a loss of 1e-10, is 1e-5 relative); to those add float32's
    # rounding of the same cancellations.
    ref_value, ref_dz, value_floor, dz_floor = loss_oracle(name, z, t)
    m = z.size
    if name == "bce":
        value_floor += 2 * gamma32(m + 4) * loss_magnitude(name, z, t, ref_value)
        dz_floor = dz_floor + 2 * gamma32(4) * (1 / (1 + np.exp(-z)) + t) / m
    assert_agree(f"{name} float32", float(value), ref_value, value_floor + TINY32, rtol=F32_RTOL)
    assert_agree(f"d {name} float32", backend32.to_host(dz), ref_dz, dz_floor + TINY32, rtol=F32_RTOL)


@pytest.mark.parametrize("name", ["mnist_loss", "bce"])
def test_losses_refuse_targets_of_another_shape(backend, name):
    """(N, 1) logits against (N,) targets would broadcast to (N, N): refused, not computed."""
    loss = get_loss(name)
    z, t = backend.asarray(np.zeros((3, 1))), backend.asarray(np.zeros(3))
    with pytest.raises(InputError):
        loss.forward(z, t)
    with pytest.raises(InputError):
        loss.backward(z, t)
