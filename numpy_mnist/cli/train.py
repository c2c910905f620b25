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

--model resnet18 is the book's "Going Deeper" run, cnn_learner(dls, resnet18,
loss_func=F.cross_entropy).fit_one_cycle(1, 0.1): the ResNet-18 (--width channels, 64 as in the
book) trained with Adam and the one-cycle schedule over exactly the run's steps (--lr sets its peak
rate, 0.1), 1 epoch, cross_entropy over two logits (the sample's 0/1 targets become class labels),
shuffled batches of 64 with the last partial batch dropped, as fastai does.  An epoch takes minutes
on a CPU, so it shows a progress bar over the batches.  On --dataset mnist it has ten logits.

--resume continues a saved run ("resumed from epoch N"); --epochs counts epochs in total, so it
must exceed the checkpoint's, else nothing is left to train and the run is refused.  A resnet18
run's one-cycle schedule spans its --epochs, so it resumes only with the same --epochs (after a
Ctrl-C or a kill); a finished one-cycle run is not extended.

Ctrl-C keeps the last finished epoch: its checkpoint (with --save) and, in --out, history.json of
the finished epochs and their learning curve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from numpy_mnist.backends import get_backend
from numpy_mnist.checkpoint import load_checkpoint, save_checkpoint
from numpy_mnist.cli.options import add_backend_options, positive_float, positive_int, seed
from numpy_mnist.data import DataLoader
from numpy_mnist.datasets import check_loss, get_spec, load_dataset
from numpy_mnist.diagnosis import chance_accuracy, diagnose
from numpy_mnist.errors import CheckpointError, DivergenceError, InputError, NumpyMnistError
from numpy_mnist.files import check_file_target, check_folder_target, write_json
from numpy_mnist.learner import EpochRecord, StartRecord
from numpy_mnist.losses import LOSSES
from numpy_mnist.metrics import confusion_table, model_confusion_matrix
from numpy_mnist.models import CLASSES_LR, MODEL_KINDS, linear1, linear10, resnet18, simple_net
from numpy_mnist.optim import SGD, Adam, OneCycle
from numpy_mnist.plots import class_weights_figure, confusion_matrix_figure, learning_curve_figure, pyplot, save_figure
from numpy_mnist.training import fit, make_learner, quiet_numerics


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model and write history.json and a learning curve",
                              description=__doc__)
    p.add_argument("--dataset", choices=("sample", "mnist"), default="sample",
                   help="the book's 3s and 7s, or all ten digits of MNIST")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="folder of the four MNIST IDX files, for --dataset mnist (default: $NUMPY_MNIST_DATA, "
                        "else ~/.cache/numpy-mnist, where `numpy-mnist data download` puts them)")
    p.add_argument("--model", choices=tuple(MODEL_KINDS), default="simple_net", help=(
        "the book's linear1 or simple_net (784 -> hidden -> ReLU -> out), with 1 output for sample and 10 for mnist"))
    p.add_argument("--hidden", type=positive_int, default=30, help="simple_net's hidden width")
    p.add_argument("--width", type=positive_int, default=None, help=(
        f"resnet18's channels in its first stage (default: {RESNET_WIDTH}, the book's; on --resume the checkpoint's)"))
    p.add_argument("--loss", choices=tuple(LOSSES), default=None, help=(
        "sample: the book's mnist_loss (default) or bce, binary cross-entropy on logits; mnist: cross_entropy, "
        "softmax cross-entropy (the only one for ten classes); resnet18: cross_entropy only"))
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"epochs to train (default: {DEFAULT_EPOCHS}, or {RESNET_DEFAULTS['epochs']} for resnet18)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="SGD learning rate, for resnet18 the one-cycle schedule's peak rate (default: the model's own: "
                        "for sample the book's, " + ", ".join(f"{k} {cls.book_lr:g}" for k, cls in MODEL_KINDS.items())
                        + f"; {CLASSES_LR:g} for mnist, except resnet18's {MODEL_KINDS['resnet18'].book_lr:g})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="rows per minibatch (default: 256 for sample, 128 for mnist, or "
                        f"{RESNET_DEFAULTS['batch_size']} for resnet18, whose last partial batch is dropped)")
    p.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None,
                   help="draw a new (seeded) batch order every epoch (default: off for sample, as in the "
                        "book; on for mnist and for resnet18)")
    p.add_argument("--train-rows", type=positive_int, default=None, metavar="N",
                   help="train on a seeded random subset of N rows (quick runs; default: all)")
    p.add_argument("--valid-rows", type=positive_int, default=None, metavar="N",
                   help="validate on a seeded random subset of N rows (default: all)")
    add_backend_options(p)
    p.add_argument("--fused", action="store_true", help=(
        "insist on the fused CUDA graph (hand-written kernels, each epoch one graph replay), the default on the cupy "
        "backend for every model and loss here; an error where it cannot run (on numpy)"))
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


