"""Bad input at every public edge ends in the project's InputError, naming the argument and the fix."""

import numpy as np
import pytest

from numpy_mnist.backends import get_backend
from numpy_mnist.checks import check_targets
from numpy_mnist.data import DataLoader
from numpy_mnist.errors import ForeignArrayError, InputError, NumpyMnistError
from numpy_mnist.learner import Learner
from numpy_mnist.losses import binary_cross_entropy, mnist_loss
from numpy_mnist.models import linear1, simple_net
from numpy_mnist.optim import SGD


def data(n=10, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.random((n, 784)).astype(dtype), (rng.random((n, 1)) < 0.5).astype(dtype)


def test_input_error_is_ours_and_a_value_error():
    assert issubclass(InputError, NumpyMnistError) and issubclass(InputError, ValueError)


@pytest.mark.parametrize("loss", [mnist_loss, binary_cross_entropy])
def test_losses_refuse_n_targets_against_n1_logits(loss):
    logits, targets = np.zeros((5, 1)), np.zeros(5)
    with pytest.raises(InputError, match=r"targets must have the shape of the logits \(5, 1\), got \(5,\)"):
        loss(logits, targets)


def test_wrong_dtype_images_are_refused():
    x, y = data(dtype=np.float64)
    with pytest.raises(InputError, match="x must be float32 like the model's parameters, got float64"):
        linear1().forward(x)
    with pytest.raises(InputError, match="x must be float32 .* got uint8"):
        linear1().forward((x * 255).astype(np.uint8))


def test_float_targets_required_for_binary_losses():
    x, y = data()
    with pytest.raises(InputError, match="y must be floating .* got int64"):
        linear1().loss_and_grads(x, y.astype(np.int64))


@pytest.mark.parametrize("bad", [0.5, 2.0, -1.0])
def test_binary_targets_outside_0_1_are_refused(bad):
    x, y = data()
    y[3, 0] = bad
    # Checked once, where the data enter training (a check per batch would make a GPU wait).
    with pytest.raises(InputError, match="train y must hold only 0 and 1 for the binary losses"):
        Learner(net := simple_net(), DataLoader(x, y), DataLoader(x, y), SGD(net.params, 0.1))
    with pytest.raises(InputError, match="y must hold only 0 and 1 for the binary losses"):
        check_targets(y, 1)


@pytest.mark.parametrize("labels, words", [
    (np.array([0, 3, 10]), "labels 0 to 9, got labels from 0 to 10"),
    (np.array([-1, 3, 9]), "labels 0 to 9, got labels from -1 to 9"),
    (np.array([0.0, 3.0, 9.0]), "integer class labels, got float64"),
    (np.array([[0], [3], [9]]), r"integer labels of shape \(3,\) for a 10-class model, got \(3, 1\)"),
])
def test_class_labels_outside_0_9_or_of_the_wrong_kind_are_refused(labels, words):
    with pytest.raises(InputError, match=words):
        check_targets(labels, 10, n=3)


@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_or_infinity_in_data_is_refused(where, value):
    x, y = data()
    (x if where == "x" else y)[2, 0] = value
    with pytest.raises(InputError, match=f"{where} holds 1 NaN or infinite values"):
        DataLoader(x, y)


def test_empty_inputs_are_refused():
    x, y = data()
    with pytest.raises(InputError, match="x is empty"):
        linear1().forward(x[:0])
    with pytest.raises(InputError, match="the dataset is empty"):
        DataLoader(x[:0], y[:0])
    with pytest.raises(InputError, match="same number of rows, got 10 and 9"):
        DataLoader(x, y[:9])
    with pytest.raises(InputError, match="drop_last with batch_size 256 leaves no batch"):
        DataLoader(x, y, drop_last=True)
    for bad in (0, -3, 2.5, "a", None, True):
        with pytest.raises(InputError, match="batch_size must be a positive integer"):
            DataLoader(x, y, batch_size=bad)


def test_an_array_of_another_backend_is_refused():
    strict = get_backend("array_api_strict", "float32")
    x, _ = data()
    with pytest.raises(InputError, match="array_api_strict.Array, but the model lives on the numpy backend"):
        linear1().forward(strict.asarray(x))
    with pytest.raises(ForeignArrayError, match="cannot move a array_api_strict.Array to the numpy backend"):
        get_backend("numpy").asarray(strict.asarray(x))


def test_learner_checks_data_and_backends_once_at_the_start():
    x, y = data()
    strict = get_backend("array_api_strict", "float32")
    with pytest.raises(InputError, match="the train DataLoader is on <backend array_api_strict"):
        Learner(net := linear1(), DataLoader(x, y, backend=strict), DataLoader(x, y), SGD(net.params, 1.0))
    y[0, 0] = 3.0
    with pytest.raises(InputError, match="valid y must hold only 0 and 1"):
        Learner(net := linear1(), DataLoader(x, np.zeros_like(y)), DataLoader(x, y), SGD(net.params, 1.0))
    with pytest.raises(InputError, match=r"train y must be integer labels of shape \(10,\) for a 10-class model"):
        Learner(net := linear1(outputs=10), DataLoader(x, y), DataLoader(x, y), SGD(net.params, 1.0))
