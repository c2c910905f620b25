"""Differentiable pieces as forward/backward pairs, every derivative written out by hand.

Each ``*_backward`` takes the upstream gradient ``dout`` (d loss / d output) and what the forward
pass saw, and returns new arrays: it never writes into ``dout`` or its other inputs.  All functions
work on any Array-API namespace (NumPy, CuPy, array_api_strict); the namespace is read off the
arguments.
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from numpy_mnist.errors import InputError

__all__ = [
    "linear",
    "linear_backward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_derivative",
    "relu",
    "relu_backward",
    "log_softmax",
    "softmax",
    "conv2d",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_eval",
    "update_running_stats",
    "global_avg_pool",
    "global_avg_pool_backward",
    "global_max_pool",
    "global_max_pool_backward",
    "dropout_mask",
    "dropout",
    "dropout_backward",
    "residual_add",
    "residual_add_backward",
]


def linear(x, w, b):
    """The book's linear model ``xb @ weights + bias``.

    Shapes: ``x`` (N, D_in), ``w`` (D_in, D_out), ``b`` (D_out,) -> (N, D_out).
    """
    return x @ w + b


def linear_backward(dout, x, w, *, need_dx: bool = True):
    """Gradients of ``out = x @ w + b``.

    With ``out[n, j] = sum_i x[n, i] w[i, j] + b[j]``::

        d loss / d x = dout @ w.T          (N, D_in)
        d loss / d w = x.T  @ dout         (D_in, D_out)
        d loss / d b = sum_n dout[n, :]    (D_out,)

    ``need_dx=False`` skips ``dx`` (returned as ``None``): nothing upstream of the images needs it,
    and it is the largest product of the layer.
    """
    xp = array_namespace(dout)
    dx = dout @ w.T if need_dx else None
    dw = x.T @ dout
    db = xp.sum(dout, axis=0)
    return dx, dw, db


def sigmoid(x):
    """The logistic function ``sigma(x) = 1 / (1 + exp(-x))``, without overflow.

    ``exp(-x)`` overflows for x < -88.7 in float32.  With ``e = exp(-|x|)``, which lies in (0, 1]::

        sigma(x) = 1 / (1 + e)      for x >= 0
        sigma(x) = e / (1 + e)      for x <  0   (multiply top and bottom by exp(x))

    Both branches are exact rewritings, are accurate to the last bits, and never overflow.
    """
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return xp.where(x >= 0, r, e * r)


def sigmoid_derivative(x):
    """``d sigma / dx = sigma(x) (1 - sigma(x)) = sigma(x) sigma(-x) = e / (1 + e)^2``, ``e = exp(-|x|)``.

    The textbook form ``y * (1 - y)`` loses every digit of ``1 - y`` once ``y`` rounds to 1
    (x > 16.6 in float32); the symmetric form keeps full relative precision for all x.
    """
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    r = 1 / (1 + e)
    return e * r * r


def sigmoid_backward(dout, x):
    """Gradient through ``y = sigmoid(x)``: ``dx = dout * sigma(x) * (1 - sigma(x))`` (elementwise)."""
    return dout * sigmoid_derivative(x)


def relu(x):
    """Rectified linear unit ``max(x, 0)``, elementwise."""
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros_like(x))


def relu_backward(dout, x):
    """Gradient through ``relu``: ``dx = dout`` where ``x > 0``, else 0.

    The derivative at exactly ``x = 0`` is taken as 0, as PyTorch does.
    """
    xp = array_namespace(x)
    return xp.where(x > 0, dout, xp.zeros_like(dout))


def log_softmax(z):
    """``log softmax(z)`` along the last axis, without overflow: ``z - logsumexp(z)``.

    With ``m = max_k z[..., k]`` (a shift that changes nothing, since softmax is invariant to adding
    a constant to every logit of a row)::

        log softmax(z)_j = (z_j - m) - log sum_k exp(z_k - m)

    Every ``exp`` argument is <= 0, so nothing overflows, and the largest term of the sum is exactly
    1, so the ``log`` never sees 0.  Shapes: (..., K) -> (..., K).
    """
    xp = array_namespace(z)
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(z):
    """``softmax(z)_j = exp(z_j) / sum_k exp(z_k)`` along the last axis, computed as ``exp(z_j - m) /
    sum_k exp(z_k - m)`` with ``m = max_k z_k`` so that no ``exp`` overflows.  Shapes: (..., K) -> (..., K).

    Rows sum to 1.  Its Jacobian, ``d softmax_j / d z_i = softmax_j ([i == j] - softmax_i)``, is never
    needed on its own here: composed with cross-entropy it collapses to ``softmax - onehot`` (see
    :func:`numpy_mnist.losses.softmax_cross_entropy_backward`).
    """
    xp = array_namespace(z)
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


# == Going deeper: the layers of the book's ResNet-18 ===============================================
#
# Convolution, batch norm, max-pool, the global pools, dropout and the residual add, each a pure
# forward/backward pair like the functions above.  Images are (N, C, H, W) at every public edge,
# as in PyTorch; what happens inside (channels-last for the convolution) is said where it is done.

def conv2d(x, w, *, stride=1, padding=0):
    """A 2-D convolution (cross-correlation, as in PyTorch; no bias), as one matrix product (im2col).

    Shapes: ``x`` (N, C, H, W), ``w`` (F, C, KH, KW) -> (N, F, OH, OW), with
    ``OH = (H + 2 padding - KH) // stride + 1`` and ``OW`` alike.  With ``x_pad`` the input
    zero-padded by ``padding`` on each side of H and W, and ``s = stride``::

        out[n, f, i, j] = sum_{c, a, b} x_pad[n, c, i*s + a, j*s + b] w[f, c, a, b]

    For a fixed kernel offset ``(a, b)`` the entries ``x_pad[n, c, i*s + a, j*s + b]`` over all
    ``(i, j)`` are one strided slice ``x_pad[n, c, a : a + s*OH : s, b : b + s*OW : s]`` of shape
    (OH, OW).  Stack the KH*KW slices along the channel axis and the sum over ``(c, a, b)`` is a
    sum over one axis of length ``K = KH*KW*C``: with ``cols[(n, i, j), (a, b, c)]`` the stacked
    slices (N*OH*OW, K) and ``W[(a, b, c), f] = w[f, c, a, b]`` the kernel reshaped (K, F)::

        out[(n, i, j), f] = sum_k cols[(n, i, j), k] W[k, f]      i.e.  out = cols @ W

    one matrix product per convolution, where most of a ResNet's time goes.  ``W`` is taken as the
    transpose of the kernel's rows ``w[f]`` turned channels-last (:func:`_kernel_rows`).

    The layout inside is channels-last, (N, H, W, C): the input is turned channels-last before it
    is padded, so each slice is a run of whole C-contiguous rows, and stacking along the last axis
    lays ``cols`` out in memory exactly as the product reads it, with no transpose anywhere.
    ``out`` comes back as the (N, OH, OW, F) product seen through ``permute_dims`` as
    (N, F, OH, OW), not copied; elementwise layers keep that memory order, so the next
    convolution's turn to channels-last costs nothing.  Measured (``float32``, one core of this
    machine with the other busy, NumPy 2.4 with OpenBLAS, PyTorch 2.13 on one thread), forward +
    backward of the twenty convolutions of a ResNet-18 (torchvision's layout, 3 input channels) at
    batch 64 on 28x28 images, median of nine interleaved runs:

    * channels-first slices, gathered into ``cols`` through a transpose:     388 ms a batch
    * channels-last (N, H, W, C) at the edges too (no NCHW anywhere):         264 ms
    * (N, C, H, W) at the edge, channels-last inside (this code):            271 ms
    * the same, but every input and result a contiguous (N, C, H, W) copy:   293 ms
    * the three products alone (``cols @ W``, ``cols.T @ dout``, ``dout @ W.T``): 190 ms
    * PyTorch's ``F.conv2d`` forward + autograd backward, same shapes:       447 ms

    So the NCHW signature costs next to nothing once the views are handed on, while channels-first
    gathering costs 40 % more; what remains above the products is the gathering (twice: the
    backward rebuilds ``cols``) and the adding back (col2im).  Padding an (N, C, H, W) array first
    and permuting afterwards, as a first version did, left every slice strided across the channels
    and cost as much as channels-first slicing (366 against 368 ms, in another run).
    """
    _check_conv(x, w, stride, padding)
    xp = array_namespace(x, w)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = _out_size(h, kh, stride, padding), _out_size(wd, kw, stride, padding)
    cols = _im2col(_pad_channels_last(xp, x, padding, 0.0), kh, kw, stride, oh, ow)
    out = xp.reshape(cols @ _kernel_rows(w).T, (n, oh, ow, f))
    return xp.permute_dims(out, (0, 3, 1, 2))


def conv2d_backward(dout, x, w, *, stride=1, padding=0):
    """Gradients of :func:`conv2d`: ``(dx, dw)``, shaped like ``x`` and ``w``.

    In the matrix form ``out = cols @ W`` (see :func:`conv2d`) the convolution is a linear layer
    whose rows are the (n, i, j) positions, so its transpose rules apply::

        dW    = cols.T @ dout        (K, F)          dw[f, c, a, b] = dW[(a, b, c), f]
        dcols = dout @ W.T           (N*OH*OW, K)

    with ``dout`` laid out (N*OH*OW, F); ``dW`` is computed as its transpose ``dout.T @ cols``
    (F, K), one row per filter as ``w`` is stored.  In index form these are::

        dw[f, c, a, b]     = sum_{n, i, j} dout[n, f, i, j] x_pad[n, c, i*s + a, j*s + b]
        dx_pad[n, c, y, z] = sum_{f, a, b, i, j : i*s + a = y, j*s + b = z} dout[n, f, i, j] w[f, c, a, b]

    ``dcols`` holds, for each kernel offset ``(a, b)``, the gradient of the slice that was cut from
    ``x_pad`` at ``(a, b)``; an input entry appears in several slices (once per offset whose window
    covers it), so its gradient is the sum of theirs: each slice of ``dcols`` is added back where it
    was cut from (col2im), and the padding, which is not an input, is dropped.  ``cols`` is
    rebuilt from ``x`` here rather than kept from the forward pass: a pure function of what the
    forward saw, at the price of one more gathering.  Channels-last inside, as in the forward.
    """
    _check_conv(x, w, stride, padding)
    xp = array_namespace(dout, x, w)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = _out_size(h, kh, stride, padding), _out_size(wd, kw, stride, padding)
    if tuple(dout.shape) != (n, f, oh, ow):
        raise InputError(f"dout must have the convolution's output shape {(n, f, oh, ow)}, got {tuple(dout.shape)}")
    dout_mat = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (n * oh * ow, f))
    cols = _im2col(_pad_channels_last(xp, x, padding, 0.0), kh, kw, stride, oh, ow)
    dw = xp.permute_dims(xp.reshape(dout_mat.T @ cols, (f, kh, kw, c)), (0, 3, 1, 2))
    dcols = xp.reshape(dout_mat @ _kernel_rows(w), (n, oh, ow, kh * kw, c))
    dx_pad = xp.zeros((n, h + 2 * padding, wd + 2 * padding, c), dtype=dcols.dtype, device=device(dcols))
    for a in range(kh):
        for b in range(kw):
            rows, columns = _window(a, stride, oh), _window(b, stride, ow)
            dx_pad[:, rows, columns, :] += dcols[:, :, :, a * kw + b, :]
    dx = dx_pad[:, padding:padding + h, padding:padding + wd, :]
    return xp.permute_dims(dx, (0, 3, 1, 2)), dw


def max_pool2d(x, *, kernel=3, stride=2, padding=1):
    """Max-pooling over ``kernel`` x ``kernel`` windows: (N, C, H, W) -> (N, C, OH, OW).

    ``out[n, c, i, j] = max_{a, b} x_pad[n, c, i*s + a, j*s + b]`` with ``x_pad`` padded by
    ``-inf`` (padding is never the maximum of a window that holds an input, and PyTorch requires
    ``padding <= kernel // 2``, so every window holds one).  The max over the window is taken one
    kernel offset ``(a, b)`` at a time, as the maximum of the KH*KW strided slices.
    """
    _check_pool(x, kernel, stride, padding)
    xp = array_namespace(x)
    oh, ow = _out_size(x.shape[2], kernel, stride, padding), _out_size(x.shape[3], kernel, stride, padding)
    x_pad = _pad(xp, x, padding, -xp.inf)
    out = None
    for a in range(kernel):
        for b in range(kernel):
            s = x_pad[:, :, _window(a, stride, oh), _window(b, stride, ow)]
            out = s if out is None else xp.maximum(out, s)
    return xp.asarray(out, copy=True) if kernel == 1 else out


def max_pool2d_backward(dout, x, *, kernel=3, stride=2, padding=1):
    """Gradient of :func:`max_pool2d`: each window's ``dout`` goes to one maximum of the window.

    ``out[n, c, i, j] = x_pad[n, c, i*s + a*, j*s + b*]`` for the window's maximum ``(a*, b*)``, so
    ``d out[n, c, i, j] / d x_pad[n, c, y, z]`` is 1 at ``(y, z) = (i*s + a*, j*s + b*)`` and 0
    elsewhere::

        dx_pad[n, c, y, z] = sum_{i, j : (i*s + a*, j*s + b*) = (y, z)} dout[n, c, i, j]

    Where several entries of a window are equal maxima the max is not differentiable; like
    PyTorch, the gradient goes to the first of them in row-major order (smallest ``a``, then
    smallest ``b``), so it is never duplicated.  Walking the offsets in that order, an offset takes
    the window's gradient where its slice equals the maximum and no earlier offset has taken it.
    Overlapping windows (``stride < kernel``) share entries: their gradients add up.
    """
    _check_pool(x, kernel, stride, padding)
    xp = array_namespace(dout, x)
    n, c, h, wd = x.shape
    oh, ow = _out_size(h, kernel, stride, padding), _out_size(wd, kernel, stride, padding)
    if tuple(dout.shape) != (n, c, oh, ow):
        raise InputError(f"dout must have the pooling's output shape {(n, c, oh, ow)}, got {tuple(dout.shape)}")
    out = max_pool2d(x, kernel=kernel, stride=stride, padding=padding)
    x_pad = _pad(xp, x, padding, -xp.inf)
    dx_pad = xp.zeros(x_pad.shape, dtype=dout.dtype, device=device(dout))
    zero = xp.zeros_like(dout)
    taken = xp.zeros(out.shape, dtype=xp.bool, device=device(out))
    for a in range(kernel):
        for b in range(kernel):
            rows, columns = _window(a, stride, oh), _window(b, stride, ow)
            first = (x_pad[:, :, rows, columns] == out) & ~taken
            dx_pad[:, :, rows, columns] += xp.where(first, dout, zero)
            taken = taken | first
    return dx_pad[:, :, padding:padding + h, padding:padding + wd]


def batch_norm(x, gamma, beta, *, eps=1e-5):
    """Batch normalisation in training mode: ``(out, mean, var)``.

    Statistics over every axis but axis 1 (the channels): for (N, C) the batch, for (N, C, H, W)
    the batch and every position, ``M`` values per channel.  Per channel::

        mean  = (1/M) sum_i x_i
        var   = (1/M) sum_i (x_i - mean)^2          (biased: what normalises the batch)
        xhat_i = (x_i - mean) / sqrt(var + eps)
        out_i  = gamma xhat_i + beta

    ``gamma``, ``beta``, ``mean`` and ``var`` are (C,); ``out`` is shaped like ``x``.  ``mean`` and
    ``var`` feed :func:`update_running_stats`.
    """
    xp, axes, m = _check_batch_norm(x, gamma, beta)
    mean = xp.mean(x, axis=axes)
    centred = x - _per_channel(xp, mean, x)
    var = xp.mean(centred * centred, axis=axes)
    xhat = centred / _per_channel(xp, xp.sqrt(var + eps), x)
    return _per_channel(xp, gamma, x) * xhat + _per_channel(xp, beta, x), mean, var


def batch_norm_backward(dout, x, gamma, *, eps=1e-5):
    """Gradients of :func:`batch_norm` (training mode): ``(dx, dgamma, dbeta)``.

    Per channel, with ``M`` values ``x_i``, ``sigma = sqrt(var + eps)`` and ``dy = dout``:

    1. ``out_i = gamma xhat_i + beta`` gives ``dbeta = sum_i dy_i``, ``dgamma = sum_i dy_i xhat_i``
       and ``d loss / d xhat_i = gamma dy_i``.
    2. ``d mean / d x_j = 1/M``.
    3. ``d var / d x_j = (2/M) sum_i (x_i - mean)(delta_ij - 1/M) = (2/M)(x_j - mean)``, since
       ``sum_i (x_i - mean) = 0``; hence ``d sigma / d x_j = (x_j - mean) / (M sigma) = xhat_j / M``.
    4. ``xhat_i = (x_i - mean) / sigma``, so by the quotient rule::

           d xhat_i / d x_j = (delta_ij - 1/M) / sigma - (x_i - mean) / sigma^2 * xhat_j / M
                            = (M delta_ij - 1 - xhat_i xhat_j) / (M sigma)

    5. The chain rule sums over every ``i`` the channel's ``x_j`` reaches::

           dx_j = sum_i gamma dy_i (M delta_ij - 1 - xhat_i xhat_j) / (M sigma)
                = gamma / (M sigma) * (M dy_j - sum_i dy_i - xhat_j sum_i dy_i xhat_i)

    Vectorised, broadcast over the channel axis, the two sums are ``dbeta`` and ``dgamma``::

        dx = gamma / (M sigma) * (M dout - dbeta - xhat * dgamma)

    The statistics are recomputed from ``x`` (a pure function of what the forward saw).
    """
    xp, axes, m = _check_batch_norm(x, gamma, gamma)
    if tuple(dout.shape) != tuple(x.shape):
        raise InputError(f"dout must be shaped like x {tuple(x.shape)}, got {tuple(dout.shape)}")
    mean = xp.mean(x, axis=axes)
    centred = x - _per_channel(xp, mean, x)
    sigma = xp.sqrt(xp.mean(centred * centred, axis=axes) + eps)
    xhat = centred / _per_channel(xp, sigma, x)
    dbeta = xp.sum(dout, axis=axes)
    dgamma = xp.sum(dout * xhat, axis=axes)
    scale = _per_channel(xp, gamma / (m * sigma), x)
    dx = scale * (m * dout - _per_channel(xp, dbeta, x) - xhat * _per_channel(xp, dgamma, x))
    return dx, dgamma, dbeta


def batch_norm_eval(x, gamma, beta, running_mean, running_var, *, eps=1e-5):
    """Batch normalisation in evaluation mode: the running statistics in place of the batch's.

    ``out = gamma (x - running_mean) / sqrt(running_var + eps) + beta``, per channel (axis 1): a
    fixed affine map of each value, so a prediction never depends on the rest of its batch.
    """
    xp, _, _ = _check_batch_norm(x, gamma, beta, running_mean, running_var)
    sigma = xp.sqrt(running_var + eps)
    return (_per_channel(xp, gamma, x) * ((x - _per_channel(xp, running_mean, x)) / _per_channel(xp, sigma, x))
            + _per_channel(xp, beta, x))


def update_running_stats(running_mean, running_var, mean, var, m, *, momentum=0.1):
    """PyTorch's update of the running statistics after a training batch: ``(new_mean, new_var)``.

    ``mean`` and ``var`` are what :func:`batch_norm` returned, ``m`` the values per channel it
    averaged over (``N`` for (N, C), ``N*H*W`` for (N, C, H, W))::

        new_mean = (1 - momentum) running_mean + momentum mean
        new_var  = (1 - momentum) running_var  + momentum var * m / (m - 1)

    The running variance estimates the population's, so it takes the unbiased batch variance
    ``var * m / (m - 1)`` (PyTorch's rule), not the biased one the batch was normalised with.
    """
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise InputError(f"m must be an integer >= 2 (values per channel; the unbiased variance divides "
                         f"by m - 1), got {m!r}")
    if not 0 <= momentum <= 1:
        raise InputError(f"momentum must lie in [0, 1], got {momentum!r}")
    shapes = {tuple(a.shape) for a in (running_mean, running_var, mean, var)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise InputError(f"running_mean, running_var, mean and var must all be (C,), got "
                         f"{[tuple(a.shape) for a in (running_mean, running_var, mean, var)]}")
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * (var * (m / (m - 1)))
    return new_mean, new_var


def global_avg_pool(x):
    """The mean of each channel over its positions: (N, C, H, W) -> (N, C).

    ``out[n, c] = (1 / (H W)) sum_{y, z} x[n, c, y, z]`` (PyTorch's ``adaptive_avg_pool2d(x, 1)``).
    """
    _check_images(x, "x")
    xp = array_namespace(x)
    return xp.mean(x, axis=(2, 3))


def global_avg_pool_backward(dout, x):
    """Gradient of :func:`global_avg_pool`: every position of a channel gets ``dout[n, c] / (H W)``.

    ``d out[n, c] / d x[n, c, y, z] = 1 / (H W)``, so ``dx[n, c, y, z] = dout[n, c] / (H W)``.
    """
    xp = array_namespace(dout, x)
    _check_global_pool(dout, x)
    h, w = x.shape[2], x.shape[3]
    return xp.zeros_like(x) + xp.reshape(dout / (h * w), (*dout.shape, 1, 1))


def global_max_pool(x):
    """The maximum of each channel over its positions: (N, C, H, W) -> (N, C).

    ``out[n, c] = max_{y, z} x[n, c, y, z]`` (PyTorch's ``adaptive_max_pool2d(x, 1)``).  With
    :func:`global_avg_pool` it makes fastai's ``AdaptiveConcatPool2d``: ``concat([max, avg], axis=1)``.
    """
    _check_images(x, "x")
    xp = array_namespace(x)
    return xp.max(x, axis=(2, 3))


def global_max_pool_backward(dout, x):
    """Gradient of :func:`global_max_pool`: ``dout[n, c]`` goes to one maximum of the channel.

    ``d out[n, c] / d x[n, c, y, z]`` is 1 at the maximum and 0 elsewhere.  Of equal maxima the
    first in row-major order takes it, as in PyTorch's ``adaptive_max_pool2d``: that is the
    flattened channel's ``argmax``, which the standard defines as the first occurrence.
    """
    xp = array_namespace(dout, x)
    _check_global_pool(dout, x)
    n, c, h, w = x.shape
    first = xp.argmax(xp.reshape(x, (n, c, h * w)), axis=2)
    onehot = xp.arange(h * w, device=device(x)) == xp.reshape(first, (n, c, 1))
    d = xp.where(onehot, xp.reshape(dout, (n, c, 1)), xp.zeros((n, c, h * w), dtype=dout.dtype, device=device(dout)))
    return xp.reshape(d, (n, c, h, w))


def dropout_mask(rng, shape, p):
    """A boolean keep-mask of ``shape``, each entry kept (True) with probability ``1 - p``.

    Drawn on the host from the seeded ``numpy.random.Generator`` ``rng`` (a ``numpy.ndarray``), so a
    seed gives the same mask on every backend; the caller moves it with ``backend.asarray``.
    """
    _check_p(p)
    return rng.random(shape) >= p


def dropout(x, mask, p):
    """Inverted dropout: ``out = x * mask / (1 - p)``.

    Dividing the kept values by ``1 - p`` keeps the expected value of each entry equal to ``x``
    (``E[mask] = 1 - p``), so evaluation uses the layer as the identity, with no rescaling.
    """
    _check_p(p)
    _check_same(mask, x, "mask", "x")
    xp = array_namespace(x, mask)
    return xp.where(mask, x / (1 - p), xp.zeros_like(x))


def dropout_backward(dout, mask, p):
    """Gradient of :func:`dropout`: ``d out_i / d x_i = mask_i / (1 - p)``, so ``dx = dout * mask / (1 - p)``."""
    _check_p(p)
    _check_same(mask, dout, "mask", "dout")
    xp = array_namespace(dout, mask)
    return xp.where(mask, dout / (1 - p), xp.zeros_like(dout))


def residual_add(a, b):
    """The residual connection: ``out = a + b`` (a block's output plus its shortcut), same shapes."""
    _check_same(a, b, "a", "b")
    return a + b


def residual_add_backward(dout):
    """Gradient of :func:`residual_add`: ``d out / d a = d out / d b = 1``, so ``(da, db) = (dout, dout)``.

    The whole upstream gradient passes to both branches, undiminished: down the shortcut it reaches
    earlier layers without going through the block's convolutions, which is why a deep ResNet
    still trains.  Two new arrays, so that writing into one never changes the other or ``dout``.
    """
    xp = array_namespace(dout)
    return xp.asarray(dout, copy=True), xp.asarray(dout, copy=True)


# -- helpers of the section above: output sizes, padding, slicing, and the checks ------------------

def _out_size(size, kernel, stride, padding):
    """Positions of a window of ``kernel`` moved by ``stride`` over ``size + 2 padding``."""
    return (size + 2 * padding - kernel) // stride + 1


def _window(offset, stride, count):
    """The slice taking ``offset, offset + stride, ...``: ``count`` positions, one per output row."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def _pad(xp, x, padding, value):
    """``x`` (N, C, H, W) with ``padding`` entries of ``value`` added on each side of H and W."""
    if padding == 0:
        return x
    n, c, h, w = x.shape
    x_pad = xp.full((n, c, h + 2 * padding, w + 2 * padding), value, dtype=x.dtype, device=device(x))
    x_pad[:, :, padding:padding + h, padding:padding + w] = x
    return x_pad


def _pad_channels_last(xp, x, padding, value):
    """``x`` (N, C, H, W) as (N, H + 2 padding, W + 2 padding, C), padded with ``value``.

    Turned channels-last first, then padded: the padded copy is written in channels-last memory
    order whatever ``x``'s own (padding in (N, C, H, W) and then permuting would leave every slice
    strided across the channels, and cost as much as gathering channels-first).
    """
    x = xp.permute_dims(x, (0, 2, 3, 1))
    if padding == 0:
        return x
    n, h, w, c = x.shape
    x_pad = xp.full((n, h + 2 * padding, w + 2 * padding, c), value, dtype=x.dtype, device=device(x))
    x_pad[:, padding:padding + h, padding:padding + w, :] = x
    return x_pad


def _im2col(x_pad, kh, kw, stride, oh, ow):
    """The KH*KW strided slices of channels-last ``x_pad``, side by side: (N*OH*OW, KH*KW*C).

    Column ``(a*KW + b)*C + c`` of row ``(n, i, j)`` holds ``x_pad[n, i*s + a, j*s + b, c]``.
    """
    xp = array_namespace(x_pad)
    slices = [x_pad[:, _window(a, stride, oh), _window(b, stride, ow), :] for a in range(kh) for b in range(kw)]
    cols = xp.concat(slices, axis=3)
    return xp.reshape(cols, (x_pad.shape[0] * oh * ow, cols.shape[3]))


def _kernel_rows(w):
    """The kernel (F, C, KH, KW) as ``W.T`` of :func:`conv2d`: (F, KH*KW*C), entry ``(f, (a, b, c))``.

    Built filter by filter, each row a gather of ``w[f]`` turned channels-last (a copy 10x faster
    than building ``W`` (K, F) itself, whose every entry would stride across all of ``w``: 1.4 ms
    against 14 ms for the 512-channel kernels); the products take it transposed, which BLAS does
    without a copy.
    """
    xp = array_namespace(w)
    return xp.reshape(xp.permute_dims(w, (0, 2, 3, 1)), (w.shape[0], w.shape[1] * w.shape[2] * w.shape[3]))


def _per_channel(xp, v, x):
    """A (C,) vector shaped to broadcast along axis 1 of ``x``: (1, C) or (1, C, 1, 1)."""
    return xp.reshape(v, (1, v.shape[0]) + (1,) * (len(x.shape) - 2))


def _check_images(x, name):
    if len(x.shape) != 4:
        raise InputError(f"{name} must be images of shape (N, C, H, W), got {tuple(x.shape)}")


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_conv(x, w, stride, padding):
    _check_images(x, "x")
    if len(w.shape) != 4 or w.shape[1] != x.shape[1]:
        raise InputError(f"w must have shape (F, C, KH, KW) with C = {x.shape[1]} (the channels of x), "
                         f"got {tuple(w.shape)}")
    _check_int(stride, "stride", 1)
    _check_int(padding, "padding", 0)
    for axis, name in ((2, "height"), (3, "width")):
        if x.shape[axis] + 2 * padding < w.shape[axis]:
            raise InputError(f"the kernel's {name} {w.shape[axis]} exceeds the padded image's "
                             f"{x.shape[axis] + 2 * padding}")


def _check_pool(x, kernel, stride, padding):
    _check_images(x, "x")
    _check_int(kernel, "kernel", 1)
    _check_int(stride, "stride", 1)
    _check_int(padding, "padding", 0)
    if padding > kernel // 2:
        raise InputError(f"padding must be at most half the kernel ({kernel // 2}), got {padding}: "
                         f"a window of padding alone has no maximum")
    if min(x.shape[2], x.shape[3]) + 2 * padding < kernel:
        raise InputError(f"the kernel {kernel} exceeds the padded image {tuple(x.shape[2:])} + 2 x {padding}")


def _check_batch_norm(x, gamma, beta, *per_channel):
    """The namespace, the reduced axes and the count ``M`` per channel of a batch-norm input."""
    if len(x.shape) < 2:
        raise InputError(f"x must have a channel axis: (N, C) or (N, C, H, W), got {tuple(x.shape)}")
    c = x.shape[1]
    for v in (gamma, beta, *per_channel):
        if tuple(v.shape) != (c,):
            raise InputError(f"gamma, beta and the running statistics must be ({c},), one per channel of x, "
                             f"got {tuple(v.shape)}")
    axes = (0, *range(2, len(x.shape)))
    m = 1
    for axis in axes:
        m *= x.shape[axis]
    if m == 0:
        raise InputError(f"x {tuple(x.shape)} has no values per channel to normalise")
    return array_namespace(x, gamma, beta, *per_channel), axes, m


def _check_global_pool(dout, x):
    _check_images(x, "x")
    if tuple(dout.shape) != tuple(x.shape[:2]):
        raise InputError(f"dout must be (N, C) = {tuple(x.shape[:2])}, got {tuple(dout.shape)}")


def _check_p(p):
    if not 0 <= p < 1:
        raise InputError(f"the dropout probability p must lie in [0, 1), got {p!r}")


def _check_same(a, b, name_a, name_b):
    if tuple(a.shape) != tuple(b.shape):
        raise InputError(f"{name_a} must be shaped like {name_b} {tuple(b.shape)}, got {tuple(a.shape)}")
