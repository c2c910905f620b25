"""One training epoch as one replay of a CUDA graph of hand-written kernels (see :mod:`numpy_mnist.fused`).

:class:`FusedTrainer` lays out the device buffers, records the launches of a whole epoch once (two
kernels per batch for the linear model, three for simple_net, the batch losses into a device
buffer) and replays them every epoch; validation is a second, smaller graph.  It computes what
:func:`numpy_mnist.learner.train_epoch` and :func:`~numpy_mnist.learner.validate_epoch` compute,
to the rounding of sums taken in another order, and updates ``model.params`` in place, so the
rest of the program (checkpoints, :func:`numpy_mnist.training.fit`'s restore after a divergence,
plots) sees the parameters where it always does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numpy_mnist.checks import check_targets
from numpy_mnist.errors import InputError
from numpy_mnist.fused.source import MAX_CLASSES, KernelConfig, geometry
from numpy_mnist.learner import epoch_loss
from numpy_mnist.losses import LOSSES
from numpy_mnist.models import MLP, LinearModel
from numpy_mnist.optim import SGD

__all__ = ["CHUNK", "GEOMETRY", "PARAM_BLOCK", "FusedTrainer", "Launch", "why_not_kernels"]

#: The tile sizes the kernels are written for (``common.cuh``); the grids and blocks below follow them.
GEOMETRY = geometry()
#: Threads per block of validation's first summing kernel (one thread per chunk of rows).
PARAM_BLOCK = 128
#: Rows per thread in the first stage of validation's fixed-order sum.
CHUNK = 64


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the instantiation's name, a one-dimensional grid and block, the arguments
    (device arrays and NumPy scalars, whose types are the kernel's C types)."""

    kernel: str
    grid: int
    block: int
    args: tuple


