"""``numpy-mnist bench``: time one training epoch on every engine, against PyTorch and the hardware.

Prints a Markdown report (epoch times, speed-ups over PyTorch eager, multiples of a streaming pass
over the data, the speed targets), and one epoch of the book's ResNet-18 against PyTorch with its
convolutions' matrix products as a floor; with ``--out`` also writes it, a JSON file with every figure and
the machine, and PNG plots.  ``--quick`` takes a minute or two on a 2-core CPU; ``--sweep`` adds
batch size, hidden width and dataset size sweeps (minutes, unattended).
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from numpy_mnist.bench import BenchConfig, markdown, run_bench, write_results
from numpy_mnist.bench.engines import ENGINE_KEYS as ENGINES
from numpy_mnist.bench.machine import wait_for_quiet
from numpy_mnist.cli.options import positive_float, positive_int


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark one training epoch: numpy-mnist vs PyTorch, CPU vs GPU",
                              description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats, a smaller sweep and 12 ResNet-18 batches: a minute or two")
    p.add_argument("--out", type=Path, help="write bench.md, bench.json and PNG plots into this folder")
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=ENGINES, metavar="ENGINE",
                   help=f"engines to run, from {', '.join(ENGINES)} (default: all; "
                        "unavailable ones are reported, not run)")
    p.add_argument("--sweep", action="store_true",
                   help="also sweep batch size (64..8192), hidden width (30..4096) and rows (12,396..10^6)")
    p.add_argument("--no-whole-runs", dest="whole_runs", action="store_false",
                   help="skip the whole `numpy-mnist train` runs, NumPy against CuPy (they run only on a GPU)")
    p.add_argument("--no-resnet", dest="resnet", action="store_false",
                   help="leave out the ResNet-18 rows (one epoch of it: about a minute per engine on 2 cores)")
    p.add_argument("--resnet-batches", type=positive_int, metavar="N",
                   help="time the ResNet-18 on the first N batches of its epoch, scaled to the epoch "
                        "(default: 12 with --quick, else the whole epoch)")
    p.add_argument("--repeats", type=positive_int, help="timed repeats per measurement (the ResNet-18's: at most 3)")
    p.add_argument("--warmups", type=positive_int, help="untimed runs before timing")
    p.add_argument("--wait-quiet", type=positive_float, metavar="CORES",
                   help="first wait (up to 30 minutes) until other programs use at most CORES CPU cores")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG plots")
    p.set_defaults(run=run)


def run(args) -> int:
    log = partial(print, file=sys.stderr, flush=True)
    if args.wait_quiet is not None:
        wait_for_quiet(args.wait_quiet, log=log)
    config = BenchConfig(quick=args.quick, engines=tuple(args.engines), sweep=args.sweep, repeats=args.repeats,
                         warmups=args.warmups, whole_runs=args.whole_runs, resnet=args.resnet,
                         resnet_batches=args.resnet_batches)
    results = run_bench(config, log=log)
    print(markdown(results), end="")
    if args.out is not None:
        written = write_results(results, args.out, plots=args.plot)
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0
