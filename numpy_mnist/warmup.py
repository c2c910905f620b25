"""The book's SGD warm-up, by hand: the gradient of ``x**2``, and the roller coaster fitted step by step.

Before MNIST, chapter 4 shows what a gradient is ("Calculating Gradients") and what a step does
("An End-to-End SGD Example").  The book lets PyTorch's ``backward`` find the gradients; here they
are derived, and the functions work on any Array-API namespace (NumPy, CuPy, array_api_strict,
PyTorch tensors), read off the arguments.

The square
----------
``f(x) = x**2`` elementwise, so ``d f / d x = 2 x`` entry by entry: 6 at 3, and (6, 8, 20) at
(3, 4, 10), as the book prints.

The roller coaster
------------------
The speed ``y`` of a roller coaster over 20 time steps ``t = 0, 1, ..., 19``, fitted by a quadratic
with parameters ``params = (a, b, c)``::

    p_i = a t_i**2 + b t_i + c                              (quadratic)
    L   = (1/n) sum_i (p_i - y_i)**2                        (mse)

Since ``dL/dp_i = 2 (p_i - y_i) / n`` and ``dp_i/da = t_i**2``, ``dp_i/db = t_i``, ``dp_i/dc = 1``::

    dL/da = mean(2 (p - y) t**2)
    dL/db = mean(2 (p - y) t)
    dL/dc = mean(2 (p - y))                                 (quadratic_mse_gradient)

The book's seven steps are :func:`init_params` (1, initialise), then :func:`apply_step` (2, predict;
3, the loss; 4, the gradient; 5, step by ``-lr * gradient``), repeated (6) by :func:`fit` until it
stops (7) after a fixed number of steps.

Example::

    from numpy_mnist.warmup import fit, init_params, roller_coaster

    time, speed = roller_coaster()
    steps = fit(init_params(), time, speed, lr=1e-5, steps=10)
    print([round(s.loss, 1) for s in steps])     # falling
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

__all__ = [
    "square",
    "square_gradient",
    "quadratic",
    "mse",
    "quadratic_mse_gradient",
    "roller_coaster",
    "init_params",
    "Step",
    "apply_step",
    "fit",
    "BOOK_LR",
    "N_STEPS",
]

#: The book's learning rate for the roller coaster.
BOOK_LR = 1e-5
#: The book's number of time steps (``time = torch.arange(0, 20)``).
N_STEPS = 20


def square(x):
    """``f(x) = x**2``, elementwise: the book's first function to differentiate."""
    return x * x


def square_gradient(x):
    """``d(x**2)/dx = 2 x``, elementwise: the gradient of ``sum(x**2)`` with respect to ``x``.

    What the book's ``xt.grad`` holds after ``f(xt).sum().backward()``: 6 at 3, (6, 8, 20) at (3, 4, 10).
    """
    return 2 * x


def quadratic(t, params):
    """The book's model ``a t**2 + b t + c`` with ``params = (a, b, c)``, shape (3,): one prediction per ``t``."""
    a, b, c = params[0], params[1], params[2]
    return a * (t * t) + b * t + c


def mse(preds, targets):
    """Mean squared error ``L = (1/n) sum_i (p_i - y_i)**2``, a 0-d array."""
    xp = array_namespace(preds, targets)
    diff = preds - targets
    return xp.mean(diff * diff)


def quadratic_mse_gradient(t, params, targets):
    """The gradient of ``mse(quadratic(t, params), targets)`` with respect to ``params = (a, b, c)``.

    With ``p = a t**2 + b t + c`` and ``dL/dp_i = 2 (p_i - y_i) / n`` (chain rule through each
    ``dp_i/d(a, b, c) = (t_i**2, t_i, 1)``)::

        dL/da = mean(2 (p - y) t**2)
        dL/db = mean(2 (p - y) t)
        dL/dc = mean(2 (p - y))

    Returns an array of shape (3,), like ``params``.
    """
    xp = array_namespace(t, params, targets)
    dp = 2 * (quadratic(t, params) - targets)       # n * dL/dp
    return xp.stack([xp.mean(dp * (t * t)), xp.mean(dp * t), xp.mean(dp)])


def roller_coaster(seed: int = 0):
    """The book's data: ``time = arange(20)``, ``speed = randn(20) * 3 + 0.75 * (time - 9.5)**2 + 1``.

    The noise is drawn from ``numpy.random.default_rng(seed)``.  Returns ``(time, speed)``, each of
    shape (20,), host float64 NumPy arrays (``backend.asarray`` puts them on another backend).
    """
    time = np.arange(N_STEPS, dtype=np.float64)
    return time, np.random.default_rng(seed).standard_normal(N_STEPS) * 3 + 0.75 * (time - 9.5) ** 2 + 1


def init_params(seed: int = 0):
    """Step 1, initialise: ``params = randn(3)``, standard normal from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal(3)


class Step(NamedTuple):
    """One step of SGD: the parameters after it, and the predictions and loss it computed before stepping."""

    params: Any
    preds: Any
    loss: float


def apply_step(params, time, speed, lr: float = BOOK_LR) -> Step:
    """The book's ``apply_step``: steps 2 to 5 of its seven.

    2. predict: ``p = quadratic(time, params)``;
    3. the loss: ``L = mse(p, speed)``;
    4. the gradient: ``g = quadratic_mse_gradient(time, params, speed)`` (by hand, not ``backward``);
    5. step: ``params - lr * g``.

    Returns a :class:`Step` with new parameters; ``params`` itself is not changed (the book updates
    it in place and zeroes ``params.grad``: there is no stored gradient to zero here).
    """
    preds = quadratic(time, params)                               # 2. predict
    loss = float(mse(preds, speed))                               # 3. the loss
    grad = quadratic_mse_gradient(time, params, speed)            # 4. the gradient
    return Step(params - lr * grad, preds, loss)                  # 5. step


def fit(params, time, speed, lr: float = BOOK_LR, steps: int = 10) -> list[Step]:
    """Steps 6 and 7: repeat :func:`apply_step` ``steps`` times, then stop.  One :class:`Step` per step."""
    history = []
    for _ in range(steps):                                        # 6. repeat
        history.append(step := apply_step(params, time, speed, lr))
        params = step.params
    return history                                                # 7. stop
