"""Checkpoints: round trip, clear refusals, atomic writes, and fuzzed bytes that only ever raise ours."""

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from numpy_mnist import __version__
from numpy_mnist.backends import get_backend
from numpy_mnist.checkpoint import (
    FORMAT_VERSION,
    MAGIC,
    Checkpoint,
    load_checkpoint,
    load_model,
    parse_checkpoint,
    save_checkpoint,
)
from numpy_mnist.errors import CheckpointError, OutputError
from numpy_mnist.models import linear1, simple_net
from numpy_mnist.optim import SGD


@pytest.fixture
def saved(tmp_path):
    model = simple_net(hidden=5, seed=4)
    path = save_checkpoint(tmp_path / "run.ckpt", model, epoch=3, optimizer=SGD(model.params, 0.25),
                           history=[{"epoch": 1, "train_loss": 0.5}], run={"seed": 4})
    return model, path


def test_round_trip_keeps_everything(saved, backend):
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.epoch == 3 and ckpt.optimizer == {"name": "sgd", "lr": 0.25} and ckpt.run == {"seed": 4}
    assert ckpt.model == model.config() and ckpt.dtype == "float32" and ckpt.history[0]["epoch"] == 1
    rebuilt = ckpt.build_model(get_backend(backend, "float32"))
    for name, value in model.params.items():
        np.testing.assert_array_equal(rebuilt.backend.to_host(rebuilt.params[name]), value)
        assert rebuilt.params[name].dtype == rebuilt.backend.dtype


def test_load_model_is_the_python_api(saved):
    model, path = saved
    again = load_model(path)
    x = np.random.default_rng(0).random((3, 784)).astype(np.float32)
    np.testing.assert_array_equal(again.forward(x), model.forward(x))


def test_load_into_refuses_another_model_kind_or_shape_or_dtype(saved):
    _, path = saved
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError) as caught:
        ckpt.load_into(linear1())
    assert str(caught.value) == ("the checkpoint holds another model than the one asked for "
                                 "(model simple_net saved, linear asked for)")
    with pytest.raises(CheckpointError, match=r"another model than the one asked for \(hidden width 5 saved, "
                                              r"30 asked for\)$"):
        ckpt.load_into(simple_net(hidden=30))
    with pytest.raises(CheckpointError, match=r"\(loss mnist_loss saved, bce asked for\)$"):
        ckpt.load_into(simple_net(hidden=5, loss="bce"))
    with pytest.raises(CheckpointError, match="float32 parameters but the model is float64: use --dtype float32"):
        ckpt.load_into(simple_net(hidden=5, dtype="float64"))


def test_missing_file_and_directory_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="cannot read the checkpoint"):
        load_checkpoint(tmp_path)


