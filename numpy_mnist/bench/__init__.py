"""Benchmarks: one training epoch of numpy-mnist against PyTorch, CPU against GPU, against the hardware.

``numpy-mnist bench`` (see :mod:`numpy_mnist.cli.bench`) and ``benchmarks/run.py`` drive it::

    from numpy_mnist.bench import BenchConfig, run_bench, write_results, markdown
    results = run_bench(BenchConfig(quick=True))
    print(markdown(results))
    write_results(results, "runs/bench")

Read in this order: :mod:`~.timing` (interleaving, warm-ups, medians, device synchronization),
:mod:`~.engines` (one epoch per engine; :mod:`~.resnet` for the ResNet-18's), :mod:`~.references`
(streaming pass, matrix-product rate, BLAS floors), :mod:`~.suite` (the run), :mod:`~.targets`,
:mod:`~.report`; beside them :mod:`~.sweep`, :mod:`~.whole_runs`, :mod:`~.machine` and
:mod:`~.data`.  Timing lives here and never in a unit test.
"""

from numpy_mnist.bench.report import markdown, write_results
from numpy_mnist.bench.suite import BenchConfig, run_bench

__all__ = ["BenchConfig", "run_bench", "markdown", "write_results"]
