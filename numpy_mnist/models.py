"""The book's models, holding parameters in ``model.params`` and computing gradients by hand.

Every model has

* ``params``: a dict of backend arrays, the parameters (:class:`~numpy_mnist.optim.SGD` steps them),
* ``buffers``: a dict of backend arrays that are state but no parameters (running statistics of a
  batch norm; empty for the book's models), saved in checkpoints beside ``params``,
* ``inputs`` and ``outputs``: its sizes, stored when it is built,
* ``train()`` / ``eval()`` and ``training``: the mode the :class:`~numpy_mnist.learner.Learner` sets
  before training and before validating (nothing changes with it in the book's models),
* ``forward(x) -> logits`` of shape (N, outputs),
* ``loss_and_grads(x, y) -> (loss, grads)``: the mean loss (a 0-d array) and a dict of gradients
  keyed exactly like ``params``, every derivative by hand (:mod:`numpy_mnist.layers`,
  :mod:`numpy_mnist.losses`).

Initial values are drawn on the host with ``numpy.random.default_rng(seed)`` in float64 and then
cast and moved to the backend, so a seed gives the same model on every backend.
"""

from __future__ import annotations

import math

import numpy as np

from numpy_mnist.backends import Backend, get_backend
from numpy_mnist.checks import check_2d, check_on_backend, check_targets
from numpy_mnist.errors import InputError
from numpy_mnist.layers import (
    batch_norm,
    batch_norm_backward,
    batch_norm_eval,
    conv2d,
    conv2d_backward,
    dropout,
    dropout_backward,
    dropout_mask,
    global_avg_pool,
    global_avg_pool_backward,
    global_max_pool,
    global_max_pool_backward,
    linear,
    linear_backward,
    max_pool2d,
    max_pool2d_backward,
    relu,
    relu_backward,
    residual_add,
    residual_add_backward,
    update_running_stats,
)
from numpy_mnist.losses import Loss, get_loss

__all__ = ["Model", "LinearModel", "MLP", "MODEL_KINDS", "linear1", "simple_net", "linear10", "mlp10",
           "N_PIXELS", "N_DIGITS", "CLASSES_LR", "ResNet18", "resnet18", "resnet18_shapes"]

N_PIXELS = 28 * 28
#: Classes of the full MNIST: the digits 0 to 9.
N_DIGITS = 10
#: The default learning rate of every model with softmax cross-entropy over classes: measured on
#: the ten digits (:mod:`numpy_mnist.datasets` tells how), where the book's rates fall short.
CLASSES_LR = 0.5


