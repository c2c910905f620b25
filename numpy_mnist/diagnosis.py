"""A bad run, explained: what went wrong in a finished training run, and what to try.

A run can finish without a NaN (which :class:`~numpy_mnist.errors.DivergenceError` catches) and
still be worthless.  Two kinds are common in chapter 4, both from a learning rate far too large:

**The loss grew.**  The steps overshot: each one throws the weights further out, so the few wrong
answers are made with enormous confidence and their loss is huge (binary cross-entropy of a wrong
answer grows like ``|z|``), while accuracy may even look fine.  Caught when the final validation
loss is finite and at least :data:`LOSS_GROWTH` (100) times the loss the model started from.

**Chance accuracy.**  The model does no better than always answering the most common class of the
validation set (:func:`chance_accuracy`): accuracy at most that share plus :data:`CHANCE_MARGIN`
(0.02).  Then, by what the loss did over the last epochs:

* it stopped moving (the last two epochs' losses agree to :data:`STUCK_RTOL`): every gradient is
  0.  With ``mnist_loss`` this is the sigmoid saturated: one huge step put every logit so far from
  0 that ``sigma'(z) = sigma(z)(1 - sigma(z))`` is exactly 0 in floating point, and nothing moves
  again.  (In ``simple_net`` the ReLUs can die the same way: none lets anything through.)
  Try a lower learning rate.
* it is still falling (the final validation loss is below :data:`FALLING` (0.99) times the
  starting one): the run is too short, not broken.  Train longer.
* otherwise the steps are too large to settle.  Try a lower learning rate.

:func:`diagnose` reads only the history (and the starting loss), so it costs nothing; it returns
``None`` for a healthy run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from numpy_mnist.backends.host import to_numpy
from numpy_mnist.losses import Loss, get_loss

__all__ = ["CHANCE_MARGIN", "FALLING", "LOSS_GROWTH", "STUCK_RTOL", "Diagnosis", "chance_accuracy", "diagnose"]

#: Accuracy within this much of (or below) the chance rate counts as chance accuracy.
CHANCE_MARGIN = 0.02
#: A final validation loss this many times the starting one (and finite) means the steps overshot.
LOSS_GROWTH = 100.0
#: The last two epochs' train and validation losses agreeing to this relative tolerance: stuck.
STUCK_RTOL = 1e-4
#: A final validation loss below this fraction of the starting one is still falling.
FALLING = 0.99


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong: ``kind`` is ``"loss_grew"``, ``"saturated"``, ``"too_short"`` or
    ``"not_settling"``; ``message`` is one line saying what happened and what to try."""

    kind: str
    message: str

    def __str__(self) -> str:
        return self.message


def chance_accuracy(labels) -> float:
    """The accuracy of always answering the most common class: its share of ``labels``.

    ``labels`` are (N, 1) targets of 0 and 1, or (N,) class labels, as
    :func:`~numpy_mnist.datasets.load_dataset` returns them, of any backend.
    For the bundled sample's validation set (1,010 threes, 1,028 sevens) it is 0.5044; for MNIST's
    test set (1,135 ones of 10,000) 0.1135.
    """
    y = to_numpy(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be (N,) or (N, 1) with N >= 1, got shape {y.shape}")
    _, counts = np.unique(y, return_counts=True)
    return float(counts.max() / counts.sum())


def diagnose(history: Sequence, *, chance: float, lr: float, start_loss: float | None = None,
             suggested_lr: float | None = None, model_kind: str | None = None,
             loss: str | Loss | None = None) -> Diagnosis | None:
    """Explain a finished run that went wrong; ``None`` when it looks healthy.

    Parameters
    ----------
    history : the run's :class:`~numpy_mnist.learner.EpochRecord` list (anything with
        ``train_loss``, ``valid_loss`` and ``accuracy``).
    chance : the chance accuracy of the validation set (:func:`chance_accuracy`).
    lr : the learning rate the run used.
    start_loss : the validation loss of the untrained model (``Learner.start.valid_loss``); the
        first epoch's is used when it is not known.
    suggested_lr : a learning rate known to work (the dataset's default); the advice names it when
        it is below ``lr``, else ``lr / 10``.
    model_kind, loss : ``model.kind`` and ``model.loss`` (or its name), to name the likely cause of
        a stuck run (the sigmoid saturating, ReLUs dying).
    """
    if not history:
        return None
    last, final = history[-1], history[-1].valid_loss
    reference = start_loss if start_loss is not None else history[0].valid_loss
    since = "before training" if start_loss is not None else "after the first epoch"
    lower = suggested_lr if suggested_lr is not None and suggested_lr < lr else lr / 10
    try_lower = f"try a lower learning rate (--lr), e.g. {lower:g}"

    if math.isfinite(final) and reference > 0 and final >= LOSS_GROWTH * reference:
        return Diagnosis("loss_grew", (
            f"the validation loss grew from {reference:.4g} {since} to {final:.4g} ({final / reference:.1e} "
            f"times as large) without becoming NaN: the steps overshot, throwing the weights so far out that "
            f"wrong answers are made with enormous confidence; {try_lower}"))

    if not last.accuracy <= chance + CHANCE_MARGIN:
        return None
    at_chance = (f"the run ended at chance accuracy ({last.accuracy:.4f}; always answering the most common "
                 f"class scores {chance:.4f})")
    if len(history) >= 2 and _same(history[-1], history[-2]):
        return Diagnosis("saturated", f"{at_chance} and its loss stopped moving: {_why_stuck(model_kind, loss)}; "
                                      f"{try_lower}")
    epochs = f"{len(history)} epoch" + ("s" if len(history) != 1 else "")
    if final < FALLING * reference:
        return Diagnosis("too_short", f"{at_chance} after {epochs}, its validation loss still falling "
                                      f"({reference:.4g} {since}, now {final:.4g}): train longer (more --epochs)")
    return Diagnosis("not_settling", f"{at_chance} and its validation loss is not falling ({reference:.4g} {since}, "
                                     f"now {final:.4g}): the steps are too large to settle; {try_lower}")


def _same(a, b) -> bool:
    return all(math.isclose(getattr(a, k), getattr(b, k), rel_tol=STUCK_RTOL) for k in ("train_loss", "valid_loss"))


def _why_stuck(model_kind: str | None, loss: str | Loss | None) -> str:
    """Why every gradient is 0: a saturating loss's sigmoid (or, in a network, its ReLUs), else the ReLUs."""
    if loss is not None and get_loss(loss).saturates:
        return ("the sigmoid saturated (every logit is so far from 0 that its slope, and with it every gradient, is 0)"
                if model_kind == "linear" else "the sigmoid saturated or the ReLUs died, so every gradient is 0")
    return ("the ReLUs died (none lets anything through), so the gradients vanished" if model_kind == "simple_net"
            else "the gradients vanished")
