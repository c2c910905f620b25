"""The CuPy fast paths: selected only on CuPy, and bitwise the composed path.

Without a GPU the kernel's source is still checked: :func:`emulate_kernel` runs its body, line by
line, with NumPy, and that must give bitwise what the composed loss functions give.  The tests
marked ``gpu`` compile and run the real kernel and the CUDA-graph replay; they are skipped where
CuPy or a CUDA device is missing.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from backends import BackendUnavailableError, get_backend
from numpy_mnist import cuda_kernels
from numpy_mnist.cuda_kernels import MNIST_LOSS_KERNEL, KernelSpec, emulate_kernel
from numpy_mnist.data.loader import DataLoader
from numpy_mnist.errors import InputError
from numpy_mnist.losses import get_loss, mnist_loss, mnist_loss_backward, mnist_loss_value_and_grad
from numpy_mnist.models import linear1, simple_net, value_and_grad_for
from numpy_mnist.optim import SGD


def _run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_kernels_does_not_import_cupy():
    assert _run_python("import sys, numpy_mnist.cuda_kernels; print('cupy' in sys.modules)") == "False"


def test_training_on_numpy_never_imports_the_cuda_module():
    code = ("import sys, numpy as np\n"
            "from numpy_mnist.models import linear1\n"
            "m = linear1(backend='numpy')\n"
            "m.loss_array_and_grads(np.zeros((4, 784), np.float32), np.ones((4, 1), np.float32))\n"
            "print('numpy_mnist.cuda_kernels' in sys.modules, 'cupy' in sys.modules)")
    assert _run_python(code) == "False False"


class _FakeCupyBackend:
    name = "cupy"


def test_the_fused_kernel_is_selected_only_for_cupy_and_mnist_loss():
    mnist, bce = get_loss("mnist_loss"), get_loss("bce")
    assert value_and_grad_for(_FakeCupyBackend(), mnist) is cuda_kernels.mnist_loss_value_and_grad_cuda
    assert value_and_grad_for(_FakeCupyBackend(), bce) == bce.value_and_grad  # no kernel: composed path
    from numpy_mnist import numpy_kernels

    assert value_and_grad_for(get_backend("numpy"), mnist) is numpy_kernels.mnist_loss_value_and_grad
    try:
        strict = get_backend("array_api_strict")
    except BackendUnavailableError:
        return
    assert value_and_grad_for(strict, mnist) == mnist.value_and_grad


def test_a_custom_loss_named_mnist_loss_keeps_its_own_path():
    plain = get_loss("mnist_loss")
    custom = type(plain)("mnist_loss", lambda z, t: z.sum(), plain.backward)
    assert cuda_kernels.fused_value_and_grad(custom) is None


def test_the_model_uses_the_selected_function(monkeypatch):
    model = linear1(backend="numpy")
    calls = []

    def spy(logits, targets):
        calls.append(logits.shape)
        return mnist_loss_value_and_grad(logits, targets)

    monkeypatch.setattr("numpy_mnist.models.value_and_grad_for", lambda backend, loss: spy)
    model.loss = get_loss("bce")  # a new loss object: the choice is made again
    model.loss_array_and_grads(np.zeros((3, 784), np.float32), np.ones((3, 1), np.float32))
    assert calls == [(3, 1)]


def test_kernel_spec_is_a_well_formed_elementwise_kernel():
    spec = MNIST_LOSS_KERNEL
    assert [p.split() for p in spec.in_params.split(", ")] == [["T", "z"], ["T", "t"], ["T", "m"]]
    assert [p.split() for p in spec.out_params.split(", ")] == [["T", "loss"], ["T", "grad"]]
    assert spec.name.isidentifier()
    body = [line.strip() for line in spec.operation.strip().splitlines()]
    assert all(line.endswith(";") for line in body)
    assert "__" not in spec.operation and "fast" not in spec.operation  # no intrinsics, no fast math


def _binary_batch(dtype):
    finite = st.floats(min_value=-200, max_value=200, allow_nan=False, width=32 if dtype == np.float32 else 64)
    special = st.sampled_from([0.0, -0.0, 16.6, -16.6, 88.7, -88.7, 103.9, -103.9])
    return st.integers(1, 50).flatmap(lambda n: st.tuples(
        hnp.arrays(dtype, (n, 1), elements=finite | special),
        hnp.arrays(dtype, (n, 1), elements=st.sampled_from([0.0, 1.0]))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_the_kernel_body_computes_bitwise_the_composed_loss_and_gradient(dtype, data):
    z, t = data.draw(_binary_batch(dtype))
    out = emulate_kernel(MNIST_LOSS_KERNEL, np, z=z, t=t, m=dtype(z.size))
    assert out["grad"].dtype == dtype
    assert out["grad"].tobytes() == mnist_loss_backward(z, t).tobytes()
    assert np.asarray(np.sum(out["loss"]) / z.size).tobytes() == np.asarray(mnist_loss(z, t)).tobytes()


def test_the_cupy_wrapper_runs_the_kernel_and_averages_like_the_composed_path(monkeypatch):
    """The Python around the kernel (argument order, M in the logits' dtype, outputs, sum / M),
    with a stand-in ``cupy.ElementwiseKernel`` that runs the kernel body through :func:`emulate_kernel`."""
    import types

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            self.spec = KernelSpec(name, in_params, out_params, operation)

        def __call__(self, *args):
            names = [p.split()[-1] for p in self.spec.in_params.split(",")]
            out = emulate_kernel(self.spec, np, **dict(zip(names, args)))
            return tuple(out[p.split()[-1]] for p in self.spec.out_params.split(","))

    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(ElementwiseKernel=ElementwiseKernel))
    monkeypatch.setattr(cuda_kernels, "_COMPILED", {})
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        z = (rng.standard_normal((300, 1)) * 20).astype(dtype)
        t = (rng.random((300, 1)) < 0.5).astype(dtype)
        loss, grad = cuda_kernels.mnist_loss_value_and_grad_cuda(z, t)
        ref_loss, ref_grad = mnist_loss_value_and_grad(z, t)
        assert np.asarray(loss).tobytes() == np.asarray(ref_loss).tobytes()
        assert grad.dtype == dtype and grad.tobytes() == ref_grad.tobytes()
    with pytest.raises(InputError):
        cuda_kernels.mnist_loss_value_and_grad_cuda(z, t[:, 0])


def test_emulation_refuses_what_it_cannot_translate():
    for body in ("const T a = sqrt(z);", "loss = z + 0.5;", "grad = z; loss = z;", "if (z > 0) loss = z;"):
        spec = KernelSpec("k", "T z", "T loss", body)
        with pytest.raises(ValueError):
            emulate_kernel(spec, np, z=np.zeros(2))


# -- on a GPU ---------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_kernel_is_bitwise_the_composed_path_on_cupy(cupy_backend, dtype):
    backend = get_backend(cupy_backend, dtype)
    rng = np.random.default_rng(0)
    z_host = np.concatenate([rng.standard_normal(5000) * 30, [0.0, -0.0, 16.6, -16.6, 88.7, -88.7, 103.9, -800]])
    z = backend.asarray(z_host[:, None])
    t = backend.asarray((rng.random((z.shape[0], 1)) < 0.5).astype(np.float64))
    fused_loss, fused_grad = cuda_kernels.mnist_loss_value_and_grad_cuda(z, t)
    loss, grad = mnist_loss_value_and_grad(z, t)
    host = backend.to_host
    assert host(fused_grad).tobytes() == host(grad).tobytes()
    assert host(fused_loss).tobytes() == host(loss).tobytes()
    assert host(grad).tobytes() == host(mnist_loss_backward(z, t)).tobytes()


@pytest.mark.gpu
def test_cupy_training_with_the_kernel_is_bitwise_the_composed_path(cupy_backend, monkeypatch):
    from numpy_mnist.learner import train_epoch

    rng = np.random.default_rng(0)
    x = rng.random((700, 784), dtype=np.float32)
    y = (rng.random((700, 1)) < 0.5).astype(np.float32)

    def trained(fused: bool):
        if not fused:
            monkeypatch.setattr("numpy_mnist.models.value_and_grad_for", lambda backend, loss: loss.value_and_grad)
        model = simple_net(hidden=16, seed=1, backend=cupy_backend)
        loader = DataLoader(x, y, 256, backend=cupy_backend)
        opt = SGD(model.params, 0.1)
        losses = [train_epoch(model, loader, opt) for _ in range(3)]
        monkeypatch.undo()
        return losses, {k: cupy_backend.to_host(v) for k, v in model.params.items()}

    (l1, p1), (l2, p2) = trained(True), trained(False)
    assert l1 == l2
    assert all(p1[k].tobytes() == p2[k].tobytes() for k in p1)
