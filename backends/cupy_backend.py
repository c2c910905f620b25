"""CuPy on the current CUDA device.  ``cupy`` is imported here only, and only when asked for."""

from __future__ import annotations

from numpy_mnist.backends.base import Backend
from numpy_mnist.backends.errors import BackendUnavailableError

#: The pip commands that install CuPy with what it needs to compile kernels (NVRTC, the CUDA headers)
#: and to multiply matrices (cuBLAS): CuPy's ``ctk`` extra, which the gpu extras ask for.
GPU_EXTRAS = "pip install 'numpy-mnist[gpu]' (CUDA 12) or pip install 'numpy-mnist[gpu-cuda13]' (CUDA 13)"
INSTALL_HINT = f"install the gpu extra for your CUDA version: {GPU_EXTRAS}, or use --backend numpy"

#: CUDA runtime errors that mean: no NVIDIA driver, one too old for this CuPy, or no device to run on.
_NO_GPU_CODES = ("cudaErrorNoDevice", "cudaErrorInsufficientDriver", "cudaErrorSystemDriverMismatch",
                 "cudaErrorInitializationError", "cudaErrorDevicesUnavailable", "cudaErrorStubLibrary",
                 "cudaErrorSystemNotReady", "cudaErrorCompatNotSupportedOnDevice", "libcuda.so")
#: Words in CuPy's error when NVRTC, a CUDA header or cuBLAS cannot be found.
_TOOLKIT_WORDS = ("nvrtc", "cannot open source file", "could not open source file", "cublas")


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """``exc`` as ``Type: message`` on one line; of a compiler log, its first error line."""
    text = str(exc)
    errors = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    if type(exc).__name__ == "CompileException" and errors:
        text = errors[0]
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _cuda_version(cupy) -> str:
    """The CUDA version this CuPy was built for (``"13.0"``), or ``""`` where it cannot say."""
    try:
        version = int(cupy.cuda.runtime.runtimeGetVersion())
    except Exception:  # noqa: BLE001 - only a detail of the message
        return ""
    return f"{version // 1000}.{version % 1000 // 10}"


def unusable_reason(exc: BaseException, cupy=None) -> str:
    """Why CuPy cannot run here, from the error it raised, as one line naming the fix.

    Four causes, told apart by CuPy's message (CuPy 13 and 14 word them alike, in several types):

    - no driver, a driver too old for CuPy's CUDA, or no device: a CUDA runtime error such as
      ``cudaErrorNoDevice`` or ``cudaErrorInsufficientDriver``;
    - NVRTC, the CUDA headers or cuBLAS missing (a bare ``pip install cupy-cuda13x`` brings none of
      them): ``libnvrtc.so.13`` not found, a ``CompileException`` that cannot open a header, or
      ``libcublas`` not found;
    - anything else: CuPy's own message.

    (CuPy missing altogether is :func:`import_cupy`'s first check.)
    """
    detail = _one_line(exc)
    lowered = detail.lower()
    if any(code.lower() in lowered for code in _NO_GPU_CODES):
        cuda = _cuda_version(cupy) if cupy is not None else ""
        needs = f" (this CuPy is built for CUDA {cuda} and needs a driver that supports it)" if cuda else ""
        return (f"CuPy is installed but no CUDA GPU is usable ({detail}): nvidia-smi must list a GPU; "
                f"install or update the NVIDIA driver{needs}, or use --backend numpy")
    if any(word in lowered for word in _TOOLKIT_WORDS):
        return (f"CuPy cannot find NVRTC, the CUDA headers or cuBLAS ({detail}): install them with CuPy's ctk "
                f"extra, {GPU_EXTRAS}, or install the CUDA toolkit and set CUDA_PATH; or use --backend numpy")
    return f"CuPy is installed but cannot run ({detail}): fix what CuPy reports, or use --backend numpy"


def import_cupy():
    """Import CuPy and check that it can run here, or explain why not in one line.

    The check finds the device (the driver), compiles and runs one of CuPy's own kernels (NVRTC and
    the CUDA headers) and multiplies two small matrices (cuBLAS, the array path's ``@``).  Returns
    the ``cupy`` module itself (for ``cupy.cuda`` and kernels); arrays are computed on through
    array-api-compat's CuPy namespace (``CupyBackend.xp``).
    """
    try:
        import cupy
    except ImportError as exc:
        if exc.name != "cupy":  # CuPy is there, but something it imports is not
            raise BackendUnavailableError(unusable_reason(exc)) from exc
        raise BackendUnavailableError(f"the cupy backend needs CuPy, which is not installed: {INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        if count == 0:
            raise RuntimeError("cudaErrorNoDevice: the CUDA runtime counts 0 devices")
        (cupy.arange(2) + 1).sum().item()  # NVRTC compiles one of CuPy's kernels, which include CUDA headers
        eye = cupy.eye(2, dtype=cupy.float32)
        (eye @ eye).sum().item()  # cuBLAS
    except Exception as exc:  # noqa: BLE001 - CUDA, NVRTC and loader errors come in several types
        raise BackendUnavailableError(unusable_reason(exc, cupy)) from exc
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
