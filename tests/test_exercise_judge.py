"""The checker's verdict on one answer, without the sandbox: its one tolerance, and each hint against its cause.

* The tolerance: an answer off by half of it passes and one off by twice fails, against the reference,
  finite differences and PyTorch alike, at moderate and at large |z| (where the right slope is tiny);
  so a tolerance made looser (or tighter) by a factor of 10 fails here.
* The hints: each sentence comes from the wrong answer that causes it, computed here independently
  of the checker's own list of slips.
"""

from __future__ import annotations

import numpy as np
import pytest

from numpy_mnist import layers
from numpy_mnist.exercise.checker import RTOL, TOLERANCE, Example, Failure, comparisons, judge
from numpy_mnist.exercise.functions import get_exercise
from numpy_mnist.gradcheck import TOLERANCE as GRADCHECK_TOLERANCE

DOUT = np.array([[0.7, -1.3], [2.1, 0.4], [-0.9, 1.6]])
X = np.array([[0.5, -1.2], [2.0, 0.3], [-0.7, 1.1]])
X_RELU = np.array([[0.5, 1.2], [-2.0, 0.3], [-0.7, -1.1]])  # its signs are not dout's
Z = np.array([[0.5], [-1.2], [2.0]])
T = np.array([[1.0], [0.0], [1.0]])
SOFT_Z = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3], [1.5, -0.5, 0.0]])
LABELS = np.array([2, 0, 1])
W = np.array([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]])
LIN_X = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25], [0.3, -0.2, 1.5]])
W_SQUARE = np.array([[0.1, 0.2, -0.3], [0.3, -0.4, 0.2], [0.5, 0.6, 0.7]])
DOUT3 = np.array([[1.0, -2.0, 0.5], [0.5, 0.25, -1.0], [-0.3, 0.8, 1.2]])

RNG = np.random.default_rng(0)
#: A 5 x 7 image of 3 channels, 2 filters of 3 x 3, stride 2, padding 1 (a 3 x 4 output).
CONV = Example((RNG.normal(size=(2, 2, 3, 4)), RNG.normal(size=(2, 3, 5, 7)), RNG.normal(size=(2, 3, 3, 3))),
               {"stride": 2, "padding": 1})
BN_X, BN_GAMMA, BN_DOUT = RNG.normal(size=(3, 2, 2, 3)), np.array([0.7, -1.3]), RNG.normal(size=(3, 2, 2, 3))
#: Distinct values: no window has a tie, so finite differences see the max-pool's slope.
POOL = Example((RNG.normal(size=(2, 2, 3, 4)), RNG.permutation(2 * 2 * 5 * 7).reshape(2, 2, 5, 7) / 10.0))
#: Values from {0, 1, 2}: most windows hold tied maxima.
POOL_TIES = Example((RNG.normal(size=(2, 2, 3, 4)), RNG.integers(0, 3, size=(2, 2, 5, 7)).astype(float)))

MODERATE = {
    "sigmoid_backward": Example((DOUT, X)),
    "mnist_loss_backward": Example((Z, T)),
    "linear_backward": Example((DOUT, LIN_X, W)),
    "relu_backward": Example((DOUT, X_RELU)),
    "binary_cross_entropy_backward": Example((Z, T)),
    "softmax_cross_entropy_backward": Example((SOFT_Z, LABELS)),
    "conv2d_backward": CONV,
    "batch_norm_backward": Example((BN_DOUT, BN_X, BN_GAMMA)),
    "max_pool2d_backward": POOL,
}
#: Where the right slope is tiny (sigmoid'(40) = 4e-18) or the naive exp overflows.
LARGE = {
    "sigmoid_backward": Example((np.array([[1.0, -2.0]]), np.array([[40.0, -300.0]]))),
    "mnist_loss_backward": Example((np.array([[40.0], [-300.0]]), np.array([[1.0], [0.0]]))),
    "relu_backward": Example((np.array([[1.0, -2.0]]), np.array([[40.0, -300.0]]))),
    "binary_cross_entropy_backward": Example((np.array([[40.0], [-300.0]]), np.array([[0.0], [1.0]]))),
    "softmax_cross_entropy_backward": Example((np.array([[40.0, -300.0, 0.0]]), np.array([1]))),
}
CASES = [(name, "moderate", ex) for name, ex in MODERATE.items()] + [(name, "large", ex) for name, ex in LARGE.items()]


