"""The ResNet-18 rows: the book's "Going deeper" model trained for one epoch, and its matrix-product floor.

One epoch is what ``numpy-mnist train --model resnet18`` runs on MNIST_SAMPLE: batches of 64 in
order (the last partial batch dropped, as fastai does; no shuffling here, so that both sides see the
same batches), forward with dropout on, cross-entropy over the two classes, backward, and one step
of fastai's Adam under the one-cycle schedule (peak 0.1) over the epoch's steps, in float32.

* numpy-mnist: :func:`numpy_mnist.models.resnet18` with :class:`~numpy_mnist.optim.Adam` and
  :class:`~numpy_mnist.optim.OneCycle` through :func:`numpy_mnist.learner.train_epoch`, on the
  engine's backend (NumPy, or CuPy: the same code).
* PyTorch eager: the same model's twin (:func:`numpy_mnist.torch_twin.resnet18`, functional calls
  on the same initial parameters) with ``torch.optim.AdamW`` (fastai's Adam is AdamW step for step)
  and ``OneCycleLR`` set to fastai's schedule; batch norms and their gammas and betas left out of
  the weight decay on both sides; its dropout masks drawn by ``torch.rand``.

Each timed run builds a fresh optimizer (PyTorch builds its state at the first step, inside the
run, so both sides pay for it) and trains the first ``batches`` batches of the epoch: all of them,
or a prefix whose time the bench scales to the epoch, and says so.

The floor: each convolution's three matrix products at batch 64, as :func:`numpy_mnist.layers.conv2d`
and its backward multiply them (forward ``cols @ W``, weight gradient ``dout.T @ cols``, input
gradient ``dout @ W.T``; ``cols`` (N*OH*OW, KH*KW*C) and ``dout`` (N*OH*OW, F) contiguous, the
kernel's rows (F, KH*KW*C) contiguous and taken transposed), with NumPy in float32, and nothing else.
"""

from __future__ import annotations

import numpy as np

from numpy_mnist import torch_twin
from numpy_mnist.data.loader import DataLoader
from numpy_mnist.learner import train_epoch
from numpy_mnist.models import HEAD_DROPOUT, RESNET18_STAGES, resnet18_shapes
from numpy_mnist.optim import Adam, OneCycle
from numpy_mnist.training import quiet_numerics

__all__ = ["conv_products", "quiet_epoch", "numpy_mnist_trainer", "torch_trainer", "torch_one_cycle", "conv_operands"]


def _side(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_products(width: int, batch: int, image_size: int = 28) -> list[tuple[int, int, int]]:
    """``(M, K, F)`` of every convolution's forward product ``cols (M, K) @ W (K, F)``, in the network's order.

    The stem is 7x7 stride 2 padding 3, then a 3x3 stride-2 max-pool; each BasicBlock has two 3x3
    convolutions (the first with the stage's stride) and, where the shape changes, a 1x1 shortcut.
    """
    shapes = resnet18_shapes(width)
    side = _side(image_size, 7, 2, 3)
    products = [(batch * side * side, 49, width)]
    side = _side(side, 3, 2, 1)
    for stage, (_, stride) in enumerate(RESNET18_STAGES, start=1):
        for b in range(2):
            name = f"layer{stage}.{b}"
            f, c, _, _ = shapes[f"{name}.conv1.weight"]
            side = _side(side, 3, stride if b == 0 else 1, 1)
            m = batch * side * side
            products += [(m, 9 * c, f), (m, 9 * f, f)]
            if f"{name}.downsample.0.weight" in shapes:
                products.append((m, c, f))
    return products


def _labels(y) -> np.ndarray:
    """MNIST_SAMPLE's (N, 1) 0/1 targets as the class labels (N,) the ResNet is trained on."""
    return np.ascontiguousarray(np.asarray(y).reshape(-1), dtype=np.int64)


def quiet_epoch(model, loader, opt):
    """numpy-mnist's reference :func:`~numpy_mnist.learner.train_epoch`, float warnings quieted as in training."""
    with quiet_numerics():
        return train_epoch(model, loader, opt)


def numpy_mnist_trainer(workload, x, y, backend):
    """``trainer(batches) -> run``: ``run()`` trains the first ``batches`` batches of the epoch with numpy-mnist."""
    model = workload.build(backend)
    labels, bs, steps = _labels(y), workload.batch_size, x.shape[0] // workload.batch_size

    def trainer(batches: int):
        loader = DataLoader(x[:batches * bs], labels[:batches * bs], bs, drop_last=True, backend=backend)

        def run():
            return quiet_epoch(model, loader, Adam(model.params, model.book_lr, no_decay=model.no_weight_decay,
                                                   schedule=OneCycle(steps, model.book_lr)))

        return run

    return trainer


def torch_trainer(workload, x, y, device):
    """As :func:`numpy_mnist_trainer`, for PyTorch eager on ``device`` (``"cpu"`` or ``"cuda"``)."""
    import torch

    model = workload.build()
    params = torch_twin.parameters(model, dtype=torch.float32, device=device)
    buffers = {k: torch_twin.tensor(v, dtype=torch.float32, device=device) for k, v in model.buffers.items()}
    features = {"head.drop1": model.params["head.fc1.weight"].shape[0],
                "head.drop2": model.params["head.fc2.weight"].shape[0]}
    xs, ys, bs = torch.from_numpy(x).to(device), torch.from_numpy(_labels(y)).to(device), workload.batch_size
    steps, lr = x.shape[0] // bs, model.book_lr

    def step(xb, yb, opt, schedule):
        masks = {k: torch.rand(xb.shape[0], features[k], device=device) >= p for k, p in HEAD_DROPOUT.items()}
        loss = torch_twin.softmax_cross_entropy(torch_twin.resnet18(xb, params, buffers=buffers, masks=masks), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        return loss.detach()

    def trainer(batches: int):
        batch_list = [(xs[i:i + bs], ys[i:i + bs]) for i in range(0, batches * bs, bs)]

        def run():
            decay = [{"params": [p for k, p in params.items() if k not in model.no_weight_decay]},
                     {"params": [params[k] for k in model.no_weight_decay], "weight_decay": 0.0}]
            opt = torch.optim.AdamW(decay, lr=lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)
            schedule = torch_one_cycle(opt, steps, lr)
            return torch.stack([step(xb, yb, opt, schedule) for xb, yb in batch_list]).tolist()

        return run

    return trainer


def torch_one_cycle(opt, steps: int, lr_max: float):
    """PyTorch's ``OneCycleLR`` on ``opt`` set to fastai's schedule over ``steps`` steps
    (:class:`~numpy_mnist.optim.OneCycle`, whose docstring derives these settings)."""
    import torch

    return torch.optim.lr_scheduler.OneCycleLR(opt, lr_max, total_steps=steps + 1, div_factor=25.0,
                                               pct_start=(0.25 * steps + 1) / (steps + 1), final_div_factor=1e5 / 25)


def conv_operands(workload) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(left, right)`` operands of one batch's convolution products (see the module's docstring), float32."""
    rng = np.random.default_rng(0)
    operands = []
    for m, k, f in conv_products(workload.width, workload.batch_size):
        cols, kernel_rows, dout = (rng.standard_normal(shape, dtype=np.float32) for shape in ((m, k), (f, k), (m, f)))
        operands += [(cols, kernel_rows.T), (dout.T, cols), (dout, kernel_rows)]
    return operands
