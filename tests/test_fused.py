"""The fused graph computes what the readable array path computes: on the CPU, and on a GPU.

Every test here runs twice: on ``host`` (the same ``.cu`` kernels built by ``g++``, each block's
threads run as fibers that meet at the kernels' barriers, :mod:`host_build`: any
machine with a C++ compiler) and on ``cupy`` (the
real thing, NVRTC and CUDA graphs: marked ``gpu``, skipped without CuPy and a GPU).  The reference
is always the array path on the same backend, from the same initial parameters, over the same
batches in the same order.

The bounds asserted, and why
----------------------------
Each kernel computes the same operations as the array path, in the same precision; what differs is
the order of the sums over the batch (the gradients) and over the pixels or hidden units (the
forward products), which BLAS takes in blocks and the kernels take one term after another.
(And on the CPU, glibc's ``exp``/``log1p`` stand in for CUDA's, which may differ in the last bit.)

* float64: ``max |p_fused - p_array| <= 1e-12 max |p_array|`` per parameter after an epoch.  A
  reordered sum of n terms moves by at most about n u sum|terms| (Higham, *Accuracy and Stability
  of Numerical Algorithms*, section 4.2), n <= 784 and u = 2**-53: about 1e-13 relative in the
  worst case for one step, 1e-15 typically, and measured 1e-16 to 2e-15 after an epoch.
* float32: ``max |p_fused - p_array| <= 64 u max |p_array|``, u = 2**-24 (about 3.8e-6 relative).
  The worst-case reordering bound of one sum, n u sum|terms|, is 256 to 784 ulps of the terms'
  magnitudes, but it needs every rounding error to fall the same way; rounding errors of a long
  sum behave like a random walk, about sqrt(n) u, i.e. 16 (batch of 256) to 28 (784 pixels) ulps.
  Measured on the CPU over the book's sample, after two epochs: 2 to 10 ulps of max |p| for every
  model and loss, while the array path's own float32 result is 0.5 to 27 ulps from its float64
  one: the fused path is as close to the array path as float32 allows.  64 ulps is twice the
  random-walk estimate for the longest sum and four times anything measured; a real mistake (a
  wrong index, a missing 1/n, a step taken from an updated weight) moves parameters by 1e-3 or
  more, some 10^4 ulps.
* Losses and validation: the same bounds, relative; accuracy equal in float64, and in float32 to
  within one image (a logit that lands within rounding of the decision boundary may flip).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from host_build import HostDevice, compiler

from numpy_mnist.backends import get_backend
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.errors import DivergenceError, InputError
from numpy_mnist.fused.learner import FusedLearner
from numpy_mnist.fused.trainer import GEOMETRY, FusedTrainer, why_not_kernels
from numpy_mnist.learner import Learner, train_epoch, validate_epoch
from numpy_mnist.losses import get_loss
from numpy_mnist.models import MLP, linear1, linear10, mlp10, simple_net
from numpy_mnist.optim import SGD
from numpy_mnist.training import fit, make_learner, why_not_fused

U32, F64_RTOL = 2.0 ** -24, 1e-12
F32_RTOL = 64 * U32


@pytest.fixture(scope="module")
def host_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("host-kernels")


class Where:
    """Where a test runs: the backend of the models, and the device of the fused trainer."""

    def __init__(self, kind: str, cache) -> None:
        self.kind, self.cache = kind, cache

    def backend(self, dtype: str):
        return get_backend("numpy" if self.kind == "host" else "cupy", dtype)

    def device(self, **options):
        return HostDevice(cache_dir=self.cache, **options) if self.kind == "host" else None


@pytest.fixture(params=["host", pytest.param("cupy", marks=pytest.mark.gpu)])
def where(request, host_cache):
    if request.param == "host" and compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the fused kernels for the CPU")
    if request.param == "cupy":
        request.getfixturevalue("cupy_backend")  # skips where no GPU is usable
    return Where(request.param, host_cache)


@pytest.fixture(scope="module")
def sample():
    return load_mnist_sample()


def binary_data(sample, rows=600):
    """The first and last ``rows`` training images (3s then 7s), and 300 validation images."""
    tx, ty, vx, vy = sample
    idx = np.r_[0:rows, len(tx) - rows:len(tx)]
    return tx[idx], ty[idx], vx[::7], vy[::7]


def digit_data(sample, rows=900, classes=10):
    """Real images with random labels: the arithmetic of ten classes needs no meaning."""
    tx, _, vx, _ = sample
    rng = np.random.default_rng(4)
    return (tx[::13][:rows], rng.integers(0, classes, rows).astype(np.int64),
            vx[:250], rng.integers(0, classes, 250).astype(np.int64))


#: (name, model factory (backend -> model), data kind, lr, batch size)
MODELS = {
    "linear1": (lambda b: linear1(seed=0, backend=b), "binary", 1.0, 256),
    "linear1-bce": (lambda b: linear1(seed=1, backend=b, loss="bce"), "binary", 1.0, 256),
    "simple_net": (lambda b: simple_net(seed=0, backend=b), "binary", 0.1, 256),
    "simple_net-bce": (lambda b: simple_net(hidden=20, seed=2, backend=b, loss="bce"), "binary", 0.1, 256),
    "linear10": (lambda b: linear10(backend=b), "digits", 0.5, 128),
    "mlp10": (lambda b: mlp10(hidden=24, seed=0, backend=b), "digits", 0.5, 128),
    # more hidden units than one block's tile (3 unit blocks of 32), batches of 200 rows (a partial row tile)
    "mlp10-wide": (lambda b: mlp10(hidden=70, seed=1, backend=b), "digits", 0.5, 200),
}


def loaders(sample, data_kind, batch_size, backend, shuffle=False):
    tx, ty, vx, vy = binary_data(sample) if data_kind == "binary" else digit_data(sample)
    return (DataLoader(tx, ty, batch_size, shuffle=shuffle, seed=5, backend=backend),
            DataLoader(vx, vy, batch_size, backend=backend))


def host(backend, params) -> dict:
    return {k: np.asarray(backend.to_host(v), dtype=np.float64) for k, v in params.items()}


def trained(where, sample, name, dtype, *, fused, epochs=1, shuffle=False, device_options=None):
    """Train ``epochs`` epochs of model ``name``; its parameters, mean losses, and validation figures."""
    make, data_kind, lr, bs = MODELS[name]
    backend = where.backend(dtype)
    model = make(backend)
    train_dl, valid_dl = loaders(sample, data_kind, bs, backend, shuffle=shuffle)
    opt = SGD(model.params, lr)
    trainer = (FusedTrainer(model, train_dl, opt, valid_dl, device=where.device(**(device_options or {})))
               if fused else None)
    losses, valid = [], []
    for epoch in range(epochs):
        train_dl.set_epoch(epoch)
        if fused:
            losses.append(trainer.train_epoch(epoch + 1))
            assert train_dl.epoch == epoch  # the loader's epoch is the Learner's to set, not the trainer's
            valid.append(trainer.validate())
        else:
            losses.append(train_epoch(model, train_dl, opt, epoch=epoch + 1))
            valid.append(validate_epoch(model, valid_dl))
    return host(backend, model.params), losses, valid, trainer


def assert_close(fused, array, rtol, what=""):
    """``max |fused - array| <= rtol * max |array|`` for every parameter (the bound of this module)."""
    for k in array:
        scale = np.max(np.abs(array[k]))
        err = np.max(np.abs(fused[k] - array[k]))
        assert err <= rtol * scale, f"{what}{k}: max |fused - array| = {err:.3g}, {err / scale:.3g} of max |p|"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(MODELS))
def test_one_epoch_equals_the_array_path(where, sample, name, dtype):
    rtol = F64_RTOL if dtype == "float64" else F32_RTOL
    p_fused, l_fused, v_fused, trainer = trained(where, sample, name, dtype, fused=True)
    p_array, l_array, v_array, _ = trained(where, sample, name, dtype, fused=False)
    assert_close(p_fused, p_array, rtol)
    assert l_fused[0] == pytest.approx(l_array[0], rel=rtol)
    (vl_f, acc_f), (vl_a, acc_a) = v_fused[0], v_array[0]
    assert vl_f == pytest.approx(vl_a, rel=rtol)
    n_valid = trainer.valid_dl.n_rows
    assert abs(acc_f - acc_a) * n_valid <= (0 if dtype == "float64" else 1) + 1e-9


@pytest.mark.parametrize("name", ["simple_net-bce", "mlp10"])
def test_shuffled_epochs_replay_one_graph_with_the_order_refilled(where, sample, name):
    p_fused, l_fused, _, trainer = trained(where, sample, name, "float64", fused=True, epochs=3, shuffle=True)
    p_array, l_array, _, _ = trained(where, sample, name, "float64", fused=False, epochs=3, shuffle=True)
    assert_close(p_fused, p_array, F64_RTOL)
    assert l_fused == pytest.approx(l_array, rel=F64_RTOL)
    graph = trainer._train
    assert trainer._ensure_train() is graph  # recorded once, replayed three times
    dl = trainer.train_dl
    assert (trainer.device.to_host(graph.buffers["perm"]) == dl.order(2)).all()  # the third epoch's order


def test_an_epoch_in_order_after_a_shuffled_one_reads_the_rows_in_order_again(where, sample):
    """The order buffer holds the last shuffled epoch's order until it is refilled: a loader switched
    to ``shuffle=False`` afterwards trains its next epoch in order, as the array path does."""
    make, data_kind, lr, bs = MODELS["simple_net-bce"]
    backend = where.backend("float64")
    results = []
    for fused in (True, False):
        model = make(backend)
        train_dl, _ = loaders(sample, data_kind, bs, backend, shuffle=True)
        opt = SGD(model.params, lr)
        trainer = FusedTrainer(model, train_dl, opt, device=where.device()) if fused else None
        for epoch, shuffle in enumerate((True, False)):
            train_dl.shuffle = shuffle
            train_dl.set_epoch(epoch)
            loss = trainer.train_epoch(epoch + 1) if fused else train_epoch(model, train_dl, opt, epoch=epoch + 1)
        results.append((host(backend, model.params), loss))
    assert_close(results[0][0], results[1][0], F64_RTOL)
    assert results[0][1] == pytest.approx(results[1][1], rel=F64_RTOL)


@pytest.mark.parametrize("name", ["linear1", "simple_net", "mlp10"])
def test_two_runs_are_bitwise_identical(where, sample, name):
    first = trained(where, sample, name, "float32", fused=True, epochs=2, shuffle=True)
    second = trained(where, sample, name, "float32", fused=True, epochs=2, shuffle=True)
    assert first[1] == second[1] and first[2] == second[2]
    for k in first[0]:
        assert first[0][k].tobytes() == second[0][k].tobytes(), k


def test_threads_in_reverse_order_give_bitwise_the_same_epoch(sample, host_cache):
    """No thread reads what another writes without a barrier in between: running the blocks, and the
    threads between two barriers, backwards changes no bit."""
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the fused kernels for the CPU")
    where = Where("host", host_cache)
    for name in ("linear1", "simple_net", "linear10", "mlp10"):
        forward = trained(where, sample, name, "float32", fused=True)
        backward = trained(where, sample, name, "float32", fused=True, device_options={"reverse": True})
        assert forward[1] == backward[1] and forward[2] == backward[2]
        for k in forward[0]:
            assert forward[0][k].tobytes() == backward[0][k].tobytes(), (name, k)


def host_only(host_cache) -> Where:
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the fused kernels for the CPU")
    return Where("host", host_cache)


def one_fused_epoch(where, sample, name, **device_options) -> tuple[dict, dict]:
    """One epoch of model ``name`` (float32) through the fused kernels, without validation, and the
    same epoch on the array path: both parameter dicts."""
    make, data_kind, lr, bs = MODELS[name]
    out = []
    for fused in (True, False):
        backend = where.backend("float32")
        model = make(backend)
        train_dl, _ = loaders(sample, data_kind, bs, backend)
        opt = SGD(model.params, lr)
        if fused:
            FusedTrainer(model, train_dl, opt, device=where.device(**device_options)).train_epoch(1)
        else:
            train_epoch(model, train_dl, opt)
        out.append(host(backend, model.params))
    return out[0], out[1]


@pytest.mark.parametrize("name", ["linear1", "linear10", "mlp10"])  # every kernel of a training batch
def test_the_kernels_need_their_barriers(sample, host_cache, name):
    """The kernels share tiles through shared memory: with ``__syncthreads()`` made a no-op (each
    thread then runs to its end before the next starts, reading tiles its block has not loaded
    yet), the epoch is wrong by far more than the bound; with the barriers honoured, it is right."""
    where = host_only(host_cache)
    fused, array = one_fused_epoch(where, sample, name)
    assert_close(fused, array, F32_RTOL)
    broken, array = one_fused_epoch(where, sample, name, ignore_barriers=True)
    worst = max(np.max(np.abs(broken[k] - array[k])) / np.max(np.abs(array[k])) for k in array)
    assert not worst <= 1000 * F32_RTOL  # also true when NaN


SHIM_PROGRAM = r"""
#define NUMPY_MNIST_HOST
#include "host_shim.h"
#include <cstdio>

