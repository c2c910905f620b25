"""One training epoch, ready to time, for each engine: numpy-mnist and PyTorch, on the CPU and the GPU.

An epoch is the book's ``train_epoch``: for every batch of the training set, in order (no
shuffling), the forward pass, the loss, the backward pass and the SGD step.  Validation is not
part of it.  Every engine trains the same model (``linear1`` or ``simple_net``) on the same rows
with the same batch size and learning rate, in float32; the data are put on the device once,
before timing, and the batch losses are read back once per epoch.  The ResNet-18 (a
:class:`Workload` of model ``resnet18``) is trained with Adam and the one-cycle schedule instead,
on ``numpy``, ``cupy``, ``torch-cpu`` and ``torch-cuda`` only (:mod:`~numpy_mnist.bench.resnet`).

Every engine has one shape (:class:`Engine`): a ``key``, a ``label``, the ``framework`` whose
threads it uses, ``is_gpu``; ``unavailable()`` says why it cannot run here; ``runs(workload)``
whether it trains that model; ``prepare(workload, x, y)`` returns the
:class:`~numpy_mnist.bench.timing.Trial` of one epoch.

``numpy`` / ``cupy``
    numpy-mnist's reference :func:`numpy_mnist.learner.train_epoch`: what ``numpy-mnist train``
    runs on NumPy (and on CuPy with ``--reference``).
``fused-graph``
    numpy-mnist's :class:`~numpy_mnist.fused.trainer.FusedTrainer`: the epoch as one CUDA graph of
    hand-written kernels, replayed once per epoch; what ``numpy-mnist train --backend cupy`` runs.
``torch-cpu`` / ``torch-cuda``
    PyTorch eager, the book's loop: autograd, then ``p.data -= p.grad * lr`` and ``p.grad.zero_()``,
    through numpy-mnist's one PyTorch twin (:mod:`numpy_mnist.torch_twin`) of the model and the loss,
    from the same initial parameters as numpy-mnist's engines.  The twin's sigmoid is
    ``exp(logsigmoid(z))`` (exact gradients in both tails), two small kernels where the book's
    ``torch.sigmoid`` is one (measured on a 2-core CPU: PyTorch's epoch within 0.5 % of the book's
    loss either way).
    Its batches are slices of one tensor, as numpy-mnist's DataLoader batches (fastai's DataLoader
    over (image, label) tuples would measure collation rather than training).
``torch-cuda-graph``
    The same loop for a whole epoch captured with ``torch.cuda.graph`` after one eager warm-up epoch
    on a side stream (PyTorch's recipe for whole-network capture), then replayed: the strongest
    thing a PyTorch user gets without writing kernels (``torch.compile`` was slower than eager).

PyTorch is optional: without it, its engines report "torch not installed".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property, partial

from numpy_mnist import torch_twin
from numpy_mnist.backends import BackendUnavailableError, get_backend
from numpy_mnist.bench import resnet
from numpy_mnist.bench.machine import torch_or_reason
from numpy_mnist.bench.timing import Trial, cupy_trial, torch_cuda_trial
from numpy_mnist.data.loader import DataLoader
from numpy_mnist.models import MLP, LinearModel, ResNet18, linear1, resnet18, simple_net
from numpy_mnist.optim import SGD

__all__ = ["Workload", "Engine", "ENGINE_KEYS", "make_engines"]

#: The models' learning rates (1.0 for linear1, 0.1 for simple_net; resnet18's one-cycle peak 0.1).
LEARNING_RATES = {"linear1": LinearModel.book_lr, "simple_net": MLP.book_lr, "resnet18": ResNet18.book_lr}
#: The batches a ResNet-18 trial trains when it warms up (not a whole epoch).
WARM_BATCHES = 2


@dataclass(frozen=True)
class Workload:
    """What one epoch trains: ``linear1``, ``simple_net`` with ``hidden`` units or ``resnet18`` of ``width``.

    ``batches`` (resnet18 only): train the first ``batches`` batches of the epoch and scale the time
    to the whole epoch (``None``: every batch).
    """

    model: str = "linear1"
    hidden: int = 30
    batch_size: int = 256
    width: int = 64
    batches: int | None = None

    def __post_init__(self) -> None:
        if self.model not in LEARNING_RATES:
            raise ValueError(f"model must be one of {tuple(LEARNING_RATES)}, got {self.model!r}")

    @property
    def lr(self) -> float:
        return LEARNING_RATES[self.model]

    @property
    def name(self) -> str:
        return f"simple_net({self.hidden})" if self.model == "simple_net" else self.model

    def build(self, backend="numpy"):
        """numpy-mnist's model (seed 0) on ``backend`` (NumPy by default): every engine starts from it."""
        build = {"linear1": linear1, "simple_net": partial(simple_net, self.hidden),
                 "resnet18": partial(resnet18, self.width)}
        return build[self.model](seed=0, backend=backend)

    def timed_batches(self, rows: int) -> int:
        """The batches a ResNet-18 trial times: ``batches``, at most the epoch's ``rows // batch_size``."""
        return min(self.batches or rows, rows // self.batch_size)

    def flops(self, rows: int, pixels: int = 784) -> float:
        """Floating-point operations of one epoch's matrix products (2 per multiply-add).

        linear1: ``x @ w`` and ``x.T @ dz``.  simple_net: ``x @ w1``, ``a @ w2``, ``a.T @ dz``,
        ``dz @ w2.T`` and ``x.T @ dh`` (no ``dx`` for the images).  resnet18: the convolutions'
        three products each (:func:`~numpy_mnist.bench.resnet.conv_products`), every full batch.
        Elementwise work is left out: a few operations per activation, against hundreds per
        activation for the products.
        """
        if self.model == "resnet18":
            per_batch = sum(6.0 * m * k * f for m, k, f in resnet.conv_products(self.width, self.batch_size))
            return rows // self.batch_size * per_batch
        if self.model == "linear1":
            return 4.0 * rows * pixels
        return 4.0 * rows * pixels * self.hidden + 6.0 * rows * self.hidden

    def as_dict(self) -> dict:
        return {**asdict(self), "lr": self.lr, "name": self.name}


class Engine:
    """A way of training one epoch (see the module's docstring for the shape every engine has)."""

    key = label = framework = ""
    is_gpu = graph = False

    def runs(self, workload: Workload) -> bool:
        """Whether this engine trains ``workload``'s model (the CUDA graphs: the book's two only)."""
        return not (self.graph and workload.model == "resnet18")

    def describe(self) -> dict:
        return {"key": self.key, "label": self.label, "framework": self.framework,
                "device": "gpu" if self.is_gpu else "cpu"}


def _resnet_runs(trainer, workload: Workload, rows: int):
    """``(run, warm)`` of a ResNet-18 trial: the timed batches, and the warm-up's few."""
    batches = workload.timed_batches(rows)
    return trainer(batches), trainer(min(WARM_BATCHES, batches))


class NumpyMnistEngine(Engine):
    """numpy-mnist on ``numpy`` or ``cupy``: its reference ``train_epoch``, or (``graph``) its fused CUDA graph."""

    framework = "numpy-mnist"

    def __init__(self, backend: str, graph: bool = False) -> None:
        self.is_gpu, self.graph, self.key = backend == "cupy", graph, "fused-graph" if graph else backend
        self.label = "numpy-mnist fused CUDA graph" if graph else f"numpy-mnist {'CuPy' if self.is_gpu else 'NumPy'}"

    @cached_property
    def backend_or_why(self):
        """``(backend, None)``, or ``(None, why this engine cannot run here)``."""
        try:
            return get_backend("cupy" if self.is_gpu else "numpy"), None
        except BackendUnavailableError as exc:
            return None, str(exc)

    def unavailable(self) -> str | None:
        """Why this engine cannot run here (``None`` when it can)."""
        return self.backend_or_why[1]

    def prepare(self, workload: Workload, x, y) -> Trial:
        bk, warm = self.backend_or_why[0], None
        if workload.model == "resnet18":
            run, warm = _resnet_runs(resnet.numpy_mnist_trainer(workload, x, y, bk), workload, x.shape[0])
        else:
            model = workload.build(bk)
            loader, opt = DataLoader(x, y, workload.batch_size, backend=bk), SGD(model.params, workload.lr)
            if self.graph:
                from numpy_mnist.fused.trainer import FusedTrainer

                run = FusedTrainer(model, loader, opt).train_epoch  # compiles and records here
            else:
                run = partial(resnet.quiet_epoch, model, loader, opt)
        # CUDA events on the GPU, the host's clock otherwise
        return cupy_trial(run, bk.synchronize, warm) if self.is_gpu else Trial(run, bk.synchronize, warm=warm)

    def release(self) -> None:
        """Give back the device memory held between workloads."""
        if self.is_gpu and self.backend_or_why[0] is not None:
            self.backend_or_why[0].synchronize()
            self.backend_or_why[0].cupy.get_default_memory_pool().free_all_blocks()


def torch_book_loop(workload: Workload, x, y, device: str):
    """The book's training loop in PyTorch: ``(params, step, batches)``.

    ``step(xb, yb)`` is one SGD step (forward, autograd, ``p -= grad * lr``, zeroed gradients) and
    returns the batch loss, detached; ``batches`` are the ``(xb, yb)`` views of ``x`` and ``y`` on
    ``device``, in order.
    """
    import torch

    model = workload.build()
    params, loss_fn = torch_twin.parameters(model, dtype=torch.float32, device=device), torch_twin.loss_twin(model.loss)

    def step(xb, yb):
        loss = loss_fn(torch_twin.forward(model, xb, params), yb)
        loss.backward()
        for p in params.values():
            p.data -= p.grad * workload.lr
            p.grad.zero_()
        return loss.detach()

    xs, ys, bs = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device), workload.batch_size
    return params, step, [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, xs.shape[0], bs)]


