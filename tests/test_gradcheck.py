"""The checker itself: it passes right gradients, catches wrong ones, and says where.

The wrong gradients are the classic slips of a hand derivation: a flipped sign, a missing 1/N, a
transposed matrix, a dropped bias term, a dropped ReLU mask.  Each must be caught, by finite
differences and by PyTorch, on the layer and on the model.
"""

from __future__ import annotations

import sys

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_mnist import torch_twin
from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import (
    DEFAULT_RTOL,
    NOISE_ULPS,
    TORCH_RTOL,
    GradCheckOptions,
    GradReport,
    check_gradient,
    compare,
    directional_derivative,
    numerical_gradient,
    relative_error,
)
from numpy_mnist.layers import linear, linear_backward, sigmoid, sigmoid_derivative
from numpy_mnist.losses import mnist_loss, mnist_loss_backward
from numpy_mnist.model_check import check_model, check_model_gradients
from numpy_mnist.models import MLP, LinearModel, linear1, simple_net

RNG = np.random.default_rng(20240601)


# -- relative error and compare ---------------------------------------------------------------------

def test_relative_error_definition():
    a, n = np.array([1.0, 0.0, -2.0, 1e-20, np.nan]), np.array([1.0 + 1e-9, 0.0, -2.0, 0.0, 1.0])
    rel = relative_error(a, n, rtol=1e-6, atol=1e-12)
    assert rel[0] == pytest.approx(1e-9 / (1 + 1e-9 + 1e-6), rel=1e-6)
    assert rel[1] == 0 and rel[2] == 0
    assert rel[3] == pytest.approx(1e-20 / (1e-20 + 1e-6))  # below the floor: measured absolutely
    assert rel[4] == np.inf
    np.testing.assert_array_equal(relative_error(n[:4], a[:4], rtol=1e-6, atol=1e-12), rel[:4])  # symmetric


@given(a=gs.floats(-1e6, 1e6), b=gs.floats(-1e6, 1e6), atol=gs.floats(0.0, 1.0))
def test_relative_error_at_most_rtol_exactly_when_within_the_combined_tolerance(a, b, atol):
    rtol = 1e-6
    rel = float(relative_error(np.array([a]), np.array([b]), rtol=rtol, atol=atol)[0])
    within = abs(a - b) <= rtol * max(abs(a), abs(b)) + atol
    if abs(rel - rtol) > 1e-12 * rtol:  # away from the boundary, where rounding decides
        assert (rel <= rtol) == within


def test_compare_reports_the_worst_entry():
    analytic = np.arange(12.0).reshape(3, 4) + 1
    reference = analytic.copy()
    reference[2, 1] *= 1 + 1e-3
    reference[0, 3] *= 1 + 1e-8
    report = compare("w", analytic, reference, rtol=1e-6)
    assert isinstance(report, GradReport) and not report.ok
    assert report.index == (2, 1) and report.direction is None and report.where == "entry (2, 1)"
    assert report.analytic == analytic[2, 1] and report.numeric == reference[2, 1]
    assert report.rel_error == pytest.approx(1e-3 / (1 + 1e-3), rel=1e-6)
    assert report.shape == (3, 4) and report.checked == 12 and report.norm == pytest.approx(np.linalg.norm(analytic))
    assert "MISMATCH" in str(report) and "entry (2, 1)" in str(report)


def test_compare_refuses_different_shapes():
    with pytest.raises(InputError, match="shape"):
        compare("w", np.zeros((2, 3)), np.zeros((3, 2)), rtol=1e-6)


# -- finite differences -----------------------------------------------------------------------------

