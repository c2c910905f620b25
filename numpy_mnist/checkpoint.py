"""Checkpoints: a model's parameters and buffers, its optimizer's state, and what it takes to resume
and to refuse a wrong load.

File format (little-endian), designed so that a reader never trusts a byte it has not checked::

    magic      16 bytes   b"NUMPY-MNIST-CKPT"
    version     4 bytes   uint32, FORMAT_VERSION (2)
    header_len  8 bytes   uint64, length of the JSON header
    sha256     32 bytes   SHA-256 of everything else: the 28 bytes above, the header and the payload
    header      JSON      metadata, and for every array: name, group, dtype, shape, offset, nbytes
    payload     bytes     the arrays' raw bytes, back to back

An array's group says whose it is: ``params`` (the model's parameters), ``buffers`` (the model's
other state, e.g. running statistics of a batch norm) or ``optimizer`` (the optimizer's
``state_arrays()``, e.g. Adam's moments).

The checksum is checked before the header is even parsed, so a flipped byte anywhere -- an epoch
count, a learning rate, a parameter -- is refused, never loaded.  Every declared size is also
checked against the real file length before any array is built (so a forged header cannot make the
reader allocate).  A file of another format version, or of a model kind this version does not
know (an earlier numpy-mnist wrote version 1 and called ``simple_net`` ``"mlp"``), is refused in
one line that names the file and says to train it again with this version.  Files are written
atomically (temporary file, fsync, rename): an interrupted save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numpy_mnist import __version__
from numpy_mnist.backends import get_backend
from numpy_mnist.errors import CheckpointError, InputError
from numpy_mnist.files import atomic_write
from numpy_mnist.models import MODEL_KINDS

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "FORMAT_VERSION"]

MAGIC = b"NUMPY-MNIST-CKPT"
FORMAT_VERSION = 2
_PREAMBLE = struct.Struct("<16sIQ")
_DIGEST = 32  # bytes of the SHA-256 after the preamble
_DTYPES = ("float32", "float64")
#: The dtypes an array may have: the model's floats, and int64 for counters (Adam's step).
_ARRAY_DTYPES = (*_DTYPES, "int64")
_MAX_HEADER = 1 << 24  # 16 MiB of JSON is far beyond any real history
_MAX_DIMS = 4  # a convolution's kernel (out, in, height, width)
#: A model's config fields in words where their keys do not say them (``--width`` is the flag that sets it).
_CONFIG_WORDS = {"kind": "model", "hidden": "hidden width", "width": "--width"}


@dataclass
class Checkpoint:
    """What a checkpoint holds.  ``params``, ``buffers`` and ``optimizer_arrays`` are host arrays by
    name; ``optimizer`` is the optimizer's ``state()``; ``epoch`` counts finished epochs."""

    model: dict
    dtype: str
    params: dict
    epoch: int = 0
    optimizer: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    run: dict = field(default_factory=dict)
    library_version: str = __version__
    buffers: dict = field(default_factory=dict)
    optimizer_arrays: dict = field(default_factory=dict)

    def build_model(self, backend="numpy"):
        """A new model of the saved kind and shapes, holding the saved parameters, on ``backend``."""

        backend = get_backend(backend, self.dtype)
        model = MODEL_KINDS[self.model["kind"]](dict(self.params), backend, self.model.get("loss", "mnist_loss"))
        self._load_buffers(model)
        return model

    def load_into(self, model, optimizer=None) -> None:
        """Copy the saved parameters and buffers into ``model`` (and the saved optimizer arrays into
        ``optimizer``, when given), refusing any mismatch of kind, shape, dtype or optimizer."""
        if (mine := model.config()) != self.model:  # the fields both have and differ in, in words
            differ = "; ".join(f"{_CONFIG_WORDS.get(k, k)} {self.model[k]} saved, {mine[k]} asked for"
                               for k in mine if k in self.model and self.model[k] != mine[k])
            raise CheckpointError(f"the checkpoint holds another model than the one asked for ({differ or self.model})")
        if model.backend.dtype_name != self.dtype:
            raise CheckpointError(f"the checkpoint holds {self.dtype} parameters but the model is "
                                  f"{model.backend.dtype_name}: use --dtype {self.dtype}")
        if optimizer is not None:
            saved, asked = self.optimizer.get("name"), optimizer.state().get("name")
            if saved is not None and saved != asked:
                raise CheckpointError(f"the checkpoint was trained with the optimizer {saved}, not {asked}")
            try:
                optimizer.load_state_arrays(dict(self.optimizer_arrays))
            except InputError as exc:
                raise CheckpointError(f"the checkpoint's optimizer state does not fit: {exc}") from None
        self._load_buffers(model)
        for name, value in self.params.items():
            model.params[name][...] = model.backend.asarray(value)

    def _load_buffers(self, model) -> None:
        if set(self.buffers) != set(model.buffers):
            raise CheckpointError(f"the checkpoint holds the buffers {sorted(self.buffers)} but the model has "
                                  f"{sorted(model.buffers)}")
        for name, value in self.buffers.items():
            model.buffers[name][...] = model.backend.asarray(value)


