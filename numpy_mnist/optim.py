"""The optimizer: the step that trains the parameters.

On the reference path this is the only code that trains them; the fused kernels take the same
step on a GPU (:mod:`numpy_mnist.fused`).  Parameters are also written, never trained, where a
saved state is put back: :mod:`numpy_mnist.training` restoring the last finished epoch after a
divergence or Ctrl-C, and a checkpoint loaded into a model.

What the :class:`~numpy_mnist.learner.Learner` and the checkpoints ask of an optimizer: ``step(grads)``
(updates the model's ``params`` dict in place), ``lr`` (the current learning rate), ``state()`` (a
dict of JSON values), ``state_arrays()`` and ``load_state_arrays(arrays)`` (its arrays, as host
NumPy arrays by name, to save and restore).
"""

from __future__ import annotations

from numpy_mnist.errors import InputError

__all__ = ["SGD"]


class SGD:
    """Plain stochastic gradient descent, the book's ``BasicOptim``: ``p <- p - lr * grad``.

    ``params`` is the model's own dict; :meth:`step` updates its arrays in place, so the model sees
    the new values at once.  Gradients are passed in, never accumulated in hidden state, so there is
    no ``zero_grad``.
    """

    def __init__(self, params: dict, lr: float) -> None:
        if not lr > 0:
            raise InputError(f"the learning rate must be positive, got {lr}")
        self.params = params
        self.lr = float(lr)

    def step(self, grads: dict) -> None:
        if grads.keys() != self.params.keys():
            raise InputError(f"grads must be keyed like params {sorted(self.params)}, got {sorted(grads)}")
        for name, grad in grads.items():
            self.params[name] -= grad * self.lr

    def state(self) -> dict:
        return {"name": "sgd", "lr": self.lr}

    def state_arrays(self) -> dict:
        """SGD keeps no arrays of its own: ``{}``."""
        return {}

    def load_state_arrays(self, arrays: dict) -> None:
        """Accepts the ``{}`` that :meth:`state_arrays` gives; arrays of another optimizer are refused."""
        if arrays:
            raise InputError(f"SGD keeps no state arrays, got {', '.join(sorted(arrays))} (saved by another "
                             "optimizer?)")
