"""conv2d: forward and backward against finite differences and against PyTorch's autograd.

Oracles and tolerances (as in ``test_grad_layers.py``):

* central finite differences in float64, relative error <= 1e-6, the rounding noise of each entry
  taken from the same convolution on absolute values (:func:`conv_scales`);
* ``torch.nn.functional.conv2d`` and its autograd in float64, ``|ours - torch| <= 1e-10 max(|ours|,
  |torch|) + floor``, the floor twice Higham's ``gamma_k`` times the sums of ``|terms|`` (the same
  graph on ``|x|``, ``|w|``, driven by ``|dout|``);
* float32 against float64 on one case, 1e-5 relative plus the float32 rounding floor.

Shapes: batches of 1 to 3, 1 to 3 channels in and out, images up to 12 x 12 (odd and non-square),
kernels 1 to 4 on each side, strides 1 and 2, paddings 0 to 3.  Every property runs on every
backend (numpy, array_api_strict, the torch stand-in, cupy where a GPU is usable).
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracles import TINY32, assert_agree, gamma32

from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.layers import conv2d, conv2d_backward
from numpy_mnist.torch_twin import TINY64, gamma, vjp

F32_RTOL = 1e-5
#: Inputs up to this many entries are checked entry by entry; larger ones along random directions
#: and single entries (``check_gradient``), which keeps 25 examples on three backends in seconds.
MAX_FULL = 48


def on(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


def draw_case(g, seed, kind):
    x = gs.values(seed, (g["n"], g["c"], g["h"], g["w"]), kind)
    w = gs.values(seed + 1, (g["f"], g["c"], g["kh"], g["kw"]), "uniform")
    oh = (g["h"] + 2 * g["padding"] - g["kh"]) // g["stride"] + 1
    ow = (g["w"] + 2 * g["padding"] - g["kw"]) // g["stride"] + 1
    dout = gs.values(seed + 2, (g["n"], g["f"], oh, ow), "uniform")
    return x, w, dout


def windows(a, s, count):
    return slice(a, a + s * (count - 1) + 1, s)


def naive_conv(x, w, s, p):
    """The index form, one kernel offset at a time, in plain NumPy (no im2col): an independent spelling."""
    n, _, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.zeros((n, f, oh, ow))
    for a in range(kh):
        for b in range(kw):
            out += np.einsum("ncij,fc->nfij", x_pad[:, :, windows(a, s, oh), windows(b, s, ow)], w[:, :, a, b])
    return out


def conv_scales(x, w, dout, s, p):
    """What each entry's finite difference is computed from (``check_gradient``'s ``scale``).

    Output ``out[n, f, i, j]`` is a sum of ``K = C KH KW`` terms and rounds by at most ``gamma_K``
    times ``S = conv(|x|, |w|)``: ``T = (K + 1) |dout| S`` is the noise that entry carries.  Moving
    ``x_pad[n, c, y, z]`` moves every output whose window covers ``(y, z)``, of every filter;
    moving ``w[f, ...]`` moves every output of filter ``f``.
    """
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    t = (c * kh * kw + 1) * np.abs(dout) * naive_conv(np.abs(x), np.abs(w), s, p)
    oh, ow = t.shape[2:]
    per_position = t.sum(axis=1, keepdims=True)
    sx = np.zeros((n, 1, h + 2 * p, wd + 2 * p))
    for a in range(kh):
        for b in range(kw):
            sx[:, :, windows(a, s, oh), windows(b, s, ow)] += per_position
    sx = np.broadcast_to(sx[:, :, p:p + h, p:p + wd], x.shape)
    sw = np.broadcast_to(t.sum(axis=(0, 2, 3))[:, None, None, None], w.shape)
    return sx, sw


def conv_oracle(x, w, dout, s, p):
    """``out, (dx, dw)`` by ``F.conv2d`` and autograd, and the floors of ``(out, dx, dw)``.

    ``out`` sums ``C KH KW`` terms, ``dx`` at most ``F KH KW``, ``dw`` ``N OH OW``; the floors come
    from the same convolution on absolute values (exactly the sums of ``|terms|``).
    """
    import torch.nn.functional as F

    def conv(a, m):
        return F.conv2d(a, m, stride=s, padding=p)

    out, grads = vjp(conv, [x, w], dout)
    out_mag, grad_mags = vjp(conv, [np.abs(x), np.abs(w)], np.abs(dout))
    f, c, kh, kw = w.shape
    k = max(c * kh * kw, f * kh * kw, x.shape[0] * dout.shape[2] * dout.shape[3]) + 1
    return out, grads, [2 * gamma(k) * m + TINY64 for m in (out_mag, *grad_mags)]


@gs.with_backend
@given(g=gs.conv_geometries(), seed=gs.seeds, kind=st.sampled_from(["uniform", "integers"]))
def test_conv2d_backward_matches_finite_differences(backend, g, seed, kind):
    x, w, dout = draw_case(g, seed, kind)
    s, p = g["stride"], g["padding"]
    xb, wb, doutb = on(backend, x, w, dout)
    dx, dw = conv2d_backward(doutb, xb, wb, stride=s, padding=p)
    sx, sw = conv_scales(x, w, dout, s, p)
    for report in [
        check_gradient(lambda x_: conv2d(x_, wb, stride=s, padding=p), xb, dx, dout=dout,
                       options=GradCheckOptions(scale=sx, max_full=MAX_FULL, seed=seed, name="dx", backend=backend)),
        check_gradient(lambda w_: conv2d(xb, w_, stride=s, padding=p), wb, dw, dout=dout,
                       options=GradCheckOptions(scale=sw, max_full=MAX_FULL, seed=seed, name="dw", backend=backend)),
    ]:
        assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(g=gs.conv_geometries(), seed=gs.seeds, kind=st.sampled_from(["uniform", "integers"]))
def test_conv2d_forward_and_backward_match_torch(backend, g, seed, kind):
    x, w, dout = draw_case(g, seed, kind)
    s, p = g["stride"], g["padding"]
    xb, wb, doutb = on(backend, x, w, dout)
    out_ref, grads_ref, floors = conv_oracle(x, w, dout, s, p)
    out = conv2d(xb, wb, stride=s, padding=p)
    assert tuple(out.shape) == out_ref.shape and out.dtype == xb.dtype
    assert_agree("out", backend.to_host(out), out_ref, floors[0])
    for name, ours, ref, floor in zip(("dx", "dw"), conv2d_backward(doutb, xb, wb, stride=s, padding=p),
                                      grads_ref, floors[1:]):
        assert tuple(ours.shape) == ref.shape and ours.dtype == xb.dtype
        assert_agree(name, backend.to_host(ours), ref, floor)


def test_conv2d_index_form_on_a_case_small_enough_to_read(backend):
    """One 1-channel 3x3 image, a 2x2 kernel, stride 1, padding 1: every output written out."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = backend.to_host(conv2d(*on(backend, x, w), padding=1))[0, 0]
    x_pad = np.pad(x[0, 0], 1)
    expected = [[np.sum(x_pad[i:i + 2, j:j + 2] * w[0, 0]) for j in range(4)] for i in range(4)]
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0] == 4.0 * 1 and out[3, 3] == 1.0 * 9  # the corners see one input each
    # dx of a dout of ones: each input gets the sum of the kernel entries that ever cover it: all four
    dx, dw = conv2d_backward(backend.asarray(np.ones((1, 1, 4, 4))), *on(backend, x, w), padding=1)
    np.testing.assert_array_equal(backend.to_host(dx), np.full((1, 1, 3, 3), 10.0))
    np.testing.assert_array_equal(backend.to_host(dw)[0, 0], [[45.0, 45.0], [45.0, 45.0]])