#: Epochs when --epochs is not given (the book's simple_net run), except where a model says otherwise.
DEFAULT_EPOCHS = 40
#: resnet18's width when --width is not given: the book's ResNet-18.
RESNET_WIDTH = 64
#: The book's ``fit_one_cycle(1, 0.1)`` run of the ResNet-18: its defaults, over the dataset's (and
#: :data:`DEFAULT_EPOCHS`).  Its loss is always cross_entropy.
RESNET_DEFAULTS = {"epochs": 1, "batch_size": 64, "shuffle": True}


def settle_defaults(args, spec) -> None:
    """Fill in the defaults ``args`` left open, the one place they are decided: resnet18's own
    (:data:`RESNET_DEFAULTS`) over the dataset's (loss, batch size, shuffling) over
    :data:`DEFAULT_EPOCHS`; refuse a loss that does not fit, and --width for a model without one.
    (The learning rate's default is the model's: :attr:`Model.default_lr`; resnet18's --width on
    --resume is the checkpoint's, filled in by :func:`resume_width`.)"""

    own = RESNET_DEFAULTS if args.model == "resnet18" else {}
    if args.model == "resnet18" and args.loss not in (None, "cross_entropy"):
        raise InputError(f"--loss {args.loss} does not fit --model resnet18, which is trained with cross_entropy "
                         "over its class logits: drop --loss")
    if args.model != "resnet18" and args.width is not None:
        raise InputError(f"--width sets resnet18's channels; --model {args.model} has none: drop --width"
                         + (" (simple_net's width is --hidden)" if args.model == "simple_net" else ""))
    args.loss = "cross_entropy" if args.model == "resnet18" else check_loss(spec, args.loss)
    args.epochs = own.get("epochs", DEFAULT_EPOCHS) if args.epochs is None else args.epochs
    args.batch_size = own.get("batch_size", spec.batch_size) if args.batch_size is None else args.batch_size
    args.shuffle = own.get("shuffle", spec.shuffle) if args.shuffle is None else args.shuffle


def build_model(args, backend, outputs: int = 1):
    """The model ``--model`` names, with ``outputs`` logits (ten classes: ``linear`` starts at zero,
    :func:`~numpy_mnist.models.linear10`)."""
    if args.model == "resnet18":  # (only train offers it, and prepare has settled its --width)
        return resnet18(width=args.width, seed=args.seed, backend=backend, classes=max(outputs, 2))
    if args.model == "linear":
        if outputs > 1:
            return linear10(seed=args.seed, backend=backend, classes=outputs)
        return linear1(seed=args.seed, backend=backend, loss=args.loss)
    return simple_net(hidden=args.hidden, seed=args.seed, backend=backend, loss=args.loss, outputs=outputs)


def build_optimizer(args, model, steps_per_epoch: int):
    """SGD at ``--lr`` (the book's ``BasicOptim``), or for resnet18 fastai's ``fit_one_cycle``: Adam
    (batch norms undecayed) under a one-cycle schedule peaking at ``--lr`` over exactly the run's steps."""

    if args.model == "resnet18":
        return Adam(model.params, args.lr, no_decay=model.no_weight_decay,
                    schedule=OneCycle(args.epochs * steps_per_epoch, args.lr))
    return SGD(model.params, args.lr)


