"""The fused kernels on the CPU: the same ``.cu`` files, built by ``g++``, each block's threads run as fibers.

Test scaffolding, like the CuPy stand-in beside it (``cupy_standin.py``): it lived in the package as
``numpy_mnist.fused.host`` until it was moved here, since only the tests use it and no user of the
package runs it.  :class:`HostDevice` stands where :class:`CupyDevice
<numpy_mnist.fused.cupy_device.CupyDevice>` stands, with NumPy arrays as device memory, so the whole
:class:`~numpy_mnist.fused.trainer.FusedTrainer` (its launches, their arguments, the "graph" that is
recorded once and replayed, the batch order refilled before each epoch, the loss read once per
epoch) runs on a machine without a GPU.  That is how the test-suite proves, on any CPU, that the
kernels compute what the readable array path computes.

How it works: ``host_shim.h`` (beside this file) defines CUDA's kernel syntax as plain C++
(``__global__`` is nothing, ``blockIdx``/``threadIdx`` are globals); a generated C++ file includes
it, then the kernels, and wraps every instantiation the trainer asks for in an ``extern "C"``
launcher; ``g++`` builds a shared library, cached by the hash of its sources.  A launcher runs the
blocks of a launch in turn, and the threads of a block as fibers (user-level threads on the
caller's one OS thread): each runs until it reaches ``__syncthreads()`` or returns, and none passes
a barrier before all of its block have reached it; ``__shared__`` arrays are one per block, as on a
GPU.  So the kernels' threads cooperate here as they do on a GPU, in a fixed order: the results are
deterministic.  (A block whose threads do not all reach a barrier raises ``RuntimeError``.)  Each
launcher also reports its kernel's parameter types, and every launch is checked against them (a
float32 buffer passed where a ``double*`` is expected fails here, where on a GPU it would compute
garbage).

Floating point: ``-ffp-contract=off`` keeps products and sums apart as ``--fmad=false`` does on
the GPU, and ``fma`` is correctly rounded (the CPU's instruction where it has one, else the C
library's), so every ``+ - * /`` and ``fma`` rounds as on the GPU; only ``exp``, ``log`` and
``log1p`` come from another math library (glibc instead of CUDA's), which may differ in the last
bit.  The layout of the kernels and their expected GPU times are in ``numpy_mnist/fused/README.md``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from numpy_mnist.fused.source import KERNEL_DIR, KERNEL_FILES

__all__ = ["HOST_FLAGS", "SHIM_DIR", "HostDevice", "build_host_library", "compiler"]

#: The folder of ``host_shim.h`` (this one), an include path of every CPU build.
SHIM_DIR = Path(__file__).resolve().parent

#: g++ flags: C++17, optimised, IEEE arithmetic exactly as written (no contraction, no fast math), and
#: every symbol but the launchers hidden: two libraries loaded in one process (other kernels, other
#: options) then never share the fiber scheduler or any other inline variable.
HOST_FLAGS = ("-std=c++17", "-O2", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math", "-fvisibility=hidden")

_CODES = {np.dtype(np.int32): "i", np.dtype(np.int64): "q", np.dtype(np.float32): "f", np.dtype(np.float64): "d"}
_LAUNCH_ERRORS = {1: "some threads of a block returned while others waited at __syncthreads()",
                  2: "no memory for the stacks of a block's threads"}
_CTYPES = {"i": ctypes.c_int, "q": ctypes.c_longlong, "f": ctypes.c_float, "d": ctypes.c_double}


def _native_fma_flags() -> list[str]:
    """``["-mfma"]`` on an x86-64 CPU with fused multiply-add instructions, else ``[]``.

    The kernels call ``fma``/``fmaf`` for every product they accumulate.  Without ``-mfma`` each is a
    call into the C library; with it, one instruction.  Both round exactly once (IEEE 754's fused
    multiply-add), so the results are the same bits: only the speed differs.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return ["-mfma"] if "fma" in flags else []


