"""The book's models: parameters, shapes, initialisation, and the loss_and_grads contract."""

import math

import numpy as np
import pytest

from numpy_mnist.backends import available_backends, get_backend
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


def test_sizes_modes_and_buffers_are_stored_not_read_off_the_params():
    model = simple_net(hidden=6, outputs=3, loss="cross_entropy")
    assert (model.inputs, model.outputs, model.hidden) == (784, 3, 6)
    model.params = dict(reversed(list(model.params.items())))  # no size depends on the dict's order
    assert (model.inputs, model.outputs) == (784, 3)
    assert model.buffers == {} and model.training
    assert model.eval() is model and not model.training and model.train().training
    assert (linear1().kind, simple_net().kind) == ("linear", "simple_net")  # the command line's names


def test_the_chain_calls_the_backward_functions_the_model_holds():
    """The exercise puts a learner's own functions into the same model code: the chain looks them up."""
    from numpy_mnist import layers

    calls = []

    def counted(name, function):
        return lambda *args, **kwargs: (calls.append(name), function(*args, **kwargs))[1]

    x = np.random.default_rng(0).random((4, 784), dtype=np.float32)
    y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
    model = simple_net(hidden=3)
    _, expected = model.loss_and_grads(x, y)
    model.linear_backward = counted("linear_backward", layers.linear_backward)
    model.relu_backward = counted("relu_backward", layers.relu_backward)
    _, grads = model.loss_and_grads(x, y)
    assert calls == ["linear_backward", "relu_backward", "linear_backward"]
    for name, value in expected.items():
        np.testing.assert_array_equal(grads[name], value)
    linear = linear1()
    linear.linear_backward = counted("linear", layers.linear_backward)
    linear.loss_and_grads(x, y)
    assert calls[-1] == "linear"


def test_mnist_loss_is_the_books_where_bitwise_as_one_sigmoid_of_the_flipped_logit():
    """``mean(where(t == 1, sigma(-z), sigma(z)))``, the book's form, is bitwise the form that flips
    the logit of a 3 and takes one sigmoid."""
    from numpy_mnist.layers import sigmoid

    rng = np.random.default_rng(3)
    z = rng.normal(0, 30, (257, 1))
    t = (rng.random((257, 1)) < 0.5).astype(np.float64)
    assert mnist_loss(z, t) == np.mean(sigmoid(np.where(t == 1, -z, z)))
    assert mnist_loss(z, t) == pytest.approx(np.mean(np.where(t == 1, 1 - sigmoid(z), sigmoid(z))), rel=1e-12)


def test_each_loss_says_what_its_consumers_need():
    from numpy_mnist.losses import LOSSES

    assert {name: (loss.multiclass, loss.kernel_code, loss.twin, loss.saturates) for name, loss in LOSSES.items()} == {
        "mnist_loss": (False, 0, "mnist_loss", True),
        "bce": (False, 1, "binary_cross_entropy", False),
        "cross_entropy": (True, 2, "softmax_cross_entropy", False),
    }
    z, t = np.array([[30.0], [-2.0]]), np.array([[1.0], [0.0]])
    assert LOSSES["mnist_loss"].magnitude(z, t, 0.25) == 0.25
    assert LOSSES["bce"].magnitude(z, t, 0.1) == pytest.approx(np.mean(np.logaddexp(z, 0) + np.abs(t * z)))
