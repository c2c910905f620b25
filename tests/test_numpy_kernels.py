"""The NumPy fast paths are bitwise their Array-API originals, on every value, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backends import get_backend
from numpy_mnist import layers, losses, numpy_kernels
from numpy_mnist.errors import InputError
from numpy_mnist.models import MLP, layer_ops_for, linear1, simple_net, value_and_grad_for

DTYPES = [np.float32, np.float64]


def same(a, b) -> bool:
    """Bitwise equal, dtype and shape included (NaN payloads and signed zeros too)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def arrays(dtype, shape, *, allow_special=True):
    width = 32 if dtype == np.float32 else 64
    values = st.floats(min_value=-1e4, max_value=1e4, width=width, allow_nan=False)
    if allow_special:
        values = values | st.sampled_from([0.0, -0.0, np.inf, -np.inf, np.nan, 88.7, -103.9, 750.0, -750.0])
    return hnp.arrays(dtype, shape, elements=values)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_linear_backward(dtype, data):
    n, d_in, d_out = data.draw(st.tuples(st.integers(1, 30), st.integers(1, 12), st.integers(1, 4)))
    dout = data.draw(arrays(dtype, (n, d_out), allow_special=False))
    x = data.draw(arrays(dtype, (n, d_in), allow_special=False))
    w = data.draw(arrays(dtype, (d_in, d_out), allow_special=False))
    for need_dx in (True, False):
        ours, theirs = numpy_kernels.linear_backward(dout, x, w, need_dx=need_dx), layers.linear_backward(
            dout, x, w, need_dx=need_dx)
        assert (ours[0] is None) == (theirs[0] is None) == (not need_dx)
        assert all(same(a, b) for a, b in zip(ours, theirs) if b is not None)


@pytest.mark.parametrize("dtype", DTYPES)
@given(data=st.data())
def test_losses_bitwise_the_array_api_versions(dtype, data):
    n = data.draw(st.integers(1, 40))
    z = data.draw(arrays(dtype, (n, 1), allow_special=False))
    t01 = data.draw(hnp.arrays(dtype, (n, 1), elements=st.sampled_from([0.0, 1.0])))
    soft = data.draw(hnp.arrays(dtype, (n, 1), elements=st.floats(0, 1, width=32 if dtype == np.float32 else 64)))
    with np.errstate(over="ignore", under="ignore"):
        for t in (t01, soft):
            for ours, theirs in ((numpy_kernels.mnist_loss_value_and_grad, losses.mnist_loss_value_and_grad),
                                 (numpy_kernels.binary_cross_entropy_value_and_grad,
                                  losses.binary_cross_entropy_value_and_grad)):
                (lo, go), (lt, gt) = ours(z, t), theirs(z, t)
                assert same(lo, lt) and same(go, gt)
        loss, grad = numpy_kernels.mnist_loss_value_and_grad(z, t01)  # and the separate halves, for 0/1
        assert same(loss, losses.mnist_loss(z, t01)) and same(grad, losses.mnist_loss_backward(z, t01))


def test_losses_never_write_into_their_arguments():
    z = np.linspace(-3, 3, 8, dtype=np.float32)[:, None]
    t = (z > 0).astype(np.float32)
    z0, t0 = z.copy(), t.copy()
    for f in (numpy_kernels.mnist_loss_value_and_grad, numpy_kernels.binary_cross_entropy_value_and_grad):
        f(z, t)
        assert same(z, z0) and same(t, t0)
    with pytest.raises(InputError):
        numpy_kernels.mnist_loss_value_and_grad(z, t[:, 0])


def test_models_use_them_on_numpy_only():
    assert layer_ops_for(get_backend("numpy")) is numpy_kernels
    assert linear1(backend="numpy")._layers() is numpy_kernels
    mnist, bce = losses.get_loss("mnist_loss"), losses.get_loss("bce")
    assert value_and_grad_for(get_backend("numpy"), bce) is numpy_kernels.binary_cross_entropy_value_and_grad
    assert numpy_kernels.fused_value_and_grad(losses.Loss("mnist_loss", lambda z, t: 0, mnist.backward)) is None
    try:
        strict = get_backend("array_api_strict")
    except Exception:
        return
    assert layer_ops_for(strict) is layers
    assert value_and_grad_for(strict, mnist) == mnist.value_and_grad


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_training_is_bitwise_array_api_strict_training(dtype):
    """The same epochs on NumPy (fast paths) and on array_api_strict (the Array-API functions)."""
    try:
        strict = get_backend("array_api_strict", dtype)
    except Exception as exc:
        pytest.skip(str(exc))
    from numpy_mnist.data.loader import DataLoader
    from numpy_mnist.learner import train_epoch
    from numpy_mnist.optim import SGD

    rng = np.random.default_rng(9)
    x = rng.random((333, 784), dtype=np.float32)
    y = (rng.random((333, 1)) < 0.5).astype(np.float32)
    results = []
    for backend in (get_backend("numpy", dtype), strict):
        model = simple_net(hidden=10, seed=4, backend=backend)
        assert isinstance(model, MLP)
        loader = DataLoader(x, y, 64, backend=backend)
        opt = SGD(model.params, 0.1)
        losses_ = [train_epoch(model, loader, opt) for _ in range(2)]
        results.append((losses_, {k: backend.to_host(v) for k, v in model.params.items()}))
    (l1, p1), (l2, p2) = results
    assert l1 == l2
    assert all(same(p1[k], p2[k]) for k in p1)
