# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 4 by hand: MNIST basics in plain array code
#
# This notebook follows chapter 4 of *Deep Learning for Coders with fastai and PyTorch* ("Under the
# Hood: Training a Digit Classifier") step by step, with one difference: there is no autograd. Every
# gradient is derived on paper, written out below in LaTeX, coded by hand in the
# [numpy-mnist](../README.md) package, and then checked live against central finite differences and,
# where PyTorch is installed, against PyTorch's autograd.
#
# Read it beside the book: the sections follow the chapter, from the first look at the data and the
# book's SGD warm-up (the gradient of $x^2$, a roller coaster's speed fitted step by step) to the
# book's ResNet-18 (its convolution, batch norm and max-pool by hand, trained live at a small width)
# and the closing exercise with all ten digits, and each names the book's sections it goes with.
# Everything runs offline on a fresh install (from a clone, `pip install -e ".[notebook]"`): the
# book's 3s and 7s ship inside the package. The ten-digit section needs the full MNIST
# (`numpy-mnist data download`) and says so when it is missing.
#
# The arrays here are NumPy's, on the CPU; a late section times the same training on every backend
# this machine has (CuPy on a GPU, where there is one). The last one hands the derivations over to
# you: exercises that check your own backward functions.

# %%
import platform

import numpy as np
from IPython.display import Image, Markdown, display

import numpy_mnist
from numpy_mnist.backends import BackendUnavailableError, get_backend
from numpy_mnist.plots import figure_png, images_figure, pyplot


def show(fig, width=900):
    # Every picture goes through figure_png: a plain PNG in the notebook, whatever matplotlib's backend,
    # `width` pixels wide (its cropped box plus figure_png's 0.1-inch margins): 900 for a full-width one.
    inches = fig.get_tightbbox(fig.canvas.get_renderer()).width + 0.2
    display(Image(figure_png(fig, dpi=width / inches)))


backend = get_backend("numpy", "float32")      # what training runs on
backend64 = get_backend("numpy", "float64")    # what gradient checks run on
print(f"numpy-mnist {numpy_mnist.__version__}, NumPy {np.__version__}, Python {platform.python_version()}")

# %% [markdown]
# ## The data: 3s and 7s
#
# *In the book: Pixels: The Foundations of Computer Vision.*
#
# The book downloads `MNIST_SAMPLE`, every 3 and every 7 of MNIST as PNG files, and stacks them into
# tensors. numpy-mnist bundles the same images (checked by SHA-256 on every load) and returns them
# already stacked the book's way: pixels scaled to $[0, 1]$, each image flattened to a row of
# $28 \times 28 = 784$ numbers, the 3s first, then the 7s; the target is 1 for a 3 and 0 for a 7.

# %%
from numpy_mnist.data import load_mnist_sample

train_x, train_y, valid_x, valid_y = load_mnist_sample()
for name, a in [("train_x", train_x), ("train_y", train_y), ("valid_x", valid_x), ("valid_y", valid_y)]:
    print(f"{name:8} {a.shape!s:13} {a.dtype}")
print(f"train: {int(train_y.sum())} threes, {int(len(train_y) - train_y.sum())} sevens; "
      f"valid: {int(valid_y.sum())} threes, {int(len(valid_y) - valid_y.sum())} sevens")

# %%
is3 = train_y[:, 0] == 1
threes, sevens = train_x[is3], train_x[~is3]
show(images_figure([*threes[:6], *sevens[:6]], ["3"] * 6 + ["7"] * 6, ncols=6, size=1.1))

# %% [markdown]
# An image is just numbers. Here is a corner of the first 3, as the book shows one, in the 0-255
# values of the file:

# %%
print((threes[0].reshape(28, 28)[4:14, 4:18] * 255).round().astype(int))

# %% [markdown]
# The book's stacking: `torch.stack` of all 3s gives a rank-3 tensor, one $28 \times 28$ slice per
# image; `view(-1, 28*28)` flattens it into rows; the targets become a column with `unsqueeze(1)`.
# With the bundled arrays that is a reshape, and the targets are already that column of shape $(N, 1)$.

# %%
stacked_threes = threes.reshape(-1, 28, 28)
stacked_sevens = sevens.reshape(-1, 28, 28)
print("stacked_threes:", stacked_threes.shape, " stacked_sevens:", stacked_sevens.shape)
print("train_x = cat([threes, sevens]).view(-1, 784):",
      np.array_equal(np.concatenate([stacked_threes, stacked_sevens]).reshape(-1, 784), train_x))
print("train_y, first and last rows:", train_y[:3, 0], train_y[-3:, 0], "shape", train_y.shape)

# %% [markdown]
# ## Pixel similarity: the baseline
#
# *In the book: First Try: Pixel Similarity; Computing Metrics Using Broadcasting.*
#
# Before any learning, the book builds an "ideal" 3 and 7, the mean of every training image of each,
# and calls a validation image a 3 when it is closer to the mean 3 than to the mean 7. Two distances:
#
# $$\text{L1}(a, b) = \frac{1}{784}\sum_i |a_i - b_i| \qquad\qquad
#   \text{RMSE}(a, b) = \sqrt{\frac{1}{784}\sum_i (a_i - b_i)^2}$$

# %%
mean3, mean7 = stacked_threes.mean(0), stacked_sevens.mean(0)
show(images_figure([mean3, mean7], ["the mean 3", "the mean 7"], size=2), width=500)

# %%
from numpy_mnist.baseline import mnist_distance, pixel_similarity

a_3 = threes[1]
for kind in ("l1", "rmse"):
    to3 = float(mnist_distance(a_3[None], mean3.reshape(-1), kind)[0])
    to7 = float(mnist_distance(a_3[None], mean7.reshape(-1), kind)[0])
    print(f"one 3, {kind:4}: distance to the mean 3 {to3:.4f}, to the mean 7 {to7:.4f}")
print()
print(f"{'distance':8}  {'valid 3s':>8}  {'valid 7s':>8}  {'overall':>8}")
for kind in ("l1", "rmse"):
    r = pixel_similarity(train_x, train_y, valid_x, valid_y, kind)
    print(f"{kind:8}  {r.accuracy_3:8.4f}  {r.accuracy_7:8.4f}  {r.accuracy:8.4f}")

# %% [markdown]
# With L1 that is the book's **0.9168** on the valid 3s and **0.9854** on the valid 7s: a good
# baseline, and nothing was learned. The rest of the chapter learns weights instead.

# %% [markdown]
# ## SGD by hand, first on $x^2$
#
# *In the book: Stochastic Gradient Descent (SGD); Calculating Gradients.*
#
# Before it learns any weights, the book shows what a gradient is on the simplest function there is,
# $f(x) = x^2$. It asks PyTorch: `xt = tensor(3.).requires_grad_()`, `yt = f(xt)`,
# `yt.backward()`, and `xt.grad` holds the slope of $f$ at 3. Here there is no `backward`: the
# derivative is worked out on paper,
#
# $$\frac{d}{dx}\,x^2 = \lim_{h \to 0} \frac{(x + h)^2 - x^2}{h} = \lim_{h \to 0}\,(2x + h) = 2x,$$
#
# and written by hand in `numpy_mnist.warmup.square_gradient`. For a vector the book sums $f$ first
# (a gradient is taken of one number); each $x_i$ then gets its own $2x_i$. Beside it, the central
# difference $\bigl(f(x + h) - f(x - h)\bigr) / 2h$ measures the same slope numerically.

# %%
from numpy_mnist.gradcheck import numerical_gradient
from numpy_mnist.warmup import square, square_gradient

xt = np.array(3.0)
print(f"f(3) = {float(square(xt)):g}; the gradient at 3: {float(square_gradient(xt)):g}")
xt = np.array([3.0, 4.0, 10.0])
print(f"sum of f at (3, 4, 10) = {float(square(xt).sum()):g}; "
      f"the gradient: {', '.join(f'{g:g}' for g in square_gradient(xt))}")