def right(name: str, example: Example):
    return get_exercise(name).reference(*example.args, **example.kwargs)


def scaled(value, factor: float):
    """Every entry ``factor`` tolerances off, relative."""
    if isinstance(value, tuple):
        return tuple(None if v is None else v * (1 + factor * RTOL) for v in value)
    return value * (1 + factor * RTOL)


def failure(name: str, example: Example, value) -> Failure:
    with pytest.raises(Failure) as caught:
        judge(name, example, value)
    return caught.value


def sentences(name: str, example: Example, value) -> list[str]:
    return [sentence for _, sentence in failure(name, example, value).hints]


def test_the_checker_uses_gradchecks_one_tolerance():
    assert TOLERANCE is GRADCHECK_TOLERANCE and RTOL == TOLERANCE.rtol == 1e-6


@pytest.mark.parametrize("name, where, example", CASES, ids=[f"{n}-{w}" for n, w, _ in CASES])
def test_half_the_tolerance_passes_and_twice_fails(name, where, example):
    worst, _ = judge(name, example, scaled(right(name, example), 0.5))
    assert 0.4 * RTOL < worst <= 0.5 * RTOL
    off = failure(name, example, scaled(right(name, example), 2.0))
    assert off.what == "values" and "relative at entry" in off.problem and off.errors[0] > RTOL


@pytest.mark.parametrize("name, where, example", CASES, ids=[f"{n}-{w}" for n, w, _ in CASES])
def test_every_comparison_applies_the_same_tolerance(name, where, example):
    """Against the reference, PyTorch and (where a difference resolves the slope) finite differences."""
    pytest.importorskip("torch")
    value = right(name, example)
    as_tuple = value if isinstance(value, tuple) else (value,)
    methods = {"reference", "pytorch"} | ({"full"} if where == "moderate" else set())
    for factor, ok in ((0.5, True), (2.0, False)):
        reports = list(comparisons(name, example, scaled(as_tuple, factor), use_torch=True))
        for method in methods:
            mine = [r for r in reports if r.method == method]
            assert mine and all(r.rtol == RTOL for r in mine)
            assert all(r.ok for r in mine) if ok else not all(r.ok for r in mine), (method, factor)


# -- each hint against its cause ----------------------------------------------------------------------

def sig(x):
    return 1 / (1 + np.exp(-x))


def slope(x):
    return np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))) ** 2


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ONEHOT = (LABELS[:, None] == np.arange(3)).astype(float)
RIGHT_LIN = layers.linear_backward(DOUT, LIN_X, W)
RIGHT_CONV = layers.conv2d_backward(*CONV.args, **CONV.kwargs)


def conv_dx(kernel):
    """dx of the convolution written by its index formula, with any kernel."""
    dout, s, p = CONV.args[0], 2, 1
    dx_pad = np.zeros((2, 3, 7, 9))
    for a in range(3):
        for b in range(3):
            dx_pad[:, :, a:a + 2 * s + 1:s, b:b + 3 * s + 1:s] += np.einsum("nfij,fc->ncij", dout, kernel[:, :, a, b])
    return dx_pad[:, :, p:-p, p:-p]


