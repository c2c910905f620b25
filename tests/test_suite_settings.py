"""The suite's own settings: CI's data requirement turns the shared-data skip into a failure, and
skips are summarised once per reason."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    """This suite's pytest on ``args`` in a child process, with ``env`` added to the environment."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


DATA_TEST = "tests/test_data_idx.py::test_real_files_gzip_and_raw_agree"


def test_missing_shared_data_skips_by_default_and_fails_when_required(tmp_path):
    skipped = pytest_run(DATA_TEST, NUMPY_MNIST_SHARED_DATA=str(tmp_path), NUMPY_MNIST_REQUIRE_DATA="0")
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = pytest_run(DATA_TEST, NUMPY_MNIST_SHARED_DATA=str(tmp_path), NUMPY_MNIST_REQUIRE_DATA="1")
    assert failed.returncode == 1 and "1 error" in failed.stdout, failed.stdout
    assert (f"the shared MNIST files are not at {tmp_path}, and NUMPY_MNIST_REQUIRE_DATA=1 requires them"
            in failed.stdout)


def test_skips_are_counted_once_per_reason(tmp_path):
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('n', range(3))\n"
        "def test_same(n):\n    pytest.skip('one long shared reason')\n\n"
        "def test_other():\n    pytest.skip('another reason')\n\n"
        "def test_runs():\n    pass\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                          "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])})
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    title = next(i for i, line in enumerate(lines) if "4 skipped, by reason" in line)
    assert [line.split(None, 1) for line in lines[title + 1:title + 3]] == [
        ["3", "one long shared reason"], ["1", "another reason"]]
    assert run.stdout.count("one long shared reason") == 1 and "SKIPPED [" not in run.stdout


HIDE_TORCH = '''"""As if PyTorch were not installed: `import torch` raises ModuleNotFoundError."""
import sys


class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoTorch())
'''


def test_finite_differences_run_without_pytorch(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(HIDE_TORCH)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "numpy",
         "tests/test_softmax_ce.py::test_gradient_matches_finite_differences",
         "tests/test_softmax_ce.py::test_loss_and_gradient_match_pytorch",
         "tests/test_gradcheck.py::test_wrong_model_gradients_are_caught_by_both_oracles"],
        cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 5 skipped" in run.stdout, run.stdout  # finite differences ran; the PyTorch parts skipped
    assert "PyTorch (a test dependency) is not installed" in run.stdout  # the PyTorch-only test
    assert "PyTorch, the second oracle, is not installed" in run.stdout  # after finite differences ran
