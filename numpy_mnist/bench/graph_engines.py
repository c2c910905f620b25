"""The two CUDA-graph engines: numpy-mnist's fused graph, and PyTorch's best without writing kernels.

``fused-graph``
    numpy-mnist's :class:`~numpy_mnist.fused.trainer.FusedTrainer`: the epoch as one CUDA graph of
    hand-written kernels (two per batch for linear1, three for simple_net), replayed once per epoch,
    the batch losses read once.  What ``numpy-mnist train --backend cupy`` runs.
``torch-cuda-graph``
    The book's loop (forward, ``mnist_loss``, ``loss.backward()``, ``p.data -= p.grad * lr``,
    ``p.grad.zero_()``) for every batch of the epoch, captured whole with ``torch.cuda.graph`` after
    one eager warm-up epoch on a side stream (PyTorch's recipe for whole-network capture), then
    replayed; the batch losses go into one device tensor, read once per epoch.  The strongest thing
    a PyTorch user gets without writing kernels (``torch.compile`` was slower than eager here).

Both train the same models as the other engines (:mod:`numpy_mnist.bench.engines`) on the same
data, in float32, and are timed with CUDA events.  Without a GPU they report why they cannot run.
"""

from __future__ import annotations

from numpy_mnist.bench.engines import (
    EventTrial,
    NumpyMnistEngine,
    TorchEngine,
    Workload,
    torch_book_loop,
)
from numpy_mnist.bench.timing import Trial

__all__ = ["FusedGraphEngine", "TorchCudaGraphEngine"]


class FusedGraphEngine(NumpyMnistEngine):
    """numpy-mnist's fused CUDA graph on the ``cupy`` backend (float32)."""

    def __init__(self) -> None:
        super().__init__("cupy")
        self.key = "fused-graph"
        self.label = "numpy-mnist fused CUDA graph"

    def prepare(self, workload: Workload, x, y) -> Trial:
        from numpy_mnist.fused.trainer import FusedTrainer

        trainer = FusedTrainer(*self.setup(workload, x, y))  # compiles and records here
        return self.trial(trainer.train_epoch)


class TorchCudaGraphEngine(TorchEngine):
    """PyTorch, the book's loop for a whole epoch captured with ``torch.cuda.graph`` and replayed."""

    def __init__(self) -> None:
        super().__init__("cuda")
        self.key = "torch-cuda-graph"
        self.label = "PyTorch CUDA-graph replay"

    def prepare(self, workload: Workload, x, y) -> Trial:
        import torch

        device = torch.device("cuda")
        params, step, batches = torch_book_loop(workload, x, y, device)  # TorchEngine's loop
        losses = torch.zeros(len(batches), device=device)

        def epoch():
            for i, (xb, yb) in enumerate(batches):
                losses[i].copy_(step(xb, yb))

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            epoch()  # warm-up: autograd and the allocator set up their state before capture
        torch.cuda.current_stream().wait_stream(side)
        for p in params:
            p.grad = None  # backward allocates the gradients from the graph's private pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            epoch()

        def run():
            graph.replay()
            return losses.tolist()

        return EventTrial.with_torch_events(run)