def run(args) -> int:
    spec, data, train_dl, valid_dl, model, checkpoint = prepare(args)
    resnet = args.model == "resnet18"
    opt = build_optimizer(args, model, len(train_dl))
    history, start = resume(args, checkpoint, model, opt)
    learner = make_learner(model, train_dl, valid_dl, opt, history=history, start=start, fused=args.fused,
                           reference=args.reference)

    rate = f"Adam, one-cycle to lr {args.lr:g} over {opt.schedule.total_steps} steps" if resnet else f"lr {args.lr:g}"
    name = f"ResNet18(width={model.width}, {model.outputs} classes)" if resnet else repr(model)
    say(args, f"{name} on {model.backend.device}, {spec.name}: {train_dl.n_rows} train / {valid_dl.n_rows} valid rows, "
              f"{rate}, batch {args.batch_size}{', shuffled' if args.shuffle else ''}"
              f"{', last partial batch dropped' if train_dl.drop_last else ''}; {learner.path}")
    # the table's columns, one row per epoch, each 10 characters wide whatever the magnitude (:func:`cell`)
    say(args, "  ".join(f"{c:>10}" for c in ("epoch", "train_loss", "valid_loss", "accuracy", "seconds")))
    if learner.history:
        print(f"resumed from epoch {learner.epochs_done} of {args.resume} (its epochs are in history.json); "
              f"training epochs {learner.epochs_done + 1} to {args.epochs}", flush=True)
    if not train(args, learner):
        return 130
    # one line on what went wrong in a finished run (numpy_mnist.diagnosis), else None
    found = diagnose(learner.history, chance=chance_accuracy(data.valid_y), lr=args.lr,
                     start_loss=learner.start.valid_loss if learner.start is not None else None,
                     suggested_lr=model.default_lr, model_kind=model.kind, loss=model.loss)
    warning = None if found is None else found.message
    written = write_history(args, learner, warning)
    if spec.outputs > 1:
        written += write_class_pictures(args, model, valid_dl)
    print(f"final valid accuracy {learner.history[-1].accuracy:.4f}; wrote {', '.join(str(p) for p in written)}")
    if warning is not None:
        print(f"numpy-mnist train: warning: {warning}", file=sys.stderr)
    return 0


def write_history(args, learner, warning=None) -> list[Path]:
    """history.json of the finished epochs and, with plots on, their learning curve; the paths written."""
    history = {"epochs": [r.as_dict() for r in learner.history],
               "start": learner.start.as_dict() if learner.start is not None else None, "warning": warning}
    written = [write_json(args.out / "history.json", history)]
    if args.plot:
        title = f"{args.model} on {args.dataset}, lr {args.lr:g}, batch {args.batch_size}"
        with quiet_numerics():  # (a loss of 1e30 plots without NumPy's warnings)
            written.append(save_figure(learning_curve_figure(learner.history, title), args.out / "learning_curve.png"))
    return written


def check_plotting(args) -> None:
    """With plots on, refuse before any work when matplotlib cannot be imported (not after the run)."""
    try:
        if args.plot:
            pyplot()
    except NumpyMnistError as exc:
        raise InputError(f"{exc}, or pass --no-plot") from None