def compiler() -> str | None:
    """The C++ compiler to build with (``$CXX``, else ``g++``), or ``None`` when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _wrapper(names: list[str]) -> str:
    lines = ['#include "host_shim.h"', *[f'#include "{name}"' for name in KERNEL_FILES],
             '#define NM_EXPORT __attribute__((visibility("default")))', 'extern "C" {']
    for i, name in enumerate(names):
        lines.append(f"NM_EXPORT int nm_launch_{i}(unsigned grid, unsigned block, void** args) "
                     f"{{ return numpy_mnist_host::launch(&{name}, grid, block, args); }}")
        lines.append(f"NM_EXPORT const char* nm_signature_{i}() {{ return numpy_mnist_host::signature(&{name}); }}")
    lines += ["NM_EXPORT void nm_set_reverse(int on) { numpy_mnist_host::reverse_order = on != 0; }",
              "NM_EXPORT void nm_set_ignore_barriers(int on) { numpy_mnist_host::ignore_barriers = on != 0; }", "}"]
    return "\n".join(lines) + "\n"


def build_host_library(names, cache_dir: str | os.PathLike | None = None, *, portable_fibers: bool = False) -> Path:
    """Build (or find already built) the shared library of the instantiations ``names``; its path.

    ``portable_fibers=True`` switches fibers with ucontext's ``swapcontext`` (what machines other
    than x86-64 use) instead of the few instructions of assembly ``host_shim.h`` has for x86-64.

    Raises ``RuntimeError`` without a C++ compiler or when the build fails (with the compiler's
    messages).
    """
    cxx = compiler()
    flags = [*HOST_FLAGS, *_native_fma_flags(), *(["-DNUMPY_MNIST_HOST_UCONTEXT"] if portable_fibers else [])]
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, or $CXX) to build the fused kernels for the CPU")
    names = list(names)
    wrapper = _wrapper(names)
    digest = hashlib.sha256()
    sources = [*sorted(KERNEL_DIR.iterdir()), SHIM_DIR / "host_shim.h"]
    for part in [wrapper, cxx, *flags] + [p.read_text() for p in sources if p.suffix in (".cu", ".cuh", ".h")]:
        digest.update(part.encode())
    default = Path(tempfile.gettempdir()) / f"numpy-mnist-host-{os.getuid()}"
    folder = Path(cache_dir) if cache_dir is not None else default
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / f"kernels-{digest.hexdigest()[:20]}.so"
    if library.exists():
        return library
    with tempfile.TemporaryDirectory(dir=folder) as work:
        source = Path(work) / "wrapper.cpp"
        source.write_text(wrapper)
        built = Path(work) / "kernels.so"
        done = subprocess.run([cxx, *flags, "-I", str(SHIM_DIR), "-I", str(KERNEL_DIR), str(source),
                               "-o", str(built)], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"g++ could not build the fused kernels:\n{done.stderr}")
        os.replace(built, library)  # atomic: a concurrent build of the same sources is harmless
    return library


class _Kernel:
    def __init__(self, lib, index: int, name: str) -> None:
        self.name = name
        self.run = getattr(lib, f"nm_launch_{index}")
        self.run.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
        self.run.restype = ctypes.c_int
        signature = getattr(lib, f"nm_signature_{index}")
        signature.restype = ctypes.c_char_p
        self.codes = signature().decode().rstrip(",").split(",")

    def pack(self, args):
        """The ``void*[]`` of ``args`` (and the ctypes values it points at), after checking every type."""
        if len(args) != len(self.codes):
            raise TypeError(f"{self.name} takes {len(self.codes)} arguments, got {len(args)}")
        values = []
        for i, (arg, want) in enumerate(zip(args, self.codes)):
            if isinstance(arg, np.ndarray):
                got = _CODES.get(arg.dtype, str(arg.dtype)) + "*"
                if not arg.flags.c_contiguous:
                    raise TypeError(f"{self.name}: argument {i} is not a C-contiguous array")
                value = ctypes.c_void_p(arg.ctypes.data)
            elif isinstance(arg, np.generic):
                got = _CODES.get(arg.dtype, str(arg.dtype))
                value = _CTYPES[got](arg.item()) if got in _CTYPES else None
            else:
                raise TypeError(f"{self.name}: argument {i} must be a NumPy array or a NumPy scalar with its "
                                f"C type, got {type(arg).__name__} (a Python number has no C type)")
            if got != want:
                raise TypeError(f"{self.name}: argument {i} is {got!r} but the kernel takes {want!r}")
            values.append(value)
        argv = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        return argv, values


class _HostGraph:
    """Launches recorded once, with their arguments fixed then, replayed in order."""

    def __init__(self, device: HostDevice, steps) -> None:
        self.device, self.steps = device, steps

    def replay(self) -> None:
        lib = self.device._lib
        lib.nm_set_reverse(int(self.device.reverse))
        lib.nm_set_ignore_barriers(int(self.device.ignore_barriers))
        for kernel, grid, block, (argv, _values) in self.steps:
            error = kernel.run(grid, block, argv)
            if error:
                raise RuntimeError(f"{kernel.name} <<<{grid}, {block}>>>: {_LAUNCH_ERRORS.get(error, error)}")


class HostDevice:
    """Device memory as NumPy arrays, kernels as a ``g++``-built library: the CPU stand-in for CuPy.

    ``reverse=True`` runs every launch's blocks, and the threads of a block between two barriers,
    from last to first: the results must not change (a kernel whose threads read what another
    thread writes without a barrier in between would show it here).  ``ignore_barriers=True`` makes
    ``__syncthreads()`` do nothing, so that each thread runs to its end before the next starts: a
    test switch, to show that the kernels need their barriers (their results are then wrong).
    ``portable_fibers=True`` builds the fibers on ucontext (see :func:`build_host_library`).
    New buffers are filled with NaN (floats) or -2**31 (ints), so a kernel that reads a value
    no kernel wrote makes itself seen.
    """

    name = "host"
    backend_name = "numpy"

    def __init__(self, *, reverse: bool = False, ignore_barriers: bool = False, portable_fibers: bool = False,
                 cache_dir=None) -> None:
        self.reverse, self.ignore_barriers, self.portable_fibers = reverse, ignore_barriers, portable_fibers
        self.cache_dir = cache_dir
        self._lib = None
        self._kernels: dict[str, _Kernel] = {}

    def compile(self, names) -> None:
        """Load a library holding the instantiations ``names``: the one already loaded when it holds
        them all (so one build can serve many trainers, as the kernel tests use it), else one built
        (or found in the cache) for exactly these names."""
        names = list(names)
        if self._lib is not None and set(names) <= self._kernels.keys():
            return
        lib = ctypes.CDLL(str(build_host_library(names, self.cache_dir, portable_fibers=self.portable_fibers)))
        lib.nm_set_reverse.argtypes = [ctypes.c_int]
        lib.nm_set_ignore_barriers.argtypes = [ctypes.c_int]
        self._lib = lib
        self._kernels = {name: _Kernel(lib, i, name) for i, name in enumerate(names)}

    def owns(self, array) -> bool:
        return isinstance(array, np.ndarray)

    def empty(self, n: int, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        fill = np.nan if dtype.kind == "f" else np.iinfo(dtype).min
        return np.full(int(n), fill, dtype=dtype)

    def asarray(self, host, dtype=None) -> np.ndarray:
        return np.ascontiguousarray(host, dtype=dtype)

    def upload(self, dst: np.ndarray, host) -> None:
        dst[...] = np.asarray(host, dtype=dst.dtype).reshape(dst.shape)

    def to_host(self, array) -> np.ndarray:
        return array.copy()

    def capture(self, launches) -> _HostGraph:
        steps = []
        for launch in launches:
            kernel = self._kernels[launch.kernel]
            steps.append((kernel, launch.grid, launch.block, kernel.pack(launch.args)))
        return _HostGraph(self, steps)
