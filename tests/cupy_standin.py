"""A stand-in ``cupy`` module for the CPU: the calls :class:`~numpy_mnist.fused.cupy_device.CupyDevice`
makes, with CuPy's signatures, refusing what real CuPy refuses.

It offers ``RawModule(code=, options=, name_expressions=)`` and ``get_function``, ``kernel(grid,
block, args)`` on the current stream, ``cuda.Stream(non_blocking=True)`` as a context with
``begin_capture``/``end_capture``/``synchronize``, ``Graph.upload(stream)`` and
``Graph.launch(stream)``, ``empty``, ``ascontiguousarray``, and ``ndarray.get``/``ndarray.set``.
Device memory is NumPy memory (:class:`FakeArray`); the kernels are the g++ build of the same
``.cu`` files (:class:`host_build.HostDevice`), which checks every argument's C type.

What it refuses, as CuPy 13 and 14 do (checked against CuPy 14.2's wheel on a machine without a
GPU, and CuPy's sources: ``cupy/cuda/function.pyx``, ``cupy/_core/core.pyx``, ``cupy/_core/raw.pyx``,
``cupy/cuda/stream.pyx``), each with CuPy's own exception type and words:

- a host ``numpy.ndarray`` as a kernel argument (``function.pyx``'s ``_pointer``: a ``TypeError``
  for any size but one; a size-one array CuPy would pass *by value* into a pointer parameter, so
  the stand-in refuses that too);
- anything but a CuPy array in ``ascontiguousarray`` (a typed Cython argument: ``TypeError:
  Argument 'a' has incorrect type (expected cupy._core.core._ndarray_base, got numpy.ndarray)``);
- a list for ``RawModule``'s ``options`` (``TypeError: Argument 'options' has incorrect type
  (expected tuple, got list)``), and a grid or block that is not a tuple;
- while a stream captures: ``.get``, ``.set`` and ``synchronize`` (synchronous transfers and
  synchronization are not allowed on a capturing stream: CUDA answers
  ``cudaErrorStreamCaptureUnsupported`` and invalidates the capture; what it lets through would run
  once, at capture, not at each replay), and allocation (``empty``, ``ascontiguousarray`` making a
  copy).  CUDA's relaxed capture mode, CuPy's default, does let ``cudaMalloc`` through, but memory
  taken from CuPy's pool during a capture goes back to the pool when Python drops the array while
  the graph still writes to it: the device's rule is that every buffer exists before the capture,
  and the stand-in holds it to that;
- loading a module (``get_function``) while a stream captures, and capturing on the legacy
  default stream (``stream.pyx``: "cannot capture on the default (legacy) stream").

Every refused call raises before it changes anything, so a test can show the refusal and go on.
"""

from __future__ import annotations

import types

import numpy as np
from host_build import HostDevice

from numpy_mnist.backends.numpy_backend import NumpyBackend
from numpy_mnist.fused.source import NVRTC_OPTIONS, program_source

__all__ = ["CaptureError", "FakeArray", "FakeCupyBackend", "fake_cupy"]

#: CUDA's answer to a call a capturing stream does not allow.
CAPTURE_UNSUPPORTED = "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing"


class CaptureError(RuntimeError):
    """As ``cupy_backends.cuda.api.runtime.CUDARuntimeError`` (a ``RuntimeError``) for a capture error."""


def _typed(name: str, want: str, value) -> TypeError:
    got = type(value)
    return TypeError(f"Argument '{name}' has incorrect type (expected {want}, got {got.__name__})")


