"""The interface every array backend provides."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_numpy_array

from numpy_mnist.backends.errors import BackendUnavailableError, ForeignArrayError
from numpy_mnist.backends.host import to_numpy

DTYPES = ("float32", "float64")

__all__ = ["Backend", "BackendUnavailableError", "DTYPES"]


class Backend:
    """An array namespace plus the few things the Array API leaves to the library.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"`` or ``"torch"`` (the test-suite's stand-in).
    xp : module
        The Array-API namespace all model code computes with: the one
        ``array_api_compat.array_namespace`` finds for this backend's arrays.
    dtype : dtype object of ``xp``
        The floating dtype parameters and images are held in.
    dtype_name : str
        ``"float32"`` or ``"float64"``.
    device : str
        A human-readable name of where the arrays live ("CPU", "NVIDIA H100 80GB HBM3", ...).
    is_gpu : bool
        True when arrays live on an accelerator (and clocks need :meth:`synchronize`).
    """

    name: str = "abstract"
    is_gpu: bool = False

    def __init__(self, xp: ModuleType, dtype: str) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.xp = xp
        self.dtype_name = dtype
        self.dtype = getattr(xp, dtype)

    # -- moving data ---------------------------------------------------------------------------
    def asarray(self, host: Any, dtype: Any = None) -> Any:
        """Copy ``host`` (array-like on the host) into this backend.

        Floating input is cast to :attr:`dtype` unless ``dtype`` names another one (as a string
        such as ``"int64"`` or a dtype of ``xp``); integer and boolean input keep their dtype.
        An array of this backend already of the right dtype is returned as it is.
        """
        if isinstance(dtype, str):
            dtype = getattr(self.xp, dtype)
        if self.owns(host):  # already here: cast only if needed, never copy otherwise
            if dtype is None:
                floating = self.xp.isdtype(host.dtype, "real floating")
                dtype = self.dtype if floating else host.dtype
            return host if host.dtype == dtype else self.xp.astype(host, dtype)
        if is_array_api_obj(host) and not is_numpy_array(host):  # (NumPy's are every backend's host arrays)
            kind = type(host).__module__.split(".")[0] + "." + type(host).__name__
            raise ForeignArrayError(f"cannot move a {kind} to the {self.name} "
                                    "backend directly: bring it to the host first (the other backend's to_host)")
        host = np.asarray(host)
        if dtype is None:
            dtype = self.dtype if host.dtype.kind == "f" else getattr(self.xp, host.dtype.name)
        return self._from_numpy(host, dtype)

    def _from_numpy(self, host: np.ndarray, dtype: Any) -> Any:
        # Always a copy, as host -> device is on CuPy: an array sharing the NumPy buffer (a PyTorch
        # tensor would) could let a test pass that writes through to the host array.
        return self.xp.asarray(host, dtype=dtype, copy=True)

    def to_host(self, array: Any) -> np.ndarray:
        """Copy ``array`` to the host as a new :class:`numpy.ndarray` (after the device is done).

        Always a copy, never a view: changing the result never changes the backend's array.
        (:func:`numpy_mnist.backends.host.to_numpy`, which knows every backend.)
        """
        return to_numpy(array)

    def owns(self, array: Any) -> bool:
        """True when ``array`` is an array of this backend's namespace."""
        try:
            return array_namespace(array) is self.xp
        except TypeError:  # not an array of any namespace array-api-compat knows
            return False

    # -- the device ----------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return "CPU"

    def synchronize(self) -> None:
        """Block until all queued device work is finished (a no-op on the CPU)."""

    # -- identity ------------------------------------------------------------------------------
    def with_dtype(self, dtype: str) -> "Backend":
        return type(self)(dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Backend) and (self.name, self.dtype_name) == (other.name, other.dtype_name)

    def __hash__(self) -> int:
        return hash((self.name, self.dtype_name))

    def __repr__(self) -> str:
        return f"<backend {self.name} {self.dtype_name} on {self.device}>"
