"""``exercise check --train``: the book's simple_net trained with the learner's backward functions.

:class:`ExerciseNet` is the book's ``simple_net`` (784 -> 30 -> ReLU -> 1, ``mnist_loss``) whose
backward pass calls the three backward functions it is given::

    z  = linear(relu(linear(x, w1, b1)), w2, b2)     (the reference forwards)
    dz = mnist_loss_backward(z, y)
    da, dw2, db2 = linear_backward(dz, a, w2)
    dh = relu_backward(da, h)
    _, dw1, db1 = linear_backward(dh, x, w1, need_dx=False)

Two runs start from the same parameters on the same batches: one with the reference functions
(:mod:`numpy_mnist.layers`, :mod:`numpy_mnist.losses`), in this process, and one with the learner's,
in the sandbox's child process (:func:`run_in_child`), epoch by epoch side by side.  Both train in
float64, so two correct sets of functions give curves that agree to rounding (far below ``PART_RTOL``),
and the first epoch where a loss differs by more is where the runs *part*.  Functions the learner has
not written yet are taken from the reference (and said so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from numpy_mnist import layers, losses
from numpy_mnist.errors import DivergenceError, NumpyMnistError
from numpy_mnist.models import MLP, simple_net

__all__ = ["ExerciseNet", "TrainConfig", "SideBySide", "reference_functions", "make_learner", "train",
           "run_in_child", "side_by_side", "first_parting", "curves_table", "curve_row", "CURVE_HEADER",
           "plot_curves", "PART_RTOL"]

#: Two losses of the same epoch "differ beyond rounding" when their relative difference exceeds this.
PART_RTOL = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    """The book's final run by default: simple_net, hidden 30, lr 0.1, batch 256, 40 epochs, in order."""

    epochs: int = 40
    lr: float = 0.1
    batch_size: int = 256
    hidden: int = 30
    seed: int = 0
    #: The learner's functions used in their run (the others come from the reference).
    learner_functions: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "hidden": self.hidden,
                "seed": self.seed, "learner_functions": list(self.learner_functions)}


def reference_functions() -> dict[str, Callable]:
    """The reference backward functions simple_net trains with, by name."""
    return {"mnist_loss_backward": losses.mnist_loss_backward, "linear_backward": layers.linear_backward,
            "relu_backward": layers.relu_backward}


