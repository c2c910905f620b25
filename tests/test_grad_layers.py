"""linear, sigmoid and relu: every backward against finite differences and against PyTorch autograd.

Oracles and tolerances (issue 4):

* central finite differences in float64, relative error <= 1e-6 (``DEFAULT_RTOL``) wherever the
  function is smooth: sigmoid within |x| <= 5 (beyond, ``1 - sigma`` is too small for a difference
  to resolve), ReLU at least 1e-3 away from its kink;
* PyTorch autograd in float64, ``|ours - torch| <= 1e-10 max(|ours|, |torch|) + floor`` (the
  rounding floor of :mod:`numpy_mnist.torch_twin`), over the full range: sigmoid out to |x| = 1e3, ReLU
  exactly at 0;
* float32 against float64 on the same (float32-rounded) inputs, 1e-5 relative plus the float32
  rounding floor.

Each property runs on every backend (numpy, array_api_strict, cupy when a GPU is usable).
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracles import TINY32, assert_agree, gamma32, linear_oracle, relu_oracle, sigmoid_oracle

from numpy_mnist.gradcheck import DEFAULT_RTOL, TORCH_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.layers import (
    linear,
    linear_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    sigmoid_derivative,
)
from numpy_mnist.torch_twin import TINY64

F32_RTOL = 1e-5


@st.composite
def linear_case(draw, lo=-3.0, hi=3.0):
    n, d_in, d_out = draw(gs.batch_sizes), draw(gs.widths), draw(gs.widths)
    return (draw(gs.arrays((n, d_in), lo, hi)), draw(gs.arrays((d_in, d_out), lo, hi)),
            draw(gs.arrays((d_out,), lo, hi)), draw(gs.arrays((n, d_out), lo, hi)))


@st.composite
def elementwise_case(draw, values):
    shape = (draw(gs.batch_sizes), draw(gs.widths))
    x = draw(gs.hnp.arrays(np.float64, shape, elements=values))
    return x, draw(gs.arrays(shape, -2.0, 2.0))


def on(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


# -- linear -----------------------------------------------------------------------------------------

def linear_scales(x, w, b, dout):
    """What each entry's finite difference is computed from (see ``check_gradient``'s ``scale``).

    ``out = x @ w + b`` rounds each entry by at most ``gamma_{D+1}`` times ``S = |x| @ |w| + |b|``.
    Moving ``x[n, i]`` moves row ``n`` of ``out``, moving ``w[i, j]`` or ``b[j]`` moves column ``j``:
    the scale of that entry is ``(D + 1) * sum |dout * S|`` over the row or the column.
    """
    s = np.abs(dout) * (np.abs(x) @ np.abs(w) + np.abs(b)) * (x.shape[1] + 1)
    rows, cols = s.sum(axis=1), s.sum(axis=0)
    return (np.broadcast_to(rows[:, None], x.shape), np.broadcast_to(cols[None, :], w.shape), cols)


@gs.with_backend
@given(case=linear_case())
def test_linear_backward_matches_finite_differences(backend, case):
    x, w, b, dout = case
    xb, wb, bb, doutb = on(backend, x, w, b, dout)
    dx, dw, db = linear_backward(doutb, xb, wb)
    sx, sw, sb = linear_scales(x, w, b, dout)
    checks = [
        check_gradient(lambda x_: linear(x_, wb, bb), xb, dx, dout=dout, options=GradCheckOptions("dx", sx, backend)),
        check_gradient(lambda w_: linear(xb, w_, bb), wb, dw, dout=dout, options=GradCheckOptions("dw", sw, backend)),
        check_gradient(lambda b_: linear(xb, wb, b_), bb, db, dout=dout, options=GradCheckOptions("db", sb, backend)),
    ]
    for report in checks:
        assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(case=linear_case(-10.0, 10.0))
def test_linear_forward_and_backward_match_torch(backend, case):
    x, w, b, dout = case
    xb, wb, bb, doutb = on(backend, x, w, b, dout)
    out_ref, grads_ref, floors = linear_oracle(x, w, b, dout)
    assert_agree("out", backend.to_host(linear(xb, wb, bb)), out_ref, floors[0])
    for name, ours, ref, floor in zip(("dx", "dw", "db"), linear_backward(doutb, xb, wb), grads_ref, floors[1:]):
        assert tuple(ours.shape) == ref.shape
        assert_agree(name, backend.to_host(ours), ref, floor)


@gs.needs_torch
def test_linear_backward_can_skip_dx(backend):
    rng = np.random.default_rng(0)
    x, w, dout = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    dx, dw, db = linear_backward(*on(backend, dout, x, w), need_dx=False)
    assert dx is None
    _, (_, dw_ref, db_ref), (_, _, fw, fb) = linear_oracle(x, w, np.zeros(2), dout)
    assert_agree("dw", backend.to_host(dw), dw_ref, fw)
    assert_agree("db", backend.to_host(db), db_ref, fb)


# -- sigmoid ----------------------------------------------------------------------------------------

@gs.with_backend
@given(case=elementwise_case(gs.floats(-5.0, 5.0)))
def test_sigmoid_backward_matches_finite_differences(backend, case):
    x, dout = case
    xb, doutb = on(backend, x, dout)
    dx = sigmoid_backward(doutb, xb)
    # Elementwise: moving x[i] moves only dout[i] * sigmoid(x[i]); every other term cancels exactly.
    scale = np.abs(dout * backend.to_host(sigmoid(xb)))
    report = check_gradient(sigmoid, xb, dx, dout=dout, options=GradCheckOptions(scale=scale, backend=backend))
    assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


saturating = st.one_of(gs.floats(-1e3, 1e3), st.sampled_from([-1e3, 1e3, -745.0, 745.0, -709.8, 709.8,
                                                                -88.8, 88.8, -36.8, 36.8, -16.7, 16.7,
                                                                0.0, -0.0]))


@gs.needs_torch
@gs.with_backend
@given(case=elementwise_case(saturating))
def test_sigmoid_matches_torch_out_to_saturation(backend, case):
    """|x| up to 1e3: no warning (filterwarnings=error), no NaN, and PyTorch's values to 1e-10."""
    x, dout = case
    xb, doutb = on(backend, x, dout)
    y, dx = backend.to_host(sigmoid(xb)), backend.to_host(sigmoid_backward(doutb, xb))
    assert np.all(np.isfinite(y)) and np.all((y >= 0) & (y <= 1))
    assert np.all(np.isfinite(dx))
    y_ref, dx_ref = sigmoid_oracle(x, dout)
    assert_agree("sigmoid", y, y_ref, TINY64)
    assert_agree("dx", dx, dx_ref, TINY64)


