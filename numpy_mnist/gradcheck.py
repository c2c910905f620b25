"""Checking hand-derived gradients against central finite differences, in float64.

A gradient ``g = d f / d x`` written by hand is right when it agrees with what ``f`` itself says
about its slope.  The central difference along a direction ``v``::

    (f(x + h v) - f(x - h v)) / (2 h)  =  <g, v>  +  O(h^2)

is the directional derivative; with ``v`` the unit vector of entry ``i`` it is ``g[i]``.  Inputs of
at most ``max_full`` entries (:class:`GradCheckOptions`) get every entry (the *full* check); wider
ones (a 784 x 30 weight matrix) get, as Chainer's ``check_backward`` does, a few random unit
directions plus a few single entries (the largest ``|g[i]|`` and random ones), so that a wrong
entry is also seen alone.  For an array-valued ``f`` (a layer) pass the upstream gradient ``dout``:
the scalar checked is ``sum(dout * f(x))``, whose gradient is what ``*_backward(dout, ...)`` returns.

The tolerance, and the floors under it
--------------------------------------
Every comparison of a hand-derived gradient with another computation of it asks, entry by entry,
``|a - n| <= rtol * max(|a|, |n|) + atol``; the *relative error* reported is
``|a - n| / (max(|a|, |n|) + atol / rtol)``, ``<= rtol`` exactly when they agree.
:class:`Tolerance` holds ``rtol`` and the two floors ``atol`` can be, each with its reason, in one
place; :data:`TOLERANCE` is the one used against finite differences (``numpy-mnist gradcheck``) and by
``numpy-mnist exercise check`` against everything it compares with.

* ``rtol = 1e-6``.  At ``h = 1e-6`` a central difference's truncation error (``h^2 |f'''| / 6``) is
  about 1e-12 and its rounding error (``eps |f| / h``) about 1e-10: both far below.
* :meth:`Tolerance.difference_floor`: the rounding noise of the difference itself.  ``f`` carries a
  relative error of a few ``eps`` (2.2e-16), so ``f(x + h v) - f(x - h v)`` is off by about
  ``eps * scale``, which the division by ``2 h`` magnifies::

      atol = noise_ulps * (eps * scale + terms * smallest subnormal) / h

  with ``scale = |f(x)|`` (or ``sum |dout * f(x)|``; pass a larger one when ``f`` cancels large
  terms inside) and ``noise_ulps = 4`` (measured on this project's models: below 0.7).  No
  difference resolves an entry below ``atol / rtol``; such entries are held to ``atol`` absolutely.
  With a loss near 0.5, entries above about 4e-4 are checked to one part in a million.
* :meth:`Tolerance.rounding_floor`: how far two exact float64 computations of the same mathematics
  (a reference, PyTorch's autograd) may part, as they may add in other orders.  A sum of ``k``
  terms is off by at most ``gamma_k * sum |terms|`` (Higham, *Accuracy and Stability of Numerical
  Algorithms*, sec. 3.1, ``gamma_k = k eps / (1 - k eps)``), so two correct programs differ by at
  most twice that, plus a few smallest normal numbers for results that underflow.  The sums of
  ``|terms|`` come from the same computation on absolute values (the *magnitude network*,
  :mod:`numpy_mnist.torch_twin`).  Where the terms do not cancel this floor is about ``k * 1e-16``
  relative and the relative tolerance decides: so ``sigmoid(z) * (1 - sigmoid(z))``, which is 0 at
  z = 40 where the slope is 4e-18, fails.
* ``TORCH_RTOL = 1e-10``: whole models against their PyTorch twin
  (:func:`numpy_mnist.torch_twin.compare_model`), over the same rounding floor.

A difference across a kink (ReLU at 0) measures a blend of two slopes: keep a check's inputs away
from kinks (:func:`numpy_mnist.model_check.rows_near_relu_kink`); ties at a kink are compared with
PyTorch instead.  Whole models are checked by :mod:`numpy_mnist.model_check`.
Example: ``check_gradient(sigmoid, x, sigmoid_backward(dout, x), dout=dout).ok``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from numpy_mnist.backends import get_backend
from numpy_mnist.backends.host import to_numpy
from numpy_mnist.errors import InputError

__all__ = ["GradReport", "Tolerance", "TOLERANCE", "GradCheckOptions", "relative_error", "compare", "gamma",
           "numerical_gradient", "directional_derivative", "check_gradient", "DEFAULT_H", "DEFAULT_RTOL",
           "TORCH_RTOL", "NOISE_ULPS"]

EPS64 = float(np.finfo(np.float64).eps)
TINY64 = float(np.finfo(np.float64).smallest_normal)
TINY_SUBNORMAL64 = float(np.finfo(np.float64).smallest_subnormal)
TORCH_RTOL = 1e-10  #: relative tolerance of whole models against their PyTorch twin (float64)


def gamma(k: int) -> float:
    """Higham's ``gamma_k = k eps / (1 - k eps)``: the relative error bound of a float64 sum of ``k`` terms."""
    return k * EPS64 / (1 - k * EPS64)


