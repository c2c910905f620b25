"""The fused kernels on a GPU: compiled by NVRTC through ``cupy.RawModule``, captured as CUDA graphs.

Imported only when a fused trainer is built on the CuPy backend; CuPy itself is imported only here.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from numpy_mnist.fused.source import NVRTC_OPTIONS, program_source

__all__ = ["CupyDevice"]


class CupyDevice:
    """Device memory as CuPy arrays; kernels from one ``cupy.RawModule`` holding every instantiation
    the trainer names; launches recorded with stream capture into a CUDA graph.

    ``backend`` is the model's CuPy backend; results come back to the host through its ``to_host``.
    """

    name = "cupy"
    backend_name = "cupy"

    def __init__(self, backend) -> None:
        import cupy

        self._cupy, self.backend, self._kernels = cupy, backend, {}

    def compile(self, names) -> None:
        """Compile the program with NVRTC (options :data:`~numpy_mnist.fused.source.NVRTC_OPTIONS`;
        CuPy appends ``-ftz=true``, as for its own kernels) and load every instantiation in ``names``."""
        names = list(names)
        module = self._cupy.RawModule(code=program_source(), options=NVRTC_OPTIONS, name_expressions=names)
        # Compile and load now: loading a module while a stream captures is not allowed.
        self._kernels = {name: module.get_function(name) for name in names}

    def owns(self, array) -> bool:
        return isinstance(array, self._cupy.ndarray)

    def empty(self, n: int, dtype):
        return self._cupy.empty(int(n), dtype=np.dtype(dtype))

    def asarray(self, array, dtype=None):
        return self._cupy.ascontiguousarray(array, dtype=dtype)

    def upload(self, dst, host) -> None:
        dst.set(np.ascontiguousarray(host, dtype=dst.dtype).reshape(dst.shape))

    def to_host(self, array) -> np.ndarray:
        return self.backend.to_host(array)

    def capture(self, launches) -> SimpleNamespace:
        """Record ``launches`` into a CUDA graph (nothing runs yet); replay it with ``.replay()``.

        Captured on a private stream in CuPy's default (relaxed) mode.  Only hand-written kernels
        are launched in between, never cuBLAS (which CuPy refuses during capture), no copy to or
        from the host and no synchronization (which a capturing stream refuses), and nothing that
        allocates: every buffer exists before the capture starts.

        The graph is then uploaded (``Graph.upload``, ``cudaGraphUpload``) to the current stream,
        where it will be replayed: the device receives it now, so the first replay, the first
        timed one too, costs what every later one costs.
        """
        cupy = self._cupy
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                for launch in launches:
                    self._kernels[launch.kernel]((launch.grid,), (launch.block,), launch.args)
            finally:
                graph = stream.end_capture()
        graph.upload(cupy.cuda.get_current_stream())
        # Replayed on the current stream (the one every other CuPy call of the training loop uses): what
        # comes after (reading the losses, copying parameters back after a divergence, the next epoch's
        # batch order) waits for the replay, and the replay for what came before.
        return SimpleNamespace(replay=lambda: graph.launch(cupy.cuda.get_current_stream()))