class TorchEngine(Engine):
    """PyTorch, the book's loop: eager on ``"cpu"`` (``threads`` threads) or ``"cuda"``, or (``graph``) replayed."""

    framework = "torch"

    def __init__(self, device: str, threads: int | None = None, graph: bool = False) -> None:
        self.device, self.threads, self.is_gpu, self.graph = device, threads, device == "cuda", graph
        self.key = "torch-cuda-graph" if graph else f"torch-{device}"
        self.label = "PyTorch CUDA-graph replay" if graph else f"PyTorch eager {'CUDA' if self.is_gpu else 'CPU'}"

    def unavailable(self) -> str | None:
        """Why this engine cannot run here (``None`` when it can)."""
        return torch_or_reason(cuda=self.is_gpu)[1]

    def prepare(self, workload: Workload, x, y) -> Trial:
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        warm = None
        if workload.model == "resnet18":
            run, warm = _resnet_runs(resnet.torch_trainer(workload, x, y, self.device), workload, x.shape[0])
        elif self.graph:
            run = _captured_epoch(*torch_book_loop(workload, x, y, self.device))
        else:
            _, step, batches = torch_book_loop(workload, x, y, self.device)

            def run():
                return torch.stack([step(xb, yb) for xb, yb in batches]).tolist()

        return torch_cuda_trial(run, warm) if self.is_gpu else Trial(run, warm=warm)

    def release(self) -> None:
        """Give back the device memory held between workloads."""
        if self.is_gpu:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()


