"""The book's models, holding parameters in ``model.params`` and computing gradients by hand.

Every model has

* ``params``: a dict of backend arrays (the only state; :class:`~numpy_mnist.optim.SGD` changes it),
* ``forward(x) -> logits`` of shape (N, outputs),
* ``loss_and_grads(x, y) -> (loss, grads)``: the mean loss (a 0-d array) and a dict of gradients
  keyed exactly like ``params``, every derivative by hand (:mod:`numpy_mnist.layers`,
  :mod:`numpy_mnist.losses`).

Initial values are drawn on the host with ``numpy.random.default_rng(seed)`` in float64 and then
cast and moved to the backend, so a seed gives the same model on every backend.
"""

from __future__ import annotations

import math

import numpy as np

from backends import Backend, get_backend
from numpy_mnist.checks import check_2d, check_on_backend, check_targets
from numpy_mnist.layers import linear, linear_backward, relu, relu_backward
from numpy_mnist.losses import Loss, get_loss

__all__ = ["Model", "LinearModel", "MLP", "MODEL_KINDS", "linear1", "simple_net", "linear10", "mlp10",
           "N_PIXELS", "N_DIGITS"]

N_PIXELS = 28 * 28
#: Classes of the full MNIST: the digits 0 to 9.
N_DIGITS = 10


class Model:
    """What every model shares: parameters on a backend, a loss, and the public contract."""

    kind: str = "model"
    #: The backward functions this model's chain calls; the exercise swaps in a learner's own.
    linear_backward = staticmethod(linear_backward)
    relu_backward = staticmethod(relu_backward)

    def __init__(self, params: dict, backend: Backend, loss: str | Loss) -> None:
        self.backend = backend
        self.loss = get_loss(loss)
        self.params = {name: backend.asarray(value) for name, value in params.items()}

    @property
    def inputs(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    @property
    def outputs(self) -> int:
        return int(list(self.params.values())[-1].shape[0])

    def forward(self, x):
        """Logits of shape (N, outputs) for images ``x`` of shape (N, 784)."""
        self.check_images(x)
        return self._forward(x)[0]

    def loss_and_grads(self, x, y):
        """Forward, loss, backward: ``(loss, grads)`` for the batch ``(x, y)``.

        ``loss`` is the mean loss as a 0-d array of the backend (``float(loss)`` reads it; it is
        left on the device so that a GPU is not made to wait), ``grads`` a dict keyed exactly like
        ``params``.  The batch's shapes, dtypes and backend are checked (an
        :class:`~numpy_mnist.errors.InputError` for a bad one); its values are not, since reading
        them would make a GPU wait on every batch: the :class:`~numpy_mnist.learner.Learner`
        checks its data's values once, when it is built.
        """
        self.check_images(x)
        check_targets(y, self.outputs, n=x.shape[0], values=False)
        logits, cache = self._forward(x)
        loss = self.loss.forward(logits, y)
        dlogits = self.loss.backward(logits, y)
        return loss, self._backward(dlogits, cache)

    def check_images(self, x, name: str = "x") -> None:
        """Refuse images that are not (N, inputs) arrays of this model's backend and dtype."""
        check_on_backend(x, self.backend, name=name)
        check_2d(x, name=name, width=self.inputs)

    def config(self) -> dict:
        """What rebuilds this model's shape: kind, sizes and loss name."""
        return {"kind": self.kind, "inputs": self.inputs, "outputs": self.outputs, "loss": self.loss.name}

    def _forward(self, x):  # -> (logits, cache for _backward)
        raise NotImplementedError

    def _backward(self, dlogits, cache) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes}, loss={self.loss.name}, backend={self.backend.name})"


class LinearModel(Model):
    """``logits = x @ weights + bias``: the book's ``linear1``.

    ``params = {"weights": (784, outputs), "bias": (outputs,)}``.
    """

    kind = "linear"

    def _forward(self, x):
        p = self.params
        return linear(x, p["weights"], p["bias"]), x

    def _backward(self, dlogits, x):
        _, dw, db = self.linear_backward(dlogits, x, self.params["weights"], need_dx=False)
        return {"weights": dw, "bias": db}


