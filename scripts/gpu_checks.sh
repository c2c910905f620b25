#!/usr/bin/env bash
# Every GPU claim of the project in one run, on a machine with an NVIDIA GPU and CuPy: the GPU tests,
# the CuPy-parametrized suite, the book's run on both backends, the ResNet-18's epoch on CuPy, and the
# quick bench (with its ResNet-18 rows).
#
#   scripts/gpu_checks.sh OUTDIR
#
# Writes OUTDIR/{gpu-checks.log, bench.md, bench.json} and prints a summary.  Installs nothing from the
# network: numpy-mnist's dependencies must already be importable (on a machine without
# array-api-compat or threadpoolctl, bring their wheels and put them on PYTHONPATH first).  Tests that
# read the real MNIST files find them through NUMPY_MNIST_SHARED_DATA when ../shared/data is not
# beside the checkout.
#
# Nothing here passes by running nothing: it first checks that CuPy runs (and exits 2 within
# seconds, with the reason and its fix, where it does not), and NUMPY_MNIST_REQUIRE_GPU=1 makes every
# test that needs CuPy fail instead of skip, and a pytest run in which no test passed on the GPU fail.
set -uo pipefail
out=${1:?usage: scripts/gpu_checks.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" NUMPY_MNIST_REQUIRE_GPU=1
log="$out/gpu-checks.log"
status=0
# CuPy first: finds the device, compiles and runs a kernel, multiplies (the backend's own check).
if ! python -c "
from numpy_mnist.backends import BackendUnavailableError
from numpy_mnist.backends.cupy_backend import import_cupy
try:
    import_cupy()
except BackendUnavailableError as exc:
    raise SystemExit(f'gpu_checks: CuPy cannot run here, so nothing was checked: {exc}')
" 2>&1 | tee -a "$log"; then
    exit 2
fi
step() {  # step NAME COMMAND...: run it, log it, remember a failure
    local name=$1; shift
    echo "== $name: $*" | tee -a "$log"
    "$@" 2>&1 | tee -a "$log" | tail -n 15
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$log"
    [ "$rc" -eq 0 ] || status=1
}
step "gpu tests" python -m pytest -m gpu -q -p no:cacheprovider -rs
step "cupy-parametrized tests" python -m pytest -k cupy -q -p no:cacheprovider
for backend in numpy cupy; do
    step "train --backend $backend" python -m numpy_mnist train --backend "$backend" --no-plot --out "$out/train-$backend"
done
# The book's "Going Deeper" ResNet-18, one epoch on CuPy (the run benchmarks/results/resnet18 holds on NumPy).
step "train --model resnet18 --backend cupy" python -m numpy_mnist train --model resnet18 --backend cupy --no-plot \
    --out "$out/train-resnet18-cupy"
# The quick bench: the book's models on every engine, and the ResNet-18 rows (NumPy, CuPy, PyTorch CPU and
# CUDA eager, the first 12 batches of the epoch scaled to it) with their GPU goals.
step "bench --quick" python -m numpy_mnist bench --quick --no-plot --out "$out/bench"
cp "$out/bench/bench.md" "$out/bench/bench.json" "$out/" 2>/dev/null
if [ "$status" -eq 0 ]; then
    echo "gpu_checks: every step passed" | tee -a "$log"
else
    echo "gpu_checks: a step failed: see $log" | tee -a "$log"
fi
exit "$status"