def _captured_epoch(params, step, batches):
    """The epoch captured whole with ``torch.cuda.graph``: a ``run()`` that replays it and reads the losses."""
    import torch

    losses = torch.zeros(len(batches), device="cuda")

    def epoch():
        for i, (xb, yb) in enumerate(batches):
            losses[i].copy_(step(xb, yb))

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        epoch()  # warm-up: autograd and the allocator set up their state before capture
    torch.cuda.current_stream().wait_stream(side)
    for p in params.values():
        p.grad = None  # backward allocates the gradients from the graph's private pool
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        epoch()

    def run():
        graph.replay()
        return losses.tolist()

    return run


#: Every engine, by key, in the order the tables list them.
ENGINE_KEYS = ("numpy", "torch-cpu", "cupy", "torch-cuda", "fused-graph", "torch-cuda-graph")


def make_engines(keys=ENGINE_KEYS, *, torch_threads: int | None = None) -> list[Engine]:
    """The engines named by ``keys`` (see :data:`ENGINE_KEYS`), available or not, in table order."""
    if unknown := [k for k in keys if k not in ENGINE_KEYS]:
        raise ValueError(f"unknown engine(s) {', '.join(unknown)}: choose from {', '.join(ENGINE_KEYS)}")
    return [e for e in (NumpyMnistEngine("numpy"), TorchEngine("cpu", threads=torch_threads), NumpyMnistEngine("cupy"),
                        TorchEngine("cuda"), NumpyMnistEngine("cupy", graph=True), TorchEngine("cuda", graph=True))
            if e.key in keys]
