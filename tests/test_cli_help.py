"""Every command's help: no reStructuredText markup, every default shown, and an unknown flag
reported by the command's own parser."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_cli_fuzz import COMMANDS, options

from numpy_mnist.cli import main, plain


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_has_no_markup_and_shows_every_default(command, capsys):
    text = _help(command, capsys)
    assert "``" not in text and not re.search(r":(func|class|mod|meth|data):`", text), text
    flat = " ".join(text.split())
    for action in options(COMMANDS[command]):
        if action.default is None or action.help is None or action.nargs == 0:
            continue  # a lone flag's absence is its default; None: the help says what absence means
        if "default" not in action.help:
            assert f"(default: {action.default})" in flat, (command, action.option_strings)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_flag_is_reported_by_the_commands_own_parser(command, capsys):
    args = command.split()
    if command == "exercise check":
        args.append("my_gradients.py")
    with pytest.raises(SystemExit) as done:
        main([*args, "--bogus-flag"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err == (f"numpy-mnist {command}: error: unrecognized arguments: --bogus-flag "
                   f"(see numpy-mnist {command} --help)\n")


def test_plain_drops_the_markup():
    assert plain("``--out DIR`` and :func:`~numpy_mnist.learner.Learner` or :mod:`numpy_mnist.fused`") == (
        "--out DIR and Learner or fused")


def test_building_the_parsers_imports_no_progress_bar():
    """Every command's parser is built on every run, notebook calls of ``main`` included: tqdm (whose
    ``tqdm.auto`` warns on import in a notebook without ipywidgets) is imported only by a run that shows a bar."""
    code = "import sys\nfrom numpy_mnist.cli import build_parser\nbuild_parser()\nprint('tqdm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
