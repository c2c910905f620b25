"""The optimizers: the steps that train the parameters.

On the reference path these are the only code that trains them; the fused kernels take the same
SGD step on a GPU (:mod:`numpy_mnist.fused`).  Parameters are also written, never trained, where a
saved state is put back: :mod:`numpy_mnist.training` restoring the last finished epoch after a
divergence or Ctrl-C, and a checkpoint loaded into a model.

An optimizer is any object with

* ``step(grads)``: updates the model's ``params`` dict's arrays in place (``grads`` keyed like it),
* ``lr``: the current learning rate, a float,
* ``state() -> dict``: its settings as plain JSON values (what a checkpoint records),
* ``state_arrays()`` / ``load_state_arrays(arrays)``: its arrays, as host NumPy arrays by name,
  to save and restore (SGD has none).

:class:`SGD` is the book's ``BasicOptim``.  :class:`Adam` is fastai's default optimizer (what
``cnn_learner(...).fit_one_cycle`` trains the book's ResNet-18 with); it also has
``state_arrays()`` / ``load_state_arrays()`` for its moments and step count, so that a checkpoint
resumes it exactly.  :class:`OneCycle` is fastai's ``fit_one_cycle`` schedule, given to an
``Adam`` as ``schedule=``: each step first reads its learning rate and ``beta1`` from it, so the
training loop never knows a schedule is there.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, device

from numpy_mnist.backends.host import to_numpy
from numpy_mnist.errors import InputError

__all__ = ["SGD", "Adam", "OneCycle"]


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


class OneCycle:
    """fastai's one-cycle schedule (``fit_one_cycle``'s defaults): learning rate and ``beta1`` by step.

    Step ``t`` of ``T = total_steps`` (``t = 0, 1, ..., T - 1``, the step about to be taken) sits at
    ``pos = t / T``: fastai's ``pct_train``, 0 at the first batch and raised by ``1 / T`` after each,
    so the last step sits at ``(T - 1) / T`` and the schedule's end point is never reached.  With
    fastai's cosine ``cos(a, b, u) = a + (1 + cos(pi (1 - u))) (b - a) / 2`` (``a`` at ``u = 0``,
    ``b`` at ``u = 1``, flat at both ends) and ``p = pct_start``::

        pos <  p:  u = pos / p,                 lr = cos(lr_max / div, lr_max, u)
                                                beta1 = cos(0.95, 0.85, u)
        pos >= p:  u = (pos - p) / (1 - p),     lr = cos(lr_max, lr_max / div_final, u)
                                                beta1 = cos(0.85, 0.95, u)

    Defaults ``p = 0.25``, ``div = 25``, ``div_final = 1e5``, ``moms = (0.95, 0.85, 0.95)``: the
    rate climbs from ``lr_max / 25`` to ``lr_max`` over the first quarter of the steps while
    ``beta1`` falls from 0.95 to 0.85, then the rate falls toward ``lr_max / 1e5`` (fastai's
    ``lr_max / div_final``: not divided by ``div`` again, unlike PyTorch) while ``beta1`` climbs
    back.

    PyTorch's ``OneCycleLR(opt, lr_max, T, pct_start=p, div_factor=div, final_div_factor=f)``
    differs in its positions and its end: its first phase ends at step ``p T - 1`` (not ``p T``),
    its second at step ``T - 1``, which it reaches, with the rate ``lr_max / div / f``.  Both start
    at ``lr_max / div`` and ``beta1 = 0.95`` at step 0.  Over ``T + 1`` steps it is this schedule
    exactly: ``OneCycleLR(opt, lr_max, T + 1, pct_start=(p T + 1) / (T + 1), div_factor=div,
    final_div_factor=div_final / div)`` gives step ``t``'s values for every ``t < T``.
    """

    def __init__(self, total_steps: int, lr_max: float, *, pct_start: float = 0.25, div: float = 25.0,
                 div_final: float = 1e5, moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> None:
        if not (isinstance(total_steps, int) and total_steps >= 1):
            raise InputError(f"the one-cycle schedule needs a positive whole number of steps, got {total_steps!r}")
        if not (lr_max > 0 and math.isfinite(lr_max)):
            raise InputError(f"the one-cycle lr_max must be a positive number, got {lr_max}")
        if not 0 < pct_start < 1:
            raise InputError(f"pct_start must lie strictly between 0 and 1, got {pct_start}")
        if not (div >= 1 and div_final >= 1):
            raise InputError(f"div and div_final must be at least 1, got {div} and {div_final}")
        if len(moms) != 3 or not all(0 <= m < 1 for m in moms):
            raise InputError(f"moms must be three momenta in [0, 1), got {moms}")
        self.total_steps, self.lr_max, self.pct_start = total_steps, float(lr_max), float(pct_start)
        self.div, self.div_final, self.moms = float(div), float(div_final), tuple(float(m) for m in moms)

    def __call__(self, t: int) -> tuple[float, float]:
        """``(lr, beta1)`` for step ``t`` (counting from 0); past the last step an ``InputError``."""
        if not 0 <= t < self.total_steps:
            raise InputError(f"the one-cycle schedule has {self.total_steps} steps (0 to {self.total_steps - 1}); "
                             f"step {t} is outside it: schedule as many steps as the run takes")
        pos, p, (m0, m1, m2) = t / self.total_steps, self.pct_start, self.moms
        if pos < p:
            u = pos / p
            return _cos(self.lr_max / self.div, self.lr_max, u), _cos(m0, m1, u)
        u = (pos - p) / (1 - p)
        return _cos(self.lr_max, self.lr_max / self.div_final, u), _cos(m1, m2, u)

    def state(self) -> dict:
        return {"name": "one_cycle", "total_steps": self.total_steps, "lr_max": self.lr_max,
                "pct_start": self.pct_start, "div": self.div, "div_final": self.div_final, "moms": list(self.moms)}


def _cos(start: float, end: float, u: float) -> float:
    """fastai's ``_cos_anneal``: from ``start`` at ``u = 0`` to ``end`` at ``u = 1`` on half a cosine."""
    return start + (1 + math.cos(math.pi * (1 - u))) * (end - start) / 2


