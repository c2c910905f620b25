#!/usr/bin/env python
"""Run the full benchmark (references, the book's sizes, the sweep) and write it to benchmarks/results/.

    python benchmarks/run.py                 # everything, about 5-10 minutes on a 2-core CPU
    python benchmarks/run.py --quick         # the under-a-minute version

It is ``numpy-mnist bench --sweep --out benchmarks/results``, plus ``--wait-quiet``: on a shared
machine, wait (up to a limit) until other programs leave the CPUs alone before starting, since
their work lands in the timings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from numpy_mnist.bench import BenchConfig, markdown, run_bench, write_results
from numpy_mnist.bench.engines import DEFAULT_ENGINES, ENGINE_KEYS
from numpy_mnist.bench.machine import CpuActivity

RESULTS = Path(__file__).resolve().parent / "results"


def wait_for_quiet(max_cores: float, limit_s: float) -> None:
    """Sleep until other programs use at most ``max_cores`` CPU cores over a 5 s window (or ``limit_s`` passes)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        activity = CpuActivity().start()
        time.sleep(5)
        busy = (activity.stop() or {}).get("other_programs_cores", 0.0)
        if busy <= max_cores:
            return
        print(f"waiting for a quiet machine: other programs use {busy:.2f} cores", file=sys.stderr, flush=True)
    print("the machine did not become quiet; timing anyway", file=sys.stderr)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats, a small sweep")
    p.add_argument("--no-sweep", dest="sweep", action="store_false", help="only the book's sizes")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results folder (default {RESULTS})")
    p.add_argument("--engines", nargs="+", choices=ENGINE_KEYS, default=list(DEFAULT_ENGINES))
    p.add_argument("--wait-quiet", type=float, default=None, metavar="CORES",
                   help="first wait (up to 30 minutes) until other programs use at most CORES CPU cores")
    args = p.parse_args(argv)
    if args.wait_quiet is not None:
        wait_for_quiet(args.wait_quiet, 1800)
    engines = tuple(args.engines)
    results = run_bench(BenchConfig(quick=args.quick, engines=engines, sweep=args.sweep),
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(markdown(results), end="")
    written = write_results(results, args.out)
    print(f"\nwrote {', '.join(str(p) for p in written)} in {results['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