@gs.needs_torch
def test_float32_conv2d_matches_float64_on_the_same_inputs(backend32):
    g = dict(n=2, c=3, f=4, h=9, w=7, kh=3, kw=2, stride=2, padding=1)
    x, w, dout = (a.astype(np.float32).astype(np.float64) for a in draw_case(g, 7, "uniform"))
    out64, grads64, _ = conv_oracle(x, w, dout, 2, 1)
    mags = conv_oracle(np.abs(x), np.abs(w), np.abs(dout), 2, 1)
    xb, wb, doutb = on(backend32, x, w, dout)
    assert xb.dtype == backend32.dtype
    k = max(3 * 3 * 2, 4 * 3 * 2, 2 * 5 * 4) + 1
    ours = [conv2d(xb, wb, stride=2, padding=1), *conv2d_backward(doutb, xb, wb, stride=2, padding=1)]
    for name, a, ref, mag in zip(("out", "dx", "dw"), ours, [out64, *grads64], [mags[0], *mags[1]]):
        assert a.dtype == backend32.dtype
        assert_agree(name, backend32.to_host(a), ref, 2 * gamma32(k) * mag + TINY32, rtol=F32_RTOL)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, message", [
    ((2, 3, 8), (4, 3, 3, 3), {}, "x must be images of shape (N, C, H, W)"),
    ((2, 3, 8, 8), (4, 2, 3, 3), {}, "w must have shape (F, C, KH, KW) with C = 3"),
    ((2, 3, 8, 8), (4, 3, 3), {}, "w must have shape (F, C, KH, KW)"),
    ((2, 3, 2, 8), (4, 3, 5, 3), {}, "the kernel's height 5 exceeds the padded image's 2"),
    ((2, 3, 8, 2), (4, 3, 3, 5), {"padding": 1}, "the kernel's width 5 exceeds the padded image's 4"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": 0}, "stride must be an integer >= 1, got 0"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"padding": -1}, "padding must be an integer >= 0, got -1"),
    ((2, 3, 8, 8), (4, 3, 3, 3), {"stride": 1.5}, "stride must be an integer >= 1, got 1.5"),
])
def test_conv2d_refuses_bad_shapes_with_one_clear_error(x_shape, w_shape, kwargs, message):
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    for call in (lambda: conv2d(x, w, **kwargs), lambda: conv2d_backward(np.zeros((2, 4, 6, 6)), x, w, **kwargs)):
        with pytest.raises(InputError) as info:
            call()
        assert message in str(info.value)


def test_conv2d_backward_refuses_a_dout_of_another_shape():
    with pytest.raises(InputError, match=r"dout must have the convolution's output shape \(2, 4, 3, 3\), "
                                         r"got \(2, 4, 4, 4\)"):
        conv2d_backward(np.zeros((2, 4, 4, 4)), np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), stride=2, padding=1)