class ExerciseNet(MLP):
    """The book's ``simple_net`` with ``mnist_loss``, differentiated by the backward functions given.

    ``functions`` maps ``mnist_loss_backward``, ``linear_backward`` and ``relu_backward`` to callables
    with the reference signatures.  Parameters are :func:`numpy_mnist.models.simple_net`'s for the
    same ``hidden`` and ``seed``.
    """

    def __init__(self, functions: Mapping[str, Callable], *, hidden: int = 30, seed: int = 0,
                 backend: str = "numpy", dtype: str = "float64") -> None:
        base = simple_net(hidden, seed, backend, "mnist_loss", dtype=dtype)
        super().__init__(base.params, base.backend, base.loss)
        self.functions = dict(functions)

    def loss_and_grads(self, x, y):
        """The mean loss (a 0-d array, as the reference's) and the gradients, by the given backward
        functions."""
        p, f = self.params, self.functions
        h = layers.linear(x, p["w1"], p["b1"])
        a = layers.relu(h)
        z = layers.linear(a, p["w2"], p["b2"])
        loss = losses.mnist_loss(z, y)
        dz = f["mnist_loss_backward"](z, y)
        da, dw2, db2 = f["linear_backward"](dz, a, p["w2"])
        dh = f["relu_backward"](da, h)
        _, dw1, db1 = f["linear_backward"](dh, x, p["w1"], need_dx=False)
        return loss, {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def make_learner(functions: Mapping[str, Callable], config: TrainConfig):
    """A :class:`~numpy_mnist.learner.Learner` of :class:`ExerciseNet` on the bundled 3s and 7s (float64)."""
    from numpy_mnist.data import DataLoader, load_mnist_sample
    from numpy_mnist.learner import Learner
    from numpy_mnist.optim import SGD

    model = ExerciseNet(functions, hidden=config.hidden, seed=config.seed)
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    train_dl = DataLoader(train_x, train_y, config.batch_size, backend=model.backend)
    valid_dl = DataLoader(valid_x, valid_y, config.batch_size, backend=model.backend)
    return Learner(model, train_dl, valid_dl, SGD(model.params, config.lr))


def train(functions: Mapping[str, Callable], config: TrainConfig, *, on_epoch: Callable | None = None):
    """Train :class:`ExerciseNet` for ``config.epochs``; the list of :class:`EpochRecord`."""
    return make_learner(functions, config).fit(config.epochs, on_epoch_end=on_epoch)


# -- the learner's run, in the sandbox's child process ------------------------------------------------

class LearnerCallError(NumpyMnistError):
    """One of the learner's functions raised, or returned the wrong thing, during training."""

    def __init__(self, function: str, message: str) -> None:
        super().__init__(message)
        self.function = function


def _guarded(name: str, function: Callable, path: str) -> Callable:
    """The learner's ``function``, its exceptions and wrong shapes turned into :class:`LearnerCallError`."""
    import numpy as np

    from numpy_mnist.exercise.sandbox import describe_exception

    def call(*args, **kwargs):
        try:
            out = function(*args, **kwargs)
        except Exception as exc:  # the learner's code may raise anything
            raise LearnerCallError(name, f"{name} raised {describe_exception(exc, path)}") from None
        if name == "linear_backward":
            dout, x, w = args
            want = [(x.shape if kwargs.get("need_dx", True) else None), w.shape, (w.shape[1],)]
            got = list(out) if isinstance(out, (tuple, list)) and len(out) == 3 else None
        else:
            want, got = [args[0].shape], [out]
        if got is None:
            raise LearnerCallError(name, f"{name} returned {type(out).__name__}, not (dx, dw, db)")
        for shape, value in zip(want, got):
            if shape is not None and (not isinstance(value, np.ndarray) or value.shape != shape):
                have = value.shape if isinstance(value, np.ndarray) else type(value).__name__
                raise LearnerCallError(name, f"{name} returned {have} where {shape} was needed")
        return out

    return call


def run_in_child(conn, module, path: str, config: dict) -> None:
    """The sandbox's ``train`` request: train with the learner's functions, report each epoch on ``conn``."""
    cfg = TrainConfig(**{**config, "learner_functions": tuple(config["learner_functions"])})
    functions = reference_functions()
    for name in cfg.learner_functions:
        functions[name] = _guarded(name, getattr(module, name), path)
    try:
        train(functions, cfg, on_epoch=lambda record: conn.send(("epoch", record.as_dict())))
    except LearnerCallError as exc:
        conn.send(("raised", exc.function, str(exc)))
        return
    except DivergenceError as exc:
        conn.send(("diverged", str(exc)))
        return
    conn.send(("trained", None))


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


def curves_table(reference: list, yours: list, part: int | None = None) -> str:
    """Both learning curves side by side, one row per epoch; ``part`` marks where they part."""
    return "\n".join([CURVE_HEADER] + [curve_row(r, yours[i] if i < len(yours) else None, parts=r.epoch == part)
                                        for i, r in enumerate(reference)])


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


def side_by_side(box, config: TrainConfig, *, epoch_timeout: float,
                 on_epoch: Callable | None = None) -> SideBySide:
    """The reference run here and the learner's in ``box`` (a started Sandbox), epoch by epoch.

    ``on_epoch(reference_record, yours_record_or_None)`` is called after each epoch.  The learner's
    run may end early: an exception in one of its functions, a NaN loss, a time-out.
    """
    from numpy_mnist.exercise.sandbox import CallFailed
    from numpy_mnist.learner import EpochRecord

    learner = make_learner(reference_functions(), config)
    messages = box.train(config.as_dict(), epoch_timeout=epoch_timeout)
    yours, ending = [], None
    for _ in range(config.epochs):
        learner.fit(1)
        record = None
        if ending is None:
            try:
                message = next(messages)
            except CallFailed as failed:
                message = ("failed", failed.message)
            if message[0] == "epoch":
                record = EpochRecord(**message[1])
                yours.append(record)
            elif message[0] == "raised":
                ending = f"your run stopped in epoch {len(yours) + 1}: {message[2]}"
            elif message[0] == "diverged":
                ending = (f"your run diverged in epoch {len(yours) + 1}: its training loss became NaN or "
                          "infinite (gradients that are far too large?)")
            elif message[0] == "failed":
                ending = f"your run stopped in epoch {len(yours) + 1}: {message[1]}"
        if on_epoch is not None:
            on_epoch(learner.history[-1], record)
    if ending is None:
        message = next(messages, ("trained", None))
        ending = "trained" if message[0] == "trained" else f"your run ended with {message!r}"
    return SideBySide(list(learner.history), yours, ending, first_parting(learner.history, yours))


def plot_curves(reference: list, yours: list, path):
    """Both runs' losses and valid accuracy against the epoch, as a PNG (needs matplotlib); its path."""
    from numpy_mnist.plots import pyplot, save_figure

    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for records, label, colour in ((reference, "reference", "tab:blue"), (yours, "yours", "tab:orange")):
        epochs = [r.epoch for r in records]
        loss_ax.plot(epochs, [r.valid_loss for r in records], color=colour, label=f"{label}: valid loss")
        loss_ax.plot(epochs, [r.train_loss for r in records], ":", color=colour, label=f"{label}: train loss")
        acc_ax.plot(epochs, [r.accuracy for r in records], color=colour, label=label)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("valid accuracy")
    acc_ax.legend()
    fig.suptitle("simple_net on the 3s and 7s: reference backward functions and yours")
    return save_figure(fig, path)