fd = numerical_gradient(lambda v: float(square(v).sum()), xt)
print(f"central differences say: {', '.join(f'{g:.6f}' for g in fd)}")

# %% [markdown]
# The book's 6, and then 6, 8 and 20. The gradient says which way, and how steeply, $f$ rises; a
# step of SGD goes the other way, by the learning rate times the gradient:
# $w \leftarrow w - \text{lr} \times \partial L / \partial w$.

# %% [markdown]
# ## An End-to-End SGD Example: a roller coaster's speed
#
# *In the book: Stepping with a Learning Rate; An End-to-End SGD Example; Summarizing Gradient Descent.*
#
# The book measures the speed of a roller coaster over 20 seconds as it goes over a hump: fast, then
# slow at the top, then fast again. Its data, `time = torch.arange(0, 20)` and
# `speed = torch.randn(20)*3 + 0.75*(time-9.5)**2 + 1`, comes here from `roller_coaster`, with the
# noise drawn by a seeded NumPy generator. A quadratic should fit it, judged by the mean squared error:
#
# $$p_i = a\,t_i^2 + b\,t_i + c, \qquad L = \frac{1}{n}\sum_{i=1}^{n} (p_i - y_i)^2.$$
#
# The book's `loss.backward()` finds $\partial L / \partial(a, b, c)$. By hand, with
# $\partial L / \partial p_i = 2(p_i - y_i)/n$ and $\partial p_i / \partial(a, b, c) = (t_i^2, t_i, 1)$:
#
# $$\frac{\partial L}{\partial a} = \operatorname{mean}\bigl(2(p - y)\,t^2\bigr), \qquad
#   \frac{\partial L}{\partial b} = \operatorname{mean}\bigl(2(p - y)\,t\bigr), \qquad
#   \frac{\partial L}{\partial c} = \operatorname{mean}\bigl(2(p - y)\bigr).$$
#
# (`numpy_mnist.warmup.quadratic_mse_gradient`; the test-suite holds it to finite differences and
# to PyTorch's autograd of the book's own code, within $10^{-10}$ relative in float64.) The book's
# seven steps: **1** initialise the parameters at random; **2** predict; **3** the loss; **4** the
# gradient; **5** step, $(a, b, c) \leftarrow (a, b, c) - \text{lr} \times \text{gradient}$; **6**
# repeat from 2; **7** stop. Steps 1 to 4, once:

# %%
from numpy_mnist.warmup import BOOK_LR, fit, init_params, mse, quadratic, quadratic_mse_gradient, roller_coaster

time, speed = roller_coaster(seed=0)
params = init_params(seed=4)                          # 1. initialise: a draw that starts, like the book's, far off
preds = quadratic(time, params)                       # 2. predict
print("speed:", speed.round(1))
print("(a, b, c) at the start:", params.round(4))
print(f"loss before training: {float(mse(preds, speed)):.2f}")                    # 3. the loss
print("gradient (dL/da, dL/db, dL/dc):", quadratic_mse_gradient(time, params, speed).round(2))  # 4. the gradient

plt = pyplot()


def show_preds(ax, preds, title):
    # The book's show_preds: the data in blue, the quadratic's predictions in red.
    ax.scatter(time, speed, s=12, label="speed")
    ax.scatter(time, preds, s=12, color="red", label="prediction")
    ax.set(title=title, xlabel="time (s)", ylabel="speed")


fig, ax = plt.subplots(figsize=(5, 3))
show_preds(ax, preds, "before training")
ax.legend()
show(fig)

# %% [markdown]
# Step 5, repeated ten times at the book's learning rate, $10^{-5}$ (`apply_step` is the book's
# function of that name: steps 2 to 5, returning the new parameters; `fit` repeats it and stops).
# The predictions as the steps go by, the book's row of four plots:

# %%
run = fit(params, time, speed, lr=BOOK_LR, steps=10)               # 5. step, 6. repeat, 7. stop after 10
for i, step in enumerate(run):
    print(f"lr {BOOK_LR:g}, step {i}: loss {step.loss:.2f}")
print("(a, b, c) after 10 steps:", run[-1].params.round(4))
fig, axs = plt.subplots(1, 4, figsize=(12, 3), sharey=True)
for ax, i in zip(axs, [0, 1, 2, 9]):
    show_preds(ax, run[i].preds, f"step {i}: loss {run[i].loss:.0f}")
axs[0].legend()
fig.tight_layout()
show(fig)

# %% [markdown]
# The loss falls fast, then slowly: $a$, multiplied by $t^2$ up to 361, has by far the steepest
# slope and is fitted in a few steps; $b$ and $c$ barely move at this rate. The book then asks what
# a different learning rate does. $L$ is a parabola in $a$ with curvature
# $\partial^2 L / \partial a^2 = 2\,\operatorname{mean}(t^4)$; a step lands nearer its bottom only
# while $\text{lr} \times$ curvature $< 2$. At 100 times the book's rate it does not:

# %%
curvature = 2 * float(np.mean(time**4))
for lr in (BOOK_LR, 100 * BOOK_LR):
    print(f"lr {lr:g}: lr x curvature = {lr * curvature:.2f}")
big = fit(init_params(seed=4), time, speed, lr=100 * BOOK_LR, steps=10)
for i, step in enumerate(big):
    print(f"lr {100 * BOOK_LR:g}, step {i}: loss {step.loss:.4g}")

# %% [markdown]
# Each step jumps across the parabola to a point about $|1 - \text{lr} \times \text{curvature}| \approx 55$
# times further from its bottom, so the loss grows about $55^2 \approx 3{,}000$-fold a step: it
# diverges. Too small a rate wastes steps, too large a one never lands. The same seven steps now
# train a model of the digits.

# %% [markdown]
# ## `init_params` and `linear1`
#
# *In the book: the start of The MNIST Loss Function.*
#
# The book's first model gives each pixel a weight and adds a bias: for one image $x$ (a row of 784
# pixels) the prediction is $x \cdot w + b$; for all of them at once it is a matrix product,
# $XW + b$ with $X$ of shape $(N, 784)$, $W$ of shape $(784, 1)$ and $b$ of shape $(1,)$. `init_params`
# draws them from a standard normal distribution; `numpy_mnist.models.linear1` does the same (drawn
# with `numpy.random.default_rng(seed)`, so a seed gives the same model on every backend) and keeps
# them in `model.params`.

# %%
from numpy_mnist.layers import linear
from numpy_mnist.models import linear1

model = linear1(seed=42, backend=backend)
weights, bias = model.params["weights"], model.params["bias"]
print({name: p.shape for name, p in model.params.items()})

one = float((train_x[0] * weights[:, 0]).sum() + bias[0])    # one image: sum of pixel * weight, plus bias
print(f"prediction for the first image: {one:.4f}")
preds = linear(train_x, weights, bias)                      # all 12,396 images at once: train_x @ weights + bias
print(f"all of them by @: shape {preds.shape}, the first {float(preds[0, 0]):.4f}")

# %% [markdown]
# ## Accuracy, and why it cannot be a loss
#
# *In the book: The MNIST Loss Function.*
#
# A prediction above 0 says "3" (after the sigmoid below, a probability above 0.5). Accuracy counts
# how often that is right. To learn, the weights must move in the direction that improves the
# result, which means a gradient. But accuracy only changes when some prediction crosses 0: nudge a
# weight a little and it stays exactly where it was, so its gradient is 0 almost everywhere and SGD
# would never move. The book's `mnist_loss` (next section) moves with every nudge.

# %%
from numpy_mnist.metrics import batch_accuracy
from numpy_mnist.plots import nudge_figure
from numpy_mnist.why_not_accuracy import centre_pixel, nudge_one_weight

print(f"accuracy of the random model on the training set: {float(batch_accuracy(preds, train_y)):.4f}")

