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
