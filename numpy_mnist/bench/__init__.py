"""Benchmarks: one training epoch of numpy-mnist against PyTorch, CPU against GPU, against the hardware.

``numpy-mnist bench`` (see :mod:`numpy_mnist.cli.bench`) and ``benchmarks/run.py`` drive it::

    from numpy_mnist.bench import BenchConfig, run_bench, write_results, markdown
    results = run_bench(BenchConfig(quick=True))
    print(markdown(results))
    write_results(results, "runs/bench")

Modules: :mod:`~numpy_mnist.bench.engines` (one epoch per engine), :mod:`~numpy_mnist.bench.references`
(streaming pass, matrix-product rate), :mod:`~numpy_mnist.bench.sweep`, :mod:`~numpy_mnist.bench.report`,
:mod:`~numpy_mnist.bench.timing`, :mod:`~numpy_mnist.bench.machine`, :mod:`~numpy_mnist.bench.data`.
Timing lives here and never in a unit test.
"""

from numpy_mnist.bench.report import markdown, write_results
from numpy_mnist.bench.suite import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench", "markdown", "write_results"]