def test_numerical_gradient_of_known_functions():
    x = RNG.uniform(-2, 2, (3, 4))
    # the rounding noise of a sum of 12 terms of size ~1, over 2h: a few 1e-10 (see NOISE_ULPS)
    np.testing.assert_allclose(numerical_gradient(lambda a: float(np.sum(np.sin(a))), x), np.cos(x),
                               rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(numerical_gradient(lambda a: float(np.sum(a ** 3)), x), 3 * x ** 2,
                               rtol=1e-8, atol=1e-8)
    v = RNG.standard_normal(x.shape)
    assert directional_derivative(lambda a: float(np.sum(np.sin(a))), x, v) == pytest.approx(np.sum(np.cos(x) * v))


@given(shape=st.tuples(gs.batch_sizes, gs.widths), seed=st.integers(0, 2**32 - 1))
def test_check_gradient_passes_right_gradients_full_and_directional(shape, seed):
    x = np.random.default_rng(seed).uniform(-2, 2, shape)
    dout = np.random.default_rng(seed + 1).uniform(-1, 1, shape)
    full = check_gradient(np.sin, x, dout * np.cos(x), dout=dout)
    assert full.method == "full" and full.checked == x.size and full.ok, str(full)
    wide = check_gradient(np.sin, x, dout * np.cos(x), dout=dout,
                          options=GradCheckOptions(max_full=0, directions=4, entries=3))
    assert wide.method == "directional" and wide.checked == 4 + min(3, x.size) and wide.ok, str(wide)


def test_directional_check_of_a_784_wide_weight_matrix():
    """The book's 784 x 30 weights: 16 directions and 16 entries instead of 47,040 evaluations."""
    x = RNG.uniform(0, 1, (8, 784))
    w = RNG.uniform(-0.05, 0.05, (784, 30))
    dout = RNG.standard_normal((8, 30))
    calls = []

    def f(w_):
        calls.append(1)
        return x @ w_

    report = check_gradient(f, w, x.T @ dout, dout=dout)
    assert report.method == "directional" and report.checked == 32 and report.ok, str(report)
    assert len(calls) == 1 + 2 * 32
    wrong = (x.T @ dout).copy()
    worst = np.unravel_index(np.argmax(np.abs(wrong)), wrong.shape)
    wrong[worst] *= 1.001  # one wrong entry of 23,520: the largest is always among the sampled ones
    caught = check_gradient(f, w, wrong, dout=dout)
    assert not caught.ok and caught.index == tuple(int(i) for i in worst)


def test_check_gradient_floor_is_the_finite_differences_own_noise():
    """A slope below what a difference can resolve is held to the noise, absolutely, not relatively."""
    x = np.array([0.3])

    def f(a):
        return 1.0 + 1e-13 * a[0]  # the change over 2h is 2e-19: rounded away

    report = check_gradient(f, x, np.array([1e-13]))
    assert report.numeric == 0.0 and report.ok
    assert report.atol == pytest.approx(NOISE_ULPS * np.finfo(float).eps * 1.0 / 1e-6, rel=1e-6)
    assert not check_gradient(f, x, np.array([1e-6])).ok  # but a real error above the noise is seen


def test_check_gradient_refuses_a_gradient_of_another_shape():
    with pytest.raises(InputError, match="shape"):
        check_gradient(np.sin, np.zeros((2, 3)), np.zeros((3, 2)), dout=np.ones((2, 3)))
    with pytest.raises(InputError, match="dout"):
        check_gradient(np.sin, np.zeros(3), np.zeros(3))


def test_check_gradient_catches_nan():
    x = np.array([0.5, 1.0])
    report = check_gradient(np.sin, x, np.array([np.cos(0.5), np.nan]), dout=np.ones(2))
    assert not report.ok and report.rel_error == np.inf and report.index == (1,)


def test_check_gradient_takes_arrays_of_any_backend(backend):
    x = RNG.uniform(-3, 3, (4, 2))
    xb, dout = backend.asarray(x), backend.asarray(RNG.standard_normal((4, 2)))
    seen = []

    def f(a):
        seen.append(backend.owns(a))
        return sigmoid(a)

    report = check_gradient(f, xb, dout * sigmoid_derivative(xb), dout=dout,
                            options=GradCheckOptions(backend=backend))
    assert report.ok and all(seen)


# -- deliberately wrong gradients are caught --------------------------------------------------------

def linear_case(square=False):
    n, d_in = 5, 4
    d_out = d_in if square else 3
    return (RNG.uniform(-1, 1, (n, d_in)), RNG.uniform(-1, 1, (d_in, d_out)), RNG.uniform(-1, 1, d_out),
            RNG.uniform(-1, 1, (n, d_out)))


def wrong_layer_gradients():
    """(what is wrong, function, point, dout, the wrong gradient, the right one)."""
    x, w, b, dout = linear_case()
    _, dw, db = linear_backward(dout, x, w)
    xs, ws, bs, douts = linear_case(square=True)
    dxs, dws, _ = linear_backward(douts, xs, ws)
    z = RNG.uniform(-3, 3, (6, 1))
    t = (RNG.uniform(size=(6, 1)) > 0.5).astype(float)
    dz = mnist_loss_backward(z, t)
    # the bias dropped: sigma' taken at x @ w instead of x @ w + b, in d mnist_loss(linear) / d w
    wv, bv = RNG.uniform(-1, 1, (4, 1)), np.array([1.5])
    sv = 1 - 2 * t[:5]

    def loss_of_w(w_):
        return mnist_loss(linear(x, w_, bv), t[:5])

    right_w = x.T @ (sv * sigmoid_derivative(x @ wv + bv) / 5)
    no_bias_w = x.T @ (sv * sigmoid_derivative(x @ wv) / 5)
    return [
        ("flipped sign", lambda w_: linear(x, w_, b), w, dout, -dw, dw),
        ("flipped sign in the loss", lambda z_: mnist_loss(z_, t), z, None, -dz, dz),
        ("missing 1/N", lambda z_: mnist_loss(z_, t), z, None, dz * z.size, dz),
        ("missing 1/N in the bias", lambda b_: linear(x, w, b_) / 5, b, dout, db, db / 5),
        ("transposed matrix in dw", lambda w_: linear(xs, w_, bs), ws, douts, dws.T, dws),
        ("w instead of w.T in dx", lambda x_: linear(x_, ws, bs), xs, douts, douts @ ws, dxs),
        ("dropped bias term", loss_of_w, wv, None, no_bias_w, right_w),
    ]


@pytest.mark.parametrize("case", wrong_layer_gradients(), ids=lambda c: c[0])
def test_wrong_layer_gradients_are_caught_and_right_ones_pass(case):
    what, f, x, dout, wrong, right = case
    assert check_gradient(f, x, right, dout=dout).ok
    report = check_gradient(f, x, wrong, dout=dout)
    assert not report.ok, f"{what} was not caught: {report}"
    assert report.rel_error > 1e3 * DEFAULT_RTOL


class FlippedSign(LinearModel):
    def _backward(self, dlogits, x):
        return {k: -g for k, g in super()._backward(dlogits, x).items()}


class MissingOneOverN(LinearModel):
    def _backward(self, dlogits, x):
        return super()._backward(dlogits * x.shape[0], x)


class DroppedBias(LinearModel):
    """Takes the loss derivative at ``x @ w``, as if there were no bias."""

    def loss_and_grads(self, x, y):
        loss, _ = super().loss_and_grads(x, y)
        return loss, self._backward(self.loss.backward(x @ self.params["weights"], y), x)


class TransposedDW1(MLP):
    """``dW1 = (x.T @ dh).T``: of the right shape only because W1 is square."""

    def _backward(self, dlogits, cache):
        grads = super()._backward(dlogits, cache)
        return {**grads, "w1": grads["w1"].T}


class DroppedReluMask(MLP):
    """Passes the gradient through the ReLU everywhere, as if it were the identity."""

    def _backward(self, dlogits, cache):
        x, h, a = cache
        grads = super()._backward(dlogits, cache)
        da = dlogits @ self.params["w2"].T
        _, dw1, db1 = linear_backward(da, x, self.params["w1"], need_dx=False)  # no relu_backward
        return {**grads, "w1": dw1, "b1": db1}


def broken_models(backend):
    rng = np.random.default_rng(5)
    lin = {"weights": rng.uniform(-1, 1, (6, 1)), "bias": np.array([0.7])}
    mlp = {"w1": rng.uniform(-1, 1, (6, 4)), "b1": rng.uniform(-1, 1, 4), "w2": rng.uniform(-1, 1, (4, 1)),
           "b2": np.array([0.1])}
    return {
        "flipped sign": FlippedSign(lin, backend, "mnist_loss"),
        "missing 1/N": MissingOneOverN(lin, backend, "bce"),
        "dropped bias": DroppedBias(lin, backend, "mnist_loss"),
        "dropped ReLU mask": DroppedReluMask(mlp, backend, "bce"),
    }


@pytest.mark.parametrize("what", ["flipped sign", "missing 1/N", "dropped bias", "dropped ReLU mask"])
def test_wrong_model_gradients_are_caught_by_both_oracles(backend, what):
    model = broken_models(backend)[what]
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (8, 6))
    y = (np.arange(8) % 2).reshape(8, 1).astype(float)
    if isinstance(model, MLP):  # some units must be off for a dropped mask to matter
        assert np.any(x @ np.asarray(model.params["w1"]) + np.asarray(model.params["b1"]) < 0)
    check = check_model(model, x, y)
    assert not check.ok
    assert any(not r.ok for r in check.finite_differences.values()), f"finite differences missed {what}"
    pytest.importorskip("torch", reason="PyTorch, the second oracle, is not installed")
    assert check.pytorch is not None
    assert any(not r.ok for r in check.pytorch.values()), f"PyTorch missed {what}"


