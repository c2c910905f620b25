"""A bad run, explained: the diagnosis of finished runs, and the one line ``numpy-mnist train`` prints."""

import json

import numpy as np
import pytest

from numpy_mnist.cli import main
from numpy_mnist.diagnosis import CHANCE_MARGIN, LOSS_GROWTH, chance_accuracy, diagnose
from numpy_mnist.learner import EpochRecord, Learner, StartRecord
from numpy_mnist.optim import SGD

CHANCE = 0.5044  # the bundled sample's validation set: 1,028 sevens of 2,038 images


def records(*rows):
    """EpochRecords from (train_loss, valid_loss, accuracy) rows."""
    return [EpochRecord(i, t, v, a, 0.01) for i, (t, v, a) in enumerate(rows, start=1)]


# -- the rules -----------------------------------------------------------------------------------

def test_chance_accuracy_is_the_most_common_class_share():
    assert chance_accuracy(np.array([[1.0], [0.0], [0.0], [0.0]])) == 0.75
    assert chance_accuracy(np.array([0, 1, 2, 2, 2])) == 0.6
    with pytest.raises(ValueError):
        chance_accuracy(np.zeros((3, 2)))


def test_a_healthy_run_has_no_diagnosis():
    history = records((0.3, 0.4, 0.51), (0.1, 0.2, 0.82), (0.05, 0.1, 0.92))
    assert diagnose(history, chance=CHANCE, lr=0.1, start_loss=0.5) is None
    assert diagnose([], chance=CHANCE, lr=0.1) is None


def test_loss_grew_a_hundredfold_without_nan():
    history = records((5e29, 4.8e29, 0.90), (3e27, 4.8e28, 0.96))
    found = diagnose(history, chance=CHANCE, lr=1e30, start_loss=3.3, suggested_lr=0.1)
    assert found.kind == "loss_grew"
    assert "grew from 3.3 before training to 4.8e+28" in found.message and "overshot" in found.message
    assert found.message.endswith("try a lower learning rate (--lr), e.g. 0.1")
    # just below the threshold: nothing; and a NaN is the DivergenceError's business, not this one's
    assert diagnose(records((1, 0.99 * LOSS_GROWTH, 0.9)), chance=CHANCE, lr=1, start_loss=1.0) is None
    assert diagnose(records((1, float("nan"), 0.9)), chance=CHANCE, lr=1, start_loss=1.0) is None


def test_without_a_start_the_first_epoch_is_the_reference():
    found = diagnose(records((1, 1, 0.9), (1, 200, 0.9)), chance=CHANCE, lr=1.0)
    assert found.kind == "loss_grew" and "after the first epoch" in found.message
    assert "e.g. 0.1" in found.message  # lr / 10 when no known-good rate is given


def test_stuck_at_chance_is_a_saturated_sigmoid():
    history = records((0.5216, 0.5044, 0.4956), (0.5054, 0.5044, 0.4956), (0.5054, 0.5044, 0.4956))
    found = diagnose(history, chance=CHANCE, lr=1e30, start_loss=0.5, suggested_lr=0.1,
                     model_kind="linear", loss="mnist_loss")
    assert found.kind == "saturated" and "the sigmoid saturated" in found.message
    assert "chance accuracy (0.4956; always answering the most common class scores 0.5044)" in found.message
    dead = diagnose(history, chance=CHANCE, lr=10, start_loss=0.5, model_kind="simple_net", loss="bce")
    assert "the ReLUs died" in dead.message and "e.g. 1" in dead.message


def test_chance_with_a_falling_loss_is_a_short_run_and_a_rising_one_needs_a_lower_lr():
    short = diagnose(records((0.29, 0.42, 0.5044)), chance=CHANCE, lr=0.1, start_loss=0.50, suggested_lr=0.1)
    assert short.kind == "too_short" and "train longer" in short.message and "--lr" not in short.message
    rising = diagnose(records((1.9, 45.0, 0.5044), (2.0, 45.6, 0.5044)), chance=CHANCE, lr=100,
                      start_loss=0.69, suggested_lr=0.1)
    assert rising.kind == "not_settling" and "e.g. 0.1" in rising.message


