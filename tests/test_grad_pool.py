"""max_pool2d and the global pools: against finite differences and PyTorch's autograd, ties included.

* Finite differences (float64, relative error <= 1e-6) only where the max is differentiable: on
  ``distinct`` values 0.25 apart, so no step of 1e-6 changes which entry is a window's maximum.
* PyTorch (``F.max_pool2d``, ``F.adaptive_max_pool2d(x, 1)``, ``F.adaptive_avg_pool2d(x, 1)``) in
  float64 on every kind of values, above all small integers, where windows hold several equal
  maxima: the gradient must go to the same one, the first in row-major order.  A max is exact, so
  the forward values must be equal; the gradients add at most ``ceil(kernel / stride)^2`` terms
  (overlapping windows), whose rounding is the floor.

Windows of 1 to 6, strides 1 to 3, paddings up to half the window, images up to 12 x 12, on every
backend.
"""

from __future__ import annotations

import math

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracles import TINY32, assert_agree, gamma32

from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.layers import (
    global_avg_pool,
    global_avg_pool_backward,
    global_max_pool,
    global_max_pool_backward,
    max_pool2d,
    max_pool2d_backward,
)
from numpy_mnist.torch_twin import TINY64, gamma, vjp

MAX_FULL = 48
value_kinds = st.sampled_from(["uniform", "integers", "distinct"])


def on(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


def pool_case(g, seed, kind):
    x = gs.values(seed, (g["n"], g["c"], g["h"], g["w"]), kind)
    k, s, p = g["kernel"], g["stride"], g["padding"]
    oh, ow = (g["h"] + 2 * p - k) // s + 1, (g["w"] + 2 * p - k) // s + 1
    return x, gs.values(seed + 1, (g["n"], g["c"], oh, ow), "uniform"), dict(kernel=k, stride=s, padding=p)


def max_pool_oracle(x, dout, kernel, stride, padding):
    """``out, dx`` by ``F.max_pool2d`` and autograd, and the floor of ``dx``: the same routing of
    ``|dout|`` (the same ``x``, so the same maxima) times ``2 gamma_k``, ``k`` the windows that overlap."""
    import torch.nn.functional as F

    def pool(a):
        return F.max_pool2d(a, kernel, stride, padding)

    out, (dx,) = vjp(pool, [x], dout)
    _, (mag,) = vjp(pool, [x], np.abs(dout))
    return out, dx, 2 * gamma(math.ceil(kernel / stride) ** 2) * mag + TINY64


# -- max-pool -----------------------------------------------------------------------------------

@gs.with_backend
@given(g=gs.pool_geometries(), seed=gs.seeds)
def test_max_pool2d_backward_matches_finite_differences_on_distinct_values(backend, g, seed):
    x, dout, kw = pool_case(g, seed, "distinct")
    xb, doutb = on(backend, x, dout)
    dx = max_pool2d_backward(doutb, xb, **kw)
    report = check_gradient(lambda x_: max_pool2d(x_, **kw), xb, dx, dout=dout,
                            options=GradCheckOptions(max_full=MAX_FULL, seed=seed, backend=backend))
    assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(g=gs.pool_geometries(), seed=gs.seeds, kind=value_kinds)
def test_max_pool2d_matches_torch_ties_included(backend, g, seed, kind):
    x, dout, kw = pool_case(g, seed, kind)
    xb, doutb = on(backend, x, dout)
    out_ref, dx_ref, floor = max_pool_oracle(x, dout, **kw)
    out = max_pool2d(xb, **kw)
    assert tuple(out.shape) == out_ref.shape and out.dtype == xb.dtype
    np.testing.assert_array_equal(backend.to_host(out), out_ref)  # a max is exact
    dx = max_pool2d_backward(doutb, xb, **kw)
    assert tuple(dx.shape) == x.shape and dx.dtype == xb.dtype
    assert_agree("dx", backend.to_host(dx), dx_ref, floor)


@gs.needs_torch
def test_max_pool2d_tie_goes_to_the_first_maximum_in_row_major_order(backend):
    """A constant 4x4 image, the ResNet's window (3, stride 2, padding 1): four windows, each all
    ties; each gives its gradient to its top-left input, once, as PyTorch does."""
    x, dout = np.full((1, 1, 4, 4), 7.0), np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    dx = backend.to_host(max_pool2d_backward(*on(backend, dout, x)))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, :2, :2] = [[1.0, 2.0], [3.0, 4.0]]  # windows start at rows/columns -1 and 1: first inputs 0 and 1
    np.testing.assert_array_equal(dx, expected)
    np.testing.assert_array_equal(dx, max_pool_oracle(x, dout, 3, 2, 1)[1])


