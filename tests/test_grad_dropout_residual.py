"""Dropout and the residual add, and what every ResNet layer promises: no writing into its inputs.

* Finite differences in float64 (both are linear in what they differentiate: the difference is
  exact up to rounding) and PyTorch in float64: dropout's backward against ATen's own
  ``native_dropout_backward`` given the same mask, the residual add against autograd.
* The mask: drawn on the host from a seeded generator, so one seed gives one mask everywhere;
  about ``1 - p`` of it kept.
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch_oracles import assert_agree

from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.layers import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval,
    conv2d,
    conv2d_backward,
    dropout,
    dropout_backward,
    dropout_mask,
    global_avg_pool,
    global_avg_pool_backward,
    global_max_pool,
    global_max_pool_backward,
    max_pool2d,
    max_pool2d_backward,
    residual_add,
    residual_add_backward,
    update_running_stats,
)
from numpy_mnist.torch_twin import TINY64, tensor, vjp

shapes = st.sampled_from([(5,), (3, 4), (2, 3, 4, 5), (1, 1, 1, 1)])
probabilities = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9])


def on(backend, *arrays):
    return [backend.asarray(a) for a in arrays]


# -- dropout --------------------------------------------------------------------------------------

@gs.with_backend
@given(shape=shapes, p=probabilities, seed=gs.seeds)
def test_dropout_backward_matches_finite_differences(backend, shape, p, seed):
    x, dout = gs.values(seed, shape), gs.values(seed + 1, shape)
    mask = dropout_mask(np.random.default_rng(seed), shape, p)
    xb, doutb, maskb = *on(backend, x, dout), backend.asarray(mask)
    dx = dropout_backward(doutb, maskb, p)
    scale = np.abs(dout * x) / (1 - p)  # elementwise: entry i moves dout[i] * out[i] only
    report = check_gradient(lambda a: dropout(a, maskb, p), xb, dx, dout=dout,
                            options=GradCheckOptions(scale=scale, backend=backend))
    assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(shape=shapes, p=probabilities, seed=gs.seeds)
def test_dropout_matches_pytorchs_own_dropout_backward(backend, shape, p, seed):
    import torch

    x, dout = gs.values(seed, shape), gs.values(seed + 1, shape)
    mask = dropout_mask(np.random.default_rng(seed), shape, p)
    xb, doutb, maskb = *on(backend, x, dout), backend.asarray(mask)
    assert maskb.dtype == backend.xp.bool
    scale = 1 / (1 - p)
    mask_t = torch.tensor(mask)
    ref_dx = torch.ops.aten.native_dropout_backward(tensor(dout), mask_t, scale).numpy()
    ref_out = (tensor(x) * mask_t * scale).numpy()  # ATen's forward: input * mask * scale
    assert_agree("out", backend.to_host(dropout(xb, maskb, p)), ref_out, TINY64)
    dx = backend.to_host(dropout_backward(doutb, maskb, p))
    assert_agree("dx", dx, ref_dx, TINY64)
    assert np.all(dx[~mask] == 0)


def test_dropout_mask_is_seeded_boolean_and_keeps_about_1_minus_p():
    for p in (0.0, 0.1, 0.5, 0.9):
        mask = dropout_mask(np.random.default_rng(3), (200, 500), p)
        assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == (200, 500)
        np.testing.assert_array_equal(mask, dropout_mask(np.random.default_rng(3), (200, 500), p))
        kept, n = mask.mean(), mask.size
        assert abs(kept - (1 - p)) <= 5 * np.sqrt(p * (1 - p) / n)  # five binomial standard deviations
    assert dropout_mask(np.random.default_rng(3), (4,), 0.0).all()


def test_dropout_keeps_the_expected_value(backend):
    """Inverted scaling: averaged over many masks, dropout(x) is x (so evaluation is the identity)."""
    x = np.linspace(-2, 2, 5)
    rng = np.random.default_rng(0)
    masks = dropout_mask(rng, (20000, 5), 0.5)
    out = backend.to_host(dropout(*on(backend, np.broadcast_to(x, masks.shape).copy()), backend.asarray(masks), 0.5))
    np.testing.assert_allclose(out.mean(axis=0), x, atol=5 * 2 * np.abs(x).max() * 0.5 / np.sqrt(20000))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_refuses_a_probability_outside_0_to_1(p):
    keep = np.ones(3, bool)
    for call in (lambda: dropout(np.zeros(3), keep, p), lambda: dropout_backward(np.zeros(3), keep, p),
                 lambda: dropout_mask(np.random.default_rng(0), (3,), p)):
        with pytest.raises(InputError, match=r"the dropout probability p must lie in \[0, 1\)"):
            call()


def test_dropout_refuses_a_mask_of_another_shape():
    with pytest.raises(InputError, match=r"mask must be shaped like x \(3, 4\), got \(4, 3\)"):
        dropout(np.zeros((3, 4)), np.ones((4, 3), bool), 0.5)


# -- the residual add -----------------------------------------------------------------------------

@gs.with_backend
@given(shape=shapes, seed=gs.seeds)
def test_residual_add_backward_matches_finite_differences(backend, shape, seed):
    a, b, dout = gs.values(seed, shape), gs.values(seed + 1, shape), gs.values(seed + 2, shape)
    ab, bb, doutb = on(backend, a, b, dout)
    da, db = residual_add_backward(doutb)
    scale = np.abs(dout * (np.abs(a) + np.abs(b)))
    for report in [
        check_gradient(lambda t: residual_add(t, bb), ab, da, dout=dout,
                       options=GradCheckOptions(scale=scale, name="da", backend=backend)),
        check_gradient(lambda t: residual_add(ab, t), bb, db, dout=dout,
                       options=GradCheckOptions(scale=scale, name="db", backend=backend)),
    ]:
        assert report.rtol == DEFAULT_RTOL and report.ok, str(report)


@gs.needs_torch
@gs.with_backend
@given(shape=shapes, seed=gs.seeds)
def test_residual_add_matches_torch(backend, shape, seed):
    a, b, dout = gs.values(seed, shape), gs.values(seed + 1, shape), gs.values(seed + 2, shape)
    ab, bb, doutb = on(backend, a, b, dout)
    out, (ref_a, ref_b) = vjp(lambda s, t: s + t, [a, b], dout)
    np.testing.assert_array_equal(backend.to_host(residual_add(ab, bb)), out)  # one rounding, the same
    da, db = residual_add_backward(doutb)
    np.testing.assert_array_equal(backend.to_host(da), ref_a)
    np.testing.assert_array_equal(backend.to_host(db), ref_b)


def test_residual_add_refuses_to_broadcast():
    with pytest.raises(InputError, match=r"a must be shaped like b \(2, 3, 4, 4\), got \(2, 3, 1, 1\)"):
        residual_add(np.zeros((2, 3, 1, 1)), np.zeros((2, 3, 4, 4)))


# -- no layer writes into what it is given --------------------------------------------------------

def test_resnet_layers_never_write_into_their_inputs(backend):
    """Every forward and backward leaves its arguments as they were, and writing into any result
    (the way an optimiser or a caller accumulating gradients might) never reaches an argument."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2))
    dconv, dpool = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((2, 3, 3, 3))
    dglobal = rng.standard_normal((2, 3))
    g, b, rm, rv = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3), rng.uniform(1, 2, 3)
    mask = dropout_mask(rng, x.shape, 0.5)
    host = dict(x=x, w=w, dconv=dconv, dpool=dpool, dglobal=dglobal, g=g, b=b, rm=rm, rv=rv, mask=mask)
    a = {k: backend.asarray(v) for k, v in host.items()}
    calls = [
        (conv2d, (a["x"], a["w"]), dict(stride=2, padding=1)),
        (conv2d_backward, (a["dconv"], a["x"], a["w"]), dict(stride=2, padding=1)),
        (conv2d, (a["x"], a["w"][:, :, :1, :1]), {}),  # 1x1, no padding: the input itself is sliced
        (max_pool2d, (a["x"],), {}),
        (max_pool2d, (a["x"],), dict(kernel=1, stride=1, padding=0)),
        (max_pool2d_backward, (a["dpool"], a["x"]), {}),
        (batch_norm, (a["x"], a["g"], a["b"]), {}),
        (batch_norm_backward, (a["x"], a["x"], a["g"]), {}),
        (batch_norm_eval, (a["x"], a["g"], a["b"], a["rm"], a["rv"]), {}),
        (update_running_stats, (a["rm"], a["rv"], a["g"], a["rv"], 5), {}),
        (global_avg_pool, (a["x"],), {}),
        (global_avg_pool_backward, (a["dglobal"], a["x"]), {}),
        (global_max_pool, (a["x"],), {}),
        (global_max_pool_backward, (a["dglobal"], a["x"]), {}),
        (dropout, (a["x"], a["mask"], 0.5), {}),
        (dropout_backward, (a["x"], a["mask"], 0.5), {}),
        (residual_add, (a["x"], a["x"]), {}),
        (residual_add_backward, (a["x"],), {}),
    ]
    for fn, args, kwargs in calls:
        results = fn(*args, **kwargs)
        for result in results if isinstance(results, tuple) else (results,):
            result *= 0
        for name, value in host.items():
            np.testing.assert_array_equal(backend.to_host(a[name]), value, err_msg=f"{fn.__name__} changed {name}")
    da, db = residual_add_backward(a["x"])
    da *= 0
    np.testing.assert_array_equal(backend.to_host(db), x)  # two arrays, not one seen twice
