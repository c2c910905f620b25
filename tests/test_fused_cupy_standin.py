"""``CupyDevice`` run against a stand-in ``cupy`` module (:mod:`cupy_standin`), on the CPU.

The stand-in offers exactly the CuPy calls the device makes, with CuPy's signatures, and refuses
what real CuPy refuses (host arrays as kernel arguments, NumPy input to ``ascontiguousarray``, a
list of options, transfers, synchronization and allocation during a capture): the first tests here
show each refusal.  Its kernels are the g++ build of the same ``.cu`` files.  What this proves on a
CPU: the device compiles and loads every kernel before it captures, launches each with the grid,
block and argument types the kernel takes, does nothing during a capture but launch kernels, never
runs a kernel outside a capture, uploads each graph before its first replay and replays graphs on
the current stream; and the trainer on top trains an epoch equal to the array path.  What it
cannot prove: that the CUDA driver accepts all of it (the ``gpu`` tests do that; NVRTC compiles
the sources in ``test_fused_nvrtc.py``).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from cupy_standin import CaptureError, FakeCupyBackend, fake_cupy
from host_build import compiler

from numpy_mnist.backends.numpy_backend import NumpyBackend
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.fused.source import NVRTC_OPTIONS, program_source
from numpy_mnist.learner import train_epoch
from numpy_mnist.models import mlp10, simple_net
from numpy_mnist.optim import SGD

needs_gxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++) to build the kernels")


@pytest.fixture
def cupy(monkeypatch, tmp_path_factory):
    module = fake_cupy(tmp_path_factory.mktemp("standin-kernels"))
    monkeypatch.setitem(sys.modules, "cupy", module)
    return module


# -- the stand-in refuses what CuPy refuses ---------------------------------------------------------

def test_the_standin_refuses_a_list_of_options(cupy):
    with pytest.raises(TypeError, match=r"Argument 'options' has incorrect type \(expected tuple, got list\)"):
        cupy.RawModule(code=program_source(), options=list(NVRTC_OPTIONS), name_expressions=["sum_parts<float>"])


def test_the_standin_refuses_numpy_input_to_ascontiguousarray(cupy):
    device_array = cupy.ascontiguousarray(cupy.empty(3, np.float32))
    assert isinstance(device_array, cupy.ndarray)
    with pytest.raises(TypeError, match=r"Argument 'a' has incorrect type \(expected "
                                        r"cupy._core.core._ndarray_base, got ndarray\)"):
        cupy.ascontiguousarray(np.zeros(3, np.float32))


@needs_gxx
def test_the_standin_refuses_a_host_array_as_a_kernel_argument(cupy):
    kernel = cupy.RawModule(code=program_source(), options=NVRTC_OPTIONS,
                            name_expressions=["sum_parts<float>"]).get_function("sum_parts<float>")
    out = cupy.empty(2, np.float32)
    parts, correct = cupy.empty(4, np.float32), cupy.empty(4, np.int32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        for host in (np.zeros(4, np.float32), np.zeros(1, np.float32)):  # CuPy passes size one by value
            with pytest.raises(TypeError, match="numpy.ndarray of shape .* as a kernel parameter"):
                kernel((1,), (1,), (host, correct, np.int32(4), out))
        with pytest.raises(TypeError, match="Argument 'grid' has incorrect type"):
            kernel(1, (1,), (parts, correct, np.int32(4), out))
        kernel((1,), (1,), (parts, correct, np.int32(4), out))  # device arrays and NumPy scalars: fine
        graph = stream.end_capture()
    assert len(graph.recorded) == 1


@pytest.mark.parametrize("call", ["get", "set", "synchronize", "empty", "ascontiguousarray copy"])
def test_the_standin_refuses_transfers_synchronization_and_allocation_during_a_capture(cupy, call):
    array = cupy.empty(3, np.float32)
    calls = {"get": lambda: array.get(), "set": lambda: array.set(np.ones(3, np.float32)),
             "synchronize": lambda: cupy.get_current_stream().synchronize(),
             "empty": lambda: cupy.empty(3, np.float32),
             "ascontiguousarray copy": lambda: cupy.ascontiguousarray(array, np.float64)}
    calls[call]()  # allowed outside a capture
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(CaptureError, match="cudaErrorStreamCaptureUnsupported"):
            calls[call]()
        assert cupy.ascontiguousarray(array) is array  # no copy needed: nothing allocated, allowed
        stream.end_capture()
    calls[call]()


def test_the_standin_refuses_a_capture_on_the_legacy_default_stream(cupy):
    with pytest.raises(RuntimeError, match="cannot capture on the default"):
        cupy.get_current_stream().begin_capture()


# -- the device, on the stand-in --------------------------------------------------------------------

@needs_gxx
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
    backend = FakeCupyBackend(cupy, "float64")
    reference = make(NumpyBackend("float64"))
    model = make(backend)
    train = DataLoader(tx, ty, 128, shuffle=True, seed=1, backend=backend)
    learner = FusedLearner(model, train, DataLoader(vx, vy, 128, backend=backend), SGD(model.params, 0.1),
                           device=CupyDevice(backend))
    assert cupy.replays == []  # compiled and recorded, nothing run yet
    uploaded = [graph for event, graph, _ in cupy.events if event == "upload"]
    assert len(uploaded) == 2 and all(stream is cupy.null for *_, stream in cupy.events)  # train and valid
    history = learner.fit(2)
    # the untrained model's validation (Learner.start), then train + valid per epoch
    assert len(cupy.replays) == 5 and all(s is cupy.null for s in cupy.replays)
    launched = [graph for event, graph, _ in cupy.events if event == "launch"]
    assert set(launched) == set(uploaded)  # every graph replayed was uploaded first
    ref_dl = DataLoader(tx, ty, 128, shuffle=True, seed=1, backend=NumpyBackend("float64"))
    opt = SGD(reference.params, 0.1)
    losses = [train_epoch(reference, ref_dl, opt) for _ in range(2)]
    assert [r.train_loss for r in history] == pytest.approx(losses, rel=1e-12)
    for name, value in reference.params.items():
        np.testing.assert_allclose(backend.to_host(model.params[name]), value, rtol=0,
                                   atol=1e-12 * np.max(np.abs(value)))


@needs_gxx
def test_the_trainer_picks_the_cupy_device_for_a_cupy_model(cupy):
    from numpy_mnist.fused.cupy_device import CupyDevice
    from numpy_mnist.fused.trainer import FusedTrainer

    backend = FakeCupyBackend(cupy, "float32")
    model = simple_net(hidden=4, seed=0, backend=backend)
    x, y = np.random.default_rng(0).random((40, 784), dtype=np.float32), np.ones((40, 1), np.float32)
    trainer = FusedTrainer(model, DataLoader(x, y, 16, backend=backend), SGD(model.params, 0.1))
    assert isinstance(trainer.device, CupyDevice)
    assert np.isfinite(trainer.train_epoch(1))
