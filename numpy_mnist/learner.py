"""The training loop: the book's ``train_epoch``, ``validate_epoch`` and ``Learner``.

Per epoch, for every batch: forward, loss, backward (all inside ``model.loss_and_grads``),
then ``opt.step(grads)``.  Batch losses stay on the device and are read once per epoch, so a GPU
is never stalled batch by batch; a NaN or infinite loss is still traced to its batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

from numpy_mnist.checks import check_targets
from numpy_mnist.errors import DivergenceError, InputError
from numpy_mnist.metrics import correct_count
from numpy_mnist.optim import SGD

__all__ = ["EpochRecord", "Learner", "StartRecord", "train_epoch", "validate_epoch"]


@dataclass(frozen=True)
class EpochRecord:
    """One line of the history: what ``history.json`` stores per epoch."""

    epoch: int
    train_loss: float
    valid_loss: float
    accuracy: float
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StartRecord:
    """The untrained model on the validation set: where the run started from.

    :func:`numpy_mnist.diagnosis.diagnose` measures a run's loss against it (a loss that grew a
    hundredfold since the start means the steps overshot).
    """

    valid_loss: float
    accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def train_epoch(model, train_dl, opt, *, epoch: int = 1) -> float:
    """One pass over ``train_dl`` with an SGD step per batch; returns the mean training loss.

    Raises :class:`DivergenceError`, naming the epoch and the first bad batch, when a batch loss is
    NaN or infinite; the caller decides which parameters to keep.  On the CPU every batch loss is
    read as it comes, so the run stops at that batch, before its step.  On a GPU, reading a loss
    would stall the device once per batch, so the losses stay there and are read (and checked)
    once, at the end of the epoch.
    """
    xp = model.backend.xp
    check_each_batch = not model.backend.is_gpu
    losses, sizes = [], []
    for i, (xb, yb) in enumerate(train_dl, start=1):
        loss, grads = model.loss_and_grads(xb, yb)
        if check_each_batch and not math.isfinite(value := float(loss)):
            raise _diverged(value, epoch, i, len(train_dl), opt.lr)
        opt.step(grads)
        losses.append(loss)
        sizes.append(xb.shape[0])
    batch_losses = model.backend.to_host(xp.stack(losses)).tolist()
    return epoch_loss(batch_losses, sizes, epoch=epoch, lr=opt.lr)


def epoch_loss(batch_losses: list[float], sizes: list[int], *, epoch: int, lr: float) -> float:
    """The epoch's mean training loss, every row counted once: ``sum(loss_b n_b) / sum(n_b)``.

    Raises :class:`DivergenceError`, naming the epoch and the first bad batch, when a batch loss
    (read back once per epoch) is NaN or infinite.
    """
    for i, value in enumerate(batch_losses, start=1):
        if not math.isfinite(value):
            raise _diverged(value, epoch, i, len(batch_losses), lr)
    return sum(v * n for v, n in zip(batch_losses, sizes)) / sum(sizes)


def _diverged(value: float, epoch: int, batch: int, batches: int, lr: float) -> DivergenceError:
    return DivergenceError(
        f"the training loss became {value} in epoch {epoch}, batch {batch} of {batches}: "
        f"the learning rate {lr:g} is too high for this model; try a lower --lr (e.g. {lr / 10:g})"
    )


def validate_epoch(model, valid_dl) -> tuple[float, float]:
    """Mean loss and accuracy over ``valid_dl``: ``(valid_loss, accuracy)``.

    The book averages per-batch accuracies, which weighs a short last batch like a full one; here
    every row counts once, so the accuracy is the true fraction of the validation set.
    """
    xp = model.backend.xp
    loss_sum = correct = 0
    for xb, yb in valid_dl:
        logits = model.forward(xb)
        loss_sum = loss_sum + model.loss.forward(logits, yb) * xb.shape[0]
        correct = correct + correct_count(logits, yb)
    totals = model.backend.to_host(xp.stack([xp.asarray(loss_sum), xp.asarray(correct)])).tolist()
    n = valid_dl.n_rows
    return totals[0] / n, totals[1] / n


class Learner:
    """The book's ``Learner``: a model, its data, an optimizer, and ``fit(epochs)``.

    ``history`` gathers one :class:`EpochRecord` per epoch, counting on from the records it was
    given (so a resumed run continues its numbering).  ``start`` is a :class:`StartRecord` of the
    untrained model, measured by the first :meth:`fit` of a run with no history (a resumed run passes
    the one it saved, or None when unknown).  If a loss diverges, or Ctrl-C arrives
    mid-epoch, the parameters are put back to the end of the last finished epoch before the
    :class:`DivergenceError` or :class:`KeyboardInterrupt` propagates.

    This is the reference: every batch through ``model.loss_and_grads`` and ``opt.step``.  A fast
    path subclasses it, overriding :meth:`_train_epoch` (and perhaps :meth:`_validate`), and is
    chosen in one place, :func:`numpy_mnist.fused.make_learner`.
    """

    #: What trains the epochs, in words (``numpy-mnist train`` prints it).
    path = "reference array path"

    def __init__(self, model, train_dl, valid_dl, lr: float = 0.1, opt: SGD | None = None,
                 history: list[EpochRecord] | None = None, start: StartRecord | None = None) -> None:
        for name, dl in (("train", train_dl), ("valid", valid_dl)):
            if dl.backend != model.backend:
                raise InputError(f"the {name} DataLoader is on {dl.backend!r} but the model on {model.backend!r}: "
                                 "build both with the same backend")
            model.check_images(dl.x, name=f"{name} x")
            check_targets(dl.y, model.outputs, n=dl.n_rows, name=f"{name} y")
        self.model = model
        self.train_dl = train_dl
        self.valid_dl = valid_dl
        self.opt = opt if opt is not None else SGD(model.params, lr)
        self.history: list[EpochRecord] = list(history or [])
        self.start = start

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def fit(self, epochs: int, *, on_epoch_end: Callable[[EpochRecord], None] | None = None,
            progress: bool = False) -> list[EpochRecord]:
        """Train ``epochs`` more epochs; return the whole history (``progress``: a tqdm bar)."""
        if progress:
            from tqdm.auto import tqdm
        else:  # tqdm.auto in a notebook without ipywidgets warns on import, even for a disabled bar
            from tqdm import tqdm

        if not self.history and self.start is None and epochs > 0:
            self.start = StartRecord(*self._validate())

        bar = tqdm(total=epochs, desc="training", unit="epoch", disable=None if progress else True, leave=False)
        try:
            for _ in range(epochs):
                record = self.one_epoch()
                self.history.append(record)
                bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
                bar.update()
                if on_epoch_end is not None:
                    on_epoch_end(record)
        finally:
            bar.close()
        return self.history

    def one_epoch(self) -> EpochRecord:
        epoch = self.epochs_done + 1
        backend = self.model.backend
        good = {name: backend.xp.asarray(p, copy=True) for name, p in self.model.params.items()}
        self.train_dl.set_epoch(epoch - 1)
        backend.synchronize()
        start = time.perf_counter()
        try:
            with backend.quiet_float_errors():
                train_loss = self._train_epoch(epoch)
        except (DivergenceError, KeyboardInterrupt):
            # Half an epoch is no state to keep: go back to the end of the last finished epoch,
            # which is what a checkpoint holds and what a resumed run starts from.
            for name, value in good.items():
                self.model.params[name][...] = value
            raise
        valid_loss, accuracy = self._validate()
        backend.synchronize()
        return EpochRecord(epoch, train_loss, valid_loss, accuracy, time.perf_counter() - start)

    def _train_epoch(self, epoch: int) -> float:
        """One training epoch (:func:`train_epoch`); a fast path overrides this and :meth:`_validate`."""
        return train_epoch(self.model, self.train_dl, self.opt, epoch=epoch)

    def _validate(self) -> tuple[float, float]:
        """``(valid_loss, accuracy)`` (:func:`validate_epoch`)."""
        return validate_epoch(self.model, self.valid_dl)
