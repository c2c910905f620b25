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
batch losses are read once per epoch, as the reference reads them; a NaN or infinite one raises the
divergence error naming the epoch and batch, and the run's edge (:func:`numpy_mnist.training.fit`)
restores the last finished epoch's parameters, as on the reference path.

Where it applies
----------------
``numpy-mnist train --backend cupy`` (and ``--backend auto`` on a GPU) uses it for every model and
loss the command line trains (``linear`` and ``simple_net`` with ``mnist_loss`` or ``bce``, and with
``cross_entropy`` over the ten digits), in float32 and float64; ``--reference`` turns it off and
runs the reference array path.  The choice is made above both this package and the reference, in
one place: :func:`numpy_mnist.training.make_learner`, which imports this package only for a model
on a GPU.

Modules: :mod:`~numpy_mnist.fused.source` (the ``.cu`` files and the instantiations a model
needs), :mod:`~numpy_mnist.fused.trainer` (the launches and the graphs),
:mod:`~numpy_mnist.fused.cupy_device` (NVRTC and CUDA graphs through CuPy),
:mod:`~numpy_mnist.fused.learner` (the Learner on top).  Importing this package imports neither CuPy
nor the trainer.  (The tests build the same kernels with ``g++`` and run them on the CPU:
``tests/host_build.py``.)
"""

from __future__ import annotations

__all__: list[str] = []
