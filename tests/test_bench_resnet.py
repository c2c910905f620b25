"""The bench's ResNet-18 rows: the floor multiplies the network's own shapes, PyTorch trains the same epoch.

Tiny widths and a few rows only; nothing here looks at how fast anything is.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_bench import synthetic_like

import numpy_mnist.models as models
from numpy_mnist.bench.engines import Workload, make_engines
from numpy_mnist.bench.resnet import conv_operands, conv_products, numpy_mnist_trainer, torch_one_cycle, torch_trainer
from numpy_mnist.optim import OneCycle

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("width, batch, image_size", [(2, 3, 28), (4, 2, 40)])
def test_the_floor_multiplies_what_the_network_convolutions_multiply(monkeypatch, width, batch, image_size):
    """Every convolution of a forward pass, as ``(rows of cols, its columns, filters)``, in order."""
    seen = []
    conv2d = models.conv2d

    def recording(x, w, *, stride=1, padding=0):
        out = conv2d(x, w, stride=stride, padding=padding)
        seen.append((out.shape[0] * out.shape[2] * out.shape[3], w.shape[1] * w.shape[2] * w.shape[3], w.shape[0]))
        return out

    monkeypatch.setattr(models, "conv2d", recording)
    model = models.resnet18(width, image_size=image_size)
    model.forward(np.zeros((batch, image_size**2), dtype=np.float32))
    assert len(seen) == 20 and conv_products(width, batch, image_size) == seen
    if image_size == 28:  # the bench's images
        flops = Workload("resnet18", batch_size=batch, width=width).flops(rows=5 * batch + 1)
        assert flops == 5 * sum(6.0 * m * k * f for m, k, f in seen)  # three products per convolution, full batches


def test_the_floor_runs_the_three_products_the_flops_count_in_the_layers_layout():
    """Forward ``cols @ W``, weight gradient ``dout.T @ cols``, input gradient ``dout @ W.T`` per convolution."""
    workload = Workload("resnet18", batch_size=3, width=2)
    operands = conv_operands(workload)
    assert len(operands) == 3 * len(conv_products(2, 3)) and all(a.shape[1] == b.shape[0] for a, b in operands)
    assert sum(2.0 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands) == workload.flops(rows=3)
    assert [(a.flags.c_contiguous, b.flags.c_contiguous) for a, b in operands[:3]] == [(True, False), (False, True),
                                                                                        (True, True)]


def test_pytorch_follows_fastai_one_cycle_step_for_step():
    steps, lr = 9, 0.1
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=lr, betas=(0.9, 0.99))
    schedule, fastai = torch_one_cycle(opt, steps, lr), OneCycle(steps, lr)
    for t in range(steps):
        group = opt.param_groups[0]
        assert (group["lr"], group["betas"][0]) == pytest.approx(fastai(t), rel=1e-12), t
        opt.step()
        schedule.step()


def test_both_sides_train_the_prefix_of_the_epoch_they_are_asked_for():
    x, y = synthetic_like(200, seed=3)
    workload = Workload("resnet18", batch_size=64, width=2, batches=2)
    [engine] = make_engines(["numpy"])
    ours = numpy_mnist_trainer(workload, x, y, engine.backend_or_why[0])(2)()
    theirs = torch_trainer(workload, x, y, "cpu")(2)()
    assert math.isfinite(ours) and len(theirs) == 2 and all(math.isfinite(v) for v in theirs)
    assert workload.timed_batches(200) == 2 and Workload("resnet18", batch_size=64).timed_batches(200) == 3


def test_a_prefix_of_the_epoch_is_scaled_to_the_whole_epoch(monkeypatch):
    """A clock that moves one second per timed run: 1 of 4 batches timed reads as a 4 s epoch, floor too."""
    import itertools
    import time

    from numpy_mnist.bench.data import BenchData
    from numpy_mnist.bench.suite import BenchConfig, time_epochs
    from numpy_mnist.bench.timing import Trial

    class Engine:
        key, label, framework, is_gpu = "numpy", "numpy-mnist NumPy", "numpy-mnist", False

        def runs(self, workload):
            return True

        def prepare(self, workload, x, y):
            return Trial(lambda: None)

        def release(self):
            pass

    x, y = synthetic_like(300)
    refs = {"cpu": {"stream": {"seconds": 1.0, "GB_per_s": 1.0}, "matmul": {"flop_per_s": 1.0}}}
    clock = itertools.count()
    monkeypatch.setattr(time, "perf_counter", lambda: float(next(clock)))
    workload = Workload("resnet18", batch_size=64, width=2, batches=1)
    [row] = time_epochs((workload,), [Engine()], BenchData(x, y, "t", real=False), refs,
                        BenchConfig(settle_s=0.0), 1, 3, log=lambda line: None)
    assert row["times_s"] == [4.0, 4.0, 4.0] and row["blas_floor"]["median_s"] == 4.0