def test_the_chance_margin():
    above = records((0.3, 0.4, CHANCE + CHANCE_MARGIN + 1e-3))
    assert diagnose(above, chance=CHANCE, lr=0.1, start_loss=0.6) is None
    at = records((0.3, 0.6, CHANCE + CHANCE_MARGIN - 1e-3))
    assert diagnose(at, chance=CHANCE, lr=0.1, start_loss=0.6).kind == "not_settling"


def test_learner_measures_the_untrained_model_once():
    from numpy_mnist.data import DataLoader
    from numpy_mnist.models import linear1

    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784), dtype=np.float32), (rng.random((64, 1)) < 0.5).astype(np.float32)
    model = linear1(seed=0)
    learner = Learner(model, DataLoader(x, y, 16), DataLoader(x, y, 16), SGD(model.params, 0.1))
    before = float(model.loss.forward(model.forward(model.backend.asarray(x)), model.backend.asarray(y)))
    learner.fit(1)
    assert isinstance(learner.start, StartRecord) and learner.start.valid_loss == pytest.approx(before, rel=1e-6)
    first = learner.start
    learner.fit(1)
    assert learner.start is first


# -- the command line: the two bad runs, and the book's default run ---------------------

def train(tmp_path, capsys, *argv):
    assert main(["train", *argv, "--backend", "numpy", "--quiet", "--no-plot", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    return captured, json.loads((tmp_path / "history.json").read_text())


def test_linear_at_lr_1e30_ends_at_chance_and_says_so(tmp_path, capsys):
    captured, written = train(tmp_path, capsys, "--model", "linear", "--lr", "1e30", "--epochs", "3")
    assert written["epochs"][-1]["accuracy"] == pytest.approx(0.4956, abs=1e-4)
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpy-mnist train: warning: the run ended at chance accuracy")
    # the advice names linear1's own rate, the book's 1.0 (numpy_mnist.models.LinearModel.book_lr)
    assert "the sigmoid saturated" in lines[0] and lines[0].endswith("lower learning rate (--lr), e.g. 1")
    assert written["warning"] == lines[0].removeprefix("numpy-mnist train: warning: ")


def test_bce_at_lr_1e30_grows_its_loss_and_says_so(tmp_path, capsys):
    captured, written = train(tmp_path, capsys, "--model", "linear", "--loss", "bce", "--lr", "1e30", "--epochs", "2")
    assert written["epochs"][-1]["valid_loss"] > 1e27 and written["epochs"][-1]["accuracy"] > 0.9
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("numpy-mnist train: warning: the validation loss grew from")
    assert "before training" in lines[0] and "overshot" in lines[0] and "--lr" in lines[0]
    assert written["warning"] == lines[0].removeprefix("numpy-mnist train: warning: ")


def test_the_books_default_run_prints_nothing_extra(tmp_path, capsys):
    captured, written = train(tmp_path, capsys)  # simple_net, 40 epochs, mnist_loss, lr 0.1
    assert written["epochs"][-1]["accuracy"] > 0.98 and written["warning"] is None
    assert captured.err == ""
    assert captured.out.startswith("final valid accuracy") and len(captured.out.splitlines()) == 1


@pytest.mark.parametrize("start, works", [(None, True), ({"valid_loss": "x"}, False)])
def test_a_checkpoint_without_a_usable_start(tmp_path, capsys, start, works):
    """Written before the start was saved: resumes, measuring from the first epoch.  Garbled: refused."""
    from numpy_mnist.checkpoint import load_checkpoint, save_checkpoint

    ckpt, common = tmp_path / "c.ckpt", ["--model", "linear", "--lr", "1", "--backend", "numpy", "--quiet",
                                          "--no-plot", "--out", str(tmp_path)]
    assert main(["train", *common, "--epochs", "1", "--save", str(ckpt)]) == 0
    saved = load_checkpoint(ckpt)
    run = {k: v for k, v in saved.run.items() if k != "start"} | ({} if start is None else {"start": start})
    save_checkpoint(ckpt, saved.build_model(), epoch=saved.epoch, history=saved.history, run=run)
    capsys.readouterr()
    code = main(["train", *common, "--epochs", "2", "--resume", str(ckpt)])
    if works:
        assert code == 0 and json.loads((tmp_path / "history.json").read_text())["start"] is None
    else:
        assert code == 2 and "garbled starting record" in capsys.readouterr().err
