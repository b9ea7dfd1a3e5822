"""Tests for fastbp.optim: update rules vs NumPy references and torch, flat buffers, resume."""

from __future__ import annotations

import numpy as np
import pytest
from optim_reference import reference_adam, reference_sgd

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import kernels, nn, optim

SHAPES = [(3, 4), (4,), (2, 2, 3), ()]
STEPS = 6


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [fb.tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]


def grad_sequence(dtype=np.float64, seed=1, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def feed(opt, params, grads, how):
    """Hand ``grads`` to the optimizer the way a training loop would."""
    if how == "views":  # opt.zero_grad() then backward accumulates into the views
        opt.zero_grad(set_to_none=False)
        for p, g in zip(params, grads, strict=True):
            p.grad += g
    elif how == "replaced":  # Module.zero_grad() then backward stores fresh arrays
        for p, g in zip(params, grads, strict=True):
            p.grad = g.copy()
    else:  # through a real backward pass
        opt.zero_grad(set_to_none=(how == "backward_none"))
        loss = fb.sum(fb.stack([fb.sum(p * g) for p, g in zip(params, grads, strict=True)]))
        loss.backward()


SGD_CONFIGS = {
    "plain": {"lr": 0.1},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "dampening": {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    "nesterov": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "weight_decay": {"lr": 0.1, "weight_decay": 0.05},
    "all": {"lr": 0.03, "momentum": 0.7, "weight_decay": 0.01, "nesterov": True},
}

ADAM_CONFIGS = {
    "adam": (optim.Adam, {"lr": 0.01}),
    "adam_l2": (optim.Adam, {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    "adamw": (optim.AdamW, {"lr": 0.01}),
    "adamw_strong": (optim.AdamW, {"lr": 0.02, "weight_decay": 0.5, "eps": 1e-6}),
}


@pytest.fixture(params=["kernel", "numpy_twin"])
def impl(request, monkeypatch):
    """Run with the Numba update kernels, then with their NumPy twins."""
    if request.param == "numpy_twin":
        monkeypatch.setattr(optim.sgd, "_sgd_update", kernels.sgd_update_numpy)
        monkeypatch.setattr(optim.adam, "_adam_update", kernels.adam_update_numpy)
    return request.param


@pytest.mark.parametrize("how", ["views", "replaced", "backward", "backward_none"])
@pytest.mark.parametrize("config", list(SGD_CONFIGS), ids=list(SGD_CONFIGS))
def test_sgd_matches_reference(config, how, impl):
    kwargs = SGD_CONFIGS[config]
    params = make_params()
    initial = [p.data.copy() for p in params]
    seq = grad_sequence()
    opt = optim.SGD(params, **kwargs)
    for grads in seq:
        feed(opt, params, grads, how)
        opt.step()
    for i, p in enumerate(params):
        expected = reference_sgd(initial[i], [g[i] for g in seq], **kwargs)
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", ["views", "replaced", "backward"])
@pytest.mark.parametrize("config", list(ADAM_CONFIGS), ids=list(ADAM_CONFIGS))
def test_adam_matches_reference(config, how, impl):
    cls, kwargs = ADAM_CONFIGS[config]
    params = make_params()
    initial = [p.data.copy() for p in params]
    seq = grad_sequence()
    opt = cls(params, **kwargs)
    for grads in seq:
        feed(opt, params, grads, how)
        opt.step()
    ref_kwargs = dict(kwargs, decoupled=cls is optim.AdamW)
    ref_kwargs.setdefault("weight_decay", 0.01 if cls is optim.AdamW else 0.0)
    for i, p in enumerate(params):
        expected = reference_adam(initial[i], [g[i] for g in seq], **ref_kwargs)
        np.testing.assert_allclose(p.data, expected, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32():
    params = make_params(np.float32)
    opt = optim.Adam(params, lr=0.01)
    feed(opt, params, grad_sequence(np.float32)[0], "views")
    opt.step()
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in params)


# ------------------------------------------------------------------------- torch


def torch_run(torch, name, kwargs, initial, seq, none_mask=None):
    tparams = [torch.tensor(w.copy(), requires_grad=True) for w in initial]
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[name]
    topt = cls(tparams, **kwargs)
    history = []
    for step, grads in enumerate(seq):
        for i, (tp, g) in enumerate(zip(tparams, grads, strict=True)):
            skip = none_mask is not None and none_mask[step][i]
            tp.grad = None if skip else torch.from_numpy(g.copy())
        topt.step()
        history.append([tp.detach().numpy().copy() for tp in tparams])
    return history


def fastbp_run(name, kwargs, initial, seq, none_mask=None):
    params = [fb.tensor(w.copy(), requires_grad=True) for w in initial]
    opt = getattr(optim, name)(params, **kwargs)
    history = []
    for step, grads in enumerate(seq):
        opt.zero_grad(set_to_none=False)
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            if none_mask is not None and none_mask[step][i]:
                p.grad = None
            else:
                p.grad += g
        opt.step()
        history.append([p.data.copy() for p in params])
    return history


TORCH_CASES = [("SGD", kw) for kw in SGD_CONFIGS.values()] + [
    (cls.__name__, kw) for cls, kw in ADAM_CONFIGS.values()
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "kwargs"), TORCH_CASES)
def test_matches_torch_step_for_step(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    initial = [p.data for p in make_params(dtype)]
    seq = grad_sequence(dtype)
    ours = fastbp_run(name, kwargs, initial, seq)
    theirs = torch_run(torch, name, kwargs, initial, seq)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == np.float64 else {"rtol": 2e-5, "atol": 2e-6}
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_allclose(x, y, **tol, err_msg=f"step {step}, param {i}")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01}), ("AdamW", {"lr": 0.01})],
)
def test_missing_grads_are_skipped_like_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    initial = [p.data for p in make_params()]
    seq = grad_sequence()
    # Param 1 has no grad at steps 0 and 3, param 3 at step 2: step counts diverge.
    mask = [[False] * len(SHAPES) for _ in seq]
    mask[0][1] = mask[3][1] = mask[2][3] = True
    ours = fastbp_run(name, kwargs, initial, seq, mask)
    theirs = torch_run(torch, name, kwargs, initial, seq, mask)
    np.testing.assert_array_equal(ours[0][1], initial[1])  # not updated at all
    for step, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12, err_msg=f"{step}, {i}")


