"""batch_norm (training and evaluation) and its running statistics, against finite differences and PyTorch.

* Finite differences in float64, relative error <= 1e-6 (batch norm is smooth everywhere: ``eps``
  keeps ``sigma >= sqrt(eps)`` even for a constant channel).
* ``F.batch_norm(training=True)`` and its autograd in float64, to 1e-10 relative plus the floor
  below; the running statistics against the ``running_mean``/``running_var`` that
  ``F.batch_norm(training=True, momentum=0.1)`` leaves; evaluation mode against
  ``F.batch_norm(training=False)``.
* float32 against float64 on one case.

The floors
----------
Per channel, with ``M`` values, ``k = M + 8`` and ``A = mean|x| / sigma``: the mean is off by up
to ``gamma_M mean|x|``, which centring turns into ``A gamma_M`` in ``xhat``; the variance (ours a
two-pass sum, PyTorch's a running update) by ``gamma_k var (1 + mean|x| / sqrt(var))``, which
moves ``sigma`` by ``gamma_k (1 + A)`` relative.  So each ``xhat_i`` is off by at most
``gamma_k B_i`` with ``B_i = (1 + |xhat_i|)(1 + A)``, and each result by its terms' share of that,
twice (both programs round):

* ``out``: ``2 gamma_k (|gamma| B + |beta|)``; ``dbeta``: ``2 gamma_k sum|dy|``;
  ``dgamma``: ``2 gamma_k G`` with ``G = sum |dy| B``;
* ``dx = gamma / (M sigma) (M dy - dbeta - xhat dgamma)``:
  ``2 gamma_k |gamma| / (M sigma) (M |dy| + sum|dy| + 2 B G)``.

Where nothing cancels these are ``k`` ulps, far inside 1e-10; they decide only for ``offset``
values (mean 50, spread 1: ``A`` near 100) and constant channels.  Shapes (N, C) and
(N, C, H, W), up to 6 x 3 x 6 x 6, on every backend.
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
from numpy_mnist.layers import batch_norm, batch_norm_backward, batch_norm_eval, update_running_stats
from numpy_mnist.torch_twin import TINY64, gamma, tensor, vjp

EPS = 1e-5
MAX_FULL = 48
value_kinds = st.sampled_from(["uniform", "integers", "offset"])


def on(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


def axes_of(x):
    return (0, *range(2, x.ndim))


def per_channel(v, x):
    return np.reshape(v, (1, -1) + (1,) * (x.ndim - 2))


def draw_case(shape, seed, kind):
    c = shape[1]
    x = gs.values(seed, shape, kind)
    g, b = gs.values(seed + 1, (c,)), gs.values(seed + 2, (c,))
    return x, g, b, gs.values(seed + 3, shape)


def magnitudes(x, g, b, dout):
    """Per entry and per channel: ``(m, sigma, B, G, sum|dy|)`` of the module docstring (host float64)."""
    ax = axes_of(x)
    m = x.size // x.shape[1]
    mean = x.mean(axis=ax, keepdims=True)
    sigma = np.sqrt(((x - mean) ** 2).mean(axis=ax, keepdims=True) + EPS)
    big_a = np.abs(x).mean(axis=ax, keepdims=True) / sigma
    big_b = (1 + np.abs((x - mean) / sigma)) * (1 + big_a)
    big_g = (np.abs(dout) * big_b).sum(axis=ax, keepdims=True)
    return m, sigma, big_b, big_g, np.abs(dout).sum(axis=ax, keepdims=True)


def floors(x, g, b, dout, gam=gamma, tiny=TINY64):
    """The floors of ``(out, dx, dgamma, dbeta)`` (module docstring); ``gam``: gamma_k of the dtype."""
    m, sigma, big_b, big_g, sum_dy = magnitudes(x, g, b, dout)
    gk = gam(m + 8)
    ag, ab = np.abs(per_channel(g, x)), np.abs(per_channel(b, x))
    out = 2 * gk * (ag * big_b + ab) + tiny
    dx = 2 * gk * ag / (m * sigma) * (m * np.abs(dout) + sum_dy + 2 * big_b * big_g) + tiny
    return out, dx, 2 * gk * big_g.reshape(-1) + tiny, 2 * gk * sum_dy.reshape(-1) + tiny


def bn_oracle(x, g, b, dout):
    """``out, (dx, dgamma, dbeta)`` by ``F.batch_norm(training=True)`` and autograd in float64."""
    import torch.nn.functional as F

    return vjp(lambda a, w, c: F.batch_norm(a, None, None, w, c, training=True, eps=EPS), [x, g, b], dout)


def scales(x, g, b, dout):
    """``check_gradient``'s ``scale``: moving any value of channel ``c`` (or its gamma or beta) moves
    every output of the channel, each of which carries ``(M + 8)`` roundings of ``|gamma| B + |beta|``."""
    m, _, big_b, _, _ = magnitudes(x, g, b, dout)
    terms = np.abs(dout) * (np.abs(per_channel(g, x)) * big_b + np.abs(per_channel(b, x)))
    s = (m + 8) * terms.sum(axis=axes_of(x))
    return np.broadcast_to(per_channel(s, x), x.shape), s, s


@gs.with_backend
@given(shape=gs.batch_norm_shapes(), seed=gs.seeds, kind=value_kinds)
def test_batch_norm_backward_matches_finite_differences(backend, shape, seed, kind):
    x, g, b, dout = draw_case(shape, seed, kind)
    xb, gb, bb, doutb = on(backend, x, g, b, dout)
    dx, dg, db = batch_norm_backward(doutb, xb, gb)
    sx, sg, sb = scales(x, g, b, dout)
    for report in [
        check_gradient(lambda a: batch_norm(a, gb, bb)[0], xb, dx, dout=dout,
                       options=GradCheckOptions(scale=sx, max_full=MAX_FULL, seed=seed, name="dx", backend=backend)),
        check_gradient(lambda a: batch_norm(xb, a, bb)[0], gb, dg, dout=dout,
                       options=GradCheckOptions(scale=sg, name="dgamma", backend=backend)),
        check_gradient(lambda a: batch_norm(xb, gb, a)[0], bb, db, dout=dout,
                       options=GradCheckOptions(scale=sb, name="dbeta", backend=backend)),
    ]:
        assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(shape=gs.batch_norm_shapes(), seed=gs.seeds, kind=value_kinds)
def test_batch_norm_forward_and_backward_match_torch(backend, shape, seed, kind):
    x, g, b, dout = draw_case(shape, seed, kind)
    xb, gb, bb, doutb = on(backend, x, g, b, dout)
    out_ref, grads_ref = bn_oracle(x, g, b, dout)
    fl = floors(x, g, b, dout)
    out, mean, var = batch_norm(xb, gb, bb)
    assert tuple(out.shape) == x.shape and tuple(mean.shape) == tuple(var.shape) == (x.shape[1],)
    assert_agree("out", backend.to_host(out), out_ref, fl[0])
    for name, ours, ref, floor in zip(("dx", "dgamma", "dbeta"), batch_norm_backward(doutb, xb, gb), grads_ref, fl[1:]):
        assert tuple(ours.shape) == ref.shape and ours.dtype == xb.dtype
        assert_agree(name, backend.to_host(ours), ref, floor)


def stat_floors(x, mean, var):
    """Floors of the batch mean and (biased) variance: ``2 gamma_k mean|x|`` and
    ``2 gamma_k (var + mean|x| sqrt(var)) + 2 (gamma_k mean|x|)^2`` (the last: a mean off by
    ``d`` adds ``d^2`` to the two-pass variance)."""
    k = x.size // x.shape[1] + 8
    abs_mean = np.abs(x).mean(axis=axes_of(x))
    return (2 * gamma(k) * abs_mean + TINY64,
            2 * gamma(k) * (var + abs_mean * np.sqrt(var)) + 2 * (gamma(k) * abs_mean) ** 2 + TINY64)


@gs.needs_torch
@gs.with_backend
@given(shape=gs.batch_norm_shapes(), seed=gs.seeds, kind=value_kinds)
def test_running_stats_match_torchs_after_a_training_batch(backend, shape, seed, kind):
    import torch
    import torch.nn.functional as F

    x, g, b, _ = draw_case(shape, seed, kind)
    c, m = x.shape[1], x.size // x.shape[1]
    rng = np.random.default_rng(seed)
    running_mean, running_var = rng.uniform(-1, 1, c), rng.uniform(0.5, 2, c)
    rm_t, rv_t = torch.tensor(running_mean), torch.tensor(running_var)
    F.batch_norm(tensor(x), rm_t, rv_t, tensor(g), tensor(b), training=True, momentum=0.1, eps=EPS)
    var_ref, mean_ref = (t.numpy() for t in torch.var_mean(tensor(x), dim=axes_of(x), correction=0))

    _, mean, var = batch_norm(*on(backend, x, g, b))
    mean_floor, var_floor = stat_floors(x, mean_ref, var_ref)
    assert_agree("mean", backend.to_host(mean), mean_ref, mean_floor)
    assert_agree("var (biased)", backend.to_host(var), var_ref, var_floor)
    new_mean, new_var = update_running_stats(*on(backend, running_mean, running_var), mean, var, m, momentum=0.1)
    unbiased = m / (m - 1)
    assert_agree("running_mean", backend.to_host(new_mean), rm_t.numpy(),
                 2 * gamma(4) * (0.9 * np.abs(running_mean) + 0.1 * np.abs(mean_ref)) + 0.1 * mean_floor)
    assert_agree("running_var", backend.to_host(new_var), rv_t.numpy(),
                 2 * gamma(4) * (0.9 * running_var + 0.1 * unbiased * var_ref) + 0.1 * unbiased * var_floor)


@gs.needs_torch
@gs.with_backend
@given(shape=gs.batch_norm_shapes(), seed=gs.seeds, kind=value_kinds)
def test_batch_norm_eval_matches_torch(backend, shape, seed, kind):
    import torch
    import torch.nn.functional as F

    x, g, b, _ = draw_case(shape, seed, kind)
    rng = np.random.default_rng(seed)
    rm = x.mean(axis=axes_of(x)) + rng.uniform(-0.5, 0.5, x.shape[1])
    rv = rng.uniform(0.0, 2.0, x.shape[1])
    ref = F.batch_norm(tensor(x), torch.tensor(rm), torch.tensor(rv), tensor(g), tensor(b), training=False,
                       eps=EPS).numpy()
    ours = batch_norm_eval(*on(backend, x, g, b, rm, rv))
    # elementwise, a handful of roundings of |gamma| (|x| + |rm|) / sigma + |beta| (PyTorch folds it
    # into x * a + (beta - rm * a), which cancels where ours subtracts first)
    sigma = np.sqrt(rv + EPS)
    floor = 2 * gamma(6) * (np.abs(per_channel(g, x)) * (np.abs(x) + np.abs(per_channel(rm, x)))
                            / per_channel(sigma, x) + np.abs(per_channel(b, x))) + TINY64
    assert_agree("eval", backend.to_host(ours), ref, floor)


def test_batch_norm_normalises_each_channel_of_n_c_and_n_c_h_w(backend):
    """With gamma 1 and beta 0 every channel comes out with mean 0 and biased variance var / (var + eps)."""
    rng = np.random.default_rng(5)
    for shape in [(7, 3), (4, 3, 5, 2)]:
        x = rng.normal(2.0, 3.0, shape) * np.arange(1, 4).reshape((1, 3) + (1,) * (len(shape) - 2))
        out, mean, var = (backend.to_host(a) for a in batch_norm(*on(backend, x, np.ones(3), np.zeros(3))))
        np.testing.assert_allclose(mean, x.mean(axis=axes_of(x)), rtol=1e-14)
        np.testing.assert_allclose(var, x.var(axis=axes_of(x)), rtol=1e-13)  # biased: divided by M
        np.testing.assert_allclose(out.mean(axis=axes_of(x)), 0.0, atol=1e-14)
        np.testing.assert_allclose(out.var(axis=axes_of(x)), var / (var + EPS), rtol=1e-12)


@gs.needs_torch
def test_float32_batch_norm_matches_float64_on_the_same_inputs(backend32):
    x, g, b, dout = (a.astype(np.float32).astype(np.float64) for a in draw_case((4, 3, 5, 3), 11, "uniform"))
    out64, grads64 = bn_oracle(x, g, b, dout)
    fl = floors(x, g, b, dout, gam=gamma32, tiny=TINY32)
    xb, gb, bb, doutb = on(backend32, x, g, b, dout)
    out = batch_norm(xb, gb, bb)[0]
    ours = [out, *batch_norm_backward(doutb, xb, gb)]
    for name, a, ref, floor in zip(("out", "dx", "dgamma", "dbeta"), ours, [out64, *grads64], fl):
        assert a.dtype == backend32.dtype
        assert_agree(name, backend32.to_host(a), ref, floor, rtol=1e-5)


@pytest.mark.parametrize("call, message", [
    (lambda: batch_norm(np.zeros(4), np.ones(4), np.zeros(4)), "x must have a channel axis"),
    (lambda: batch_norm(np.zeros((4, 3)), np.ones(2), np.zeros(3)), "must be (3,), one per channel of x, got (2,)"),
    (lambda: batch_norm(np.zeros((0, 3)), np.ones(3), np.zeros(3)), "has no values per channel"),
    (lambda: batch_norm_backward(np.zeros((4, 2)), np.zeros((4, 3)), np.ones(3)), "dout must be shaped like x"),
    (lambda: batch_norm_eval(np.zeros((4, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(4)),
     "must be (3,), one per channel of x, got (4,)"),
    (lambda: update_running_stats(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), 1), "m must be an integer >= 2"),
    (lambda: update_running_stats(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), 4.0), "m must be an integer"),
    (lambda: update_running_stats(np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), 4, momentum=1.5),
     "momentum must lie in [0, 1]"),
    (lambda: update_running_stats(np.zeros(3), np.ones(2), np.zeros(3), np.ones(3), 4), "must all be (C,)"),
])
def test_batch_norm_refuses_bad_arguments_with_one_clear_error(call, message):
    with pytest.raises(InputError) as info:
        call()
    assert message in str(info.value)


def test_running_stats_are_new_arrays(backend):
    rm, rv, mean, var = on(backend, np.zeros(2), np.ones(2), np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    new_mean, new_var = update_running_stats(rm, rv, mean, var, 5)
    np.testing.assert_allclose(backend.to_host(new_mean), [0.1, 0.2], rtol=1e-15)
    np.testing.assert_allclose(backend.to_host(new_var), [0.9 + 0.1 * 3 * 5 / 4, 0.9 + 0.1 * 4 * 5 / 4], rtol=1e-15)
    np.testing.assert_array_equal(backend.to_host(rm), [0.0, 0.0])
    np.testing.assert_array_equal(backend.to_host(rv), [1.0, 1.0])
