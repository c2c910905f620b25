"""CUDA fast path for the CuPy backend: one kernel for the loss chain.

Imported only when the backend is CuPy (see :func:`numpy_mnist.models.value_and_grad_for`), and even
then CuPy itself is imported, and a kernel compiled, only on first use.  The kernel sources are plain
strings here, so the test-suite can read them on a machine without a GPU.

The fused ``mnist_loss`` kernel
-------------------------------
The composed path (:func:`numpy_mnist.losses.mnist_loss_value_and_grad`) launches about twelve
elementwise kernels per batch, each reading and writing the whole (N, 1) column; for the book's
sizes a GPU spends nearly all of that time launching.  :data:`MNIST_LOSS_KERNEL` computes, per
element, with ``s = 1 - 2 t``, ``u = s z``, ``e = exp(-|u|)`` and ``r = 1 / (1 + e)``::

    loss = sigma(u)         = (u >= 0) ? r : e r
    grad = s sigma'(u) / M  = s (e r r) / M

Why the results are identical, bit for bit, to the composed path on CuPy: every line is the same
IEEE-754 operation on the same operands, in the same order, in the same precision (``T`` is the
logits' dtype), that CuPy's own elementwise kernels perform one launch at a time: ``+``, ``-``,
``*`` and ``/`` are correctly rounded (NVRTC's defaults: ``-prec-div=true``, no fast math);
``fabs``, negation and the select are exact; ``exp`` is the same CUDA math-library function that
``cupy.exp`` calls.  The only place where the compiler could contract a multiply and an add into
one fused multiply-add is ``1 - 2 * t``, and ``2 t`` is exact, so the fused and the unfused result
coincide there too.  The mean is then taken by the same ``sum / M`` as the composed path.  (Only a
NaN's sign bit could differ, and a NaN loss stops training either way.)
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

from array_api_compat import array_namespace

from numpy_mnist.checks import check_same_shape

__all__ = [
    "KernelSpec",
    "MNIST_LOSS_KERNEL",
    "fused_value_and_grad",
    "mnist_loss_value_and_grad_cuda",
    "emulate_kernel",
]


@dataclass(frozen=True)
class KernelSpec:
    """The parts of a ``cupy.ElementwiseKernel``: typed parameters, the per-element body, a name."""

    name: str
    in_params: str
    out_params: str
    operation: str


#: ``mnist_loss`` value per element and ``d loss / d logits`` in one pass (see the module docstring).
MNIST_LOSS_KERNEL = KernelSpec(
    name="numpy_mnist_mnist_loss_value_and_grad",
    in_params="T z, T t, T m",
    out_params="T loss, T grad",
    operation="""
const T s = 1 - 2 * t;
const T u = s * z;
const T e = exp(-fabs(u));
const T r = 1 / (1 + e);
const T er = e * r;
loss = u >= 0 ? r : er;
grad = s * (er * r) / m;
""",
)

_COMPILED: dict[str, object] = {}


def _kernel(spec: KernelSpec):
    """Build (once per process) the ``cupy.ElementwiseKernel`` of ``spec``; CuPy compiles it on first call."""
    kernel = _COMPILED.get(spec.name)
    if kernel is None:
        import cupy

        kernel = _COMPILED[spec.name] = cupy.ElementwiseKernel(
            spec.in_params, spec.out_params, spec.operation, spec.name)
    return kernel


def mnist_loss_value_and_grad_cuda(logits, targets):
    """:func:`numpy_mnist.losses.mnist_loss_value_and_grad` in one CUDA kernel (CuPy arrays).

    Returns ``(loss, dlogits)``: the mean loss as a 0-d device array and ``s sigma'(s z) / M``.
    """
    check_same_shape(logits, targets)
    xp = array_namespace(logits)
    m = math.prod(logits.shape)
    per_element, grad = _kernel(MNIST_LOSS_KERNEL)(logits, targets, logits.dtype.type(m))
    return xp.sum(per_element) / m, grad


def fused_value_and_grad(loss):
    """The fused CUDA ``(logits, targets) -> (loss, dlogits)`` for ``loss``, or ``None`` if it has none.

    Only the book's ``mnist_loss`` has a kernel (and only while it is the stock one: a
    :class:`~numpy_mnist.losses.Loss` with another forward keeps its own path).
    """
    from numpy_mnist.losses import mnist_loss

    if loss.name == "mnist_loss" and loss.forward is mnist_loss:
        return mnist_loss_value_and_grad_cuda
    return None


# -- a CPU stand-in for the kernel body, so tests can check the source without a GPU ---------------

_DECLARATION = re.compile(r"^const T (\w+) = (.+);$")
_ASSIGNMENT = re.compile(r"^(\w+) = (.+);$")
_TERNARY = re.compile(r"^(.+) \? (\w+) : (\w+)$")
_FUNCTIONS = {"exp": "exp", "fabs": "abs"}  # CUDA name -> Array-API name
_ALLOWED_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Call, ast.Name,
                  ast.Load, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.USub, ast.GtE, ast.Gt,
                  ast.LtE, ast.Lt)


def emulate_kernel(spec: KernelSpec, xp, **inputs) -> dict:
    """Run ``spec.operation`` line by line with the array namespace ``xp``: a test aid.

    The body is translated, not re-typed: ``const T a = expr;`` and ``out = expr;`` become Python
    assignments, ``c ? a : b`` becomes ``xp.where(c, a, b)``, ``exp`` and ``fabs`` become ``xp.exp``
    and ``xp.abs``; integer literals stay Python ints, which the Array API applies in the array's
    dtype exactly as CUDA applies them in ``T``.  Anything else in the body (another function, an
    operator the translation does not know) is refused, so the stand-in is faithful or it fails
    loudly.  Returns the output parameters by name.
    """
    scope = dict(inputs)
    outputs = [p.split()[-1] for p in spec.out_params.split(",")]
    for raw in spec.operation.strip().splitlines():
        line = raw.strip()
        match = _DECLARATION.match(line) or _ASSIGNMENT.match(line)
        if match is None:
            raise ValueError(f"kernel line not understood: {line!r}")
        name, expr = match.groups()
        ternary = _TERNARY.match(expr)
        if ternary is not None:
            expr = f"where({ternary.group(1)}, {ternary.group(2)}, {ternary.group(3)})"
        for c_name, xp_name in _FUNCTIONS.items():
            expr = re.sub(rf"\b{c_name}\(", f"{xp_name}(", expr)
        try:
            tree = ast.parse(expr, mode="eval")
        except SyntaxError:
            raise ValueError(f"kernel expression not understood: {expr!r}") from None
        for node in ast.walk(tree):
            if not isinstance(node, _ALLOWED_NODES):
                raise ValueError(f"kernel expression not understood: {expr!r} ({type(node).__name__})")
            if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                                   and node.func.id in ("exp", "abs", "where")):
                raise ValueError(f"kernel calls an unknown function: {expr!r}")
            if isinstance(node, ast.Constant) and type(node.value) is not int:
                raise ValueError(f"kernel literal is not an integer: {expr!r}")
        functions = {"exp": xp.exp, "abs": xp.abs, "where": xp.where}
        scope[name] = eval(compile(tree, "<kernel>", "eval"), {"__builtins__": {}, **functions}, scope)
    return {name: scope[name] for name in outputs}
