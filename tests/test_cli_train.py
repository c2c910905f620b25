"""``numpy-mnist train`` and ``baseline``: outputs, clear errors, checkpoints, interruption, resuming."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import pytest

from numpy_mnist.checkpoint import load_checkpoint
from numpy_mnist.cli import main
from numpy_mnist.models import CLASSES_LR, MLP, LinearModel

FIELDS = {"epoch", "train_loss", "valid_loss", "accuracy", "seconds"}


def test_train_writes_history_and_learning_curve(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "linear", "--lr", "1", "--epochs", "3", "--backend", "numpy",
                 "--out", str(out), "--quiet"]) == 0
    written = json.loads((out / "history.json").read_text())
    assert set(written) == {"epochs", "start", "warning"} and written["warning"] is None
    history = written["epochs"]
    assert [r["epoch"] for r in history] == [1, 2, 3] and all(set(r) == FIELDS for r in history)
    assert set(written["start"]) == {"valid_loss", "accuracy"}
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "final valid accuracy" in capsys.readouterr().out


def test_train_prints_a_table_per_epoch(tmp_path, capsys):
    main(["train", "--model", "linear", "--epochs", "2", "--out", str(tmp_path), "--no-plot", "--backend", "numpy"])
    out = capsys.readouterr().out
    assert "train_loss" in out and "valid_loss" in out
    assert [line.split()[0] for line in out.splitlines() if line.strip()[:1].isdigit()] == ["1", "2"]
    assert not (tmp_path / "learning_curve.png").exists()


@pytest.mark.parametrize("argv, words", [
    (["train", "--lr", "-1"], "--lr: expected a positive finite number"),
    (["train", "--epochs", "zero"], "--epochs: expected a positive integer"),
    (["train", "--model", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--batch-size", "0"], "--batch-size: expected a positive integer"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments_end_in_one_line_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    code = main(["train", "--resume", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == f"numpy-mnist train: error: no checkpoint at {tmp_path / 'missing.ckpt'}"


def test_resume_continues_and_history_holds_the_whole_run(tmp_path):
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "out"
    common = ["train", "--model", "linear", "--lr", "1", "--backend", "numpy", "--quiet", "--no-plot",
              "--out", str(out)]
    assert main(common + ["--epochs", "2", "--save", str(ckpt)]) == 0
    assert load_checkpoint(ckpt).epoch == 2
    first_start = json.loads((out / "history.json").read_text())["start"]
    assert main(common + ["--epochs", "4", "--save", str(ckpt), "--resume", str(ckpt)]) == 0
    written = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in written["epochs"]] == [1, 2, 3, 4]
    assert written["start"] == first_start  # the untrained model's loss travels in the checkpoint
    assert load_checkpoint(ckpt).epoch == 4


def test_resume_refuses_other_settings_or_model(tmp_path, capsys):
    ckpt = tmp_path / "c.ckpt"
    main(["train", "--model", "linear", "--epochs", "1", "--save", str(ckpt), "--quiet", "--no-plot",
          "--out", str(tmp_path), "--backend", "numpy"])
    assert main(["train", "--model", "linear", "--epochs", "2", "--lr", "0.5", "--resume", str(ckpt),
                 "--out", str(tmp_path), "--backend", "numpy"]) == 2
    # --model linear trains at the book's lr 1.0 by default
    assert "trained with --lr 1 (not --lr 0.5): resume with the same settings" in capsys.readouterr().err
    assert main(["train", "--model", "simple_net", "--epochs", "2", "--resume", str(ckpt),
                 "--out", str(tmp_path), "--backend", "numpy"]) == 2
    err = capsys.readouterr().err
    assert err == (f"numpy-mnist train: error: {ckpt}: the checkpoint holds another model than the one asked for "
                   "(model linear saved, simple_net asked for)\n")
    assert main(["train", "--model", "linear", "--epochs", "2", "--shuffle", "--train-rows", "100", "--resume",
                 str(ckpt), "--out", str(tmp_path), "--backend", "numpy"]) == 2
    assert ("was trained with no --train-rows (not --train-rows 100), --no-shuffle (not --shuffle): "
            "resume with the same settings") in capsys.readouterr().err


TINY = ["--model", "linear", "--train-rows", "200", "--valid-rows", "100", "--backend", "numpy", "--no-plot"]


def test_a_resumed_run_says_so_and_prints_only_the_new_epochs(tmp_path, capsys):
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "out"
    assert main(["train", *TINY, "--epochs", "2", "--save", str(ckpt), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", "4", "--resume", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"resumed from epoch 2 of {ckpt} (its epochs are in history.json); training epochs 3 to 4" in printed
    assert [line.split()[0] for line in printed.splitlines() if line.strip()[:1].isdigit()] == ["3", "4"]
    assert main(["train", *TINY, "--epochs", "3", "--resume", str(ckpt), "--out", str(out), "--quiet"]) == 0
    assert "resumed from epoch 2" in capsys.readouterr().out  # said under --quiet too


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_a_resume_with_nothing_left_to_train_is_refused(tmp_path, capsys, epochs):
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "out"
    assert main(["train", *TINY, "--epochs", "2", "--save", str(ckpt), "--out", str(out), "--quiet"]) == 0
    before = (out / "history.json").read_bytes()
    capsys.readouterr()
    assert main(["train", *TINY, "--epochs", epochs, "--resume", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"numpy-mnist train: error: {ckpt} has already trained 2 epochs and --epochs {epochs} counts "
                   f"epochs in total, so nothing is left to train: pass a larger --epochs, e.g. "
                   f"--epochs {2 + int(epochs)}\n")
    assert (out / "history.json").read_bytes() == before


@pytest.mark.parametrize("flag", ["train", "gradcheck", "baseline"])
def test_a_negative_seed_is_one_line(flag, capsys):
    with pytest.raises(SystemExit) as info:
        main([flag, "--seed", "-1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err == (f"numpy-mnist {flag}: error: argument --seed: expected a whole number "
                                            f"from 0 to 2**63-1, got '-1' (see numpy-mnist {flag} --help)\n")


def test_paths_of_the_wrong_kind_are_one_line_before_any_training(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.write_text("x")
    cases = [
        (["--out", str(plain)], f"--out {plain} is a file, not a folder: choose another --out"),
        (["--out", str(plain / "d")], f"--out {plain / 'd'} lies under {plain}, which is a file, not a folder"),
        (["--save", str(plain / "x.ckpt")], f"--save {plain / 'x.ckpt'} lies under {plain}, which is a file"),
        (["--save", str(tmp_path)], f"--save {tmp_path} is a folder, not a file: name a file"),
        (["--dataset", "mnist", "--data", str(plain)], f"--data {plain} is a file, not a folder"),
    ]
    for extra, words in cases:
        assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "out"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and len(err.splitlines()) == 1 and "File exists" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]  # nothing written


def test_library_messages_name_flags_not_python_parameters(tmp_path, capsys):
    assert main(["train", "--train-rows", "99999", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("numpy-mnist train: error: --train-rows must be at most the 12396 rows of "
                                       "the sample train split, got 99999\n")
    assert main(["train", "--dataset", "mnist", "--loss", "bce", "--out", str(tmp_path)]) == 2
    assert "error: --loss must be one of cross_entropy" in capsys.readouterr().err
    assert main(["train", "--dataset", "mnist", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "root=" not in err and "--data DIR" in err


def test_a_huge_learning_rate_prints_no_raw_warning_and_keeps_the_columns(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning escaping the run would fail here
        assert main(["train", *TINY, "--loss", "bce", "--lr", "1e30", "--epochs", "3", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines() if line.strip()[:1].isdigit()]
    header = next(line for line in captured.out.splitlines() if "train_loss" in line)
    assert len(rows) == 3 and {len(line) for line in rows} == {len(header)}
    assert all(len(cell) <= 10 for line in rows for cell in line.split())
    assert "e+" in rows[-1]  # losses like 1e29 in scientific notation
    assert "RuntimeWarning" not in captured.err and "overflow" not in captured.err
    assert captured.err.startswith("numpy-mnist train: warning: the validation loss grew")


def test_an_overflow_in_the_net_ends_in_the_projects_one_line_not_numpys_warning(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # NumPy's "overflow encountered in matmul" would fail here
        assert main(["train", *TINY, "--model", "simple_net", "--lr", "1e30", "--epochs", "2",
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("numpy-mnist train: error: the training loss became nan") and len(err.splitlines()) == 1


def test_the_table_formats_any_magnitude():
    from numpy_mnist.cli.train import cell

    for value in (0.0, 1e-9, 0.5, 1.0, 99999.0, 1e5, 123456789.0, 1e300, -1e300, float("inf"), float("nan"), -0.25):
        assert len(cell(value)) == 10, value
    assert cell(0.5).strip() == "0.5000" and cell(1e30).strip() == "1.000e+30" and cell(1e-9).strip() == "1.000e-09"


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_every_file_a_run_writes_gets_the_umasks_mode(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        assert main(["train", *TINY[:-1], "--epochs", "1", "--quiet", "--save", str(tmp_path / "ck"),
                     "--out", str(tmp_path / "d")]) == 0
    finally:
        os.umask(old)
    written = [tmp_path / "ck", tmp_path / "d" / "history.json", tmp_path / "d" / "learning_curve.png"]
    assert sorted(written) == sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert {p.stat().st_mode & 0o777 for p in written} == {mode}


def run_cli(*args):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "numpy_mnist", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_epoch(path, epoch, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # the checkpoint is written atomically: whenever it exists, it loads (or the test fails)
        if path.exists() and load_checkpoint(path).epoch >= epoch:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint of epoch {epoch} within {timeout}s")


SLOW_RUN = ["--model", "simple_net", "--hidden", "200", "--lr", "0.1", "--shuffle", "--seed", "7",
            "--backend", "numpy", "--quiet", "--no-plot"]


def test_killed_run_resumed_ends_with_the_same_parameters(tmp_path):
    """SIGKILL mid-run, resume from the last checkpoint: bit-identical to an uninterrupted run."""
    epochs = "4"
    whole = run_cli(*SLOW_RUN, "--epochs", epochs, "--save", str(tmp_path / "whole.ckpt"), "--out", str(tmp_path / "a"))
    killed_ckpt = tmp_path / "killed.ckpt"
    victim = run_cli(*SLOW_RUN, "--epochs", epochs, "--save", str(killed_ckpt), "--out", str(tmp_path / "b"))
    wait_for_epoch(killed_ckpt, 1, victim)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    assert victim.returncode == -signal.SIGKILL
    assert load_checkpoint(killed_ckpt).epoch < int(epochs)  # it really was cut short
    resumed = run_cli(*SLOW_RUN, "--epochs", epochs, "--save", str(killed_ckpt), "--resume", str(killed_ckpt),
                      "--out", str(tmp_path / "b"))
    for proc in (whole, resumed):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    a, b = load_checkpoint(tmp_path / "whole.ckpt"), load_checkpoint(killed_ckpt)
    assert a.epoch == b.epoch == int(epochs)
    for name in a.params:
        assert (a.params[name] == b.params[name]).all(), name
    history = json.loads((tmp_path / "b" / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == list(range(1, int(epochs) + 1))


def test_ctrl_c_saves_the_last_finished_epoch_and_exits_130(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    proc = run_cli(*SLOW_RUN, "--epochs", "50", "--save", str(ckpt), "--out", str(tmp_path))
    wait_for_epoch(ckpt, 1, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err and f"--resume {ckpt}" in err
    done = load_checkpoint(ckpt)
    assert 1 <= done.epoch < 50 and len(done.history) == done.epoch
    history = json.loads((tmp_path / "history.json").read_text())["epochs"]  # the finished epochs, in --out
    assert [r["epoch"] for r in history] == list(range(1, done.epoch + 1))
    assert f"wrote {tmp_path / 'history.json'}" in err


def test_baseline_prints_the_books_figures(tmp_path, capsys):
    assert main(["baseline", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    l1 = next(line for line in out.splitlines() if line.split()[:1] == ["l1"])
    assert l1.split()[1:3] == ["0.9168", "0.9854"]
    assert "accuracy stays put" in out
    figures = json.loads((tmp_path / "baseline.json").read_text())
    accuracies = {r["accuracy"] for r in figures["nudge"]}
    losses = [r["loss"] for r in figures["nudge"]]
    assert len(accuracies) == 1 and len(set(losses)) == len(losses)  # accuracy flat, loss moves
    assert (tmp_path / "accuracy_vs_loss.png").exists()


def test_python_dash_m_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "numpy_mnist", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("numpy-mnist ")


@pytest.mark.gpu
def test_cupy_training_ends_at_the_numpy_accuracy(tmp_path, cupy_backend):
    """The book's default run (40 epochs) on the GPU and on the CPU end at the same accuracy."""
    accuracy = {}
    for name in ("numpy", "cupy"):
        out = tmp_path / name
        assert main(["train", "--backend", name, "--out", str(out), "--quiet", "--no-plot"]) == 0
        accuracy[name] = json.loads((out / "history.json").read_text())["epochs"][-1]["accuracy"]
    # float32 sums in another order (cuBLAS against NumPy's BLAS) may move an image or two across 0.5
    assert abs(accuracy["cupy"] - accuracy["numpy"]) <= 2 / 2038, accuracy


