"""Argument types and options shared by the subcommands."""

from __future__ import annotations

import argparse
import math

#: The largest count any option takes (epochs, rows, widths): far beyond any run, yet a
#: machine-sized integer everywhere it goes.
MAX_COUNT = 2**31 - 1


def _number(text: str, convert, fits, expected: str):
    """``convert(text)`` when it parses and ``fits``, else argparse's error saying what was ``expected``."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not fits(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: 1 <= v <= MAX_COUNT, f"a positive integer up to {MAX_COUNT}")


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2**63 - 1 (NumPy's generators take no negative seed)."""
    return _number(text, int, lambda v: 0 <= v < 2**63, "a whole number from 0 to 2**63-1")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < math.inf, "a positive finite number")


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto",
                        help="array backend: auto picks cupy when a CUDA GPU is usable")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="floating dtype of parameters and images")
