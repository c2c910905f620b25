"""Checking hand-derived gradients: central finite differences, and PyTorch's autograd when installed.

A gradient ``g = d f / d x`` written by hand is right when it agrees with what ``f`` itself says
about its slope.  This module measures that slope numerically, in float64, and compares.

The numeric slope
-----------------
The central difference along a direction ``v``::

    (f(x + h v) - f(x - h v)) / (2 h)  =  <g, v>  +  O(h^2)

is the directional derivative.  With ``v`` the unit vector of entry ``i`` it is ``g[i]`` itself;
doing that for every entry gives the **full** numeric gradient (2 evaluations of ``f`` per entry,
right for small inputs).  For wide inputs (a 784 x 30 weight matrix has 23,520 entries) the check
follows Chainer's ``check_backward``: a few random unit directions ``v``, each comparing one
directional derivative with ``<g, v>``, plus a few single entries (the largest ``|g[i]|`` and random
ones) so that a wrong entry is also seen on its own.

For an array-valued ``f`` (a layer) pass the upstream gradient ``dout``: the function checked is
the scalar ``L(x) = sum(dout * f(x))``, whose gradient is what a ``*_backward(dout, ...)`` returns.

Comparing
---------
Two numbers ``a`` (analytic) and ``n`` (numeric, or a reference such as PyTorch) agree when::

    |a - n| <= rtol * max(|a|, |n|) + atol

and the *relative error* reported is ``|a - n| / (max(|a|, |n|) + atol / rtol)``, which is ``<= rtol``
exactly when they agree: a plain relative error, with an absolute floor ``atol / rtol`` under the
denominator for entries too small to be measured relatively.

For finite differences, ``atol`` is the rounding noise of the difference itself: ``f`` is computed
with a relative error of a few ``eps`` (``eps = 2.2e-16`` in float64), so the numerator
``f(x + h v) - f(x - h v)`` carries an error up to about ``eps * |f|`` that the division by ``2 h``
magnifies to::

    atol = NOISE_ULPS * eps * scale / h          scale = |f(x)|, or sum |dout * f(x)| for a layer

(plus, per term, the smallest subnormal number over ``h``: the absolute rounding of a result that
underflows).

(``NOISE_ULPS = 4``; measured on this project's models the error stays below ``0.7 eps |f| / h``).
No finite difference can resolve an entry smaller than ``atol / rtol`` to ``rtol`` relative, so such
entries are held to ``atol`` absolutely.  With the defaults ``h = 1e-6`` and ``rtol = 1e-6`` and a
loss near 0.5, entries above about ``4e-4`` are checked to one part in a million, smaller ones to
within ``4e-10``.  Pass ``scale`` when ``f`` cancels large terms inside (its rounding error is then
a few ``eps`` of those terms, not of the result).

Finite differences mean nothing across a kink (ReLU at 0: the difference straddles it and returns
a blend of the two slopes) or where the function is saturated flat; keep the inputs of a check away
from both (:func:`rows_near_relu_kink`).  Ties at a kink are compared with PyTorch instead.

Models
------
:func:`check_model_gradients` compares every parameter's gradient from ``model.loss_and_grads``
with finite differences of the model's own loss (evaluated in float64 on the model's backend; the
noise scale is the size of the terms the loss sums, :func:`loss_magnitude`), and
:func:`compare_model_with_torch` with the same computation built in PyTorch's autograd
(:func:`torch_loss_and_grads`; PyTorch is imported only when asked for, never needed otherwise).
Against PyTorch the tolerance is ``1e-10`` relative: both compute the same mathematics in float64
and may differ only by the order of their additions, whose effect is bounded entry by entry
(Higham's ``gamma_k`` times the sum of the absolute values of the terms) and used as ``atol``.
:func:`check_model` runs both and is what ``numpy-mnist gradcheck`` prints.

Example, on your own function::

    import numpy as np
    from numpy_mnist.gradcheck import check_gradient
    from numpy_mnist.layers import sigmoid, sigmoid_backward

    x, dout = np.random.randn(4, 3), np.random.randn(4, 3)
    report = check_gradient(sigmoid, x, sigmoid_backward(dout, x), dout=dout)
    print(report)          # worst entry, its analytic and numeric values, and the verdict
    assert report.ok
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from backends.host import to_numpy
from numpy_mnist.errors import InputError

__all__ = [
    "GradReport",
    "ModelCheck",
    "relative_error",
    "compare",
    "numerical_gradient",
    "directional_derivative",
    "check_gradient",
    "check_model_gradients",
    "torch_sigmoid",
    "loss_magnitude",
    "rows_near_relu_kink",
    "kink_margin",
    "gamma",
    "torch_available",
    "torch_loss_and_grads",
    "compare_model_with_torch",
    "check_model",
    "DEFAULT_H",
    "DEFAULT_RTOL",
    "TORCH_RTOL",
    "NOISE_ULPS",
]

#: Central-difference step.  The truncation error is ``h^2 |f'''| / 6`` (about 1e-12 here), the
#: rounding error about ``eps |f| / h`` (about 1e-10): both far below the tolerance.
DEFAULT_H = 1e-6
#: Relative tolerance against finite differences (float64).
DEFAULT_RTOL = 1e-6
#: Relative tolerance against PyTorch's autograd in float64: the same mathematics, so they may
#: differ only by rounding.
TORCH_RTOL = 1e-10
#: Rounding noise of ``f``, in units of ``eps * scale``, assumed by the finite-difference floor.
NOISE_ULPS = 4
#: Inputs with at most this many entries get the full numeric gradient; wider ones, directions.
DEFAULT_MAX_FULL = 1024
#: Random unit directions, and single entries, checked for a wide input.
DEFAULT_DIRECTIONS = 16
DEFAULT_ENTRIES = 16

EPS64 = float(np.finfo(np.float64).eps)
TINY_SUBNORMAL64 = float(np.finfo(np.float64).smallest_subnormal)


# -- the report -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GradReport:
    """The outcome of comparing one gradient, led by its worst entry.

    Attributes
    ----------
    name, shape : what was checked.
    method : ``"full"`` (every entry), ``"directional"`` (random directions and sampled entries),
        or the name of a reference (``"pytorch"``).
    checked : how many numbers were compared (entries, directions).
    index : the worst entry's index, or ``None`` when the worst comparison is a direction.
    direction : the worst direction's number (``None`` for an entry).
    analytic, numeric : the two values compared there (``numeric``: the finite difference, or the
        reference's value).
    rel_error : ``|a - n| / (max(|a|, |n|) + atol / rtol)`` there (``inf`` for NaN or infinity).
    abs_error : ``|a - n|`` there.
    rtol, atol : the tolerance (``atol`` as it applied to the worst entry).
    norm : the Euclidean norm of the whole analytic gradient.
    """

    name: str
    shape: tuple
    method: str
    checked: int
    index: tuple | None
    direction: int | None
    analytic: float
    numeric: float
    rel_error: float
    abs_error: float
    rtol: float
    atol: float
    norm: float

    @property
    def ok(self) -> bool:
        """True when every compared number agrees within the tolerance."""
        return bool(self.rel_error <= self.rtol)

    @property
    def where(self) -> str:
        """The worst comparison in words: ``"entry (3, 1)"`` or ``"direction 5"``."""
        if self.direction is not None:
            return f"direction {self.direction}"
        return f"entry {self.index}"

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.name} {self.shape}: {verdict}, worst relative error {self.rel_error:.2e} "
                f"(tolerance {self.rtol:.0e}) at {self.where}: analytic {self.analytic:.10g}, "
                f"{'numeric' if self.method in ('full', 'directional') else self.method} "
                f"{self.numeric:.10g} ({self.method}, {self.checked} compared, "
                f"absolute floor {self.atol:.1e})")


@dataclass(frozen=True)
class ModelCheck:
    """A model's gradients against finite differences and (when available) PyTorch."""

    loss: float
    finite_differences: dict[str, GradReport]
    pytorch: dict[str, GradReport] | None
    #: Why there is no PyTorch comparison (``"torch not installed"``, ...), else ``None``.
    pytorch_missing: str | None = None

    @property
    def reports(self) -> list[GradReport]:
        return list(self.finite_differences.values()) + list((self.pytorch or {}).values())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    @property
    def failures(self) -> list[GradReport]:
        return [r for r in self.reports if not r.ok]


# -- comparing --------------------------------------------------------------------------------------

def relative_error(analytic, numeric, *, rtol: float = DEFAULT_RTOL, atol=0.0) -> np.ndarray:
    """Elementwise ``|a - n| / (max(|a|, |n|) + atol / rtol)`` in float64 (``inf`` where not finite).

    ``0`` where both are exactly equal (including both 0 with ``atol = 0``).  Values are
    ``<= rtol`` exactly where ``|a - n| <= rtol * max(|a|, |n|) + atol``.
    """
    a, n = _host64(analytic), _host64(numeric)
    if a.shape != n.shape:
        raise InputError(f"cannot compare shapes {a.shape} and {n.shape}")
    diff = np.abs(a - n)
    denom = np.maximum(np.abs(a), np.abs(n)) + _host64(atol) / rtol
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel = np.where(diff == 0, 0.0, diff / denom)
    return np.where(np.isfinite(a) & np.isfinite(n), rel, np.inf)


def compare(name: str, analytic, reference, *, rtol: float, atol=0.0, method: str = "reference",
            indices: list | None = None, shape: tuple | None = None, norm: float | None = None) -> GradReport:
    """Compare two arrays elementwise (``atol`` a scalar or an array broadcast to their shape).

    The report names the worst entry.  For flat lists of sampled comparisons, ``indices`` says what
    each stands for (an index tuple, or an int for a direction), ``shape`` and ``norm`` describe the
    whole gradient they were drawn from.
    """
    a, n = _host64(analytic), _host64(reference)
    if a.shape != n.shape:
        raise InputError(f"{name}: the gradient has shape {a.shape}, the reference {n.shape}")
    atol = np.broadcast_to(_host64(atol), a.shape)
    rel = relative_error(a, n, rtol=rtol, atol=atol)
    if rel.size == 0:
        return GradReport(name, shape or a.shape, method, 0, None, None, 0.0, 0.0, 0.0, 0.0, rtol, 0.0, 0.0)
    flat = int(np.argmax(rel))  # the first NaN/inf, else the largest error
    where = indices[flat] if indices is not None else np.unravel_index(flat, a.shape)
    index, direction = (None, where) if isinstance(where, int) else (tuple(int(i) for i in where), None)
    return GradReport(
        name=name, shape=tuple(shape or a.shape), method=method, checked=int(a.size), index=index, direction=direction,
        analytic=float(a.flat[flat]), numeric=float(n.flat[flat]), rel_error=float(rel.flat[flat]),
        abs_error=float(abs(a.flat[flat] - n.flat[flat])), rtol=rtol, atol=float(atol.flat[flat]),
        norm=float(np.linalg.norm(a)) if norm is None else norm,
    )


# -- finite differences -----------------------------------------------------------------------------

def directional_derivative(phi: Callable[[np.ndarray], float], x: np.ndarray, v: np.ndarray,
                           h: float = DEFAULT_H) -> float:
    """``(phi(x + h v) - phi(x - h v)) / (2 h)`` for a scalar function ``phi`` of a float64 array."""
    return (phi(x + h * v) - phi(x - h * v)) / (2 * h)


def numerical_gradient(phi: Callable[[np.ndarray], float], x, h: float = DEFAULT_H) -> np.ndarray:
    """The full central-difference gradient of a scalar function ``phi`` at ``x``, in float64.

    ``grad[i] = (phi(x + h e_i) - phi(x - h e_i)) / (2 h)``: two calls of ``phi`` per entry of ``x``.
    """
    x = _host64(x)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = 1.0
        grad[i] = directional_derivative(phi, x, e, h)
    return grad


def check_gradient(f: Callable, x, grad, *, dout=None, h: float = DEFAULT_H, rtol: float = DEFAULT_RTOL,
                   atol: float | None = None, scale: float | None = None, max_full: int = DEFAULT_MAX_FULL,
                   directions: int = DEFAULT_DIRECTIONS, entries: int = DEFAULT_ENTRIES, seed: int = 0,
                   name: str = "x", backend=None) -> GradReport:
    """Check ``grad``, a hand-derived gradient of ``f`` at ``x``, against central differences.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar (a float or 0-d array), or an array when ``dout`` is given.  It
        is called with float64 arrays shaped like ``x``: host NumPy arrays, or arrays of
        ``backend`` when one is given.
    x, grad : arrays of any backend (NumPy, CuPy, array_api_strict) or array-likes
        The point and the analytic gradient there (``d sum(dout * f) / dx`` when ``dout`` is given).
    dout : array, optional
        The upstream gradient for an array-valued ``f``.
    h : float
        The finite-difference step (default ``1e-6``).
    rtol, atol : float
        Tolerance (see the module docstring).  ``atol`` defaults to the finite difference's own
        rounding noise ``NOISE_ULPS * eps * scale / h``.
    scale : float or array shaped like ``x``, optional
        The magnitude the checked scalar is computed from: by default ``|f(x)|``, or
        ``sum |dout * f(x)|`` for an array-valued ``f``.  Pass a larger one when ``f`` cancels large
        terms inside (its rounding error is a few ``eps`` of those, not of the result), or a smaller
        one per entry when you know which terms an entry moves (for an elementwise ``f``, entry
        ``i`` moves only ``dout[i] * f(x)[i]``; the others cancel exactly).  In the directional
        check an array ``scale`` counts with its sum.
    max_full : int
        ``x`` with at most this many entries gets the full numeric gradient; a wider one gets
        ``directions`` random unit directions plus ``entries`` single entries (the largest
        ``|grad|`` and random others), all drawn from ``seed``.
    name : str
        The name shown in the report.
    backend : Backend, optional
        Evaluate ``f`` on this backend (in float64) instead of on host NumPy arrays.

    Returns
    -------
    GradReport
        ``report.ok`` says whether every comparison passed; the worst one is described.
    """
    x64, g64 = _host64(x), _host64(grad)
    if x64.shape != g64.shape:
        raise InputError(f"the gradient of {name} has shape {g64.shape}, but {name} has shape {x64.shape}")
    terms = _terms(f, dout, backend)

    if x64.size <= max_full:
        steps = [(tuple(int(i) for i in np.unravel_index(flat, x64.shape)), _unit(x64.shape, flat))
                 for flat in range(x64.size)]
        method = "full"
    else:
        rng = np.random.default_rng(seed)
        steps = []
        for k in range(directions):
            v = rng.standard_normal(x64.shape)
            steps.append((k, v / np.linalg.norm(v)))
        largest_first = [int(np.argmax(np.abs(g64))), *(int(i) for i in rng.permutation(x64.size))]
        picked = list(dict.fromkeys(largest_first))[:entries]
        steps += [(tuple(int(i) for i in np.unravel_index(flat, x64.shape)), _unit(x64.shape, flat))
                  for flat in picked]
        method = "directional"

    if scale is None:
        scale = float(np.sum(np.abs(terms(x64))))
    scale = _host64(scale)
    if scale.ndim and scale.shape != x64.shape:
        raise InputError(f"scale has shape {scale.shape}; it must be a number or shaped like {name} {x64.shape}")
    analytic, numeric, sizes = [], [], []
    for where, v in steps:
        entry = isinstance(where, tuple)
        # Term by term: terms the step does not move cancel exactly instead of adding rounding.
        plus, minus = terms(x64 + h * v), terms(x64 - h * v)
        numeric.append(float(np.sum(plus - minus)) / (2 * h))
        analytic.append(float(g64[where]) if entry else float(np.sum(g64 * v)))
        sizes.append(float(scale) if scale.ndim == 0 else float(scale[where]) if entry else float(scale.sum()))
    if atol is None:
        # IEEE arithmetic rounds each term to eps relative, or (underflowing) to the smallest subnormal
        n_terms = 1 if dout is None else _host64(dout).size
        atol = NOISE_ULPS * (EPS64 * np.array(sizes) + n_terms * TINY_SUBNORMAL64) / h
    return compare(name, np.array(analytic), np.array(numeric), rtol=rtol, atol=atol, method=method,
                   indices=[where for where, _ in steps], shape=x64.shape, norm=float(np.linalg.norm(g64)))


def _unit(shape: tuple, flat: int) -> np.ndarray:
    e = np.zeros(shape)
    e.flat[flat] = 1.0
    return e


def _terms(f, dout, backend) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> the terms of the checked scalar``: ``[f(x)]``, or ``dout * f(x)``, as host float64."""
    dout64 = None if dout is None else _host64(dout)
    if backend is None:
        wrap, unwrap = (lambda a: a), _host64
    else:
        from backends import get_backend

        backend = get_backend(backend, "float64")
        wrap, unwrap = (lambda a: backend.asarray(a, dtype="float64")), (lambda a: _host64(backend.to_host(a)))

    def terms(a):
        out = unwrap(f(wrap(a)))
        if dout64 is None:
            if out.size != 1:
                raise InputError(f"f returned shape {out.shape}: pass dout to check an array-valued function")
            return out.reshape(1)
        if out.shape != dout64.shape:
            raise InputError(f"f returned shape {out.shape}, but dout has shape {dout64.shape}")
        return dout64 * out

    return terms


def _host64(a) -> np.ndarray:
    """A float64 NumPy copy of an array of any backend (NumPy, CuPy, PyTorch, array_api_strict) or array-like."""
    return to_numpy(a, np.float64)


# -- models -----------------------------------------------------------------------------------------

def check_model_gradients(model, x, y, *, h: float = DEFAULT_H, rtol: float = DEFAULT_RTOL,
                          max_full: int = DEFAULT_MAX_FULL, directions: int = DEFAULT_DIRECTIONS,
                          entries: int = DEFAULT_ENTRIES, seed: int = 0) -> tuple[float, dict[str, GradReport]]:
    """Every parameter's gradient from ``model.loss_and_grads(x, y)`` against finite differences.

    The analytic gradients come from the model as it is (its backend); the finite differences
    perturb one parameter at a time of a float64 copy of the model on the same backend and
    evaluate its loss (``model.loss.forward(model.forward(x), y)``).  The model must compute in
    float64: a float32 loss cannot resolve a finite difference better than about 1e-3.

    The noise scale of the differences is the size of the terms the loss sums
    (:func:`loss_magnitude`) plus ``sum |d loss / d z| * S``, where ``S`` (the same network on
    ``|x|`` and ``|params|``) is what each logit ``z`` is summed from: a logit of -20 made of five
    terms of size 4 carries an absolute rounding error of a few ``eps * 20``, which becomes a
    relative error of the same size in a saturated ``sigma(z)``.  This holds for networks of linear
    layers and ReLUs, such as this project's.

    Returns ``(loss, {param name: GradReport})``.
    """
    if model.backend.dtype_name != "float64":
        raise InputError("gradient checks need a float64 model (dtype='float64'): float32 cannot resolve "
                         "a finite difference better than about 1e-3")
    backend, xp = model.backend, model.backend.xp
    xb, yb = backend.asarray(x), backend.asarray(y)
    loss, grads = model.loss_and_grads(xb, yb)
    twin = copy.copy(model)  # shares nothing it writes: only twin.params is replaced, never mutated
    # The loss's rounding noise: that of its own sum (loss_magnitude), plus the logits' rounding
    # (eps times the sum of |terms| each logit is made of: the same network on |x| and |params|,
    # through which a ReLU of non-negative values passes everything) reaching it through d loss/d z.
    logits = model.forward(xb)
    twin.params = {name: xp.abs(value) for name, value in model.params.items()}
    logit_sizes = backend.to_host(twin.forward(xp.abs(xb)))
    dlogits = backend.to_host(model.loss.backward(logits, yb))
    scale = (loss_magnitude(model.loss.name, backend.to_host(logits), backend.to_host(yb), loss)
             + float(np.sum(np.abs(dlogits) * logit_sizes)))
    reports = {}
    for name, value in model.params.items():
        others = dict(model.params)

        def loss_at(p, name=name, others=others):
            twin.params = {**others, name: p}
            return twin.loss.forward(twin.forward(xb), yb)

        reports[name] = check_gradient(loss_at, value, grads[name], h=h, rtol=rtol, max_full=max_full,
                                       directions=directions, entries=entries, seed=seed, name=name,
                                       backend=backend, scale=scale)
    return loss, reports


def loss_magnitude(loss_name: str, logits, targets, loss: float) -> float:
    """The size of the terms a loss sums, which sets the rounding noise of its finite differences.

    ``mnist_loss`` sums positive terms: its own value.  Binary cross-entropy sums
    ``softplus(z) - t z``, which cancels to nearly 0 for a confident right answer (z = 30, t = 1:
    30 - 30): ``mean(softplus(z) + |t z|)``.  Softmax cross-entropy sums ``logsumexp(z) - z_y``:
    ``mean(|logsumexp(z)| + |z_y|)``.  Any other loss: ``|loss| + mean |z|``, an upper bound for
    losses of this kind.
    """
    z, t = _host64(logits), to_numpy(targets)
    if loss_name == "mnist_loss":
        return abs(loss)
    if loss_name == "bce":
        softplus = np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
        return float(np.mean(softplus + np.abs(t * z)))
    if loss_name == "cross_entropy":
        m = np.max(z, axis=-1)
        lse = m + np.log(np.sum(np.exp(z - m[:, None]), axis=-1))
        picked = np.take_along_axis(z, t.astype(np.int64)[:, None], axis=-1)[:, 0]
        return float(np.mean(np.abs(lse) + np.abs(picked)))
    return abs(loss) + float(np.mean(np.abs(z)))


def rows_near_relu_kink(model, x, margin: float) -> np.ndarray:
    """Boolean (N,): rows of ``x`` with a ReLU pre-activation within ``margin`` of the kink at 0.

    A finite difference of step ``h`` in ``w1`` or ``b1`` moves row ``n``'s pre-activations by at
    most ``h * (|x_n| + 1)`` (Cauchy-Schwarz, unit direction), so rows with every ``|x_n @ w1 + b1|``
    above that are safe.  Models without a ReLU (``kind != "mlp"``) have no such rows.
    """
    host = _host64(model.backend.to_host(x) if model.backend.owns(x) else x)
    if getattr(model, "kind", None) != "mlp":
        return np.zeros(host.shape[0], dtype=bool)
    w1, b1 = (_host64(model.backend.to_host(model.params[k])) for k in ("w1", "b1"))
    pre = host @ w1 + b1
    return np.any(np.abs(pre) < margin, axis=1)


def kink_margin(x, h: float = DEFAULT_H) -> float:
    """The smallest safe distance from a ReLU kink for finite differences of step ``h`` on ``x``."""
    host = _host64(x)
    return 2 * h * (1 + float(np.max(np.linalg.norm(host, axis=1), initial=0.0)))


# -- PyTorch ----------------------------------------------------------------------------------------

def torch_available() -> bool:
    """True when PyTorch can be imported (it is a test dependency, never a runtime one)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_linear(x, p):
    return x @ p["weights"] + p["bias"]


def _torch_mlp(x, p):
    import torch

    return torch.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def torch_sigmoid(z):
    """``sigma(z) = exp(log sigma(z))``: autograd then gives ``sigma(z) sigma(-z)``, exact for any z.

    (``torch.sigmoid``'s backward is ``y (1 - y)``, which loses every digit of ``1 - y`` once ``y``
    rounds to 1; our :func:`~numpy_mnist.layers.sigmoid_derivative` does not, and the reference
    must not either.)
    """
    import torch

    return torch.exp(torch.nn.functional.logsigmoid(z))


def _torch_mnist_loss(z, t):
    """The book's ``where(t == 1, 1 - sigma(z), sigma(z)).mean()``, with ``1 - sigma(z) = sigma(-z)``."""
    import torch

    return torch.where(t == 1, torch_sigmoid(-z), torch_sigmoid(z)).mean()


def _torch_bce(z, t):
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(z, t)


def _torch_cross_entropy(z, labels):
    import torch

    return torch.nn.functional.cross_entropy(z, labels)


#: PyTorch twins of the models (by ``model.kind``) and of the losses (by ``loss.name``).
TORCH_MODELS: dict[str, Callable] = {"linear": _torch_linear, "mlp": _torch_mlp}
TORCH_LOSSES: dict[str, Callable] = {"mnist_loss": _torch_mnist_loss, "bce": _torch_bce,
                                     "cross_entropy": _torch_cross_entropy}


def torch_loss_and_grads(model, x, y, *, magnitudes: bool = False):
    """The same loss and gradients as ``model.loss_and_grads(x, y)``, by PyTorch's autograd in float64.

    Returns ``(loss, grads)``, ``grads`` host float64 arrays keyed like ``model.params``.  With
    ``magnitudes=True`` also ``(k, sizes)``: for every gradient entry, ``sizes[name]`` bounds the sum
    of the absolute values of the terms it is summed from, and ``k`` the number of terms in any one
    sum, which together bound its rounding error (``gamma(k) * sizes``, see
    :func:`compare_model_with_torch`).  Raises ``ImportError`` without PyTorch and
    ``NotImplementedError`` for a model kind or loss that has no PyTorch twin here.
    """
    import torch

    forward = TORCH_MODELS.get(getattr(model, "kind", None))
    loss_fn = TORCH_LOSSES.get(model.loss.name)
    if forward is None or loss_fn is None:
        raise NotImplementedError(f"no PyTorch twin for model kind {getattr(model, 'kind', '?')!r} "
                                  f"with loss {model.loss.name!r}")
    params = {k: torch.tensor(_host64(v), requires_grad=True) for k, v in model.params.items()}
    xt = torch.tensor(_host64(x))
    yt = torch.as_tensor(to_numpy(y))
    yt = yt.to(torch.int64 if getattr(model.loss, "multiclass", False) else torch.float64)
    z = forward(xt, params)
    loss = loss_fn(z, yt)
    dz, *grads = torch.autograd.grad(loss, [z, *params.values()])
    out = (float(loss.detach()), {k: g.numpy().copy() for k, g in zip(params, grads)})
    if not magnitudes:
        return out
    # The magnitude network: the same graph on |x| and |params|, driven by |dz| + 2/N (N rows).
    # Its gradient bounds, entry by entry, the sum of the absolute values of the terms each gradient
    # entry is summed from (a ReLU of non-negative inputs passes everything, so it over-counts,
    # never under-counts); 2/N covers the rounding of the loss derivative itself, e.g. of
    # (sigma(z) - t) / N where sigma(z) rounds near t.
    mags = {k: v.detach().abs().requires_grad_(True) for k, v in params.items()}
    upstream = dz.abs() + 2.0 / z.shape[0]
    sizes = torch.autograd.grad((forward(xt.abs(), mags) * upstream).sum(), list(mags.values()))
    k = xt.shape[0] + sum(int(v.shape[0]) for v in model.params.values() if len(v.shape) == 2)
    return out + ((k, {name: si.numpy().copy() for name, si in zip(params, sizes)}),)


def gamma(k: int) -> float:
    """Higham's ``gamma_k = k eps / (1 - k eps)``: a float64 sum of ``k`` terms, or dot product of
    length ``k``, is off by at most ``gamma_k`` times the sum of the terms' absolute values."""
    return k * EPS64 / (1 - k * EPS64)


def compare_model_with_torch(model, x, y, *, rtol: float = TORCH_RTOL) -> tuple[float, dict[str, GradReport]]:
    """Every parameter's gradient from ``model.loss_and_grads`` against PyTorch's autograd (float64).

    Entry by entry ``|ours - torch| <= rtol * max(|ours|, |torch|) + floor``, where ``floor`` is
    twice Higham's a-priori bound on the rounding of a float64 sum (``gamma_k`` times the sum of the
    absolute values of the terms, ``k`` the batch size plus the layers' fan-ins; see
    :func:`torch_loss_and_grads`), plus the smallest normal float64 (below it only absolute
    precision exists).  Two correct implementations that merely add in different orders can differ
    by that much where terms cancel, and by no more: everywhere else the check is ``rtol``
    relative.  Returns ``(torch's loss, {param name: GradReport})``.
    """
    backend = model.backend
    xb, yb = backend.asarray(x), backend.asarray(y)
    _, grads = model.loss_and_grads(xb, yb)
    loss, ref, (k, sizes) = torch_loss_and_grads(model, xb, yb, magnitudes=True)
    tiny = float(np.finfo(np.float64).smallest_normal)
    return loss, {name: compare(name, backend.to_host(grads[name]), ref[name], rtol=rtol,
                                atol=2 * gamma(k) * sizes[name] + tiny, method="pytorch")
                  for name in model.params}


def check_model(model, x, y, *, h: float = DEFAULT_H, rtol: float = DEFAULT_RTOL, torch_rtol: float = TORCH_RTOL,
                use_torch: bool = True, **fd_options: Any) -> ModelCheck:
    """Both checks of a model on one batch: finite differences, and PyTorch when it is installed."""
    loss, fd = check_model_gradients(model, x, y, h=h, rtol=rtol, **fd_options)
    if not use_torch:
        return ModelCheck(loss, fd, None, "not asked for")
    if not torch_available():
        return ModelCheck(loss, fd, None, "torch not installed")
    try:
        _, pt = compare_model_with_torch(model, x, y, rtol=torch_rtol)
    except NotImplementedError as exc:
        return ModelCheck(loss, fd, None, str(exc))
    return ModelCheck(loss, fd, pt, None)