def test_every_truncation_is_refused(saved):
    _, path = saved
    blob = path.read_bytes()
    for cut in sorted({0, 1, 15, 27, 28, len(blob) // 2, len(blob) - 1}):
        with pytest.raises(CheckpointError, match="not a valid numpy-mnist checkpoint"):
            parse_checkpoint(blob[:cut])


def test_a_flipped_parameter_byte_is_caught(saved):
    _, path = saved
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        parse_checkpoint(bytes(blob))


def _split(blob: bytes) -> tuple[dict, bytes]:
    """A version 2 file's header (parsed) and payload."""
    header_len = struct.unpack_from("<Q", blob, 20)[0]
    return json.loads(blob[60:60 + header_len]), blob[60 + header_len:]


def _seal(header_bytes: bytes, payload: bytes) -> bytes:
    """A version 2 file of these header bytes and payload, with a correct checksum (a forger's file)."""
    preamble = struct.pack("<16sIQ", MAGIC, 2, len(header_bytes))
    return preamble + hashlib.sha256(preamble + header_bytes + payload).digest() + header_bytes + payload


def _version_1(blob: bytes) -> bytes:
    """The same checkpoint in format version 1, as the first numpy-mnist wrote it (the payload's
    SHA-256 in the header, nothing covering the header)."""
    header, payload = _split(blob)
    header_bytes = json.dumps({**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}).encode()
    return struct.pack("<16sIQ", MAGIC, 1, len(header_bytes)) + header_bytes + payload


@pytest.mark.parametrize("old, new", [(b'"epoch": 3', b'"epoch": 8'), (b'"lr": 0.25', b'"lr": 0.95'),
                                      (b'"seed": 4', b'"seed": 5')])
def test_a_one_byte_change_in_the_header_is_refused_in_one_line(saved, old, new):
    _, path = saved
    blob = path.read_bytes()
    assert FORMAT_VERSION == 2 and blob.count(old) == 1
    with pytest.raises(CheckpointError) as caught:
        parse_checkpoint(blob.replace(old, new), name="run.ckpt")
    assert str(caught.value) == ("run.ckpt is not a valid numpy-mnist checkpoint: its SHA-256 does not match "
                                 "(the file is truncated or corrupt)")


def test_a_changed_checksum_or_version_is_refused(saved):
    _, path = saved
    blob = bytearray(path.read_bytes())
    blob[40] ^= 1
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        parse_checkpoint(bytes(blob))
    blob[40] ^= 1
    blob[16] = 3
    with pytest.raises(CheckpointError, match=r"format version 3, and this numpy-mnist .* reads version 2 only"):
        parse_checkpoint(bytes(blob))


def _refused_in_one_line(path: Path, capsys) -> str:
    """What ``numpy-mnist train --resume path`` says of a checkpoint it refuses: one line, exit 2."""
    from numpy_mnist.cli import main

    assert main(["train", "--resume", str(path), "--out", str(path.parent), "--no-plot", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    return err.strip()


def test_a_version_1_file_is_refused_in_one_line(saved, capsys):
    """The first numpy-mnist wrote format version 1 (no checksum over the header): it is not read."""
    _, path = saved
    path.write_bytes(_version_1(path.read_bytes()))
    assert _refused_in_one_line(path, capsys) == (
        f"numpy-mnist train: error: {path} is not a valid numpy-mnist checkpoint: it is of format version 1, and "
        f"this numpy-mnist {__version__} reads version 2 only: train it again with this version")


def test_adams_arrays_and_step_count_round_trip(tmp_path):
    from numpy_mnist.models import resnet18
    from numpy_mnist.optim import Adam, OneCycle

    model = resnet18(width=2, seed=1, backend=get_backend("numpy", "float64"))
    opt = Adam(model.params, 0.1, no_decay=model.no_weight_decay, schedule=OneCycle(10, 0.1))
    x, y = np.random.default_rng(0).random((4, 784)), np.array([0, 1, 1, 0])
    for _ in range(3):
        opt.step(model.loss_and_grads(model.backend.asarray(x), model.backend.asarray(y))[1])
    back = load_checkpoint(save_checkpoint(tmp_path / "r.ckpt", model, epoch=1, optimizer=opt))
    assert back.optimizer["schedule"]["total_steps"] == 10 and back.optimizer["step"] == 3
    assert back.optimizer_arrays["step"].dtype == np.int64 and int(back.optimizer_arrays["step"]) == 3
    for name, value in opt.state_arrays().items():
        assert np.array_equal(back.optimizer_arrays[name], value), name
    assert set(back.buffers) == set(model.buffers)


def test_a_forged_header_size_does_not_allocate():
    blob = struct.pack("<16sIQ", MAGIC, 2, 2**62) + bytes(32) + b"{}"
    with pytest.raises(CheckpointError, match="truncated or forged"):
        parse_checkpoint(blob)


def test_a_forged_array_shape_does_not_allocate(saved):
    _, path = saved
    blob = path.read_bytes()
    header, payload = _split(blob)
    header_bytes = json.dumps(header).encode().replace(b'"shape": [784, 5]', b'"shape": [4000000000, 5]')
    forged = _seal(header_bytes, payload)
    with pytest.raises(CheckpointError, match="claims bytes the file does not hold"):
        parse_checkpoint(forged)


def test_an_interrupted_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OutputError, match="could not write .*No space left on device; its contents are kept") as caught:
        save_checkpoint(path, model, epoch=9)
    kept = Path(str(caught.value).split("kept in ")[1].split(":")[0])
    assert parse_checkpoint(kept.read_bytes()).epoch == 9  # the refused checkpoint, whole, elsewhere
    kept.unlink()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_checkpoint_error(blob):
    with pytest.raises(CheckpointError):
        parse_checkpoint(blob)


def _same(a: Checkpoint, b: Checkpoint) -> bool:
    """Every field equal, the parameters bit for bit (names, dtypes, shapes, bytes)."""
    fields = ("model", "dtype", "epoch", "optimizer", "history", "run", "library_version")
    return (all(getattr(a, f) == getattr(b, f) for f in fields) and a.params.keys() == b.params.keys()
            and all(a.params[k].dtype == b.params[k].dtype and a.params[k].shape == b.params[k].shape
                    and a.params[k].tobytes() == b.params[k].tobytes() for k in a.params))


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "fuzz.ckpt"
    model = simple_net(hidden=2, seed=1)
    return save_checkpoint(path, model, epoch=3, optimizer=SGD(model.params, 0.25),
                           history=[{"epoch": 1, "train_loss": 0.5}], run={"seed": 4, "lr": 0.25}).read_bytes()


@given(data=st.data())
def test_mutated_checkpoints_are_refused_or_load_exactly_the_saved_state(checkpoint_bytes, data):
    saved = parse_checkpoint(checkpoint_bytes)
    blob = bytearray(checkpoint_bytes)
    header_len, header_at = struct.unpack_from("<Q", blob, 20)[0], 60
    where = st.integers(0, len(blob) - 1)
    # a digit of the header changed into another digit keeps it valid JSON: only the checksum can tell
    digits = [header_at + i for i, c in enumerate(blob[header_at:header_at + header_len]) if chr(c).isdigit()]
    for _ in range(data.draw(st.integers(1, 4))):
        if digits and data.draw(st.booleans()):
            blob[data.draw(st.sampled_from(digits))] = data.draw(st.sampled_from(b"0123456789"))
        else:
            blob[data.draw(where)] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.just(len(blob)), st.integers(0, len(blob))))
    try:
        loaded = parse_checkpoint(bytes(blob[:cut]))
    except CheckpointError:
        return
    assert _same(loaded, saved)


def test_a_save_removes_what_killed_saves_left_and_writes_with_the_umasks_mode(saved):
    model, path = saved
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id no running process has
    (path.parent / f".{path.name}.{child.pid}.0123abcd.tmp").write_bytes(b"half a checkpoint")
    old = os.umask(0o022)
    try:
        save_checkpoint(path, model, epoch=4)
    finally:
        os.umask(old)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert path.stat().st_mode & 0o777 == 0o644 and load_checkpoint(path).epoch == 4


def test_a_checkpoint_that_calls_simple_net_mlp_is_refused_in_one_line(saved, capsys):
    """An earlier numpy-mnist called simple_net "mlp" in its checkpoints: such a file is not read."""
    _, path = saved
    header, payload = _split(path.read_bytes())
    assert header["model"]["kind"] == "simple_net"
    path.write_bytes(_seal(json.dumps({**header, "model": {**header["model"], "kind": "mlp"}}).encode(), payload))
    assert _refused_in_one_line(path, capsys) == (
        f"numpy-mnist train: error: {path} is not a valid numpy-mnist checkpoint: it holds a model of kind 'mlp', "
        f"which this numpy-mnist {__version__} does not know: train it again with this version")


class _Moments(SGD):
    """An optimizer with arrays of its own, as Adam keeps its moments."""

    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.moments = {name: np.zeros_like(p) for name, p in params.items()}

    def state(self):
        return {"name": "moments", "lr": self.lr}

    def state_arrays(self):
        return {name: m.copy() for name, m in self.moments.items()}

    def load_state_arrays(self, arrays):
        assert set(arrays) == set(self.moments)
        self.moments = {name: np.array(a) for name, a in arrays.items()}


def test_buffers_and_optimizer_arrays_travel_beside_the_params(tmp_path):
    model = simple_net(hidden=3, seed=1)
    model.buffers["running_mean"] = np.arange(3, dtype=np.float32)
    opt = _Moments(model.params, 0.1)
    opt.moments["w1"] += 2.5
    path = save_checkpoint(tmp_path / "m.ckpt", model, epoch=1, optimizer=opt)
    ckpt = load_checkpoint(path)
    assert set(ckpt.params) == set(model.params) and set(ckpt.optimizer_arrays) == set(model.params)
    np.testing.assert_array_equal(ckpt.buffers["running_mean"], [0, 1, 2])

    again = simple_net(hidden=3, seed=2)
    again.buffers["running_mean"] = np.zeros(3, dtype=np.float32)
    fresh = _Moments(again.params, 0.1)
    ckpt.load_into(again, fresh)
    np.testing.assert_array_equal(again.buffers["running_mean"], [0, 1, 2])
    assert (fresh.moments["w1"] == 2.5).all() and (fresh.moments["b2"] == 0).all()
    with pytest.raises(CheckpointError, match="trained with the optimizer moments, not sgd"):
        ckpt.load_into(again, SGD(again.params, 0.1))
    with pytest.raises(CheckpointError, match=r"buffers \['running_mean'\] but the model has \[\]"):
        ckpt.load_into(simple_net(hidden=3))


def test_sgd_refuses_arrays_it_never_saves(saved):
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer_arrays == {} and ckpt.buffers == {}
    ckpt.load_into(model, SGD(model.params, 0.25))  # SGD's state arrays are {}
    ckpt.optimizer_arrays = {"m": np.zeros(1)}
    with pytest.raises(CheckpointError, match="SGD keeps no state arrays, got m"):
        ckpt.load_into(model, SGD(model.params, 0.25))
