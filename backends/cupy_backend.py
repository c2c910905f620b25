"""CuPy on the current CUDA device.  ``cupy`` is imported here only, and only when asked for."""

from __future__ import annotations

from backends.base import Backend, BackendUnavailableError

INSTALL_HINT = (
    "install the gpu extra for your CUDA version: pip install 'numpy-mnist[gpu]' (CUDA 12) "
    "or pip install 'numpy-mnist[gpu-cuda13]' (CUDA 13), or use --backend numpy"
)


def import_cupy():
    """Import CuPy and check that a CUDA device can run a kernel, or explain why not."""
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
    name = "cupy"
    is_gpu = True

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__(import_cupy(), dtype)

    def to_host(self, array):
        return self.xp.asnumpy(array)

    @property
    def device(self) -> str:
        cuda = self.xp.cuda
        props = cuda.runtime.getDeviceProperties(cuda.Device().id)
        name = props["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()