def test_right_model_gradients_pass_the_same_checks(backend):  # by both oracles where PyTorch is installed
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (8, 6))
    y = (np.arange(8) % 2).reshape(8, 1).astype(float)
    for model in broken_models(backend).values():
        right = (MLP if isinstance(model, MLP) else LinearModel)(model.params, backend, model.loss)
        check = check_model(right, x, y)
        assert check.ok, "\n".join(map(str, check.failures))


@gs.needs_torch
def test_transposed_weight_gradient_is_caught(backend):
    """A square first layer, so that the transposed dW1 still has the right shape."""
    rng = np.random.default_rng(8)
    params = {"w1": rng.uniform(-1, 1, (5, 5)), "b1": rng.uniform(0.5, 1, 5), "w2": rng.uniform(-1, 1, (5, 1)),
              "b2": np.array([0.0])}
    model = TransposedDW1(params, backend, "mnist_loss")
    x = rng.uniform(0, 1, (7, 5))
    y = (np.arange(7) % 2).reshape(7, 1).astype(float)
    check = check_model(model, x, y)
    assert not check.finite_differences["w1"].ok and check.finite_differences["w2"].ok
    pytest.importorskip("torch", reason="PyTorch, the second oracle, is not installed")
    assert not check.pytorch["w1"].ok and check.pytorch["w2"].ok


