"""The optimizer: the only code that changes parameters."""

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