def test_missing_grad_leaves_state_untouched():
    params = make_params()
    opt = optim.Adam(params, lr=0.01)
    opt.zero_grad(set_to_none=False)
    params[0].grad = None
    before = params[0].data.copy()
    opt.step()
    np.testing.assert_array_equal(params[0].data, before)
    state = opt.state_dict()["state"]
    assert "0" not in state and state["1"]["step"] == 1


# ------------------------------------------------------------------ flat buffers


def test_params_are_rebound_to_views_of_one_flat_buffer():
    params = make_params()
    values = [p.data.copy() for p in params]
    opt = optim.SGD(params, lr=0.1)
    base = params[0].data.base
    assert base is not None and base.ndim == 1 and base.size == sum(p.size for p in params)
    for p, v in zip(params, values, strict=True):
        assert p.data.base is base
        np.testing.assert_array_equal(p.data, v)
    opt.zero_grad(set_to_none=False)
    grad_base = params[0].grad.base
    assert all(p.grad.base is grad_base and not p.grad.any() for p in params)
    opt.zero_grad()  # PyTorch's default: no gradient until backward gives one
    assert all(p.grad is None for p in params)


def test_mixed_dtypes_get_one_buffer_each():
    a = fb.ones(3, requires_grad=True)
    b = fb.tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([a, b, a], lr=0.5)  # a duplicate is optimized once
    opt.zero_grad()
    (fb.sum(a * 2.0) + fb.sum(b * 4.0)).backward()
    opt.step()
    np.testing.assert_array_equal(a.data, [0, 0, 0])
    np.testing.assert_array_equal(b.data, [-1, -1])
    assert a.dtype == np.float32 and b.dtype == np.float64


def test_data_rebound_by_user_is_picked_up():
    w = fb.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    w.data = np.array([10.0, 20.0], dtype=np.float32)
    opt.zero_grad(set_to_none=False)
    w.grad += 1
    opt.step()
    np.testing.assert_array_equal(w.data, [9.0, 19.0])
    w.data = np.zeros(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"built with shape \(2,\).*now has shape \(3,\)"):
        opt.step()


def test_bad_grad_shape_is_reported():
    w = fb.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    w.grad = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(2,\) but its .grad has shape"):
        opt.step()


def test_backward_through_a_graph_recorded_before_step_raises():
    layer = nn.Linear(2, 2)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    stale = layer(fb.ones(1, 2)).sum()  # e.g. a loss kept from before the update
    fresh = layer(fb.ones(1, 2)).sum()
    fresh.backward()
    opt.step()  # allowed, as in PyTorch, even though ``stale`` still holds the weights
    with pytest.raises(RuntimeError, match=r"modified in place.*optimizer.step\(\)"):
        stale.backward()


def test_frozen_params_are_skipped():
    w = fb.ones(2, requires_grad=True)
    frozen = fb.ones(2, requires_grad=True)
    opt = optim.SGD([w, frozen], lr=0.1, weight_decay=0.5)
    frozen.requires_grad = False
    opt.zero_grad()
    assert frozen.grad is None
    fb.sum(w * frozen).backward()
    opt.step()
    np.testing.assert_array_equal(frozen.data, [1, 1])
    np.testing.assert_allclose(w.data, 1 - 0.1 * (1 + 0.5))


