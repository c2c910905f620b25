"""CuPy on the current CUDA device.  ``cupy`` is imported here only, and only when asked for."""

from __future__ import annotations

from backends.base import Backend
from backends.errors import BackendUnavailableError

INSTALL_HINT = (
    "install the gpu extra for your CUDA version: pip install 'numpy-mnist[gpu]' (CUDA 12) "
    "or pip install 'numpy-mnist[gpu-cuda13]' (CUDA 13), or use --backend numpy"
)


def import_cupy():
    """Import CuPy and check that a CUDA device can run a kernel, or explain why not.

    Returns the ``cupy`` module itself (for ``cupy.cuda`` and kernels); arrays are computed on
    through array-api-compat's CuPy namespace (``CupyBackend.xp``).
    """
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(f"the cupy backend needs CuPy, which is not installed: {INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            raise BackendUnavailableError("CuPy is installed but no CUDA GPU is visible: use --backend numpy")
        (cupy.arange(2) + 1).sum().item()  # compile and run one kernel: proves driver and toolkit agree
    except BackendUnavailableError:
        raise
    except Exception as exc:  # CUDA driver/runtime errors come in several types
        raise BackendUnavailableError(
            f"CuPy is installed but no CUDA GPU is usable ({type(exc).__name__}: {exc}); "
            "check the NVIDIA driver, or use --backend numpy"
        ) from exc
    return cupy


class CupyBackend(Backend):
    """CuPy arrays, computed on through ``array_api_compat.cupy``.

    ``cupy.ndarray`` has no ``__array_namespace__`` (CuPy 13 and 14): the namespace comes from
    array-api-compat, as it does for every array in the model code.  :attr:`cupy` is the plain
    ``cupy`` module, for streams, events and kernels.
    """

    name = "cupy"
    is_gpu = True

    def __init__(self, dtype: str = "float32") -> None:
        self.cupy = import_cupy()
        import array_api_compat.cupy as compat_cupy

        super().__init__(compat_cupy, dtype)

    @property
    def device(self) -> str:
        cuda = self.cupy.cuda
        props = cuda.runtime.getDeviceProperties(cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def synchronize(self) -> None:
        self.cupy.cuda.get_current_stream().synchronize()
