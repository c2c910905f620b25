"""Each fused kernel, launched alone on one batch, computes what the reference function it implements computes.

``tests/test_fused.py`` binds the fused path to the array path a whole epoch at a time, on the book's
sample images, and a fault that changes nothing there passes it: pixels 780 to 783 are 0 in every
sample image, and no batch there gives ``mlp_step`` a third row tile.  Here every kernel runs on its
own on the CPU build (:class:`host_build.HostDevice`), with the launch the trainer
records for it (its grid, block and arguments) and inputs set by the test, and every buffer it
writes is compared with the reference function it implements:

* ``linear_rows`` writes ``term``, ``dz`` and ``correct``: each row's ``loss.forward`` (the mean of
  one row is its term), ``loss.backward`` and ``metrics.correct_count``, of ``layers.linear(x, w, b)``;
* ``linear_step`` writes ``w``, ``b`` and ``losses[batch]``: ``optim.SGD.step`` of
  ``layers.linear_backward``'s ``dw`` and ``db``, and the mean of ``term``;
* ``mlp_hidden`` writes ``pre``: ``layers.linear(x, w1, b1)``;
* ``mlp_rows`` writes ``term``, ``dz``, ``correct`` as ``linear_rows`` does, of
  ``linear(relu(pre), w2, b2)``, and ``dh``: ``layers.relu_backward`` of ``linear_backward``'s ``dx``;
* ``mlp_step`` writes ``w1``, ``b1``, ``w2``, ``b2``, ``losses[batch]``: ``SGD.step`` of both
  layers' ``linear_backward`` gradients, and the mean of ``term``;
* ``sum_chunks`` and ``sum_parts`` (validation) write the sums of ``term`` and ``correct``, chunk by
  chunk and in all.

The inputs are chosen to expose faults, not to look like MNIST: images with no pixel 0 (uniform in
[1/256, 1]); 301 pixels, 70 hidden units and row counts that are not a multiple of any tile of
``common.cuh`` (``test_the_sizes_cut_every_tile`` checks this against the geometry); two batches, of
389 rows and of 300 rows from ``start = 389``: 49 and 38 row blocks of the row kernels, 7 and 5 row
tiles of ``linear_step``, 4 and 3 of ``mlp_step``; rows gathered through a random ``perm`` of the 689
images; one logit (``mnist_loss``, ``bce``) and 3, 10 and 32 classes; float32 and float64.  Then
hypothesis draws sizes down to 1.  Before each launch the outputs are filled with NaN (ints with
-2**31), and rows beyond the batch must keep it.  Each launch runs again with its blocks, and the
threads of each block, in reverse order, and must write the same bits; two more tests check that
the reverse order is really that.

The bound (one for every comparison here)
-----------------------------------------
``max |kernel - reference| <= RTOL[dtype] * scale``.  ``RTOL`` is the constant
``tests/test_fused.py`` argues for an epoch, for the same reason.  The kernels compute the same
operations in the same precision, and only the order of the sums (over pixels, hidden units, classes
or rows) differs from the one BLAS and NumPy take.  A sum of n terms taken in another order moves by
at most about n u sum|terms| (Higham, *Accuracy and Stability of Numerical Algorithms*, section 4.2),
and typically, like a random walk, by sqrt(n) u sum|terms|.  So ``RTOL`` is 1e-12 in float64
(u = 2**-53; n <= 784 gives 1e-13 in the worst case) and 64 u in float32 (u = 2**-24; twice the random
walk's 28 u for the longest sum).

``scale`` is what the rounding is relative to: the sum of the magnitudes of what the output sums, the
largest in the buffer, computed by the same reference functions on magnitudes (``reference``):

* ``pre`` and the logits ``z``: ``|x| @ |w| + |b|`` (the images are > 0);
* ``dz`` and ``term``, functions of ``z``: their largest magnitude, plus their sensitivity to ``z``
  times the scale of ``z``.  That sensitivity is taken as 1/n for ``dz`` (each of the three losses'
  dz moves by at most max |change of z| / (2n)), and as 2 for ``term`` (cross-entropy's; the others'
  are smaller);
* ``dh``: ``|dz| @ |w2|.T``, plus ``max_u sum_k |w2[u, k]|`` times the part of ``dz``'s scale that
  comes from ``z``;
* the parameters ``p - g lr``: ``max |p - g lr| + lr max G``, with ``G`` the gradient's sums of
  magnitudes (``|x|.T @ |dz|``, ``sum |dz|``, ...);
* the batch loss and the validation sums: the mean and the sums of ``|term|``.

Where no sum cancels, this is about the largest magnitude of the reference, the scale the epoch tests
use.  Where one does (one row and one hidden unit, which hypothesis draws), an error relative to the
cancelled result would be no bound at all.  Measured on the parametrized inputs: float32 kernels
within 9 ulps of the scale (the batch loss, a sum of up to 389 terms in order; every other output
within 4.5), and float64 within 16 ulps.  The array path's own float32 error against float64 is 3 ulps
of the same scale (``test_the_float32_bound_admits_the_array_paths_own_rounding``).  Faults are far
outside.  Mutants of the kernels were off by 2e-4 to 33 of the scale, that is 3,600 float32 ulps or
more: a sign in bce's dz, cross-entropy's dz without its 1/n, the bias left out of z, b1's step
without lr, a partial tile's last pixel dropped, and ``mlp_step``'s row-tile buffer stuck.

``correct`` may differ only for a row whose logit (binary) or top-two gap lies within twice the
float32 bound of the decision boundary.  In float64 every row must agree.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
from host_build import HOST_FLAGS, SHIM_DIR, HostDevice, compiler
from hypothesis import given
from hypothesis import strategies as st

from numpy_mnist import layers
from numpy_mnist.backends import get_backend
from numpy_mnist.data import DataLoader
from numpy_mnist.fused.source import KernelConfig, geometry
from numpy_mnist.fused.trainer import CHUNK, PARAM_BLOCK, FusedTrainer
from numpy_mnist.losses import get_loss
from numpy_mnist.metrics import correct_count
from numpy_mnist.models import MLP, LinearModel
from numpy_mnist.optim import SGD

#: The one bound of this module (see the docstring), relative to the scale of the reference output.
U32 = 2.0 ** -24
RTOL = {"float64": 1e-12, "float32": 64 * U32}
DTYPES = list(RTOL)

#: The learning rate of the step kernels: not a power of two, so ``g * lr`` rounds.
LR = 0.3


@dataclass(frozen=True)
class Sizes:
    """Pixels per image, hidden units, rows per batch, images (the last batch has what is left)."""

    pixels: int
    hidden: int
    batch: int
    images: int

    @property
    def batches(self) -> list[int]:
        full, rest = divmod(self.images, self.batch)
        return [self.batch] * full + ([rest] if rest else [])


#: The sizes of the parametrized tests: two batches, of 389 rows and (from start = 389) of 300.
SIZES = Sizes(pixels=301, hidden=70, batch=389, images=689)


@dataclass(frozen=True)
class Case:
    """A model kind, its loss and its number of logits per row."""

    kind: str
    loss: str
    classes: int

    def __str__(self) -> str:
        return f"{self.kind}-{self.loss}-{self.classes}"

    def config(self, dtype: str) -> KernelConfig:
        return KernelConfig(self.kind, self.classes, self.loss, dtype)


CASES = [Case(kind, loss, k) for kind, more in (("linear", 32), ("simple_net", 3))
         for loss, k in (("mnist_loss", 1), ("bce", 1), ("cross_entropy", 10), ("cross_entropy", more))]
LINEAR = [c for c in CASES if c.kind == "linear"]
MLPS = [c for c in CASES if c.kind == "simple_net"]
#: Which buffers hold rows of the batch (a kernel must leave the rows beyond it untouched).
ROW_BUFFERS = ("term", "correct", "dz", "pre", "dh")


def needs_compiler() -> None:
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the fused kernels for the CPU")


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """One CPU build of every instantiation this module launches, shared by all its trainers."""
    needs_compiler()
    dev = HostDevice(cache_dir=tmp_path_factory.mktemp("host-kernels"))
    dev.compile(sorted({name for case in CASES for dtype in DTYPES for name in case.config(dtype).names().values()}))
    return dev


def random_model(case: Case, sizes: Sizes, backend, rng):
    """A model of ``case`` whose logits are of order 1 on images of pixels in [1/256, 1] (neither
    saturated sigmoids nor vanishing gradients): weights of standard deviation 2 / sqrt(fan_in)."""
    d, h, k = sizes.pixels, sizes.hidden, case.classes
    if case.kind == "linear":
        params = {"weights": rng.standard_normal((d, k)) * 2 / np.sqrt(d), "bias": rng.standard_normal(k) / 2}
        return LinearModel(params, backend, case.loss)
    params = {"w1": rng.standard_normal((d, h)) * 2 / np.sqrt(d), "b1": rng.standard_normal(h) / 2,
              "w2": rng.standard_normal((h, k)) * 2 / np.sqrt(h), "b2": rng.standard_normal(k) / 2}
    return MLP(params, backend, case.loss)


def reference(case: Case, params: dict, xb, yb) -> dict:
    """What the kernels of one batch ``(xb, yb)`` should write, by the readable functions, and under
    ``"scale"`` the scale of the bound of each output (see the module's docstring).

    ``term`` and ``correct`` are the loss and ``correct_count`` of each row on its own (the mean of
    one value is that value); ``params`` are the parameters ``SGD.step`` leaves.
    """
    loss = get_loss(case.loss)
    n = xb.shape[0]
    size = {name: np.abs(value) for name, value in params.items()}  # |w|, |b|
    out = {}
    if case.kind == "linear":
        z = layers.linear(xb, params["weights"], params["bias"])
        z_size = layers.linear(xb, size["weights"], size["bias"])  # the inputs are > 0: |x| = x
    else:
        out["pre"] = pre = layers.linear(xb, params["w1"], params["b1"])
        a = layers.relu(pre)
        z = layers.linear(a, params["w2"], params["b2"])
        z_size = layers.linear(a, size["w2"], size["b2"])
    out["z"] = z
    out["dz"] = dz = loss.backward(z, yb)
    out["term"] = np.stack([loss.forward(z[r:r + 1], yb[r:r + 1]) for r in range(n)])
    out["correct"] = np.stack([correct_count(z[r:r + 1], yb[r:r + 1]) for r in range(n)])
    out["loss"] = np.mean(out["term"])
    scale = {"z": np.max(z_size), "term": np.max(np.abs(out["term"])) + 2 * np.max(z_size),
             "dz": np.max(np.abs(dz)) + np.max(z_size) / n, "loss": np.mean(np.abs(out["term"]))}
    if case.kind == "linear":
        _, dw, db = layers.linear_backward(dz, xb, params["weights"], need_dx=False)
        grads = {"weights": dw, "bias": db}
        _, dw, db = layers.linear_backward(np.abs(dz), xb, size["weights"], need_dx=False)
        grad_sizes = {"weights": dw, "bias": db}
    else:
        scale["pre"] = np.max(layers.linear(xb, size["w1"], size["b1"]))
        da, dw2, db2 = layers.linear_backward(dz, a, params["w2"])
        out["dh"] = dh = layers.relu_backward(da, pre)
        _, dw1, db1 = layers.linear_backward(dh, xb, params["w1"], need_dx=False)
        grads = {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}
        da_size, dw2, db2 = layers.linear_backward(np.abs(dz), a, size["w2"])
        scale["dh"] = np.max(da_size) + np.max(np.sum(size["w2"], axis=1)) * np.max(z_size) / n
        _, dw1, db1 = layers.linear_backward(np.abs(dh), xb, size["w1"], need_dx=False)
        grad_sizes = {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}
    stepped = {name: value.copy() for name, value in params.items()}
    SGD(stepped, LR).step(grads)
    out["params"] = stepped
    for name, value in stepped.items():
        scale[name] = np.max(np.abs(value)) + LR * np.max(grad_sizes[name])
    out["scale"] = {name: float(value) for name, value in scale.items()}
    return out


def filler(array) -> None:
    """Fill ``array`` as the device fills a new buffer: NaN, or -2**31 for ints."""
    array[...] = np.nan if array.dtype.kind == "f" else np.iinfo(array.dtype).min


def unwritten(array) -> bool:
    return bool(np.isnan(array).all() if array.dtype.kind == "f" else (array == np.iinfo(array.dtype).min).all())


def launch_alone(device: HostDevice, launch, outputs: dict, reset) -> dict:
    """Launch one kernel alone, forwards and then with its blocks and threads in reverse order; what
    it wrote to ``outputs`` (name: array), after checking that both orders wrote the same bits.
    ``reset()`` runs before each launch, to put back what the launch changes."""
    results = []
    for reverse in (False, True):
        reset()
        device.reverse = reverse
        try:
            device.capture([launch]).replay()
        finally:
            device.reverse = False
        results.append({name: array.copy() for name, array in outputs.items()})
    forward, backward = results
    for name in outputs:
        assert forward[name].tobytes() == backward[name].tobytes(), f"{launch.kernel}: {name} changes with the order"
    return forward


class Batches:
    """A random model of ``case``, dense random images and labels, and the model's trainer on
    ``device``: the launches it records for each batch, the buffers they read and write, and each
    batch's reference from the same inputs.  Row ``r`` of batch ``b`` is image ``perm[start_b + r]``,
    ``perm`` a random permutation of all the images."""

    def __init__(self, device: HostDevice, case: Case, dtype: str, sizes: Sizes = SIZES, seed: int = 0) -> None:
        rng = np.random.default_rng([seed, CASES.index(case), DTYPES.index(dtype)])
        self.case, self.dtype, self.device, self.sizes = case, dtype, device, sizes
        backend = get_backend("numpy", dtype)
        self.model = random_model(case, sizes, backend, rng)
        self.start = {name: p.copy() for name, p in self.model.params.items()}
        x = rng.uniform(1 / 256, 1, (sizes.images, sizes.pixels))  # no pixel is 0
        y = (rng.integers(0, 2, (sizes.images, 1)).astype(np.float64) if case.classes == 1
             else rng.integers(0, case.classes, sizes.images))
        dl = DataLoader(x, y, sizes.batch, backend=backend)
        self.trainer = FusedTrainer(self.model, dl, SGD(self.model.params, LR), device=device)
        self.bufs = self.trainer._train.buffers
        assert self.bufs["sizes"] == sizes.batches
        self.perm = rng.permutation(sizes.images).astype(np.int32)
        device.upload(self.bufs["perm"], self.perm)
        per, launches = self.trainer.launches_per_batch, self.bufs["launches"]
        self.launches = [{launch.kernel.split("<")[0]: launch for launch in launches[i:i + per]}
                         for i in range(0, len(launches), per)]
        self.references = []
        for batch, n in enumerate(sizes.batches):
            rows = self.perm[batch * sizes.batch:batch * sizes.batch + n]
            self.references.append(reference(case, self.start, dl.x[rows], dl.y[rows]))

    def run(self, batch: int, kernel: str, writes: tuple, **inputs) -> dict:
        """Launch ``kernel`` of ``batch`` alone (:func:`launch_alone`), with the parameters at their
        start, ``inputs`` (reference arrays) in the first rows of the buffers it reads, and the buffers
        it ``writes`` refilled before each launch; what it wrote, the batch's rows of each buffer of
        rows (after checking that it left the rest untouched)."""
        outputs = {name: self.bufs[name] if name in self.bufs else self.model.params[name] for name in writes}

        def reset():
            for name, value in self.start.items():
                self.model.params[name][...] = value
            for name, value in inputs.items():
                self.bufs[name][:np.size(value)] = np.ravel(value)
            for name in writes:
                if name in self.bufs:
                    filler(self.bufs[name])

        got = launch_alone(self.device, self.launches[batch][kernel], outputs, reset)
        n, capacity = self.sizes.batches[batch], max(self.sizes.batches)
        for name in writes:
            if name in ROW_BUFFERS:
                width = got[name].size // capacity
                assert unwritten(got[name][n * width:]), f"{kernel} wrote {name} beyond the batch's {n} rows"
                got[name] = got[name][:n * width].reshape(n, width)
        return got

    def check_rows(self, batch: int, kernel: str, **inputs) -> None:
        """``linear_rows`` or ``mlp_rows``: every buffer it writes against the reference."""
        ref, dtype, what = self.references[batch], self.dtype, f"{kernel} {self.case} {self.dtype} batch {batch}"
        writes = ("term", "correct", "dz") + (("dh",) if kernel == "mlp_rows" else ())
        got = self.run(batch, kernel, writes, **inputs)
        assert_close(got["term"][:, 0], ref["term"], dtype, f"{what} term", ref["scale"]["term"])
        assert_close(got["dz"], ref["dz"], dtype, f"{what} dz", ref["scale"]["dz"])
        assert_same_decisions(got["correct"][:, 0], ref, dtype, f"{what} correct")
        if kernel == "mlp_rows":
            assert_close(got["dh"], ref["dh"], dtype, f"{what} dh", ref["scale"]["dh"])
            assert (got["dh"][ref["pre"] <= 0] == 0).all(), f"{what}: dh must be 0 where pre <= 0"

    def check_step(self, batch: int, kernel: str, **inputs) -> None:
        """``linear_step`` or ``mlp_step``: every parameter, and the batch's loss, against the reference."""
        ref, dtype, what = self.references[batch], self.dtype, f"{kernel} {self.case} {self.dtype} batch {batch}"
        got = self.run(batch, kernel, (*self.start, "losses"), **inputs)
        for name, want in ref["params"].items():
            assert_close(got[name], want, dtype, f"{what} {name}", ref["scale"][name])
        assert_close(got["losses"][batch], ref["loss"], dtype, f"{what} losses[{batch}]", ref["scale"]["loss"])
        assert unwritten(np.delete(got["losses"], batch)), f"{what}: wrote another batch's loss"

    def check_batch(self, batch: int) -> None:
        """Every kernel of ``batch``, each alone, each from the reference's inputs."""
        ref = self.references[batch]
        if self.case.kind == "linear":
            self.check_rows(batch, "linear_rows")
            self.check_step(batch, "linear_step", dz=ref["dz"], term=ref["term"])
        else:
            got = self.run(batch, "mlp_hidden", ("pre",))
            assert_close(got["pre"], ref["pre"], self.dtype, f"mlp_hidden {self.dtype} batch {batch} pre",
                         ref["scale"]["pre"])
            self.check_rows(batch, "mlp_rows", pre=ref["pre"])
            self.check_step(batch, "mlp_step", pre=ref["pre"], dz=ref["dz"], dh=ref["dh"], term=ref["term"])


def assert_close(got, want, dtype: str, what: str, scale: float) -> None:
    """``max |got - want| <= RTOL[dtype] * scale``: the bound of this module."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err = float(np.max(np.abs(got - want)))
    assert err <= RTOL[dtype] * scale, f"{what}: max |kernel - reference| = {err:.3g}, {err / scale:.3g} of its scale"


def assert_same_decisions(got, ref: dict, dtype: str, what: str) -> None:
    """``correct`` as the reference's on every row (in float32: every row whose logit, or top-two gap,
    is further from the decision boundary than the bound)."""
    z = np.asarray(ref["z"], np.float64)
    if z.shape[1] == 1:
        margin = np.abs(z[:, 0])
    else:
        top = np.sort(z, axis=1)
        margin = top[:, -1] - top[:, -2]
    sure = margin > 2 * RTOL[dtype] * ref["scale"]["z"] if dtype == "float32" else np.ones(len(z), bool)
    if len(z) >= 100:  # the sizes of the parametrized tests: the comparison must not be vacuous
        assert sure.mean() > 0.9, f"{what}: most rows should be far from the decision boundary"
    wrong = np.flatnonzero((got != np.asarray(ref["correct"])) & sure)
    assert wrong.size == 0, f"{what}: correct differs on rows {wrong[:10]}"


@cache
def batches(device: HostDevice, case: Case, dtype: str) -> Batches:
    return Batches(device, case, dtype)


BATCH_IDS = pytest.mark.parametrize("batch", [0, 1], ids=["batch0-389rows", "batch1-300rows-at389"])


def test_the_sizes_cut_every_tile():
    """No size of :data:`SIZES` is a multiple of a tile of ``common.cuh``, and each batch gives every
    kernel at least three tiles of rows."""
    g, (first, second) = geometry(), SIZES.batches
    pixel_tiles = (g["NM_TILE_BYTES"] // 4, g["NM_TILE_BYTES"] // 8, g["LINEAR_COLS"], g["MLP_COLS"])
    assert all(SIZES.pixels % t for t in pixel_tiles)
    assert SIZES.hidden % g["MLP_UNITS"] and SIZES.hidden > 2 * g["MLP_UNITS"]
    for rows in (first, second):
        for tile in (g["LINEAR_ROWS"], g["MLP_ROWS"], g["LINEAR_ROW_TILE"], g["MLP_ROW_TILE"]):
            assert rows % tile and rows > 2 * tile, (rows, tile)
    assert any(case.classes > 1 and g["LINEAR_ROWS"] * case.classes % 32 for case in CASES)  # a partial warp


@BATCH_IDS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR, ids=str)
def test_linear_rows_is_the_loss_forward_and_backward_of_x_w_plus_b(device, case, dtype, batch):
    batches(device, case, dtype).check_rows(batch, "linear_rows")


@BATCH_IDS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LINEAR, ids=str)
def test_linear_step_is_sgd_of_linear_backward(device, case, dtype, batch):
    b = batches(device, case, dtype)
    ref = b.references[batch]
    b.check_step(batch, "linear_step", dz=ref["dz"], term=ref["term"])


@BATCH_IDS
@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_hidden_is_x_w1_plus_b1(device, dtype, batch):
    b = batches(device, MLPS[0], dtype)  # mlp_hidden<T> is the same kernel for every loss
    got = b.run(batch, "mlp_hidden", ("pre",))
    ref = b.references[batch]
    assert_close(got["pre"], ref["pre"], dtype, f"mlp_hidden {dtype} batch {batch} pre", ref["scale"]["pre"])


@BATCH_IDS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MLPS, ids=str)
def test_mlp_rows_is_the_second_layer_the_loss_and_relu_backward(device, case, dtype, batch):
    b = batches(device, case, dtype)
    b.check_rows(batch, "mlp_rows", pre=b.references[batch]["pre"])


@BATCH_IDS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MLPS, ids=str)
def test_mlp_step_is_sgd_of_both_layers_backward(device, case, dtype, batch):
    b = batches(device, case, dtype)
    ref = b.references[batch]
    b.check_step(batch, "mlp_step", pre=ref["pre"], dz=ref["dz"], dh=ref["dh"], term=ref["term"])


@given(case=st.sampled_from(CASES), dtype=st.sampled_from(DTYPES), pixels=st.integers(1, 300),
       hidden=st.integers(1, 80), batch=st.integers(1, 300), more=st.integers(0, 300), seed=st.integers(0, 2 ** 16))
def test_every_kernel_alone_at_any_sizes(device, case, dtype, pixels, hidden, batch, more, seed):
    """Sizes drawn from 1 up (one pixel, one row, one hidden unit, a batch smaller than any tile): each
    kernel of each batch against the reference."""
    sizes = Sizes(pixels, hidden, batch, batch + more)
    b = Batches(device, case, dtype, sizes, seed=seed + 1)
    for index in range(len(sizes.batches)):
        b.check_batch(index)


@pytest.mark.parametrize("dtype", DTYPES)
def test_validation_sums_chunk_by_chunk_then_in_all(device, dtype):
    """sum_chunks and sum_parts, each alone, on more rows than one block of sum_chunks covers (a
    partial last chunk): each chunk's sums, then the totals, against NumPy's sums."""
    rows = PARAM_BLOCK * CHUNK + 777
    backend, rng = get_backend("numpy", dtype), np.random.default_rng(7)
    model = LinearModel({"weights": np.zeros((1, 1)), "bias": np.zeros(1)}, backend, "mnist_loss")
    train = DataLoader(np.zeros((8, 1)), np.zeros((8, 1)), 8, backend=backend)
    valid = DataLoader(np.zeros((rows, 1)), np.zeros((rows, 1)), 8, backend=backend)
    bufs = FusedTrainer(model, train, SGD(model.params, LR), valid, device=device)._valid.buffers
    chunks, parts = bufs["launches"][-2:]
    assert chunks.grid > 1 and rows % CHUNK
    term, correct = rng.uniform(0, 3, rows).astype(dtype), rng.integers(0, 2, rows).astype(np.int32)
    outputs = {name: bufs[name] for name in ("part_term", "part_correct")}

    def fill():
        bufs["term"][:], bufs["correct"][:] = term, correct
        for array in outputs.values():
            filler(array)

    got = launch_alone(device, chunks, outputs, fill)
    starts = range(0, rows, CHUNK)
    sums = [np.sum(term[s:s + CHUNK]) for s in starts]  # the terms are > 0: each sum is its own scale
    assert_close(got["part_term"], sums, dtype, "part_term", max(sums))
    assert got["part_correct"].tolist() == [int(np.sum(correct[s:s + CHUNK])) for s in starts]

    def fill_parts():
        bufs["part_term"][:], bufs["part_correct"][:] = got["part_term"], got["part_correct"]
        filler(bufs["out"])

    out = launch_alone(device, parts, {"out": bufs["out"]}, fill_parts)["out"]
    assert_close(out[0], np.sum(term), dtype, "out[0], the sum of the loss terms", np.sum(term))
    assert out[1] == np.sum(correct)


def test_the_float32_bound_admits_the_array_paths_own_rounding(device):
    """The array path's float32 outputs, against float64 from the same float32 inputs, are off by a
    few ulps of the bound's scale (3 on these inputs): a float32 computation as accurate as the
    array path's is within an eighth of the bound.  The inputs do round (the error is not 0)."""
    worst = 0.0
    for case in CASES:
        b = batches(device, case, "float32")
        dl = b.trainer.train_dl
        for batch, ref32 in enumerate(b.references):
            rows = b.perm[batch * SIZES.batch:][:SIZES.batches[batch]]
            y = dl.y[rows].astype(np.float64) if case.classes == 1 else dl.y[rows]
            ref64 = reference(case, {k: v.astype(np.float64) for k, v in b.start.items()},
                              dl.x[rows].astype(np.float64), y)
            for name in ("pre", "dz", "term", "dh", *b.start):
                if name in ref64["scale"]:
                    got, want = ref32["params"].get(name, ref32.get(name)), ref64["params"].get(name, ref64.get(name))
                    worst = max(worst, float(np.max(np.abs(got - want))) / ref64["scale"][name])
    assert 0 < worst <= RTOL["float32"] / 8, f"the array path's own float32 error: {worst / U32:.1f} ulps"


