"""NumPy on the CPU: NumPy 2's main namespace is an Array-API namespace."""

from __future__ import annotations

import numpy as np

from backends.base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__(np, dtype)