class Model:
    """What every model shares: parameters on a backend, a loss, its sizes, and the public contract.

    ``inputs`` and ``outputs`` are the sizes of an image and of its logits, given by the subclass
    when it is built (each reads them off its own named parameters).
    """

    kind: str = "model"
    #: The learning rate the book trains this model with on its 3s and 7s (one logit per image);
    #: each model sets its own.
    book_lr: float

    #: The backward functions this model's chain calls; the exercise swaps in a learner's own.
    linear_backward = staticmethod(linear_backward)
    relu_backward = staticmethod(relu_backward)

    def __init__(self, params: dict, backend: Backend, loss: str | Loss, *, inputs: int, outputs: int) -> None:
        self.backend = backend
        self.loss = get_loss(loss)
        self.params = {name: backend.asarray(value) for name, value in params.items()}
        self.buffers: dict = {}
        self.inputs = int(inputs)
        self.outputs = int(outputs)
        self.training = True

    @property
    def default_lr(self) -> float:
        """The learning rate to train this model with unless told otherwise: :attr:`book_lr` for
        one logit per image, :data:`CLASSES_LR` for softmax cross-entropy over classes."""
        return CLASSES_LR if self.loss.multiclass else self.book_lr

    def train(self) -> "Model":
        """Train mode (what :meth:`~numpy_mnist.learner.Learner.one_epoch` sets before training)."""
        self.training = True
        return self

    def eval(self) -> "Model":
        """Eval mode (set before validating); the book's models compute the same in both."""
        self.training = False
        return self

    def forward(self, x):
        """Logits of shape (N, outputs) for images ``x`` of shape (N, 784)."""
        self.check_images(x)
        return self._forward(x)[0]

    def loss_and_grads(self, x, y):
        """Forward, loss, backward: ``(loss, grads)`` for the batch ``(x, y)``.

        ``loss`` is the mean loss as a 0-d array of the backend (``float(loss)`` reads it; it is
        left on the device so that a GPU is not made to wait), ``grads`` a dict keyed exactly like
        ``params``.  The batch's shapes, dtypes and backend are checked (an
        :class:`~numpy_mnist.errors.InputError` for a bad one); its values are not, since reading
        them would make a GPU wait on every batch: the :class:`~numpy_mnist.learner.Learner`
        checks its data's values once, when it is built.
        """
        self.check_images(x)
        check_targets(y, self.outputs, n=x.shape[0], values=False)
        logits, cache = self._forward(x)
        loss = self.loss.forward(logits, y)
        dlogits = self.loss.backward(logits, y)
        return loss, self._backward(dlogits, cache)

    def check_images(self, x, name: str = "x") -> None:
        """Refuse images that are not (N, inputs) arrays of this model's backend and dtype."""
        check_on_backend(x, self.backend, name=name)
        check_2d(x, name=name, width=self.inputs)

    def config(self) -> dict:
        """What rebuilds this model's shape: kind, sizes and loss name."""
        return {"kind": self.kind, "inputs": self.inputs, "outputs": self.outputs, "loss": self.loss.name}

    def _forward(self, x):  # -> (logits, cache for _backward)
        raise NotImplementedError

    def _backward(self, dlogits, cache) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.params.items())
        return f"{type(self).__name__}({shapes}, loss={self.loss.name}, backend={self.backend.name})"


class LinearModel(Model):
    """``logits = x @ weights + bias``: the book's ``linear1``.

    ``params = {"weights": (784, outputs), "bias": (outputs,)}``.
    """

    kind = "linear"
    book_lr = 1.0

    def __init__(self, params: dict, backend: Backend, loss: str | Loss) -> None:
        inputs, outputs = params["weights"].shape
        super().__init__(params, backend, loss, inputs=inputs, outputs=outputs)

    def _forward(self, x):
        p = self.params
        return linear(x, p["weights"], p["bias"]), x

    def _backward(self, dlogits, x):
        _, dw, db = self.linear_backward(dlogits, x, self.params["weights"], need_dx=False)
        return {"weights": dw, "bias": db}


class MLP(Model):
    """The book's ``simple_net``: Linear(784, hidden) -> ReLU -> Linear(hidden, outputs).

    ``params = {"w1": (784, hidden), "b1": (hidden,), "w2": (hidden, outputs), "b2": (outputs,)}``.

    Backward, with ``h = x @ w1 + b1``, ``a = relu(h)``, ``z = a @ w2 + b2``::

        dw2 = a.T @ dz          db2 = sum_n dz
        da  = dz @ w2.T         dh  = da * [h > 0]
        dw1 = x.T @ dh          db1 = sum_n dh
    """

    kind = "simple_net"
    book_lr = 0.1

    def __init__(self, params: dict, backend: Backend, loss: str | Loss) -> None:
        super().__init__(params, backend, loss, inputs=params["w1"].shape[0], outputs=params["w2"].shape[1])

    @property
    def hidden(self) -> int:
        return int(self.params["b1"].shape[0])

    def config(self) -> dict:
        return {**super().config(), "hidden": self.hidden}

    def _forward(self, x):
        p = self.params
        h = linear(x, p["w1"], p["b1"])
        a = relu(h)
        return linear(a, p["w2"], p["b2"]), (x, h, a)

    def _backward(self, dlogits, cache):
        x, h, a = cache
        p = self.params
        da, dw2, db2 = self.linear_backward(dlogits, a, p["w2"])
        _, dw1, db1 = self.linear_backward(self.relu_backward(da, h), x, p["w1"], need_dx=False)
        return {"w1": dw1, "b1": db1, "w2": dw2, "b2": db2}