model64 = linear1(seed=42, backend=backend64)
vx, vy = backend64.asarray(valid_x), backend64.asarray(valid_y)
print(f"\n{'nudge':>8}  {'accuracy':>8}  {'mnist_loss':>12}   (the weight of the centre pixel, valid set)")
for r in nudge_one_weight(model64, vx, vy, index=centre_pixel()):
    print(f"{r.delta:>+8.0e}  {r.accuracy:8.4f}  {r.loss:12.8f}")
sweep = nudge_one_weight(model64, vx, vy, index=centre_pixel(), deltas=[d / 50 for d in range(-50, 51)])
show(nudge_figure(sweep))

# %% [markdown]
# ## `mnist_loss` and `sigmoid`
#
# *In the book: The MNIST Loss Function; Sigmoid.*
#
# The sigmoid squashes any number into $(0, 1)$:
# $\sigma(z) = \dfrac{1}{1 + e^{-z}}$. The book's loss measures how far each prediction is from its
# target: $1 - \sigma(z)$ for a 3, $\sigma(z)$ for a 7, averaged. The book's example has three images
# with targets `[1, 0, 1]` and predictions (already through the sigmoid) `[0.9, 0.4, 0.2]`: the last
# one, a 3 predicted at 0.2, is badly wrong.
#
# numpy-mnist's losses take the raw outputs (logits), never probabilities, so that the sigmoid is
# applied exactly once, inside the loss. To reproduce the book's table we turn its probabilities back
# into logits with the inverse of the sigmoid, $z = \log\frac{p}{1-p}$.

# %%
from numpy_mnist.layers import sigmoid
from numpy_mnist.losses import mnist_loss

trgts = np.array([[1.0], [0.0], [1.0]])
prds = np.array([[0.9], [0.4], [0.2]])
logits = np.log(prds / (1 - prds))
print("sigmoid(logits)             ", sigmoid(logits)[:, 0].round(4))
print("where(trgts == 1, 1-p, p)   ", np.where(trgts == 1, 1 - prds, prds)[:, 0].round(4))
print(f"mnist_loss                   {float(mnist_loss(logits, trgts)):.4f}")
prds2 = np.array([[0.9], [0.4], [0.8]])          # the third image now predicted 0.8: right, and confident
print(f"mnist_loss, third at 0.8     {float(mnist_loss(np.log(prds2 / (1 - prds2)), trgts)):.4f}")

# %% [markdown]
# The book's **0.4333**, and **0.2333** once the third prediction improves: the loss went down as the
# prediction got better, which is what a loss must do. And the sigmoid, drawn:

# %%
plt = pyplot()
z = np.linspace(-6, 6, 241)
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.plot(z, sigmoid(z), color="tab:blue")
ax.set(xlabel="z", ylabel="sigmoid(z)", title="sigmoid: any number into (0, 1)")
ax.grid(alpha=0.3)
show(fig)

# %% [markdown]
# ## Every derivative the code uses
#
# *In the book: The MNIST Loss Function onwards, where `loss.backward()` computes every gradient.*
#
# In the book, `loss.backward()` computes every gradient. Here each one is derived below and written
# by hand in `numpy_mnist.layers` and `numpy_mnist.losses` as a `*_backward` function; the models chain
# them. $M$ is the number of predictions a loss averages over, $G$ the upstream gradient
# $\partial L / \partial(\text{output})$ a layer receives.
#
# **Linear**, $Z = XW + b$ with $X$: $(N, D)$, $W$: $(D, K)$, $b$: $(K)$. Since
# $Z_{nk} = \sum_i X_{ni} W_{ik} + b_k$, each weight touches every row's output:
#
# $$\frac{\partial L}{\partial W} = X^\top G, \qquad \frac{\partial L}{\partial b} = \sum_n G_{n,:},
# \qquad \frac{\partial L}{\partial X} = G\, W^\top .$$
#
# **Sigmoid**, $\sigma(z) = 1/(1 + e^{-z})$:
#
# $$\sigma'(z) = \frac{e^{-z}}{(1 + e^{-z})^2} = \sigma(z)\,\bigl(1 - \sigma(z)\bigr).$$
#
# (The code computes it as $e/(1+e)^2$ with $e = e^{-|z|}$, which keeps every digit where $\sigma(z)$
# rounds to 1.)
#
# **`mnist_loss`**. With $1 - \sigma(z) = \sigma(-z)$ and the sign $s = 1 - 2t$ ($-1$ for a 3, $+1$
# for a 7), the book's `where(t == 1, 1 - p, p).mean()` is
#
# $$L = \frac{1}{M}\sum_n \sigma(s_n z_n), \qquad
# \frac{\partial L}{\partial z_n} = \frac{s_n\, \sigma'(z_n)}{M} \quad(\sigma' \text{ is even}).$$
#
# A confident prediction, right or wrong, sits where $\sigma'$ is nearly 0 and gets almost no push.
#
# **Binary cross-entropy**, the loss the book points to next. With
# $\operatorname{softplus}(z) = \log(1 + e^z)$, $\log\sigma(z) = -\operatorname{softplus}(-z)$,
# $\log(1 - \sigma(z)) = -\operatorname{softplus}(z)$ and
# $\operatorname{softplus}(z) - \operatorname{softplus}(-z) = z$:
#
# $$L = -\frac{1}{M}\sum_n \bigl[t_n \log\sigma(z_n) + (1 - t_n)\log(1 - \sigma(z_n))\bigr]
#     = \frac{1}{M}\sum_n \bigl[\operatorname{softplus}(z_n) - t_n z_n\bigr], \qquad
# \frac{\partial L}{\partial z_n} = \frac{\sigma(z_n) - t_n}{M}.$$
#
# A confident wrong answer gets the full push, unlike with `mnist_loss`.
#
# **ReLU**, $\operatorname{relu}(x) = \max(x, 0)$: $\;\partial\operatorname{relu}/\partial x = [x > 0]$
# (taken as 0 at the kink $x = 0$, as PyTorch does).
#
# **Softmax cross-entropy**, for ten digits: $p_n = \operatorname{softmax}(z_n)$,
# $p_{nk} = e^{z_{nk}} / \sum_j e^{z_{nj}}$, and
#
# $$L = \frac{1}{N}\sum_n \Bigl[\log\sum_k e^{z_{nk}} - z_{n, y_n}\Bigr], \qquad
# \frac{\partial L}{\partial z_{nj}} = \frac{p_{nj} - [j = y_n]}{N}.$$
#
# The softmax's Jacobian is never formed: through the log it collapses to "probability minus one-hot".
#
# **`simple_net`** chains them: $h = XW_1 + b_1$, $a = \operatorname{relu}(h)$, $z = aW_2 + b_2$, so
# with $G_z = \partial L/\partial z$ from the loss:
# $\partial W_2 = a^\top G_z$, $\partial b_2 = \sum_n G_z$, $G_a = G_z W_2^\top$,
# $G_h = G_a \odot [h > 0]$, $\partial W_1 = X^\top G_h$, $\partial b_1 = \sum_n G_h$.
#
# ### Checked live
#
# Each formula against what the function itself says about its slope, the central difference
#
# $$\frac{f(x + h\,e_i) - f(x - h\,e_i)}{2h} = \frac{\partial f}{\partial x_i} + O(h^2), \qquad h = 10^{-6},$$
#
# in float64 (float32 cannot resolve a difference this small), entry by entry
# (`numpy_mnist.gradcheck.check_gradient`), and, where PyTorch is installed, against its autograd on
# the same expression. For an array-valued layer the function checked is $\sum G \odot f(x)$ with a
# random $G$. The table gives the worst relative error over all entries: finite differences, whose
# own rounding is magnified by $1/h$, agree to about $10^{-8}$. The line under the table says what
# PyTorch found, when it ran.

# %%
from numpy_mnist import gradcheck as gc
from numpy_mnist import model_check, torch_twin
from numpy_mnist.layers import linear_backward, relu, relu_backward, sigmoid_backward
from numpy_mnist.losses import (
    binary_cross_entropy,
    binary_cross_entropy_backward,
    mnist_loss_backward,
    softmax_cross_entropy,
    softmax_cross_entropy_backward,
)

