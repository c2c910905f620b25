"""Device to host: the one function that turns an array of any backend into NumPy.

``numpy.array(x)`` is not that function.  CuPy refuses the implicit conversion (``TypeError``) or
NumPy 2 warns about its ``copy`` keyword; PyTorch tensors do the same.  Every place that needs host
values (gradient checks, metrics, plots, checkpoints, the bench, the tests) calls :func:`to_numpy`,
or a backend's :meth:`~numpy_mnist.backends.base.Backend.to_host`, which is the same function.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import is_array_api_obj, is_cupy_array, is_numpy_array, is_torch_array

__all__ = ["to_numpy"]


def to_numpy(array: Any, dtype: Any = None) -> np.ndarray:
    """A new :class:`numpy.ndarray` holding the values of ``array``, in ``dtype`` if one is given.

    ``array`` may be a NumPy, CuPy, PyTorch or any other Array-API array (copied through DLPack),
    a NumPy scalar, or host data (a Python number or nested list).  Always a copy: changing the
    result never changes ``array``.  For a CuPy array this waits for the device to finish it.
    """
    if is_numpy_array(array) or not is_array_api_obj(array):
        return np.array(array, dtype=dtype, copy=True)
    if is_cupy_array(array):
        host = array.get()
    elif is_torch_array(array):
        host = array.detach().cpu().resolve_conj().numpy()
    else:  # any other Array-API array on the CPU: array_api_strict, ...
        host = np.from_dlpack(array)
    return np.array(host, dtype=dtype, copy=True)
