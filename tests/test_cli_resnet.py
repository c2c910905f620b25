"""``numpy-mnist train --model resnet18``: the book's fit_one_cycle defaults, refusals, Ctrl-C and an exact
resume; and for every model the plot check before training and the history Ctrl-C leaves behind."""

import argparse
import json
import sys

import numpy as np
import pytest

from numpy_mnist.checkpoint import load_checkpoint
from numpy_mnist.cli import main
from numpy_mnist.cli.train import settle_defaults
from numpy_mnist.datasets import get_spec
from numpy_mnist.optim import Adam

#: A ResNet-18 run small enough for a test: width 4, 64 rows in batches of 16 (4 Adam steps an epoch).
TINY = ["--model", "resnet18", "--width", "4", "--train-rows", "64", "--valid-rows", "32", "--batch-size", "16",
        "--dtype", "float64", "--backend", "numpy", "--no-plot", "--quiet", "--seed", "3"]


def _args(**given):
    fields = {"model": "simple_net", "loss": None, "epochs": None, "batch_size": None, "shuffle": None,
              "width": None, **given}
    return argparse.Namespace(**fields)


def test_resnet18_defaults_are_the_books_one_cycle_run_and_the_others_keep_theirs():
    args = _args(model="resnet18")
    settle_defaults(args, get_spec("sample"))
    assert (args.epochs, args.batch_size, args.shuffle, args.loss) == (1, 64, True, "cross_entropy")
    args = _args(model="simple_net")
    settle_defaults(args, get_spec("sample"))
    assert (args.epochs, args.batch_size, args.shuffle, args.loss) == (40, 256, False, "mnist_loss")
    args = _args(model="resnet18", epochs=3, batch_size=32, shuffle=False)
    settle_defaults(args, get_spec("mnist"))
    assert (args.epochs, args.batch_size, args.shuffle) == (3, 32, False)


def test_the_help_says_the_per_model_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: 40, or 1 for resnet18" in help_text and "or 64 for resnet18" in help_text


