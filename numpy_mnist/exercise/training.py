"""``exercise check --train``: the book's simple_net trained with the learner's backward functions.

:func:`exercise_net` is the book's ``simple_net`` (784 -> 30 -> ReLU -> 1, ``mnist_loss``, float64)
with the learner's ``linear_backward`` and ``relu_backward`` swapped into the model's own backward
chain (:class:`numpy_mnist.models.MLP`) and ``mnist_loss_backward`` into its loss.

Two runs start from the same parameters on the same batches: one with the reference functions
(:mod:`numpy_mnist.layers`, :mod:`numpy_mnist.losses`), in this process, and one with the learner's,
in the sandbox's child process (:meth:`~numpy_mnist.exercise.sandbox.Sandbox.train`), epoch by epoch
side by side.  Both train in float64, so two correct sets of functions give curves that agree to
rounding (far below ``PART_RTOL``), and the first epoch where a loss differs by more is where the
runs *part*.  Functions the learner has not written yet are taken from the reference (and said so).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Mapping

from numpy_mnist import layers, losses
from numpy_mnist.data import DataLoader, load_mnist_sample
from numpy_mnist.learner import EpochRecord, Learner
from numpy_mnist.models import MLP, simple_net
from numpy_mnist.optim import SGD
from numpy_mnist.plots import pyplot, save_figure

__all__ = ["TrainConfig", "SideBySide", "reference_functions", "exercise_net", "make_learner", "train",
           "side_by_side", "first_parting", "curve_row", "CURVE_HEADER", "plot_curves", "PART_RTOL"]

#: Two losses of the same epoch "differ beyond rounding" when their relative difference exceeds this.
PART_RTOL = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    """The book's final run by default: simple_net, hidden 30, lr 0.1, batch 256, 40 epochs, in order."""

    epochs: int = 40
    lr: float = MLP.book_lr
    batch_size: int = 256
    hidden: int = 30
    seed: int = 0
    #: The learner's functions used in their run (the others come from the reference).
    learner_functions: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "learner_functions": list(self.learner_functions)}


def reference_functions() -> dict[str, Callable]:
    """The reference backward functions simple_net trains with, by name."""
    return {"mnist_loss_backward": losses.mnist_loss_backward, "linear_backward": layers.linear_backward,
            "relu_backward": layers.relu_backward}


def exercise_net(functions: Mapping[str, Callable], *, hidden: int = 30, seed: int = 0):
    """:func:`numpy_mnist.models.simple_net` (float64, ``mnist_loss``) whose backward pass calls
    ``functions["linear_backward"]``, ``["relu_backward"]`` and ``["mnist_loss_backward"]``."""
    net = simple_net(hidden, seed, "numpy", "mnist_loss", dtype="float64")
    net.linear_backward = functions["linear_backward"]
    net.relu_backward = functions["relu_backward"]
    net.loss = dataclasses.replace(net.loss, backward=functions["mnist_loss_backward"])
    return net


def make_learner(functions: Mapping[str, Callable], config: TrainConfig) -> Learner:
    """A :class:`~numpy_mnist.learner.Learner` of :func:`exercise_net` on the bundled 3s and 7s."""
    model = exercise_net(functions, hidden=config.hidden, seed=config.seed)
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    train_dl = DataLoader(train_x, train_y, config.batch_size, backend=model.backend)
    valid_dl = DataLoader(valid_x, valid_y, config.batch_size, backend=model.backend)
    return Learner(model, train_dl, valid_dl, SGD(model.params, config.lr))


def train(functions: Mapping[str, Callable], config: TrainConfig, *, on_epoch: Callable | None = None):
    """Train :func:`exercise_net` for ``config.epochs``; the list of :class:`EpochRecord`."""
    return make_learner(functions, config).fit(config.epochs, on_epoch_end=on_epoch)


# -- comparing the runs -------------------------------------------------------------------------------

def _differ(a: float, b: float) -> bool:
    return not abs(a - b) <= PART_RTOL * max(abs(a), abs(b))


