"""``CupyDevice`` run against a stand-in ``cupy`` module, on the CPU.

The stand-in offers exactly the CuPy calls the device makes, with CuPy's signatures (as in CuPy's
``cupy/cuda/graph.pyx``, ``stream.pyx`` and ``RawModule``): ``RawModule(code=, options=,
name_expressions=)`` and ``get_function``, ``kernel(grid, block, args)`` on the current stream,
``Stream(non_blocking=True)`` as a context with ``begin_capture``/``end_capture``, ``Graph.launch(stream)``,
``empty``, ``ascontiguousarray`` and ``ndarray.set``.  Its kernels are the g++ build of the same
``.cu`` files.  What this proves on a CPU: the device compiles and loads every kernel before it
captures, launches each with the grid, block and argument types the kernel takes, never runs a
kernel outside a capture, and replays graphs on the current stream; and the trainer on top
trains an epoch equal to the array path.  What it cannot prove: that NVRTC and the CUDA driver
accept all of it (the ``gpu`` tests do that, and ``nvcc`` compiles the sources in a test).
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from backends.numpy_backend import NumpyBackend
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.fused.host import HostDevice, compiler
from numpy_mnist.fused.source import NVRTC_OPTIONS, program_source
from numpy_mnist.learner import train_epoch
from numpy_mnist.models import mlp10, simple_net
from numpy_mnist.optim import SGD

pytestmark = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++) to build the kernels")


class FakeArray(np.ndarray):
    """A device array: NumPy memory, with CuPy's ``set`` (host -> device copy)."""

    def set(self, host, stream=None):
        host = np.asarray(host)
        assert host.shape == self.shape and host.dtype == self.dtype, "ndarray.set needs the same shape and dtype"
        self[...] = host


class FakeStream:
    def __init__(self, cupy, non_blocking=False, null=False):
        self.cupy, self.null, self.capturing, self.recorded = cupy, null, False, None

    def __enter__(self):
        self.cupy.stack.append(self)
        return self

    def __exit__(self, *exc):
        self.cupy.stack.pop()
        return False

    def begin_capture(self, mode=None):
        assert not self.null, "capture cannot start on the legacy default stream"
        assert not self.capturing
        self.capturing, self.recorded = True, []

    def end_capture(self):
        assert self.capturing
        self.capturing = False
        return FakeGraph(self.cupy, self.recorded)


class FakeGraph:
    def __init__(self, cupy, recorded):
        self.cupy, self.recorded = cupy, recorded

    def launch(self, stream=None):
        assert stream is None or isinstance(stream, FakeStream)
        self.cupy.replays.append(stream)
        for run in self.recorded:
            run()


class FakeKernel:
    def __init__(self, cupy, kernel):
        self.cupy, self.kernel = cupy, kernel

    def __call__(self, grid, block, args, *, shared_mem=0):
        assert isinstance(grid, tuple) and isinstance(block, tuple) and len(grid) == len(block) == 1
        argv = self.kernel.pack(args)  # the types are checked at launch, as the host device checks them
        stream = self.cupy.get_current_stream()
        assert stream.capturing, f"{self.kernel.name} launched outside a capture"
        stream.recorded.append(lambda: self.kernel.run(grid[0], block[0], argv[0]))


class FakeRawModule:
    def __init__(self, cupy, code=None, options=(), name_expressions=None):
        assert code == program_source() and tuple(options) == NVRTC_OPTIONS
        self.cupy, self.names, self.loaded = cupy, list(name_expressions), False
        self.device = HostDevice(cache_dir=cupy.cache)

    def get_function(self, name):
        assert name in self.names, f"{name} is not among the name expressions"
        assert not self.cupy.get_current_stream().capturing, "a module is loaded while a stream captures"
        if not self.loaded:
            self.device.compile(self.names)
            self.loaded = True
        return FakeKernel(self.cupy, self.device._kernels[name])


