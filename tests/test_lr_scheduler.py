"""Learning-rate schedulers vs torch: the lr of every group at every one of 100 steps."""

import math

import numpy as np
import pytest

import fastbp as fb
from fastbp import optim
from fastbp.optim import lr_scheduler as ours

torch = pytest.importorskip("torch")
theirs = torch.optim.lr_scheduler


def pair(opt_name="SGD", **kwargs):
    kwargs = kwargs or {"lr": 0.1, "momentum": 0.9}
    a = fb.ones(2, requires_grad=True)
    b = fb.ones(1, requires_grad=True)
    ta = torch.ones(2, requires_grad=True)
    tb = torch.ones(1, requires_grad=True)
    o = getattr(optim, opt_name)([{"params": [a]}, {"params": [b], "lr": 0.05}], **kwargs)
    t = getattr(torch.optim, opt_name)([{"params": [ta]}, {"params": [tb], "lr": 0.05}], **kwargs)
    return o, t


def lam(e):
    return 0.95**e + 0.01 * (e % 3)


CASES = {
    "step": lambda o, m: m.StepLR(o, step_size=7, gamma=0.5),
    "multistep": lambda o, m: m.MultiStepLR(o, milestones=[10, 30, 30, 60], gamma=0.3),
    "exponential": lambda o, m: m.ExponentialLR(o, gamma=0.97),
    "cosine": lambda o, m: m.CosineAnnealingLR(o, T_max=30, eta_min=0.001),
    "cosine_nomin": lambda o, m: m.CosineAnnealingLR(o, T_max=13),
    "linear": lambda o, m: m.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=40),
    "linear_default": lambda o, m: m.LinearLR(o),
    "lambda": lambda o, m: m.LambdaLR(o, lam),
    "lambda_per_group": lambda o, m: m.LambdaLR(o, [lam, lambda e: 1.0 / (1 + e)]),
    "onecycle": lambda o, m: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=101),
    "onecycle_linear_3phase": lambda o, m: m.OneCycleLR(
        o, max_lr=0.3, epochs=10, steps_per_epoch=11, anneal_strategy="linear", three_phase=True
    ),
    "onecycle_nomomentum": lambda o, m: m.OneCycleLR(
        o, max_lr=0.3, total_steps=100, cycle_momentum=False, pct_start=0.1
    ),
    "sequential": lambda o, m: m.SequentialLR(
        o,
        [m.LinearLR(o, start_factor=0.1, total_iters=10), m.CosineAnnealingLR(o, T_max=50)],
        milestones=[10],
    ),
    "sequential3": lambda o, m: m.SequentialLR(
        o,
        [m.ExponentialLR(o, 0.9), m.StepLR(o, 5), m.MultiStepLR(o, [5, 20], 0.5)],
        milestones=[20, 45],
    ),
    "chained": lambda o, m: [m.StepLR(o, 10, 0.5), m.ExponentialLR(o, 0.99)],
}


def steps_of(sched):
    return sched if isinstance(sched, list) else [sched]


@pytest.mark.parametrize("case", sorted(CASES))
def test_lr_matches_torch_every_step(case):
    o, t = pair()
    a, b = steps_of(CASES[case](o, ours)), steps_of(CASES[case](t, theirs))
    for step in range(100):
        got = [g["lr"] for g in o.param_groups]
        want = [g["lr"] for g in t.param_groups]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15, err_msg=f"step {step}")
        np.testing.assert_allclose(a[-1].get_last_lr(), b[-1].get_last_lr(), rtol=1e-12)
        if "onecycle" in case:
            assert math.isclose(o.param_groups[0]["momentum"], t.param_groups[0]["momentum"])
        o.step()
        t.step()
        for s in a:
            s.step()
        for s in b:
            s.step()


def test_onecycle_cycles_adam_beta1_and_refuses_overrun():
    o, t = pair("Adam", lr=0.01)
    a = ours.OneCycleLR(o, max_lr=0.1, total_steps=20)
    b = theirs.OneCycleLR(t, max_lr=0.1, total_steps=20)
    for _ in range(20):
        assert math.isclose(o.param_groups[1]["betas"][0], t.param_groups[1]["betas"][0])
        a.step()
        b.step()
    with pytest.raises(ValueError, match="total_steps"):
        a.step()
    with pytest.raises(ValueError, match="total_steps"):
        ours.OneCycleLR(o, max_lr=0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"mode": "max", "factor": 0.5, "patience": 2, "threshold_mode": "abs", "threshold": 0.1},
        {"patience": 0, "cooldown": 3, "min_lr": [0.01, 0.02]},
    ],
)
def test_reduce_on_plateau_matches_torch(kwargs):
    o, t = pair()
    a = ours.ReduceLROnPlateau(o, **kwargs)
    b = theirs.ReduceLROnPlateau(t, **kwargs)
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(1, 0.5, 20), 0.5 + 0.01 * rng.random(80)])
    for m in metrics:
        a.step(m)
        b.step(m)
        np.testing.assert_allclose(
            [g["lr"] for g in o.param_groups], [g["lr"] for g in t.param_groups], rtol=1e-12
        )
        np.testing.assert_allclose(a.get_last_lr(), b.get_last_lr(), rtol=1e-12)


@pytest.mark.parametrize("case", ["step", "cosine", "onecycle", "sequential", "linear"])
def test_state_dict_resume(case):
    o, _ = pair()
    s = CASES[case](o, ours)
    for _ in range(30):
        o.step()
        s.step()
    saved_sched, saved_opt = s.state_dict(), o.state_dict()
    expected = []
    for _ in range(20):
        o.step()
        s.step()
        expected.append(s.get_last_lr())
    o2, _ = pair()
    s2 = CASES[case](o2, ours)
    o2.load_state_dict(saved_opt)
    s2.load_state_dict(saved_sched)
    got = []
    for _ in range(20):
        o2.step()
        s2.step()
        got.append(s2.get_last_lr())
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_state_dict_keys_like_torch():
    o, t = pair()
    a, b = ours.StepLR(o, 3), theirs.StepLR(t, 3)
    for k in ("step_size", "gamma", "base_lrs", "last_epoch", "_step_count", "_last_lr"):
        assert k in a.state_dict() and k in b.state_dict()
        assert a.state_dict()[k] == b.state_dict()[k], k
    assert "lr_lambdas" not in ours.LambdaLR(o, lam).state_dict()


def test_errors():
    o, _ = pair()
    with pytest.raises(TypeError, match="optimizer"):
        ours.StepLR(object(), 3)
    with pytest.raises(ValueError, match="step_size"):
        ours.StepLR(o, 0)
    with pytest.raises(ValueError, match="milestones"):
        ours.SequentialLR(o, [ours.StepLR(o, 2)], milestones=[3])
    with pytest.raises(ValueError, match="factor"):
        ours.ReduceLROnPlateau(o, factor=1.0)
    with pytest.raises(KeyError, match="initial_lr"):
        ours.StepLR(optim.SGD([fb.ones(1, requires_grad=True)], lr=0.1), 3, last_epoch=5)
