"""NVRTC compiles every fused-kernel instantiation the program can ask for, as CuPy compiles it at run time.

On a GPU, ``cupy.RawModule(code=program_source(), options=NVRTC_OPTIONS, name_expressions=names)``
hands the program to NVRTC with the project's options plus the ones CuPy adds to every kernel
(``cupy/cuda/compiler.py``: ``-ftz=true``, ``-arch=sm_XX`` for the device, and
``--device-as-default-execution-space``), registers every name expression, and looks each one up
by its lowered (mangled) name.  This test does the same through NVRTC's C API (ctypes over the
``libnvrtc`` of NVIDIA's ``nvidia-cuda-nvrtc`` wheel), for sm_80 and sm_90, with one program per
architecture holding every name of :func:`~numpy_mnist.fused.source.cli_configs`.  So a kernel
that ``nvcc`` accepts but NVRTC refuses, a name expression that names no instantiation, or a
warning under CuPy's options fails here, on a machine without a GPU.

The kernels include nothing that NVRTC does not bring itself (``host_shim.h`` only in the CPU
build), so no CUDA headers are needed.  Skipped where the wheel is absent, unless
``NUMPY_MNIST_REQUIRE_NVRTC=1`` (which CI sets): then its absence is a failure.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
from pathlib import Path

import pytest

from numpy_mnist.fused.source import NVRTC_OPTIONS, cli_configs, program_source

#: The options CuPy adds to the project's own for every NVRTC compile (CuPy 13 and 14), but the arch.
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")
#: NVRTC's wheels: CUDA 13's, then CUDA 12's.
NVRTC_WHEELS = ("nvidia-cuda-nvrtc", "nvidia-cuda-nvrtc-cu12")


def nvrtc_library() -> Path | None:
    """The ``libnvrtc.so`` of an installed NVRTC wheel, or ``None``."""
    for wheel in NVRTC_WHEELS:
        try:
            files = importlib.metadata.distribution(wheel).files or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in files:
            if file.name.startswith("libnvrtc.so"):
                return Path(file.locate())
    return None


def load_nvrtc():
    """NVRTC through ctypes; a skip where it is absent, a failure if NUMPY_MNIST_REQUIRE_NVRTC=1."""
    library = nvrtc_library()
    if library is None:
        why = f"no NVRTC: pip install {NVRTC_WHEELS[0]} (the test extra brings it on Linux x86-64)"
        if os.environ.get("NUMPY_MNIST_REQUIRE_NVRTC") == "1":
            pytest.fail(f"NUMPY_MNIST_REQUIRE_NVRTC=1 but {why}")
        pytest.skip(why)
    lib = ctypes.CDLL(str(library))
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    lib.nvrtcGetErrorString.argtypes = [ctypes.c_int]
    return lib


@pytest.fixture(scope="module")
def nvrtc():
    return load_nvrtc()


def test_without_nvrtc_a_run_that_requires_it_fails(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    monkeypatch.setenv("NUMPY_MNIST_REQUIRE_NVRTC", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_NVRTC=1 but no NVRTC: pip install nvidia-cuda-nvrtc"):
        load_nvrtc()
    monkeypatch.delenv("NUMPY_MNIST_REQUIRE_NVRTC")
    with pytest.raises(pytest.skip.Exception, match="no NVRTC"):
        load_nvrtc()


def _check(lib, result: int, what: str, log: str = "") -> None:
    if result != 0:
        raise AssertionError(f"{what}: {lib.nvrtcGetErrorString(result).decode()}\n{log}")


def compile_with_names(lib, source: str, options, names) -> tuple[str, dict[str, str], int]:
    """NVRTC's log, the lowered name of each of ``names``, and the size of the cubin, as
    CuPy's ``_NVRTCProgram.compile`` gets them (one program, every name expression added first)."""
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"numpy_mnist_fused.cu", 0, None, None),
           "nvrtcCreateProgram")
    try:
        for name in names:
            _check(lib, lib.nvrtcAddNameExpression(prog, name.encode()), f"nvrtcAddNameExpression({name})")
        argv = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        result = lib.nvrtcCompileProgram(prog, len(options), argv)
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        buffer = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetProgramLog(prog, buffer), "nvrtcGetProgramLog")
        log = buffer.value.decode(errors="replace").strip()
        _check(lib, result, f"NVRTC could not compile the program with {' '.join(options)}", log)
        lowered = {}
        for name in names:
            out = ctypes.c_char_p()
            _check(lib, lib.nvrtcGetLoweredName(prog, name.encode(), ctypes.byref(out)), f"nvrtcGetLoweredName({name})")
            lowered[name] = out.value.decode()
        cubin = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(cubin)), "nvrtcGetCUBINSize")
        return log, lowered, cubin.value
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def every_name() -> list[str]:
    """Every instantiation ``numpy-mnist train`` can ask for, each once."""
    return sorted({name for config in cli_configs() for name in config.names().values()})


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_instantiation_with_cupys_options(nvrtc, arch):
    names = every_name()
    assert names
    options = (*NVRTC_OPTIONS, *CUPY_OPTIONS, f"-arch={arch}")
    log, lowered, cubin = compile_with_names(nvrtc, program_source(), options, names)
    assert log == "", f"NVRTC's log is not empty (a warning under CuPy's options):\n{log}"
    assert cubin > 0
    for name, mangled in lowered.items():
        # A C++ mangled name, and one that names this template: the kernel CuPy's get_function loads.
        assert mangled.startswith("_Z") and name.split("<")[0] in mangled, (name, mangled)
    assert len(set(lowered.values())) == len(names), "two name expressions lowered to one kernel"


def test_nvrtc_reports_a_name_that_names_no_instantiation(nvrtc):
    """The check above can fail: a name expression of a template that does not exist is an error."""
    with pytest.raises(AssertionError, match="could not compile"):
        compile_with_names(nvrtc, program_source(), (*NVRTC_OPTIONS, *CUPY_OPTIONS, "-arch=sm_80"),
                           ["no_such_kernel<float>"])