// Each thread writes its slot, waits, then reads its neighbour's: right only if the barrier holds.
__global__ void rotate(int* out)
{
    __shared__ int slot[64];
    slot[threadIdx.x] = 1000 * blockIdx.x + threadIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = slot[(threadIdx.x + 1) % blockDim.x];
}

// Half the threads return before the barrier the other half waits at.
__global__ void diverge(int* out)
{
    if (threadIdx.x % 2 == 0)
        return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

int main()
{
    static int out[4 * 64];
    int* o = out;
    void* args[] = {&o};
    for (int ignore = 1; ignore >= 0; --ignore)
        for (int reverse = 0; reverse <= 1; ++reverse) {
            numpy_mnist_host::ignore_barriers = ignore;
            numpy_mnist_host::reverse_order = reverse;
            const int error = numpy_mnist_host::launch(&rotate, 4, 64, args);
            int right = 0;
            for (int i = 0; i < 4 * 64; ++i)
                right += out[i] == 1000 * (i / 64) + (i % 64 + 1) % 64;
            std::printf("rotate ignore=%d reverse=%d error=%d right=%d\n", ignore, reverse, error, right);
        }
    numpy_mnist_host::ignore_barriers = false;
    std::printf("diverge error=%d\n", numpy_mnist_host::launch(&diverge, 1, 64, args));
}
"""


@pytest.mark.parametrize("portable", [False, True])
def test_the_cpu_build_honours_shared_memory_and_barriers(tmp_path, portable):
    """host_shim.h on its own, on a kernel that is right only if no thread passes ``__syncthreads()``
    before every thread of its block has reached it: right forwards and backwards, wrong with the
    barriers ignored, and a block whose threads do not all reach the barrier is an error."""
    from host_build import HOST_FLAGS, SHIM_DIR

    cxx = compiler()
    if cxx is None:
        pytest.skip("no C++ compiler (g++) to build the fused kernels for the CPU")
    source, program = tmp_path / "shim.cpp", tmp_path / "shim"
    source.write_text(SHIM_PROGRAM)
    flags = [f for f in HOST_FLAGS if f not in ("-fPIC", "-shared")]
    flags += ["-DNUMPY_MNIST_HOST_UCONTEXT"] if portable else []
    built = subprocess.run([cxx, *flags, "-I", str(SHIM_DIR), str(source), "-o", str(program)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[2:] == ["rotate ignore=0 reverse=0 error=0 right=256", "rotate ignore=0 reverse=1 error=0 right=256",
                         "diverge error=1"]
    for line in lines[:2]:  # barriers ignored: each thread reads its neighbour's slot before it is written
        assert line.startswith("rotate ignore=1") and int(line.rsplit("=", 1)[1]) < 256, line


def test_portable_fibers_give_bitwise_the_same_epoch(sample, host_cache):
    """The fibers switched by ucontext (other CPUs than x86-64) run the kernels exactly as the
    assembly switch does: the same threads, in the same order, between the same barriers."""
    where = host_only(host_cache)
    first = trained(where, sample, "linear1", "float32", fused=True)
    portable = trained(where, sample, "linear1", "float32", fused=True, device_options={"portable_fibers": True})
    assert first[1] == portable[1] and first[2] == portable[2]
    for k in first[0]:
        assert first[0][k].tobytes() == portable[0][k].tobytes(), k


def test_the_launches_follow_the_kernels_tiles(where, sample):
    """At the book's batch of 256 rows: enough blocks to spread over the GPU, whole warps, and the
    per-block thread count each kernel is written for."""
    g = GEOMETRY

    def first_batch(trainer):
        return {launch.kernel.split("<")[0]: (launch.grid, launch.block)
                for launch in trainer._train.buffers["launches"][:trainer.launches_per_batch]}

    *_, trainer = trained(where, sample, "simple_net", "float32", fused=True)
    grid = first_batch(trainer)
    assert grid["mlp_hidden"] == (256 // g["MLP_ROWS"], g["MLP_THREADS"])  # 30 units: one unit block
    assert grid["mlp_rows"] == (256 // g["MLP_ROWS"], g["MLP_THREADS"])
    assert grid["mlp_step"] == (-(-784 // g["MLP_COLS"]) + 1, g["MLP_THREADS"])  # w1 blocks, then the rest
    *_, trainer = trained(where, sample, "linear10", "float32", fused=True)
    grid = first_batch(trainer)
    assert grid["linear_rows"] == (128 // g["LINEAR_ROWS"], 96)  # 8 rows x 10 logits, in 3 warps
    assert grid["linear_step"] == (-(-784 // g["LINEAR_COLS"]) + 1, 320)  # 32 pixels x 10 classes


# -- the fused ReLU at exactly 0, and the bound this module asserts -------------------------------------

def relu_tie_model(backend, loss):
    """simple_net in miniature (2 pixels, 3 hidden units), where row 0's first two hidden
    pre-activations are exactly 0, and row 2, an all-zero image, has pre-activations b1 (small dyadic
    numbers: every sum is exact in any order)."""
    w1 = np.array([[1.0, -1.0, 1.0], [0.5, 0.25, 1.0]])
    x = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 0.0], [2.0, 0.5]])
    b1 = -(x[0] @ w1) + np.array([0.0, 0.0, 4.0])  # pre-activations of row 0: [0, 0, 4]
    params = {"w1": w1, "b1": b1, "w2": np.array([[1.0], [-2.0], [0.5]]), "b2": np.array([0.25])}
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    assert np.all((x @ w1 + b1)[0, :2] == 0)
    return MLP({k: backend.asarray(v) for k, v in params.items()}, backend, loss), x, y


@pytest.mark.parametrize("loss", ["mnist_loss", "bce"])
def test_fused_relu_ties_follow_the_array_path_and_pytorch(host_cache, loss):
    """relu'(0) = 0, as in PyTorch and the array path: a hidden unit exactly on the kink passes no
    gradient back to w1 and b1.  (Taking relu'(0) = 1 moves w1 and b1 by some 1e-2 here.)"""
    where, lr = host_only(host_cache), 0.5
    backend = where.backend("float64")
    model, x, y = relu_tie_model(backend, loss)
    start = host(backend, model.params)
    from numpy_mnist import torch_twin

    grads = torch_twin.loss_and_grads(model, x, y)[1] if torch_twin.available() else None
    dl = DataLoader(x, y, 4, backend=backend)
    FusedTrainer(model, dl, SGD(model.params, lr), device=where.device()).train_epoch(1)
    fused = host(backend, model.params)
    array_model, _, _ = relu_tie_model(backend, loss)
    train_epoch(array_model, DataLoader(x, y, 4, backend=backend), SGD(array_model.params, lr))
    assert_close(fused, host(backend, array_model.params), F64_RTOL)
    if grads is None:
        pytest.skip("PyTorch is not installed: the fused kernels were checked against the array path only")
    assert_close(fused, {k: start[k] - grads[k] * lr for k in start}, F64_RTOL, what="against PyTorch: ")


@pytest.mark.parametrize("rtol", [F64_RTOL, F32_RTOL])
def test_the_fused_against_array_bound_is_the_one_applied(rtol):
    """assert_close passes an error of half its tolerance and fails one of twice it, for every
    parameter and either sign: the bound stated at the top of this module is the bound enforced."""
    array = {"w": np.array([[0.5, -2.0], [1.0, 0.25]]), "b": np.array([-4.0])}
    for name in array:
        for sign in (1.0, -1.0):
            for factor, ok in ((0.5, True), (2.0, False)):
                fused = {k: v.copy() for k, v in array.items()}
                fused[name].flat[-1] += sign * factor * rtol * np.max(np.abs(array[name]))
                if ok:
                    assert_close(fused, array, rtol)
                else:
                    with pytest.raises(AssertionError, match=f"{name}: max"):
                        assert_close(fused, array, rtol)


def test_at_most_three_kernels_per_batch_and_one_graph_per_epoch(where, sample):
    for name, per_batch in (("linear1", 2), ("simple_net", 3), ("mlp10", 3)):
        *_, trainer = trained(where, sample, name, "float32", fused=True)
        launches = trainer._train.buffers["launches"]
        batches = len(trainer.train_dl)
        assert trainer.launches_per_batch == per_batch and len(launches) == per_batch * batches
        steps = [launch for launch in launches if "_step<" in launch.kernel]
        assert [launch.args[-1] for launch in steps] == list(range(batches))  # losses[batch], every batch
        assert len(trainer._valid.buffers["launches"]) <= 4


def test_divergence_names_epoch_and_batch_and_keeps_the_last_good_parameters(where, sample):
    backend = where.backend("float32")
    model = simple_net(seed=0, backend=backend, loss="bce")
    train_dl, valid_dl = loaders(sample, "binary", 256, backend)
    learner = FusedLearner(model, train_dl, valid_dl, SGD(model.params, 0.1), device=where.device())
    fit(learner, 1)
    good = host(backend, model.params)
    learner.opt.lr = 1e36  # float32 parameters overflow to inf, and the loss to NaN
    with pytest.raises(DivergenceError, match=r"epoch 2, batch \d+ of 5: .*lower learning rate"):
        fit(learner, 1)
    assert learner.epochs_done == 1
    after = host(backend, model.params)
    for name, value in good.items():
        assert value.tobytes() == after[name].tobytes()
        assert np.isfinite(after[name]).all()
    learner.opt.lr = 0.1  # the graph is recorded again with the new rate, and training goes on
    fit(learner, 1)
    assert learner.epochs_done == 2 and np.isfinite(learner.history[-1].train_loss)


def test_ctrl_c_during_a_replay_puts_the_last_finished_epoch_back(where, sample):
    backend = where.backend("float32")
    model = simple_net(seed=0, backend=backend)
    learner = FusedLearner(model, *loaders(sample, "binary", 256, backend), SGD(model.params, 0.1),
                           device=where.device())
    fit(learner, 1)
    good = host(backend, model.params)
    graph = learner.trainer._train.graph
    replay = graph.replay

    def interrupted():
        replay()  # the epoch has changed the parameters when the interrupt arrives
        raise KeyboardInterrupt

    graph.replay = interrupted
    with pytest.raises(KeyboardInterrupt):
        fit(learner, 1)
    assert learner.epochs_done == 1
    after = host(backend, model.params)
    assert all(good[k].tobytes() == after[k].tobytes() for k in good)


def test_a_resumed_fused_run_is_bitwise_the_uninterrupted_one(where, sample, tmp_path):
    from numpy_mnist.checkpoint import load_checkpoint, save_checkpoint

    backend = where.backend("float32")

    def learner_for(model):
        train_dl, valid_dl = loaders(sample, "binary", 256, backend, shuffle=True)
        return FusedLearner(model, train_dl, valid_dl, SGD(model.params, 0.1), device=where.device())

    whole = learner_for(simple_net(seed=3, backend=backend))
    whole.fit(3)
    first = learner_for(simple_net(seed=3, backend=backend))
    first.fit(2)
    save_checkpoint(tmp_path / "c.ckpt", first.model, epoch=2, optimizer=first.opt, history=first.history)
    checkpoint = load_checkpoint(tmp_path / "c.ckpt")
    model = simple_net(seed=99, backend=backend)
    checkpoint.load_into(model)
    from numpy_mnist.learner import EpochRecord

    resumed = FusedLearner(model, *loaders(sample, "binary", 256, backend, shuffle=True), SGD(model.params, 0.1),
                           history=[EpochRecord(**r) for r in checkpoint.history], device=where.device())
    resumed.fit(1)
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history]
    a, b = host(backend, whole.model.params), host(backend, model.params)
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_the_fused_learner_trains_and_records_like_the_learner(where, sample):
    backend = where.backend("float64")
    results = {}
    for fused in (False, True):
        model = simple_net(seed=0, backend=backend)
        train_dl, valid_dl = loaders(sample, "binary", 256, backend)
        opt = SGD(model.params, 0.1)
        learner = (FusedLearner(model, train_dl, valid_dl, opt, device=where.device()) if fused
                   else Learner(model, train_dl, valid_dl, opt))
        results[fused] = learner.fit(3)
    for a, f in zip(results[False], results[True]):
        assert (a.epoch, a.accuracy) == (f.epoch, f.accuracy)
        assert f.train_loss == pytest.approx(a.train_loss, rel=F64_RTOL)
        assert f.valid_loss == pytest.approx(a.valid_loss, rel=F64_RTOL)
        assert f.seconds > 0


# -- which path runs ----------------------------------------------------------------------------------

class _FakeCupyBackend:
    name = "cupy"


def test_kernels_exist_for_the_stock_models_losses_and_sgd():
    for make in (linear1, simple_net, linear10, mlp10):
        assert why_not_kernels(make()) is None
    assert why_not_kernels(linear1(loss="bce")) is None
    custom = type(get_loss("mnist_loss"))("mnist_loss", lambda z, t: z.sum(), get_loss("mnist_loss").backward)
    assert "custom loss" in why_not_kernels(linear1(loss=custom))

    class Wider(MLP):
        pass

    assert "Wider" in why_not_kernels(Wider(simple_net().params, get_backend("numpy"), "mnist_loss"))

    class Momentum(SGD):
        pass

    model = linear1()
    assert "Momentum" in why_not_kernels(model, Momentum(model.params, 0.1))
    assert "one logit" in why_not_kernels(linear1(outputs=3))
    assert "2 to 32 classes" in why_not_kernels(linear10(classes=40))
    assert "cupy backend" in why_not_fused(linear1())


def test_make_learner_picks_the_path():
    backend = get_backend("numpy")
    x, y = np.zeros((8, 784), np.float32), np.zeros((8, 1), np.float32)
    dl = DataLoader(x, y, 4, backend=backend)
    model = linear1(backend=backend)
    opt = SGD(model.params, 1.0)
    assert type(make_learner(model, dl, dl, opt)) is Learner  # no fast path on NumPy
    assert type(make_learner(model, dl, dl, opt, reference=True)) is Learner
    with pytest.raises(InputError, match="--fused and --reference contradict each other"):
        make_learner(model, dl, dl, opt, fused=True, reference=True)
    with pytest.raises(InputError, match="--fused: the fused CUDA graph needs the cupy backend"):
        make_learner(model, dl, dl, opt, fused=True)


def test_the_trainer_refuses_what_its_device_cannot_run(sample, host_cache):
    backend = get_backend("numpy")
    model = linear1(backend=backend)
    dl = DataLoader(np.zeros((8, 784), np.float32), np.zeros((8, 1), np.float32), 4, backend=backend)
    with pytest.raises(InputError, match="needs the cupy backend"):
        FusedTrainer(model, dl, SGD(model.params, 0.1))
    other = DataLoader(np.zeros((8, 784)), np.zeros((8, 1)), 4, backend=get_backend("numpy", "float64"))
    with pytest.raises(InputError, match="DataLoader"):
        FusedTrainer(model, other, SGD(model.params, 0.1), device=HostDevice(cache_dir=host_cache))


def test_cli_fused_on_numpy_is_a_one_line_error_and_reference_trains(tmp_path, capsys):
    from numpy_mnist.cli import main

    common = ["train", "--model", "linear", "--epochs", "1", "--train-rows", "300", "--valid-rows", "100",
              "--backend", "numpy", "--quiet", "--no-plot", "--out", str(tmp_path)]
    assert main(common + ["--fused"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--fused: the fused CUDA graph needs the cupy backend" in err
    assert main(common + ["--reference"]) == 0
    assert main(common) == 0


# -- on a GPU only --------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_books_40_epoch_run_ends_at_the_same_accuracy(cupy_backend, sample, dtype):
    """The book's run (simple_net, mnist_loss, lr 0.1, batch 256, 40 epochs): fused on the GPU against
    the array path on NumPy.  float64: the same accuracy; float32: within one image of 2,038."""
    tx, ty, vx, vy = sample
    accuracy = {}
    for backend_name in ("numpy", "cupy"):
        backend = get_backend(backend_name, dtype)
        model = simple_net(seed=0, backend=backend)
        train_dl, valid_dl = DataLoader(tx, ty, 256, backend=backend), DataLoader(vx, vy, 256, backend=backend)
        learner = make_learner(model, train_dl, valid_dl, SGD(model.params, 0.1))
        assert isinstance(learner, FusedLearner) == (backend_name == "cupy")
        accuracy[backend_name] = learner.fit(40)[-1].accuracy
    assert abs(accuracy["cupy"] - accuracy["numpy"]) * len(vx) <= (0 if dtype == "float64" else 1) + 1e-9
    assert accuracy["cupy"] >= 0.98


@pytest.mark.gpu
def test_cli_trains_through_the_fused_graph_on_cupy_by_default(cupy_backend, tmp_path, capsys):
    import json

    from numpy_mnist.cli import main

    common = ["train", "--model", "simple_net", "--epochs", "2", "--no-plot"]
    assert main(common + ["--backend", "cupy", "--out", str(tmp_path / "f")]) == 0
    assert "fused CUDA graph" in capsys.readouterr().out
    assert main(common + ["--backend", "cupy", "--reference", "--out", str(tmp_path / "a")]) == 0
    assert "reference array path" in capsys.readouterr().out
    fused = json.loads((tmp_path / "f" / "history.json").read_text())["epochs"]
    array = json.loads((tmp_path / "a" / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in fused] == [1, 2]
    assert [r["accuracy"] for r in fused] == pytest.approx([r["accuracy"] for r in array], abs=1.5 / 2038)