def prepare(args):
    """Check the paths, load the checkpoint to resume and the data, build the model; fill in the
    defaults ``args`` left open.

    Returns ``(spec, data, train_dl, valid_dl, model, checkpoint)`` (``checkpoint`` None without --resume).
    """

    check_folder_target(args.out, "--out")
    if args.save is not None:
        check_file_target(args.save, "--save")
    if args.data is not None and args.data.exists() and not args.data.is_dir():
        raise InputError(f"--data {args.data} is a file, not a folder: name the folder that holds the four MNIST files")
    check_plotting(args)
    spec = get_spec(args.dataset)
    settle_defaults(args, spec)
    checkpoint = load_checkpoint(args.resume) if args.resume is not None else None
    if args.model == "resnet18":
        args.width = resume_width(args, checkpoint)
    backend = get_backend(args.backend, args.dtype)
    data = load_dataset(spec.name, args.data, train_rows=args.train_rows, valid_rows=args.valid_rows, seed=args.seed)
    train_y, valid_y = data.train_y, data.valid_y
    drop_last = args.model == "resnet18"  # fastai drops a last partial training batch
    if args.model == "resnet18" and spec.outputs == 1:  # the sample's 0/1 float targets as class labels, once
        train_y, valid_y = (y[:, 0].astype(np.int64) for y in (train_y, valid_y))
    if drop_last and len(data.train_x) < args.batch_size:
        raise InputError(f"--batch-size {args.batch_size} is more than the {len(data.train_x)} training rows, and "
                         "resnet18 drops a last partial batch, so nothing would train: pass a smaller --batch-size "
                         "or more --train-rows")
    loader = ProgressLoader if args.model == "resnet18" and not args.quiet else DataLoader
    train_dl = loader(data.train_x, train_y, args.batch_size, shuffle=args.shuffle, seed=args.seed,
                      drop_last=drop_last, backend=backend)
    valid_dl = DataLoader(data.valid_x, valid_y, args.batch_size, backend=backend)
    model = build_model(args, backend, spec.outputs)
    args.lr = model.default_lr if args.lr is None else args.lr
    return spec, data, train_dl, valid_dl, model, checkpoint


def train(args, learner) -> bool:
    """Train the epochs ``--epochs`` leaves, a table row and a checkpoint after each; False when
    Ctrl-C stopped the run (the last finished epoch saved), True otherwise.

    A diverging run ends in its one-line error, here with the flag to change.
    """

    model = learner.model
    # The dropout generator's state at the end of the last finished epoch (an interrupted epoch has
    # drawn from it): what a resumed run must start from to continue exactly.
    rng_state = [_dropout_state(model)]

    def save():
        if args.save is not None:
            start = learner.start.as_dict() if learner.start is not None else None
            save_checkpoint(args.save, model, epoch=learner.epochs_done, optimizer=learner.opt,
                            history=learner.history, run={**run_settings(args), "start": start, **rng_state[0]})

    def on_epoch_end(record):
        rng_state[0] = _dropout_state(model)
        say(args, "  ".join([f"{record.epoch:>10d}", *map(cell, (record.train_loss, record.valid_loss,
                                                                  record.accuracy, record.seconds))]))
        save()

    try:
        fit(learner, max(args.epochs - learner.epochs_done, 0), on_epoch_end=on_epoch_end, progress=not args.quiet)
    except DivergenceError as exc:
        raise DivergenceError(f"{exc} (--lr), e.g. {args.lr / 10:g}") from None
    except KeyboardInterrupt:
        save()
        where = (f"; epoch {learner.epochs_done} saved to {args.save}, continue with --resume {args.save}"
                 if args.save else "")
        wrote = f"; wrote {', '.join(str(p) for p in write_history(args, learner))}" if learner.history else ""
        print(f"numpy-mnist train: interrupted after {learner.epochs_done} finished epochs{where}{wrote}",
              file=sys.stderr)
        return False
    return True


def _dropout_state(model) -> dict:
    """``{"dropout_rng": state}`` of the model's dropout generator (plain JSON), or ``{}`` for a model
    that draws nothing: what a checkpoint's run record holds of it."""
    rng = getattr(model, "rng", None)
    return {} if rng is None else {"dropout_rng": rng.bit_generator.state}


class ProgressLoader(DataLoader):
    """The training DataLoader with a progress bar over each epoch's batches (resnet18: minutes an epoch)."""

    def __iter__(self):
        from tqdm.auto import tqdm  # here, not at the top: every command's parser imports this module

        with tqdm(super().__iter__(), total=len(self), desc=f"epoch {self.epoch + 1}", unit="batch",
                  leave=False) as bar:
            yield from bar


