"""Every model's ``loss_and_grads`` against finite differences and PyTorch, on every backend.

* Generated models (any input width, hidden width and batch size from 1) and the book's own
  ``linear1`` and ``simple_net`` (hidden 1, 2, 30) on real images, with ``mnist_loss`` and ``bce``;
  generated softmax models (2 to 4 classes, with or without a hidden layer) with ``cross_entropy``.
* Finite differences: :func:`~numpy_mnist.model_check.check_model_gradients` (float64, relative
  error <= 1e-6; full gradient for small parameters, directions plus sampled entries for 784-wide
  ones).  Rows with a ReLU pre-activation within reach of the kink are left out: a difference that
  straddles it measures nothing.  The tie itself is compared with PyTorch (gradient 0).
* PyTorch: :func:`~numpy_mnist.torch_twin.compare_model` at 1e-10 relative plus the rounding
  floor (twice Higham's bound on the sums).  Each property runs once per oracle, so that the
  finite differences still run where PyTorch is not installed.
* Parity: one seed gives the same loss and gradients on every available backend.
"""

from __future__ import annotations

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch_oracles import TINY32, assert_agree, gamma32

from numpy_mnist import torch_twin
from numpy_mnist.backends import available_backends
from numpy_mnist.gradcheck import TORCH_RTOL
from numpy_mnist.model_check import check_model_gradients, kink_margin, loss_magnitude, rows_near_relu_kink
from numpy_mnist.models import MLP, LinearModel, linear1, simple_net
from numpy_mnist.torch_twin import gamma

#: Each gradient property is proven against both oracles, one per parametrization.
ORACLES = pytest.mark.parametrize("oracle", ["finite differences", pytest.param("pytorch", marks=gs.needs_torch)])

F32_RTOL = 1e-4


@st.composite
def linear_model_case(draw, lo=-2.0, hi=2.0):
    n, d = draw(gs.batch_sizes), draw(st.integers(1, 10))
    params = {"weights": draw(gs.arrays((d, 1), lo, hi)), "bias": draw(gs.arrays((1,), lo, hi))}
    return params, draw(gs.arrays((n, d), 0.0, 1.0)), draw(gs.targets((n, 1))), draw(gs.losses)


@st.composite
def mlp_case(draw, lo=-2.0, hi=2.0):
    n, d, hidden = draw(gs.batch_sizes), draw(st.integers(1, 10)), draw(gs.widths)
    params = {"w1": draw(gs.arrays((d, hidden), lo, hi)),
              # biases away from 0, so that a row of zero pixels is not sitting on the kink
              "b1": draw(gs.hnp.arrays(np.float64, (hidden,), elements=gs.away_from_zero(0.05, -lo))),
              "w2": draw(gs.arrays((hidden, 1), lo, hi)), "b2": draw(gs.arrays((1,), lo, hi))}
    return params, draw(gs.arrays((n, d), 0.0, 1.0)), draw(gs.targets((n, 1))), draw(gs.losses)


def away_from_kinks(model, x, y, margin=None):
    """The rows of the batch whose ReLU pre-activations are all farther than ``margin`` from 0."""
    near = rows_near_relu_kink(model, x, kink_margin(x) if margin is None else margin)
    return x[~near], y[~near]


def assert_model_gradients_proven(model, x, y, oracle):
    if oracle == "pytorch":
        _, reports = torch_twin.compare_model(model, x, y, rtol=TORCH_RTOL)
    else:
        _, reports = check_model_gradients(model, x, y)
    assert reports.keys() == model.params.keys()
    for report in reports.values():
        assert report.ok, str(report)


@ORACLES
@gs.with_backend
@given(case=linear_model_case())
def test_linear_model_gradients(backend, oracle, case):
    params, x, y, loss = case
    assert_model_gradients_proven(LinearModel(params, backend, loss), x, y, oracle)


@ORACLES
@gs.with_backend
@given(case=mlp_case())
def test_mlp_gradients(backend, oracle, case):
    params, x, y, loss = case
    model = MLP(params, backend, loss)
    x, y = away_from_kinks(model, x, y)
    assume(len(x) > 0)
    assert_model_gradients_proven(model, x, y, oracle)


