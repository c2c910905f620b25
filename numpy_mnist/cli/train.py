"""numpy-mnist train: the book's training run, with a progress bar, a table, history and plots.

--dataset sample (the default) is the book's 3s and 7s, and the defaults reproduce the book's final
model: simple_net, 40 epochs, mnist_loss, lr 0.1, batch size 256, in order (--model linear: the
book's linear1, at its lr 1.0).

--dataset mnist is the book's closing exercise: all ten digits, 60,000 train / 10,000 test images
(the test split is the validation set) read from --data or the data cache (fill it with
`numpy-mnist data download`).  The models get ten outputs and the loss is softmax cross-entropy;
the defaults become lr 0.5, batch size 128, shuffled (seeded) batches.  Besides the history and
the learning curve it writes the test set's confusion matrix (printed, JSON and PNG) and, for
--model linear, the ten weight vectors as 28x28 pictures (class_weights.png).  With these defaults
--model linear reaches about 0.92 test accuracy in 10 epochs and --model simple_net --hidden 100
about 0.98 in 20.

A run that ends badly without a NaN is explained in one line on stderr ("numpy-mnist train:
warning: ...", recorded as "warning" in history.json): the validation loss grew a hundredfold
since the start (the steps overshot), or the accuracy ended at chance (no better than always
answering the most common class; the sigmoid saturated, or the run was too short).  See
numpy_mnist.diagnosis for the thresholds.  The exit status stays 0: the run did finish.  NumPy's
own floating-point warnings (an overflow in a matrix product at a huge --lr) are silenced during
the run: what they would say, the diagnosis or the NaN check says in words.

--resume continues a saved run ("resumed from epoch N"); --epochs counts epochs in total, so it
must exceed the checkpoint's, else nothing is left to train and the run is refused.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from numpy_mnist.backends import get_backend
from numpy_mnist.checkpoint import load_checkpoint, save_checkpoint
from numpy_mnist.cli.options import add_backend_options, positive_float, positive_int, seed
from numpy_mnist.errors import CheckpointError, DivergenceError, InputError
from numpy_mnist.files import check_file_target, check_folder_target, write_json
from numpy_mnist.losses import LOSSES
from numpy_mnist.models import CLASSES_LR, MODEL_KINDS

#: The models ``--model`` names: their kinds, the book's names (``linear`` is its ``linear1``).
MODELS = tuple(MODEL_KINDS)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the per-dataset ones (None here), whose help says them in words, and
    those of on/off flags; keeps the description's paragraphs."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model and write history.json and a learning curve",
                              description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--dataset", choices=("sample", "mnist"), default="sample",
                   help="the book's 3s and 7s, or all ten digits of MNIST")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder of the four MNIST IDX files, for --dataset mnist (default: $NUMPY_MNIST_DATA, "
                        "else ~/.cache/numpy-mnist, where `numpy-mnist data download` puts them)")
    p.add_argument("--model", choices=MODELS, default="simple_net",
                   help="the book's linear1 or simple_net (784 -> hidden -> ReLU -> out), with 1 output for "
                        "sample and 10 for mnist")
    p.add_argument("--hidden", type=positive_int, default=30, help="simple_net's hidden width")
    p.add_argument("--loss", choices=tuple(LOSSES), default=None,
                   help="sample: the book's mnist_loss (default) or bce, binary cross-entropy on logits; "
                        "mnist: cross_entropy, softmax cross-entropy (the only one for ten classes)")
    p.add_argument("--epochs", type=positive_int, default=40, help="epochs to train")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="SGD learning rate (default: the model's own: for sample the book's, "
                        + " and ".join(f"{kind} {cls.book_lr:g}" for kind, cls in MODEL_KINDS.items())
                        + f"; {CLASSES_LR:g} for mnist)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="rows per minibatch (default: 256 for sample, 128 for mnist)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a new (seeded) batch order every epoch (default: off for sample, as in the "
                        "book; on for mnist)")
    p.add_argument("--train-rows", type=positive_int, default=None, metavar="N",
                   help="train on a seeded random subset of N rows (quick runs; default: all)")
    p.add_argument("--valid-rows", type=positive_int, default=None, metavar="N",
                   help="validate on a seeded random subset of N rows (default: all)")
    add_backend_options(p)
    p.add_argument("--fused", action="store_true",
                   help="insist on the fused CUDA graph (hand-written kernels, each epoch one graph replay), "
                        "the default on the cupy backend for every model and loss here; an error where it "
                        "cannot run (on numpy)")
    p.add_argument("--reference", action="store_true",
                   help="turn every fast path off (the fused CUDA graph) and train through the readable "
                        "reference: layers, losses and models, batch by batch")
    p.add_argument("--seed", type=seed, default=0, help="seed of the initial parameters and the shuffling")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="folder for history.json and the plot")
    p.add_argument("--save", type=Path, default=None, metavar="PATH",
                   help="write a checkpoint here after every epoch (and on Ctrl-C)")
    p.add_argument("--resume", type=Path, default=None, metavar="PATH",
                   help="continue from this checkpoint; --epochs counts epochs in total")
    p.add_argument("--no-plot", dest="plot", action="store_false",
                   help="skip the PNGs (learning curve; for mnist the confusion matrix and weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(run=run)


def settle_defaults(args, spec) -> None:
    """Fill in the per-dataset defaults (loss, batch size, shuffling) and refuse a loss that does not
    fit the dataset.  (The learning rate's default is the model's: :attr:`Model.default_lr`.)"""
    from numpy_mnist.datasets import check_loss

    args.loss = check_loss(spec, args.loss)
    args.batch_size = spec.batch_size if args.batch_size is None else args.batch_size
    args.shuffle = spec.shuffle if args.shuffle is None else args.shuffle


def build_model(args, backend, outputs: int = 1):
    from numpy_mnist.models import linear1, linear10, mlp10, simple_net

    if outputs > 1:
        if args.model == "linear":
            return linear10(seed=args.seed, backend=backend, classes=outputs)
        return mlp10(hidden=args.hidden, seed=args.seed, backend=backend, classes=outputs)
    if args.model == "linear":
        return linear1(seed=args.seed, backend=backend, loss=args.loss)
    return simple_net(hidden=args.hidden, seed=args.seed, backend=backend, loss=args.loss)


def run(args) -> int:
    from numpy_mnist.optim import SGD
    from numpy_mnist.training import make_learner

    spec, data, train_dl, valid_dl, model = prepare(args)
    opt = SGD(model.params, args.lr)
    history, start = resume(args, model, opt)
    learner = make_learner(model, train_dl, valid_dl, opt, history=history, start=start, fused=args.fused,
                           reference=args.reference)

    table = EpochTable(quiet=args.quiet)
    table.header(f"{model!r} on {model.backend.device}, {spec.name}: {train_dl.n_rows} train / "
                 f"{valid_dl.n_rows} valid rows, lr {args.lr:g}, batch {args.batch_size}"
                 f"{', shuffled' if args.shuffle else ''}"
                 f"; {learner.path}")
    if learner.history:
        print(f"resumed from epoch {learner.epochs_done} of {args.resume} (its epochs are in history.json); "
              f"training epochs {learner.epochs_done + 1} to {args.epochs}", flush=True)
    if not train(args, learner, table):
        return 130
    if not learner.history:
        raise InputError("no epoch was trained: --epochs must exceed the checkpoint's epochs")
    warning = explain(args, data, learner)
    write_json(args.out / "history.json", {
        "epochs": [r.as_dict() for r in learner.history],
        "start": learner.start.as_dict() if learner.start is not None else None,
        "warning": warning,
    })
    written = [args.out / "history.json"]
    if args.plot:
        from numpy_mnist.plots import plot_learning_curve

        written.append(plot_learning_curve(learner.history, args.out / "learning_curve.png",
                                           title=f"{args.model} on {spec.name}, lr {args.lr:g}, "
                                                 f"batch {args.batch_size}"))
    if spec.outputs > 1:
        written += write_class_pictures(args, model, valid_dl, table)
    final = learner.history[-1]
    print(f"final valid accuracy {final.accuracy:.4f}; wrote {', '.join(str(p) for p in written)}")
    if warning is not None:
        print(f"numpy-mnist train: warning: {warning}", file=sys.stderr)
    return 0


def prepare(args):
    """Check the paths, load the data and build the model; fill in the defaults ``args`` left open.

    Returns ``(spec, data, train_dl, valid_dl, model)``.
    """
    from numpy_mnist.data import DataLoader
    from numpy_mnist.datasets import get_spec, load_dataset

    check_folder_target(args.out, "--out")
    if args.save is not None:
        check_file_target(args.save, "--save")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        raise InputError(f"--data {args.data} is a file, not a folder: name the folder that holds the four "
                         "MNIST files")
    spec = get_spec(args.dataset)
    settle_defaults(args, spec)
    backend = get_backend(args.backend, args.dtype)
    data = load_dataset(spec.name, args.data, train_rows=args.train_rows, valid_rows=args.valid_rows,
                        seed=args.seed)
    train_dl = DataLoader(data.train_x, data.train_y, args.batch_size, shuffle=args.shuffle, seed=args.seed,
                          backend=backend)
    valid_dl = DataLoader(data.valid_x, data.valid_y, args.batch_size, backend=backend)
    model = build_model(args, backend, spec.outputs)
    args.lr = model.default_lr if args.lr is None else args.lr
    return spec, data, train_dl, valid_dl, model


def train(args, learner, table) -> bool:
    """Train the epochs ``--epochs`` leaves, a table row and a checkpoint after each; False when
    Ctrl-C stopped the run (the last finished epoch saved), True otherwise.

    A diverging run ends in its one-line error, here with the flag to change.
    """
    from numpy_mnist import training

    def save():
        if args.save is not None:
            start = learner.start.as_dict() if learner.start is not None else None
            save_checkpoint(args.save, learner.model, epoch=learner.epochs_done, optimizer=learner.opt,
                            history=learner.history, run={**run_settings(args), "start": start})

    def on_epoch_end(record):
        table.row(record)
        save()

    try:
        training.fit(learner, max(args.epochs - learner.epochs_done, 0), on_epoch_end=on_epoch_end,
                     progress=not args.quiet)
    except DivergenceError as exc:
        raise DivergenceError(f"{exc} (--lr), e.g. {args.lr / 10:g}") from None
    except KeyboardInterrupt:
        save()
        where = (f"; epoch {learner.epochs_done} saved to {args.save}, continue with --resume {args.save}"
                 if args.save else "")
        print(f"numpy-mnist train: interrupted after {learner.epochs_done} finished epochs{where}", file=sys.stderr)
        return False
    return True


def explain(args, data, learner) -> str | None:
    """One line on what went wrong in a finished run (:func:`numpy_mnist.diagnosis.diagnose`), else None."""
    from numpy_mnist.diagnosis import chance_accuracy, diagnose

    model = learner.model
    found = diagnose(learner.history, chance=chance_accuracy(data.valid_y), lr=args.lr,
                     start_loss=learner.start.valid_loss if learner.start is not None else None,
                     suggested_lr=model.default_lr, model_kind=model.kind, loss=model.loss)
    return None if found is None else found.message


def write_class_pictures(args, model, valid_dl, table) -> list[Path]:
    """The test set's confusion matrix (printed, JSON, PNG) and, for the linear model, its weights."""
    from numpy_mnist.metrics import confusion_table, model_confusion_matrix
    from numpy_mnist.training import quiet_numerics

    with quiet_numerics():
        cm = model.backend.to_host(model_confusion_matrix(model, valid_dl))
    table.print(f"confusion matrix of the {valid_dl.n_rows} validation (test) images:")
    table.print(confusion_table(cm))
    write_json(args.out / "confusion_matrix.json", cm.tolist())
    written = [args.out / "confusion_matrix.json"]
    if args.plot:
        from numpy_mnist.plots import plot_class_weights, plot_confusion_matrix

        written.append(plot_confusion_matrix(cm, args.out / "confusion_matrix.png"))
        if args.model == "linear":
            weights = model.backend.to_host(model.params["weights"])
            written.append(plot_class_weights(weights, args.out / "class_weights.png"))
    return written


