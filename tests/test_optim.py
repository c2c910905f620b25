"""The optimizers: SGD as the book's ``BasicOptim``; Adam and the one-cycle schedule as fastai's.

* SGD: ``p - lr * g``, exactly, in place, and its refusals.
* OneCycle: the formula of its docstring at step 0, the phase boundary, the middle of the second
  phase and the last step; PyTorch's ``OneCycleLR`` at step 0 and, mapped onto ``T + 1`` steps as
  the docstring says, at every step; where PyTorch's own layout differs (its peak one step early,
  its end reached, and divided by ``div`` again).
* Adam: five one-cycle steps of ``simple_net``'s parameters, trained by its hand-derived
  gradients, against ``torch.optim.AdamW`` trained by autograd on the twin with the schedule's
  values written into its ``param_groups``, in float64 within 1e-9 relative, every backend; with
  and without parameters left out of the weight decay.
* Adam's state: ``state()`` is JSON, ``state_arrays()`` resumes a run to the last bit.
"""

from __future__ import annotations

import json
import math

import grad_strategies as gs
import numpy as np
import pytest
from torch_oracles import assert_agree

from numpy_mnist import torch_twin
from numpy_mnist.errors import InputError
from numpy_mnist.models import simple_net
from numpy_mnist.optim import SGD, Adam, OneCycle

ADAM_RTOL = 1e-9


def host(backend, params):
    return {k: backend.to_host(v) for k, v in params.items()}


# -- SGD ---------------------------------------------------------------------------------------------

def test_sgd_step_is_p_minus_lr_grad_in_place(backend):
    params = {"w": backend.asarray(np.array([[1.0, -2.0], [0.5, 4.0]])), "b": backend.asarray(np.array([3.0]))}
    same = dict(params)
    grads = {"w": backend.asarray(np.array([[0.5, 1.0], [-2.0, 0.0]])), "b": backend.asarray(np.array([-1.0]))}
    opt = SGD(params, 0.25)
    opt.step(grads)
    assert all(params[k] is same[k] for k in params)  # the model's own arrays, changed in place
    np.testing.assert_array_equal(backend.to_host(params["w"]), [[0.875, -2.25], [1.0, 4.0]])
    np.testing.assert_array_equal(backend.to_host(params["b"]), [3.25])
    assert opt.state() == {"name": "sgd", "lr": 0.25} and opt.lr == 0.25


def test_sgd_refusals():
    with pytest.raises(InputError, match="learning rate must be positive"):
        SGD({"w": np.zeros(2)}, 0.0)
    with pytest.raises(InputError, match="keyed like params"):
        SGD({"w": np.zeros(2)}, 0.1).step({"v": np.zeros(2)})


# -- the one-cycle schedule --------------------------------------------------------------------------

def formula(t, T, lr_max, p=0.25, div=25.0, div_final=1e5):
    """The docstring's formula, spelled out again from fastai's ``combined_cos``."""
    pos = t / T

    def cos(a, b, u):
        return a + (b - a) * (1 - math.cos(math.pi * u)) / 2

    if pos < p:
        return cos(lr_max / div, lr_max, pos / p), cos(0.95, 0.85, pos / p)
    u = (pos - p) / (1 - p)
    return cos(lr_max, lr_max / div_final, u), cos(0.85, 0.95, u)


@pytest.mark.parametrize("T", [1, 2, 4, 7, 100, 194])
def test_one_cycle_is_the_formula_at_every_step(T):
    sched = OneCycle(T, 0.1)
    for t in range(T):
        lr, beta1 = sched(t)
        want_lr, want_beta1 = formula(t, T, 0.1)
        assert lr == pytest.approx(want_lr, rel=1e-14) and beta1 == pytest.approx(want_beta1, rel=1e-14)


def test_one_cycle_endpoints_and_phase_boundary():
    T, lr_max = 200, 0.1
    sched = OneCycle(T, lr_max)
    assert sched(0) == (pytest.approx(lr_max / 25, rel=1e-15), pytest.approx(0.95, rel=1e-15))
    assert sched(50) == (pytest.approx(lr_max, rel=1e-15), pytest.approx(0.85, rel=1e-15))  # pos = 0.25
    assert sched(125) == (pytest.approx((lr_max + lr_max / 1e5) / 2, rel=1e-14), pytest.approx(0.9, rel=1e-14))
    # the last step sits at pos = (T - 1) / T: near the end (lr_max / 1e5), not on it
    u = (199 / 200 - 0.25) / 0.75
    lr_last, beta_last = sched(T - 1)
    assert lr_last == pytest.approx(lr_max / 1e5 + (lr_max - lr_max / 1e5) * (1 + math.cos(math.pi * u)) / 2,
                                    rel=1e-12)
    assert lr_max / 1e5 < lr_last < 2e-4 * lr_max and 0.9499 < beta_last < 0.95
    lrs, betas = zip(*(sched(t) for t in range(T)))
    assert all(a < b for a, b in zip(lrs[:50], lrs[1:51])) and all(a > b for a, b in zip(lrs[50:], lrs[51:]))
    assert all(a > b for a, b in zip(betas[:50], betas[1:51])) and all(a < b for a, b in zip(betas[50:], betas[51:]))


