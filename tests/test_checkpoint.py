"""Checkpoints: round trip, clear refusals, atomic writes, and fuzzed bytes that only ever raise ours."""

import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends import get_backend
from numpy_mnist.checkpoint import MAGIC, load_checkpoint, load_model, parse_checkpoint, save_checkpoint
from numpy_mnist.errors import CheckpointError
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
    with pytest.raises(CheckpointError, match="is for the model .*'mlp'.* not .*'linear'"):
        ckpt.load_into(linear1())
    with pytest.raises(CheckpointError, match="'hidden': 5.* not .*'hidden': 30"):
        ckpt.load_into(simple_net(hidden=30))
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


def test_a_forged_header_size_does_not_allocate():
    blob = struct.pack("<16sIQ", MAGIC, 1, 2**62) + b"{}"
    with pytest.raises(CheckpointError, match="truncated or forged"):
        parse_checkpoint(blob)


def test_a_forged_array_shape_does_not_allocate(saved):
    _, path = saved
    blob = path.read_bytes()
    header_len = struct.unpack_from("<Q", blob, 20)[0]
    header = blob[28:28 + header_len].replace(b'"shape": [784, 5]', b'"shape": [4000000000, 5]')
    forged = blob[:20] + struct.pack("<Q", len(header)) + header + blob[28 + header_len:]
    with pytest.raises(CheckpointError, match="claims bytes the file does not hold"):
        parse_checkpoint(forged)


def test_an_interrupted_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(CheckpointError, match="cannot write the checkpoint .*No space left"):
        save_checkpoint(path, model, epoch=9)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_checkpoint_error(blob):
    with pytest.raises(CheckpointError):
        parse_checkpoint(blob)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "fuzz.ckpt"
    return save_checkpoint(path, linear1(seed=1), epoch=1, history=[{"epoch": 1}]).read_bytes()


@given(data=st.data())
def test_mutated_checkpoints_raise_only_checkpoint_error_or_load(checkpoint_bytes, data):
    blob = bytearray(checkpoint_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(blob)))
    try:
        parse_checkpoint(bytes(blob[:cut]))
    except CheckpointError:
        pass