@ORACLES
def test_saturated_logit_made_of_large_terms(backend, oracle):
    """Found by hypothesis: z = 4e-6 - 5 * 4 rounds like the sum of terms of size 4, an absolute
    error that a saturated sigma(z) ~ 2e-9 turns into a relative one; the gradient of w1[0, 0]
    (scaled by w2[0] = 1e-6) is a million times smaller than the others.  The finite differences'
    noise floor must count the logits' rounding, not only the loss's (see check_model_gradients)."""
    params = {"w1": np.ones((3, 6)), "b1": np.ones(6), "w2": np.array([[1e-6], *[[-1.0]] * 5]), "b2": np.zeros(1)}
    assert_model_gradients_proven(MLP(params, backend, "mnist_loss"), np.ones((1, 3)), np.zeros((1, 1)), oracle)


@st.composite
def multiclass_case(draw):
    """Softmax models (issue 6): K classes, integer labels, ``cross_entropy``."""
    n, d, k = draw(gs.batch_sizes), draw(st.integers(1, 8)), draw(st.integers(2, 4))
    params = {"weights": draw(gs.arrays((d, k), -2.0, 2.0)), "bias": draw(gs.arrays((k,), -2.0, 2.0))}
    if draw(st.booleans()):  # a hidden layer
        hidden = draw(gs.widths)
        params = {"w1": draw(gs.arrays((d, hidden), -2.0, 2.0)),
                  "b1": draw(gs.hnp.arrays(np.float64, (hidden,), elements=gs.away_from_zero(0.05, 2.0))),
                  "w2": draw(gs.arrays((hidden, k), -2.0, 2.0)), "b2": params["bias"]}
    labels = draw(gs.hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return params, draw(gs.arrays((n, d), 0.0, 1.0)), labels


@ORACLES
@gs.with_backend
@given(case=multiclass_case())
def test_multiclass_model_gradients(backend, oracle, case):
    params, x, labels = case
    model = (MLP if "w1" in params else LinearModel)(params, backend, "cross_entropy")
    x, labels = away_from_kinks(model, x, labels)
    assume(len(x) > 0)
    assert_model_gradients_proven(model, x, labels, oracle)


# -- the book's models on real images ---------------------------------------------------------------

@pytest.fixture(scope="module")
def images():
    """A few hundred real 3s and 7s of the bundled sample, float64."""
    from numpy_mnist.data import load_mnist_sample

    train_x, train_y, _, _ = load_mnist_sample()
    rows = np.random.default_rng(0).choice(len(train_x), 400, replace=False)
    return train_x[rows].astype(np.float64), train_y[rows].astype(np.float64)


BOOK_MODELS = {
    "linear1": lambda seed, backend, loss: linear1(seed=seed, backend=backend, loss=loss),
    "simple_net hidden 1": lambda seed, backend, loss: simple_net(1, seed=seed, backend=backend, loss=loss),
    "simple_net hidden 2": lambda seed, backend, loss: simple_net(2, seed=seed, backend=backend, loss=loss),
    "simple_net hidden 30": lambda seed, backend, loss: simple_net(30, seed=seed, backend=backend, loss=loss),
}


@ORACLES
@pytest.mark.parametrize("make", BOOK_MODELS.values(), ids=BOOK_MODELS.keys())
@settings(gs.with_backend, max_examples=max(2, settings.default.max_examples // 8))  # each ~0.1 s
@given(seed=st.integers(0, 2**32 - 1), start=st.integers(0, 399), n=st.integers(1, 64), loss=gs.losses)
def test_book_models_on_real_images(backend, images, oracle, make, seed, start, n, loss):
    x, y = (a[start:start + n] for a in images)
    model = make(seed, backend, loss)
    x, y = away_from_kinks(model, x, y)
    assume(len(x) > 0)
    assert_model_gradients_proven(model, x, y, oracle)


def test_784_wide_weights_use_directions_and_still_see_each_entry(images):
    model = simple_net(30, seed=1, backend="numpy", dtype="float64")
    x, y = away_from_kinks(model, images[0][:32], images[1][:32])
    _, fd = check_model_gradients(model, x, y)
    assert fd["w1"].method == "directional" and fd["w1"].checked == 32 and fd["w1"].ok
    assert fd["b1"].method == "full" and fd["b1"].checked == 30


# -- ReLU exactly at 0, compared with PyTorch -------------------------------------------------------

@gs.needs_torch
def test_relu_tie_in_simple_net_follows_torch(backend):
    """Row 0 puts two hidden units exactly on the kink (small dyadic numbers: exact in any order).

    PyTorch takes relu'(0) = 0, and so do we; finite differences would give the average of the two
    one-sided slopes, which is why they are not the oracle here.
    """
    x = np.array([[1.0, 2.0], [0.5, -1.0]])
    w1 = np.array([[1.0, -1.0, 1.0], [0.5, 0.25, 1.0]])
    b1 = -(x[0] @ w1) + np.array([0.0, 0.0, 4.0])  # pre-activations of row 0: [0, 0, 4]
    params = {"w1": w1, "b1": b1, "w2": np.array([[1.0], [-2.0], [0.5]]), "b2": np.array([0.25])}
    y = np.array([[1.0], [0.0]])
    for loss in ("mnist_loss", "bce"):
        model = MLP(params, backend, loss)
        assert np.all((x @ w1 + b1)[0, :2] == 0)
        _, grads = model.loss_and_grads(backend.asarray(x), backend.asarray(y))
        _, pt = torch_twin.compare_model(model, x, y, rtol=TORCH_RTOL)
        for report in pt.values():
            assert report.ok, str(report)
        db1 = backend.to_host(grads["b1"])
        assert db1[0] == 0 and db1[1] == 0  # the tie contributes nothing, as in PyTorch
        _, fd = check_model_gradients(model, x, y)
        assert not fd["b1"].ok  # a central difference across the kink sees half a slope


# -- parity across backends -------------------------------------------------------------------------

@gs.needs_torch
@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
@pytest.mark.parametrize("name", ["linear1", "simple_net hidden 30"])
def test_one_seed_gives_the_same_loss_and_gradients_on_every_backend(images, name, loss):
    backends = available_backends("float64")
    assert [b.name for b in backends][:2] == ["numpy", "array_api_strict"]
    x, y = images[0][:64], images[1][:64]
    results = {}
    for backend in backends:
        model = BOOK_MODELS[name](7, backend, loss)
        value, grads = model.loss_and_grads(backend.asarray(x), backend.asarray(y))
        results[backend.name] = value, {k: backend.to_host(g) for k, g in grads.items()}
    reference = BOOK_MODELS[name](7, backends[0], loss)
    _, _, (k, sizes) = torch_twin.loss_and_grads(reference, x, y, magnitudes=True)
    base_value, base_grads = results["numpy"]
    for backend_name, (value, grads) in results.items():
        assert_agree(f"loss on {backend_name}", value, base_value, rtol=1e-12)
        for p, g in grads.items():
            # the same seed gives the same parameters, so only the order of additions may differ
            assert_agree(f"{p} on {backend_name}", g, base_grads[p], 2 * gamma(k) * sizes[p], rtol=1e-12)


# -- float32 against float64 ------------------------------------------------------------------------

@gs.needs_torch
@gs.with_backend
@given(case=st.one_of(linear_model_case(-1.0, 1.0), mlp_case(-1.0, 1.0)))
def test_float32_models_match_float64_on_the_same_inputs(backend32, case):
    """float32 parameters and images give float64's loss and gradients to float32 accuracy.

    With parameters in [-1, 1] and pixels in [0, 1] the logits are sums of at most ~70 in size, so
    their float32 rounding moves each gradient by well under 1e-4 relative; where terms cancel, the
    float32 version of the rounding floor applies.
    """
    params, x, y, loss = case
    params = {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
    x = x.astype(np.float32).astype(np.float64)
    cls = MLP if "w1" in params else LinearModel
    model64, model32 = cls(params, available_backends("float64")[0], loss), cls(params, backend32, loss)
    x, y = away_from_kinks(model64, x, y, margin=1e-4)
    assume(len(x) > 0)
    value32, grads32 = model32.loss_and_grads(backend32.asarray(x), backend32.asarray(y))
    value64, grads64, (k, sizes) = torch_twin.loss_and_grads(model64, x, y, magnitudes=True)
    for name, g in grads32.items():
        assert g.dtype == backend32.dtype
        assert_agree(name, backend32.to_host(g), grads64[name], 2 * gamma32(k) * sizes[name] + TINY32,
                     rtol=F32_RTOL)
    logits = available_backends("float64")[0].to_host(model64.forward(x))
    magnitude = loss_magnitude(loss, logits, y, value64)  # what bce cancels, see loss_magnitude
    assert_agree("loss", value32, value64, 2 * gamma32(k) * magnitude + TINY32, rtol=F32_RTOL)


def test_the_proofs_depend_one_way_model_check_on_torch_twin():
    """model_check uses the twins; the twins know each loss from its own record, not from model_check."""
    import ast
    import inspect

    imported = {node.module if isinstance(node, ast.ImportFrom) else alias.name
                for node in ast.walk(ast.parse(inspect.getsource(torch_twin)))
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert "numpy_mnist.model_check" not in imported and "numpy_mnist" in imported  # from numpy_mnist import losses
