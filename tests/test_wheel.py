"""The built wheel installs one top-level package, ``numpy_mnist``: the repository's ``backends/``
folder goes in as ``numpy_mnist.backends``, so a user's own ``backends`` can neither shadow it nor be
shadowed by it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools", minversion="77", reason="building the wheel needs setuptools >= 77")
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("numpy_mnist-*.whl")
    return found


def test_the_wheels_only_top_level_name_is_numpy_mnist(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"numpy_mnist"}
    assert "numpy_mnist/backends/__init__.py" in names and "numpy_mnist/fused/kernels/mlp.cu" in names
    assert "numpy_mnist/data/mnist_sample.npz" in names


def test_a_folder_with_its_own_backends_package_changes_nothing(tmp_path):
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "__init__.py").write_text("raise ImportError('a user backends package')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = "from numpy_mnist.models import simple_net; print(simple_net(hidden=3).backend.name)"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert (done.returncode, done.stdout) == (0, "numpy\n"), done.stderr
    done = subprocess.run([sys.executable, "-m", "numpy_mnist", "train", "--epochs", "1", "--train-rows", "300",
                           "--no-plot", "--quiet", "--out", str(tmp_path / "out")],
                          cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "final valid accuracy" in done.stdout, done.stderr