def _blocks(threads: int, block: int) -> int:
    return max(1, -(-threads // block))


def _warps(threads: int) -> int:
    """``threads`` rounded up to whole warps of 32."""
    return 32 * _blocks(threads, 32)


def why_not_kernels(model, opt=None) -> str | None:
    """Why ``model`` (with the optimizer ``opt``) has no fused kernels, or ``None`` when it has.

    Kernels exist for the stock models (:class:`~numpy_mnist.models.LinearModel`, :class:`~numpy_mnist.models.MLP`)
    with a stock loss that has a :attr:`~numpy_mnist.losses.Loss.kernel_code` (``mnist_loss`` or
    ``bce`` on one logit, ``cross_entropy`` on 2 to 32 classes), trained by plain
    :class:`~numpy_mnist.optim.SGD`; anything else keeps the array path.
    """
    if type(model) not in (LinearModel, MLP):
        return f"there are no fused kernels for a {type(model).__name__}"
    loss = model.loss
    if LOSSES.get(loss.name) != loss:
        return f"there are no fused kernels for a custom loss ({loss.name!r} with its own functions)"
    if loss.kernel_code is None:
        return f"there are no fused kernels for the loss {loss.name!r}"
    if loss.multiclass and not 2 <= model.outputs <= MAX_CLASSES:
        return f"the fused kernels take 2 to {MAX_CLASSES} classes, not {model.outputs}"
    if not loss.multiclass and model.outputs != 1:
        return f"{loss.name} takes one logit per image, and this model has {model.outputs}"
    if opt is not None and type(opt) is not SGD:
        return f"the fused kernels step plain SGD, not a {type(opt).__name__}"
    return None


class _Graph:
    """A recorded epoch (or validation) and what it was recorded with, to know when it is stale."""

    def __init__(self, refs: tuple, scalars: tuple, graph, buffers: dict) -> None:
        self.refs, self.scalars, self.graph, self.buffers = refs, scalars, graph, buffers

    def matches(self, refs: tuple, scalars: tuple) -> bool:
        return (len(refs) == len(self.refs) and all(a is b for a, b in zip(refs, self.refs))
                and scalars == self.scalars)


class FusedTrainer:
    """Trains ``model`` on ``train_dl`` with ``opt`` (plain SGD) through the fused kernels.

    ``train_epoch(epoch)`` replays the recorded epoch once and returns the mean training loss;
    ``validate()`` replays the validation and returns ``(valid_loss, accuracy)``.  Both record
    their graph when first needed, and again whenever what they were recorded with changed (a
    parameter array replaced, the learning rate, the loader's data or batch size), so they never
    replay stale pointers or constants.

    ``device`` is where the kernels run: :class:`~numpy_mnist.fused.cupy_device.CupyDevice` (the
    default, for a model on the CuPy backend) or the tests' ``HostDevice`` (the same kernels built
    for the CPU, for a model on the NumPy backend).
    """

    def __init__(self, model, train_dl, opt, valid_dl=None, *, device=None) -> None:
        if (why := why_not_kernels(model, opt)) is not None:
            raise InputError(why)
        if device is None:
            if model.backend.name != "cupy":
                raise InputError(f"the fused CUDA graph needs the cupy backend, not {model.backend.name}")
            from numpy_mnist.fused.cupy_device import CupyDevice

            device = CupyDevice(model.backend)
        if device.backend_name != model.backend.name:
            raise InputError(f"the {device.name} device runs models of the {device.backend_name} backend, "
                             f"not {model.backend.name}")
        for name, dl in (("train", train_dl), ("valid", valid_dl)):
            if dl is not None and dl.backend != model.backend:
                raise InputError(f"the {name} DataLoader is on {dl.backend!r} but the model on {model.backend!r}")
        for name, p in model.params.items():
            if not device.owns(p) or not p.flags.c_contiguous:
                raise InputError(f"the fused kernels update parameters in place: {name} must be a "
                                 "C-contiguous array of the model's backend")
        self.model, self.train_dl, self.opt, self.valid_dl, self.device = model, train_dl, opt, valid_dl, device
        self.config = KernelConfig(model.kind, model.outputs, model.loss.name, model.backend.dtype_name)
        self.names = self.config.names()
        device.compile(sorted(set(self.names.values())))
        self._scalar = np.dtype(self.config.dtype).type
        self.hidden = int(model.params["b1"].shape[0]) if model.kind == "simple_net" else None  # the MLP's H
        self._train = self._valid = None  # the recorded graphs (_Graph), each made when first needed
        self._shuffled = False  # whether the perm buffer holds a shuffled order (else the rows in order)
        self._ensure_train()
        if valid_dl is not None:
            self._ensure_valid()

    # -- what the graphs read ------------------------------------------------------------------
    def _params(self) -> tuple:
        p = self.model.params
        names = ("weights", "bias") if self.config.kind == "linear" else ("w1", "b1", "w2", "b2")
        return tuple(p[name] for name in names)

    def _data(self, dl) -> tuple:
        """The images and targets as the kernels read them: ``T`` targets 0 or 1 (N, 1) for the binary
        losses, ``long long`` labels (N,) for cross-entropy.

        Targets are checked as the :class:`~numpy_mnist.learner.Learner` checks them, with the same
        :class:`~numpy_mnist.errors.InputError` (:func:`~numpy_mnist.checks.check_targets`): integer
        0/1 targets of a binary loss, float labels or labels out of range are refused, not handed
        to a kernel that would read their bytes as another type (or out of bounds).  Integer labels
        of any width are widened to int64, as the array path compares them with any integer.
        """
        check_targets(dl.y, self.config.outputs, n=dl.n_rows, name=f"{'train' if dl is self.train_dl else 'valid'} y")
        y_type = np.int64 if self.config.multiclass else self.config.dtype
        return self.device.asarray(dl.x), self.device.asarray(dl.y, y_type)

    def _row_launches(self, bufs: dict, start: int, n: int) -> list[Launch]:
        """Forward, loss and dz (and for the MLP dh) of rows ``perm[start:start + n]``."""
        x, i32, g, k = bufs["x"], np.int32, GEOMETRY, self.config.outputs
        rows, outs = (bufs["perm"], i32(start), i32(n)), (bufs["term"], bufs["correct"], bufs["dz"])
        if self.config.kind == "linear":
            return [Launch(self.names["rows"], _blocks(n, g["LINEAR_ROWS"]), _warps(g["LINEAR_ROWS"] * k),
                           (x, bufs["y"], *rows, i32(x.shape[1]), *self._params(), *outs))]
        w1, b1, w2, b2 = self._params()
        h, threads = self.hidden, g["MLP_THREADS"]
        return [Launch(self.names["hidden"], _blocks(n, g["MLP_ROWS"]) * _blocks(h, g["MLP_UNITS"]), threads,
                       (x, *rows, i32(x.shape[1]), i32(h), w1, b1, bufs["pre"])),
                Launch(self.names["rows"], _blocks(n, g["MLP_ROWS"]), threads,
                       (bufs["y"], *rows, i32(h), bufs["pre"], w2, b2, *outs, bufs["dh"]))]

    def _step_launch(self, bufs: dict, start: int, n: int, batch: int) -> Launch:
        """Gradients, the SGD step of every parameter, and ``losses[batch]``."""
        x, i32, g = bufs["x"], np.int32, GEOMETRY
        d, k, lr = int(x.shape[1]), self.config.outputs, self._scalar(self.opt.lr)
        rows, loss = (x, bufs["perm"], i32(start), i32(n), i32(d)), (bufs["losses"], i32(batch))
        if self.config.kind == "linear":
            blocks = _blocks(d, g["LINEAR_COLS"]) + 1  # one block per LINEAR_COLS pixels, one for b and the loss
            return Launch(self.names["step"], blocks, _warps(g["LINEAR_COLS"] * k),
                          (*rows, bufs["dz"], bufs["term"], lr, *self._params(), *loss))
        h, threads = self.hidden, g["MLP_THREADS"]
        blocks = (_blocks(d, g["MLP_COLS"]) * _blocks(h, g["MLP_UNITS"])  # w1
                  + _blocks(h + h * k + k + 1, threads))  # b1, w2, b2 and the loss, a thread each
        return Launch(self.names["step"], blocks, threads,
                      (*rows, i32(h), bufs["pre"], bufs["dz"], bufs["dh"], bufs["term"], lr, *self._params(), *loss))

    def _record(self, old: _Graph | None, dl, scalars: tuple, rows: int, launches_of) -> _Graph:
        """``old`` when it was recorded with the same arrays and ``scalars``, else a new graph of
        ``launches_of(bufs)`` (which may add buffers), on buffers for ``rows`` rows: the row buffers,
        ``dl``'s data as the kernels read it, and ``perm`` holding its rows in order."""
        refs = (*self._params(), dl.x, dl.y)
        if old is not None and old.matches(refs, scalars):
            return old
        dev, t, x, y = self.device, self.config.dtype, *self._data(dl)
        bufs = {"term": dev.empty(rows, t), "correct": dev.empty(rows, np.int32),
                "dz": dev.empty(rows * self.config.outputs, t), "x": x, "y": y, "perm": dev.empty(dl.n_rows, np.int32)}
        if self.config.kind == "simple_net":
            bufs.update(pre=dev.empty(rows * self.hidden, t), dh=dev.empty(rows * self.hidden, t))
        dev.upload(bufs["perm"], np.arange(dl.n_rows, dtype=np.int32))
        bufs["launches"] = launches_of(bufs)
        return _Graph(refs, scalars, dev.capture(bufs["launches"]), bufs)

    # -- training -------------------------------------------------------------------------------
    def _ensure_train(self) -> _Graph:
        dl = self.train_dl
        starts = range(0, len(dl) * dl.batch_size, dl.batch_size)
        sizes = [min(dl.batch_size, dl.n_rows - start) for start in starts]

        def launches_of(bufs: dict) -> list[Launch]:
            bufs.update(losses=self.device.empty(len(sizes), self.config.dtype), sizes=sizes)
            return [launch for batch, (start, n) in enumerate(zip(starts, sizes))
                    for launch in (*self._row_launches(bufs, start, n), self._step_launch(bufs, start, n, batch))]

        scalars = (float(self.opt.lr), dl.n_rows, dl.batch_size, len(dl))
        graph = self._record(self._train, dl, scalars, max(sizes), launches_of)
        if graph is not self._train:
            self._train, self._shuffled = graph, False  # a new perm buffer, holding the rows in order
        return graph

    @property
    def launches_per_batch(self) -> int:
        """Kernels launched per batch: 2 for the linear model, 3 for simple_net."""
        return 2 if self.config.kind == "linear" else 3

    def train_epoch(self, epoch: int = 1) -> float:
        """One epoch, in the order the loader gives for its current epoch (``dl.epoch``, which the
        :class:`~numpy_mnist.learner.Learner` sets before every epoch, and which this leaves as it
        is); the mean training loss.

        The batch losses are read once, after the replay.  A NaN or infinite one raises
        :class:`~numpy_mnist.errors.DivergenceError` naming the epoch and the first bad batch, as
        :func:`numpy_mnist.learner.train_epoch` does (the whole epoch has run by then;
        :func:`numpy_mnist.training.fit` puts the last finished epoch's parameters back).
        """
        g, dl = self._ensure_train(), self.train_dl
        if dl.shuffle or self._shuffled:  # unshuffled, perm already holds the rows in order unless a shuffle ran
            self.device.upload(g.buffers["perm"], dl.order(dl.epoch).astype(np.int32))
            self._shuffled = dl.shuffle
        g.graph.replay()
        return epoch_loss(self.device.to_host(g.buffers["losses"]).tolist(), g.buffers["sizes"], epoch=epoch)

    # -- validation -----------------------------------------------------------------------------
    def _ensure_valid(self) -> _Graph:
        dl = self.valid_dl
        if dl is None:
            raise InputError("this FusedTrainer was built without a validation DataLoader")
        n, parts, t, i32 = dl.n_rows, _blocks(dl.n_rows, CHUNK), self.config.dtype, np.int32

        def launches_of(bufs: dict) -> list[Launch]:
            dev = self.device
            bufs.update(part_term=dev.empty(parts, t), part_correct=dev.empty(parts, np.int32), out=dev.empty(2, t))
            part_term, part_correct = bufs["part_term"], bufs["part_correct"]
            return self._row_launches(bufs, 0, n) + [
                Launch(self.names["sum_chunks"], _blocks(parts, PARAM_BLOCK), PARAM_BLOCK,
                       (bufs["term"], bufs["correct"], i32(n), i32(CHUNK), part_term, part_correct)),
                Launch(self.names["sum_parts"], 1, 1, (part_term, part_correct, i32(parts), bufs["out"])),
            ]

        self._valid = self._record(self._valid, dl, (n,), n, launches_of)
        return self._valid

    def validate(self) -> tuple[float, float]:
        """``(valid_loss, accuracy)`` over every validation row, each row counted once, as
        :func:`numpy_mnist.learner.validate_epoch` gives them: one replay, one read."""
        g = self._ensure_valid()
        g.graph.replay()
        total, right = self.device.to_host(g.buffers["out"]).tolist()
        n = self.valid_dl.n_rows
        return total / n, right / n