@pytest.mark.parametrize("argv, words", [
    (["--model", "resnet18", "--loss", "mnist_loss"], "--loss mnist_loss does not fit --model resnet18"),
    (["--model", "linear", "--width", "8"], "--width sets resnet18's channels; --model linear has none"),
    (["--model", "resnet18", "--train-rows", "10"], "--batch-size 64 is more than the 10 training rows"),
])
def test_bad_resnet_options_end_in_one_line(tmp_path, capsys, argv, words):
    assert main(["train", *argv, "--out", str(tmp_path), "--no-plot", "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _interrupt_at_step(monkeypatch, step: int) -> None:
    """Ctrl-C in the middle of the run: Adam's ``step``-th step (counting from 1) raises it."""
    real = Adam.step
    calls = [0]

    def step_or_interrupt(self, grads):
        calls[0] += 1
        if calls[0] == step:
            raise KeyboardInterrupt
        real(self, grads)

    monkeypatch.setattr(Adam, "step", step_or_interrupt)


def test_ctrl_c_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    whole, cut = tmp_path / "whole.ckpt", tmp_path / "cut.ckpt"
    assert main(["train", *TINY, "--epochs", "2", "--save", str(whole), "--out", str(tmp_path / "a")]) == 0
    with monkeypatch.context() as m:
        _interrupt_at_step(m, 6)  # the second of epoch 2's four steps
        assert main(["train", *TINY, "--epochs", "2", "--save", str(cut), "--out", str(tmp_path / "b")]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 1 finished epochs" in err and f"--resume {cut}" in err
    assert str(tmp_path / "b" / "history.json") in err
    saved = load_checkpoint(cut)
    assert saved.epoch == 1 and int(saved.optimizer_arrays["step"]) == 4
    assert saved.optimizer["schedule"]["total_steps"] == 8 and saved.model["width"] == 4
    assert [r["epoch"] for r in json.loads((tmp_path / "b" / "history.json").read_text())["epochs"]] == [1]

    resumed = [a for a in TINY if a not in ("--width", "4")]  # the width comes from the checkpoint
    assert main(["train", *resumed, "--epochs", "2", "--resume", str(cut), "--save", str(cut),
                 "--out", str(tmp_path / "b")]) == 0
    a, b = load_checkpoint(whole), load_checkpoint(cut)
    assert a.epoch == b.epoch == 2
    for group in ("params", "buffers", "optimizer_arrays"):
        mine, theirs = getattr(a, group), getattr(b, group)
        assert mine.keys() == theirs.keys()
        for name in mine:
            np.testing.assert_allclose(theirs[name], mine[name], rtol=0, atol=1e-12, err_msg=f"{group} {name}")
    figures = [{k: v for k, v in r.items() if k != "seconds"} for r in a.history]
    assert figures == [{k: v for k, v in r.items() if k != "seconds"} for r in b.history]


def test_a_resume_with_another_width_or_epochs_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "r.ckpt"
    assert main(["train", *TINY, "--epochs", "1", "--save", str(ckpt), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    other = [*TINY[:TINY.index("--width")], "--width", "8", *TINY[TINY.index("--width") + 2:]]
    assert main(["train", *other, "--epochs", "2", "--resume", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--width 4 (not --width 8)" in err and len(err.splitlines()) == 1
    assert main(["train", *TINY, "--epochs", "1", "--resume", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "a finished one-cycle run is not extended" in err and len(err.splitlines()) == 1


def test_plots_without_matplotlib_are_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["train", "--model", "linear", "--epochs", "1", "--backend", "numpy", "--quiet",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--no-plot" in err and "[plot]" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "history.json").exists()
    assert main(["train", "--model", "linear", "--epochs", "1", "--backend", "numpy", "--quiet", "--no-plot",
                 "--out", str(tmp_path)]) == 0


def test_ctrl_c_without_save_writes_the_finished_epochs_history_and_curve(tmp_path, monkeypatch, capsys):
    from numpy_mnist.optim import SGD

    real, calls = SGD.step, [0]

    def step_or_interrupt(self, grads):
        calls[0] += 1
        if calls[0] == 2 * 49 + 3:  # in epoch 3 (the sample's 12,396 rows are 49 batches of 256)
            raise KeyboardInterrupt
        real(self, grads)

    monkeypatch.setattr(SGD, "step", step_or_interrupt)
    assert main(["train", "--model", "linear", "--epochs", "10", "--backend", "numpy", "--quiet",
                 "--out", str(tmp_path)]) == 130
    err = capsys.readouterr().err.strip()
    assert err.startswith("numpy-mnist train: interrupted after 2 finished epochs; wrote ")
    assert "history.json" in err and "learning_curve.png" in err and len(err.splitlines()) == 1
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in history["epochs"]] == [1, 2]
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_resnet18_on_the_ten_digits_has_ten_logits(tmp_path, shared_data, capsys):
    ckpt = tmp_path / "ten.ckpt"
    argv = [a for a in TINY if a not in ("--width", "4")]
    assert main(["train", *argv, "--width", "2", "--dataset", "mnist", "--data", str(shared_data / "mnist"),
                 "--save", str(ckpt), "--out", str(tmp_path)]) == 0
    saved = load_checkpoint(ckpt)
    assert saved.model["outputs"] == 10 and saved.params["head.fc2.weight"].shape == (16, 10)
    assert len(json.loads((tmp_path / "confusion_matrix.json").read_text())) == 10


def test_a_progress_bar_over_the_batches_unless_quiet(tmp_path, capsys):
    loud = [a for a in TINY if a != "--quiet"]
    assert main(["train", *loud, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "/4 [" in captured.err and "batch/s" in captured.err  # the bar, over the epoch's 4 batches
    assert "train_loss" in captured.out and "last partial batch dropped" in captured.out  # the table stays
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "batch/s" not in captured.err and "4/4" not in captured.err and "train_loss" not in captured.out
