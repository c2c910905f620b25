"""Softmax cross-entropy: the hand-derived gradient against finite differences and PyTorch autograd.

Oracles and tolerances (issue 6), every property on every backend (numpy, array_api_strict, cupy
where a GPU is usable) through the ``backend`` (float64) / ``backend32`` fixtures:

* central finite differences in float64 over every entry of the logits, relative error <= 1e-6,
  with an absolute floor for entries too small to measure relatively: the loss is computed with a
  rounding error of a few ``eps`` of the terms it cancels (``logsumexp(z)`` against ``z_y``, both
  about ``max |z|``), which the central difference divides by ``2h``, so
  ``atol = 4 eps (|f| + max |z| + log K) / h`` (about 1e-8 for logits up to 10);
* PyTorch autograd (``torch.nn.functional.cross_entropy``, float64): loss and gradient agree to
  1e-10 relative, above an absolute floor that is the rounding of a cancellation, the same on
  both sides (each computed its own way):

  - gradient, ``64 eps / N``: the right class's entry ``(p_y - 1) / N`` is formed by subtracting
    1, so when ``p_y`` is close to 1 it carries an error of a few ``eps / N``, however small it is;
  - loss, ``64 eps (1 + max |z|)``: a row costs ``log(sum_k exp(s_k)) - s_y`` with ``s = z - max z``;
    the sum is >= 1, so its ``log`` is exact to a few ``eps`` absolute, not relative, and ``s_y``
    to ``eps max |z|``.  A confident right answer (loss 1e-11, say) is known only to that;
* huge logits (|z| up to 1e3, float32 and float64): no warning (pytest turns warnings into errors),
  no NaN, the exact limits, and still PyTorch's values.

The oracles are the project's own: :func:`numpy_mnist.gradcheck.check_gradient` and the PyTorch
twin (:mod:`numpy_mnist.torch_twin`); the PyTorch tests are skipped where PyTorch is not installed.
"""

from __future__ import annotations

import math

import grad_strategies as gs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch_oracles import assert_agree

from numpy_mnist import torch_twin
from numpy_mnist.errors import InputError
from numpy_mnist.gradcheck import DEFAULT_RTOL, TORCH_RTOL, GradCheckOptions, check_gradient
from numpy_mnist.layers import log_softmax, softmax
from numpy_mnist.losses import (
    binary_cross_entropy,
    get_loss,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)

EPS64 = float(np.finfo(np.float64).eps)
with_backend = gs.with_backend


def floats(lo, hi):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def ce_case(draw, max_abs=10.0, max_rows=8):
    """Logits (N, K), N in 1..max_rows, K in 2..10, entries in [-max_abs, max_abs], and labels (N,)."""
    n, k = draw(st.integers(1, max_rows)), draw(st.integers(2, 10))
    z = draw(hnp.arrays(np.float64, (n, k), elements=floats(-max_abs, max_abs)))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, k - 1)))
    return z, y


def ours(backend, z, y):
    zb, yb = backend.asarray(z), backend.asarray(y)
    loss = float(softmax_cross_entropy(zb, yb))
    grad = backend.to_host(softmax_cross_entropy_backward(zb, yb))
    return loss, grad


def torch_ce(z, y):
    """The PyTorch twin's loss and gradient (float64)."""
    import torch

    labels = torch.as_tensor(y, dtype=torch.int64)
    loss, (grad,) = torch_twin.vjp(lambda a: torch_twin.softmax_cross_entropy(a, labels), [z], np.ones(()))
    return float(loss), grad


# -- the two oracles ---------------------------------------------------------------------------------

@with_backend
@given(case=ce_case())
def test_gradient_matches_finite_differences(backend, case):
    """Every entry of the logits; the differences' noise scale is the terms the loss cancels."""
    z, y = case
    loss, grad = ours(backend, z, y)
    zb, yb = backend.asarray(z), backend.asarray(y)
    report = check_gradient(lambda a: softmax_cross_entropy(a, yb), zb, grad, options=GradCheckOptions(
        scale=abs(loss) + np.abs(z).max() + math.log(z.shape[1]), backend=backend))
    assert report.method == "full" and report.rtol == DEFAULT_RTOL
    assert report.ok, str(report)


@gs.needs_torch
@with_backend
@given(case=ce_case(max_abs=50.0))
def test_loss_and_gradient_match_pytorch(backend, case):
    z, y = case
    loss, grad = ours(backend, z, y)
    t_loss, t_grad = torch_ce(z, y)
    assert_agree("loss vs torch", loss, t_loss, rtol=TORCH_RTOL, floor=64 * EPS64 * (1 + np.abs(z).max()))
    assert_agree("d loss / d logits vs torch", grad, t_grad, rtol=TORCH_RTOL, floor=64 * EPS64 / z.shape[0])


@with_backend
@given(case=ce_case())
def test_gradient_rows_sum_to_zero_and_push_the_right_class_up(backend, case):
    z, y = case
    _, grad = ours(backend, z, y)
    n = z.shape[0]
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=8 * EPS64 / n)
    assert np.all(grad[np.arange(n), y] <= 0)
    others = np.ones_like(grad, dtype=bool)
    others[np.arange(n), y] = False
    assert np.all(grad[others] >= 0)


@with_backend
@given(a=floats(-30, 30), b=floats(-30, 30), label=st.integers(0, 1))
def test_two_classes_is_binary_cross_entropy_on_the_difference(backend, a, b, label):
    """softmax([a, b])_1 = sigmoid(b - a): two-class cross-entropy is bce on the logit b - a."""
    ce = float(softmax_cross_entropy(backend.asarray([[a, b]]), backend.asarray(np.array([label]))))
    bce = float(binary_cross_entropy(backend.asarray([[b - a]]), backend.asarray([[float(label)]])))
    assert ce == pytest.approx(bce, rel=1e-12, abs=1e-14)


