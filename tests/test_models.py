"""The book's models: parameters, shapes, initialisation, and the loss_and_grads contract."""

import math

import numpy as np
import pytest

from backends import available_backends, get_backend
from numpy_mnist.errors import InputError
from numpy_mnist.losses import mnist_loss
from numpy_mnist.models import linear1, simple_net


def batch(backend, n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.random((n, 784)))
    y = backend.asarray((rng.random((n, 1)) < 0.5).astype(np.float64))
    return x, y


def test_linear1_params_and_forward_shape(backend):
    model = linear1(seed=1, backend=backend)
    assert {k: tuple(v.shape) for k, v in model.params.items()} == {"weights": (784, 1), "bias": (1,)}
    x, _ = batch(backend)
    assert tuple(model.forward(x).shape) == (7, 1)


def test_simple_net_params_and_forward_shape(backend):
    model = simple_net(hidden=12, seed=1, backend=backend)
    shapes = {k: tuple(v.shape) for k, v in model.params.items()}
    assert shapes == {"w1": (784, 12), "b1": (12,), "w2": (12, 1), "b2": (1,)}
    x, _ = batch(backend)
    assert tuple(model.forward(x).shape) == (7, 1)


def test_linear1_init_is_the_books_standard_normal():
    w = linear1(seed=0, backend=get_backend("numpy", "float64")).params["weights"]
    assert abs(w.mean()) < 0.1 and abs(w.std() - 1) < 0.05


def test_simple_net_init_is_pytorch_linear_default():
    p = simple_net(hidden=30, seed=0, backend=get_backend("numpy", "float64")).params
    for name, fan_in in [("w1", 784), ("b1", 784), ("w2", 30), ("b2", 30)]:
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(p[name]).max() <= bound
    assert np.abs(p["w1"]).max() > 0.9 / math.sqrt(784)  # uses the whole range


@pytest.mark.parametrize("factory", [linear1, simple_net])
def test_same_seed_same_model_on_every_backend(factory):
    for dtype in ("float32", "float64"):
        backends = available_backends(dtype)
        reference = {k: backends[0].to_host(v) for k, v in factory(seed=3, backend=backends[0]).params.items()}
        for b in backends[1:]:
            params = factory(seed=3, backend=b).params
            for name, value in params.items():
                np.testing.assert_array_equal(b.to_host(value), reference[name])


@pytest.mark.parametrize("factory", [linear1, simple_net])
def test_seeds_are_reproducible_and_distinct(factory):
    a, b, c = (factory(seed=s).params for s in (5, 5, 6))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert any(not np.array_equal(a[n], c[n]) for n in a)


@pytest.mark.parametrize("factory", [linear1, simple_net])
def test_loss_and_grads_contract(backend, factory):
    model = factory(seed=0, backend=backend)
    x, y = batch(backend)
    loss, grads = model.loss_and_grads(x, y)
    assert tuple(loss.shape) == () and 0 <= float(loss) <= 1  # a 0-d array, left on the device
    assert list(grads) == list(model.params)
    for name, g in grads.items():
        assert tuple(g.shape) == tuple(model.params[name].shape) and g.dtype == model.params[name].dtype
    assert float(loss) == pytest.approx(float(mnist_loss(model.forward(x), y)))


def test_the_books_mnist_loss_example_on_probabilities(backend):
    """The book: mnist_loss(tensor([0.9, 0.4, 0.2]), tensor([1, 0, 1])) = 0.4333 on probabilities.

    Our loss takes logits, so feed logit(p) = log(p / (1 - p)): the sigmoid inside gives p back.
    """
    p = np.array([0.9, 0.4, 0.2])
    logits = backend.asarray(np.log(p / (1 - p))[:, None])
    targets = backend.asarray(np.array([[1.0], [0.0], [1.0]]))
    assert float(mnist_loss(logits, targets)) == pytest.approx(0.43333333333, abs=1e-10)


def test_loss_can_be_chosen():
    x, y = batch(get_backend("numpy", "float32"))
    assert linear1(loss="bce").loss.name == "bce"
    with pytest.raises(InputError, match="unknown loss 'hinge'"):
        linear1(loss="hinge")
    assert linear1(loss="bce").loss_and_grads(x, y)[0] != linear1(loss="mnist_loss").loss_and_grads(x, y)[0]


def test_targets_of_shape_n_are_refused_not_broadcast():
    model = linear1()
    x, y = batch(model.backend)
    want = r"y must have shape \(7, 1\) for a one-output model, got \(7,\).*y\[:, None\]"
    with pytest.raises(InputError, match=want):
        model.loss_and_grads(x, y[:, 0])
    with pytest.raises(InputError, match=r"targets must have the shape of the logits \(7, 1\), got \(7,\).*reshape"):
        mnist_loss(model.forward(x), y[:, 0])


def test_images_of_the_wrong_width_are_refused():
    model = simple_net()
    with pytest.raises(InputError, match=r"x must have shape \(N, 784\), got \(3, 28\)"):
        model.forward(np.zeros((3, 28), dtype=np.float32))
    with pytest.raises(InputError, match="hidden must be a positive width"):
        simple_net(hidden=0)