def batch_norm_dx(mean_term: bool, variance_term: bool):
    """Batch norm's dx = gamma / (M sigma) (M dout - sum dout - xhat sum(dout xhat)), either sum left out."""
    axes, m = (0, 2, 3), 3 * 2 * 3
    sigma = np.sqrt(BN_X.var(axis=axes, keepdims=True) + 1e-5)
    xhat = (BN_X - BN_X.mean(axis=axes, keepdims=True)) / sigma
    inner = m * BN_DOUT - mean_term * BN_DOUT.sum(axis=axes, keepdims=True)
    inner = inner - variance_term * xhat * (BN_DOUT * xhat).sum(axis=axes, keepdims=True)
    return BN_GAMMA[None, :, None, None] / (m * sigma) * inner, *layers.batch_norm_backward(BN_DOUT, BN_X, BN_GAMMA)[1:]


def pool_to_every_tie():
    """Each window's dout added to every entry equal to the window's maximum (3 x 3 windows, stride 2, padding 1)."""
    dout, x = POOL_TIES.args
    x_pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    dx_pad = np.zeros_like(x_pad)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x_pad[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            top = window.max(axis=(2, 3), keepdims=True)
            dx_pad[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += (window == top) * dout[:, :, i:i + 1, j:j + 1]
    return dx_pad[:, :, 1:-1, 1:-1]

SLIPS = [
    ("sigmoid_backward", MODERATE["sigmoid_backward"], DOUT, "σ′ is missing: you passed dout through unchanged"),
    ("sigmoid_backward", MODERATE["sigmoid_backward"], DOUT * sig(X), "it needs σ′(x), its slope"),
    ("sigmoid_backward", MODERATE["sigmoid_backward"], slope(X), "dout is missing: multiply the slope"),
    ("mnist_loss_backward", MODERATE["mnist_loss_backward"], (1 - 2 * T) / 3,
     "σ′ is missing: each entry of the mean moves with the sigmoid's slope"),
    ("mnist_loss_backward", MODERATE["mnist_loss_backward"], (1 - 2 * T) * sig(Z) / 3,
     "you used σ(z), the sigmoid's value, where its slope σ′(z) belongs"),
    ("mnist_loss_backward", MODERATE["mnist_loss_backward"], (sig(Z) - T) / 3,
     "that is binary cross-entropy's gradient"),
    ("linear_backward", Example((DOUT3, LIN_X, W_SQUARE)),
     (DOUT3 @ W_SQUARE, LIN_X.T @ DOUT3, DOUT3.sum(axis=0)), "dx used w where its transpose belongs"),
    ("relu_backward", MODERATE["relu_backward"], np.where(X_RELU > 0, 0.0, DOUT), "the ReLU mask is inverted"),
    ("relu_backward", MODERATE["relu_backward"], np.where(DOUT > 0, DOUT, 0.0), "you masked by the sign of dout"),
    ("relu_backward", MODERATE["relu_backward"], (X_RELU > 0) * 1.0, "dout is missing: the mask must multiply"),
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], (1 - 2 * T) * slope(Z) / 3,
     "that is mnist_loss's gradient, not binary cross-entropy's"),
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], (sig(Z) - T) * slope(Z) / 3,
     "an extra σ′ factor"),
    ("softmax_cross_entropy_backward", MODERATE["softmax_cross_entropy_backward"], softmax(SOFT_Z) / 3,
     "the one-hot subtraction is missing"),
    ("softmax_cross_entropy_backward", MODERATE["softmax_cross_entropy_backward"], -ONEHOT / 3,
     "the softmax part is missing"),
    # a constant factor: its sign, the mean's 1/N (a loss) against a layer's sums (N = 3)
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], -(sig(Z) - T) / 3,
     "your dlogits is exactly the negative of the right one: a sign is flipped"),
    ("mnist_loss_backward", MODERATE["mnist_loss_backward"], (1 - 2 * T) * slope(Z),
     "off by exactly 1/N (N = 3): the mean's 1/N is missing"),
    ("linear_backward", MODERATE["linear_backward"], (*RIGHT_LIN[:2], 3 * RIGHT_LIN[2]),
     "your db is exactly N times too large (N = 3)"),
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], (sig(Z) - T) / 9,
     "exactly N times too small (N = 3): divided by N once too often"),
    ("linear_backward", MODERATE["linear_backward"], (RIGHT_LIN[0], RIGHT_LIN[1] / 3, RIGHT_LIN[2]),
     "exactly N times too small (N = 3): a layer's gradients are sums over the batch, not means"),
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], -(sig(Z) - T),
     "exactly -N times the right one (N = 3): a sign is flipped and the mean's 1/N is missing"),
    ("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], -(sig(Z) - T) / 9,
     "exactly -1/N times the right one (N = 3): a sign is flipped and divided by N once too often"),
    ("relu_backward", MODERATE["relu_backward"], 2 * np.where(X_RELU > 0, DOUT, 0.0), "your dx is exactly twice"),
    ("relu_backward", MODERATE["relu_backward"], 0.5 * np.where(X_RELU > 0, DOUT, 0.0), "your dx is exactly half"),
    ("relu_backward", MODERATE["relu_backward"], 3.7 * np.where(X_RELU > 0, DOUT, 0.0),
     "your dx is a constant 3.7 times the right one"),
    ("linear_backward", Example((DOUT3, LIN_X, W_SQUARE)),
     (DOUT3 @ W_SQUARE.T, (LIN_X.T @ DOUT3).T, DOUT3.sum(axis=0)),
     "your dw is exactly the transpose of the right one"),
    # the ResNet's layers: a kernel flipped or transposed, a sum of batch norm left out, ties sent every gradient
    ("conv2d_backward", CONV, (conv_dx(CONV.args[2][:, :, ::-1, ::-1]), RIGHT_CONV[1]),
     "dx used the kernel flipped (rotated by 180°)"),
    ("conv2d_backward", CONV, (conv_dx(CONV.args[2].transpose(0, 1, 3, 2)), RIGHT_CONV[1]),
     "dx used the kernel transposed (its rows and columns swapped)"),
    ("conv2d_backward", CONV, (RIGHT_CONV[0], RIGHT_CONV[1][:, :, ::-1, ::-1]),
     "your dw is the right one flipped (rotated by 180°)"),
    ("conv2d_backward", CONV, (RIGHT_CONV[0], RIGHT_CONV[1].transpose(0, 1, 3, 2)),
     "your dw is the right one transposed (its rows and columns swapped)"),
    ("batch_norm_backward", MODERATE["batch_norm_backward"], batch_norm_dx(False, True),
     "the mean's term is missing: every x_j moves the channel's mean"),
    ("batch_norm_backward", MODERATE["batch_norm_backward"], batch_norm_dx(True, False),
     "the variance's term is missing: every x_j moves the channel's variance"),
    ("batch_norm_backward", MODERATE["batch_norm_backward"], batch_norm_dx(False, False),
     "both sums are missing"),
    ("max_pool2d_backward", POOL_TIES, pool_to_every_tie(), "you sent a window's gradient to every entry equal to its "
                                                            "maximum"),
    # precision: right for moderate z, its digits lost where sigmoid(z) rounds to 1
    ("sigmoid_backward", Example((np.array([[1.0, 0.5]]), np.array([[0.3, 40.0]]))),
     np.array([[1.0, 0.5]]) * sig(np.array([[0.3, 40.0]])) * (1 - sig(np.array([[0.3, 40.0]]))),
     "right for moderate inputs, but it loses its digits at large |z| (at z = 40"),
]


