"""Array backends: the one place where NumPy, CuPy or a strict Array-API namespace is chosen.

Everything in :mod:`numpy_mnist` is written against ``backend.xp`` (an Array-API namespace) and
never imports ``numpy`` or ``cupy`` for arithmetic.  A backend is picked once, at the edge::

    from numpy_mnist.backends import get_backend
    backend = get_backend("auto")          # CuPy when a CUDA device is usable, else NumPy
    x = backend.asarray(host_images)       # host -> device, cast to backend.dtype
    ...
    backend.synchronize()                  # wait for the device (no-op on the CPU)
    host = backend.to_host(x)              # device -> host, a numpy.ndarray

Backends:

``"numpy"``
    NumPy >= 2 (its main namespace implements the Array API).
``"cupy"``
    CuPy on the current CUDA device.  Imported only when asked for; if CuPy is missing or no GPU
    is usable, :class:`BackendUnavailableError` says which, and how to install the ``gpu`` extra.
``"array_api_strict"``
    The reference implementation of the standard, used by the test-suite to prove that the model
    code never leans on NumPy-only behaviour.
``"torch"``
    PyTorch CPU tensors as plain arrays: the test-suite's CPU stand-in for CuPy (see
    :mod:`numpy_mnist.backends.torch_backend`).  Not offered by the command line.
``"auto"``
    ``"cupy"`` when it is usable, otherwise ``"numpy"``.

Namespaces are found with ``array_api_compat.array_namespace`` (CuPy arrays and PyTorch tensors
have no ``__array_namespace__`` of their own), and arrays reach the host only through
:func:`to_numpy` (a backend's ``to_host``).  The package depends on nothing in :mod:`numpy_mnist`:
its errors are its own (:mod:`numpy_mnist.backends.errors`).
"""

from __future__ import annotations

from numpy_mnist.backends.base import DTYPES, Backend
from numpy_mnist.backends.cupy_backend import CupyBackend
from numpy_mnist.backends.errors import BackendError, BackendUnavailableError, ForeignArrayError
from numpy_mnist.backends.host import to_numpy
from numpy_mnist.backends.numpy_backend import NumpyBackend
from numpy_mnist.backends.strict_backend import StrictBackend
from numpy_mnist.backends.torch_backend import TorchBackend

__all__ = ["Backend", "BackendError", "BackendUnavailableError", "ForeignArrayError", "DTYPES",
           "get_backend", "available_backends", "to_numpy", "BACKEND_NAMES"]

#: The backends a user can choose (``--backend``), besides ``"auto"``.
BACKEND_NAMES = ("numpy", "cupy", "array_api_strict")
_CLASSES = {"numpy": NumpyBackend, "cupy": CupyBackend, "array_api_strict": StrictBackend, "torch": TorchBackend}


def get_backend(name: str | Backend = "numpy", dtype: str = "float32") -> Backend:
    """Return the backend called ``name`` computing in floating dtype ``dtype``.

    ``name`` is one of ``"numpy"``, ``"cupy"``, ``"array_api_strict"``, ``"auto"`` or the
    test-suite's ``"torch"``; a
    :class:`Backend` passed in is returned as is (with its dtype changed if ``dtype`` differs).
    ``dtype`` is ``"float32"`` (the default, for training) or ``"float64"`` (for checking).
    """
    if isinstance(name, Backend):
        return name if name.dtype_name == dtype else name.with_dtype(dtype)
    if name == "auto":  # (a dtype not in DTYPES is refused by the backend itself)
        try:
            return get_backend("cupy", dtype)
        except BackendUnavailableError:
            return get_backend("numpy", dtype)
    if name not in _CLASSES:
        raise ValueError(f"unknown backend {name!r}: choose one of auto, {', '.join(BACKEND_NAMES)}")
    return _CLASSES[name](dtype)


def available_backends(dtype: str = "float32") -> list[Backend]:
    """Every backend that can be used on this machine, NumPy first."""
    found = []
    for name in BACKEND_NAMES:
        try:
            found.append(get_backend(name, dtype))
        except BackendUnavailableError:
            pass
    return found
