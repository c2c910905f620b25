"""Hypothesis strategies shared by the gradient tests: shapes, values, targets, settings.

And :data:`needs_torch`, the mark of a test whose oracle is PyTorch (:mod:`numpy_mnist.torch_twin`):
skipped where PyTorch is not installed, while the finite-difference checks beside it still run.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from numpy_mnist import torch_twin

#: For property tests that take the ``backend``/``backend32`` fixtures.  Hypothesis warns that a
#: function-scoped fixture is not reset between examples; these fixtures hand out a stateless
#: backend object, so there is nothing to reset.  Everything else comes from the loaded profile.
with_backend = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, *settings.default.suppress_health_check],
)

needs_torch = pytest.mark.skipif(not torch_twin.available(), reason="PyTorch (a test dependency) is not installed")
if torch_twin.available():
    import torch

    torch.set_num_threads(1)  # the oracles are small problems: one thread beats two spin-waiting

batch_sizes = st.integers(1, 8)
widths = st.integers(1, 6)


def floats(lo: float, hi: float, width: int = 64):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width)


def arrays(shape, lo: float = -3.0, hi: float = 3.0, *, width: int = 64):
    """Float arrays (float64, or float32 values with ``width=32``) with entries in ``[lo, hi]``."""
    dtype = np.float64 if width == 64 else np.float32
    return hnp.arrays(dtype, shape, elements=floats(lo, hi, width))


def away_from_zero(lo: float, hi: float):
    """Floats with ``lo <= |v| <= hi``, either sign: away from a kink at 0."""
    return st.tuples(st.booleans(), floats(lo, hi)).map(lambda s: -s[1] if s[0] else s[1])


def targets(shape):
    """0/1 targets: all positive (every image a 3), all negative (every one a 7), or mixed."""
    return st.one_of(
        st.just(np.ones(shape)),
        st.just(np.zeros(shape)),
        hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0])),
    )


losses = st.sampled_from(["mnist_loss", "bce"])


# -- the ResNet's layers: images, kernels, windows ------------------------------------------------
#
# Images hold up to 3 x 3 x 12 x 12 values: too many to draw one by one, so their values come from
# a seeded host generator, drawn with the shapes.  ``kind`` decides what the values look like:
# "uniform" in [-3, 3]; "integers" in {-2, ..., 2}, so equal values (ties of a max, exact zeros)
# are common; "offset", uniform around 50, where centring cancels (batch norm); "distinct", a
# shuffled grid 0.25 apart, so no two are within a finite difference's reach of each other.

VALUE_KINDS = ("uniform", "integers", "offset", "distinct")


def values(seed: int, shape, kind: str = "uniform") -> np.ndarray:
    """Float64 values of ``shape`` from ``numpy.random.default_rng(seed)``, of the ``kind`` above."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.uniform(-3.0, 3.0, shape)
    if kind == "integers":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if kind == "offset":
        return 50.0 + rng.uniform(-1.0, 1.0, shape)
    if kind == "distinct":
        size = int(np.prod(shape))
        return ((rng.permutation(size) - size / 2) * 0.25).reshape(shape)
    raise ValueError(f"unknown kind {kind!r}")


seeds = st.integers(0, 2**32 - 1)


@st.composite
def conv_geometries(draw, max_side: int = 12, max_batch: int = 3, max_channels: int = 3, max_kernel: int = 4):
    """``dict(n, c, f, h, w, kh, kw, stride, padding)``: non-square kernels and images, odd sizes,
    strides 1 and 2, paddings 0 to 3, every image at least as large as the kernel once padded."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride, padding = draw(st.sampled_from([1, 2])), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, kh - 2 * padding), max_side))
    w = draw(st.integers(max(1, kw - 2 * padding), max_side))
    return dict(n=draw(st.integers(1, max_batch)), c=draw(st.integers(1, max_channels)),
                f=draw(st.integers(1, max_channels)), h=h, w=w, kh=kh, kw=kw, stride=stride, padding=padding)


@st.composite
def pool_geometries(draw, max_side: int = 12, max_batch: int = 3, max_channels: int = 3, max_kernel: int = 6):
    """``dict(n, c, h, w, kernel, stride, padding)`` for a max-pool: square windows of 1 to 6,
    strides 1 to 3 (overlapping and not), paddings up to half the window (PyTorch's limit)."""
    kernel = draw(st.integers(1, max_kernel))
    stride, padding = draw(st.integers(1, 3)), draw(st.integers(0, kernel // 2))
    side = st.integers(max(1, kernel - 2 * padding), max_side)
    return dict(n=draw(st.integers(1, max_batch)), c=draw(st.integers(1, max_channels)), h=draw(side),
                w=draw(side), kernel=kernel, stride=stride, padding=padding)


@st.composite
def batch_norm_shapes(draw, max_side: int = 6, max_batch: int = 6, max_channels: int = 3):
    """(N, C) or (N, C, H, W), at least two values per channel (PyTorch's condition in training)."""
    c = draw(st.integers(1, max_channels))
    if draw(st.booleans()):
        return (draw(st.integers(2, max_batch)), c)
    n, h, w = draw(st.integers(1, max_batch)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if n * h * w < 2:
        n = 2
    return (n, c, h, w)
