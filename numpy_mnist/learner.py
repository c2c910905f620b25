"""The training loop: the book's ``train_epoch``, ``validate_epoch`` and ``Learner``.

Per epoch, for every batch: forward, loss, backward (all inside ``model.loss_and_grads``), then
``opt.step(grads)``, the same on every backend.  The batch losses stay where they were computed
and are read once, at the end of the epoch, so a GPU is never stalled batch by batch; a NaN or
infinite one is still traced to its batch.

This is the reference, and it holds no policy: putting the last good parameters back after a
divergence or Ctrl-C, quieting floating-point warnings, a progress bar and the choice of a fast
path live at the edge, in :mod:`numpy_mnist.training`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

from numpy_mnist.checks import check_targets
from numpy_mnist.errors import DivergenceError, InputError
from numpy_mnist.metrics import correct_count

__all__ = ["EpochRecord", "Learner", "StartRecord", "epoch_loss", "train_epoch", "validate_epoch"]


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
    """One pass over ``train_dl``, a step of ``opt`` per batch; returns the mean training loss.

    The book's loop: for each batch, the loss and its gradients (``model.loss_and_grads``), then
    ``opt.step(grads)``.  The batch losses are read once, at the end, and checked there: a NaN or
    infinite one raises :class:`DivergenceError` naming the epoch and the first bad batch (the
    epoch has run to its end by then; which parameters to keep is the caller's choice).
    """
    losses, sizes = [], []
    for xb, yb in train_dl:
        loss, grads = model.loss_and_grads(xb, yb)
        opt.step(grads)
        losses.append(loss)
        sizes.append(xb.shape[0])
    batch_losses = model.backend.to_host(model.backend.xp.stack(losses)).tolist()
    return epoch_loss(batch_losses, sizes, epoch=epoch)


def epoch_loss(batch_losses: list[float], sizes: list[int], *, epoch: int) -> float:
    """The epoch's mean training loss, every row counted once: ``sum(loss_b n_b) / sum(n_b)``.

    Raises :class:`DivergenceError`, naming the epoch and the first bad batch, when a batch loss is
    NaN or infinite.
    """
    for i, value in enumerate(batch_losses, start=1):
        if not math.isfinite(value):
            raise DivergenceError(f"the training loss became {value} in epoch {epoch}, batch {i} of "
                                  f"{len(batch_losses)}: the learning rate is too high for this model; "
                                  "try a lower learning rate")
    return sum(v * n for v, n in zip(batch_losses, sizes)) / sum(sizes)


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

    ``opt`` is any optimizer object with ``step(grads)`` and ``lr`` (:class:`~numpy_mnist.optim.SGD`
    for the book's models: ``Learner(model, train_dl, valid_dl, SGD(model.params, lr))``).
    ``history`` gathers one :class:`EpochRecord` per epoch, counting on from the records it was
    given (so a resumed run continues its numbering).  ``start`` is a :class:`StartRecord` of the
    untrained model, measured before the first epoch of a run with no history (a resumed run passes
    the one it saved, or None when unknown).

    This is the reference: every batch through ``model.loss_and_grads`` and ``opt.step``.  A fast
    path subclasses it, overriding :meth:`_train_epoch` and :meth:`_validate`; which one trains is
    chosen above both, in :func:`numpy_mnist.training.make_learner`.
    """

    #: What trains the epochs, in words (``numpy-mnist train`` prints it).
    path = "reference array path"

    def __init__(self, model, train_dl, valid_dl, opt, history: list[EpochRecord] | None = None,
                 start: StartRecord | None = None) -> None:
        for name, dl in (("train", train_dl), ("valid", valid_dl)):
            if dl.backend != model.backend:
                raise InputError(f"the {name} DataLoader is on {dl.backend!r} but the model on {model.backend!r}: "
                                 "build both with the same backend")
            model.check_images(dl.x, name=f"{name} x")
            check_targets(dl.y, model.outputs, n=dl.n_rows, name=f"{name} y")
        self.model = model
        self.train_dl = train_dl
        self.valid_dl = valid_dl
        self.opt = opt
        self.history: list[EpochRecord] = list(history or [])
        self.start = start

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def fit(self, epochs: int, *, on_epoch_end: Callable[[EpochRecord], None] | None = None) -> list[EpochRecord]:
        """Train ``epochs`` more epochs; return the whole history."""
        for _ in range(epochs):
            record = self.one_epoch()
            if on_epoch_end is not None:
                on_epoch_end(record)
        return self.history

    def one_epoch(self) -> EpochRecord:
        """Train and validate one more epoch; its record is appended to :attr:`history` and returned.

        ``seconds`` runs from the start of training to the end of validation, whose figures have
        reached the host by then, so a GPU's queued work is inside it.
        """
        if not self.history and self.start is None:
            self.model.eval()
            self.start = StartRecord(*self._validate())
        epoch = self.epochs_done + 1
        self.train_dl.set_epoch(epoch - 1)
        start = time.perf_counter()
        self.model.train()
        train_loss = self._train_epoch(epoch)
        self.model.eval()
        valid_loss, accuracy = self._validate()
        record = EpochRecord(epoch, train_loss, valid_loss, accuracy, time.perf_counter() - start)
        self.history.append(record)
        return record

    def _train_epoch(self, epoch: int) -> float:
        """One training epoch (:func:`train_epoch`); a fast path overrides this and :meth:`_validate`."""
        return train_epoch(self.model, self.train_dl, self.opt, epoch=epoch)

    def _validate(self) -> tuple[float, float]:
        """``(valid_loss, accuracy)`` (:func:`validate_epoch`)."""
        return validate_epoch(self.model, self.valid_dl)