rng = np.random.default_rng(0)
N, D, K = 6, 5, 4
x, w, b = rng.standard_normal((N, D)), rng.standard_normal((D, K)), rng.standard_normal(K)
G = rng.standard_normal((N, K))                                       # the upstream gradient of a layer
z = rng.uniform(-6, 6, (N, K))                                        # sigmoid inputs where it is not flat
h = rng.choice([-1.0, 1.0], (N, K)) * rng.uniform(0.1, 2, (N, K))      # ReLU inputs away from the kink
z1, t1 = rng.uniform(-4, 4, (N, 1)), rng.integers(0, 2, (N, 1)).astype(float)
labels = rng.integers(0, K, N)

dx, dw, db = linear_backward(G, x, w)
# (what is checked, f of the input, the input, our gradient, upstream G or None for a loss, PyTorch's f)
cases = [
    ("linear, d/dX", lambda a: linear(a, w, b), x, dx, G, lambda a, T: a @ T(w) + T(b)),
    ("linear, d/dW", lambda a: linear(x, a, b), w, dw, G, lambda a, T: T(x) @ a + T(b)),
    ("linear, d/db", lambda a: linear(x, w, a), b, db, G, lambda a, T: T(x) @ T(w) + a),
    ("sigmoid", sigmoid, z, sigmoid_backward(G, z), G, lambda a, T: torch_twin.sigmoid(a)),
    ("ReLU", relu, h, relu_backward(G, h), G, lambda a, T: a.clamp(min=0)),
    ("mnist_loss", lambda a: mnist_loss(a, t1), z1, mnist_loss_backward(z1, t1), None,
     lambda a, T: torch_twin.LOSSES["mnist_loss"](a, T(t1))),
    ("binary cross-entropy", lambda a: binary_cross_entropy(a, t1), z1, binary_cross_entropy_backward(z1, t1),
     None, lambda a, T: torch_twin.LOSSES["bce"](a, T(t1))),
    ("softmax cross-entropy", lambda a: softmax_cross_entropy(a, labels), z,
     softmax_cross_entropy_backward(z, labels), None,
     lambda a, T: torch_twin.LOSSES["cross_entropy"](a, T(labels).long())),
]


def torch_gradient(torch_f, at, upstream):
    # PyTorch's autograd of the same expression (float64); called only where PyTorch is installed.
    import torch

    a = torch.tensor(at, requires_grad=True)
    out = torch_f(a, torch.tensor)
    scalar = out if upstream is None else (out * torch.tensor(upstream)).sum()
    return torch.autograd.grad(scalar, a)[0].numpy()


with_torch = torch_twin.available()
torch_column = " vs PyTorch autograd |" if with_torch else ""
rows = ["| derivative | worst relative error vs finite differences |" + torch_column, "|---|---|" + "---|" * with_torch]
all_ok = True
for name, f, at, ours, upstream, torch_f in cases:
    fd = gc.check_gradient(f, at, ours, dout=upstream, options=gc.GradCheckOptions(name))
    row = f"| {name} | {fd.rel_error:.1e} |"
    all_ok &= fd.ok
    if with_torch:
        pt = gc.compare(name, ours, torch_gradient(torch_f, at, upstream), rtol=gc.TORCH_RTOL, atol=1e-300)
        all_ok &= pt.ok
        row += f" {pt.rel_error:.1e} |"
    rows.append(row)
display(Markdown("\n".join(rows)))
if with_torch:
    print("every derivative agrees" if all_ok else "MISMATCH: see the table",
          f"(tolerances: {gc.DEFAULT_RTOL:.0e} against finite differences, {gc.TORCH_RTOL:.0e} against PyTorch, "
          "which agrees to the last few bits: the same arithmetic in another order)")
else:
    print("every derivative agrees with finite differences" if all_ok else "MISMATCH: see the table",
          f"(tolerance {gc.DEFAULT_RTOL:.0e}); PyTorch is not installed, so there is no autograd column")

# %% [markdown]
# The same for whole models on a batch of real images: `model.loss_and_grads(x, y)` runs the forward
# pass and then every backward above, and `numpy_mnist.model_check.check_model` compares each parameter's
# gradient with finite differences of the model's own loss and, where it is installed, with PyTorch: every entry of
# `linear1`'s 785 parameters, and of `simple_net`'s all but its 23,520 first-layer weights, which
# are checked along 16 random directions and at 16 single entries (the largest and 15 random ones).
# This is what `numpy-mnist gradcheck` prints.

# %%
from numpy_mnist.models import simple_net

batch = np.sort(np.random.default_rng(1).choice(len(train_x), 64, replace=False))
xb, yb = train_x[batch].astype(np.float64), train_y[batch].astype(np.float64)
rows = ["| model | loss | parameter | vs finite differences |" + torch_column,
        "|---|---|---|---|" + "---|" * with_torch]
for make, loss in [(linear1, "mnist_loss"), (simple_net, "mnist_loss"), (simple_net, "bce")]:
    net = make(seed=0, backend=backend64, loss=loss)
    # finite differences mean nothing at a kink: leave out the rows with a hidden unit near one
    keep = ~model_check.rows_near_relu_kink(net, xb, model_check.kink_margin(xb))
    check = model_check.check_model(net, xb[keep], yb[keep])
    for p, fd in check.finite_differences.items():
        pt = "" if check.pytorch is None else f" {check.pytorch[p].rel_error:.1e} |"
        rows.append(f"| {make.__name__} | {loss} | {p} {fd.shape} | {fd.rel_error:.1e} |{pt}")
    assert check.ok, check.failures
display(Markdown("\n".join(rows)))
if not with_torch:
    print("PyTorch is not installed: compared with finite differences only")

# %% [markdown]
# ## Pictures of what the gradient says
#
# *Not in the book: what the gradient looks like.*
#
# `linear1` has one weight per pixel, so its weights, and their gradient, are $28 \times 28$ pictures.
# Below, the gradient of the loss for a batch of 3s, a batch of 7s and a mixed batch, drawn as the
# step SGD takes, $-\partial L / \partial W$: red pixels are weights the step raises, blue ones it lowers.
# For 3s the step raises the weights where 3s have ink, which raises their predictions; for 7s it
# lowers the weights where 7s have ink. The border stays white: those pixels are always 0, so their
# gradient $X^\top G$ is 0. Each picture has its own colour scale, as their sizes differ (printed
# below): `mnist_loss` pushes each image by the sigmoid's slope at its logit, which is largest for
# logits near 0 and tiny for confident ones, right or wrong.

# %%
from numpy_mnist.data import DataLoader

model = linear1(seed=42, backend=backend)
mixed = np.random.default_rng(0).choice(len(train_x), 256, replace=False)
steps = []
for which in (np.arange(256), len(train_x) - 1 - np.arange(256), mixed):        # 3s come first, 7s last
    xb, yb = backend.asarray(train_x[which]), backend.asarray(train_y[which])
    loss, grads = model.loss_and_grads(xb, yb)
    steps.append(-backend.to_host(grads["weights"]))
names = ["256 threes", "256 sevens", "a mixed batch"]
print("size of the gradient |dL/dW|:", ", ".join(f"{n} {np.linalg.norm(g):.4f}" for n, g in zip(names, steps)))
show(images_figure(steps, [f"step for {n}" for n in names], symmetric=True, shared=False, size=2.2))

# %% [markdown]
# And the weights themselves, before and after 20 epochs of training (the `Learner` is taken apart in
# the next section). At the start they are noise, `init_params`' standard normal draws, and after
# training they still look like it: the steps are small beside weights of size 1, and the border
# pixels, always 0, are never trained at all. The picture is in the difference (on its own colour
# scale): what a 3 has and a 7 lacks in red, the other way round in blue.

# %%
from numpy_mnist.learner import Learner
from numpy_mnist.optim import SGD