@dataclass(frozen=True)
class Tolerance:
    """``|a - n| <= rtol * max(|a|, |n|) + atol``, and the floors ``atol`` can be (module docstring)."""

    rtol: float = 1e-6     #: relative tolerance (float64)
    h: float = 1e-6        #: central-difference step
    noise_ulps: float = 4  #: rounding noise of ``f``, in units of ``eps * scale``

    def difference_floor(self, scale, terms: int = 1):
        """The noise of a central difference of a sum of ``terms`` terms whose sizes add to ``scale``."""
        return self.noise_ulps * (EPS64 * np.asarray(scale) + terms * TINY_SUBNORMAL64) / self.h

    @staticmethod
    def rounding_floor(sizes, k: int):
        """How far two exact float64 computations may part: sums of at most ``k`` terms of ``sizes``."""
        return 2 * gamma(k) * np.asarray(sizes) + 4 * TINY64


#: The one tolerance against finite differences, and of ``exercise check``.
TOLERANCE = Tolerance()
DEFAULT_H, DEFAULT_RTOL, NOISE_ULPS = TOLERANCE.h, TOLERANCE.rtol, TOLERANCE.noise_ulps


@dataclass(frozen=True)
class GradCheckOptions:
    """How :func:`check_gradient` checks: the gradient's ``name``; ``scale``, the size of the terms
    of ``f`` (a number, or per entry an array shaped like ``x``; None: ``sum |dout * f(x)|``); the
    ``backend`` ``f`` runs on; the ``tolerance``; and the sampling of an input wider than
    ``max_full``: ``directions`` random unit directions and ``entries`` single entries, from ``seed``."""

    name: str = "x"
    scale: Any = None
    backend: Any = None
    tolerance: Tolerance = field(default=TOLERANCE)
    max_full: int = 1024
    directions: int = 16
    entries: int = 16
    seed: int = 0


DEFAULT_DIRECTIONS = GradCheckOptions.directions