class FakeArray(np.ndarray):
    """A device array: NumPy memory, with CuPy's ``get`` (device -> host) and ``set`` (host -> device)."""

    _cupy = None  # the stand-in module, set by fake_cupy

    def get(self, stream=None, order="C", out=None):
        self._cupy._refuse_during_capture("ndarray.get")
        return np.array(self.view(np.ndarray), copy=True, order=order)

    def set(self, arr, stream=None):
        self._cupy._refuse_during_capture("ndarray.set")
        if not isinstance(arr, np.ndarray) or isinstance(arr, FakeArray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray, got {type(arr).__name__}")
        if arr.shape != self.shape:
            raise ValueError(f"Shape mismatch. Old shape: {self.shape}, new shape: {arr.shape}")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        self.view(np.ndarray)[...] = arr


class FakeStream:
    def __init__(self, cupy, non_blocking=False, null=False):
        self.cupy, self.null, self.non_blocking = cupy, null, non_blocking
        self.capturing, self.recorded = False, None

    def __enter__(self):
        self.cupy.stack.append(self)
        return self

    def __exit__(self, *exc):
        self.cupy.stack.pop()
        return False

    def synchronize(self):
        self.cupy._refuse_during_capture("Stream.synchronize")

    def is_capturing(self):
        return self.capturing

    def begin_capture(self, mode=None):
        if self.null:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        assert not self.capturing
        self.capturing, self.recorded = True, []

    def end_capture(self):
        assert self.capturing
        self.capturing = False
        return FakeGraph(self.cupy, self.recorded)


class FakeGraph:
    def __init__(self, cupy, recorded):
        self.cupy, self.recorded = cupy, recorded

    def upload(self, stream=None):
        assert stream is None or isinstance(stream, FakeStream)
        self.cupy.events.append(("upload", self, stream))

    def launch(self, stream=None):
        assert stream is None or isinstance(stream, FakeStream)
        self.cupy.events.append(("launch", self, stream))
        self.cupy.replays.append(stream)
        for run in self.recorded:
            run()


class FakeKernel:
    def __init__(self, cupy, kernel):
        self.cupy, self.kernel = cupy, kernel

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if not isinstance(grid, tuple):
            raise _typed("grid", "tuple", grid)
        if not isinstance(block, tuple):
            raise _typed("block", "tuple", block)
        assert len(grid) == len(block) == 1, "the fused kernels take one-dimensional grids and blocks"
        for arg in args:
            if isinstance(arg, np.ndarray) and not isinstance(arg, FakeArray):
                raise TypeError(f"You are trying to pass a numpy.ndarray of shape {arg.shape} as a kernel "
                                "parameter. Only numpy.ndarrays of size one can be passed by value. If you meant "
                                "to pass a pointer to __global__ memory, you need to pass a cupy.ndarray instead.")
        argv = self.kernel.pack(args)  # the C types, checked as the host device checks them
        stream = stream if stream is not None else self.cupy.get_current_stream()
        assert stream.capturing, f"{self.kernel.name} launched outside a capture"
        stream.recorded.append(lambda: self.kernel.run(grid[0], block[0], argv[0]))


class FakeRawModule:
    def __init__(self, cupy, *, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 enable_cooperative_groups=False, name_expressions=None, jitify=False):
        if not isinstance(code, str):
            raise _typed("code", "str", code)
        if not isinstance(options, tuple):
            raise _typed("options", "tuple", options)
        assert code == program_source() and options == NVRTC_OPTIONS
        self.cupy, self.names, self.loaded = cupy, list(name_expressions), False
        self.device = HostDevice(cache_dir=cupy.cache)

    def get_function(self, name):
        assert name in self.names, f"{name} is not among the name expressions"
        assert not self.cupy._capturing(), "a module is loaded while a stream captures"
        if not self.loaded:
            self.device.compile(self.names)
            self.loaded = True
        return FakeKernel(self.cupy, self.device._kernels[name])


def fake_cupy(cache) -> types.ModuleType:
    """A fresh stand-in ``cupy`` module; its kernels are built (and cached) in the folder ``cache``.

    ``cupy.replays`` lists the stream of every graph launch, ``cupy.events`` every
    ``("upload" | "launch", graph, stream)`` in order.
    """
    cupy = types.ModuleType("cupy")
    cupy.cache, cupy.replays, cupy.events = cache, [], []
    cupy.ndarray = type("ndarray", (FakeArray,), {"_cupy": cupy})
    null = FakeStream(cupy, null=True)
    cupy.null, cupy.stack = null, [null]
    cupy._streams = []

    def capturing():
        return any(s.capturing for s in cupy._streams)

    def refuse_during_capture(what):
        if capturing():
            raise CaptureError(f"{what}: {CAPTURE_UNSUPPORTED}")

    def new_stream(null=False, non_blocking=False, ptds=False, priority=None):
        stream = FakeStream(cupy, non_blocking=non_blocking, null=null)
        cupy._streams.append(stream)
        return stream

    def empty(shape, dtype=float, order="C"):
        refuse_during_capture("cupy.empty (a memory allocation)")
        dtype = np.dtype(dtype)
        # NaN or -1 where nothing was written yet, so a kernel reading an unwritten value shows it.
        return np.full(shape, np.nan if dtype.kind == "f" else -1, dtype).view(cupy.ndarray)

    def ascontiguousarray(a, dtype=None):
        if not isinstance(a, FakeArray):
            want = "cupy._core.core._ndarray_base"
            raise TypeError(f"Argument 'a' has incorrect type (expected {want}, got {type(a).__name__})")
        if a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
            return a
        refuse_during_capture("cupy.ascontiguousarray (a copy, so a memory allocation)")
        return np.ascontiguousarray(a.view(np.ndarray), dtype=dtype).view(cupy.ndarray)

    cupy._capturing, cupy._refuse_during_capture = capturing, refuse_during_capture
    cupy.get_current_stream = lambda: cupy.stack[-1]
    cupy.cuda = types.SimpleNamespace(Stream=new_stream, get_current_stream=cupy.get_current_stream,
                                      graph=types.SimpleNamespace(Graph=FakeGraph))
    cupy.RawModule = lambda **kw: FakeRawModule(cupy, **kw)
    cupy.empty, cupy.ascontiguousarray = empty, ascontiguousarray
    return cupy


class FakeCupyBackend(NumpyBackend):
    """NumPy arithmetic under the name ``cupy``, on arrays of the stand-in module ``cupy``'s ``ndarray``,
    reaching the host through ``.get()`` and synchronizing the current stream, as the CuPy backend does."""

    name = "cupy"
    is_gpu = True

    def __init__(self, cupy, dtype: str = "float32") -> None:
        super().__init__(dtype)
        self.cupy = cupy

    def _from_numpy(self, host, dtype):
        return np.array(host, dtype=dtype).view(self.cupy.ndarray)

    def owns(self, array):
        return isinstance(array, self.cupy.ndarray)

    def to_host(self, array):
        return array.get()

    def synchronize(self):
        self.cupy.get_current_stream().synchronize()

    def with_dtype(self, dtype):
        return FakeCupyBackend(self.cupy, dtype)
