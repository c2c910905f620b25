"""Checkpoints: a model's parameters plus what it takes to resume and to refuse a wrong load.

File format (little-endian), designed so that a reader never trusts a byte it has not checked::

    magic      16 bytes   b"NUMPY-MNIST-CKPT"
    version     4 bytes   uint32, FORMAT_VERSION (2)
    header_len  8 bytes   uint64, length of the JSON header
    sha256     32 bytes   SHA-256 of everything else: the 28 bytes above, the header and the payload
    header      JSON      metadata, and for every array: name, dtype, shape, offset, nbytes
    payload     bytes     the arrays' raw bytes, back to back

The checksum is checked before the header is even parsed, so a flipped byte anywhere -- an epoch
count, a learning rate, a parameter -- is refused, never loaded.  Every declared size is also
checked against the real file length before any array is built (so a forged header cannot make the
reader allocate).  Version 1 files (no whole-file checksum; the header held only the payload's
SHA-256) are still read.  Files are written atomically (temporary file, fsync, rename): an
interrupted save leaves the previous checkpoint intact.
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
from numpy_mnist.errors import CheckpointError
from numpy_mnist.files import atomic_write

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "FORMAT_VERSION"]

MAGIC = b"NUMPY-MNIST-CKPT"
FORMAT_VERSION = 2
#: Format versions this numpy-mnist reads.
READABLE_VERSIONS = (1, 2)
_PREAMBLE = struct.Struct("<16sIQ")
_DIGEST = 32  # bytes of the SHA-256 after the preamble (version 2)
_DTYPES = ("float32", "float64")
_MAX_HEADER = 1 << 24  # 16 MiB of JSON is far beyond any real history


@dataclass
class Checkpoint:
    """What a checkpoint holds.  ``params`` are host arrays; ``epoch`` counts finished epochs."""

    model: dict
    dtype: str
    params: dict
    epoch: int = 0
    optimizer: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    run: dict = field(default_factory=dict)
    library_version: str = __version__

    def build_model(self, backend="numpy"):
        """A new model of the saved kind and shapes, holding the saved parameters, on ``backend``."""
        from backends import get_backend
        from numpy_mnist.models import MODEL_KINDS

        backend = get_backend(backend, self.dtype)
        kind = self.model.get("kind")
        if kind not in MODEL_KINDS:
            raise CheckpointError(f"the checkpoint holds an unknown model kind {kind!r}")
        return MODEL_KINDS[kind](dict(self.params), backend, self.model.get("loss", "mnist_loss"))

    def load_into(self, model) -> None:
        """Copy the saved parameters into ``model``, refusing any mismatch of kind, shape or dtype."""
        mine = model.config()
        if mine != self.model:
            differ = model_differences(self.model, mine)
            raise CheckpointError(f"the checkpoint holds {describe_model(self.model)}, not {describe_model(mine)}"
                                  + (f" ({differ})" if differ else ""))
        if model.backend.dtype_name != self.dtype:
            raise CheckpointError(f"the checkpoint holds {self.dtype} parameters but the model is "
                                  f"{model.backend.dtype_name}: use --dtype {self.dtype}")
        for name, value in self.params.items():
            model.params[name][...] = model.backend.asarray(value)


#: How a model's config field is said in words, and which flag of ``numpy-mnist train`` sets it.
_CONFIG_WORDS = {"kind": "model", "inputs": "inputs", "outputs": "outputs", "loss": "loss",
                 "hidden": "hidden width"}
_KIND_FLAGS = {"linear": "linear", "mlp": "simple_net"}  # the --model that builds each kind
_KIND_WORDS = {"linear": "a linear model", "mlp": "a two-layer net (simple_net)"}


def describe_model(config: dict) -> str:
    """A model's config in words: ``a two-layer net (simple_net) 784 -> 5 -> ReLU -> 1, mnist_loss``."""
    kind = config.get("kind")
    sizes = [config.get("inputs"), *([config["hidden"], "ReLU"] if "hidden" in config else []), config.get("outputs")]
    return (f"{_KIND_WORDS.get(kind, f'a model of kind {kind!r}')} {' -> '.join(map(str, sizes))}, "
            f"loss {config.get('loss')}")