train_dl = DataLoader(train_x, train_y, batch_size=256, backend=backend)
valid_dl = DataLoader(valid_x, valid_y, batch_size=256, backend=backend)
model = linear1(seed=42, backend=backend)
start = backend.to_host(model.params["weights"])
Learner(model, train_dl, valid_dl, SGD(model.params, lr=1.0)).fit(20)
after = backend.to_host(model.params["weights"])
print(f"largest weight {np.abs(after).max():.2f}, largest change {np.abs(after - start).max():.2f}")
show(images_figure([start, after, after - start], ["weights at the start", "after 20 epochs", "the change"],
                   symmetric=True, shared=False, size=2.2))

# %% [markdown]
# ## Stochastic gradient descent, step by step
#
# *In the book: Stochastic Gradient Descent (SGD); SGD and Mini-Batches; Putting It All Together;
# Creating an Optimizer.*
#
# The seven steps of the roller coaster, now with 785 parameters instead of 3: initialise the
# weights; predict; compute the loss; compute the gradient (every backward above, by hand); step
# every weight by $-\,\text{lr} \times \text{gradient}$; repeat; stop. Here they are on one batch,
# written out, with the book's learning rate of 1 for `linear1`:

# %%
model = linear1(seed=42, backend=backend)                           # 1. initialise
xb, yb = backend.asarray(train_x[mixed]), backend.asarray(train_y[mixed])
lr = 1.0
for step in range(6):                                                # 6. repeat
    logits = model.forward(xb)                                       # 2. predict
    loss, grads = model.loss_and_grads(xb, yb)                       # 3. loss, 4. gradient (by hand)
    for name, g in grads.items():                                    # 5. step: what SGD.step does
        model.params[name] -= lr * g
    print(f"step {step}: loss {loss:.4f}, accuracy {float(batch_accuracy(logits, yb)):.4f}")

# %% [markdown]
# Then the book's pieces, one by one. `DataLoader` cuts the data into minibatches (256 rows, in
# order, as the book does); `SGD` is its `BasicOptim`, the step that trains the parameters;
# `train_epoch` and `validate_epoch` are its functions of the same names.

# %%
from numpy_mnist.learner import train_epoch, validate_epoch

xb, yb = next(iter(train_dl))
print(f"{train_dl}: {len(train_dl)} batches, the first: x {xb.shape}, y {yb.shape}")

model = linear1(seed=42, backend=backend)
opt = SGD(model.params, lr=1.0)
for epoch in range(1, 6):
    train_loss = train_epoch(model, train_dl, opt)
    valid_loss, accuracy = validate_epoch(model, valid_dl)
    print(f"epoch {epoch}: train loss {train_loss:.4f}, valid loss {valid_loss:.4f}, accuracy {accuracy:.4f}")

# %% [markdown]
# `Learner` packs the loop, as the book's `Learner` does: `fit(epochs)` returns the history, one
# record per epoch, and `learning_curve_figure` draws it. 20 epochs of `linear1` at learning rate 1:

# %%
from numpy_mnist.plots import learning_curve_figure

model = linear1(seed=42, backend=backend)
learn = Learner(model, train_dl, valid_dl, SGD(model.params, lr=1.0))
history = learn.fit(20)
print(f"before training: valid loss {learn.start.valid_loss:.4f}, accuracy {learn.start.accuracy:.4f}")
print(f"after {len(history)} epochs: valid loss {history[-1].valid_loss:.4f}, accuracy {history[-1].accuracy:.4f}")
show(learning_curve_figure(history, "linear1, lr 1.0, batch 256"))

# %% [markdown]
# ## Adding a nonlinearity: `simple_net`
#
# *In the book: Adding a Nonlinearity.*
#
# A second linear layer after a ReLU: 784 pixels, 30 hidden units, 1 output. The book trains it for
# 40 epochs at learning rate 0.1 (this is also what `numpy-mnist train` does by default).

# %%
model = simple_net(hidden=30, seed=0, backend=backend)
learn = Learner(model, train_dl, valid_dl, SGD(model.params, lr=0.1))
history = learn.fit(40)
print(f"simple_net after {len(history)} epochs: accuracy {history[-1].accuracy:.4f}")
show(learning_curve_figure(history, "simple_net (30 hidden), lr 0.1, batch 256"))

# %% [markdown]
# ### When a run goes wrong
#
# A learning rate far too large need not end in a NaN. At $10^{30}$ the first step throws every
# logit of `linear1` so far from 0 that the sigmoid's slope is exactly 0 in float32: all gradients
# vanish and the model answers "3" forever. With binary cross-entropy the same rate overshoots
# instead, and the loss ends $10^{28}$ times where it started. `numpy_mnist.diagnosis.diagnose` reads
# a history and says which; `numpy-mnist train` prints its line after such a run.

# %%
from numpy_mnist.diagnosis import chance_accuracy, diagnose
from numpy_mnist.training import fit

for loss in ("mnist_loss", "bce"):
    net = linear1(seed=0, backend=backend, loss=loss)
    learn = Learner(net, train_dl, valid_dl, SGD(net.params, lr=1e30))
    history = fit(learn, 3)  # as `numpy-mnist train` runs it: NumPy's overflow warnings kept out
    found = diagnose(history, chance=chance_accuracy(valid_y), lr=1e30, start_loss=learn.start.valid_loss,
                     suggested_lr=0.1, model_kind=net.kind, loss=loss)
    print(f"linear1, {loss}, lr 1e30: accuracy {history[-1].accuracy:.4f}, valid loss {history[-1].valid_loss:.4g}")
    print(f"  -> {found}\n")

# %% [markdown]
# ## Going deeper: the book's ResNet-18, by hand
#
# *In the book: Going Deeper.*
#
# The chapter's last step trains a real image model:
# `cnn_learner(dls, resnet18, pretrained=False, loss_func=F.cross_entropy, metrics=accuracy)` and
# `learn.fit_one_cycle(1, 0.1)`, 0.997 after one epoch. Here it is `numpy_mnist.models.resnet18`:
# torchvision's ResNet-18 body (a 7 x 7 convolution, a max-pool, then eight residual blocks of 3 x 3
# convolutions, each followed by a batch norm) under fastai's head, trained with Adam under the
# one-cycle schedule (`numpy_mnist.optim.Adam`, `OneCycle`). Its new pieces are the classic hard
# backward passes: the convolution, batch norm and max-pool, each written by hand in
# `numpy_mnist.layers` as a forward/backward pair like the ones above. This section takes the
# convolution apart, derives batch norm's backward, checks all three live, trains the network at a
# small width and quotes the full-width run.
#
# ### The convolution as shifted matrix products
#
# A convolution (a cross-correlation, as in PyTorch) slides a kernel $w$ of shape
# $(F, C, K, K)$ over the input $x$ of shape $(N, C, H, W)$, zero-padded to $x_\text{pad}$, in steps
# of the stride $s$:
#
# $$\text{out}[n, f, i, j] = \sum_{c}\sum_{a=0}^{K-1}\sum_{b=0}^{K-1}
#   x_\text{pad}[n, c, is + a, js + b]\; w[f, c, a, b].$$
#
# Fix one kernel offset $(a, b)$: the entries $x_\text{pad}[n, c, is + a, js + b]$ over every output
# position $(i, j)$ are one strided slice of the input, the input *shifted* by $(a, b)$. So the
# convolution is a sum of $K^2$ shifted slices, each multiplied by the kernel's weights at that
# offset (a matrix product over the channels). Lay the $K^2$ slices side by side instead and the
# sum over $(c, a, b)$ becomes one axis: the unfolded patches `cols`, one row per output position,
# times the kernel reshaped to a matrix, **one** matrix product (im2col). That is how `conv2d`
# computes it, and where most of a ResNet's time goes. On a 5 x 5 image and a 3 x 3 kernel:

# %%
from numpy_mnist.layers import conv2d