def _uniform_linear_init(rng: np.random.Generator, fan_in: int, fan_out: int):
    """PyTorch's ``nn.Linear`` default: weight and bias uniform in +-1/sqrt(fan_in)."""
    bound = 1 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, (fan_out,))


def linear1(seed: int = 0, backend: str | Backend = "numpy", loss: str | Loss = "mnist_loss",
            *, dtype: str | None = None, outputs: int = 1) -> LinearModel:
    """The book's linear model, initialised like its ``init_params``: standard normal, std 1.

    ``params = {"weights": (784, outputs), "bias": (outputs,)}``.
    """
    backend = _resolve(backend, dtype)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((N_PIXELS, outputs))
    bias = rng.standard_normal((outputs,))
    return LinearModel({"weights": weights, "bias": bias}, backend, loss)


def simple_net(hidden: int = 30, seed: int = 0, backend: str | Backend = "numpy",
               loss: str | Loss = "mnist_loss", *, dtype: str | None = None, outputs: int = 1) -> MLP:
    """The book's ``simple_net`` (784 -> hidden -> ReLU -> outputs), ``nn.Linear``'s default init."""
    if hidden < 1:
        raise InputError(f"hidden must be a positive width, got {hidden}")
    backend = _resolve(backend, dtype)
    rng = np.random.default_rng(seed)
    w1, b1 = _uniform_linear_init(rng, N_PIXELS, hidden)
    w2, b2 = _uniform_linear_init(rng, hidden, outputs)
    return MLP({"w1": w1, "b1": b1, "w2": w2, "b2": b2}, backend, loss)


def linear10(seed: int = 0, backend: str | Backend = "numpy", *, dtype: str | None = None,
             classes: int = N_DIGITS) -> LinearModel:
    """All ten digits with one linear layer (softmax regression): 784 -> 10 logits, ``cross_entropy``.

    ``params = {"weights": (784, 10), "bias": (10,)}``; column ``k`` of the weights is a 28x28 picture
    of the evidence for digit ``k``.  The parameters start at zero, not at the book's standard normal:
    the loss is convex in them, so zero is a fine start (and no symmetry needs breaking, as each class
    gets its own gradient), and random weights on the always-black border pixels would never be
    trained away (their gradient is 0) and would blur the weight pictures.  ``seed`` is accepted so
    every factory takes the same arguments; nothing here is random.
    """
    del seed
    backend = _resolve(backend, dtype)
    params = {"weights": np.zeros((N_PIXELS, classes)), "bias": np.zeros((classes,))}
    return LinearModel(params, backend, "cross_entropy")


def mlp10(hidden: int = 100, seed: int = 0, backend: str | Backend = "numpy", *, dtype: str | None = None,
          classes: int = N_DIGITS) -> MLP:
    """All ten digits with the book's ``simple_net`` shape: 784 -> hidden -> ReLU -> 10, ``cross_entropy``.

    Exactly ``simple_net(hidden, seed, backend, loss="cross_entropy", outputs=10)``, ``nn.Linear``'s
    default init (hidden units must start different, unlike :func:`linear10`).
    """
    return simple_net(hidden, seed, backend, "cross_entropy", dtype=dtype, outputs=classes)


def _resolve(backend: str | Backend, dtype: str | None) -> Backend:
    if isinstance(backend, Backend):
        return backend if dtype is None else get_backend(backend, dtype)
    return get_backend(backend, dtype or "float32")


#: Model classes by ``Model.kind``: how a checkpoint's ``config()["kind"]`` is rebuilt.
MODEL_KINDS = {cls.kind: cls for cls in (LinearModel, MLP)}


