"""One training epoch, timed, for each engine: numpy-mnist on NumPy and on CuPy, PyTorch on CPU and CUDA.

An epoch is the book's ``train_epoch``: for every batch of the training set, in order (no
shuffling), the forward pass, the loss, the backward pass and the SGD step.  Validation is not
part of it.  Every engine trains the same model (``linear1`` or ``simple_net``) on the same rows
with the same batch size and learning rate; the data are put on the device once, before timing.

numpy-mnist runs its own :func:`numpy_mnist.learner.train_epoch`, the loop ``numpy-mnist train``
runs.  PyTorch runs the book's loop: autograd for the gradients, then ``p.data -= p.grad * lr`` and
``p.grad.zero_()`` for every parameter.  Its batches are slices of one tensor, which is how
numpy-mnist's DataLoader batches too (fastai's DataLoader over a list of (image, label) tuples
would be far slower, and would measure collation rather than training).  Both keep each batch's
loss on the device and read them once per epoch.

PyTorch is optional: without it, its engines report "torch not installed".
"""

from __future__ import annotations

from dataclasses import dataclass

from numpy_mnist.bench.machine import torch_or_reason
from numpy_mnist.bench.timing import Trial

__all__ = ["Workload", "Engine", "NumpyMnistEngine", "TorchEngine", "ENGINE_KEYS", "make_engines", "LEARNING_RATES"]

#: The book's learning rates: 1.0 for the linear model, 0.1 for simple_net.
LEARNING_RATES = {"linear1": 1.0, "simple_net": 0.1}
MODELS = ("linear1", "simple_net")


@dataclass(frozen=True)
class Workload:
    """What one epoch trains: a model (``linear1``, or ``simple_net`` with ``hidden`` units), a batch size."""

    model: str = "linear1"
    hidden: int = 30
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")

    @property
    def lr(self) -> float:
        return LEARNING_RATES[self.model]

    @property
    def name(self) -> str:
        return "linear1" if self.model == "linear1" else f"simple_net({self.hidden})"

    def flops(self, rows: int, pixels: int = 784) -> float:
        """Floating-point operations of one epoch's matrix products (2 per multiply-add).

        linear1: ``x @ w`` and ``x.T @ dz``.  simple_net: ``x @ w1``, ``a @ w2``, ``a.T @ dz``,
        ``dz @ w2.T`` and ``x.T @ dh`` (no ``dx`` for the images).  Elementwise work is left out:
        it is a few operations per activation, against ``pixels`` per activation for the products.
        """
        if self.model == "linear1":
            return 4.0 * rows * pixels
        return 4.0 * rows * pixels * self.hidden + 6.0 * rows * self.hidden

    def as_dict(self) -> dict:
        return {"model": self.model, "hidden": self.hidden if self.model == "simple_net" else None,
                "batch_size": self.batch_size, "lr": self.lr, "name": self.name}


class EventTrial(Trial):
    """A GPU trial timed with CUDA events on the stream that runs the work (the device's clock)."""

    def __init__(self, run, synchronize, new_event, elapsed_s) -> None:
        super().__init__(run, synchronize)
        self.new_event, self.elapsed_s = new_event, elapsed_s

    def timed(self) -> float:
        self.synchronize()
        start, end = self.new_event(), self.new_event()
        start.record()
        self.run()
        end.record()
        end.synchronize()
        return self.elapsed_s(start, end)

    @classmethod
    def with_cupy_events(cls, run, synchronize=None) -> "EventTrial":
        """Timed with ``cupy.cuda.Event`` (``synchronize``: the current stream's, by default)."""
        import cupy

        return cls(run, synchronize or cupy.cuda.get_current_stream().synchronize, cupy.cuda.Event,
                   lambda start, end: cupy.cuda.get_elapsed_time(start, end) / 1e3)

    @classmethod
    def with_torch_events(cls, run) -> "EventTrial":
        """Timed with ``torch.cuda.Event`` on PyTorch's current stream."""
        import torch

        return cls(run, torch.cuda.synchronize, lambda: torch.cuda.Event(enable_timing=True),
                   lambda start, end: start.elapsed_time(end) / 1e3)


class Engine:
    """A way of training: ``prepare(workload, data)`` returns the :class:`Trial` of one epoch."""

    key = "abstract"
    label = "abstract"
    framework = "numpy-mnist"
    is_gpu = False

    def unavailable(self) -> str | None:
        """Why this engine cannot run here (``None`` when it can)."""
        raise NotImplementedError

    def prepare(self, workload: Workload, x, y) -> Trial:
        raise NotImplementedError

    def release(self) -> None:
        """Give back device memory held between workloads (a no-op on the CPU)."""

    def describe(self) -> dict:
        return {"key": self.key, "label": self.label, "framework": self.framework,
                "device": "gpu" if self.is_gpu else "cpu"}