rng = np.random.default_rng(0)
x = rng.integers(0, 10, (1, 1, 5, 5)).astype(float)
w = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])   # a Sobel kernel: left minus right
out = conv2d(x, w)
print("the image:\n", x[0, 0].astype(int))
print("conv2d:\n", out[0, 0])
shifted = sum(w[0, 0, a, b] * x[0, 0, a:a + 3, b:b + 3] for a in range(3) for b in range(3))
print("the sum over the 9 offsets (a, b) of w[a, b] times the image shifted by (a, b):\n", shifted)
cols = np.stack([x[0, 0, a:a + 3, b:b + 3].reshape(-1) for a in range(3) for b in range(3)], axis=1)
print("cols, the unfolded patches (one row per output position, one column per offset):\n", cols.astype(int))
print("cols @ w.reshape(9), back to 3 x 3:\n", (cols @ w.reshape(9)).reshape(3, 3))

# %% [markdown]
# The same with every axis in use, as in the network: a batch of 2 images of 3 channels, 4 filters,
# stride 2 and padding 1. Each offset's slice is multiplied by the (F, C) matrix of weights at that
# offset and the products are summed; `conv2d` stacks the slices and does one product instead.

# %%
x = rng.standard_normal((2, 3, 9, 9))
w = rng.standard_normal((4, 3, 3, 3))
s, p = 2, 1
oh = (9 + 2 * p - 3) // s + 1
x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
by_offsets = sum(np.einsum("ncij,fc->nfij", x_pad[:, :, a:a + s * oh:s, b:b + s * oh:s], w[:, :, a, b])
                 for a in range(3) for b in range(3))
print(f"out {conv2d(x, w, stride=s, padding=p).shape}: the sum over offsets differs from conv2d by at most "
      f"{np.abs(by_offsets - conv2d(x, w, stride=s, padding=p)).max():.1e}")

# %% [markdown]
# The backward follows from the matrix form `out = cols @ W`, a linear layer whose rows are the
# output positions: $\partial W = \text{cols}^\top G$, and
# $\partial\,\text{cols} = G\,W^\top$, whose slice for each offset is added back where that slice
# was cut from (col2im: an input entry lies in up to $K^2$ patches, so its gradient sums theirs),
# and the padding dropped (`numpy_mnist.layers.conv2d_backward`, derived in its docstring).
#
# ### Batch norm's backward, derived
#
# Batch norm normalises each channel over the batch and every position, $M$ values $x_i$ a channel,
# then scales and shifts it by the learned $\gamma$ and $\beta$:
#
# $$\mu = \frac{1}{M}\sum_i x_i, \qquad \sigma^2 = \frac{1}{M}\sum_i (x_i - \mu)^2 + \epsilon, \qquad
#   \hat x_i = \frac{x_i - \mu}{\sigma}, \qquad y_i = \gamma\,\hat x_i + \beta.$$
#
# Every $\hat x_i$ depends on every $x_j$ of its channel, through $\mu$ and $\sigma$. Step by step
# (`numpy_mnist.layers.batch_norm_backward`'s docstring), with $dy_i = \partial L / \partial y_i$:
#
# 1. $y_i = \gamma \hat x_i + \beta$ gives $\partial\beta = \sum_i dy_i$, $\partial\gamma = \sum_i dy_i\,\hat x_i$ and
#    $\partial L / \partial \hat x_i = \gamma\, dy_i$.
# 2. $\partial \mu / \partial x_j = 1/M$.
# 3. $\partial \sigma^2 / \partial x_j = \frac{2}{M}\sum_i (x_i - \mu)(\delta_{ij} - \frac{1}{M})
#    = \frac{2}{M}(x_j - \mu)$, since $\sum_i (x_i - \mu) = 0$; so
#    $\partial \sigma / \partial x_j = (x_j - \mu)/(M\sigma) = \hat x_j / M$.
# 4. By the quotient rule,
#    $$\frac{\partial \hat x_i}{\partial x_j} = \frac{\delta_{ij} - 1/M}{\sigma} -
#      \frac{x_i - \mu}{\sigma^2}\,\frac{\hat x_j}{M} = \frac{M\delta_{ij} - 1 - \hat x_i \hat x_j}{M\sigma}.$$
# 5. The chain rule sums over every $i$ that $x_j$ reaches:
#    $$\frac{\partial L}{\partial x_j} = \sum_i \gamma\, dy_i\, \frac{M\delta_{ij} - 1 - \hat x_i \hat x_j}{M\sigma}
#      = \frac{\gamma}{M\sigma}\Bigl(M\,dy_j - \sum_i dy_i - \hat x_j \sum_i dy_i\,\hat x_i\Bigr).$$
#
# The two sums are $\partial\beta$ and $\partial\gamma$ again, so the code computes
# `dx = gamma / (M sigma) * (M dy - dbeta - xhat * dgamma)`, never forming the $M \times M$ Jacobian
# of step 4. Below, that Jacobian is formed for each channel of a small batch and multiplied out
# (step 5's first form), beside what `batch_norm_backward` returns (its last form):

# %%
from numpy_mnist.layers import batch_norm, batch_norm_backward

x = rng.standard_normal((8, 3)) * [1.0, 3.0, 0.5] + [0.0, 2.0, -1.0]   # 8 values in each of 3 channels
gamma, beta, dy = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((8, 3))
dx, dgamma, dbeta = batch_norm_backward(dy, x, gamma)
M, eps = x.shape[0], 1e-5
for c in range(3):
    sigma = np.sqrt(x[:, c].var() + eps)
    xhat = (x[:, c] - x[:, c].mean()) / sigma
    jacobian = (M * np.eye(M) - 1 - np.outer(xhat, xhat)) / (M * sigma)     # d xhat_i / d x_j, step 4
    dx_c = jacobian.T @ (gamma[c] * dy[:, c])                               # step 5, before it collapses
    print(f"channel {c}: |dx by the Jacobian - batch_norm_backward| <= {np.abs(dx_c - dx[:, c]).max():.1e}; "
          f"dgamma {np.abs(np.sum(dy[:, c] * xhat) - dgamma[c]):.1e}, dbeta {np.abs(dy[:, c].sum() - dbeta[c]):.1e}")

# %% [markdown]
# ### Checked live: convolution, batch norm and max-pool
#
# Max-pool passes each window's gradient to its maximum (to the first one in row-major order where
# several are equal, PyTorch's choice; overlapping windows add up). All three backward passes,
# against central finite differences of the forward functions (`gradcheck.check_gradient`, every
# entry, in float64) and, where PyTorch is installed, against its autograd of `F.conv2d`,
# `F.batch_norm` and `F.max_pool2d`. Against PyTorch each entry may differ by the rounding of its
# sums in another order: the floor under the $10^{-10}$ relative tolerance is twice Higham's
# $\gamma_k$ times the sum of the entry's $|\text{terms}|$, from the same computation on absolute values.

# %%
from numpy_mnist.layers import conv2d_backward, max_pool2d, max_pool2d_backward

x = rng.standard_normal((2, 3, 7, 7))
w = rng.standard_normal((4, 3, 3, 3))
dconv = rng.standard_normal((2, 4, 4, 4))                   # upstream gradient of conv2d, stride 2, padding 1
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
dbn = rng.standard_normal(x.shape)
dpool = rng.standard_normal((2, 3, 4, 4))                   # of the ResNet's max-pool: 3 x 3, stride 2, padding 1
conv_dx, conv_dw = conv2d_backward(dconv, x, w, stride=2, padding=1)
bn_dx, bn_dgamma, bn_dbeta = batch_norm_backward(dbn, x, gamma)
pool_dx = max_pool2d_backward(dpool, x)
# (what is checked, f of the input, the input, our gradient, the upstream gradient)
deep_cases = [
    ("conv2d, d/dx", lambda a: conv2d(a, w, stride=2, padding=1), x, conv_dx, dconv),
    ("conv2d, d/dw", lambda a: conv2d(x, a, stride=2, padding=1), w, conv_dw, dconv),
    ("batch_norm, d/dx", lambda a: batch_norm(a, gamma, beta)[0], x, bn_dx, dbn),
    ("batch_norm, d/dgamma", lambda a: batch_norm(x, a, beta)[0], gamma, bn_dgamma, dbn),
    ("batch_norm, d/dbeta", lambda a: batch_norm(x, gamma, a)[0], beta, bn_dbeta, dbn),
    ("max_pool2d, d/dx", max_pool2d, x, pool_dx, dpool),
]