def write_class_pictures(args, model, valid_dl) -> list[Path]:
    """The test set's confusion matrix (printed, JSON, PNG) and, for the linear model, its weights."""

    with quiet_numerics():
        cm = model.backend.to_host(model_confusion_matrix(model, valid_dl))
    say(args, f"confusion matrix of the {valid_dl.n_rows} validation (test) images:\n{confusion_table(cm)}")
    written = [write_json(args.out / "confusion_matrix.json", cm.tolist())]
    if args.plot:
        written.append(save_figure(confusion_matrix_figure(cm), args.out / "confusion_matrix.png"))
        if args.model == "linear":
            written.append(save_figure(class_weights_figure(model.params["weights"]), args.out / "class_weights.png"))
    return written


def run_settings(args) -> dict:
    """The options that decide the batches and the steps: a resumed run must use the same.  For
    resnet18 that includes --epochs, which its one-cycle schedule spans."""
    return {"dataset": args.dataset, "train_rows": args.train_rows, "lr": args.lr, "batch_size": args.batch_size,
            "shuffle": args.shuffle, "seed": args.seed, **({"epochs": args.epochs} if args.model == "resnet18" else {})}


def resume_width(args, checkpoint) -> int:
    """resnet18's width: --width, else the --resume ``checkpoint``'s, else :data:`RESNET_WIDTH`.  A
    --width other than the checkpoint's is refused, naming the flag."""
    # (a checkpoint of another model has no saved width here: load_into names it)
    saved = None if checkpoint is None or checkpoint.model.get("kind") != "resnet18" else checkpoint.model.get("width")
    if None not in (saved, args.width) and args.width != saved:
        raise CheckpointError(f"{args.resume} holds a resnet18 of --width {saved} (not --width {args.width}): "
                              f"resume with --width {saved}, or drop --width")
    return int(saved) if saved is not None else args.width or RESNET_WIDTH


def resume(args, checkpoint, model, opt) -> tuple[list, object]:
    """Load the --resume ``checkpoint`` into ``model`` and ``opt``; return its history and the untrained
    model's :class:`~numpy_mnist.learner.StartRecord` (``([], None)`` without ``--resume``; the record
    is None for a checkpoint written before it was saved)."""

    if checkpoint is None:
        return [], None
    try:
        checkpoint.load_into(model, opt)
    except CheckpointError as exc:
        raise CheckpointError(f"{args.resume}: {exc}") from None
    # a resumed run must take the steps the saved one took: refuse other settings, naming the flags
    differ = [f"{_flag(k, checkpoint.run.get(k))} (not {_flag(k, v)})" for k, v in run_settings(args).items()
              if checkpoint.run.get(k) != v]
    if differ:
        raise CheckpointError(f"{args.resume} was trained with {', '.join(differ)}: resume with the same settings")
    if args.epochs <= checkpoint.epoch:
        if args.model == "resnet18":
            raise InputError(f"{args.resume} has finished its run of {checkpoint.epoch} epochs, and its one-cycle "
                             "schedule ended with it: a finished one-cycle run is not extended; start a new run "
                             f"(without --resume) with --epochs {checkpoint.epoch + 1} or more")
        raise InputError(f"{args.resume} has already trained {checkpoint.epoch} epochs and --epochs {args.epochs} "
                         f"counts epochs in total, so nothing is left to train: pass a larger --epochs, "
                         f"e.g. --epochs {checkpoint.epoch + max(args.epochs, 1)}")
    if "dropout_rng" in checkpoint.run and getattr(model, "rng", None) is not None:
        try:
            model.rng.bit_generator.state = checkpoint.run["dropout_rng"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{args.resume} holds a garbled dropout generator state") from None
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
    if np.isfinite(value) and value != 0 and not 1e-4 <= abs(value) < 1e5:
        text = f"{value:.3e}"
        return f"{value:>{width}.{max(0, 3 - max(0, len(text) - width))}e}"
    return f"{value:>{width}.4f}"


def say(args, line: str) -> None:
    """Print ``line`` unless --quiet, through tqdm so that a progress bar stays intact."""
    if not args.quiet:
        from tqdm.auto import tqdm

        tqdm.write(line)
