"""The SGD warm-up's hand gradients against central finite differences and PyTorch's autograd (float64).

* Finite differences: :func:`numpy_mnist.gradcheck.numerical_gradient` of the loss, relative error
  <= 1e-6 above the difference's own rounding floor.  The loss is quadratic in ``(a, b, c)``, so the
  central difference has no truncation error: only rounding, ``eps * scale / h`` with ``scale`` the
  size of the terms the squared errors are computed from.
* PyTorch: the book's own code (``a*(t**2) + (b*t) + c``, ``((preds-targets)**2).mean()``,
  ``backward``), within 1e-10 relative plus Higham's bound on the reordered sums of ``n`` terms.
* On every backend of the ``backend`` fixture (the functions read the namespace off their arguments).
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_mnist.gradcheck import DEFAULT_H, DEFAULT_RTOL, NOISE_ULPS, TORCH_RTOL, compare, numerical_gradient
from numpy_mnist.torch_twin import TINY64, gamma
from numpy_mnist.warmup import (
    BOOK_LR,
    apply_step,
    fit,
    init_params,
    mse,
    quadratic,
    quadratic_mse_gradient,
    roller_coaster,
    square,
    square_gradient,
)

EPS64 = float(np.finfo(np.float64).eps)


@st.composite
def quadratic_case(draw):
    """Times, targets and parameters: the book's 20 steps and scales, and smaller or shifted ones."""
    n = draw(st.integers(1, 20))
    t = draw(gs.arrays((n,), -20.0, 20.0))
    y = draw(gs.arrays((n,), -100.0, 100.0))
    params = draw(gs.arrays((3,), -3.0, 3.0))
    return t, y, params


def term_scale(t, y, params) -> np.ndarray:
    """``|a t**2| + |b t| + |c| + |y|``: the size of what ``p - y`` is computed from, entry by entry."""
    a, b, c = np.abs(params)
    return a * t * t + b * np.abs(t) + c + np.abs(y)


def test_the_books_square_gradients(backend):
    """6 at 3, and (6, 8, 20) at (3, 4, 10), as the book's ``xt.grad`` prints."""
    assert float(square_gradient(backend.asarray(np.array(3.0)))) == 6.0
    np.testing.assert_array_equal(backend.to_host(square_gradient(backend.asarray(np.array([3.0, 4.0, 10.0])))),
                                  [6.0, 8.0, 20.0])
    assert float(square(backend.asarray(np.array(3.0)))) == 9.0


@given(x=gs.arrays(st.integers(1, 6), -1e3, 1e3))
def test_square_gradient_matches_finite_differences_and_torch(x):
    numeric = numerical_gradient(lambda v: float(np.sum(square(v))), x)
    # the rounding of (x +- h)**2: a few eps of it, magnified by 1/h
    atol = NOISE_ULPS * EPS64 * np.sum((np.abs(x) + DEFAULT_H) ** 2) / DEFAULT_H
    assert compare("d x**2", square_gradient(x), numeric, rtol=DEFAULT_RTOL, atol=atol).ok
    torch = pytest.importorskip("torch", reason="PyTorch, the second oracle, is not installed")
    xt = torch.tensor(x, requires_grad=True)
    (xt**2).sum().backward()
    assert compare("d x**2 vs torch", square_gradient(x), xt.grad.numpy(), rtol=TORCH_RTOL).ok


@gs.with_backend
@given(case=quadratic_case())
def test_quadratic_mse_gradient_matches_finite_differences(backend, case):
    t, y, params = case
    tb, yb = backend.asarray(t), backend.asarray(y)
    ours = backend.to_host(quadratic_mse_gradient(tb, backend.asarray(params), yb))
    assert ours.shape == (3,)
    numeric = numerical_gradient(lambda p: float(mse(quadratic(tb, backend.asarray(p)), yb)), params)
    # rounding of L = mean((p - y)**2) at params +- h: a few eps of mean(scale**2), magnified by 1/h
    atol = NOISE_ULPS * EPS64 * float(np.mean(term_scale(t, y, np.abs(params) + DEFAULT_H) ** 2)) / DEFAULT_H
    report = compare("d mse / d (a, b, c)", ours, numeric, rtol=DEFAULT_RTOL, atol=atol)
    assert report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(case=quadratic_case())
