"""The chapter notebook stays true: its two files agree, and it runs top to bottom, offline, showing the book.

``notebooks/04_mnist_basics_by_hand.py`` (jupytext ``py:percent``) is the source, paired with the
committed ``notebooks/04_mnist_basics_by_hand.ipynb``; the cells of the two must be the same.  The
``.ipynb`` is executed as committed (its outputs replaced) by nbclient in a new ``python3`` kernel,
on the bundled sample, with this checkout first on the kernel's ``PYTHONPATH``: once with the full
MNIST (``../shared/data/mnist``) and PyTorch, once with neither, where no line may claim a PyTorch
comparison.
"""

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "notebooks" / "04_mnist_basics_by_hand.py"
NOTEBOOK = REPO / "notebooks" / "04_mnist_basics_by_hand.ipynb"
#: The budget for the whole notebook on a two-core machine (it runs in about 25 s).
BUDGET_S = 120
#: The book's printed figures: pixel similarity's L1 accuracies, mnist_loss's two examples, the x**2 gradients.
BOOK_FIGURES = ("0.9168", "0.9854", "0.4333", "0.2333", "the gradient at 3: 6\n", "the gradient: 6, 8, 20\n")
BOOK_LR_LOSS = re.compile(r"^lr 1e-05, step (\d+): loss ([0-9.e+]+)$", re.MULTILINE)
BIG_LR_LOSS = re.compile(r"^lr 0\.001, step (\d+): loss ([0-9.e+]+)$", re.MULTILINE)
#: The committed full-width ResNet-18 run the "Going deeper" section quotes.
RESNET_RUN = REPO / "benchmarks" / "results" / "resnet18"
#: Going deeper: the headings of its parts, in order, after simple_net and before the ten digits.
GOING_DEEPER = ("## Going deeper", "### The convolution as shifted matrix products",
                "### Batch norm's backward, derived", "### Checked live: convolution, batch norm and max-pool",
                "### Training it live", "### The full width: the committed run")
DEEP_CHECK = "conv2d, batch_norm and max_pool2d: every backward agrees with finite differences"
LIVE_RESNET = re.compile(r"^untrained: valid accuracy ([0-9.]+) \(chance ([0-9.]+)\); after one epoch: ([0-9.]+),",
                         re.MULTILINE)


@pytest.fixture
def jupyter(monkeypatch):
    """nbformat and nbclient, imported with jupyter_core's platformdirs paths chosen (as Jupyter 6 will)."""
    # Some jupyter_core 5 releases warn (a DeprecationWarning: an error here) that Jupyter will move
    # its paths to platformdirs unless this chooses them; choosing them is the narrow fix.
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed (nbclient)")
    pytest.importorskip("ipykernel", reason="the notebook extra is not installed (ipykernel)")
    return nbformat, nbclient