# == Going deeper: the book's ResNet-18 ============================================================
#
# The chapter's last model, ``cnn_learner(dls, resnet18, pretrained=False, loss_func=F.cross_entropy)``:
# torchvision's ResNet-18 body under fastai's head, every gradient by hand from the layer pairs of
# :mod:`numpy_mnist.layers`.  Trained with :class:`~numpy_mnist.optim.Adam` and
# :class:`~numpy_mnist.optim.OneCycle` (fastai's ``fit_one_cycle``).

#: The four stages of torchvision's ResNet-18: (channels as a multiple of the width, first stride).
RESNET18_STAGES = ((1, 1), (2, 2), (4, 2), (8, 2))
#: fastai's head drops 25 % of the pooled features and 50 % of the hidden ones.
HEAD_DROPOUT = {"head.drop1": 0.25, "head.drop2": 0.5}


def resnet18_shapes(width: int = 64, classes: int = 2) -> dict[str, tuple]:
    """Every parameter's shape, by name, in torchvision's order (its ``state_dict`` names for the body).

    Convolutions ``(out, in, k, k)``; a batch norm's ``.weight`` is its gamma and ``.bias`` its
    beta, ``(C,)``; the head's linears are ``(in, out)`` like :func:`~numpy_mnist.layers.linear`
    (PyTorch's ``nn.Linear.weight`` transposed), without bias.  Widths: the stem and stage 1 have
    ``width`` channels, then ``2, 4, 8 x width``; the head pools to ``16 width`` features (max and
    mean of each of the ``8 width`` channels) and its hidden layer has ``8 width``: 1024 -> 512 at
    the book's width 64, the hidden 512 scaled with the width like every other size.
    """
    shapes: dict[str, tuple] = {"conv1.weight": (width, 1, 7, 7), "bn1.weight": (width,), "bn1.bias": (width,)}
    c_in = width
    for s, (mult, stride) in enumerate(RESNET18_STAGES, start=1):
        c = mult * width
        for b in range(2):
            name = f"layer{s}.{b}"
            shapes |= {f"{name}.conv1.weight": (c, c_in if b == 0 else c, 3, 3), f"{name}.bn1.weight": (c,),
                       f"{name}.bn1.bias": (c,), f"{name}.conv2.weight": (c, c, 3, 3), f"{name}.bn2.weight": (c,),
                       f"{name}.bn2.bias": (c,)}
            if b == 0 and (stride != 1 or c_in != c):
                shapes |= {f"{name}.downsample.0.weight": (c, c_in, 1, 1), f"{name}.downsample.1.weight": (c,),
                           f"{name}.downsample.1.bias": (c,)}
        c_in = c
    return shapes | {"head.bn1.weight": (2 * c_in,), "head.bn1.bias": (2 * c_in,), "head.fc1.weight": (2 * c_in, c_in),
                     "head.bn2.weight": (c_in,), "head.bn2.bias": (c_in,), "head.fc2.weight": (c_in, classes)}


