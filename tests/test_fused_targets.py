"""The fused path takes the targets the array path takes, and refuses the ones it refuses.

The kernels read ``T`` targets (0 or 1) for the binary losses and ``long long`` labels for
cross-entropy.  Targets of another dtype are checked as the :class:`~numpy_mnist.learner.Learner`
checks them (the same :class:`~numpy_mnist.errors.InputError`, word for word) instead of reaching a
kernel that would read int64 bytes as floats, float labels as integers, or a label out of range
out of bounds.  Integer labels of any width are widened to int64.  Run on the host device (the
same kernels built by g++ for the CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
from host_build import HostDevice, compiler

from numpy_mnist.backends import get_backend
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.errors import InputError
from numpy_mnist.fused.trainer import FusedTrainer
from numpy_mnist.learner import Learner, train_epoch
from numpy_mnist.models import linear1, mlp10, simple_net
from numpy_mnist.optim import SGD

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++) to build the fused kernels")


@pytest.fixture(scope="module")
def data():
    tx, ty, _, _ = load_mnist_sample()
    idx = np.r_[0:60, len(tx) - 60:len(tx)]  # 3s then 7s
    return tx[idx], ty[idx]


def refusals(model, x, y):
    """The Learner's error and the fused trainer's, for the same model and targets."""
    backend = model.backend
    train, valid = DataLoader(x, y, 32, backend=backend), DataLoader(x, y, 32, backend=backend)
    with pytest.raises(InputError) as learner:
        Learner(model, train, valid, SGD(model.params, 0.1))
    with pytest.raises(InputError) as fused:
        FusedTrainer(model, train, SGD(model.params, 0.1), valid, device=HostDevice())
    return str(learner.value), str(fused.value)


@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_targets_of_a_binary_loss_are_refused_as_the_learner_refuses_them(data, loss, dtype):
    x, y = data
    model = linear1(seed=0, backend=get_backend("numpy", "float64"), loss=loss)
    learner, fused = refusals(model, x, y.astype(dtype))
    assert fused == learner and "train y must be floating (1.0 for a 3, 0.0 for a 7)" in fused


def test_binary_targets_other_than_0_and_1_are_refused(data):
    x, y = data
    model = simple_net(hidden=4, seed=0, backend=get_backend("numpy", "float32"))
    learner, fused = refusals(model, x, y * 2)
    assert fused == learner and "must hold only 0 and 1" in fused


@pytest.mark.parametrize("labels, says", [
    (lambda n: np.arange(n) % 10 * 1.0, "must be integer class labels, got float"),
    (lambda n: np.arange(n) % 11, "must hold labels 0 to 9, got labels from 0 to 10"),
    (lambda n: (np.arange(n) % 10)[:, None], "must be integer labels of shape"),
])
def test_labels_the_kernel_cannot_read_are_refused_as_the_learner_refuses_them(data, labels, says):
    x, _ = data
    model = mlp10(hidden=4, seed=0, backend=get_backend("numpy", "float64"))
    learner, fused = refusals(model, x, labels(len(x)))
    assert fused == learner and says in fused


def test_int32_labels_are_widened_and_train_as_on_the_array_path(data):
    x, _ = data
    labels = (np.arange(len(x)) * 7 % 10).astype(np.int32)
    backend = get_backend("numpy", "float64")
    fused_model, array_model = mlp10(hidden=8, seed=3, backend=backend), mlp10(hidden=8, seed=3, backend=backend)
    train = DataLoader(x, labels, 32, shuffle=True, seed=2, backend=backend)
    assert train.y.dtype == np.int32  # the loader keeps integer dtypes
    trainer = FusedTrainer(fused_model, train, SGD(fused_model.params, 0.1), device=HostDevice())
    fused = []
    for e in (1, 2):
        train.set_epoch(e - 1)  # as the Learner does before every epoch
        fused.append(trainer.train_epoch(e))
    train.set_epoch(0)
    opt = SGD(array_model.params, 0.1)
    reference = [train_epoch(array_model, train, opt, epoch=e) for e in (1, 2)]
    assert fused == pytest.approx(reference, rel=1e-12)
    for name, value in array_model.params.items():
        np.testing.assert_allclose(fused_model.params[name], value, rtol=0, atol=1e-12 * np.max(np.abs(value)))