@gs.needs_torch
def test_max_pool2d_overlapping_windows_add_up(backend):
    """One maximum in the middle of a 3x3 image, windows of 3 at stride 1 with padding 1: all nine
    windows hold it, so it collects the whole of ``dout``; a tie in a corner window stays first-only."""
    x = np.array([[[[0.0, 1.0, 0.0], [1.0, 5.0, 1.0], [0.0, 1.0, 0.0]]]])
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    dx = backend.to_host(max_pool2d_backward(*on(backend, dout, x), kernel=3, stride=1, padding=1))
    np.testing.assert_array_equal(dx, [[[[0.0, 0.0, 0.0], [0.0, 45.0, 0.0], [0.0, 0.0, 0.0]]]])
    # Kernel 2, stride 1, padding 1 on a 2x2 image: nine windows, four of them with tied maxima of 2;
    # the bottom-right window holds only the 1, its own maximum.
    x = np.array([[[[2.0, 2.0], [2.0, 1.0]]]])
    dout = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    dx = backend.to_host(max_pool2d_backward(*on(backend, dout, x), kernel=2, stride=1, padding=1))
    np.testing.assert_array_equal(dx, max_pool_oracle(x, dout, 2, 1, 1)[1])
    np.testing.assert_array_equal(dx, [[[[1.0 + 2.0 + 4.0 + 5.0, 3.0 + 6.0], [7.0 + 8.0, 9.0]]]])


@pytest.mark.parametrize("shape, kwargs, message", [
    ((2, 8, 8), {}, "x must be images of shape (N, C, H, W)"),
    ((1, 1, 8, 8), {"kernel": 3, "padding": 2}, "padding must be at most half the kernel (1), got 2"),
    ((1, 1, 8, 8), {"kernel": 0}, "kernel must be an integer >= 1, got 0"),
    ((1, 1, 8, 8), {"stride": 0}, "stride must be an integer >= 1, got 0"),
    ((1, 1, 1, 8), {"kernel": 4, "padding": 1}, "the kernel 4 exceeds the padded image (1, 8) + 2 x 1"),
])
def test_max_pool2d_refuses_bad_arguments_with_one_clear_error(shape, kwargs, message):
    with pytest.raises(InputError) as info:
        max_pool2d(np.zeros(shape), **kwargs)
    assert message in str(info.value)
    with pytest.raises(InputError):
        max_pool2d_backward(np.zeros((1, 1, 4, 4)), np.zeros(shape), **kwargs)


def test_max_pool2d_backward_refuses_a_dout_of_another_shape():
    with pytest.raises(InputError, match=r"dout must have the pooling's output shape \(1, 2, 4, 4\), "
                                         r"got \(1, 2, 3, 3\)"):
        max_pool2d_backward(np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 7, 7)))


# -- global pools (fastai's AdaptiveConcatPool2d is [max, avg]) ---------------------------------

@st.composite
def global_case(draw, kind):
    g = draw(gs.pool_geometries())
    seed = draw(gs.seeds)
    return gs.values(seed, (g["n"], g["c"], g["h"], g["w"]), kind), gs.values(seed + 1, (g["n"], g["c"]))


