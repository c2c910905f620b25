"""The GPU checks fail loudly where CuPy cannot run, instead of passing by running nothing.

Both are run here against a stand-in ``cupy`` whose CUDA runtime finds no device, put first on
``PYTHONPATH``, so they mean the same on a machine with a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NO_DEVICE_CUPY = '''
class cuda:
    class runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
'''


@pytest.fixture
def env_without_gpu(tmp_path):
    """The environment of a subprocess in which ``import cupy`` finds a CuPy that sees no device."""
    (tmp_path / "fake" / "cupy").mkdir(parents=True)
    (tmp_path / "fake" / "cupy" / "__init__.py").write_text(NO_DEVICE_CUPY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "fake")])}
    env.pop("NUMPY_MNIST_REQUIRE_GPU", None)
    return env


@pytest.mark.skipif(shutil.which("bash") is None, reason="scripts/gpu_checks.sh is a bash script")
def test_gpu_checks_stop_at_once_where_cupy_cannot_run(tmp_path, env_without_gpu):
    out = tmp_path / "out"
    env = {**env_without_gpu, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_checks.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    line = "gpu_checks: CuPy cannot run here, so nothing was checked: CuPy is installed but no CUDA GPU is usable"
    assert done.stdout.startswith(line) and "cudaErrorNoDevice" in done.stdout, done.stdout + done.stderr
    assert "nvidia-smi must list a GPU" in done.stdout and "Traceback" not in done.stdout + done.stderr
    log = (out / "gpu-checks.log").read_text()
    assert log.startswith(line) and "== gpu tests" not in log  # no step ran


def test_a_required_gpu_fails_the_tests_instead_of_skipping_them(env_without_gpu):
    test = "tests/test_backends.py::test_cupy_backend_on_a_gpu"
    required = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                              env={**env_without_gpu, "NUMPY_MNIST_REQUIRE_GPU": "1"},
                              capture_output=True, text=True, timeout=120)
    assert required.returncode == 1 and "1 error" in required.stdout, required.stdout + required.stderr
    assert "NUMPY_MNIST_REQUIRE_GPU=1 but the cupy backend is unavailable: CuPy is installed but no CUDA GPU " \
           "is usable (RuntimeError: cudaErrorNoDevice" in required.stdout
    assert "0 tests passed on the GPU: none ran there, so this run fails" in required.stdout


def test_a_required_gpu_fails_a_run_in_which_nothing_ran_on_it(env_without_gpu):
    """Tests that never ask for CuPy all pass, yet the run fails: no test passed on the GPU."""
    test = "tests/test_cupy_unusable.py::test_cupy_missing"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                          env={**env_without_gpu, "NUMPY_MNIST_REQUIRE_GPU": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "1 passed" in done.stdout, done.stdout + done.stderr
    assert "0 tests passed on the GPU" in done.stdout


def test_the_gpu_checks_bench_keeps_the_resnet_rows():
    """The bench step times the ResNet-18 on CuPy and PyTorch CUDA too: nothing in its call leaves it out."""
    script = (ROOT / "scripts" / "gpu_checks.sh").read_text()
    bench = [line for line in script.splitlines() if "numpy_mnist bench" in line]
    assert len(bench) == 1 and "--quick" in bench[0] and "--no-resnet" not in bench[0]