class NumpyMnistEngine(Engine):
    """numpy-mnist's own training loop on the ``numpy`` or ``cupy`` backend (float32)."""

    def __init__(self, backend: str) -> None:
        self.backend_name = backend
        self.is_gpu = backend == "cupy"
        self.key = backend
        self.label = f"numpy-mnist {'CuPy' if self.is_gpu else 'NumPy'}"
        self._backend = None
        self._why = None

    def unavailable(self) -> str | None:
        if self._backend is None and self._why is None:
            from backends import BackendUnavailableError, get_backend

            try:
                self._backend = get_backend(self.backend_name, "float32")
            except BackendUnavailableError as exc:
                self._why = str(exc)
        return self._why

    @property
    def backend(self):
        if self.unavailable() is not None:
            raise RuntimeError(self._why)
        return self._backend

    def prepare(self, workload: Workload, x, y) -> Trial:
        from numpy_mnist.learner import train_epoch

        model, loader, opt = self.setup(workload, x, y)
        quiet = self.backend.quiet_float_errors

        def run():
            with quiet():
                return train_epoch(model, loader, opt)

        return self.trial(run)

    def setup(self, workload: Workload, x, y):
        """The workload's ``(model, loader, opt)`` on this engine's backend, the same for every engine."""
        from numpy_mnist.data.loader import DataLoader
        from numpy_mnist.models import linear1, simple_net
        from numpy_mnist.optim import SGD

        backend = self.backend
        loader = DataLoader(x, y, workload.batch_size, shuffle=False, backend=backend)
        if workload.model == "linear1":
            model = linear1(seed=0, backend=backend)
        else:
            model = simple_net(hidden=workload.hidden, seed=0, backend=backend)
        return model, loader, SGD(model.params, workload.lr)

    def trial(self, run) -> Trial:
        """``run`` timed on this backend's clock: CUDA events on CuPy, the host's clock otherwise."""
        if self.is_gpu:
            return EventTrial.with_cupy_events(run, self.backend.synchronize)
        return Trial(run, self.backend.synchronize)

    def release(self) -> None:
        if self.is_gpu and self._backend is not None:
            self._backend.synchronize()
            self._backend.cupy.get_default_memory_pool().free_all_blocks()


def torch_book_loop(workload: Workload, x, y, device):
    """The book's training loop in PyTorch, on ``device``: ``(params, step, batches)``.

    ``step(xb, yb)`` is one SGD step of the book's model with its ``mnist_loss`` (forward, autograd,
    ``p -= grad * lr``, zeroed gradients) and returns the batch loss, detached; ``batches`` are the
    ``(xb, yb)`` views of ``x`` and ``y`` on the device, in order.  The initial parameters are drawn
    from ``torch.manual_seed(0)`` on the CPU (without touching the caller's random state), so every
    PyTorch engine starts from the same model on every device.
    """
    import torch

    n_features = x.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if workload.model == "linear1":
            weights = torch.randn((n_features, 1)).to(device).requires_grad_()
            bias = torch.randn(1).to(device).requires_grad_()
            params = [weights, bias]

            def model(xb):
                return xb @ weights + bias
        else:
            model = torch.nn.Sequential(torch.nn.Linear(n_features, workload.hidden), torch.nn.ReLU(),
                                        torch.nn.Linear(workload.hidden, 1)).to(device)
            params = list(model.parameters())

    def mnist_loss(predictions, targets):  # the book's, verbatim
        predictions = predictions.sigmoid()
        return torch.where(targets == 1, 1 - predictions, predictions).mean()

    def step(xb, yb):
        loss = mnist_loss(model(xb), yb)
        loss.backward()
        for p in params:
            p.data -= p.grad * workload.lr
            p.grad.zero_()
        return loss.detach()

    xs, ys, bs = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), workload.batch_size
    batches = [(xs[start:start + bs], ys[start:start + bs]) for start in range(0, xs.shape[0], bs)]
    return params, step, batches


class TorchEngine(Engine):
    """PyTorch eager, the book's loop, on ``"cpu"`` (with ``threads`` threads) or ``"cuda"``."""

    framework = "torch"

    def __init__(self, device: str, threads: int | None = None) -> None:
        self.device, self.threads = device, threads
        self.is_gpu = device == "cuda"
        self.key = f"torch-{device}"
        self.label = f"PyTorch eager {'CUDA' if self.is_gpu else 'CPU'}"

    def unavailable(self) -> str | None:
        torch, why = torch_or_reason()
        if torch is None:
            return why
        if self.is_gpu and not torch.cuda.is_available():
            return "torch sees no CUDA device" if torch.version.cuda else "torch was built without CUDA"
        return None

    def prepare(self, workload: Workload, x, y) -> Trial:
        import torch

        if self.threads is not None and not self.is_gpu:
            torch.set_num_threads(self.threads)
        _, step, batches = torch_book_loop(workload, x, y, torch.device(self.device))

        def run():
            return torch.stack([step(xb, yb) for xb, yb in batches]).tolist()

        return EventTrial.with_torch_events(run) if self.is_gpu else Trial(run)

    def release(self) -> None:
        if self.is_gpu:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()


#: Every engine, by key, in the order the tables list them.
ENGINE_KEYS = ("numpy", "torch-cpu", "cupy", "torch-cuda", "fused-graph", "torch-cuda-graph")
#: Engines run when none are named.
DEFAULT_ENGINES = ENGINE_KEYS


def make_engines(keys=DEFAULT_ENGINES, *, torch_threads: int | None = None) -> list[Engine]:
    """The engines named by ``keys`` (see :data:`ENGINE_KEYS`), available or not."""
    makers = {
        "numpy": lambda: NumpyMnistEngine("numpy"),
        "cupy": lambda: NumpyMnistEngine("cupy"),
        "torch-cpu": lambda: TorchEngine("cpu", threads=torch_threads),
        "torch-cuda": lambda: TorchEngine("cuda"),
        "fused-graph": _fused_graph_engine,
        "torch-cuda-graph": _torch_cuda_graph_engine,
    }
    unknown = [k for k in keys if k not in makers]
    if unknown:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}: choose from {', '.join(ENGINE_KEYS)}")
    return [makers[k]() for k in ENGINE_KEYS if k in keys]


def _fused_graph_engine() -> Engine:
    from numpy_mnist.bench.graph_engines import FusedGraphEngine

    return FusedGraphEngine()


def _torch_cuda_graph_engine() -> Engine:
    from numpy_mnist.bench.graph_engines import TorchCudaGraphEngine

    return TorchCudaGraphEngine()