@pytest.mark.parametrize("name, example, value, sentence", SLIPS, ids=[s[3][:40] for s in SLIPS])
def test_each_value_hint_comes_from_its_cause(name, example, value, sentence):
    found = sentences(name, example, value)
    assert any(sentence in s for s in found), found


@pytest.mark.parametrize("name, example, value, sentence", SLIPS, ids=[s[3][:40] for s in SLIPS])
def test_each_slip_sentence_names_only_its_own_cause(name, example, value, sentence):
    """No other slip's sentence fits the wrong answer: each sentence is told apart from its neighbours'."""
    own = [s for s in sentences(name, example, value) if any(s.startswith(t[3]) for t in SLIPS if t[0] == name)]
    assert all(sentence in s for s in own), own


def test_the_max_pool_checks_see_ties_and_the_reference_passes_them():
    """The tie example has tied maxima, and the right answer passes there (finite differences stand aside)."""
    dout, x = POOL_TIES.args
    assert len(np.unique(x)) < x.size
    judge("max_pool2d_backward", POOL_TIES, right("max_pool2d_backward", POOL_TIES))
    assert not np.allclose(pool_to_every_tie(), right("max_pool2d_backward", POOL_TIES))


def test_the_mean_and_the_layer_get_their_own_one_over_n_sentence():
    """The gradient of a mean divided by N twice, and a layer's summed gradient divided by N, are told apart."""
    bce = sentences("binary_cross_entropy_backward", MODERATE["binary_cross_entropy_backward"], (sig(Z) - T) / 9)
    layer = sentences("linear_backward", MODERATE["linear_backward"], (RIGHT_LIN[0], RIGHT_LIN[1] / 3, RIGHT_LIN[2]))
    assert bce == ["exactly N times too small (N = 3): divided by N once too often"]
    assert layer == ["exactly N times too small (N = 3): a layer's gradients are sums over the batch, not means"]
    missing = sentences("mnist_loss_backward", MODERATE["mnist_loss_backward"], (1 - 2 * T) * slope(Z))
    too_large = sentences("linear_backward", MODERATE["linear_backward"], (*RIGHT_LIN[:2], 3 * RIGHT_LIN[2]))
    assert missing == ["off by exactly 1/N (N = 3): the mean's 1/N is missing"]
    assert too_large == ["your db is exactly N times too large (N = 3)"]