class Adam:
    """fastai's ``Adam``: bias-corrected moments and decoupled weight decay (AdamW).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...`` (``lr`` and ``beta1``
    taken from the schedule first, when there is one)::

        p <- p (1 - lr wd)                              decoupled weight decay, not added to g
        m <- beta1 m + (1 - beta1) g                    first moment (fastai: dampened momentum)
        v <- beta2 v + (1 - beta2) g^2                  second moment
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    ``m`` and ``v`` start at 0; the divisions by ``1 - beta^t`` undo that start's pull toward 0.
    The defaults are fastai's: ``betas = (0.9, 0.99)``, ``eps = 1e-5`` added to the root as PyTorch
    does, ``wd = 0.01``.  This is ``torch.optim.AdamW(lr, betas, eps, weight_decay=wd)`` step for
    step, ``beta1`` included when it changes between steps (both correct with the current one).

    ``no_decay`` names the parameters left out of the weight decay: fastai's ``Learner`` leaves
    out every batch norm's gamma and beta (``wd_bn_bias=False``), which ``model.no_weight_decay``
    lists for the ResNet.
    """

    def __init__(self, params: dict, lr: float = 1e-3, *, betas: tuple[float, float] = (0.9, 0.99),
                 eps: float = 1e-5, wd: float = 0.01, no_decay=(), schedule: OneCycle | None = None) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise InputError(f"the learning rate must be positive, got {lr}")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {betas}")
        if not (eps > 0 and wd >= 0):
            raise InputError(f"eps must be positive and wd not negative, got eps {eps} and wd {wd}")
        if unknown := set(no_decay) - params.keys():
            raise InputError(f"no_decay names parameters the model does not have: {sorted(unknown)}")
        self.params, self.schedule = params, schedule
        self.lr, self.beta1, self.beta2 = float(lr), float(betas[0]), float(betas[1])
        self.eps, self.wd, self.no_decay = float(eps), float(wd), frozenset(no_decay)
        self.t = 0  # steps taken
        self.m = {name: array_namespace(p).zeros_like(p) for name, p in params.items()}
        self.v = {name: array_namespace(p).zeros_like(p) for name, p in params.items()}
        if schedule is not None:
            self.lr, self.beta1 = schedule(0)

    def step(self, grads: dict) -> None:
        if grads.keys() != self.params.keys():
            raise InputError(f"grads must be keyed like params {sorted(self.params)}, got {sorted(grads)}")
        if self.schedule is not None:
            self.lr, self.beta1 = self.schedule(self.t)
        self.t += 1
        lr, b1, b2, t = self.lr, self.beta1, self.beta2, self.t
        for name, g in grads.items():
            p = self.params[name]
            if name not in self.no_decay:
                p *= 1 - lr * self.wd
            m, v = self.m[name], self.v[name]  # updated in place: no new arrays of the model's size
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            root = array_namespace(p).sqrt(v / (1 - b2**t))
            root += self.eps
            p -= (lr / (1 - b1**t)) * m / root

    def state(self) -> dict:
        return {"name": "adam", "lr": self.lr, "betas": [self.beta1, self.beta2], "eps": self.eps, "wd": self.wd,
                "no_decay": sorted(self.no_decay), "step": self.t,
                "schedule": None if self.schedule is None else self.schedule.state()}

    def state_arrays(self) -> dict:
        """The moments as host arrays (``"m.<name>"``, ``"v.<name>"``) and the step count (``"step"``)."""
        arrays = {f"{k}.{name}": to_numpy(a) for k, moments in (("m", self.m), ("v", self.v))
                  for name, a in moments.items()}
        return {**arrays, "step": np.asarray(self.t, dtype=np.int64)}

    def load_state_arrays(self, arrays: dict) -> None:
        """Resume from :meth:`state_arrays`: the moments moved to the parameters' backend, and the step."""
        want = {f"{k}.{name}" for k in "mv" for name in self.params} | {"step"}
        if arrays.keys() != want:
            raise InputError(f"Adam's state must hold {sorted(want)}, got {sorted(arrays)}")
        for k, moments in (("m", self.m), ("v", self.v)):
            for name, p in self.params.items():
                xp, host = array_namespace(p), np.asarray(arrays[f"{k}.{name}"])
                if host.shape != tuple(p.shape):
                    raise InputError(f"Adam's {k}.{name} has shape {host.shape}, the parameter {tuple(p.shape)}")
                moments[name] = xp.asarray(host, dtype=p.dtype, device=device(p), copy=True)
        self.t = int(arrays["step"])
        if self.schedule is not None and self.t < self.schedule.total_steps:
            self.lr, self.beta1 = self.schedule(self.t)