def test_lr_change_takes_effect():
    w = fb.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    opt.param_groups[0]["lr"] = 0.25
    opt.zero_grad(set_to_none=False)
    w.grad += 1
    opt.step()
    np.testing.assert_array_equal(w.data, [0.75])


def test_hyperparameter_and_param_validation():
    w = fb.ones(1, requires_grad=True)
    with pytest.raises(ValueError, match="invalid learning rate lr -1"):
        optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"invalid beta2 1.0; it must be in \[0.0, 1.0\)"):
        optim.Adam([w], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(w)
    with pytest.raises(TypeError, match=r"params\[1\] is a ndarray"):
        optim.Adam([w, np.ones(2)])
    with pytest.raises(ValueError, match="not a leaf"):
        optim.Adam([w * 2])
    assert "lr: 0.001" in repr(optim.Adam([w]))


# --------------------------------------------------------------------- resuming


def make_model(seed=0):
    fb.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def batches(steps, seed=7):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16))
        for _ in range(steps)
    ]


def train(model, opt, data):
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
        (optim.SGD, {"lr": 0.1}),
        (optim.Adam, {"lr": 0.01, "weight_decay": 1e-3}),
        (optim.AdamW, {"lr": 0.01}),
    ],
)
@pytest.mark.parametrize("through_file", [False, True])
def test_resume_matches_uninterrupted_training(cls, kwargs, through_file, tmp_path):
    data = batches(20)
    straight = make_model()
    train(straight, cls(straight.parameters(), **kwargs), data)

    first = make_model()
    opt = cls(first.parameters(), **kwargs)
    train(first, opt, data[:10])
    checkpoint = {"model": first.state_dict(), "optim": opt.state_dict()}
    if through_file:
        serialization = pytest.importorskip("fastbp.serialization")
        serialization.save(checkpoint, tmp_path / "ckpt.npz")
        checkpoint = serialization.load(tmp_path / "ckpt.npz")
    train(first, opt, data[10:12])  # changing the original must not change the checkpoint

    resumed = make_model(seed=99)
    resumed_opt = cls(resumed.parameters(), **kwargs)
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt.load_state_dict(checkpoint["optim"])
    train(resumed, resumed_opt, data[10:])
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_load_state_dict_errors():
    w, v = fb.ones(2, requires_grad=True), fb.ones(3, requires_grad=True)
    adam = optim.Adam([w, v])
    adam.zero_grad(set_to_none=False)
    adam.step()
    state = adam.state_dict()
    with pytest.raises(ValueError, match="for 2 parameters but this optimizer has 1"):
        optim.Adam([w]).load_state_dict(state)
    with pytest.raises(ValueError, match="saved from another optimizer type"):
        optim.SGD([w, v], lr=0.1).load_state_dict(state)
    swapped = optim.Adam([v, w])
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 has shape \(2,\)"):
        swapped.load_state_dict(state)
    with pytest.raises(ValueError, match="keys 'state' and 'param_groups'"):
        swapped.load_state_dict({"state": {}})


def test_state_dict_is_plain_data():
    w = fb.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    opt.zero_grad(set_to_none=False)
    w.grad += 1
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"] == [
        {
            "lr": 0.1,
            "momentum": 0.9,
            "dampening": 0.0,
            "weight_decay": 0.0,
            "nesterov": False,
            "maximize": False,
            "params": [0],
        }
    ]
    buf = state["state"]["0"]["momentum_buffer"]
    np.testing.assert_array_equal(buf, [1, 1])
    buf[...] = 5  # a copy
    assert opt.state_dict()["state"]["0"]["momentum_buffer"][0] == 1
    plain = optim.SGD([w], lr=0.1)
    plain.zero_grad(set_to_none=False)
    plain.step()
    assert plain.state_dict()["state"]["0"]["momentum_buffer"] is None


# ------------------------------------------------------------------------ a model


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(optim.SGD, {"lr": 0.2, "momentum": 0.9}), (optim.Adam, {"lr": 0.02})],
)
def test_tiny_mlp_learns_a_separable_problem(cls, kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 2)).astype(np.float32)
    y = (x[:, 0] + 2 * x[:, 1] > 0).astype(np.int64)
    fb.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = cls(model.parameters(), **kwargs)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    with fb.no_grad():
        final = F.cross_entropy(model(x), y).item()
        accuracy = (model(x).data.argmax(axis=1) == y).mean()
    assert first > 0.5 and final < 0.1 and accuracy > 0.97


def test_a_step_without_gradients_does_not_invalidate_recorded_graphs():
    layer = nn.Linear(3, 2)
    opt = optim.SGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    loss = layer(fb.ones(1, 3)).sum()
    opt.step()  # no parameter has a gradient: nothing changes
    loss.backward()
    assert layer.weight.grad is not None