@gs.with_backend
@given(max_case=global_case("distinct"), avg_case=global_case("uniform"))
def test_global_pools_backward_match_finite_differences(backend, max_case, avg_case):
    for (x, dout), fn, back in [(max_case, global_max_pool, global_max_pool_backward),
                                (avg_case, global_avg_pool, global_avg_pool_backward)]:
        xb, doutb = on(backend, x, dout)
        dx = back(doutb, xb)
        # the average sums H W terms: its rounding noise is up to H W times |dout * out| per entry
        scale = None if fn is global_max_pool else x.shape[2] * x.shape[3] * float(
            np.sum(np.abs(dout) * global_avg_pool(np.abs(x))))
        report = check_gradient(fn, xb, dx, dout=dout,
                                options=GradCheckOptions(scale=scale, max_full=MAX_FULL, backend=backend,
                                                         name=fn.__name__))
        assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(case=st.sampled_from(["uniform", "integers"]).flatmap(global_case))
def test_global_pools_match_torch_ties_included(backend, case):
    import torch.nn.functional as F

    x, dout = case
    xb, doutb = on(backend, x, dout)
    out, (dx,) = vjp(lambda a: F.adaptive_max_pool2d(a, 1)[:, :, 0, 0], [x], dout)
    np.testing.assert_array_equal(backend.to_host(global_max_pool(xb)), out)
    np.testing.assert_array_equal(backend.to_host(global_max_pool_backward(doutb, xb)), dx)  # one entry each: exact
    out, (dx,) = vjp(lambda a: F.adaptive_avg_pool2d(a, 1)[:, :, 0, 0], [x], dout)
    hw = x.shape[2] * x.shape[3]
    assert_agree("avg", backend.to_host(global_avg_pool(xb)), out,
                 2 * gamma(hw + 1) * np.mean(np.abs(x), axis=(2, 3)) + TINY64)
    assert_agree("avg dx", backend.to_host(global_avg_pool_backward(doutb, xb)), dx, TINY64)


@gs.needs_torch
def test_global_max_pool_gives_a_tie_to_the_first_maximum_like_torch(backend):
    x = np.array([[[[1.0, 3.0], [3.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]]])
    dout = np.array([[2.0, 5.0]])
    dx = backend.to_host(global_max_pool_backward(*on(backend, dout, x)))
    np.testing.assert_array_equal(dx, [[[[0.0, 2.0], [0.0, 0.0]], [[5.0, 0.0], [0.0, 0.0]]]])
    import torch.nn.functional as F

    np.testing.assert_array_equal(dx, vjp(lambda a: F.adaptive_max_pool2d(a, 1)[:, :, 0, 0], [x], dout)[1][0])


def test_global_pools_refuse_bad_shapes():
    with pytest.raises(InputError, match=r"x must be images of shape \(N, C, H, W\), got \(2, 3\)"):
        global_max_pool(np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"x must be images of shape \(N, C, H, W\)"):
        global_avg_pool(np.zeros((2, 3, 4)))
    for back in (global_max_pool_backward, global_avg_pool_backward):
        with pytest.raises(InputError, match=r"dout must be \(N, C\) = \(2, 3\), got \(2, 3, 1, 1\)"):
            back(np.zeros((2, 3, 1, 1)), np.zeros((2, 3, 4, 4)))


@gs.needs_torch
def test_float32_pools_match_float64_on_the_same_inputs(backend32):
    x = gs.values(3, (2, 3, 9, 7), "integers").astype(np.float32)
    dout = gs.values(4, (2, 3, 5, 4)).astype(np.float32).astype(np.float64)
    out64, dx64, _ = max_pool_oracle(x.astype(np.float64), dout, 3, 2, 1)
    xb, doutb = on(backend32, x, dout)
    out = max_pool2d(xb)
    assert out.dtype == backend32.dtype
    np.testing.assert_array_equal(backend32.to_host(out), out64)
    dx = max_pool2d_backward(doutb, xb)
    # float32 sums of at most 4 float32 values (windows of 3 at stride 2 overlap in 2 x 2)
    mag = max_pool_oracle(x.astype(np.float64), np.abs(dout), 3, 2, 1)[1]
    assert_agree("dx", backend32.to_host(dx), dx64, 2 * gamma32(4) * mag + TINY32, rtol=1e-5)
