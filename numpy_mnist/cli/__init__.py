"""``numpy-mnist``: the command line.  One module per subcommand, each with ``register(subparsers)``.

A :class:`~numpy_mnist.errors.NumpyMnistError` or a backend error (something the user can fix,
:data:`~numpy_mnist.errors.USER_ERRORS`) ends in one line on stderr and exit status 2; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from numpy_mnist import __version__
from numpy_mnist.errors import USER_ERRORS

#: Subcommand modules under ``numpy_mnist.cli``, in the order ``--help`` lists them.
SUBCOMMANDS = ("train", "baseline", "data", "gradcheck", "bench", "exercise")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``numpy-mnist train: error: ...``) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="numpy-mnist",
        description="Chapter 4 of Deep Learning for Coders, MNIST basics, with every gradient by hand.",
    )
    parser.add_argument("--version", action="version", version=f"numpy-mnist {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subparsers.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"numpy_mnist.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as exc:
        print(f"numpy-mnist {args.command}: error: {exc}", file=sys.stderr)
        return 2
