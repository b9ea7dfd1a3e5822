"""Param groups, the new optimizers and options (amsgrad, maximize), state dicts: vs torch."""

import numpy as np
import pytest

import fastbp as fb
from fastbp import optim

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (4,), (1,)]


def make_pair(seed=0):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=s) for s in SHAPES]
    ours = [fb.tensor(v.copy(), requires_grad=True) for v in values]
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    return ours, theirs


def fake_grad(value, t):
    # Depends on the current value (so a wrong update diverges) and on the step.
    return np.cos(3.0 * value) + 0.1 * t - 0.05 * value**2


def run_both(ours_opt, theirs_opt, ours, theirs, steps=20, mode="fresh", skip=None):
    for t in range(steps):
        if mode == "flat":
            ours_opt.zero_grad(set_to_none=False)
        for k, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            if skip is not None and skip(t, k):
                p.grad, q.grad = None, None
                continue
            g = fake_grad(p.data, t)
            if mode == "flat":
                p.grad += g  # into the optimizer's flat gradient buffer
            else:
                p.grad = g.copy()
            q.grad = torch.from_numpy(g.copy())
        ours_opt.step()
        theirs_opt.step()
        for k, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            np.testing.assert_allclose(
                p.data, q.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {t} param {k}"
            )


CASES = {
    "rmsprop": ("RMSprop", {}),
    "rmsprop_all": (
        "RMSprop",
        {"lr": 0.01, "alpha": 0.9, "weight_decay": 0.1, "momentum": 0.8, "centered": True},
    ),
    "rmsprop_momentum": ("RMSprop", {"momentum": 0.5, "eps": 1e-3}),
    "adagrad": ("Adagrad", {}),
    "adagrad_all": (
        "Adagrad",
        {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.05, "initial_accumulator_value": 0.3},
    ),
    "adamax": ("Adamax", {}),
    "adamax_wd": ("Adamax", {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    "nadam": ("NAdam", {}),
    "nadam_wd": ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "momentum_decay": 0.01}),
    "nadam_decoupled": ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "radam": ("RAdam", {}),
    "radam_wd": ("RAdam", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.1}),
    "radam_decoupled": ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    "adam_amsgrad": ("Adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1}),
    "adamw_amsgrad": ("AdamW", {"lr": 0.01, "amsgrad": True}),
    "adam_maximize": ("Adam", {"lr": 0.01, "maximize": True}),
    "sgd_maximize": ("SGD", {"lr": 0.01, "momentum": 0.9, "maximize": True}),
    "sgd_plain_maximize": ("SGD", {"lr": 0.01, "maximize": True}),
    "rmsprop_maximize": ("RMSprop", {"maximize": True, "centered": True}),
    "adagrad_maximize": ("Adagrad", {"maximize": True}),
    "adamax_maximize": ("Adamax", {"maximize": True}),
    "nadam_maximize": ("NAdam", {"maximize": True}),
    "radam_maximize": ("RAdam", {"maximize": True}),
    "adamw_amsgrad_maximize": ("AdamW", {"amsgrad": True, "maximize": True}),
}


