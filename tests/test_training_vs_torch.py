"""Whole training runs: ours (hand-derived gradients, SGD) against PyTorch's autograd, step for step.

From the same initial parameters and the same batches (a ``DataLoader`` without shuffling, and with
``shuffle=True``, PyTorch being fed the loader's own order), several epochs of ``linear1`` and
``simple_net`` on real 3s and 7s.  PyTorch trains as the book does: tensors with
``requires_grad``, ``loss.backward()``, ``p.data -= p.grad * lr``, ``p.grad.zero_()``.

* float64: every parameter equal to PyTorch's to 1e-9 relative (with the rounding floor of
  :mod:`numpy_mnist.torch_twin` for entries that cancel, scaled by the number of steps);
* float32: final validation accuracy within 0.002.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracles import assert_agree

from numpy_mnist import torch_twin
from numpy_mnist.data import DataLoader
from numpy_mnist.metrics import batch_accuracy
from numpy_mnist.models import linear1, simple_net
from numpy_mnist.optim import SGD

torch = pytest.importorskip("torch")  # the reference of every test here

#: The book's learning rates: 1.0 for linear1, 0.1 for simple_net.
RUNS = {
    "linear1": (lambda backend, loss: linear1(seed=1, backend=backend, loss=loss), 1.0),
    "simple_net": (lambda backend, loss: simple_net(30, seed=1, backend=backend, loss=loss), 0.1),
}
EPOCHS, BATCH = 4, 64


@pytest.fixture(scope="module")
def data():
    """600 training images (300 3s, 300 7s, interleaved as the book's stack is not) and 1,000 valid."""
    from numpy_mnist.data import load_mnist_sample

    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    rng = np.random.default_rng(0)
    threes, sevens = np.flatnonzero(train_y[:, 0] == 1), np.flatnonzero(train_y[:, 0] == 0)
    rows = rng.permutation(np.concatenate([rng.choice(threes, 300, replace=False),
                                           rng.choice(sevens, 300, replace=False)]))
    valid = rng.choice(len(valid_x), 1000, replace=False)
    return train_x[rows], train_y[rows], valid_x[valid], valid_y[valid]


def train_ours(model, loader, lr, epochs):
    opt = SGD(model.params, lr)
    for _ in range(epochs):
        for xb, yb in loader:
            _, grads = model.loss_and_grads(xb, yb)
            opt.step(grads)
    return {k: model.backend.to_host(v) for k, v in model.params.items()}


def train_torch(model, loader, lr, epochs, dtype):
    """The book's loop, on a copy of ``model``'s initial parameters, over ``loader``'s batch order."""
    params = torch_twin.parameters(model, dtype=dtype)
    loss_fn = torch_twin.LOSSES[model.loss.name]
    x = torch.tensor(np.asarray(loader.backend.to_host(loader.x)), dtype=dtype)
    y = torch.tensor(np.asarray(loader.backend.to_host(loader.y)), dtype=dtype)
    for epoch in range(epochs):
        order = torch.as_tensor(loader.order(epoch))
        for start in range(0, loader.n_rows, loader.batch_size):
            idx = order[start:start + loader.batch_size]
            xb, yb = x[idx], y[idx]
            preds = torch_twin.forward(model, xb, params)
            loss = loss_fn(preds, yb)
            loss.backward()
            for p in params.values():
                p.data -= p.grad * lr
                p.grad.zero_()
    return params


@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
@pytest.mark.parametrize("name", RUNS)
def test_float64_training_gives_pytorchs_parameters(backend, data, name, shuffle, loss):
    make, lr = RUNS[name]
    model = make(backend, loss)
    train_x, train_y, _, _ = data
    loader = DataLoader(train_x, train_y, BATCH, shuffle=shuffle, seed=3, backend=backend)
    initial = {k: backend.to_host(v) for k, v in model.params.items()}
    theirs = train_torch(model, loader, lr, EPOCHS, torch.float64)
    ours = train_ours(model, loader, lr, EPOCHS)
    steps = EPOCHS * len(loader)
    for p, value in ours.items():
        ref = theirs[p].detach().numpy()
        assert not np.array_equal(value, initial[p]), f"{p} never moved"
        # An entry that training brought near 0 is compared absolutely, to what the rounding of
        # `steps` updates at the parameter's scale can add up to: steps * eps * max |p| (about 1e-14
        # here; measured differences stay below 1e-15).  Every other entry: 1e-9 relative.
        floor = steps * np.finfo(np.float64).eps * np.max(np.abs(ref))
        assert_agree(f"{name} {p} after {steps} steps", value, ref, floor, rtol=1e-9)


@pytest.mark.parametrize("name", RUNS)
def test_float32_training_reaches_pytorchs_accuracy(data, name):
    from numpy_mnist.backends import get_backend

    make, lr = RUNS[name]
    backend = get_backend("numpy", "float32")
    model = make(backend, "mnist_loss")
    train_x, train_y, valid_x, valid_y = data
    loader = DataLoader(train_x, train_y, BATCH, shuffle=True, seed=5, backend=backend)
    epochs = 8
    theirs = train_torch(model, loader, lr, epochs, torch.float32)
    train_ours(model, loader, lr, epochs)
    ours_acc = float(batch_accuracy(model.forward(backend.asarray(valid_x)), backend.asarray(valid_y)))
    with torch.no_grad():
        logits = torch_twin.forward(model, torch.tensor(valid_x), theirs)
        torch_acc = float(((torch.sigmoid(logits) > 0.5) == (torch.tensor(valid_y) == 1)).float().mean())
    assert ours_acc > 0.9 and torch_acc > 0.9, (ours_acc, torch_acc)
    assert abs(ours_acc - torch_acc) <= 0.002