def build_script():
    spec = importlib.util.spec_from_file_location("build_notebook", REPO / "scripts" / "build_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(str(out.get("text", "")))
            data = out.get("data", {})
            parts += [str(data.get("text/plain", "")), str(data.get("text/markdown", ""))]
    return "\n".join(parts)


def count_pictures(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def picture_widths(nb) -> list[int]:
    """The width in pixels of every PNG output (read from its IHDR header)."""
    import base64

    pngs = [out["data"]["image/png"] for cell in nb.cells for out in cell.get("outputs", [])
            if "image/png" in out.get("data", {})]
    return [int.from_bytes(base64.b64decode(png)[16:20], "big") for png in pngs]


def roller_coaster_losses(text: str, pattern: re.Pattern) -> list[float]:
    found = [(int(step), float(loss)) for step, loss in pattern.findall(text)]
    assert [step for step, _ in found] == list(range(10)), found
    return [loss for _, loss in found]


def assert_shows_the_warmup(text: str) -> None:
    """The SGD warm-up: the loss falls at the book's lr = 1e-5 over 10 steps, and grows at 100 times it."""
    losses = roller_coaster_losses(text, BOOK_LR_LOSS)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    big = roller_coaster_losses(text, BIG_LR_LOSS)
    assert all(later > earlier for earlier, later in zip(big, big[1:])), big


def assert_shows_going_deeper(text: str, with_torch: bool) -> None:
    """The ResNet-18 section: the convolution and batch norm's backward equal their spelled-out forms, the
    three backward passes agree with finite differences (and PyTorch where it ran), the live run learns,
    and the full-width figures are the committed run's."""
    tiny = [float(e) for e in re.findall(r"differs from conv2d by at most ([0-9.e+-]+)", text)]
    tiny += [float(e) for e in re.findall(r"\|dx by the Jacobian - batch_norm_backward\| <= ([0-9.e+-]+)", text)]
    assert len(tiny) == 4 and max(tiny) < 1e-12, tiny
    assert "MISMATCH" not in text
    if with_torch:
        assert DEEP_CHECK + " and with PyTorch autograd" in text
    else:
        assert DEEP_CHECK + " (PyTorch is not installed: the comparison with its autograd was skipped)" in text
    assert "[[0. 1.]\n [0. 0.]]" in text  # a tie: the first maximum in row-major order takes the gradient
    [(start, chance, trained)] = [tuple(map(float, found)) for found in LIVE_RESNET.findall(text)]
    assert abs(start - chance) < 0.1 and trained > 0.95, (start, chance, trained)
    history = json.loads((RESNET_RUN / "history.json").read_text())
    command = "numpy-mnist train --model resnet18 --out benchmarks/results/resnet18"
    assert command in (RESNET_RUN / "README.md").read_text() and f"command: /usr/bin/time -v {command}" in text
    final = history["epochs"][-1]
    assert f"{final['accuracy']:.4f} after {final['epoch']} epoch" in text
    assert f"the epoch in {final['seconds']:.0f} s" in text
    assert "  CPU time: " in text and "  wall time, whole command: " in text


def hide_torch(folder: Path) -> Path:
    """A folder whose ``torch`` module fails to import, as PyTorch does where it is not installed."""
    folder.mkdir()
    (folder / "torch.py").write_text('raise ImportError("No module named \'torch\' (hidden by the test)")\n')
    return folder


@pytest.mark.parametrize("setup", ["full MNIST and PyTorch", "neither MNIST nor PyTorch"])
def test_the_notebook_runs_from_a_clean_kernel_and_shows_the_book(jupyter, tmp_path, setup, request):
    """Top to bottom, with the full MNIST and PyTorch, and without either: no error either way."""
    nbformat, nbclient = jupyter
    full = setup == "full MNIST and PyTorch"
    data = request.getfixturevalue("shared_data") / "mnist" if full else tmp_path / "no-mnist-here"
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # One more cell: which Python the kernel runs, which must be this one (not some other install).
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('kernel python:', sys.executable)"))
    env = build_script().kernel_env(data)
    env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    if not full:
        env["PYTHONPATH"] = os.pathsep.join([str(hide_torch(tmp_path / "no-torch")), env["PYTHONPATH"]])
    workdir = tmp_path / "cwd"
    workdir.mkdir()

    started = time.perf_counter()
    # iopub_timeout: on a loaded machine a cell's output can come after nbclient's default 4 s wait for it and
    # be dropped without a word; wait longer, and fail loudly if it still does not come.
    client = nbclient.NotebookClient(nb, timeout=BUDGET_S, kernel_name="python3", record_timing=False,
                                     iopub_timeout=60, raise_on_iopub_timeout=True,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    elapsed = time.perf_counter() - started

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert elapsed < BUDGET_S, f"the notebook took {elapsed:.0f} s, over its {BUDGET_S} s budget"
    text = outputs_text(nb)
    assert all(figure in text for figure in BOOK_FIGURES), [f for f in BOOK_FIGURES if f not in text]
    assert_shows_the_warmup(text)
    assert_shows_going_deeper(text, with_torch=full and importlib.util.find_spec("torch") is not None)
    kernel_python = text.split("kernel python: ")[1].split()[0]
    assert Path(kernel_python).resolve() == Path(sys.executable).resolve()
    pytorch_lines = [line for line in text.splitlines() if "pytorch" in line.lower()]
    if full:
        assert "Skipping the ten digits" not in text
        assert count_pictures(nb) >= 13  # the ten digits' confusion matrix and weights too
        if importlib.util.find_spec("torch") is not None:
            assert "vs PyTorch autograd" in text and "1e-10 against PyTorch" in text
    else:
        assert "Skipping the ten digits: the full MNIST is not on this machine" in text
        assert count_pictures(nb) >= 11
        # without PyTorch, no line claims a comparison with it: at most that it is not installed
        assert all("not installed" in line for line in pytorch_lines), pytorch_lines
        assert "PyTorch is not installed" in text
    assert list(workdir.iterdir()) == []  # it writes nothing


def test_the_paired_files_hold_the_same_cells(jupyter):
    """The ``.py`` source and the committed ``.ipynb`` are in sync (jupytext pairs them)."""
    nbformat, _ = jupyter
    jupytext = pytest.importorskip("jupytext", reason="jupytext is not installed (the test extra has it)")
    source = jupytext.read(SOURCE)
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert committed.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    cells = [(c.cell_type, c.source) for c in committed.cells]
    assert cells == [(c.cell_type, c.source) for c in source.cells], (
        f"{NOTEBOOK.name} and {SOURCE.name} differ: edit the .py, then run python scripts/build_notebook.py")


def test_the_committed_notebook_has_its_outputs(jupyter):
    nbformat, _ = jupyter
    committed = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(committed)
    code_cells = [c for c in committed.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None and c.outputs for c in code_cells), "commit it executed, with outputs"
    assert count_pictures(committed) >= 13
    widths = picture_widths(committed)  # readable: full-width figures 900 px, the two mean digits 500
    assert min(widths) >= 480 and sum(w >= 880 for w in widths) == len(widths) - 1, widths
    text = outputs_text(committed)
    assert all(figure in text for figure in BOOK_FIGURES)
    assert_shows_the_warmup(text)
    assert_shows_going_deeper(text, with_torch=True)
    assert os.path.getsize(NOTEBOOK) < 2_000_000


def test_going_deeper_sits_at_the_books_place(jupyter):
    """The ResNet-18 section follows simple_net, as the book's "Going Deeper" does, its parts in order."""
    nbformat, _ = jupyter
    markdown = [cell.source for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "markdown"]
    headings = [line for source in markdown for line in source.splitlines() if line.startswith("#")]
    deeper = [next(i for i, h in enumerate(headings) if h.startswith(part)) for part in GOING_DEEPER]
    assert deeper == sorted(deeper)
    assert headings.index("## Adding a nonlinearity: `simple_net`") < deeper[0]
    assert deeper[-1] < headings.index("## Further research: all ten digits")
    assert "*In the book: Going Deeper.*" in "\n".join(markdown)