# -- stability ---------------------------------------------------------------------------------------

@gs.needs_torch
def test_huge_logits_float64(backend):
    check_huge_logits(backend, rtol=TORCH_RTOL)


@gs.needs_torch
def test_huge_logits_float32(backend32):
    # z - max(z) rounds to half an ulp of 1e3 in float32 (3e-5), which exp turns into a relative
    # error of 3e-5 of each probability: float32 agrees with float64 to about 2e3 * eps32.
    check_huge_logits(backend32, rtol=2e3 * float(np.finfo(np.float32).eps))


def check_huge_logits(backend, rtol):
    """|z| up to 1e3: no warning (they are errors here), no NaN, the exact limits, PyTorch's values."""
    rng = np.random.default_rng(6)
    z = rng.uniform(-1e3, 1e3, (64, 10))
    z[0] = [1e3, -1e3, 0, 0, 0, 0, 0, 0, 0, -1e3]  # the right class far ahead
    z[1] = [-1e3, 1e3, 0, 0, 0, 0, 0, 0, 0, 0]     # the right class far behind
    z = z.astype(backend.dtype_name).astype(np.float64)  # the values the backend really holds
    y = rng.integers(0, 10, 64)
    y[:2] = 0
    loss, grad = ours(backend, z, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    t_loss, t_grad = torch_ce(z, y)
    eps = float(np.finfo(backend.dtype_name).eps)
    assert_agree("loss vs torch", loss, t_loss, rtol=rtol, floor=0)
    assert_agree("grad vs torch", grad, t_grad, rtol=rtol, floor=64 * eps / len(z))
    single, single_grad = ours(backend, z[:2], y[:2])
    assert single == pytest.approx(1000.0)  # row 0 costs 0, row 1 costs 2000
    np.testing.assert_array_equal(single_grad[0], 0)
    np.testing.assert_allclose(single_grad[1, :2], [-0.5, 0.5])


def test_softmax_and_log_softmax_are_stable(backend):
    z = backend.asarray(np.array([[1e3, 0.0, -1e3], [-1e3, -1e3, -1e3], [0.0, 0.0, 0.0]]))
    p, log_p = backend.to_host(softmax(z)), backend.to_host(log_softmax(z))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-15)
    np.testing.assert_array_equal(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-15)
    np.testing.assert_array_equal(log_p[0], [0, -1e3, -2e3])
    np.testing.assert_allclose(log_p[2], -math.log(3), rtol=1e-15)


def test_batch_of_one(backend):
    z = np.array([[0.5, -1.0, 2.0]])
    loss, grad = ours(backend, z, np.array([2]))
    expected = math.log(sum(math.exp(v) for v in z[0])) - 2.0
    assert loss == pytest.approx(expected, rel=1e-15)
    p = np.exp(z[0]) / np.exp(z[0]).sum()
    np.testing.assert_allclose(grad[0], p - [0, 0, 1], rtol=1e-14)


def test_uniform_logits_cost_log_k(backend):
    for k in range(2, 11):
        loss, _ = ours(backend, np.zeros((3, k)), np.array([0, k - 1, k // 2]))
        assert loss == pytest.approx(math.log(k), rel=1e-15)


def test_a_label_outside_the_classes_gives_nan_not_a_silent_zero(backend):
    z = backend.asarray(np.zeros((2, 3)))
    assert math.isnan(float(softmax_cross_entropy(z, backend.asarray(np.array([0, 3])))))
    assert math.isnan(float(softmax_cross_entropy(z, backend.asarray(np.array([-1, 0])))))


def test_labels_of_any_integer_dtype(backend):
    z = np.random.default_rng(0).normal(size=(4, 10))
    y = np.array([0, 9, 3, 3])
    reference = ours(backend, z, y)[0]
    for dtype in ("uint8", "int16", "int32"):
        yb = backend.asarray(y.astype(dtype))
        assert float(softmax_cross_entropy(backend.asarray(z), yb)) == reference


# -- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [softmax_cross_entropy, softmax_cross_entropy_backward])
@pytest.mark.parametrize("logits_shape, labels, words", [
    ((4, 10), np.zeros((4, 1), dtype=np.int64), "labels must have shape (N,) = (4,)"),
    ((4, 10), np.zeros((4, 1), dtype=np.int64), "y[:, 0]"),
    ((4, 10), np.zeros(5, dtype=np.int64), "got shape (5,)"),
    ((4, 10), np.zeros(4, dtype=np.float64), "labels must be integer class indices in [0, 10), got dtype"),
    ((4, 10), np.zeros(4, dtype=bool), "labels must be integer class indices"),
    ((10,), np.zeros(10, dtype=np.int64), "logits of shape (N, K)"),
    ((2, 3, 4), np.zeros(2, dtype=np.int64), "got shape (2, 3, 4)"),
    ((4, 1), np.zeros(4, dtype=np.int64), "K >= 2 classes, got shape (4, 1); for one logit per image use bce"),
])
def test_bad_shapes_and_dtypes_are_refused_clearly(backend, fn, logits_shape, labels, words):
    with pytest.raises(InputError) as info:
        fn(backend.asarray(np.zeros(logits_shape)), backend.asarray(labels))
    assert words in str(info.value)


def test_registered_as_cross_entropy():
    loss = get_loss("cross_entropy")
    assert loss.name == "cross_entropy" and loss.multiclass
    assert not get_loss("mnist_loss").multiclass and not get_loss("bce").multiclass
    assert "derivation" in softmax_cross_entropy_backward.__doc__.lower()
