"""``numpy-mnist exercise``: derive the backward functions yourself, and find out where they are wrong.

  numpy-mnist exercise new [DIR]               write DIR/my_gradients.py: nine functions to fill in
  numpy-mnist exercise check FILE              check each one; one row per function, with hints
  numpy-mnist exercise check FILE --train      then train simple_net with yours, beside the reference

check runs your file in a separate process with a time limit, draws inputs with hypothesis (shapes,
values, and the extremes that break naive code), and compares your answers in float64 with the
reference, central finite differences and (when installed) PyTorch's autograd.  A failure is shrunk
to the smallest input that still fails, with a hint.  Exit status: 0 when at least one function is
written and every written one passes (with --train: and your run trains like the reference's);
1 otherwise; 2 when the file cannot be loaded or an argument is wrong.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from numpy_mnist.cli.options import positive_float, positive_int
from numpy_mnist.errors import InputError
from numpy_mnist.exercise.checker import DEFAULT_EXAMPLES, RTOL, check_file
from numpy_mnist.exercise.functions import EXERCISES, STARTER_NAME, TRAINING_FUNCTIONS, get_exercise, starter_source
from numpy_mnist.exercise.sandbox import DEFAULT_TIMEOUT, Sandbox
from numpy_mnist.exercise.training import BATCH_SIZE, CURVE_HEADER, HIDDEN, LR, PART_RTOL, plot_curves, side_by_side
from numpy_mnist.files import atomic_write, check_folder_target

#: A failed call in the table's error column: what the function did.
_HOW = {"modified": "wrote into input", "timeout": "hung"}
#: Lines of a function's printed output shown, and characters of each.
_OUTPUT_LINES, _OUTPUT_WIDTH = 6, 120


def register(subparsers) -> None:
    p = subparsers.add_parser("exercise", help="write the backward functions yourself: a starter file, a "
                                               "checker with hints, training with yours",
                              description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p), required=True)
    new = actions.add_parser("new", help=f"write the starter file {STARTER_NAME}")
    new.add_argument("dir", nargs="?", type=Path, default=Path("."), metavar="DIR",
                     help=f"folder to write {STARTER_NAME} into")
    new.add_argument("--force", action="store_true", help=f"overwrite an existing {STARTER_NAME}")
    new.set_defaults(run=run_new)
    check = actions.add_parser("check", help="check your backward functions; --train trains with them")
    check.add_argument("file", type=Path, metavar="FILE", help=f"your {STARTER_NAME}")
    check.add_argument("--examples", type=positive_int, default=DEFAULT_EXAMPLES,
                       help="inputs hypothesis draws per function (before shrinking a failure)")
    check.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help="time limit of one call of your function (the import gets 30 s or more)")
    check.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                       help="compare with PyTorch's autograd too, when it is installed (--no-torch skips it)")
    check.add_argument("--train", action="store_true",
                       help="then train the book's simple_net with your functions beside the reference run")
    check.add_argument("--epochs", type=positive_int, default=40, help="epochs of --train (the book's 40)")
    check.add_argument("--out", type=Path, default=Path("runs/exercise"),
                       help="folder for the learning curves' PNG of --train (when matplotlib is installed)")
    check.set_defaults(run=run_check)


def run_new(args) -> int:
    path = check_folder_target(args.dir, "the folder") / STARTER_NAME
    if path.exists() and not args.force:
        raise InputError(f"{path} already exists and holds your work: check it with `numpy-mnist exercise "
                         f"check {path}`, or pass --force to start over")
    with atomic_write(path, "w") as f:
        f.write(starter_source())
    print(f"wrote {path}: {len(EXERCISES)} backward functions to write, in the book's order.")
    print(f"Fill them in one at a time and check them with: numpy-mnist exercise check {path}")
    return 0


def run_check(args) -> int:
    if args.train:
        check_folder_target(args.out, "--out")
    with Sandbox(args.file, timeout=args.timeout) as box:
        report = check_file(box, examples=args.examples, use_torch=args.torch)
        torch = " and PyTorch's autograd" if report.torch_missing is None else f" (PyTorch: {report.torch_missing})"
        print(f"checking {args.file}: {args.examples} inputs per function drawn by hypothesis, each compared in "
              f"float64 with the reference, central finite differences{torch}; tolerance {RTOL:.0e} relative\n")
        header = ("function", "status", "rel. error vs reference" + (", PyTorch" if not report.torch_missing else ""),
                  "vs finite differences", "inputs")
        print(table([header, *map(_row, report.results)]))
        details = [detail(r) for r in report.results if r.status == "FAIL" or r.output]
        print("\n" + "\n\n".join(details) + "\n" if details else "")
        print(summary(report, args.file, args.train))
        trained = train(args, report, box) if args.train else True
    return 0 if report.ok and trained else 1


def table(rows) -> str:
    """Rows of cells as left-aligned columns two spaces apart."""
    widths = [max(map(len, column)) for column in zip(*rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def _row(r) -> tuple[str, ...]:
    if not r.implemented:
        return (r.name, r.status + (f" ({r.note})" if r.note else ""), "-", "-", "-")
    what, how = (r.failure.what, r.failure.how) if r.failure else ("values", None)
    error = {"values": f"{r.worst:.1e}", "call": _HOW.get(how, how or "-")}.get(what, what)
    return (r.name, r.status, error, f"{r.fd_worst:.1e}", str(r.examples))


def detail(result) -> str:
    """A failing function's problem, input and hint, and what it printed; for a passing one that printed,
    only that."""
    if result.status != "FAIL":
        return f"{result.name} passes, and it printed something:\n" + printed(result.output)
    failure = result.failure
    found = "smallest failing input hypothesis found" if result.found == "shrunk" else "input"
    shown = describe(failure.example, get_exercise(result.name).inputs) if failure.example else None
    return "\n".join([failure.problem, *([f"  {found}: {shown}"] if shown else []),
                      *([f"  hint: {failure.hint}"] if failure.hint else []),
                      *([printed(result.output)] if result.output else [])])


def describe(example, names: tuple[str, ...]) -> str:
    """``"dout = [[1, 2]], x = an array of shape (5, 7), stride=2"``: an input, small arrays in full."""
    shown = [f"{name} = {_show(value)}" for name, value in zip(names, example.args)]
    return ", ".join(shown + [f"{k}={v!r}" for k, v in example.kwargs.items()])


def _show(a) -> str:
    a = np.asarray(a)
    if a.size > 24:
        return f"an array of shape {a.shape}"
    return " ".join(np.array2string(a, precision=6, separator=", ", max_line_width=10_000, floatmode="maxprec").split())


def printed(output: str) -> str:
    """What a function printed, a few lines of it, indented under "it printed:"."""
    lines = output.splitlines()
    more = [lines.pop()] if lines and lines[-1].startswith("[... ") else []
    shown = [line[:_OUTPUT_WIDTH] + (f" [... {len(line) - _OUTPUT_WIDTH:,} more characters of this line]"
                                     if len(line) > _OUTPUT_WIDTH else "") for line in lines[:_OUTPUT_LINES]]
    shown += [f"[... {len(lines) - _OUTPUT_LINES:,} more lines]"] if len(lines) > _OUTPUT_LINES else []
    return "\n".join(["  it printed:"] + [f"    {line}" for line in shown + more])


def summary(report, path: Path, training: bool) -> str:
    todo = [r.name for r in report.results if not r.implemented]
    failing = [r.name for r in report.implemented if r.status == "FAIL"]
    if not report.implemented:
        return (f"nothing written yet: all {len(report.results)} functions are to do. Start with {todo[0]} "
                f"(its docstring says what to compute), then check again.")
    counts = (f"{len(report.implemented) - len(failing)} of {len(report.results)} pass"
              + (f", {len(failing)} fail" if failing else "") + (f", {len(todo)} to do" if todo else ""))
    if failing or todo:
        return f"{counts}: fix {failing[0]} first." if failing else f"{counts}: well done so far; next, {todo[0]}."
    then = "" if training else f" Now train with them: numpy-mnist exercise check {path} --train"
    return f"{counts}: every backward function agrees with the reference.{then}"


def train(args, report, box) -> bool:
    """The --train part; True when the learner's run trained like the reference's."""
    usable = [r.name for r in report.results if r.name in TRAINING_FUNCTIONS and r.implemented and not r.sticky]
    borrowed = [n for n in TRAINING_FUNCTIONS if n not in usable]
    if not usable:
        print(f"\n--train: none of {', '.join(TRAINING_FUNCTIONS)} is usable yet (to do, or it hangs or "
              "crashes): nothing of yours to train with.")
        return False
    print(f"\ntraining the book's simple_net (784 -> {HIDDEN} -> ReLU -> 1, mnist_loss, lr {LR:g}, "
          f"batch {BATCH_SIZE}, {args.epochs} epochs, float64) twice from the same start: with the "
          f"reference backward functions, and with yours ({', '.join(usable)})"
          + (f"; the reference's {', '.join(borrowed)} stands in for yours (to do or unusable)" if borrowed else ""))
    print(CURVE_HEADER)
    result = side_by_side(box, usable, args.epochs, show=lambda row: print(row, flush=True))
    print("\n" + "\n".join(outcome(result)))
    if importlib.util.find_spec("matplotlib") is None:
        print("(no PNG of the curves: matplotlib is not installed; pip install 'numpy-mnist[plot]')")
    else:
        print(f"wrote {plot_curves(result.reference, result.yours, args.out / 'exercise_training.png')}")
    return result.ending == "trained" and result.part is None


def outcome(result) -> list[str]:
    """The lines after the curves: final accuracies, how the learner's run ended, where the runs part."""
    yours = f"{result.yours[-1].accuracy:.4f}" if result.yours else "-"
    lines = [f"final valid accuracy: reference {result.reference[-1].accuracy:.4f}, yours {yours}"]
    if result.ending != "trained":
        lines = [lines[0] + f" (after {len(result.yours)} of {len(result.reference)} epochs)", result.ending]
    if result.part is not None:
        r, y = result.reference[result.part - 1], result.yours[result.part - 1]
        lines.append(f"the runs part in epoch {result.part}: valid loss {y.valid_loss:.6f} against the reference's "
                     f"{r.valid_loss:.6f} (train loss {y.train_loss:.6f} against {r.train_loss:.6f})")
    elif result.yours:
        shared = "" if result.ending == "trained" else " they share"
        lines.append(f"the runs agree to {PART_RTOL:.0e} relative in every epoch{shared}: your gradients train "
                     "exactly like the reference's")
    return lines