def test_one_cycle_refusals():
    with pytest.raises(InputError, match="step 10 is outside it"):
        OneCycle(10, 0.1)(10)
    with pytest.raises(InputError, match="step -1 is outside it"):
        OneCycle(10, 0.1)(-1)
    for bad in ({"total_steps": 0}, {"total_steps": 2.5}, {"lr_max": -1.0}, {"lr_max": math.inf},
                {"pct_start": 1.0}, {"div": 0.5}, {"moms": (0.9, 0.8)}, {"moms": (0.9, 1.0, 0.9)}):
        kwargs = {"total_steps": 10, "lr_max": 0.1, **bad}
        with pytest.raises(InputError):
            OneCycle(kwargs.pop("total_steps"), kwargs.pop("lr_max"), **kwargs)


def torch_schedule(T, **one_cycle):
    """``(lr, beta1)`` at each of ``T`` steps of ``torch.optim.lr_scheduler.OneCycleLR`` driving AdamW."""
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.AdamW([w], lr=1.0, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, base_momentum=0.85, max_momentum=0.95, **one_cycle)
    out = []
    for _ in range(T):
        out.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        opt.step()  # no gradient, nothing changes: PyTorch wants a step before each scheduler step
        sched.step()
    return out


@gs.needs_torch
@pytest.mark.parametrize("T", [1, 5, 8, 194])
def test_one_cycle_is_torch_one_cycle_lr_over_one_more_step(T):
    """The docstring's mapping: PyTorch over T + 1 steps, its peak moved to step p T, its end divided by div."""
    ours = [OneCycle(T, 0.1)(t) for t in range(T)]
    theirs = torch_schedule(T, max_lr=0.1, total_steps=T + 1, pct_start=(0.25 * T + 1) / (T + 1),
                            div_factor=25.0, final_div_factor=1e5 / 25)
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12)


@gs.needs_torch
def test_one_cycle_differs_from_torch_defaults_as_documented():
    T, lr_max = 200, 0.1
    theirs = torch_schedule(T, max_lr=lr_max, total_steps=T, pct_start=0.25, div_factor=25.0, final_div_factor=1e5)
    sched = OneCycle(T, lr_max)
    assert theirs[0] == (pytest.approx(sched(0)[0], rel=1e-15), pytest.approx(sched(0)[1], rel=1e-15))
    assert theirs[49][0] == pytest.approx(lr_max, rel=1e-15) and sched(49)[0] < lr_max  # its peak at p T - 1
    assert theirs[T - 1][0] == pytest.approx(lr_max / 25 / 1e5, rel=1e-12)  # its end, reached, over div again
    assert sched(T - 1)[0] > lr_max / 1e5


# -- Adam against torch.optim.AdamW ------------------------------------------------------------------