class ResNet18(Model):
    """The book's ``cnn_learner(dls, resnet18)``: torchvision's ResNet-18 body, fastai's head.

    Images arrive as the DataLoader's (N, 784) rows and are seen as (N, 1, 28, 28); labels are
    integer classes (N,), 1 for a 3 and 0 for a 7 (``cross_entropy`` over the two logits).  Sizes for the
    28 x 28 images, channels at the book's width 64::

        stem      conv 7x7 /2 pad 3 (64) -> BN -> ReLU -> max-pool 3x3 /2 pad 1     14x14, then 7x7
        layer1    2 BasicBlocks, 64 channels                                       7x7
        layer2    2 BasicBlocks, 128, the first with stride 2                      4x4
        layer3    2 BasicBlocks, 256, the first with stride 2                      2x2
        layer4    2 BasicBlocks, 512, the first with stride 2                      1x1
        head      [max, mean] pool (1024) -> BN -> dropout 0.25 -> linear 1024x512 -> ReLU
                  -> BN -> dropout 0.5 -> linear 512x2 (no biases)                 2 logits

    At 28 x 28 the last map is 1 x 1, so the max and the mean of each channel are the same number
    and the head's 1024 features are 512 twice, as in the book's model.  Other square images are
    taken with ``image_size`` (rows of ``image_size**2`` pixels); each side shrinks 32-fold, rounded
    up, so from 33 x 33 on the last map is 2 x 2 or more and the two pools differ.

    A BasicBlock is ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions,
    the shortcut ``x`` itself, or ``bn(conv1x1 /2 (x))`` where the shape changes (the first block of
    layers 2 to 4).  ``width`` scales every channel count (16 is a quarter of the book's model).

    State:

    * ``params`` (:func:`resnet18_shapes`); ``no_weight_decay`` names the batch norms' gammas and
      betas, which fastai's ``Learner`` leaves out of the weight decay (``Adam(no_decay=...)``);
    * ``buffers``: each batch norm's ``running_mean`` and ``running_var`` (backend arrays), updated
      by every forward pass in training mode (momentum 0.1, unbiased variance) and used in eval mode;
    * ``training``: set by :meth:`train` and :meth:`eval`.  Training mode normalises with the
      batch's statistics and drops out; eval mode uses the running statistics and keeps everything;
    * ``rng``: the host generator the dropout masks are drawn from (``numpy.random.default_rng``,
      seeded from ``seed``; ``rng.bit_generator.state`` is plain JSON, for resuming a run exactly);
      ``dropout_masks``, when set to ``{"head.drop1": (N, 16 width), "head.drop2": (N, 8 width)}``
      boolean host arrays, is used instead of drawing (for tests and twins).

    ``loss_and_grads`` is the forward pass, then the backward read as the forward reversed, block by
    block (:meth:`_block_backward` mirrors :meth:`_block_forward`).  It needs training mode, and
    batches of at least 2 images (a batch norm over one value has no variance).

    The book's ``fit_one_cycle(1, 0.1)`` (``Adam(no_decay=model.no_weight_decay,
    schedule=OneCycle(193, 0.1))``, batch 64, shuffled, last partial batch dropped) reached a
    validation accuracy of 0.9951 after one epoch at width 64 and at width 16 (seed 0; a PyTorch
    rebuild of the same setup: 0.9961 and 0.9951; the book: 0.997).  A training batch at width 64
    costs about as much CPU time as PyTorch's own on one thread (0.50 s against 0.56 s, measured
    on a shared two-core CPU).
    """

    kind = "resnet18"
    book_lr = 0.1

    def __init__(self, params: dict, backend: Backend, loss: str | Loss = "cross_entropy", *,
                 buffers: dict | None = None, seed: int = 0, image_size: int = 28) -> None:
        _check_resnet_inputs(params, image_size)
        super().__init__(params, backend, loss, inputs=image_size**2,
                         outputs=int(params["head.fc2.weight"].shape[1]))
        self.image_size = image_size
        if not self.loss.multiclass:
            raise InputError(f"the ResNet-18 is trained with cross_entropy over its classes, not {self.loss.name}")
        self.width, self.seed = int(self.params["conv1.weight"].shape[0]), _check_seed(seed)
        want = resnet18_shapes(self.width, self.outputs)
        _check_shapes({name: tuple(p.shape) for name, p in self.params.items()}, want,
                      f"these are not the parameters of a ResNet-18 of width {self.width}")
        self.bn_names, fresh = _batch_norms(want)
        self.no_weight_decay = [f"{bn}.{p}" for bn in self.bn_names for p in ("weight", "bias")]
        if buffers is not None:
            _check_shapes({k: tuple(v.shape) for k, v in buffers.items()}, {k: v.shape for k, v in fresh.items()},
                          "buffers must hold each batch norm's running_mean and running_var")
        self.buffers = {name: backend.asarray(value) for name, value in (buffers or fresh).items()}
        # The blocks, as (name, stride, has a downsampling shortcut), in order.
        self.blocks = _blocks(want)
        self.training = True
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(2)[1])
        self.dropout_masks: dict | None = None

    # -- the contract ------------------------------------------------------------------------------
    @property
    def default_lr(self) -> float:
        """The book's ``fit_one_cycle(1, 0.1)``: the one-cycle schedule's peak rate."""
        return self.book_lr

    def config(self) -> dict:
        return {**super().config(), "width": self.width, "seed": self.seed, "image_size": self.image_size}

    def loss_and_grads(self, x, y):
        if not self.training:
            raise InputError("loss_and_grads trains the model: call model.train() first (it is in eval mode)")
        return super().loss_and_grads(x, y)

    # -- forward -----------------------------------------------------------------------------------
    def _forward(self, x):
        xp, n, p = self.backend.xp, int(x.shape[0]), self.params
        if self.training and n < 2:
            raise InputError(f"a training batch needs at least 2 images (batch norm divides by the batch's "
                             f"variance), got {n}; use eval mode to predict one image")
        images = xp.reshape(x, (n, 1, self.image_size, self.image_size))
        stem, h0 = self._conv_bn(images, "conv1", "bn1", stride=2, padding=3)
        a0 = relu(stem)
        out = max_pool2d(a0, kernel=3, stride=2, padding=1)
        blocks = []
        for block in self.blocks:
            out, cache = self._block_forward(out, block)
            blocks.append(cache)
        # fastai's head: AdaptiveConcatPool2d (max first), flatten, BN, dropout, linear, ReLU, BN, dropout, linear
        f = xp.concat([global_max_pool(out), global_avg_pool(out)], axis=1)
        g1 = self._bn(f, "head.bn1")
        d1, m1 = self._dropout(g1, "head.drop1")
        h = d1 @ p["head.fc1.weight"]
        r = relu(h)
        g2 = self._bn(r, "head.bn2")
        d2, m2 = self._dropout(g2, "head.drop2")
        logits = d2 @ p["head.fc2.weight"]
        return logits, (images, h0, stem, a0, blocks, out, f, m1, d1, h, r, m2, d2)

    def _conv_bn(self, x, conv: str, bn: str, *, stride: int, padding: int):
        """``bn(conv(x))``: ``(out, conv's output)``."""
        h = conv2d(x, self.params[f"{conv}.weight"], stride=stride, padding=padding)
        return self._bn(h, bn), h

    def _bn(self, h, bn: str):
        """Batch norm ``bn`` of ``h``: the batch's statistics (and the running ones updated) in training
        mode, the running ones in eval mode."""
        gamma, beta = self.params[f"{bn}.weight"], self.params[f"{bn}.bias"]
        mean_name, var_name = f"{bn}.running_mean", f"{bn}.running_var"
        if not self.training:
            return batch_norm_eval(h, gamma, beta, self.buffers[mean_name], self.buffers[var_name])
        out, mean, var = batch_norm(h, gamma, beta)
        m = math.prod(h.shape) // h.shape[1]
        self.buffers[mean_name], self.buffers[var_name] = update_running_stats(
            self.buffers[mean_name], self.buffers[var_name], mean, var, m)
        return out

    def _dropout(self, x, name: str):
        """Dropout ``name`` in training mode (``(out, mask)``); in eval mode the identity (mask None)."""
        if not self.training:
            return x, None
        p, shape = HEAD_DROPOUT[name], tuple(x.shape)
        host = dropout_mask(self.rng, shape, p) if self.dropout_masks is None else self.dropout_masks[name]
        if tuple(host.shape) != shape:
            raise InputError(f"the dropout mask {name} has shape {tuple(host.shape)}, the batch needs {shape}")
        mask = self.backend.asarray(host)
        return dropout(x, mask, p), mask

    def _block_forward(self, x, block):
        """A BasicBlock: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``(out, cache)``."""
        name, stride, downsample = block
        y1, h1 = self._conv_bn(x, f"{name}.conv1", f"{name}.bn1", stride=stride, padding=1)
        a1 = relu(y1)
        y2, h2 = self._conv_bn(a1, f"{name}.conv2", f"{name}.bn2", stride=1, padding=1)
        if downsample:
            shortcut, hs = self._conv_bn(x, f"{name}.downsample.0", f"{name}.downsample.1", stride=stride, padding=0)
        else:
            shortcut, hs = x, None
        z = residual_add(y2, shortcut)
        return relu(z), (x, h1, y1, a1, h2, hs, z)

    # -- backward: the forward read upwards ---------------------------------------------------------
    def _backward(self, dlogits, cache) -> dict:
        images, h0, stem, a0, blocks, out, f, m1, d1, h, r, m2, d2 = cache
        p, grads = self.params, {}
        # head, last layer first (a bias-free linear is linear_backward's dx and dw)
        dd2, grads["head.fc2.weight"], _ = linear_backward(dlogits, d2, p["head.fc2.weight"])
        dg2 = dropout_backward(dd2, m2, HEAD_DROPOUT["head.drop2"])
        dr = self._bn_backward(dg2, r, "head.bn2", grads)
        dh = relu_backward(dr, h)
        dd1, grads["head.fc1.weight"], _ = linear_backward(dh, d1, p["head.fc1.weight"])
        dg1 = dropout_backward(dd1, m1, HEAD_DROPOUT["head.drop1"])
        df = self._bn_backward(dg1, f, "head.bn1", grads)
        c = out.shape[1]  # the concatenated pools: max in the first c features, mean in the rest
        dout = global_max_pool_backward(df[:, :c], out) + global_avg_pool_backward(df[:, c:], out)
        for block, block_cache in zip(reversed(self.blocks), reversed(blocks)):
            dout = self._block_backward(dout, block, block_cache, grads)
        da0 = max_pool2d_backward(dout, a0, kernel=3, stride=2, padding=1)
        self._conv_bn_backward(relu_backward(da0, stem), images, h0, "conv1", "bn1", stride=2, padding=3, grads=grads)
        return {name: grads[name] for name in p}

    def _block_backward(self, dout, block, cache, grads: dict):
        """The gradient through :meth:`_block_forward`, its steps in reverse; returns ``d loss / d x``.

        ``z = y2 + shortcut`` passes ``dz`` to both branches; ``x`` feeds both the block's first
        convolution and the shortcut, so its gradient is the sum of the two.
        """
        name, stride, downsample = block
        x, h1, y1, a1, h2, hs, z = cache
        dy2, dshortcut = residual_add_backward(relu_backward(dout, z))
        da1 = self._conv_bn_backward(dy2, a1, h2, f"{name}.conv2", f"{name}.bn2", stride=1, padding=1, grads=grads)
        dx = self._conv_bn_backward(relu_backward(da1, y1), x, h1, f"{name}.conv1", f"{name}.bn1",
                                    stride=stride, padding=1, grads=grads)
        if downsample:
            dshortcut = self._conv_bn_backward(dshortcut, x, hs, f"{name}.downsample.0", f"{name}.downsample.1",
                                               stride=stride, padding=0, grads=grads)
        return dx + dshortcut

    def _conv_bn_backward(self, dout, x, h, conv: str, bn: str, *, stride: int, padding: int, grads: dict):
        """The gradient through :meth:`_conv_bn` (``h`` the convolution's output); returns ``d loss / d x``."""
        dh = self._bn_backward(dout, h, bn, grads)
        dx, grads[f"{conv}.weight"] = conv2d_backward(dh, x, self.params[f"{conv}.weight"], stride=stride,
                                                      padding=padding)
        return dx

    def _bn_backward(self, dout, h, bn: str, grads: dict):
        dh, grads[f"{bn}.weight"], grads[f"{bn}.bias"] = batch_norm_backward(dout, h, self.params[f"{bn}.weight"])
        return dh


