"""``numpy-mnist``: the command line.  One module per subcommand, each with ``register(subparsers)``.

A :class:`~numpy_mnist.errors.NumpyMnistError` or a backend error (something the user can fix,
:data:`~numpy_mnist.errors.USER_ERRORS`) ends in one line on stderr and exit status 2, as does a
run too large for the machine's memory; any other exception is a bug and keeps its traceback.
The library's messages name Python parameters (``train_rows must be ...``); on the command line
they are said with the subcommand's flags (``--train-rows must be ...``), see :func:`say_with_flags`.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from numpy_mnist import __version__
from numpy_mnist.errors import USER_ERRORS

#: Subcommand modules under ``numpy_mnist.cli``, in the order ``--help`` lists them.
SUBCOMMANDS = ("train", "baseline", "data", "gradcheck", "bench", "exercise")


#: reStructuredText markup in the docstrings that serve as help texts: ``code``, :func:`name`.
_MARKUP = re.compile(r"``(.+?)``|:[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`")


def plain(text: str) -> str:
    """``text`` without its reStructuredText markup, as a terminal should show it."""
    return _MARKUP.sub(lambda m: m.group(1) or m.group(2), text)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every command's help: descriptions as written, every option's default shown."""

    def _get_help_string(self, action) -> str:
        """The help with ``(default: ...)`` appended, except where it would say nothing or mislead:
        the help already names its default, the default is ``None`` (the help says what the
        option's absence means), or the option is a lone flag (``--quick``; a ``--no-plot`` would
        read "default: True")."""
        lone_flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.default is None or lone_flag or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (``numpy-mnist train: error: ...``) and exit 2, and
    every command's help is formatted alike (:class:`HelpFormatter`), without markup (:func:`plain`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # The innermost (sub)command's parser wins, as a subcommand's defaults override its parent's:
        # ``exercise check``'s for ``numpy-mnist exercise check ...``.
        self.set_defaults(command_parser=self)

    def format_help(self) -> str:
        return plain(super().format_help())

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="numpy-mnist",
        description="Chapter 4 of Deep Learning for Coders, MNIST basics, with every gradient by hand.",
    )
    parser.add_argument("--version", action="version", version=f"numpy-mnist {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser, required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"numpy_mnist.cli.{name}").register(subparsers)
    return parser


def say_with_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with each Python parameter the library names (``train_rows must``, ``batch_size=``)
    replaced by the long flag of ``parser`` (a command's own) that sets it (``--train-rows must``)."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings and a.dest != "help"}
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    return re.sub(rf"(?<![-\w/.])({names})(?= must\b|=)", lambda m: flags[m.group(1)], message)


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # said by the subcommand's own parser, which names its own --help
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as exc:
        message = say_with_flags(str(exc), args.command_parser)
    except MemoryError as exc:
        message = (f"not enough memory for this run ({exc or 'MemoryError'}): ask for less, e.g. a smaller "
                   "--hidden, --batch-size or --train-rows")
    print(f"numpy-mnist {args.command}: error: {message}", file=sys.stderr)
    return 2