def fake_cupy(cache) -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.cache, cupy.replays = cache, []
    cupy.ndarray = FakeArray
    null = FakeStream(cupy, null=True)
    cupy.stack = [null]
    cupy.get_current_stream = lambda: cupy.stack[-1]
    cupy.cuda = types.SimpleNamespace(Stream=lambda non_blocking=False: FakeStream(cupy, non_blocking),
                                      get_current_stream=cupy.get_current_stream)
    cupy.RawModule = lambda **kw: FakeRawModule(cupy, **kw)
    cupy.empty = lambda n, dtype: np.full(n, np.nan if np.dtype(dtype).kind == "f" else -1, dtype).view(FakeArray)
    cupy.ascontiguousarray = lambda a, dtype=None: np.ascontiguousarray(a, dtype=dtype).view(FakeArray)
    cupy.null = null
    return cupy


class FakeCupyBackend(NumpyBackend):
    """NumPy arithmetic with the name ``cupy`` and arrays of the stand-in's ``ndarray``."""

    name = "cupy"
    is_gpu = True

    def _from_numpy(self, host, dtype):
        return np.array(host, dtype=dtype).view(FakeArray)

    def owns(self, array):
        return isinstance(array, FakeArray)

    def to_host(self, array):
        return np.array(array, copy=True).view(np.ndarray)


@pytest.fixture
def cupy(monkeypatch, tmp_path_factory):
    module = fake_cupy(tmp_path_factory.mktemp("standin-kernels"))
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


@pytest.mark.parametrize("make, data", [(lambda b: simple_net(seed=0, backend=b), "binary"),
                                        (lambda b: mlp10(hidden=16, seed=0, backend=b), "digits")])
def test_cupy_device_records_every_launch_and_replays_on_the_current_stream(cupy, make, data):
    from numpy_mnist.fused.cupy_device import CupyDevice
    from numpy_mnist.fused.learner import FusedLearner

    tx, ty, vx, vy = load_mnist_sample()
    tx, vx = tx[::12], vx[::8]
    if data == "binary":
        ty, vy = ty[::12], vy[::8]
    else:
        rng = np.random.default_rng(0)
        ty, vy = rng.integers(0, 10, len(tx)), rng.integers(0, 10, len(vx))
    backend = FakeCupyBackend("float64")
    reference = make(NumpyBackend("float64"))
    model = make(backend)
    train = DataLoader(tx, ty, 128, shuffle=True, seed=1, backend=backend)
    learner = FusedLearner(model, train, DataLoader(vx, vy, 128, backend=backend), lr=0.1,
                           device=CupyDevice(backend))
    assert cupy.replays == []  # compiled and recorded, nothing run yet
    history = learner.fit(2)
    # the untrained model's validation (Learner.start), then train + valid per epoch
    assert len(cupy.replays) == 5 and all(s is cupy.null for s in cupy.replays)
    ref_dl = DataLoader(tx, ty, 128, shuffle=True, seed=1, backend=NumpyBackend("float64"))
    opt = SGD(reference.params, 0.1)
    losses = [train_epoch(reference, ref_dl, opt) for _ in range(2)]
    assert [r.train_loss for r in history] == pytest.approx(losses, rel=1e-12)
    for name, value in reference.params.items():
        np.testing.assert_allclose(backend.to_host(model.params[name]), value, rtol=0,
                                   atol=1e-12 * np.max(np.abs(value)))


def test_the_trainer_picks_the_cupy_device_for_a_cupy_model(cupy):
    from numpy_mnist.fused.cupy_device import CupyDevice
    from numpy_mnist.fused.trainer import FusedTrainer

    backend = FakeCupyBackend("float32")
    model = simple_net(hidden=4, seed=0, backend=backend)
    x, y = np.random.default_rng(0).random((40, 784), dtype=np.float32), np.ones((40, 1), np.float32)
    trainer = FusedTrainer(model, DataLoader(x, y, 16, backend=backend), SGD(model.params, 0.1))
    assert isinstance(trainer.device, CupyDevice)
    assert np.isfinite(trainer.train_epoch(1))