@pytest.mark.parametrize("mode", ["fresh", "flat"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch_for_20_steps(case, mode):
    name, kwargs = CASES[case]
    ours, theirs = make_pair()
    run_both(
        getattr(optim, name)(ours, **kwargs),
        getattr(torch.optim, name)(theirs, **kwargs),
        ours,
        theirs,
        mode=mode,
    )


@pytest.mark.parametrize("name", ["RMSprop", "Adagrad", "NAdam", "RAdam", "Adam"])
def test_missing_grads_match_torch(name):
    # A parameter without a gradient is skipped (no state change), as in torch.
    ours, theirs = make_pair(1)
    run_both(
        getattr(optim, name)(ours),
        getattr(torch.optim, name)(theirs),
        ours,
        theirs,
        skip=lambda t, k: k == 1 and t % 3 == 0,
    )


@pytest.mark.parametrize(
    "name,kwargs",
    [("SGD", {"lr": 0.1, "momentum": 0.9}), ("Adam", {"lr": 0.01}), ("RMSprop", {"lr": 0.01})],
)
def test_param_groups_match_torch(name, kwargs):
    ours, theirs = make_pair(2)
    # The middle parameter in float32 as well, to get two dtypes in group 0.
    groups = [
        {"params": [ours[0]], "weight_decay": 0.1},
        {"params": ours[1:], "lr": kwargs["lr"] / 2},
    ]
    tgroups = [
        {"params": [theirs[0]], "weight_decay": 0.1},
        {"params": theirs[1:], "lr": kwargs["lr"] / 2},
    ]
    ours_opt = getattr(optim, name)(groups, **kwargs)
    theirs_opt = getattr(torch.optim, name)(tgroups, **kwargs)
    assert len(ours_opt.flat_buffers) == 2
    run_both(ours_opt, theirs_opt, ours, theirs, steps=10)
    # Changing one group's lr mid-run acts on that group only.
    ours_opt.param_groups[1]["lr"] = 0.3
    theirs_opt.param_groups[1]["lr"] = 0.3
    run_both(ours_opt, theirs_opt, ours, theirs, steps=10)
    # A multi-group optimizer is never compiled: update_rule says so.
    assert all(ours_opt.update_rule(f) is None for f in ours_opt.flat_buffers)


def test_add_param_group_matches_torch():
    ours, theirs = make_pair(3)
    a = optim.Adam(ours[:1], lr=0.01)
    b = torch.optim.Adam(theirs[:1], lr=0.01)
    run_both(a, b, ours[:1], theirs[:1], steps=5)
    a.add_param_group({"params": ours[1:], "betas": (0.5, 0.6)})
    b.add_param_group({"params": theirs[1:], "betas": (0.5, 0.6)})
    run_both(a, b, ours, theirs, steps=10)
    with pytest.raises(ValueError, match="more than one parameter group"):
        a.add_param_group({"params": [ours[0]]})
    with pytest.raises(ValueError, match="no 'params'"):
        a.add_param_group({"lr": 0.1})


def test_single_tensor_group_and_mixed_errors():
    w = fb.ones(2, requires_grad=True)
    assert optim.SGD([{"params": w}], lr=0.1).param_groups[0]["params"] == [w]
    with pytest.raises(TypeError, match="mixes parameter groups"):
        optim.SGD([w, {"params": [fb.ones(1, requires_grad=True)]}], lr=0.1)


def structure(sd):
    state = {int(k): sorted(v) for k, v in sd["state"].items()}
    groups = [
        (sorted(k for k in g if k != "params"), list(g["params"])) for g in sd["param_groups"]
    ]
    return state, groups


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("Adam", {"amsgrad": True}),
        ("Adam", {}),
        ("SGD", {"lr": 0.1, "momentum": 0.9}),
        ("RMSprop", {"momentum": 0.9, "centered": True}),
        ("Adagrad", {}),
        ("Adamax", {}),
        ("NAdam", {}),
        ("RAdam", {}),
    ],
)
def test_state_dict_shaped_like_torch_and_resumes(name, kwargs):
    ours, theirs = make_pair(4)
    groups = [{"params": ours[:2]}, {"params": ours[2:], "lr": 0.005}]
    tgroups = [{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.005}]
    a = getattr(optim, name)(groups, **kwargs)
    b = getattr(torch.optim, name)(tgroups, **kwargs)
    run_both(a, b, ours, theirs, steps=5)
    sd, tsd = a.state_dict(), b.state_dict()
    state, groups_ = structure(sd)
    tstate, tgroups_ = structure(tsd)
    assert sorted(state) == sorted(tstate)
    for k in state:  # torch's keys; SGD here also counts its steps
        assert set(tstate[k]) <= set(state[k]) and set(state[k]) - set(tstate[k]) <= {"step"}
    assert [g[1] for g in groups_] == [g[1] for g in tgroups_] == [[0, 1], [2]]
    for i, entry in sd["state"].items():
        for key, value in entry.items():
            if value is not None and key in tsd["state"][int(i)]:
                np.testing.assert_allclose(
                    np.asarray(value), tsd["state"][int(i)][key], rtol=1e-10, err_msg=key
                )
    # Resume into a fresh optimizer over copies of the parameters: the same trajectory.
    copies = [fb.tensor(p.data.copy(), requires_grad=True) for p in ours]
    c = getattr(optim, name)([{"params": copies[:2]}, {"params": copies[2:], "lr": 0.5}], **kwargs)
    c.load_state_dict(sd)
    assert c.param_groups[1]["lr"] == 0.005
    run_both(c, b, copies, theirs, steps=5)


def test_load_state_dict_group_count_mismatch():
    ours, _ = make_pair()
    two = optim.SGD([{"params": ours[:1]}, {"params": ours[1:]}], lr=0.1)
    one = optim.SGD(ours, lr=0.1)
    with pytest.raises(ValueError, match="2 parameter groups but this optimizer has 1"):
        one.load_state_dict(two.state_dict())


def test_int_state_keys_accepted():
    ours, _ = make_pair()
    a = optim.Adam(ours)
    for p in ours:
        p.grad = np.ones_like(p.data)
    a.step()
    sd = a.state_dict()
    sd["state"] = {int(k): v for k, v in sd["state"].items()}
    b = optim.Adam([fb.tensor(p.data.copy(), requires_grad=True) for p in ours])
    b.load_state_dict(sd)
    assert b.state_dict()["state"]["0"]["step"] == 1


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("RMSprop", {"alpha": -0.1}),
        ("Adagrad", {"lr_decay": -1.0}),
        ("NAdam", {"betas": (1.0, 0.9)}),
    ],
)
def test_bad_hyperparameters(name, kwargs):
    with pytest.raises(ValueError, match=name):
        getattr(optim, name)([fb.ones(1, requires_grad=True)], **kwargs)


def test_float32_training_runs_and_single_group_keeps_kernel():
    rng = np.random.default_rng(0)
    x = fb.tensor(rng.normal(size=(16, 3)).astype(np.float32))
    y = fb.tensor(rng.normal(size=(16, 1)).astype(np.float32))
    for cls in (optim.RMSprop, optim.Adagrad, optim.Adamax, optim.NAdam, optim.RAdam):
        net = fb.nn.Linear(3, 1)
        opt = cls(net.parameters(), lr=0.01)
        losses = []
        for _ in range(30):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        assert losses[-1] < losses[0], cls.__name__
        assert net.weight.dtype == np.float32
    opt = optim.Adam(fb.nn.Linear(3, 1).parameters())
    assert opt.update_rule(opt.flat_buffers[0]) is not None
    opt = optim.Adam(fb.nn.Linear(3, 1).parameters(), amsgrad=True)
    assert opt.update_rule(opt.flat_buffers[0]) is None
