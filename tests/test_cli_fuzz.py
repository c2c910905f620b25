"""Fuzzing the command line: every subcommand, drawn flags and values, and what a user may be told.

The subcommands and their options are read from the parser itself (:func:`numpy_mnist.cli.build_parser`),
so a new subcommand is fuzzed as soon as it is registered.  Each option gets values by its kind:
integers and numbers (negative, zero, huge, NaN, not a number), choices (and one that is not),
paths (missing, a folder where a file is expected, a file where a folder is expected, a valid
checkpoint, a garbage one).  Every command line runs in-process in a fresh, empty working folder and
must:

* end with exit status 0 or 2 (``gradcheck`` may also end in 1, its documented "the gradients
  disagree", printing a MISMATCH line), never an uncaught exception (a traceback) or a raw warning
  (this suite turns warnings into errors);
* print no ``Traceback``;
* write nothing outside ``--out`` (the file ``--save`` names aside);
* name flags, never Python parameters (``train_rows``, ``root=``) in what it prints on stderr.

:data:`RUNS` says which subcommands may run to completion, with what tiny settings.  Any other
subcommand (``bench``, which takes minutes; ``data download``, which uses the network; one not
known here) is fuzzed only with command lines that carry at least one value argparse refuses.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numpy_mnist.data
import numpy_mnist.plots
from numpy_mnist.checkpoint import save_checkpoint
from numpy_mnist.cli import build_parser, main
from numpy_mnist.cli.options import positive_float, positive_int
from numpy_mnist.data import load_mnist_sample
from numpy_mnist.models import linear1


@dataclass(frozen=True)
class Tiny:
    """How a subcommand runs to completion in the fuzz.

    ``first``: arguments put before the drawn ones (argparse keeps an option's last value, so a drawn
    value overrides them), keeping a full run small; ``no_huge``: options whose valid huge values
    are not drawn (a run of 2**31-1 epochs is valid and endless); ``examples``: command lines drawn.
    """

    first: tuple[str, ...] = ()
    no_huge: frozenset[str] = field(default_factory=frozenset)
    examples: int = 25


#: The subcommands that may run to completion, with tiny settings.  A new one joins here.
RUNS = {
    "train": Tiny(first=("--epochs", "1", "--train-rows", "200", "--valid-rows", "100", "--hidden", "4",
                         "--no-plot"), no_huge=frozenset({"--epochs"}), examples=60),
    "baseline": Tiny(examples=15),
    "gradcheck": Tiny(first=("--hidden", "4", "--batch-size", "8"), examples=25),
    "data path": Tiny(examples=5),
    "data verify": Tiny(examples=20),
}
#: Command lines drawn for a subcommand fuzzed only with values argparse refuses.
REFUSED_ONLY_EXAMPLES = 40

HUGE = 2**31 - 1
INTEGERS = ["-1", "0", "1", "3", str(HUGE), str(2**64), "nan", "1.5", ""]
NUMBERS = ["-1", "0", "1e-300", "0.1", "1e30", "1e999", "nan", "-inf", "x"]
PATHS = ["missing", "missing/deeper/x", "afile", "afile/x", "adir", "good.ckpt", "garbage.ckpt", "out/x", ""]


def leaf_commands() -> dict[str, argparse.ArgumentParser]:
    """``{"train": parser, "data download": parser, ...}``: every command a user can run."""
    found = {}

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(prefix)] = parser
        for sub in subs:
            for name, child in sub.choices.items():
                walk(child, [*prefix, name])

    walk(build_parser(), [])
    return found


COMMANDS = leaf_commands()


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, (argparse._HelpAction,
                                                                                   argparse._VersionAction))]


def refused_values(action: argparse.Action) -> list[str]:
    """Values argparse refuses for ``action`` (empty when it takes any text)."""
    if action.choices is not None:
        return ["nope", ""]
    if action.type in (positive_int, int) or getattr(action.type, "__name__", "") == "seed":
        return ["-1", "x", "1.5"]
    if action.type in (positive_float, float):
        return ["-1", "nan", "x"]
    return []


def value_texts(action: argparse.Action, tiny: Tiny | None) -> list[str]:
    """The values drawn for ``action``."""
    if action.choices is not None:
        return [*action.choices, "nope", ""]
    if action.type in (positive_int, int) or getattr(action.type, "__name__", "") == "seed":
        huge_ok = tiny is not None and not set(action.option_strings) & tiny.no_huge
        return [t for t in INTEGERS if huge_ok or t != str(HUGE)]
    if action.type in (positive_float, float):
        return NUMBERS
    if action.type is Path:
        return PATHS
    return ["x", "", "file:///nonexistent"]


@st.composite
def command_lines(draw, command: str) -> list[str]:
    parser, tiny = COMMANDS[command], RUNS.get(command)
    argv = [*command.split(), *(tiny.first if tiny is not None else ())]
    acts = options(parser)
    chosen = draw(st.lists(st.sampled_from(acts), max_size=4, unique_by=id)) if acts else []
    if tiny is None:  # at least one refused value, in a random place
        refusable = [a for a in acts if refused_values(a)]
        if refusable:
            chosen.insert(draw(st.integers(0, len(chosen))), (draw(st.sampled_from(refusable)), "refused"))
        else:
            chosen.append((None, "refused"))
    for item in chosen:
        action, refused = item if isinstance(item, tuple) else (item, None)
        if action is None:
            argv.append("--no-such-option")
            continue
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
            continue
        texts = refused_values(action) if refused else value_texts(action, tiny)
        if action.nargs in ("+", "*"):
            argv += [flag, *draw(st.lists(st.sampled_from(texts), min_size=1, max_size=3))]
        else:
            argv += [flag, draw(st.sampled_from(texts))]
    return argv


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "good.ckpt", linear1(seed=0), epoch=1).read_bytes()


def snapshot(root: Path) -> dict[Path, tuple]:
    return {p.relative_to(root): (p.is_dir(), None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns))
            for p in root.rglob("*")}


def allowed(path: Path, out: Path | None, save: Path | None) -> bool:
    """Whether a run may create or change ``path`` (relative to the working folder)."""
    if save is not None and (path == save or path in save.parents):
        return True
    return out is not None and (path == out or out in path.parents or path in out.parents)


#: What a Python parameter looks like in a message: a keyword argument, or an option's dest.
PYTHON_NAME = re.compile(r"(?<![-\w])[a-z][a-z0-9]*(?:_[a-z0-9]+)*=")


def dests() -> set[str]:
    return {a.dest for p in COMMANDS.values() for a in options(p) if "_" in a.dest}


def run_in(folder: Path, argv: list[str]) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(old)
    return code, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def sample():
    """Every 30th training and 10th validation row of the bundled sample (413 and 204, threes and
    sevens): what the commands do with the data is tested elsewhere; here, what they do with arguments."""
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    return train_x[::30], train_y[::30], valid_x[::10], valid_y[::10]


@pytest.fixture
def hermetic(monkeypatch, tmp_path_factory, sample):
    """No MNIST found anywhere a run would look; a small sample read once, not per command line
    (fresh copies each time, as from the file); PNGs drawn at a tenth of the resolution."""
    empty = tmp_path_factory.mktemp("no-mnist")
    monkeypatch.setenv("NUMPY_MNIST_DATA", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty))
    monkeypatch.setattr(numpy_mnist.data, "load_mnist_sample", lambda: tuple(a.copy() for a in sample))
    full_size = numpy_mnist.plots.figure_png
    monkeypatch.setattr(numpy_mnist.plots, "figure_png", lambda fig, dpi=120: full_size(fig, dpi=12))


def edge_lines(command: str) -> list[list[str]]:
    """Every option of ``command`` alone with each of its values (the refused ones only, for a
    subcommand not in :data:`RUNS`): a deterministic sweep of the edges, before the random mixes."""
    tiny = RUNS.get(command)
    base = [*command.split(), *(tiny.first if tiny is not None else ())]
    lines = []
    for action in options(COMMANDS[command]):
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            lines += [[*base, f] for f in action.option_strings] if tiny is not None else []
            continue
        texts = value_texts(action, tiny) if tiny is not None else refused_values(action)
        lines += [[*base, flag, text] for text in texts]
    return lines or [[*base, "--no-such-option"]]


def _examples(command: str) -> int:
    fast = RUNS[command].examples if command in RUNS else REFUSED_ONLY_EXAMPLES
    return max(fast, settings().max_examples * fast // 25)  # more under the thorough profile


def test_the_fuzz_draws_at_least_200_command_lines():
    assert sum(_examples(c) + len(edge_lines(c)) for c in COMMANDS) >= 200
    assert sum(_examples(c) for c in COMMANDS) >= 200
    assert {"train", "baseline", "gradcheck", "bench", "data download", "data path", "data verify"} <= set(COMMANDS)


@pytest.fixture
def check_line(checkpoint_bytes, hermetic, tmp_path_factory):
    """Runs one command line in a fresh working folder and asserts what every command line must."""
    names = dests()

    def check(command: str, argv: list[str]) -> None:
        folder = tmp_path_factory.mktemp("cwd")
        (folder / "afile").write_text("not a folder\n")
        (folder / "adir").mkdir()
        (folder / "good.ckpt").write_bytes(checkpoint_bytes)
        (folder / "garbage.ckpt").write_bytes(b"\x00" * 100)
        before = snapshot(folder)
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                parsed = build_parser().parse_args(argv)
            except SystemExit:
                parsed = None

        code, out, err = run_in(folder, argv)  # an exception escaping main() fails the test here

        expected = {0, 2} | ({1} if command == "gradcheck" and "MISMATCH:" in out else set())
        assert code in expected, (argv, code, err)
        assert "Traceback" not in err and "Traceback" not in out, (argv, err)
        if command not in RUNS:
            assert code == 2 and parsed is None, f"{argv}: a refused-only command line was accepted"
        target = getattr(parsed, "out", None)
        save = getattr(parsed, "save", None)
        changed = [p for p, v in snapshot(folder).items() if before.get(p) != v]
        stray = [p for p in changed if not allowed(p, target, save)]
        assert not stray, f"{argv} wrote {stray} outside --out {target}"
        assert not PYTHON_NAME.search(err), (argv, err)
        assert not any(re.search(rf"(?<![-\w]){name}(?!\w)", err) for name in names), (argv, err)

    return check


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_option_at_each_edge(command, check_line):
    for argv in edge_lines(command):
        check_line(command, argv)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_drawn_command_lines_end_in_0_or_2_without_traceback_writing_only_under_out(command, check_line):
    @settings(max_examples=_examples(command))
    @given(argv=command_lines(command))
    def check(argv):
        check_line(command, argv)

    check()