def first_parting(reference: list, yours: list) -> int | None:
    """The first epoch whose train or valid loss differs by more than ``PART_RTOL`` relative, or None."""
    for r, y in zip(reference, yours):
        if _differ(r.train_loss, y.train_loss) or _differ(r.valid_loss, y.valid_loss):
            return r.epoch
    return None


#: The header of :func:`curve_row`'s rows.
CURVE_HEADER = (f"{'epoch':>5}  {'reference: train':>16}  {'valid':>8}  {'accuracy':>8}  "
                f"{'yours: train':>12}  {'valid':>8}  {'accuracy':>8}")


def curve_row(reference, yours=None, *, parts: bool = False) -> str:
    """One epoch of both runs (``-`` where the learner's run has stopped)."""
    mine = (f"{yours.train_loss:>12.6f}  {yours.valid_loss:>8.6f}  {yours.accuracy:>8.4f}" if yours is not None
            else f"{'-':>12}  {'-':>8}  {'-':>8}")
    mark = "  <- the runs part" if parts else ""
    return (f"{reference.epoch:>5}  {reference.train_loss:>16.6f}  {reference.valid_loss:>8.6f}  "
            f"{reference.accuracy:>8.4f}  {mine}{mark}")


@dataclass(frozen=True)
class SideBySide:
    """Both runs: their histories, how the learner's ended, and the first epoch where they part."""

    reference: list
    yours: list
    #: "trained", or why the learner's run stopped early, in one line.
    ending: str
    part: int | None

    @property
    def finished(self) -> bool:
        return self.ending == "trained"


def _next_epoch(messages, epoch: int) -> tuple[EpochRecord | None, str | None]:
    """The learner's record of ``epoch``, or why its run stopped there."""
    message = next(messages)
    if message[0] == "epoch":
        return EpochRecord(**message[1]), None
    if message[0] == "diverged":
        return None, (f"your run diverged in epoch {epoch}: its training loss became NaN or infinite (gradients "
                      "that are far too large?)")
    return None, f"your run stopped in epoch {epoch}: {message[1]}"  # "raised" or "failed"


def side_by_side(box, config: TrainConfig, *, epoch_timeout: float,
                 on_epoch: Callable | None = None) -> SideBySide:
    """The reference run here and the learner's in ``box`` (a Sandbox), epoch by epoch.

    ``on_epoch(reference_record, yours_record_or_None)`` is called after each epoch.  The learner's
    run may end early: an exception in one of its functions, a NaN loss, a time-out.
    """
    learner = make_learner(reference_functions(), config)
    messages = box.train(config.as_dict(), epoch_timeout=epoch_timeout)
    yours, ending = [], None
    for _ in range(config.epochs):
        learner.fit(1)
        record = None
        if ending is None:
            record, ending = _next_epoch(messages, len(yours) + 1)
            yours += [record] if record is not None else []
        if on_epoch is not None:
            on_epoch(learner.history[-1], record)
    if ending is None:
        message = next(messages, ("trained",))
        ending = "trained" if message[0] == "trained" else f"your run ended with {message!r}"
    return SideBySide(list(learner.history), yours, ending, first_parting(learner.history, yours))


def plot_curves(reference: list, yours: list, path):
    """Both runs' losses and valid accuracy against the epoch, as a PNG (needs matplotlib); its path."""

    fig, (loss_ax, acc_ax) = pyplot().subplots(1, 2, figsize=(10, 4))
    for records, label, colour in ((reference, "reference", "tab:blue"), (yours, "yours", "tab:orange")):
        epochs = [r.epoch for r in records]
        loss_ax.plot(epochs, [r.valid_loss for r in records], color=colour, label=f"{label}: valid loss")
        loss_ax.plot(epochs, [r.train_loss for r in records], ":", color=colour, label=f"{label}: train loss")
        acc_ax.plot(epochs, [r.accuracy for r in records], color=colour, label=label)
    for ax, ylabel in ((loss_ax, "loss"), (acc_ax, "valid accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend()
    fig.suptitle("simple_net on the 3s and 7s: reference backward functions and yours")
    return save_figure(fig, path)