# -- the model-level API ----------------------------------------------------------------------------

def test_check_model_gradients_needs_float64():
    model = linear1(seed=0, backend="numpy", dtype="float32")
    with pytest.raises(InputError, match="float64"):
        check_model_gradients(model, np.zeros((2, 784)), np.zeros((2, 1)))


def test_check_model_without_torch_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    model = linear1(seed=0, backend="numpy", dtype="float64")
    x = RNG.uniform(0, 1, (4, 784))
    check = check_model(model, x, np.ones((4, 1)))
    assert check.pytorch is None and check.pytorch_missing == "torch not installed" and check.ok
    assert [r.name for r in check.reports] == ["weights", "bias"]


@gs.needs_torch
def test_torch_twin_refuses_an_unknown_model_kind():
    pytest.importorskip("torch")
    class Odd(LinearModel):
        kind = "odd"

    model = Odd({"weights": np.ones((2, 1)), "bias": np.zeros(1)}, linear1(dtype="float64").backend, "bce")
    with pytest.raises(NotImplementedError, match="odd"):
        torch_twin.loss_and_grads(model, np.ones((1, 2)), np.ones((1, 1)))
    check = check_model(model, np.ones((1, 2)), np.ones((1, 1)))
    assert check.pytorch is None and "odd" in check.pytorch_missing and check.ok


