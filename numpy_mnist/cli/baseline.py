"""``numpy-mnist baseline``: the book's pixel-similarity baseline, and why accuracy is no loss."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from numpy_mnist.backends import get_backend
from numpy_mnist.baseline import pixel_similarity
from numpy_mnist.cli.options import seed
from numpy_mnist.data import load_mnist_sample
from numpy_mnist.files import check_folder_target, write_json
from numpy_mnist.models import linear1
from numpy_mnist.plots import nudge_figure, save_figure
from numpy_mnist.why_not_accuracy import centre_pixel, nudge_one_weight


def register(subparsers) -> None:
    p = subparsers.add_parser("baseline", help="pixel-similarity baseline and the accuracy-vs-loss nudge",
                              description=__doc__)
    p.add_argument("--out", type=Path, default=None, help="also write the nudge plot (PNG) and figures (JSON) here")
    p.add_argument("--seed", type=seed, default=0, help="seed of the linear model used for the nudge")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.out is not None:
        check_folder_target(args.out, "--out")
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    print("Pixel similarity: a valid image is a 3 when it is closer to the mean 3 than to the mean 7")
    print(f"{'distance':>8}  {'valid 3s':>8}  {'valid 7s':>8}  {'overall':>8}")
    results = [pixel_similarity(train_x, train_y, valid_x, valid_y, d) for d in ("l1", "rmse")]
    for r in results:
        print(f"{r.distance:>8}  {r.accuracy_3:>8.4f}  {r.accuracy_7:>8.4f}  {r.accuracy:>8.4f}")

    backend = get_backend("numpy", "float64")
    model = linear1(seed=args.seed, backend=backend)
    x, y = backend.asarray(valid_x), backend.asarray(valid_y)
    rows = nudge_one_weight(model, x, y, index=centre_pixel())
    print("\nWhy accuracy cannot be the loss: nudge the centre pixel's weight of linear1 "
          f"(seed {args.seed}) on the valid set")
    print(f"{'change':>8}  {'accuracy':>8}  {'mnist_loss':>12}")
    for r in rows:
        print(f"{r.delta:>+8.0e}  {r.accuracy:>8.4f}  {r.loss:>12.8f}")
    print("accuracy stays put (its gradient is 0); mnist_loss moves with every nudge.")

    if args.out is not None:
        sweep = nudge_one_weight(model, x, y, index=centre_pixel(), deltas=[d / 50 for d in range(-50, 51)])
        write_json(args.out / "baseline.json", {"pixel_similarity": [asdict(r) for r in results],
                                               "nudge": [asdict(r) for r in rows],
                                               "nudge_sweep": [asdict(r) for r in sweep]})
        save_figure(nudge_figure(sweep), args.out / "accuracy_vs_loss.png")
        print(f"wrote {args.out / 'baseline.json'} and {args.out / 'accuracy_vs_loss.png'}")
    return 0
