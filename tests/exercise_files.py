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
'''

#: The reference functions themselves, imported into the learner's file.
REFERENCE = '''\
from numpy_mnist.layers import linear_backward, relu_backward, sigmoid_backward
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
}


def only(text: str, name: str) -> str:
    """``text`` keeping its imports, its helpers (``_name``) and the function ``name``, nothing else."""
    import ast

    tree = ast.parse(text)
    kept = [ast.get_source_segment(text, node) for node in tree.body
            if not isinstance(node, ast.FunctionDef) or node.name == name or node.name.startswith("_")]
    return "\n\n\n".join(kept) + "\n"
