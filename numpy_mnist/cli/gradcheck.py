"""``numpy-mnist gradcheck``: watch the hand-derived gradients hold.

For one batch of real images, every parameter's gradient from ``model.loss_and_grads`` is compared
with central finite differences of the loss (float64) and, when PyTorch is installed, with PyTorch's
autograd on the same computation.  Prints one row per parameter; exits 0 when all agree within
tolerance, 1 on a mismatch (naming it), 2 on a bad argument.
"""

from __future__ import annotations

import numpy as np

from numpy_mnist import gradcheck as gc
from numpy_mnist import model_check
from numpy_mnist.backends import get_backend
from numpy_mnist.cli.options import positive_float, positive_int, seed
from numpy_mnist.cli.train import build_model
from numpy_mnist.data import load_mnist_sample
from numpy_mnist.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser("gradcheck", help="prove the hand-derived gradients: finite differences and PyTorch",
                              description=__doc__)
    p.add_argument("--model", choices=("linear", "simple_net"), default="simple_net",  # one logit: 3s and 7s
                   help="the book's linear1 or simple_net (the ResNet-18's gradients are proven by the test-suite)")
    p.add_argument("--loss", choices=("mnist_loss", "bce"), default="mnist_loss",
                   help="the book's mnist_loss, or binary cross-entropy on logits")
    p.add_argument("--hidden", type=positive_int, default=30, help="simple_net's hidden width")
    p.add_argument("--seed", type=seed, default=0, help="seed of the initial parameters and of the batch")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images in the batch")
    p.add_argument("--backend", choices=("auto", "numpy", "cupy", "array_api_strict"), default="auto",
                   help="array backend computing the model (always in float64)")
    p.add_argument("--step", type=positive_float, default=gc.DEFAULT_H, metavar="H", help="finite-difference step")
    p.set_defaults(run=run)


def run(args) -> int:
    h = args.step
    backend = get_backend(args.backend, "float64")
    model = build_model(args, backend)

    train_x, train_y, _, _ = load_mnist_sample()
    if args.batch_size > len(train_x):
        raise InputError(f"--batch-size {args.batch_size} is larger than the {len(train_x)} training images")
    rows = np.sort(np.random.default_rng(args.seed).choice(len(train_x), args.batch_size, replace=False))
    x, y = train_x[rows], train_y[rows]
    margin = model_check.kink_margin(x, h)
    near = model_check.rows_near_relu_kink(model, x, margin)
    if near.all():
        raise InputError(kink_advice(model, x, h, margin))
    x, y = x[~near], y[~near]

    check = model_check.check_model(model, x, y, h=h)

    threes = int(np.sum(y == 1))
    shape = f"784 -> {model.hidden} -> ReLU -> 1" if args.model == "simple_net" else "784 -> 1"
    print(f"gradient check of {args.model} ({shape}), loss {args.loss}, seed {args.seed}, "
          f"on {backend.name} float64 ({backend.device})")
    print(f"batch: {len(x)} training images of the bundled MNIST sample ({threes} threes, "
          f"{len(x) - threes} sevens), drawn with seed {args.seed}; loss {check.loss:.6f}")
    if near.any():
        left_out = "1 image" if near.sum() == 1 else f"{int(near.sum())} images"
        print(f"  ({left_out} with a ReLU pre-activation within {margin:.1e} of 0 left out: "
              "a finite difference straddling the kink measures nothing)")
    reference = (f"PyTorch autograd (float64): tolerance {gc.TORCH_RTOL:.0e} relative" if check.pytorch is not None
                 else f"PyTorch: {check.pytorch_missing}")
    print(f"finite differences: central, step {h:g}, tolerance {gc.DEFAULT_RTOL:.0e} relative; {reference}")
    print(f"\n{table(check)}\n")
    if check.ok:
        versus = f" and with PyTorch (< {gc.TORCH_RTOL:.0e})" if check.pytorch is not None else ""
        print(f"OK: every gradient agrees with finite differences (< {gc.DEFAULT_RTOL:.0e}){versus}.")
        return 0
    for r in check.failures:
        against = "PyTorch" if r.method == "pytorch" else "finite differences"
        print(f"MISMATCH: {r.name} against {against}: relative error {r.rel_error:.2e} exceeds {r.rtol:.0e} "
              f"at {r.where}: analytic {r.analytic:.10g}, {'PyTorch' if r.method == 'pytorch' else 'numeric'} "
              f"{r.numeric:.10g}")
    advice = step_advice(model, x, y, h, check)
    if advice:
        print(advice)
    return 1


def kink_advice(model, x, h: float, margin: float) -> str:
    """Why every row is too near a ReLU kink: the step (when the default step leaves rows), or the batch."""
    default_margin = model_check.kink_margin(x, gc.DEFAULT_H)
    if h > gc.DEFAULT_H and not model_check.rows_near_relu_kink(model, x, default_margin).all():
        return (f"--step {h:g} moves a ReLU pre-activation by up to {margin:.1e}, more than any row of the batch "
                f"is from the kink at 0, so no row can be checked: the step is too large; take a smaller "
                f"--step, e.g. {gc.DEFAULT_H:g} (the default)")
    return f"every row of the batch has a ReLU pre-activation within {margin:.1e} of the kink; try another --seed"


def step_advice(model, x, y, h: float, check) -> str | None:
    """When the finite differences, not the gradients, are off: the step, said with the evidence.

    The error of a central difference is truncation, about ``h**2 |f3| / 6`` (f3 the third
    derivative), plus rounding, about ``eps |f| / h``: a step far from the default loses to one or
    the other.  If the differences agree at the default step (or PyTorch agrees with every analytic
    gradient), the step is the problem.
    """
    if all(r.ok for r in check.finite_differences.values()):
        return None
    if h != gc.DEFAULT_H and model_check.check_model(model, x, y, h=gc.DEFAULT_H, use_torch=False).ok:
        how = "large: truncation error grows as h**2" if h > gc.DEFAULT_H else "small: rounding error grows as eps/h"
        return (f"(at --step {gc.DEFAULT_H:g} every finite difference agrees: --step {h:g} is too {how}; "
                f"take a step near {gc.DEFAULT_H:g})")
    if check.pytorch is not None and all(r.ok for r in check.pytorch.values()):
        return (f"(PyTorch agrees with every analytic gradient: the finite differences themselves may be off; "
                f"step {h:g} trades truncation error, h^2, against rounding, eps / h: try --step {gc.DEFAULT_H:g})")
    return None


def table(check) -> str:
    """One row per parameter: shape, analytic gradient norm, worst relative errors."""
    header = ("parameter", "shape", "|grad|", "vs finite differences", "compared", "vs PyTorch")
    rows = []
    for name, fd in check.finite_differences.items():
        if fd.method == "full":
            compared = "1 entry" if fd.checked == 1 else f"all {fd.checked} entries"
        else:
            compared = f"{gc.DEFAULT_DIRECTIONS} directions + {fd.checked - gc.DEFAULT_DIRECTIONS} entries"
        pytorch = _error(check.pytorch[name]) if check.pytorch is not None else check.pytorch_missing
        rows.append((name, str(fd.shape), f"{fd.norm:.3e}", _error(fd), compared, pytorch))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _error(report) -> str:
    return f"{report.rel_error:.1e}" + ("" if report.ok else " MISMATCH")