def save_checkpoint(path, model, *, epoch: int, optimizer=None, history=(), run=None) -> Path:
    """Write ``model``'s parameters and buffers, ``optimizer``'s state and the run's to ``path`` atomically."""
    groups = {"params": {name: model.backend.to_host(p) for name, p in model.params.items()},
              "buffers": {name: model.backend.to_host(b) for name, b in model.buffers.items()},
              "optimizer": optimizer.state_arrays() if optimizer is not None else {}}
    arrays, chunks, offset = [], [], 0
    for group, named in groups.items():
        for name, value in named.items():
            value = np.asarray(value)
            chunks.append(value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes())  # C order
            arrays.append({"name": name, "group": group, "dtype": value.dtype.name, "shape": list(value.shape),
                           "offset": offset, "nbytes": len(chunks[-1])})
            offset += len(chunks[-1])
    payload = b"".join(chunks)
    header = {"library_version": __version__, "model": model.config(), "dtype": model.backend.dtype_name,
              "epoch": int(epoch), "optimizer": optimizer.state() if optimizer is not None else {},
              "history": [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in history],
              "run": dict(run or {}), "arrays": arrays}
    header_bytes = json.dumps(header).encode()
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes))
    digest = hashlib.sha256(preamble + header_bytes + payload).digest()
    with atomic_write(path) as f:  # an OutputError naming the path when it cannot be written
        f.writelines((preamble, digest, header_bytes, payload))
    return Path(path)


def load_checkpoint(path) -> Checkpoint:
    """Read and fully validate the checkpoint at ``path``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from exc
    return parse_checkpoint(blob, name=str(path))


def parse_checkpoint(blob: bytes, name: str = "<bytes>") -> Checkpoint:
    """Parse checkpoint bytes; any defect is a :class:`CheckpointError` naming ``name``."""

    def bad(problem: str) -> CheckpointError:
        return CheckpointError(f"{name} is not a valid numpy-mnist checkpoint: {problem}")

    if len(blob) < _PREAMBLE.size:
        raise bad(f"it is {len(blob)} bytes long, shorter than the {_PREAMBLE.size}-byte preamble")
    magic, version, header_len = _PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise bad("it does not start with the checkpoint magic bytes")
    if version != FORMAT_VERSION:
        raise bad(f"it is of format version {version}, and this numpy-mnist {__version__} reads version "
                  f"{FORMAT_VERSION} only: train it again with this version")
    start = _PREAMBLE.size + _DIGEST
    if header_len > min(_MAX_HEADER, len(blob) - start):
        raise bad(f"its header claims {header_len} bytes but the file is truncated or forged")
    if blob[_PREAMBLE.size:start] != hashlib.sha256(blob[:_PREAMBLE.size] + blob[start:]).digest():
        raise bad("its SHA-256 does not match (the file is truncated or corrupt)")
    payload = blob[start + header_len:]
    try:
        header = json.loads(blob[start:start + header_len].decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad(f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    try:
        groups = _arrays(header["arrays"], payload, bad)
        checkpoint = Checkpoint(model=dict(header["model"]), dtype=str(header["dtype"]), params=groups["params"],
                                epoch=int(header["epoch"]), optimizer=dict(header["optimizer"]),
                                history=list(header["history"]), run=dict(header["run"]),
                                library_version=str(header["library_version"]), buffers=groups["buffers"],
                                optimizer_arrays=groups["optimizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"its header lacks or garbles a field ({type(exc).__name__}: {exc})") from None
    if checkpoint.dtype not in _DTYPES or checkpoint.epoch < 0:
        raise bad(f"dtype {checkpoint.dtype!r} / epoch {checkpoint.epoch} make no sense")
    if checkpoint.model.get("kind") not in MODEL_KINDS:
        raise bad(f"it holds a model of kind {checkpoint.model.get('kind')!r}, which this numpy-mnist {__version__} "
                  "does not know: train it again with this version")
    return checkpoint


def _arrays(entries, payload: bytes, bad) -> dict[str, dict]:
    """The arrays of the table ``entries``, by group and name: ``{"params": {...}, "buffers": ..., ...}``."""
    if not isinstance(entries, list):
        raise bad("its array table is not a list")
    groups: dict[str, dict] = {"params": {}, "buffers": {}, "optimizer": {}}  # whose each array is (see above)
    for entry in entries:
        dtype, shape, offset, nbytes, group = (entry[k] for k in ("dtype", "shape", "offset", "nbytes", "group"))
        if group not in groups:
            raise bad(f"array {entry['name']!r} belongs to an unknown group {group!r}")
        if dtype not in _ARRAY_DTYPES:
            raise bad(f"array {entry['name']!r} has dtype {dtype!r}; only {', '.join(_ARRAY_DTYPES)} are allowed")
        if not _sane_shape(shape):
            raise bad(f"array {entry['name']!r} has an impossible shape {shape!r}")
        if not (isinstance(offset, int) and isinstance(nbytes, int) and 0 <= offset and offset + nbytes <= len(payload)
                and nbytes == math.prod(shape) * np.dtype(dtype).itemsize):
            raise bad(f"array {entry['name']!r} claims bytes the file does not hold")
        data = np.frombuffer(payload, dtype=np.dtype(dtype).newbyteorder("<"), count=math.prod(shape), offset=offset)
        groups[group][str(entry["name"])] = data.reshape(shape).astype(dtype)
    return groups


def _sane_shape(shape) -> bool:
    """A list of at most :data:`_MAX_DIMS` non-negative integers."""
    return isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(isinstance(n, int) and n >= 0 for n in shape)


def load_model(path, backend="numpy"):
    """The model saved at ``path``, on ``backend`` (the Python API counterpart of ``--resume``)."""
    return load_checkpoint(path).build_model(backend)
