"""``numpy-mnist train``: the book's training run, with a progress bar, a table, history and a plot.

Defaults reproduce the book's final model: ``simple_net``, 40 epochs, lr 0.1, batch size 256.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backends import get_backend
from numpy_mnist.checkpoint import load_checkpoint, save_checkpoint
from numpy_mnist.errors import CheckpointError, InputError
from numpy_mnist.cli.options import add_backend_options, positive_float, positive_int
from numpy_mnist.files import write_json

MODELS = ("linear", "simple_net")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model and write history.json and a learning curve",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="simple_net", help="the book's linear1 or simple_net")
    p.add_argument("--hidden", type=positive_int, default=30, help="simple_net's hidden width")
    p.add_argument("--loss", choices=("mnist_loss", "bce"), default="mnist_loss",
                   help="the book's mnist_loss, or binary cross-entropy on logits")
    p.add_argument("--epochs", type=positive_int, default=40, help="epochs to train")
    p.add_argument("--lr", type=positive_float, default=0.1, help="SGD learning rate")
    p.add_argument("--batch-size", type=positive_int, default=256, help="rows per minibatch")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=False,
                   help="draw a new (seeded) batch order every epoch")
    add_backend_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the initial parameters and the shuffling")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="folder for history.json and the plot")
    p.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="write a checkpoint here after every epoch (and on Ctrl-C)")
    p.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue from this checkpoint; --epochs counts epochs in total")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the learning-curve PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(run=run)


def build_model(args, backend):
    from numpy_mnist.models import linear1, simple_net

    if args.model == "linear":
        return linear1(seed=args.seed, backend=backend, loss=args.loss)
    return simple_net(hidden=args.hidden, seed=args.seed, backend=backend, loss=args.loss)


def run(args) -> int:
    from numpy_mnist.data import DataLoader, load_mnist_sample
    from numpy_mnist.learner import Learner

    backend = get_backend(args.backend, args.dtype)
    train_x, train_y, valid_x, valid_y = load_mnist_sample()
    train_dl = DataLoader(train_x, train_y, args.batch_size, shuffle=args.shuffle, seed=args.seed, backend=backend)
    valid_dl = DataLoader(valid_x, valid_y, args.batch_size, backend=backend)
    model = build_model(args, backend)
    learner = Learner(model, train_dl, valid_dl, lr=args.lr, history=resume(args, model))

    table = EpochTable(quiet=args.quiet)
    table.header(f"{model!r} on {backend.device}, {train_dl.n_rows} train / {valid_dl.n_rows} valid rows")
    for record in learner.history:
        table.row(record)

    def save(_record=None):
        if args.save is not None:
            save_checkpoint(args.save, model, epoch=learner.epochs_done, optimizer=learner.opt,
                            history=learner.history, run=run_settings(args))

    def on_epoch_end(record):
        table.row(record)
        save()

    try:
        learner.fit(max(args.epochs - learner.epochs_done, 0), on_epoch_end=on_epoch_end, progress=not args.quiet)
    except KeyboardInterrupt:
        save()
        where = f"; epoch {learner.epochs_done} saved to {args.save}, continue with --resume {args.save}" if args.save else ""
        print(f"numpy-mnist train: interrupted after {learner.epochs_done} finished epochs{where}", file=sys.stderr)
        return 130

    if not learner.history:
        raise InputError("no epoch was trained: --epochs must exceed the checkpoint's epochs")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "history.json", [r.as_dict() for r in learner.history])
    written = [args.out / "history.json"]
    if args.plot:
        from numpy_mnist.plots import plot_learning_curve

        written.append(plot_learning_curve(learner.history, args.out / "learning_curve.png",
                                           title=f"{args.model}, lr {args.lr:g}, batch {args.batch_size}"))
    final = learner.history[-1]
    print(f"final valid accuracy {final.accuracy:.4f}; wrote {', '.join(str(p) for p in written)}")
    return 0


def run_settings(args) -> dict:
    """The options that decide the batches and the steps: a resumed run must use the same."""
    return {"lr": args.lr, "batch_size": args.batch_size, "shuffle": args.shuffle, "seed": args.seed}


def resume(args, model) -> list:
    """Load ``--resume`` into ``model``; return its history (empty without ``--resume``)."""
    from numpy_mnist.learner import EpochRecord

    if args.resume is None:
        return []
    checkpoint = load_checkpoint(args.resume)
    checkpoint.load_into(model)
    settings = run_settings(args)
    differ = [f"--{k.replace('_', '-')} {checkpoint.run.get(k)!r} (not {v!r})"
              for k, v in settings.items() if checkpoint.run.get(k) != v]
    if differ:
        raise CheckpointError(f"{args.resume} was trained with {', '.join(differ)}: "
                              "resume with the same settings")
    return [EpochRecord(**r) for r in checkpoint.history]


class EpochTable:
    """Prints one aligned row per epoch, through tqdm so the progress bar stays intact."""

    COLUMNS = ("epoch", "train_loss", "valid_loss", "accuracy", "seconds")

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def _print(self, line: str) -> None:
        if not self.quiet:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def header(self, title: str) -> None:
        self._print(title)
        self._print("  ".join(f"{c:>10}" for c in self.COLUMNS))

    def row(self, r) -> None:
        self._print(f"{r.epoch:>10d}  {r.train_loss:>10.4f}  {r.valid_loss:>10.4f}  {r.accuracy:>10.4f}  {r.seconds:>10.3f}")
