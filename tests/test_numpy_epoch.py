"""The NumPy epoch (the CPU fast path) is bitwise the reference, and ``make_learner`` chooses it alone.

The reference is :func:`numpy_mnist.learner.train_epoch` through ``model.loss_and_grads`` and
``SGD``.  :class:`~numpy_mnist.numpy_epoch.NumpyEpoch` must give every bit of the parameters and of
the epoch's loss unchanged, in float32 and float64, for both book models and both one-logit losses,
in order and shuffled, over awkward logits, exact ReLU ties, and a diverging run.  The reference on
NumPy is in turn bitwise the same code on array_api_strict.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backends import get_backend
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.errors import DivergenceError, InputError
from numpy_mnist.fused import make_learner
from numpy_mnist.learner import Learner, train_epoch
from numpy_mnist.losses import LOSSES, Loss
from numpy_mnist.models import MLP, LinearModel, linear1, linear10, simple_net
from numpy_mnist.numpy_epoch import NumpyEpoch, NumpyEpochLearner, why_not_numpy_epoch
from numpy_mnist.optim import SGD

DTYPES = ["float32", "float64"]


def bits(a) -> bytes:
    a = np.asarray(a)
    return a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()


def same_params(a, b) -> bool:
    return a.keys() == b.keys() and all(bits(a[k]) == bits(b[k]) for k in a)


def twins(make, backend, x, y, batch_size, *, shuffle=False, lr=0.1):
    """Two identical ``(model, loader, opt)`` sharing no array: one for the reference, one for the fast path."""
    out = []
    for _ in range(2):
        model = make(backend)
        model.params.update({k: backend.xp.asarray(v, copy=True) for k, v in model.params.items()})
        out.append((model, DataLoader(x, y, batch_size, shuffle=shuffle, seed=3, backend=backend),
                    SGD(model.params, lr)))
    return out


MODELS = {
    "linear1": lambda loss: (lambda b: linear1(seed=3, backend=b, loss=loss)),
    "simple_net": lambda loss: (lambda b: simple_net(hidden=12, seed=3, backend=b, loss=loss)),
}


@pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
def test_epochs_are_bitwise_the_reference(kind, loss, dtype, shuffle):
    backend = get_backend("numpy", dtype)
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(300, 784)).astype(np.float32) / np.float32(255)  # batches 128, 128, 44
    y = (rng.random((300, 1)) < 0.5).astype(np.float32)
    (ref, ref_dl, ref_opt), (fast, fast_dl, fast_opt) = twins(MODELS[kind](loss), backend, x, y, 128,
                                                              shuffle=shuffle, lr=1.0 if kind == "linear1" else 0.1)
    path = NumpyEpoch(fast, fast_dl, fast_opt)
    for epoch in range(1, 4):
        expected = train_epoch(ref, ref_dl, ref_opt, epoch=epoch)
        assert path.train_epoch(epoch) == expected, f"epoch {epoch}"
        assert same_params(fast.params, ref.params), f"epoch {epoch}"


awkward = st.floats(-1e4, 1e4, allow_nan=False, width=32) | st.sampled_from(
    [0.0, -0.0, 16.6, -16.6, 88.7, -88.7, 103.0, -103.0, 700.0, -745.0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
@given(data=st.data())
def test_one_step_over_awkward_logits_is_bitwise_the_reference(dtype, loss, data):
    """Logits out to saturation, signed zeros, exact ties: one batch, one step, every bit."""
    backend = get_backend("numpy", dtype)
    n = data.draw(st.integers(1, 16))
    z = data.draw(hnp.arrays(np.float64, (n,), elements=awkward))
    t = data.draw(hnp.arrays(np.float64, (n, 1), elements=st.sampled_from([0.0, 1.0])))
    # one pixel at 1 per row and the weight of pixel i at z_i: the logits are exactly z
    x = np.zeros((n, 784))
    x[np.arange(n), np.arange(n)] = 1.0
    weights = np.zeros((784, 1))
    weights[:n, 0] = z
    (ref, ref_dl, ref_opt), (fast, fast_dl, fast_opt) = twins(
        lambda b: LinearModel({"weights": weights, "bias": np.zeros(1)}, b, loss), backend, x, t, 16)
    with np.errstate(over="ignore"):
        expected = train_epoch(ref, ref_dl, ref_opt)
        assert NumpyEpoch(fast, fast_dl, fast_opt).train_epoch() == expected
    assert same_params(fast.params, ref.params)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_ties_are_bitwise_the_reference(dtype):
    """Hidden pre-activations exactly 0 (small dyadic numbers, exact in any order): no gradient
    passes there, in the fast path as in the reference."""
    backend = get_backend("numpy", dtype)
    x = np.zeros((4, 784))
    x[:, :2] = [[1.0, 2.0], [0.5, -1.0], [1.0, 2.0], [0.25, 0.5]]
    w1 = np.zeros((784, 3))
    w1[:2] = [[1.0, -1.0, 1.0], [0.5, 0.25, 1.0]]
    b1 = -(x[0] @ w1) + np.array([0.0, 0.0, 4.0])  # rows 0 and 2: pre-activations [0, 0, 4]
    params = {"w1": w1, "b1": b1, "w2": np.array([[1.0], [-2.0], [0.5]]), "b2": np.array([0.25])}
    assert np.sum((x @ w1 + b1) == 0) >= 4
    y = np.array([[1.0], [0.0], [0.0], [1.0]])
    (ref, ref_dl, ref_opt), (fast, fast_dl, fast_opt) = twins(lambda b: MLP(params, b, "mnist_loss"), backend,
                                                              x, y, 4)
    expected = train_epoch(ref, ref_dl, ref_opt)
    assert NumpyEpoch(fast, fast_dl, fast_opt).train_epoch() == expected
    assert same_params(fast.params, ref.params)


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample()


def loaders(sample, backend, rows=1000):
    train_x, train_y, valid_x, valid_y = sample
    return (DataLoader(train_x[:rows], train_y[:rows], 256, backend=backend),
            DataLoader(valid_x[:rows], valid_y[:rows], 256, backend=backend))


def test_the_learner_is_the_reference_learner_bitwise(sample):
    backend = get_backend("numpy", "float32")
    histories, params = [], []
    for reference in (True, False):
        model = simple_net(seed=1, backend=backend)
        learner = make_learner(model, *loaders(sample, backend), lr=0.1, reference=reference)
        assert isinstance(learner, NumpyEpochLearner) != reference
        histories.append([(r.train_loss, r.valid_loss, r.accuracy) for r in learner.fit(2)])
        params.append(model.params)
    assert histories[0] == histories[1]
    assert same_params(*params)


def test_divergence_stops_at_the_same_batch_and_keeps_the_last_good_epoch(sample):
    backend = get_backend("numpy", "float64")
    errors, params = [], []
    for reference in (True, False):
        model = linear1(seed=0, backend=backend, loss="bce")
        learner = make_learner(model, *loaders(sample, backend), lr=1e308, reference=reference)
        with pytest.raises(DivergenceError) as info, np.errstate(all="ignore"):
            learner.fit(3)
        errors.append(str(info.value))
        params.append(model.params)  # put back to the end of the last finished epoch
    assert errors[0] == errors[1] and "batch" in errors[0]
    assert same_params(*params)


def test_make_learner_chooses_in_one_place(sample):
    numpy32 = get_backend("numpy", "float32")
    strict = get_backend("array_api_strict", "float32")
    dls = loaders(sample, numpy32, rows=300)
    assert type(make_learner(linear1(backend=numpy32), *dls, lr=1.0)) is NumpyEpochLearner
    assert type(make_learner(simple_net(backend=numpy32, loss="bce"), *dls, lr=0.1)) is NumpyEpochLearner
    assert type(make_learner(linear1(backend=numpy32), *dls, lr=1.0, reference=True)) is Learner
    assert type(make_learner(linear1(backend=numpy32), *dls, lr=1.0, fused=False)) is NumpyEpochLearner
    assert type(make_learner(linear1(backend=strict), *loaders(sample, strict, rows=300), lr=1.0)) is Learner
    with pytest.raises(InputError, match="--fused and --reference contradict"):
        make_learner(linear1(backend=numpy32), *dls, lr=1.0, fused=True, reference=True)


def test_why_not_names_what_the_fast_path_does_not_cover():
    numpy32 = get_backend("numpy", "float32")
    custom = Loss("mnist_loss", lambda z, t: z.mean(), LOSSES["mnist_loss"].backward)
    assert why_not_numpy_epoch(linear1(backend=numpy32)) is None
    assert "numpy backend" in why_not_numpy_epoch(linear1(backend="array_api_strict"))
    assert "one-output" in why_not_numpy_epoch(linear10(backend=numpy32))
    assert "gradients of mnist_loss and bce" in why_not_numpy_epoch(linear1(backend=numpy32, loss=custom))

    class Momentum(SGD):
        pass

    model = linear1(backend=numpy32)
    assert "plain SGD" in why_not_numpy_epoch(model, Momentum(model.params, 0.1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_reference_on_numpy_is_bitwise_the_reference_on_array_api_strict(dtype):
    """The same epochs through the Array-API functions on NumPy and on array_api_strict."""
    rng = np.random.default_rng(9)
    x = rng.random((333, 784), dtype=np.float32)
    y = (rng.random((333, 1)) < 0.5).astype(np.float32)
    results = []
    for backend in (get_backend("numpy", dtype), get_backend("array_api_strict", dtype)):
        model = simple_net(hidden=10, seed=4, backend=backend)
        loader, opt = DataLoader(x, y, 64, backend=backend), SGD(model.params, 0.1)
        losses = [train_epoch(model, loader, opt) for _ in range(2)]
        results.append((losses, {k: backend.to_host(v) for k, v in model.params.items()}))
    (l1, p1), (l2, p2) = results
    assert l1 == l2
    assert same_params(p1, p2)


def test_the_reference_switch_on_the_command_line(tmp_path, capsys):
    """``numpy-mnist train --reference`` names the path it trains through, and both paths write the
    same history; ``--reference --fused`` is one clear line, exit 2."""
    import json

    from numpy_mnist.cli import main

    common = ["train", "--model", "simple_net", "--epochs", "2", "--train-rows", "600", "--valid-rows", "300",
              "--backend", "numpy", "--no-plot"]
    histories = []
    for flags, path in (([], "NumPy epoch fast path"), (["--reference"], "reference array path")):
        out = tmp_path / path.replace(" ", "_")
        assert main(common + flags + ["--out", str(out)]) == 0
        assert path in capsys.readouterr().out
        records = json.loads((out / "history.json").read_text())["epochs"]
        histories.append([(r["train_loss"], r["valid_loss"], r["accuracy"]) for r in records])
    assert histories[0] == histories[1] and len(histories[0]) == 2
    assert main(common + ["--reference", "--fused", "--out", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--fused and --reference contradict" in err