# -- the CPU build's reverse order ------------------------------------------------------------------------

ORDER_PROGRAM = r"""
#define NUMPY_MNIST_HOST
#include "host_shim.h"
#include <cstdio>

// Each thread logs "block.thread.phase" when it runs each of three phases, the phases separated by
// barriers: the log is the order in which the fibers ran.
static int logged = 0;
static int order[3 * 5 * 3][3];

__global__ void record(int)
{
    for (int phase = 0; phase < 3; ++phase) {
        if (phase > 0)
            __syncthreads();
        order[logged][0] = blockIdx.x;
        order[logged][1] = threadIdx.x;
        order[logged][2] = phase;
        ++logged;
    }
}

int main()
{
    int unused = 0;
    void* args[] = {&unused};
    for (int reverse = 0; reverse <= 1; ++reverse) {
        numpy_mnist_host::reverse_order = reverse;
        logged = 0;
        const int error = numpy_mnist_host::launch(&record, 3, 5, args);
        std::printf("error=%d", error);
        for (int i = 0; i < logged; ++i)
            std::printf(" %d.%d.%d", order[i][0], order[i][1], order[i][2]);
        std::printf("\n");
    }
}
"""


@pytest.mark.parametrize("portable", [False, True], ids=["asm-fibers", "ucontext-fibers"])
def test_reverse_order_runs_the_blocks_and_the_threads_of_each_phase_backwards(tmp_path, portable):
    """host_shim.h's reverse_order, which the kernels' reverse runs above and in test_fused.py rely on:
    a kernel that logs which thread runs when (3 blocks of 5 threads, 3 phases between barriers) runs
    block 0 to 2, and in each phase thread 0 to 4; reversed, block 2 to 0, and in each phase thread 4
    to 0, with both fiber switches."""
    needs_compiler()
    source, program = tmp_path / "order.cpp", tmp_path / "order"
    source.write_text(ORDER_PROGRAM)
    flags = [f for f in HOST_FLAGS if f not in ("-fPIC", "-shared")]
    flags += ["-DNUMPY_MNIST_HOST_UCONTEXT"] if portable else []
    built = subprocess.run([compiler(), *flags, "-I", str(SHIM_DIR), str(source), "-o", str(program)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    ran = subprocess.run([str(program)], capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    forward, backward = ran.stdout.splitlines()

    def log(blocks, threads):
        return "error=0 " + " ".join(f"{b}.{t}.{p}" for b in blocks for p in range(3) for t in threads)

    assert forward == log(range(3), range(5))
    assert backward == log(range(2, -1, -1), range(4, -1, -1))


def test_the_devices_reverse_switch_reaches_the_kernels(device):
    """HostDevice(reverse=True) runs the library's kernels backwards: with the barriers ignored, a
    thread reads what the threads before it wrote, so the order shows in the results."""
    b = batches(device, LINEAR[2], "float32")
    launch, results = b.launches[0]["linear_rows"], []
    device.ignore_barriers = True
    try:
        for reverse in (False, True):
            filler(b.bufs["dz"])
            device.reverse = reverse
            device.capture([launch]).replay()
            results.append(b.bufs["dz"].copy())
    finally:
        device.reverse = device.ignore_barriers = False
    assert results[0].tobytes() != results[1].tobytes()
