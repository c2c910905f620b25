"""Learners' files for the exercise tests: a right solution in plain NumPy, and single slips of it."""

from __future__ import annotations

SOLUTION = '''\
import numpy as np


def _sigmoid_slope(x):
    e = np.exp(-np.abs(x))
    return e / (1 + e) ** 2


def sigmoid_backward(dout, x):
    return dout * _sigmoid_slope(x)


def mnist_loss_backward(logits, targets):
    return (1 - 2 * targets) * _sigmoid_slope(logits) / logits.size


def linear_backward(dout, x, w, *, need_dx=True):
    dx = dout @ w.T if need_dx else None
    dw = x.T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def relu_backward(dout, x):
    return np.where(x > 0, dout, 0.0)


def binary_cross_entropy_backward(logits, targets):
    e = np.exp(-np.abs(logits))
    sigma = np.where(logits >= 0, 1 / (1 + e), e / (1 + e))
    return (sigma - targets) / logits.size


def softmax_cross_entropy_backward(logits, labels):
    n, k = logits.shape
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    onehot = labels[:, None] == np.arange(k)
    return (p - onehot) / n


def _pad(x, padding, value):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=value)


def conv2d_backward(dout, x, w, *, stride=1, padding=0):
    x_pad = _pad(x, padding, 0.0)
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    oh, ow = dout.shape[2:]
    for a in range(w.shape[2]):
        for b in range(w.shape[3]):
            rows, cols = slice(a, a + stride * (oh - 1) + 1, stride), slice(b, b + stride * (ow - 1) + 1, stride)
            dw[:, :, a, b] = np.einsum("nfij,ncij->fc", dout, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += np.einsum("nfij,fc->ncij", dout, w[:, :, a, b])
    return dx_pad[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]], dw


def batch_norm_backward(dout, x, gamma, *, eps=1e-5):
    axes = (0, 2, 3)
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes, keepdims=True)
    sigma = np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) / sigma
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    dx = gamma[None, :, None, None] / (m * sigma) * (
        m * dout - dbeta[None, :, None, None] - xhat * dgamma[None, :, None, None])
    return dx, dgamma, dbeta


def max_pool2d_backward(dout, x, *, kernel=3, stride=2, padding=1):
    x_pad = _pad(x, padding, -np.inf)
    dx_pad = np.zeros_like(x_pad)
    n, c, oh, ow = dout.shape
    for i in range(oh):
        for j in range(ow):
            rows, cols = slice(i * stride, i * stride + kernel), slice(j * stride, j * stride + kernel)
            window = x_pad[:, :, rows, cols].reshape(n, c, -1)
            chosen = np.arange(window.shape[2]) == window.argmax(axis=2)[..., None]
            dx_pad[:, :, rows, cols] += (chosen * dout[:, :, i, j, None]).reshape(n, c, kernel, kernel)
    return dx_pad[:, :, padding:padding + x.shape[2], padding:padding + x.shape[3]]
'''

#: The reference functions themselves, imported into the learner's file.
REFERENCE = '''\
from numpy_mnist.layers import linear_backward, relu_backward, sigmoid_backward
from numpy_mnist.layers import batch_norm_backward, conv2d_backward, max_pool2d_backward
from numpy_mnist.losses import (binary_cross_entropy_backward, mnist_loss_backward,
                                softmax_cross_entropy_backward)
'''


def slip(old: str, new: str) -> str:
    """:data:`SOLUTION` with one line changed (the line must be there exactly once)."""
    assert SOLUTION.count(old) == 1, old
    return SOLUTION.replace(old, new)


#: name -> (file text, the function that fails, words its hint must contain)
WRONG = {
    "1/N missing": (slip("return (1 - 2 * targets) * _sigmoid_slope(logits) / logits.size",
                         "return (1 - 2 * targets) * _sigmoid_slope(logits)"),
                    "mnist_loss_backward", "the mean's 1/N is missing"),
    "sign flipped": (slip("return (sigma - targets) / logits.size", "return (targets - sigma) / logits.size"),
                     "binary_cross_entropy_backward", "exactly the negative"),
    "w transposed": (slip("dw = x.T @ dout", "dw = dout.T @ x"), "linear_backward", "transpose"),
    "sigma' omitted": (slip("return dout * _sigmoid_slope(x)", "return dout"), "sigmoid_backward", "σ′ is missing"),
    "ReLU mask inverted": (slip("return np.where(x > 0, dout, 0.0)", "return np.where(x <= 0, dout, 0.0)"),
                           "relu_backward", "mask is inverted"),
    "softmax without one-hot": (slip("return (p - onehot) / n", "return p / n"),
                                "softmax_cross_entropy_backward", "one-hot subtraction is missing"),
    "naive sigmoid slope": (slip("return dout * _sigmoid_slope(x)",
                                 "s = 1 / (1 + np.exp(-x))\n    return dout * s * (1 - s)"),
                            "sigmoid_backward", "loses its digits at large |z|"),
    "softmax overflows": (slip("e = np.exp(logits - logits.max(axis=1, keepdims=True))", "e = np.exp(logits)"),
                          "softmax_cross_entropy_backward", "exp overflows"),
    "db not summed": (slip("db = dout.sum(axis=0)", "db = dout"), "linear_backward", "sum over the batch axis"),
    "conv kernel flipped": (slip("dout, w[:, :, a, b])", "dout, w[:, :, -1 - a, -1 - b])"), "conv2d_backward",
                            "dx used the kernel flipped"),
    "conv dw transposed": (slip("x.shape[3]], dw", "x.shape[3]], np.swapaxes(dw, 2, 3)"), "conv2d_backward",
                           "transpose"),
    "batch norm without the mean's term": (slip("m * dout - dbeta[None, :, None, None] - xhat", "m * dout - xhat"),
                                           "batch_norm_backward", "the mean's term is missing"),
    "batch norm without the variance's term": (slip(" - xhat * dgamma[None, :, None, None])", ")"),
                                               "batch_norm_backward", "the variance's term is missing"),
    "max-pool to every tied maximum": (slip("np.arange(window.shape[2]) == window.argmax(axis=2)[..., None]",
                                            "window == window.max(axis=2)[..., None]"), "max_pool2d_backward",
                                       "to every entry equal to its maximum"),
}


def only(text: str, name: str) -> str:
    """``text`` keeping its imports, its helpers (``_name``) and the function ``name``, nothing else."""
    import ast

    tree = ast.parse(text)
    kept = [ast.get_source_segment(text, node) for node in tree.body
            if not isinstance(node, ast.FunctionDef) or node.name == name or node.name.startswith("_")]
    return "\n\n\n".join(kept) + "\n"