def resnet18(width: int = 64, seed: int = 0, backend: str | Backend = "numpy", *, dtype: str | None = None,
             classes: int = 2, image_size: int = 28) -> ResNet18:
    """The book's ResNet-18 for the 3s and 7s (``classes`` logits, ``cross_entropy``), initialised as
    torchvision and fastai do.

    * convolutions: Kaiming-normal, fan-out, ReLU gain: ``std = sqrt(2 / (out k k))``
      (torchvision's ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``);
    * batch norms: gamma 1, beta 0; running mean 0, running variance 1;
    * the head's linears: Kaiming-normal, fan-in: ``std = sqrt(2 / in)`` (fastai's
      ``kaiming_normal_`` on the head).

    Drawn in float64 on the host, in :func:`resnet18_shapes`' order, from the first of two streams
    spawned from ``seed`` (``numpy.random.SeedSequence(seed).spawn(2)``); the dropout masks come
    from the second.  The book's images are RGB copies of one grey channel, so its first convolution
    sees three equal channels; here it sees the one (the same function of the image, with the
    three kernels' sum as the kernel, whose initial spread is sqrt(3) times less).
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise InputError(f"width must be a positive whole number of channels, got {width!r}")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise InputError(f"classes must be a whole number >= 2, got {classes!r}")
    backend = _resolve(backend, dtype)
    rng = np.random.default_rng(np.random.SeedSequence(_check_seed(seed)).spawn(2)[0])
    params = {}
    for name, shape in resnet18_shapes(width, classes).items():
        if len(shape) == 4:  # a convolution (out, in, k, k)
            params[name] = rng.standard_normal(shape) * math.sqrt(2 / (shape[0] * shape[2] * shape[3]))
        elif name.startswith("head.fc"):  # a linear (in, out)
            params[name] = rng.standard_normal(shape) * math.sqrt(2 / shape[0])
        else:  # a batch norm's gamma (weight) or beta (bias)
            params[name] = np.full(shape, 1.0 if name.endswith(".weight") else 0.0)
    return ResNet18(params, backend, "cross_entropy", seed=seed, image_size=image_size)


def _batch_norms(shapes: dict) -> tuple[list[str], dict]:
    """The batch norms' names (``bn1``, ``layer1.0.bn1``, ...) and their fresh running statistics
    (mean 0, variance 1, as PyTorch starts them)."""
    names = [name[: -len(".weight")] for name, shape in shapes.items() if len(shape) == 1 and name.endswith(".weight")]
    fresh = {f"{bn}.running_{stat}": np.full(shapes[f"{bn}.weight"], 0.0 if stat == "mean" else 1.0)
             for bn in names for stat in ("mean", "var")}
    return names, fresh


def _blocks(shapes: dict) -> list[tuple[str, int, bool]]:
    """``(name, stride, has a downsampling shortcut)`` of each BasicBlock, in order."""
    return [(f"layer{s}.{b}", stride if b == 0 else 1, f"layer{s}.{b}.downsample.0.weight" in shapes)
            for s, (_, stride) in enumerate(RESNET18_STAGES, start=1) for b in range(2)]


def _check_resnet_inputs(params: dict, image_size) -> None:
    if not {"conv1.weight", "head.fc2.weight"} <= params.keys():
        raise InputError("these are not the parameters of a ResNet-18: conv1.weight or head.fc2.weight is missing")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise InputError(f"image_size must be a positive whole number of pixels, got {image_size!r}")


def _check_shapes(got: dict, want: dict, what: str) -> None:
    """Refuse arrays whose names or shapes are not ``want``'s, naming the first few that differ."""
    if got != want:
        wrong = sorted(set(got) ^ set(want)) or [k for k in want if got[k] != want[k]]
        raise InputError(f"{what}: {wrong[:4]} differ")


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a non-negative whole number, got {seed!r}")
    return int(seed)


MODEL_KINDS[ResNet18.kind] = ResNet18