class MLP(Model):
    """The book's ``simple_net``: Linear(784, hidden) -> ReLU -> Linear(hidden, outputs).

    ``params = {"w1": (784, hidden), "b1": (hidden,), "w2": (hidden, outputs), "b2": (outputs,)}``.

    Backward, with ``h = x @ w1 + b1``, ``a = relu(h)``, ``z = a @ w2 + b2``::

        dw2 = a.T @ dz          db2 = sum_n dz
        da  = dz @ w2.T         dh  = da * [h > 0]
        dw1 = x.T @ dh          db1 = sum_n dh
    """

    kind = "mlp"

    @property
    def hidden(self) -> int:
        return int(self.params["b1"].shape[0])

    def config(self) -> dict:
        return {**super().config(), "hidden": self.hidden}

    def _forward(self, x):
        p = self.params
        h = linear(x, p["w1"], p["b1"])
        a = relu(h)
        return linear(a, p["w2"], p["b2"]), (x, h, a)

    def _backward(self, dlogits, cache):
        x, h, a = cache
        p = self.params
        da, dw2, db2 = self.linear_backward(dlogits, a, p["w2"])
        _, dw1, db1 = self.linear_backward(self.relu_backward(da, h), x, p["w1"], need_dx=False)
        return {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def _uniform_linear_init(rng: np.random.Generator, fan_in: int, fan_out: int):
    """PyTorch's ``nn.Linear`` default: weight and bias uniform in +-1/sqrt(fan_in)."""
    bound = 1 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, (fan_out,))


def linear1(seed: int = 0, backend: str | Backend = "numpy", loss: str | Loss = "mnist_loss",
            *, dtype: str | None = None, outputs: int = 1) -> LinearModel:
    """The book's linear model, initialised like its ``init_params``: standard normal, std 1.

    ``params = {"weights": (784, outputs), "bias": (outputs,)}``.
    """
    backend = _resolve(backend, dtype)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((N_PIXELS, outputs))
    bias = rng.standard_normal((outputs,))
    return LinearModel({"weights": weights, "bias": bias}, backend, loss)


def simple_net(hidden: int = 30, seed: int = 0, backend: str | Backend = "numpy",
               loss: str | Loss = "mnist_loss", *, dtype: str | None = None, outputs: int = 1) -> MLP:
    """The book's ``simple_net`` (784 -> hidden -> ReLU -> outputs), ``nn.Linear``'s default init."""
    if hidden < 1:
        from numpy_mnist.errors import InputError

        raise InputError(f"hidden must be a positive width, got {hidden}")
    backend = _resolve(backend, dtype)
    rng = np.random.default_rng(seed)
    w1, b1 = _uniform_linear_init(rng, N_PIXELS, hidden)
    w2, b2 = _uniform_linear_init(rng, hidden, outputs)
    return MLP({"w1": w1, "b1": b1, "w2": w2, "b2": b2}, backend, loss)


def linear10(seed: int = 0, backend: str | Backend = "numpy", *, dtype: str | None = None,
             classes: int = N_DIGITS) -> LinearModel:
    """All ten digits with one linear layer (softmax regression): 784 -> 10 logits, ``cross_entropy``.

    ``params = {"weights": (784, 10), "bias": (10,)}``; column ``k`` of the weights is a 28x28 picture
    of the evidence for digit ``k``.  The parameters start at zero, not at the book's standard normal:
    the loss is convex in them, so zero is a fine start (and no symmetry needs breaking, as each class
    gets its own gradient), and random weights on the always-black border pixels would never be
    trained away (their gradient is 0) and would blur the weight pictures.  ``seed`` is accepted so
    every factory takes the same arguments; nothing here is random.
    """
    del seed
    backend = _resolve(backend, dtype)
    params = {"weights": np.zeros((N_PIXELS, classes)), "bias": np.zeros((classes,))}
    return LinearModel(params, backend, "cross_entropy")


def mlp10(hidden: int = 100, seed: int = 0, backend: str | Backend = "numpy", *, dtype: str | None = None,
          classes: int = N_DIGITS) -> MLP:
    """All ten digits with the book's ``simple_net`` shape: 784 -> hidden -> ReLU -> 10, ``cross_entropy``.

    Exactly ``simple_net(hidden, seed, backend, loss="cross_entropy", outputs=10)``, ``nn.Linear``'s
    default init (hidden units must start different, unlike :func:`linear10`).
    """
    return simple_net(hidden, seed, backend, "cross_entropy", dtype=dtype, outputs=classes)


def _resolve(backend: str | Backend, dtype: str | None) -> Backend:
    if isinstance(backend, Backend):
        return backend if dtype is None else get_backend(backend, dtype)
    return get_backend(backend, dtype or "float32")


#: Model classes by ``Model.kind``: how a checkpoint's ``config()["kind"]`` is rebuilt.
MODEL_KINDS = {cls.kind: cls for cls in (LinearModel, MLP)}
