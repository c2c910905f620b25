"""The fast training loop gives bitwise the results of the plain composition of the layer functions.

The reference below is the training step written out the straightforward way, as the code was
before it was tuned for speed: forward through ``linear``/``relu``, the loss's own forward and its
separate backward (two sigmoids, ``mean``), the layers' backwards, then ``p -= grad * lr``.  Any
speed-up of the hot path (a fused loss, fewer temporaries) must leave every bit of the parameters
and of every batch loss unchanged, in float32 and float64, on NumPy and on array_api_strict.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backends import get_backend
from numpy_mnist.data.loader import DataLoader
from numpy_mnist.learner import train_epoch
from numpy_mnist.losses import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    binary_cross_entropy_value_and_grad,
    get_loss,
    mnist_loss,
    mnist_loss_backward,
    mnist_loss_value_and_grad,
)
from numpy_mnist.models import linear1, simple_net
from numpy_mnist.optim import SGD

# -- the reference: the plain composition, spelled out ---------------------------------------------

def ref_sigmoid(xp, x):
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)


def ref_sigmoid_derivative(xp, x):
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return e * r * r


def ref_loss(xp, name, z, t):
    m = z.shape[0] * z.shape[1]
    if name == "mnist_loss":
        return xp.mean(ref_sigmoid(xp, (1 - 2 * t) * z)), (1 - 2 * t) * ref_sigmoid_derivative(xp, z) / m
    softplus = xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))
    return xp.mean(softplus - t * z), (ref_sigmoid(xp, z) - t) / m


def ref_step(xp, kind, params, x, t, loss_name, lr):
    """One SGD step of the reference; updates ``params`` (a dict of arrays) and returns the loss."""
    if kind == "linear":
        z = x @ params["weights"] + params["bias"]
        loss, dz = ref_loss(xp, loss_name, z, t)
        grads = {"weights": x.T @ dz, "bias": xp.sum(dz, axis=0)}
    else:
        h = x @ params["w1"] + params["b1"]
        a = xp.maximum(h, xp.zeros_like(h))
        z = a @ params["w2"] + params["b2"]
        loss, dz = ref_loss(xp, loss_name, z, t)
        da = dz @ params["w2"].T
        dh = xp.where(h > 0, da, xp.zeros_like(da))
        grads = {"w1": x.T @ dh, "b1": xp.sum(dh, axis=0), "w2": a.T @ dz, "b2": xp.sum(dz, axis=0)}
    for name in params:
        params[name] = params[name] - grads[name] * lr
    return loss


def _bits(backend, a) -> bytes:
    host = backend.to_host(a)
    return host.tobytes() + str(host.dtype).encode()


@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["linear", "simple_net"])
@pytest.mark.parametrize("loss_name", ["mnist_loss", "bce"])
def test_training_epochs_are_bitwise_the_plain_composition(backend_name, dtype, kind, loss_name):
    backend = get_backend(backend_name, dtype) if backend_name == "numpy" else _strict_or_skip(dtype)
    rng = np.random.default_rng(5)
    n = 300  # batches of 128, 128 and a short 44
    x_host = rng.integers(0, 256, size=(n, 784)).astype(np.float32) / np.float32(255)
    y_host = (rng.random((n, 1)) < 0.5).astype(np.float32)
    lr = 1.0 if kind == "linear" else 0.1
    model = (linear1(seed=3, backend=backend, loss=loss_name) if kind == "linear"
             else simple_net(hidden=12, seed=3, backend=backend, loss=loss_name))
    params = {k: backend.xp.asarray(v, copy=True) for k, v in model.params.items()}
    loader = DataLoader(x_host, y_host, 128, backend=backend)
    opt = SGD(model.params, lr)
    xp = backend.xp
    for epoch in range(3):
        ref_losses = [ref_step(xp, kind, params, xb, yb, loss_name, lr) for xb, yb in loader]
        losses = []
        for xb, yb in loader:
            loss, grads = model.loss_array_and_grads(xb, yb)
            opt.step(grads)
            losses.append(loss)
        assert [_bits(backend, a) for a in losses] == [_bits(backend, a) for a in ref_losses], f"epoch {epoch}"
        for name in params:
            assert _bits(backend, model.params[name]) == _bits(backend, params[name]), f"{name}, epoch {epoch}"


def test_train_epoch_mean_loss_matches_the_reference():
    backend = get_backend("numpy", "float32")
    rng = np.random.default_rng(1)
    x = rng.random((520, 784), dtype=np.float32)
    y = (rng.random((520, 1)) < 0.5).astype(np.float32)
    model = simple_net(hidden=7, seed=2, backend=backend)
    params = {k: v.copy() for k, v in model.params.items()}
    loader = DataLoader(x, y, 256, backend=backend)
    got = train_epoch(model, loader, SGD(model.params, 0.1))
    ref = [float(ref_step(np, "simple_net", params, xb, yb, "mnist_loss", 0.1)) for xb, yb in loader]
    sizes = [256, 256, 8]
    assert got == sum(v * n for v, n in zip(ref, sizes)) / sum(sizes)
    for name in params:
        assert np.array_equal(model.params[name], params[name])


def _strict_or_skip(dtype):
    from backends import BackendUnavailableError

    try:
        return get_backend("array_api_strict", dtype)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))


# -- the fused losses against their two halves, over awkward logits -------------------------------

def _logits(dtype):
    finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32 if dtype == np.float32 else 64)
    special = st.sampled_from([0.0, -0.0, 16.6, -16.6, 88.7, -88.7, 103.0, -103.0, 700.0, -745.0])
    return hnp.arrays(dtype, st.tuples(st.integers(1, 40), st.integers(1, 3)), elements=finite | special)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_fused_losses_are_bitwise_forward_and_backward(dtype, data):
    z = data.draw(_logits(dtype))
    t = data.draw(hnp.arrays(dtype, z.shape, elements=st.sampled_from([0.0, 1.0])))
    with np.errstate(over="ignore"):  # exp overflow is impossible here, but float64 extremes are close
        loss, grad = mnist_loss_value_and_grad(z, t)
        assert loss.tobytes() == np.asarray(mnist_loss(z, t)).tobytes()
        assert grad.tobytes() == mnist_loss_backward(z, t).tobytes()
        loss, grad = binary_cross_entropy_value_and_grad(z, t)
        assert loss.tobytes() == np.asarray(binary_cross_entropy(z, t)).tobytes()
        assert grad.tobytes() == binary_cross_entropy_backward(z, t).tobytes()


def test_loss_value_and_grad_falls_back_to_forward_and_backward():
    plain = get_loss("mnist_loss")
    composed = type(plain)("plain", plain.forward, plain.backward)
    z = np.linspace(-5, 5, 11, dtype=np.float32)[:, None]
    t = (z > 0).astype(np.float32)
    loss, grad = composed.value_and_grad(z, t)
    assert loss == mnist_loss(z, t)
    assert np.array_equal(grad, mnist_loss_backward(z, t))
