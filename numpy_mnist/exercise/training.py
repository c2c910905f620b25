"""``exercise check --train``: the book's simple_net trained with the learner's backward functions.

:func:`exercise_net` is the book's ``simple_net`` (784 -> 30 -> ReLU -> 1, ``mnist_loss``, float64)
with the learner's ``linear_backward`` and ``relu_backward`` swapped into the model's own backward
chain (:class:`numpy_mnist.models.MLP`) and ``mnist_loss_backward`` into its loss.

Two runs start from the same parameters on the same batches, epoch by epoch side by side: one with
the reference functions (:mod:`numpy_mnist.layers`, :mod:`numpy_mnist.losses`), and one whose
backward functions are the learner's, each call made in the sandbox's child process
(:meth:`~numpy_mnist.exercise.sandbox.Sandbox.call`, under its time limit) and its answer checked
for type and shape as ``exercise check`` checks it, before the model uses it.  Both train in
float64, so two correct sets of functions give curves that agree to rounding (far below
``PART_RTOL``), and the first epoch where a loss differs by more is where the runs *part*.
Functions the learner has not written yet are taken from the reference (and said so).
"""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from typing import Callable, Mapping

from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.errors import DivergenceError
from numpy_mnist.exercise.checker import Example, checked_outputs
from numpy_mnist.exercise.functions import TRAINING_FUNCTIONS, get_exercise
from numpy_mnist.exercise.sandbox import Failure
from numpy_mnist.learner import Learner
from numpy_mnist.models import MLP, simple_net
from numpy_mnist.optim import SGD
from numpy_mnist.plots import pyplot, save_figure

__all__ = ["HIDDEN", "LR", "BATCH_SIZE", "SideBySide", "reference_functions", "exercise_net", "make_learner",
           "side_by_side", "curve_row", "CURVE_HEADER", "plot_curves", "PART_RTOL"]

#: Two losses of the same epoch "differ beyond rounding" when their relative difference exceeds this.
PART_RTOL = 1e-6
#: The book's final run: simple_net with 30 hidden units, lr 0.1, batches of 256, in order, from seed 0.
HIDDEN, LR, BATCH_SIZE = 30, MLP.book_lr, 256


def reference_functions() -> dict[str, Callable]:
    """The reference backward functions simple_net trains with, by name."""
    return {name: get_exercise(name).reference for name in TRAINING_FUNCTIONS}


def called_in(box, name: str) -> Callable:
    """The learner's function ``name``, called in ``box`` (a Sandbox); its answer as arrays checked for
    type and shape, else a :class:`~numpy_mnist.exercise.sandbox.Failure`."""
    def call(*args, **kwargs):
        outputs = checked_outputs(get_exercise(name), Example(args, kwargs), box.call(name, args, kwargs))
        return outputs if len(outputs) > 1 else outputs[0]
    return call


def exercise_net(functions: Mapping[str, Callable]):
    """:func:`numpy_mnist.models.simple_net` (float64, ``mnist_loss``) whose backward pass calls
    ``functions["linear_backward"]``, ``["relu_backward"]`` and ``["mnist_loss_backward"]``."""
    net = simple_net(HIDDEN, 0, "numpy", "mnist_loss", dtype="float64")
    net.linear_backward, net.relu_backward = functions["linear_backward"], functions["relu_backward"]
    net.loss = dataclasses.replace(net.loss, backward=functions["mnist_loss_backward"])
    return net


def make_learner(functions: Mapping[str, Callable]) -> Learner:
    """A :class:`~numpy_mnist.learner.Learner` of :func:`exercise_net` on the bundled 3s and 7s."""
    model = exercise_net(functions)
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    return Learner(model, DataLoader(train_x, train_y, BATCH_SIZE, backend=model.backend),
                   DataLoader(valid_x, valid_y, BATCH_SIZE, backend=model.backend), SGD(model.params, LR))


# -- the two runs -------------------------------------------------------------------------------------

def _apart(reference, yours) -> bool:
    """Whether one epoch's train or valid losses differ by more than ``PART_RTOL`` relative."""
    return any(not abs(a - b) <= PART_RTOL * max(abs(a), abs(b))
               for a, b in ((reference.train_loss, yours.train_loss), (reference.valid_loss, yours.valid_loss)))


#: The header of :func:`curve_row`'s rows.
CURVE_HEADER = "epoch  reference: train     valid  accuracy  yours: train     valid  accuracy"


def curve_row(reference, yours=None, *, parts: bool = False) -> str:
    """One epoch of both runs (``-`` where the learner's run has stopped)."""
    mine = (f"{yours.train_loss:>12.6f}  {yours.valid_loss:>8.6f}  {yours.accuracy:>8.4f}" if yours is not None
            else f"{'-':>12}  {'-':>8}  {'-':>8}")
    return (f"{reference.epoch:>5}  {reference.train_loss:>16.6f}  {reference.valid_loss:>8.6f}  "
            f"{reference.accuracy:>8.4f}  {mine}" + ("  <- the runs part" if parts else ""))


#: Both runs: their histories, how the learner's ended ("trained", or why it stopped early, in one
#: line), and the first epoch where they part (None: nowhere).
SideBySide = namedtuple("SideBySide", "reference yours ending part")


def side_by_side(box, learner_functions, epochs: int, *, show: Callable = lambda row: None) -> SideBySide:
    """The reference run and the learner's (its ``learner_functions`` called in ``box``, a Sandbox, the
    others the reference's), epoch by epoch, each epoch's :func:`curve_row` passed to ``show``.  The
    learner's run may end early: an exception or a wrong shape in one of its functions, a NaN loss, a
    time-out."""
    reference = make_learner(reference_functions())
    yours = make_learner({**reference_functions(), **{n: called_in(box, n) for n in learner_functions}})
    ending, part = "trained", None
    for epoch in range(1, epochs + 1):
        reference.fit(1)
        try:
            record = yours.one_epoch() if ending == "trained" else None
        except Failure as failed:
            record, ending = None, f"your run stopped in epoch {epoch}: {failed}"
        except DivergenceError:
            record, ending = None, (f"your run diverged in epoch {epoch}: its training loss became NaN or infinite "
                                    "(gradients that are far too large?)")
        parts = part is None and record is not None and _apart(reference.history[-1], record)
        part = epoch if parts else part
        show(curve_row(reference.history[-1], record, parts=parts))
    return SideBySide(reference.history, yours.history, ending, part)


def plot_curves(reference: list, yours: list, path):
    """Both runs' losses and valid accuracy against the epoch, as a PNG (needs matplotlib); its path."""
    fig, (loss_ax, acc_ax) = pyplot().subplots(1, 2, figsize=(10, 4))
    for records, label, colour in ((reference, "reference", "tab:blue"), (yours, "yours", "tab:orange")):
        epochs = [r.epoch for r in records]
        loss_ax.plot(epochs, [r.valid_loss for r in records], color=colour, label=f"{label}: valid loss")
        loss_ax.plot(epochs, [r.train_loss for r in records], ":", color=colour, label=f"{label}: train loss")
        acc_ax.plot(epochs, [r.accuracy for r in records], color=colour, label=label)
    for ax, ylabel in ((loss_ax, "loss"), (acc_ax, "valid accuracy")):
        ax.set(xlabel="epoch", ylabel=ylabel)
        ax.legend()
    fig.suptitle("simple_net on the 3s and 7s: reference backward functions and yours")
    return save_figure(fig, path)
