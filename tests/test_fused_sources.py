"""The fused kernels' sources: shipped with the package, and compiled on every machine that can.

``nvcc`` compiles every instantiation ``numpy-mnist train`` can ask for, for sm_80 and sm_90, so
that a syntax or type error in a ``.cu`` file never lands unseen on a machine without a GPU
(skipped, with the reason, where ``nvcc`` is absent).  ``g++`` builds the same files for the CPU
(the tests' ``host_build.py``), and the launch code checks its arguments against the kernels' own
parameter types.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from host_build import HostDevice, compiler

from numpy_mnist.fused.source import (
    KERNEL_DIR,
    KERNEL_FILES,
    NVRTC_OPTIONS,
    KernelConfig,
    cli_configs,
    geometry,
    program_source,
)
from numpy_mnist.fused.trainer import Launch
from numpy_mnist.losses import get_loss

ROOT = Path(__file__).resolve().parents[1]


def all_names() -> list[str]:
    return sorted({name for config in cli_configs() for name in config.names().values()})


def test_the_kernel_files_are_package_data():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["numpy_mnist.fused"]
    package = ROOT / "numpy_mnist" / "fused"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert {KERNEL_DIR / name for name in KERNEL_FILES} <= shipped
    assert KERNEL_DIR / "common.cuh" in shipped
    assert shipped == {p for p in KERNEL_DIR.iterdir() if p.is_file()}
    # the CPU build's shim is test scaffolding: it lives in tests/, beside host_build.py, not in the package
    assert (ROOT / "tests" / "host_shim.h").is_file() and not list(package.rglob("host_shim.h"))


def test_the_program_is_self_contained_with_each_header_once():
    source = program_source()
    assert source.count("constexpr int MNIST_LOSS") == 1
    assert "#pragma once" not in source  # an inlined header's guard would be a warning in the main file
    assert '#include "common.cuh"' not in source
    # no include is left: the CPU build puts its shim before the kernels itself
    assert re.findall(r'^\s*#\s*include', source, re.MULTILINE) == []


def test_no_atomics_no_shuffles_no_library_calls_in_the_kernels():
    source = re.sub(r"//.*", "", program_source())  # the code, without its comments
    for banned in ("atomic", "__shfl", "cublas", "__fmul_", "__expf", "rsqrt", "extern __shared__"):
        assert banned not in source, banned
    assert "--fmad=false" in NVRTC_OPTIONS


def _kernel_bodies() -> dict[str, str]:
    """Each ``__global__`` function of the program (without comments): its name and its text."""
    source = re.sub(r"//.*", "", program_source())
    starts = [(m.group(1), m.start()) for m in re.finditer(r"__global__ void (?:__launch_bounds__\(\w+\)\s+)?(\w+)\(",
                                                           source)]
    return {name: source[at:next_at] for (name, at), (_, next_at) in zip(starts, starts[1:] + [("", len(source))])}


def test_the_batch_kernels_stage_their_operands_in_shared_memory():
    """Every kernel a training batch runs copies tiles into ``__shared__`` arrays and meets at barriers
    (the CPU build honours them: see ``test_the_kernels_need_their_barriers`` in test_fused.py)."""
    bodies = _kernel_bodies()
    for name in ("linear_rows", "linear_step", "mlp_hidden", "mlp_rows", "mlp_step"):
        assert "__shared__" in bodies[name] and "__syncthreads();" in bodies[name], name
    for name in ("sum_chunks", "sum_parts"):  # validation's totals: once per validation, no tiles
        assert "__shared__" not in bodies[name], name


def test_the_trainer_sizes_its_launches_by_the_kernels_tiles():
    geometry_ = geometry()
    assert geometry_["MLP_ROWS"] * geometry_["MLP_UNITS"] == geometry_["MLP_THREADS"]
    assert geometry_["MLP_COLS"] * geometry_["MLP_UNITS"] == geometry_["MLP_THREADS"]
    codes = {name: get_loss(name).kernel_code for name in ("mnist_loss", "bce", "cross_entropy")}
    assert codes == {"mnist_loss": geometry_["MNIST_LOSS"], "bce": geometry_["BCE"],
                     "cross_entropy": geometry_["SOFTMAX_CE"]}


def test_every_configuration_of_the_command_line_has_kernels():
    configs = cli_configs()
    assert len(configs) == 12  # 2 models x 3 losses x 2 dtypes
    for config in configs:
        names = config.names()
        assert set(names) >= {"rows", "step", "sum_chunks", "sum_parts"}
        for name in names.values():
            assert name.split("<")[0] in _kernel_bodies(), name
    with pytest.raises(ValueError):
        KernelConfig("linear", 10, "mnist_loss", "float32")
    with pytest.raises(ValueError):
        KernelConfig("linear", 1, "cross_entropy", "float32")


def _nvcc_translation_unit(tmp_path: Path) -> Path:
    """The program plus a host function that takes the address of every instantiation: nvcc then
    compiles each one, as NVRTC does for CuPy's name expressions."""
    body = "\n".join(f"    (void)&{name};" for name in all_names())
    unit = tmp_path / "numpy_mnist_kernels.cu"
    unit.write_text(program_source() + f"\nvoid numpy_mnist_instantiate_all()\n{{\n{body}\n}}\n")
    return unit


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_every_instantiation(arch, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH: the .cu compile check needs the CUDA toolkit")
    unit = _nvcc_translation_unit(tmp_path)
    ptx = tmp_path / f"kernels_{arch}.ptx"
    done = subprocess.run([nvcc, f"-arch={arch}", "--ptx", *NVRTC_OPTIONS, "--Werror", "all-warnings",
                           str(unit), "-o", str(ptx)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    entries = re.findall(r"^\.visible \.entry (\w+)\(", ptx.read_text(), re.MULTILINE)
    assert len(entries) == len(all_names())  # every instantiation, each once
    for name in ("linear_rows", "linear_step", "mlp_hidden", "mlp_rows", "mlp_step", "sum_chunks", "sum_parts"):
        assert any(name in e for e in entries), name


def test_the_cpu_build_reports_each_kernels_parameter_types(tmp_path):
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the kernels for the CPU")
    device = HostDevice(cache_dir=tmp_path)
    names = ["linear_rows<float, float, 1, 0>", "linear_step<double, 10>", "mlp_rows<double, long long, 10, 2>"]
    device.compile(names)
    codes = {name: device._kernels[name].codes for name in names}
    assert codes[names[0]] == ["f*", "f*", "i*", "i", "i", "i", "f*", "f*", "f*", "i*", "f*"]
    assert codes[names[1]] == ["d*", "i*", "i", "i", "i", "d*", "d*", "d", "d*", "d*", "d*", "i"]
    assert codes[names[2]][0] == "q*"  # class labels are int64


def test_a_launch_with_a_wrong_argument_type_is_refused(tmp_path):
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the kernels for the CPU")
    device = HostDevice(cache_dir=tmp_path)
    name = "sum_parts<float>"
    device.compile([name])
    part_term, part_correct, out = device.empty(3, np.float32), device.empty(3, np.int32), device.empty(2, np.float32)
    part_term[:], part_correct[:] = [1.5, 2.0, 0.25], [1, 2, 3]
    device.capture([Launch(name, 1, 1, (part_term, part_correct, np.int32(3), out))]).replay()
    assert out.tolist() == [3.75, 6.0]
    wrong = [(part_term.astype(np.float64), part_correct, np.int32(3), out),  # double* for float*
             (part_term, part_correct, 3, out),  # a Python int has no C type
             (part_term, part_correct, np.int64(3), out),  # long long for int
             (part_term, part_correct, np.int32(3))]  # an argument missing
    for args in wrong:
        with pytest.raises(TypeError):
            device.capture([Launch(name, 1, 1, args)])


def test_a_build_error_is_reported_with_the_compilers_message(tmp_path):
    if compiler() is None:
        pytest.skip("no C++ compiler (g++) to build the kernels for the CPU")
    with pytest.raises(RuntimeError, match="g\\+\\+ could not build"):
        HostDevice(cache_dir=tmp_path).compile(["no_such_kernel<float>"])


def test_importing_the_fused_package_imports_neither_cupy_nor_the_trainer():
    code = ("import sys, numpy_mnist.fused, numpy_mnist.fused.source\n"
            "print('cupy' in sys.modules, 'numpy_mnist.fused.trainer' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