def test_quadratic_mse_gradient_matches_torch_autograd(backend, case):
    import torch

    t, y, params = case
    tb, yb, pb = backend.asarray(t), backend.asarray(y), backend.asarray(params)
    ours_loss = float(mse(quadratic(tb, pb), yb))
    ours = backend.to_host(quadratic_mse_gradient(tb, pb, yb))

    # the book's code, differentiated by autograd
    time, speed = torch.tensor(t), torch.tensor(y)
    theirs = torch.tensor(params, requires_grad=True)
    a, b, c = theirs
    loss = ((a * (time**2) + (b * time) + c - speed) ** 2).mean()
    loss.backward()

    # both may round p - y differently (eps of its terms) and add the n terms of each mean in another order
    n = len(t)
    scale = term_scale(t, y, params)
    err = np.abs(quadratic(t, params) - y)
    # (plus TINY64: below the smallest normal float64 only absolute precision exists)
    floor = 2 * gamma(n + 4) * np.array([np.mean(2 * (err + scale) * t * t), np.mean(2 * (err + scale) * np.abs(t)),
                                         np.mean(2 * (err + scale))]) + TINY64
    report = compare("d mse / d (a, b, c) vs torch", ours, theirs.grad.numpy(), rtol=TORCH_RTOL, atol=floor)
    assert report.ok, str(report)
    value_floor = 2 * gamma(n + 4) * float(np.mean((err + scale) ** 2)) + TINY64
    assert compare("mse vs torch", ours_loss, float(loss.detach()), rtol=TORCH_RTOL, atol=value_floor).ok


def test_the_roller_coaster_is_the_books_data_from_a_seeded_host_rng():
    time, speed = roller_coaster(seed=3)
    np.testing.assert_array_equal(time, np.arange(20.0))
    noise = np.random.default_rng(3).standard_normal(20) * 3
    np.testing.assert_allclose(speed, noise + 0.75 * (time - 9.5) ** 2 + 1, rtol=0, atol=1e-12)
    again = roller_coaster(seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(again, (time, speed)))
    assert init_params(seed=3).shape == (3,)


def test_apply_step_is_steps_2_to_5_and_leaves_params_alone(backend):
    time, speed = map(backend.asarray, roller_coaster())
    params = backend.asarray(init_params(seed=4))
    before = backend.to_host(params).copy()
    step = apply_step(params, time, speed, lr=BOOK_LR)
    np.testing.assert_array_equal(backend.to_host(params), before)
    host_time, host_speed = roller_coaster()
    grad = quadratic_mse_gradient(host_time, before, host_speed)
    np.testing.assert_allclose(backend.to_host(step.params), before - BOOK_LR * grad, rtol=1e-12)
    np.testing.assert_allclose(backend.to_host(step.preds), quadratic(host_time, before), rtol=1e-12)
    assert abs(step.loss - float(mse(quadratic(host_time, before), host_speed))) <= 1e-9 * step.loss


def test_the_loss_falls_at_the_books_lr_and_explodes_at_100_times_it(backend):
    time, speed, params = map(backend.asarray, (*roller_coaster(), init_params(seed=4)))
    losses = [s.loss for s in fit(params, time, speed, lr=BOOK_LR, steps=10)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < losses[0] / 10
    big = [s.loss for s in fit(params, time, speed, lr=100 * BOOK_LR, steps=10)]
    assert all(later > earlier for earlier, later in zip(big, big[1:])), big
    assert big[-1] > 1e6 * big[0]