def model_differences(saved: dict, mine: dict) -> str:
    """The fields in which two model configs differ, in words: ``hidden width 5 saved, 30 asked for``."""
    both = set(saved) & set(mine)
    keys = [k for k in _CONFIG_WORDS if k in both] + sorted(both - set(_CONFIG_WORDS))

    def said(key, value):
        return _KIND_FLAGS.get(value, value) if key == "kind" else value

    return "; ".join(f"{_CONFIG_WORDS.get(k, k)} {said(k, saved[k])} saved, {said(k, mine[k])} asked for"
                     for k in keys if saved[k] != mine[k])


def save_checkpoint(path, model, *, epoch: int, optimizer=None, history=(), run=None) -> Path:
    """Write ``model``'s parameters and the run's state to ``path`` atomically."""
    arrays, offset = [], 0
    params = {name: model.backend.to_host(p) for name, p in model.params.items()}
    for name, value in params.items():
        value = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        params[name] = value
        arrays.append({"name": name, "dtype": value.dtype.name, "shape": list(value.shape),
                       "offset": offset, "nbytes": value.nbytes})
        offset += value.nbytes
    payload = b"".join(v.tobytes() for v in params.values())
    header = {
        "library_version": __version__,
        "model": model.config(),
        "dtype": model.backend.dtype_name,
        "epoch": int(epoch),
        "optimizer": optimizer.state() if optimizer is not None else {},
        "history": [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in history],
        "run": dict(run or {}),
        "arrays": arrays,
    }
    header_bytes = json.dumps(header).encode()
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header_bytes))
    digest = hashlib.sha256(preamble + header_bytes + payload).digest()
    try:
        with atomic_write(path) as f:
            f.write(preamble)
            f.write(digest)
            f.write(header_bytes)
            f.write(payload)
    except OSError as exc:
        raise CheckpointError(f"cannot write the checkpoint {path}: {exc.strerror or exc}") from exc
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
    if version not in READABLE_VERSIONS:
        raise bad(f"format version {version}, this numpy-mnist {__version__} reads versions "
                  f"{', '.join(map(str, READABLE_VERSIONS))}")
    start = _PREAMBLE.size + (_DIGEST if version >= 2 else 0)
    if header_len > min(_MAX_HEADER, len(blob) - start):
        raise bad(f"its header claims {header_len} bytes but the file is truncated or forged")
    if version >= 2 and blob[_PREAMBLE.size:start] != hashlib.sha256(blob[:_PREAMBLE.size] + blob[start:]).digest():
        raise bad("its SHA-256 does not match (the file is truncated or corrupt)")
    payload = blob[start + header_len:]
    try:
        header = json.loads(blob[start:start + header_len].decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad(f"its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    if version == 1 and header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise bad("the parameters' SHA-256 does not match (the file is truncated or corrupt)")
    try:
        params = _arrays(header["arrays"], payload, bad)
        checkpoint = Checkpoint(model=dict(header["model"]), dtype=str(header["dtype"]), params=params,
                                epoch=int(header["epoch"]), optimizer=dict(header["optimizer"]),
                                history=list(header["history"]), run=dict(header["run"]),
                                library_version=str(header["library_version"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"its header lacks or garbles a field ({type(exc).__name__}: {exc})") from None
    if checkpoint.dtype not in _DTYPES or checkpoint.epoch < 0:
        raise bad(f"dtype {checkpoint.dtype!r} / epoch {checkpoint.epoch} make no sense")
    return checkpoint


def _arrays(entries, payload: bytes, bad) -> dict:
    if not isinstance(entries, list):
        raise bad("its array table is not a list")
    params = {}
    for entry in entries:
        dtype, shape = entry["dtype"], entry["shape"]
        offset, nbytes = entry["offset"], entry["nbytes"]
        if dtype not in _DTYPES:
            raise bad(f"array {entry['name']!r} has dtype {dtype!r}; only {', '.join(_DTYPES)} are allowed")
        if not (isinstance(shape, list) and len(shape) <= 2 and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise bad(f"array {entry['name']!r} has an impossible shape {shape!r}")
        if not (isinstance(offset, int) and isinstance(nbytes, int) and 0 <= offset and offset + nbytes <= len(payload)
                and nbytes == math.prod(shape) * np.dtype(dtype).itemsize):
            raise bad(f"array {entry['name']!r} claims bytes the file does not hold")
        data = np.frombuffer(payload, dtype=np.dtype(dtype).newbyteorder("<"), count=math.prod(shape), offset=offset)
        params[str(entry["name"])] = data.reshape(shape).astype(dtype)
    return params


def load_model(path, backend="numpy"):
    """The model saved at ``path``, on ``backend`` (the Python API counterpart of ``--resume``)."""
    return load_checkpoint(path).build_model(backend)
