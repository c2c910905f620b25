"""``numpy-mnist gradcheck``: the table, exit 0 when every gradient holds, 1 with a clear line when not."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from numpy_mnist.cli import SUBCOMMANDS, main
from numpy_mnist.layers import linear_backward
from numpy_mnist.models import MLP


def run(capsys, *argv):
    code = main(["gradcheck", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("parameter"))
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def test_registered():
    assert "gradcheck" in SUBCOMMANDS


def test_simple_net_table_and_exit_0(capsys):
    pytest.importorskip("torch")
    code, out, _ = run(capsys, "--model", "simple_net", "--backend", "numpy")
    assert code == 0, out
    assert "bundled MNIST sample" in out and "threes" in out and "sevens" in out
    rows = table_rows(out)
    assert list(rows) == ["w1", "b1", "w2", "b2"]
    assert rows["w1"][1] == "(784, 30)" and rows["b2"][1] == "(1,)"
    for cells in rows.values():
        norm, fd, torch_error = float(cells[2]), float(cells[3]), float(cells[5])
        assert norm > 0 and fd <= 1e-6 and torch_error <= 1e-10
    assert "16 directions + 16 entries" in rows["w1"][4] and rows["b1"][4] == "all 30 entries"
    assert out.rstrip().splitlines()[-1].startswith("OK: every gradient agrees")


@pytest.mark.parametrize("argv", [
    ["--model", "linear", "--loss", "bce", "--backend", "array_api_strict", "--seed", "3"],
    ["--model", "simple_net", "--hidden", "2", "--batch-size", "1", "--loss", "bce", "--backend", "numpy"],
])
def test_other_models_losses_and_backends(capsys, argv):
    code, out, _ = run(capsys, *argv)
    assert code == 0, out
    assert ("array_api_strict float64" in out) == ("array_api_strict" in argv)


def test_a_broken_backward_exits_1_naming_the_mismatch(capsys, monkeypatch):
    """simple_net's backward forgetting the ReLU mask: w1 and b1 are wrong, w2 and b2 still right."""
    right = MLP._backward

    def maskless(self, dlogits, cache):
        x, h, a = cache
        _, dw1, db1 = linear_backward(dlogits @ self.params["w2"].T, x, self.params["w1"], need_dx=False)
        return {**right(self, dlogits, cache), "w1": dw1, "b1": db1}

    monkeypatch.setattr(MLP, "_backward", maskless)
    code, out, _ = run(capsys, "--model", "simple_net", "--backend", "numpy")
    assert code == 1
    rows = table_rows(out)
    assert "MISMATCH" in rows["w1"][3] and "MISMATCH" in rows["b1"][3]
    assert "MISMATCH" not in rows["w2"][3] and "MISMATCH" not in rows["b2"][3]
    mismatch = [line for line in out.splitlines() if line.startswith("MISMATCH:")]
    assert any(line.startswith("MISMATCH: w1 against finite differences: relative error") for line in mismatch)
    assert all("analytic" in line and "exceeds" in line for line in mismatch)


def test_without_torch_the_column_says_so(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    code, out, _ = run(capsys, "--model", "linear", "--backend", "numpy")
    assert code == 0
    rows = table_rows(out)
    assert rows["weights"][-1] == "torch not installed"


def test_bad_arguments_end_in_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "--batch-size", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err
    code, _, err = run(capsys, "--batch-size", "100000", "--backend", "numpy")
    assert code == 2 and "larger than" in err and len(err.strip().splitlines()) == 1


def test_cupy_without_a_gpu_is_one_clear_line(capsys, without_gpu):
    code, _, err = run(capsys, "--backend", "cupy")
    assert code == 2 and "cupy" in err.lower() and len(err.strip().splitlines()) == 1


@pytest.mark.gpu
def test_cupy_gradcheck_passes_on_a_gpu(capsys, cupy_backend):
    code, out, err = run(capsys, "--backend", "cupy")
    assert code == 0, out + err


def test_seed_picks_the_batch_and_the_model(capsys):
    _, first, _ = run(capsys, "--model", "linear", "--backend", "numpy", "--seed", "1")
    _, again, _ = run(capsys, "--model", "linear", "--backend", "numpy", "--seed", "1")
    _, other, _ = run(capsys, "--model", "linear", "--backend", "numpy", "--seed", "2")
    loss = [re.search(r"loss (\d\.\d+)", out).group(1) for out in (first, again, other)]
    assert loss[0] == loss[1] != loss[2]
    assert np.isfinite(float(loss[0]))


@pytest.mark.parametrize("step", ["1", "0.01"])
def test_a_step_too_large_for_the_relu_is_named_not_the_seed(capsys, step):
    code, _, err = run(capsys, "--step", step, "--backend", "numpy")
    assert code == 2 and err.count("\n") == 1
    assert f"--step {float(step):g} moves a ReLU pre-activation" in err and "the step is too large" in err
    assert "--seed" not in err


@pytest.mark.parametrize("torch_hidden", [False, True])
def test_a_step_too_large_for_the_curvature_is_named_with_or_without_pytorch(capsys, monkeypatch, torch_hidden):
    if torch_hidden:
        monkeypatch.setitem(sys.modules, "torch", None)
    code, out, _ = run(capsys, "--model", "linear", "--step", "1", "--backend", "numpy")
    assert code == 1 and "MISMATCH" in out
    assert "(at --step 1e-06 every finite difference agrees: --step 1 is too large" in out


def test_a_bad_batch_still_asks_for_another_seed():
    from numpy_mnist.cli.gradcheck import kink_advice
    from numpy_mnist.models import simple_net

    model = simple_net(hidden=3, seed=0, backend="numpy", dtype="float64")
    model.params["b1"][...] = 0.0
    model.params["w1"][...] = 0.0  # every pre-activation is exactly at the kink, whatever the step
    x = np.ones((2, 784))
    assert kink_advice(model, x, 1e-6, 1e-3).endswith("try another --seed")