@gs.needs_torch
def test_torch_twin_matches_the_models_loss(backend):
    pytest.importorskip("torch")
    model = simple_net(3, seed=2, backend=backend, dtype="float64", loss="bce")
    x = RNG.uniform(0, 1, (5, 784))
    y = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]])
    ours, _ = model.loss_and_grads(backend.asarray(x), backend.asarray(y))
    theirs, _ = torch_twin.loss_and_grads(model, x, y)
    assert theirs == pytest.approx(float(ours), rel=1e-12)
    _, reports = torch_twin.compare_model(model, x, y)
    assert all(r.ok and r.method == "pytorch" for r in reports.values())


# -- the tolerances as applied: an error of twice the tolerance fails, of half of it passes ---------

class ScaledGradients(LinearModel):
    """The linear model with every gradient multiplied by ``1 + error``: a relative error of ``error``."""

    error = 0.0

    def _backward(self, dlogits, x):
        return {k: g * (1 + self.error) for k, g in super()._backward(dlogits, x).items()}


def scaled_model(backend, error):
    """All-positive images and all-3 targets: every gradient entry is a sum of terms of one sign, so
    no cancellation lets a rounding floor decide, and the check is the relative tolerance alone."""
    rng = np.random.default_rng(11)
    model = ScaledGradients({"weights": rng.uniform(-0.5, 0.5, (5, 1)), "bias": np.array([0.2])}, backend,
                            "mnist_loss")
    model.error = error
    return model, rng.uniform(0.5, 1, (4, 5)), np.ones((4, 1))


@pytest.mark.parametrize("shape", [(3, 4), (40, 30)], ids=["full", "directional"])
@pytest.mark.parametrize("factor, ok", [(0.5, True), (2.0, False)], ids=["half the tolerance", "twice"])
def test_finite_differences_apply_their_tolerance(shape, factor, ok):
    """``f(x) = sum(c * x)`` has the gradient ``c``; handing in ``c (1 + factor * rtol)`` puts every
    entry (and every direction) ``factor`` tolerances off, far above the differences' own noise."""
    c = RNG.uniform(0.5, 2.0, shape)
    x = RNG.uniform(-1, 1, shape)
    report = check_gradient(lambda a: np.sum(c * a), x, c * (1 + factor * DEFAULT_RTOL),
                            options=GradCheckOptions(max_full=200))
    assert report.method == ("full" if c.size <= 200 else "directional")
    assert report.rel_error == pytest.approx(factor * DEFAULT_RTOL, rel=0.05)  # less the noise floor's share
    assert report.ok == ok, str(report)


@pytest.mark.parametrize("factor, ok", [(0.5, True), (2.0, False)], ids=["half the tolerance", "twice"])
def test_model_finite_differences_apply_their_tolerance(backend, factor, ok):
    model, x, y = scaled_model(backend, factor * DEFAULT_RTOL)
    _, reports = check_model_gradients(model, x, y)
    assert all(r.ok == ok for r in reports.values()), "\n".join(map(str, reports.values()))


@gs.needs_torch
@pytest.mark.parametrize("factor, ok", [(0.5, True), (2.0, False)], ids=["half the tolerance", "twice"])
def test_pytorch_comparison_applies_its_tolerance(backend, factor, ok):
    model, x, y = scaled_model(backend, factor * TORCH_RTOL)
    _, reports = torch_twin.compare_model(model, x, y)
    for report in reports.values():
        assert report.rel_error == pytest.approx(factor * TORCH_RTOL, rel=0.01)
        assert report.ok == ok, str(report)