SHAPES = [
    ("linear_backward", MODERATE["linear_backward"], (RIGHT_LIN[0], RIGHT_LIN[1].T, RIGHT_LIN[2]),
     "your dw is (2, 3); it must be (3, 2), like w: yours is exactly its transpose"),
    ("linear_backward", MODERATE["linear_backward"], (RIGHT_LIN[0], np.ones((2, 3)), RIGHT_LIN[2]),
     "your dw is (2, 3); it must be (3, 2), like w: the transposed shape"),
    ("linear_backward", MODERATE["linear_backward"], (RIGHT_LIN[0], RIGHT_LIN[1], DOUT),
     "your db is (3, 2); it must be (2,), like b: one entry per output, so sum over the batch axis"),
    ("mnist_loss_backward", MODERATE["mnist_loss_backward"], layers.sigmoid(Z)[:, 0],
     "your dlogits is (3,); it must be (3, 1), like logits: keep the column axis"),
    ("sigmoid_backward", MODERATE["sigmoid_backward"], DOUT[:1], "your dx is (1, 2); it must be (3, 2), like x"),
    ("linear_backward", Example((DOUT, LIN_X, W), {"need_dx": False}), RIGHT_LIN,
     "with need_dx=False return None for dx: nothing upstream needs it"),
    ("linear_backward", MODERATE["linear_backward"], (None, *RIGHT_LIN[1:]),
     "dx must be an array of shape (3, 3), like x"),
    ("sigmoid_backward", Example((np.ones((1, 2)), np.array([[750.0, 1.0]]))), np.array([[np.nan, 0.2]]),
     "exp overflows past 709 (here |z| = 750): write the sigmoid and its slope with exp(-|z|)"),
    ("softmax_cross_entropy_backward", Example((np.array([[800.0, 0.0]]), np.array([0]))), np.array([[np.nan, 0.0]]),
     "exp overflows past 709 (here |z| = 800): softmax does not change when the same number is taken"),
]


@pytest.mark.parametrize("name, example, value, sentence", SHAPES, ids=[s[3][:40] for s in SHAPES])
def test_each_shape_and_type_hint_comes_from_its_cause(name, example, value, sentence):
    found = sentences(name, example, value)
    assert len(found) == 1 and found[0].startswith(sentence), found