def test_a_cpu_run_never_imports_the_fast_path(tmp_path):
    """The reference stands alone: a NumPy run of ``numpy-mnist train`` loads no module of
    numpy_mnist.fused (the path is chosen above both, in numpy_mnist.training)."""
    script = ("import sys\nfrom numpy_mnist.cli import main\n"
              f"code = main(['train', *{TINY!r}, '--epochs', '1', '--quiet', '--out', {str(tmp_path)!r}])\n"
              "print(code, sorted(name for name in sys.modules if name.startswith('numpy_mnist')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    code, modules = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert code == "0" and "'numpy_mnist.learner'" in modules and "'numpy_mnist.training'" in modules
    assert "numpy_mnist.fused" not in modules


def test_each_model_trains_at_its_own_default_rate(tmp_path, capsys):
    assert (LinearModel.book_lr, MLP.book_lr, CLASSES_LR) == (1.0, 0.1, 0.5)  # the book's, and the digits'
    for model, lr in (("linear", "1"), ("simple_net", "0.1")):
        assert main(["train", *TINY, "--model", model, "--epochs", "1", "--out", str(tmp_path)]) == 0
        assert f", lr {lr}, batch 256" in capsys.readouterr().out


def test_a_diverging_run_names_the_flag_to_change(tmp_path, capsys):
    assert main(["train", *TINY, "--model", "simple_net", "--loss", "bce", "--lr", "1e36", "--batch-size", "32",
                 "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("numpy-mnist train: error: the training loss became nan in epoch 1, batch ")
    assert err.endswith("try a lower learning rate (--lr), e.g. 1e+35") and len(err.splitlines()) == 1