@dataclass(frozen=True)
class GradReport:
    """One gradient compared, led by its worst comparison.

    ``method``: ``"full"``, ``"directional"`` or a reference's name (``"pytorch"``); ``checked``:
    how many numbers were compared; ``index`` (an entry) or ``direction`` (its number): where the
    worst one is; ``analytic`` and ``numeric`` there; ``rel_error`` there
    (``inf`` for NaN or infinity); ``rtol`` and ``atol`` (as it applied there); ``norm``: the
    Euclidean norm of the whole analytic gradient.
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
    rtol: float
    atol: float
    norm: float

    @property
    def ok(self) -> bool:
        """True when every compared number agrees within the tolerance."""
        return bool(self.rel_error <= self.rtol)

    @property
    def where(self) -> str:
        return f"direction {self.direction}" if self.direction is not None else f"entry {self.index}"

    def __str__(self) -> str:
        other = "numeric" if self.method in ("full", "directional") else self.method
        return (f"{self.name} {self.shape}: {'ok' if self.ok else 'MISMATCH'}, worst relative error "
                f"{self.rel_error:.2e} (tolerance {self.rtol:.0e}) at {self.where}: analytic {self.analytic:.10g}, "
                f"{other} {self.numeric:.10g} ({self.method}, {self.checked} compared, absolute floor {self.atol:.1e})")


def relative_error(analytic, numeric, *, rtol: float = DEFAULT_RTOL, atol=0.0) -> np.ndarray:
    """Elementwise ``|a - n| / (max(|a|, |n|) + atol / rtol)`` in float64; 0 where equal, ``inf``
    where either is not finite."""
    a, n = _host64(analytic), _host64(numeric)
    if a.shape != n.shape:
        raise InputError(f"cannot compare shapes {a.shape} and {n.shape}")
    diff = np.abs(a - n)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel = np.where(diff == 0, 0.0, diff / (np.maximum(np.abs(a), np.abs(n)) + _host64(atol) / rtol))
    return np.where(np.isfinite(a) & np.isfinite(n), rel, np.inf)


def compare(name: str, analytic, reference, *, rtol: float, atol=0.0, method: str = "reference",
            indices: list | None = None, shape: tuple | None = None, norm: float | None = None) -> GradReport:
    """Compare two arrays elementwise (``atol`` a number or an array of their shape); report the worst.

    For flat lists of sampled comparisons, ``indices`` says what each one is (an index tuple, or an
    int for a direction); ``shape`` and ``norm`` describe the gradient they were drawn from.
    """
    a, n = _host64(analytic), _host64(reference)
    if a.shape != n.shape:
        raise InputError(f"{name}: the gradient has shape {a.shape}, the reference {n.shape}")
    atol = np.broadcast_to(_host64(atol), a.shape)
    rel = relative_error(a, n, rtol=rtol, atol=atol)
    if rel.size == 0:
        return GradReport(name, shape or a.shape, method, 0, None, None, 0.0, 0.0, 0.0, rtol, 0.0, 0.0)
    flat = int(np.argmax(rel))  # the first NaN/inf, else the largest error
    where = indices[flat] if indices is not None else np.unravel_index(flat, a.shape)
    index, direction = (None, where) if isinstance(where, int) else (tuple(int(i) for i in where), None)
    return GradReport(name, tuple(shape or a.shape), method, int(a.size), index, direction,
                      float(a.flat[flat]), float(n.flat[flat]), float(rel.flat[flat]), rtol, float(atol.flat[flat]),
                      float(np.linalg.norm(a)) if norm is None else norm)


def directional_derivative(phi: Callable[[np.ndarray], float], x: np.ndarray, v: np.ndarray,
                           h: float = DEFAULT_H) -> float:
    """``(phi(x + h v) - phi(x - h v)) / (2 h)`` for a scalar function ``phi`` of a float64 array."""
    return (phi(x + h * v) - phi(x - h * v)) / (2 * h)


def numerical_gradient(phi: Callable[[np.ndarray], float], x, h: float = DEFAULT_H) -> np.ndarray:
    """The full central-difference gradient of a scalar ``phi`` at ``x``: two calls per entry."""
    x = _host64(x)
    return np.array([directional_derivative(phi, x, _unit(x, flat), h) for flat in range(x.size)],
                    dtype=np.float64).reshape(x.shape)


def check_gradient(f: Callable, x, grad, *, dout=None, options: GradCheckOptions | None = None) -> GradReport:
    """Check ``grad``, a hand-derived gradient of ``f`` at ``x``, against central differences.

    ``f(x)`` returns a scalar, or an array when ``dout`` is given; it is called with float64 arrays
    shaped like ``x``, on the host or on ``options.backend``.  ``x``, ``grad`` and ``dout`` may be
    arrays of any backend.  The floor under the tolerance is the difference's own noise
    (:meth:`Tolerance.difference_floor`) from ``options.scale``: for an elementwise ``f`` entry ``i``
    moves only ``dout[i] * f(x)[i]``; a direction counts the array's sum.
    """
    o = options or GradCheckOptions()
    x64, g64 = _host64(x), _host64(grad)
    if x64.shape != g64.shape:
        raise InputError(f"the gradient of {o.name} has shape {g64.shape}, but {o.name} has shape {x64.shape}")
    terms = _terms(f, dout, o.backend)
    scale = _host64(float(np.sum(np.abs(terms(x64)))) if o.scale is None else o.scale)
    if scale.ndim and scale.shape != x64.shape:
        raise InputError(f"scale has shape {scale.shape}; it must be a number or shaped like {o.name} {x64.shape}")
    steps, method = _steps(x64, g64, o)
    h = o.tolerance.h
    # Term by term: terms the step does not move cancel exactly instead of adding rounding.
    numeric = [float(np.sum(terms(x64 + h * v) - terms(x64 - h * v))) / (2 * h) for _, v in steps]
    # An entry (an index tuple) reads its own gradient and size; a direction (a number) sums them.
    analytic = [float(g64[where] if isinstance(where, tuple) else np.sum(g64 * v)) for where, v in steps]
    sizes = [float(scale[where] if isinstance(where, tuple) else scale.sum()) if scale.ndim else float(scale)
             for where, _ in steps]
    atol = o.tolerance.difference_floor(np.array(sizes), 1 if dout is None else _host64(dout).size)
    return compare(o.name, np.array(analytic), np.array(numeric), rtol=o.tolerance.rtol, atol=atol, method=method,
                   indices=[where for where, _ in steps], shape=x64.shape, norm=float(np.linalg.norm(g64)))


def _steps(x64: np.ndarray, g64: np.ndarray, o: GradCheckOptions) -> tuple[list, str]:
    """``([(entry index or direction number, unit vector), ...], method)``: every entry, or a sample."""
    if x64.size <= o.max_full:
        picked, steps, method = range(x64.size), [], "full"
    else:
        rng = np.random.default_rng(o.seed)
        steps = [(k, v / np.linalg.norm(v)) for k, v in enumerate(rng.standard_normal((o.directions, *x64.shape)))]
        largest_first = [int(np.argmax(np.abs(g64))), *(int(i) for i in rng.permutation(x64.size))]
        picked, method = list(dict.fromkeys(largest_first))[:o.entries], "directional"
    steps += [(tuple(int(i) for i in np.unravel_index(flat, x64.shape)), _unit(x64, flat)) for flat in picked]
    return steps, method


def _unit(x: np.ndarray, flat: int) -> np.ndarray:
    """The unit vector of entry ``flat`` (in C order), shaped like ``x``."""
    return np.eye(1, x.size, flat).reshape(x.shape)


def _terms(f, dout, backend) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> the terms of the checked scalar``: ``[f(x)]``, or ``dout * f(x)``, as host float64."""
    dout64 = None if dout is None else _host64(dout)
    backend = None if backend is None else get_backend(backend, "float64")

    def terms(a):
        out = _host64(f(a if backend is None else backend.asarray(a, dtype="float64")))
        if dout64 is None:
            if out.size != 1:
                raise InputError(f"f returned shape {out.shape}: pass dout to check an array-valued function")
            return out.reshape(1)
        if out.shape != dout64.shape:
            raise InputError(f"f returned shape {out.shape}, but dout has shape {dout64.shape}")
        return dout64 * out

    return terms


def _host64(a) -> np.ndarray:
    """A float64 NumPy copy of an array of any backend (NumPy, CuPy, PyTorch, array_api_strict)."""
    return to_numpy(a, np.float64)

