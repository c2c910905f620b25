"""NumPy on the CPU, through array-api-compat's NumPy namespace (NumPy's own functions, a few
made to follow the standard where NumPy 2 does not yet)."""

from __future__ import annotations

import array_api_compat.numpy as compat_numpy

from numpy_mnist.backends.base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__(compat_numpy, dtype)