@pytest.mark.parametrize("x", [16.7, 30.0, 36.0, 100.0, 700.0])
def test_sigmoid_derivative_keeps_every_digit_where_y_times_1_minus_y_loses_them(backend, x):
    """At x = 30, sigma(x) rounds to within 1e-13 of 1 and y (1 - y) keeps 3 digits; ours keeps all.

    The exact value is ``sigma'(x) = e / (1 + e)^2`` with ``e = exp(-x)`` computed in high precision.
    """
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(50):
        e = mpmath.exp(-mpmath.mpf(x))
        exact = float(e / (1 + e) ** 2)
    xb = backend.asarray(np.array([x, -x]))
    ours = backend.to_host(sigmoid_derivative(xb))
    assert_agree("sigma'", ours, [exact, exact], TINY64, rtol=1e-14)
    y = backend.to_host(sigmoid(xb))[0]
    naive = y * (1 - y)
    assert x < 20 or abs(naive - exact) > 1e-4 * exact  # the textbook form, for contrast


@gs.needs_torch
@pytest.mark.parametrize("x", [-1e3, -745.0, -104.0, -88.8, -30.0, 16.7, 30.0, 88.8, 1e3])
def test_sigmoid_saturated_float32_no_warning_no_nan(backend32, x):
    xb = backend32.asarray(np.array([x, -x], dtype=np.float32))
    y = backend32.to_host(sigmoid(xb))
    dy = backend32.to_host(sigmoid_backward(backend32.asarray(np.ones(2, dtype=np.float32)), xb))
    assert y.dtype == np.float32 and np.all(np.isfinite(y)) and np.all(np.isfinite(dy))
    y_ref, dy_ref = sigmoid_oracle(np.array([x, -x], dtype=np.float32), np.ones(2))
    assert_agree("sigmoid float32", y, y_ref, TINY32, rtol=F32_RTOL)
    assert_agree("sigma' float32", dy, dy_ref, TINY32, rtol=F32_RTOL)


# -- relu -------------------------------------------------------------------------------------------