#: What a checkpoint written before a setting existed was trained with.
_SETTINGS_BEFORE = {"dataset": "sample", "train_rows": None}


def run_settings(args) -> dict:
    """The options that decide the batches and the steps: a resumed run must use the same."""
    return {"dataset": args.dataset, "train_rows": args.train_rows, "lr": args.lr,
            "batch_size": args.batch_size, "shuffle": args.shuffle, "seed": args.seed}


def resume(args, model, opt) -> tuple[list, object]:
    """Load ``--resume`` into ``model`` and ``opt``; return its history and the untrained model's
    :class:`~numpy_mnist.learner.StartRecord` (``([], None)`` without ``--resume``; the record is
    None for a checkpoint written before it was saved)."""
    from numpy_mnist.learner import EpochRecord, StartRecord

    if args.resume is None:
        return [], None
    checkpoint = load_checkpoint(args.resume)
    try:
        checkpoint.load_into(model, opt)
    except CheckpointError as exc:
        raise CheckpointError(f"{args.resume}: {exc}") from None
    settings = run_settings(args)
    saved = {k: checkpoint.run.get(k, _SETTINGS_BEFORE.get(k)) for k in settings}
    differ = [f"{_flag(k, saved[k])} (not {_flag(k, v)})" for k, v in settings.items() if saved[k] != v]
    if differ:
        raise CheckpointError(f"{args.resume} was trained with {', '.join(differ)}: "
                              "resume with the same settings")
    if args.epochs <= checkpoint.epoch:
        raise InputError(f"{args.resume} has already trained {checkpoint.epoch} epochs and --epochs {args.epochs} "
                         f"counts epochs in total, so nothing is left to train: pass a larger --epochs, "
                         f"e.g. --epochs {checkpoint.epoch + max(args.epochs, 1)}")
    start = checkpoint.run.get("start")
    try:
        start = StartRecord(float(start["valid_loss"]), float(start["accuracy"])) if start else None
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{args.resume} holds a garbled starting record {start!r}") from None
    return [EpochRecord(**r) for r in checkpoint.history], start


