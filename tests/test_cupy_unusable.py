"""Why CuPy cannot run, in one line naming the fix: each cause simulated on the CPU.

The fakes raise what real CuPy raises (the types' names and messages are CuPy 14.2's on a machine
without a driver, and without NVIDIA's NVRTC and cuBLAS wheels; CuPy 13 words them alike).
"""

from __future__ import annotations

import builtins
import sys
import types

import pytest

from numpy_mnist.backends import BackendUnavailableError, get_backend
from numpy_mnist.backends.cupy_backend import import_cupy


class CUDARuntimeError(RuntimeError):
    """``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


class DynamicLibNotFoundError(RuntimeError):
    """``cuda.pathfinder``'s error when a CUDA library is not installed (CuPy 14 loads NVRTC through it)."""


class CompileException(Exception):
    """``cupy.cuda.compiler.CompileException``: str() is NVRTC's whole log."""


def fake_cupy(fail_at: str, error: BaseException | None = None, devices: int = 1) -> types.ModuleType:
    """A ``cupy`` whose step ``fail_at`` (``"devices"``, ``"kernel"`` or ``"matmul"``) raises ``error``."""

    def step(name, value):
        if name == fail_at:
            raise error
        return value

    class Array:
        def __add__(self, other):
            return step("kernel", self)

        def __matmul__(self, other):
            return step("matmul", self)

        def sum(self):
            return self

        def item(self):
            return 1.0

    cupy = types.ModuleType("cupy")
    cupy.float32 = "float32"
    cupy.arange = lambda n: Array()
    cupy.eye = lambda n, dtype=None: Array()
    runtime = types.SimpleNamespace(getDeviceCount=lambda: step("devices", devices),
                                    runtimeGetVersion=lambda: 13020)
    cupy.cuda = types.SimpleNamespace(runtime=runtime)
    return cupy


def unusable(monkeypatch, module) -> str:
    monkeypatch.setitem(sys.modules, "cupy", module)
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert get_backend("auto").name == "numpy"  # and "auto" falls back to the CPU
    return message


def test_cupy_missing(monkeypatch):
    message = unusable(monkeypatch, None)
    assert "CuPy, which is not installed" in message
    assert "pip install 'numpy-mnist[gpu]'" in message and "pip install 'numpy-mnist[gpu-cuda13]'" in message


def test_cupy_installed_but_one_of_its_dependencies_missing(monkeypatch):
    def broken_import(name, *args, **kwargs):
        if name == "cupy":
            raise ModuleNotFoundError("No module named 'fastrlock'", name="fastrlock")
        return real_import(name, *args, **kwargs)

    real_import = builtins.__import__
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr("builtins.__import__", broken_import)
    with pytest.raises(BackendUnavailableError, match="CuPy is installed but cannot run .*fastrlock"):
        import_cupy()


@pytest.mark.parametrize("error, devices", [
    (CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"), 1),
    (CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"), 1),
    (None, 0),
])
def test_no_driver_or_no_device(monkeypatch, error, devices):
    message = unusable(monkeypatch, fake_cupy("devices" if error else "", error, devices))
    assert message.startswith("CuPy is installed but no CUDA GPU is usable (")
    assert "cudaError" in message and "nvidia-smi must list a GPU" in message
    assert "install or update the NVIDIA driver (this CuPy is built for CUDA 13.2" in message
    assert message.endswith("or use --backend numpy")


@pytest.mark.parametrize("fail_at, error, shown", [
    # CuPy 14: NVRTC is loaded through cuda-pathfinder
    ("kernel", DynamicLibNotFoundError('Failure finding "libnvrtc.so.13 or libnvrtc.so.12": No such file: '
                                       'libnvrtc.so.13 or libnvrtc.so.12\n'), "libnvrtc.so.13"),
    # CuPy 13
    ("kernel", RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot open shared "
                            "object file: No such file or directory"), "libnvrtc.so.12"),
    # NVRTC there, the CUDA headers not: the compile of CuPy's own kernel fails
    ("kernel", CompileException('/tmp/tmpx/kern.cu(19): catastrophic error: could not open source file '
                                '"cuda_fp16.h" (no directories in search list)\n  #include <cuda_fp16.h>\n\n'
                                '1 catastrophic error detected in the compilation of "/tmp/tmpx/kern.cu".\n'),
     'catastrophic error: could not open source file "cuda_fp16.h" (no directories in search list))'),
    # cuBLAS, for the array path's @
    ("matmul", ImportError('Failure finding "libcublasLt.so.13 or libcublasLt.so.12": No such file'),
     "libcublasLt.so.13"),
])
def test_nvrtc_headers_or_cublas_missing(monkeypatch, fail_at, error, shown):
    message = unusable(monkeypatch, fake_cupy(fail_at, error))
    assert message.startswith(f"CuPy cannot find NVRTC, the CUDA headers or cuBLAS ({type(error).__name__}: ")
    assert shown in message
    assert "install them with CuPy's ctk extra, pip install 'numpy-mnist[gpu]' (CUDA 12) or pip install " \
           "'numpy-mnist[gpu-cuda13]' (CUDA 13), or install the CUDA toolkit" in message
    assert "driver" not in message  # not the driver: that sent users the wrong way


def test_anything_else_gives_cupys_own_message(monkeypatch):
    error = CUDARuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")
    message = unusable(monkeypatch, fake_cupy("kernel", error))
    assert message == ("CuPy is installed but cannot run (CUDARuntimeError: cudaErrorIllegalAddress: an illegal "
                       "memory access was encountered): fix what CuPy reports, or use --backend numpy")