def adam_steps_against_torch(backend, no_decay, steps=5, lr_max=0.05):
    """Train ``simple_net`` ``steps`` Adam/one-cycle steps both ways; compare after every step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    model = simple_net(6, seed=2, backend=backend, loss="bce")
    batches = [(rng.uniform(0, 1, (8, 784)), rng.integers(0, 2, (8, 1)).astype(np.float64)) for _ in range(steps)]
    opt = Adam(model.params, schedule=OneCycle(steps, lr_max), no_decay=no_decay)
    tparams = torch_twin.parameters(model)
    groups = [{"params": [p for k, p in tparams.items() if (k in no_decay) == skip],
               "weight_decay": 0.0 if skip else 0.01} for skip in (False, True)]
    topt = torch.optim.AdamW([g for g in groups if g["params"]], lr=1.0, betas=(0.9, 0.99), eps=1e-5)
    sched = OneCycle(steps, lr_max)
    for t, (x, y) in enumerate(batches):
        _, grads = model.loss_and_grads(backend.asarray(x), backend.asarray(y))
        opt.step(grads)
        lr, beta1 = sched(t)
        for group in topt.param_groups:
            group["lr"], group["betas"] = lr, (beta1, 0.99)
        topt.zero_grad()
        logits = torch_twin.forward(model, torch_twin.tensor(x), tparams)
        torch_twin.LOSSES["bce"](logits, torch_twin.tensor(y)).backward()
        topt.step()
        assert (opt.lr, opt.beta1) == (lr, beta1)
        for name, value in host(backend, model.params).items():
            assert_agree(f"{name} after step {t + 1}", value, tparams[name].detach().numpy(), rtol=ADAM_RTOL)
    return model, opt


@gs.needs_torch
@pytest.mark.parametrize("no_decay", [(), ("b1", "b2")], ids=["decay all", "biases not decayed"])
def test_adam_one_cycle_is_torch_adamw(backend, no_decay):
    model, opt = adam_steps_against_torch(backend, no_decay)
    assert opt.t == 5


def test_adam_first_step_by_hand(backend):
    """One step from zero moments: the bias corrections make it ``lr * g / (|g| + eps)`` after decay."""
    p0, g = np.array([1.0, -2.0, 0.0]), np.array([0.5, -1e-7, 3.0])
    params = {"w": backend.asarray(p0.copy())}  # NumPy's asarray would hand over p0 itself
    opt = Adam(params, lr=0.1, betas=(0.8, 0.99), eps=1e-5, wd=0.01)
    opt.step({"w": backend.asarray(g)})
    want = p0 * (1 - 0.1 * 0.01) - 0.1 * g / (np.abs(g) + 1e-5)
    np.testing.assert_allclose(backend.to_host(params["w"]), want, rtol=1e-15, atol=1e-17)


def test_adam_state_round_trip(backend):
    """Three steps, a checkpoint of the state, two more steps: the same bits as five steps straight."""
    rng = np.random.default_rng(0)
    grads = [{"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2)} for _ in range(5)]

    def fresh():
        params = {"w": backend.asarray(np.arange(6.0).reshape(3, 2)), "b": backend.asarray(np.ones(2))}
        return params, Adam(params, no_decay=["b"], schedule=OneCycle(5, 0.1))

    def steps(opt, gs_):
        for g in gs_:
            opt.step({k: backend.asarray(v) for k, v in g.items()})

    straight, opt = fresh()
    steps(opt, grads)
    params, first = fresh()
    steps(first, grads[:3])
    state, arrays = json.loads(json.dumps(first.state())), first.state_arrays()
    assert state["step"] == 3 and state["schedule"]["total_steps"] == 5 and state["no_decay"] == ["b"]
    assert sorted(arrays) == ["m.b", "m.w", "step", "v.b", "v.w"]
    assert all(isinstance(a, np.ndarray) for a in arrays.values()) and int(arrays["step"]) == 3
    resumed_params = {k: backend.asarray(backend.to_host(v)) for k, v in params.items()}
    resumed = Adam(resumed_params, no_decay=state["no_decay"], schedule=OneCycle(5, 0.1))
    resumed.load_state_arrays(arrays)
    assert (resumed.t, resumed.lr, resumed.beta1) == (3, *OneCycle(5, 0.1)(3))
    steps(resumed, grads[3:])
    for name in straight:
        np.testing.assert_array_equal(backend.to_host(resumed_params[name]), backend.to_host(straight[name]))
    assert resumed.state() == opt.state()


def test_adam_refusals():
    params = {"w": np.zeros((2, 2))}
    for bad in ({"lr": 0.0}, {"lr": math.nan}, {"betas": (0.9, 1.0)}, {"eps": 0.0}, {"wd": -0.1},
                {"no_decay": ["bias"]}):
        with pytest.raises(InputError):
            Adam(params, **bad)
    opt = Adam(params)
    with pytest.raises(InputError, match="keyed like params"):
        opt.step({"v": np.zeros((2, 2))})
    with pytest.raises(InputError, match="must hold"):
        opt.load_state_arrays({"m.w": np.zeros((2, 2)), "step": np.int64(0)})
    with pytest.raises(InputError, match="has shape"):
        opt.load_state_arrays({"m.w": np.zeros((2, 3)), "v.w": np.zeros((2, 2)), "step": np.int64(0)})
    one = Adam(params, schedule=OneCycle(1, 0.1))
    one.step({"w": np.ones((2, 2))})
    with pytest.raises(InputError, match="step 1 is outside it"):
        one.step({"w": np.ones((2, 2))})