def deep_torch_gradients():
    # PyTorch's autograd of the same three layers, and each gradient's rounding floor; only where PyTorch is installed.
    import torch.nn.functional as F

    conv_grads = torch_twin.vjp(lambda a, m: F.conv2d(a, m, stride=2, padding=1), [x, w], dconv)[1]
    conv_sizes = torch_twin.vjp(lambda a, m: F.conv2d(a, m, stride=2, padding=1), [abs(x), abs(w)], abs(dconv))[1]
    bn_grads = torch_twin.vjp(lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True, eps=1e-5),
                              [x, gamma, beta], dbn)[1]
    m = x.size // x.shape[1]
    sigma = np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)[:, None, None]
    xhat = (x - x.mean(axis=(0, 2, 3))[:, None, None]) / sigma
    sum_dy, sum_dy_xhat = abs(dbn).sum(axis=(0, 2, 3)), abs(dbn * xhat).sum(axis=(0, 2, 3))
    bn_sizes = [abs(gamma)[:, None, None] / (m * sigma) * (m * abs(dbn) + sum_dy[:, None, None]
                                                          + abs(xhat) * sum_dy_xhat[:, None, None]),
                sum_dy_xhat, sum_dy]
    pool_grads = torch_twin.vjp(lambda a: F.max_pool2d(a, 3, 2, 1), [x], dpool)[1]
    pool_sizes = torch_twin.vjp(lambda a: F.max_pool2d(a, 3, 2, 1), [x], abs(dpool))[1]
    ks = [max(3 * 9, 4 * 9, 2 * 4 * 4) + 1] * 2 + [m + 8] * 3 + [9]   # the most terms any entry of each sums
    return [(g, gc.Tolerance.rounding_floor(size, k))
            for g, size, k in zip([*conv_grads, *bn_grads, *pool_grads], [*conv_sizes, *bn_sizes, *pool_sizes], ks)]


torch_side = deep_torch_gradients() if with_torch else [None] * len(deep_cases)
rows = ["| backward | worst relative error vs finite differences |" + torch_column, "|---|---|" + "---|" * with_torch]
deep_ok = True
for (name, f, at, ours, upstream), reference in zip(deep_cases, torch_side):
    fd = gc.check_gradient(f, at, ours, dout=upstream, options=gc.GradCheckOptions(name))
    row = f"| {name} | {fd.rel_error:.1e} |"
    deep_ok &= fd.ok
    if reference is not None:
        pt = gc.compare(name, ours, reference[0], rtol=gc.TORCH_RTOL, atol=reference[1])
        deep_ok &= pt.ok
        row += f" {pt.rel_error:.1e} |"
    rows.append(row)
display(Markdown("\n".join(rows)))
if with_torch:
    print("conv2d, batch_norm and max_pool2d: every backward agrees with finite differences and with PyTorch autograd"
          if deep_ok else "MISMATCH: see the table")
else:
    print("conv2d, batch_norm and max_pool2d: every backward agrees with finite differences" if deep_ok
          else "MISMATCH: see the table", "(PyTorch is not installed: the comparison with its autograd was skipped)")

# %% [markdown]
# Finite differences cannot check a tie: a window with two equal maxima has no derivative there.
# The rule is checked on its own instead: in this 2 x 2 window the 3 at the top right comes first
# in row-major order and takes the whole gradient.

# %%
tie = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
print(max_pool2d_backward(np.ones((1, 1, 1, 1)), tie, kernel=2, stride=2, padding=0)[0, 0])

# %% [markdown]
# ### Training it live, at an eighth of the width
#
# The book's model has 64 channels in its first stage and an epoch takes minutes on a CPU. At width
# 8 (every channel count divided by 8, so 64 times fewer multiplications in every convolution but
# the first, whose input is the one grey channel) the same network trains here in seconds, built and
# trained exactly as `numpy-mnist train --model resnet18 --width 8` does: the 3s and 7s as class
# labels (1 for a 3), shuffled batches of 64 with the last partial batch dropped, one epoch of Adam
# (the batch norms left out of the weight decay) under a one-cycle schedule peaking at the book's
# learning rate 0.1.
#
# The matrix products at this width are small (the largest, the stem's, multiplies 12544 x 49 by
# 49 x 8), too small to split between threads: on a two-core machine shared with other work, NumPy's
# BLAS on two threads made this epoch many times slower than on one, as its threads waited for each
# other. So the cell runs it on one (`threadpoolctl`, the library that asks the BLAS itself).

# %%
from threadpoolctl import threadpool_limits

from numpy_mnist.models import resnet18, resnet18_shapes
from numpy_mnist.optim import Adam, OneCycle
from numpy_mnist.training import fit, make_learner

labels_train, labels_valid = (y[:, 0].astype(np.int64) for y in (train_y, valid_y))
res_train = DataLoader(train_x, labels_train, 64, shuffle=True, seed=0, drop_last=True, backend=backend)
res_valid = DataLoader(valid_x, labels_valid, 64, backend=backend)
resnet = resnet18(width=8, seed=0, backend=backend)
first_filters = backend.to_host(resnet.params["conv1.weight"])[:, 0]
opt = Adam(resnet.params, resnet.default_lr, no_decay=resnet.no_weight_decay,
           schedule=OneCycle(len(res_train), resnet.default_lr))
res_learn = make_learner(resnet, res_train, res_valid, opt)
sizes = {width: sum(int(np.prod(shape)) for shape in resnet18_shapes(width).values()) for width in (8, 64)}
print(f"ResNet-18 of width {resnet.width}: {sizes[8]:,} parameters (the book's width 64: {sizes[64]:,}); "
      f"{len(res_train)} steps of Adam, one-cycle to lr {resnet.default_lr:g}, batch 64")
with threadpool_limits(limits=1, user_api="blas"):
    res_history = fit(res_learn, 1)
print(f"untrained: valid accuracy {res_learn.start.accuracy:.4f} (chance {chance_accuracy(valid_y):.4f}); after one "
      f"epoch: {res_history[-1].accuracy:.4f}, valid loss {res_history[-1].valid_loss:.4f}, "
      f"in {res_history[-1].seconds:.1f} s")

# %% [markdown]
# The first layer's eight 7 x 7 filters, before and after the epoch (red weights count the ink
# under them, blue ones count against it; each row on its own colour scale), and what the trained
# filters make of a 3: the first layer's output for it, the convolution alone, before its batch norm.
# They start as Kaiming noise; after one epoch several have grown smooth patterns, one side red and
# the other blue, that respond to strokes and edges of one direction.