def _flag(name: str, value) -> str:
    """A run setting as its flag would say it: ``--lr 0.1``, ``--shuffle``, ``--no-shuffle``, no
    ``--train-rows`` for all rows."""
    flag = f"--{name.replace('_', '-')}"
    if isinstance(value, bool):
        return flag if value else f"--no-{flag[2:]}"
    if value is None:
        return f"no {flag}"
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"


def cell(value: float, width: int = 10) -> str:
    """``value`` in ``width`` characters at any magnitude: 4 decimals where they fit and say
    something (0.0001 to 99999), else scientific notation (``1.234e+30``)."""
    if math.isfinite(value) and value != 0 and not 1e-4 <= abs(value) < 1e5:
        text = f"{value:.3e}"
        return f"{value:>{width}.{max(0, 3 - max(0, len(text) - width))}e}"
    return f"{value:>{width}.4f}"


class EpochTable:
    """Prints one aligned row per epoch, through tqdm so the progress bar stays intact; every
    column keeps its width whatever the magnitude (:func:`cell`)."""

    COLUMNS = ("epoch", "train_loss", "valid_loss", "accuracy", "seconds")

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def print(self, line: str) -> None:
        if not self.quiet:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def header(self, title: str) -> None:
        self.print(title)
        self.print("  ".join(f"{c:>10}" for c in self.COLUMNS))

    def row(self, r) -> None:
        self.print("  ".join([f"{r.epoch:>10d}", cell(r.train_loss), cell(r.valid_loss), cell(r.accuracy),
                              cell(r.seconds)]))
