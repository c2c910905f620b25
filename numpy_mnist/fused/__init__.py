"""The GPU fast path: each training epoch replayed as one CUDA graph of hand-written fused kernels.

Why
---
At the book's sizes an epoch is 49 batches of a few small array operations each.  The readable
array path launches about twenty kernels per batch on CuPy, each costing microseconds to launch,
and the GPU spends the epoch launching, not computing.  Here every batch is two kernels (the linear
model) or three (simple_net), written by hand in CUDA C with the derivation in their comments
(``kernels/*.cu``), and the whole epoch (every batch, every SGD step, the batch losses into a
device buffer) is recorded once as a CUDA graph and replayed with one launch per epoch.

What it equals
--------------
The reference is the array path (:func:`numpy_mnist.learner.train_epoch` and
:func:`~numpy_mnist.learner.validate_epoch`): the kernels compute the same formulas, element by
element the same operations in the same precision, except that sums over the batch or over the
pixels are taken in another (fixed) order than BLAS takes them.  So the parameters agree to the
rounding of those sums: within 1e-12 relative in float64, and in float32 within a few times the
array path's own float32 rounding error (the bound the tests assert, and why, is in
``tests/test_fused.py``).  Sums have one fixed order and there are no atomics: two runs are
bitwise identical.

Shuffled batches replay the same graph: the kernels read row ``r`` of a batch as image
``perm[start + r]``, and ``perm`` is refilled with the epoch's order before each replay.  The
batch losses are read once per epoch; a NaN or infinite one raises the divergence error naming the
epoch and batch, and the :class:`~numpy_mnist.learner.Learner` restores the last finished epoch's
parameters, as on every other path.

Where it applies
----------------
``numpy-mnist train --backend cupy`` (and ``--backend auto`` on a GPU) uses it for every model and
loss the command line trains (``linear`` and ``simple_net`` with ``mnist_loss`` or ``bce``, and with
``cross_entropy`` over the ten digits), in float32 and float64; ``--reference`` turns it off and
runs the reference array path.  :func:`make_learner` makes that choice, in one place.

Modules: :mod:`~numpy_mnist.fused.source` (the ``.cu`` files and the instantiations a model
needs), :mod:`~numpy_mnist.fused.trainer` (the launches and the graphs),
:mod:`~numpy_mnist.fused.cupy_device` (NVRTC and CUDA graphs through CuPy),
:mod:`~numpy_mnist.fused.host` (the same kernels built by ``g++`` and run on the CPU, for tests),
:mod:`~numpy_mnist.fused.learner` (the Learner on top).  Importing this package imports neither CuPy
nor the trainer.
"""

from __future__ import annotations

__all__ = ["make_learner", "why_not_fused"]


def why_not_fused(model, opt=None) -> str | None:
    """Why ``model`` cannot train through the fused graph here, or ``None`` when it can."""
    from numpy_mnist.fused.trainer import why_not_kernels

    if model.backend.name != "cupy":
        return f"the fused CUDA graph needs the cupy backend, and this run is on {model.backend.name}"
    return why_not_kernels(model, opt)


def make_learner(model, train_dl, valid_dl, *, lr: float, history=None, start=None, fused: bool = False,
                 reference: bool = False):
    """The :class:`~numpy_mnist.learner.Learner` that trains ``model``: the one place a fast path is chosen.

    ``reference=True`` (``numpy-mnist train --reference``): the reference
    :class:`~numpy_mnist.learner.Learner`, every fast path off.  Otherwise the fused CUDA graph
    (:class:`~numpy_mnist.fused.learner.FusedLearner`, equal to the reference to the rounding of its
    sums, see above) wherever it applies, and the reference elsewhere.  ``fused=True``
    (``--fused``) insists on the fused graph: an :class:`~numpy_mnist.errors.InputError` saying why,
    where it does not apply.

    (The CPU has no fast path: a NumPy epoch with preallocated buffers, bitwise the reference, was
    measured 19 to 35 % faster than it for ``linear1`` but only 5 to 12 % for ``simple_net``, whose
    epoch is mostly the same BLAS products; it did not earn its place.)
    """
    from numpy_mnist.errors import InputError
    from numpy_mnist.learner import Learner

    options = {"lr": lr, "history": history, "start": start}
    if reference and fused:
        raise InputError("--fused and --reference contradict each other: --reference turns every fast path off")
    if not reference:
        why = why_not_fused(model)
        if why is None:
            from numpy_mnist.fused.learner import FusedLearner

            return FusedLearner(model, train_dl, valid_dl, **options)
        if fused:
            raise InputError(f"--fused: {why}; drop --fused to use the reference array path")
    return Learner(model, train_dl, valid_dl, **options)