# %%
trained_filters = backend.to_host(resnet.params["conv1.weight"])[:, 0]
a_three = threes[0].reshape(1, 1, 28, 28).astype(np.float64)
responses = conv2d(a_three, trained_filters[:, None].astype(np.float64), stride=2, padding=3)[0]
rows_drawn = [(first_filters, "at the start"), (trained_filters, "after one epoch"), (responses, "on a 3")]
fig, axes = plt.subplots(len(rows_drawn), resnet.width, figsize=(9, 3.8))
for row, (pictures, label) in enumerate(rows_drawn):
    limit = float(np.abs(pictures).max())
    for k, ax in enumerate(axes[row]):
        ax.imshow(pictures[k], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel(label, fontsize=9)
fig.suptitle(f"conv1's filters, ResNet-18 of width {resnet.width}")
show(fig)

# %% [markdown]
# ### The full width: the committed run
#
# The book's own width, 64, was trained once with the command below and its output committed under
# `benchmarks/results/resnet18/`, whose README describes the machine and how busy it was. The
# figures here are read from that run's files, not typed in.

# %%
import json
from pathlib import Path

committed = Path(numpy_mnist.__file__).resolve().parents[1] / "benchmarks" / "results" / "resnet18"
if (committed / "history.json").is_file():
    full = json.loads((committed / "history.json").read_text())
    notes = (committed / "README.md").read_text()
    command = next(line.strip() for line in notes.splitlines() if "numpy-mnist train --model resnet18" in line
                   and line.startswith("    "))
    last = full["epochs"][-1]
    print(f"command: {command}")
    print(f"width 64: valid accuracy {full['start']['accuracy']:.4f} untrained, {last['accuracy']:.4f} after "
          f"{last['epoch']} epoch (the book: 0.997), the epoch in {last['seconds']:.0f} s")
    for row in notes.splitlines():  # the README's own figures for the whole command
        if row.startswith(("| wall time", "| CPU time")):
            print("  " + ": ".join(cell.strip() for cell in row.strip("|").split("|")))
    print(f"width {resnet.width}, above: {res_history[-1].accuracy:.4f} in {res_history[-1].seconds:.1f} s")
else:
    print(f"The committed run is not here ({committed}): it is in the repository, "
          "benchmarks/results/resnet18/README.md")

# %% [markdown]
# ## Further research: all ten digits
#
# *In the book: the chapter's Further Research questions.*
#
# The chapter ends by asking for a model of all ten digits. That takes ten outputs per image and a
# loss for ten classes: the softmax cross-entropy derived above. `linear10` is the linear model with
# ten outputs (one $28 \times 28$ picture of weights per digit); it trains on the full MNIST, 60,000
# images, validated on the 10,000 of the test set.
#
# The full MNIST is not bundled: `numpy-mnist data download` fetches it (or set `NUMPY_MNIST_DATA` to
# a folder holding the four IDX files). Without it this section says so and is skipped.

# %%
from numpy_mnist.datasets import load_dataset
from numpy_mnist.errors import DataError

try:
    digits = load_dataset("mnist")
    print(digits, "labels", np.bincount(digits.valid_y))
except DataError as exc:
    digits = None
    print(f"Skipping the ten digits: the full MNIST is not on this machine ({exc})")

# %%
if digits is not None:
    from numpy_mnist.metrics import confusion_table, model_confusion_matrix
    from numpy_mnist.models import linear10
    from numpy_mnist.plots import class_weights_figure, confusion_matrix_figure

    ten_train = DataLoader(digits.train_x, digits.train_y, batch_size=128, shuffle=True, seed=0, backend=backend)
    ten_valid = DataLoader(digits.valid_x, digits.valid_y, batch_size=1000, backend=backend)
    ten_model = linear10(backend=backend)
    ten = Learner(ten_model, ten_train, ten_valid, SGD(ten_model.params, lr=0.5))
    for record in ten.fit(3):
        print(f"epoch {record.epoch}: train loss {record.train_loss:.4f}, test accuracy {record.accuracy:.4f} "
              f"(chance {chance_accuracy(digits.valid_y):.4f})")
    cm = backend.to_host(model_confusion_matrix(ten.model, ten_valid))
    print(confusion_table(cm))
    show(confusion_matrix_figure(cm))
else:
    print("skipped: no MNIST files")

# %% [markdown]
# Each digit's weights as a picture: the model's score for a digit is the image's pixels weighted
# by its picture, plus a bias, so red pixels are evidence for that digit when they carry ink and
# blue ones evidence against it.

# %%
if digits is not None:
    show(class_weights_figure(backend.to_host(ten.model.params["weights"])))
else:
    print("skipped: no MNIST files")

# %% [markdown]
# ## CPU against GPU
#
# *Not in the book: the same code on the CPU and on a GPU.*
#
# The same model code runs on NumPy (CPU) and CuPy (GPU): the backend is chosen once, and data,
# parameters and gradients live there. On a GPU, `numpy-mnist train` replays each epoch as one CUDA
# graph of hand-written fused kernels (`numpy_mnist/fused/kernels/*.cu`, the same derivations as
# above in their comments); `--reference` turns that fast path off and runs the readable array
# path, which is also what runs on the CPU. Below, one epoch of
# `simple_net` on the 3s and 7s (training and validation), timed on every backend this machine has:
# `EpochRecord.seconds` is read after synchronising the device, and the first epoch, which pays for
# warm-up, is left out. For a fuller benchmark, against PyTorch and the hardware's own limits, run
# `numpy-mnist bench`.

# %%
from numpy_mnist.bench.machine import machine_info
from numpy_mnist.training import fit, make_learner

info = machine_info()
print(f"this machine: {info['cpu']} ({info['cores']['usable']} usable cores), GPU: {info['gpu']['name']}")
timings = {}
for name in ("numpy", "cupy"):
    try:
        bk = get_backend(name, "float32")
    except BackendUnavailableError as exc:
        print(f"{name}: not available here: {exc}")
        continue
    # make_learner chooses the fast path: the fused CUDA graph on a GPU, the array path on the CPU
    # (make_learner(..., reference=True) for the readable array path everywhere)
    net = simple_net(hidden=30, seed=0, backend=bk)
    learn = make_learner(net, DataLoader(train_x, train_y, 256, backend=bk),
                         DataLoader(valid_x, valid_y, 256, backend=bk), SGD(net.params, lr=0.1))
    seconds = [r.seconds for r in fit(learn, 4)[1:]]
    timings[bk.device] = float(np.median(seconds))
    print(f"{name} on {bk.device}: one epoch of simple_net in {timings[bk.device] * 1e3:.1f} ms "
          f"(median of {len(seconds)}), accuracy after 4 epochs {learn.history[-1].accuracy:.4f}")
if len(timings) == 1:
    print("No GPU here: only the CPU was timed. On a machine with a CUDA GPU and CuPy "
          "(pip install 'numpy-mnist[gpu]') this cell times both.")

# %% [markdown]
# At this size (12,396 images of 784 pixels, batches of 256) an epoch is a few hundred small matrix
# products and elementwise operations: on a GPU the time to launch each one, not the arithmetic,
# sets the pace. `numpy-mnist bench --sweep` shows how that changes as batches and layers grow.

# %% [markdown]
# ## Your turn: derive the backward functions yourself
#
# *Not in the book, which leaves every gradient to autograd: here you write them.*
#
# Reading a derivation is not the same as finding it. The `exercise` commands hand the nine backward
# functions of this notebook to you, in the book's order: `sigmoid_backward`, `mnist_loss_backward`,
# `linear_backward`, `relu_backward`, `binary_cross_entropy_backward` and
# `softmax_cross_entropy_backward`, then the ResNet's `conv2d_backward`, `batch_norm_backward` and
# `max_pool2d_backward`. In a terminal:
#
# ```bash
# numpy-mnist exercise new [DIR]           # a starter file of the nine functions, each raising NotImplementedError
# numpy-mnist exercise check FILE          # each of yours against the reference, finite differences and PyTorch
# numpy-mnist exercise check FILE --train  # then simple_net trained with yours, beside the reference run
# ```
#
# Each starter function has the reference's signature and a docstring that says what to compute and
# the shapes in and out, but not the answer. `check` draws inputs with hypothesis (including the
# ones that break naive code, such as a large $|z|$ for the sigmoid), prints one row per function,
# pass, fail or still to do, with the smallest failing input it found, and a hint where the
# comparison shows what went wrong: a wrong shape, a missing $1/N$, a flipped sign, a transpose, a
# missing $\sigma'$, a kernel flipped or transposed, batch norm's two sum terms missing, a gradient
# sent to every tied maximum. With `--train`, your gradients train the book's `simple_net` on the 3s
# and 7s, and its learning curve is drawn beside the reference's.
#
# ---
# This notebook's source is `notebooks/04_mnist_basics_by_hand.py`, a jupytext script paired with
# this `.ipynb`; the README's "The notebook" section gives the one command that regenerates the
# outputs. MNIST is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges (CC BY-SA 3.0); the
# chapter is from *Deep Learning for Coders with fastai and PyTorch* by Jeremy Howard and Sylvain
# Gugger.