@gs.with_backend
@given(case=elementwise_case(gs.away_from_zero(1e-3, 10.0)))
def test_relu_backward_matches_finite_differences_away_from_the_kink(backend, case):
    x, dout = case
    xb, doutb = on(backend, x, dout)
    dx = relu_backward(doutb, xb)
    scale = np.abs(dout * backend.to_host(relu(xb)))
    report = check_gradient(relu, xb, dx, dout=dout, options=GradCheckOptions(scale=scale, backend=backend))
    assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


with_ties = st.one_of(gs.floats(-10.0, 10.0), st.sampled_from([0.0, -0.0]))


@gs.needs_torch
@gs.with_backend
@given(case=elementwise_case(with_ties))
def test_relu_matches_torch_including_exactly_zero(backend, case):
    """ReLU at exactly 0 is compared with PyTorch's convention (gradient 0), not finite differences."""
    x, dout = case
    xb, doutb = on(backend, x, dout)
    y_ref, dx_ref = relu_oracle(x, dout)
    assert_agree("relu", backend.to_host(relu(xb)), y_ref, 0.0, rtol=TORCH_RTOL)
    dx = backend.to_host(relu_backward(doutb, xb))
    assert_agree("dx", dx, dx_ref, 0.0, rtol=TORCH_RTOL)
    assert np.all(dx[x == 0] == 0)


@gs.needs_torch
def test_relu_gradient_at_zero_is_zero_like_torch(backend):
    x, dout = np.array([[-0.0, 0.0, 1.0, -1.0]]), np.array([[5.0, -5.0, 5.0, 5.0]])
    dx = backend.to_host(relu_backward(*on(backend, dout, x)))
    np.testing.assert_array_equal(dx, relu_oracle(x, dout)[1])
    np.testing.assert_array_equal(dx, [[0.0, 0.0, 5.0, 0.0]])


# -- float32, and no writing into inputs ------------------------------------------------------------

@gs.needs_torch
@gs.with_backend
@given(case=linear_case(), sig=elementwise_case(gs.floats(-30.0, 30.0, width=32)))
def test_float32_layers_match_float64_on_the_same_inputs(backend32, case, sig):
    """float32 results against float64 results on the same float32-rounded inputs."""
    x, w, b, dout = (a.astype(np.float32).astype(np.float64) for a in case)
    out64, grads64, _ = linear_oracle(x, w, b, dout)
    xb, wb, bb, doutb = on(backend32, x, w, b, dout)
    assert xb.dtype == backend32.dtype
    k = max(x.shape[0], w.shape[0], w.shape[1]) + 1
    mags = linear_oracle(np.abs(x), np.abs(w), np.abs(b), np.abs(dout))
    ours = [linear(xb, wb, bb), *linear_backward(doutb, xb, wb)]
    for name, a, ref, mag in zip(("out", "dx", "dw", "db"), ours, [out64, *grads64], [mags[0], *mags[1]]):
        assert a.dtype == backend32.dtype
        assert_agree(name, backend32.to_host(a), ref, 2 * gamma32(k) * mag + TINY32, rtol=F32_RTOL)

    s, sdout = (a.astype(np.float32).astype(np.float64) for a in sig)
    y64, dx64 = sigmoid_oracle(s, sdout)
    sb, sdoutb = on(backend32, s, sdout)
    assert_agree("sigmoid", backend32.to_host(sigmoid(sb)), y64, TINY32, rtol=F32_RTOL)
    assert_agree("sigmoid dx", backend32.to_host(sigmoid_backward(sdoutb, sb)), dx64, TINY32, rtol=F32_RTOL)
    assert_agree("relu dx", backend32.to_host(relu_backward(sdoutb, sb)), relu_oracle(s, sdout)[1], 0.0,
                 rtol=F32_RTOL)


def test_backward_functions_never_write_into_their_inputs(backend):
    rng = np.random.default_rng(1)
    x, w, dout = rng.standard_normal((4, 3)), rng.standard_normal((3, 3)), rng.standard_normal((4, 3))
    xb, wb, doutb = on(backend, x, w, dout)
    for fn, args in [(linear_backward, (doutb, xb, wb)), (sigmoid_backward, (doutb, xb)), (relu_backward, (doutb, xb))]:
        out = fn(*args)
        for a, original in zip((doutb, xb, wb), (dout, x, w)):
            np.testing.assert_array_equal(backend.to_host(a), original)
        for grad in out if isinstance(out, tuple) else (out,):
            if grad is not None:
                grad *= 0  # writing into a result must not reach an input either
        np.testing.assert_array_equal(backend.to_host(doutb), dout)
