"""A training run's edge: which path trains, and the policy around the book's loop.

:mod:`numpy_mnist.learner` is the book's loop and decides nothing.  What a run of
``numpy-mnist train`` (or a notebook cell) wants around it lives here, in one place:

* :func:`make_learner` chooses the path: the reference :class:`~numpy_mnist.learner.Learner`, or
  the fused CUDA graph (:mod:`numpy_mnist.fused`) where it applies.  It stands above both; the
  fast-path package is imported only for a model on a GPU, so a CPU run never loads it.
* :func:`fit` trains a learner epoch by epoch with a progress bar, NumPy's floating-point warnings
  quieted (an overflow ends in a NaN loss, which the loop reports, or in a huge finite one, which
  :mod:`numpy_mnist.diagnosis` puts in words), the device idle before each epoch's clock starts,
  and, when an epoch diverges or Ctrl-C arrives, the parameters put back to the end of the last
  finished epoch: the state a checkpoint holds and a resumed run starts from.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import numpy as np

from numpy_mnist.errors import DivergenceError, InputError
from numpy_mnist.learner import EpochRecord, Learner

__all__ = ["fit", "make_learner", "quiet_numerics", "restoring", "why_not_fused"]


def why_not_fused(model, opt=None) -> str | None:
    """Why ``model`` (trained by ``opt``) cannot train through the fused graph here, or ``None``."""
    if model.backend.name != "cupy":
        return f"the fused CUDA graph needs the cupy backend, and this run is on {model.backend.name}"
    from numpy_mnist.fused.trainer import why_not_kernels  # the fast path loads only where it can run

    return why_not_kernels(model, opt)


def make_learner(model, train_dl, valid_dl, opt, *, history=None, start=None, fused: bool = False,
                 reference: bool = False) -> Learner:
    """The :class:`~numpy_mnist.learner.Learner` that trains ``model``: the one place a path is chosen.

    ``reference=True`` (``numpy-mnist train --reference``): the reference
    :class:`~numpy_mnist.learner.Learner`, every fast path off.  Otherwise the fused CUDA graph
    (:class:`~numpy_mnist.fused.learner.FusedLearner`, equal to the reference to the rounding of its
    sums) wherever it applies, and the reference elsewhere.  ``fused=True`` (``--fused``) insists on
    the fused graph: an :class:`~numpy_mnist.errors.InputError` saying why, where it does not apply.

    (The CPU has no fast path: a NumPy epoch with preallocated buffers, bitwise the reference, was
    measured 19 to 35 % faster than it for ``linear1`` but only 5 to 12 % for ``simple_net``, whose
    epoch is mostly the same BLAS products; it did not earn its place.)
    """
    if reference and fused:
        raise InputError("--fused and --reference contradict each other: --reference turns every fast path off")
    if not reference:
        why = why_not_fused(model, opt)
        if why is None:
            from numpy_mnist.fused.learner import FusedLearner

            return FusedLearner(model, train_dl, valid_dl, opt, history=history, start=start)
        if fused:
            raise InputError(f"--fused: {why}; drop --fused to use the reference array path")
    return Learner(model, train_dl, valid_dl, opt, history=history, start=start)


@contextlib.contextmanager
def quiet_numerics():
    """No raw NumPy floating-point warning (``RuntimeWarning: overflow encountered in matmul``)
    inside: an overflow ends in a NaN or infinite loss (a :class:`~numpy_mnist.errors.DivergenceError`,
    one line) or in a huge finite one, which :mod:`numpy_mnist.diagnosis` explains."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


@contextlib.contextmanager
def restoring(learner):
    """On a :class:`~numpy_mnist.errors.DivergenceError` or Ctrl-C inside, put back the model and
    optimizer as they were on entry, then let the exception go on.  Half an epoch is no state to
    keep: the end of the last finished epoch is what a checkpoint holds and a run resumes from.

    Copies are kept of what an epoch changes (the model's parameters and buffers, the optimizer's
    arrays) and written back in place, so the arrays others hold keep seeing the model's."""
    model, xp = learner.model, learner.model.backend.xp
    saved = [(arrays, {name: xp.asarray(a, copy=True) for name, a in arrays.items()})
             for arrays in (model.params, model.buffers)]
    optimizer = {name: np.array(a, copy=True) for name, a in learner.opt.state_arrays().items()}
    try:
        yield
    except (DivergenceError, KeyboardInterrupt):
        for arrays, copies in saved:
            for name, value in copies.items():
                arrays[name][...] = value
        learner.opt.load_state_arrays(optimizer)
        raise


def fit(learner, epochs: int, *, on_epoch_end: Callable[[EpochRecord], None] | None = None,
        progress: bool = False) -> list[EpochRecord]:
    """``learner.fit(epochs, on_epoch_end=...)`` with a run's policy; returns the whole history.

    Each epoch runs with floating-point warnings quieted (:func:`quiet_numerics`) and the last
    finished epoch's state put back if it diverges or is interrupted (:func:`restoring`); the device
    is synchronized before the epoch's clock starts, so no earlier work is counted in it.
    ``progress``: a tqdm bar (``tqdm.auto``, a widget in a notebook).
    """
    if progress:
        from tqdm.auto import tqdm
    else:  # tqdm.auto in a notebook without ipywidgets warns on import, even for a disabled bar
        from tqdm import tqdm

    with tqdm(total=epochs, desc="training", unit="epoch", disable=None if progress else True, leave=False) as bar:
        for _ in range(epochs):
            with restoring(learner), quiet_numerics():
                learner.model.backend.synchronize()
                record = learner.one_epoch()
            bar.set_postfix(loss=f"{record.train_loss:.4f}", acc=f"{record.accuracy:.4f}")
            bar.update()
            if on_epoch_end is not None:
                on_epoch_end(record)
    return learner.history
