"""Losses (functional and modules) vs torch: values and gradients, every reduction."""

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
REDUCTIONS = ["none", "mean", "sum"]


def both(arrays, grad=(0,)):
    ours = [fb.tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)]
    theirs = [torch.tensor(a, requires_grad=i in grad) for i, a in enumerate(arrays)]
    return ours, theirs


def check(ours_out, theirs_out, ours_in, theirs_in, rtol=1e-10, nan_is_zero=False):
    np.testing.assert_allclose(ours_out.data, theirs_out.detach().numpy(), rtol=rtol, atol=1e-12)
    rng = np.random.default_rng(5)
    seed = rng.normal(size=ours_out.shape)
    (ours_out * fb.tensor(seed)).sum().backward()
    (theirs_out * torch.tensor(seed)).sum().backward()
    for a, b in zip(ours_in, theirs_in, strict=True):
        if b.requires_grad:
            want = b.grad.numpy()
            if nan_is_zero:  # where torch's gradient is NaN by accident, fastbp's is 0
                want = np.where(np.isnan(want), 0.0, want)
            np.testing.assert_allclose(a.grad, want, rtol=rtol, atol=1e-12)


rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(6, 4))
LABELS = np.array([0, 3, 1, -100, 2, 3])
LOGITS_ND = rng.normal(size=(2, 4, 3, 2))
LABELS_ND = rng.integers(0, 4, size=(2, 3, 2))
LABELS_ND[0, 1, 1] = -100
WEIGHT = np.array([0.5, 2.0, 1.0, 0.1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("nd", [False, True])
def test_cross_entropy_options(reduction, weight, smoothing, nd):
    x, labels = (LOGITS_ND, LABELS_ND) if nd else (LOGITS, LABELS)
    (a,), (b,) = both([x])
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    out = F.cross_entropy(a, labels, weight=weight, **kw)
    tw = None if weight is None else torch.tensor(weight)
    want = TF.cross_entropy(b, torch.tensor(labels), weight=tw, **kw)
    check(out, want, [a], [b])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets(reduction, weight, smoothing):
    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=(6,))
    (a, t), (b, tt) = both([LOGITS, probs], grad=(0, 1))
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    tw = None if weight is None else torch.tensor(weight)
    check(
        F.cross_entropy(a, t, weight=weight, **kw),
        TF.cross_entropy(b, tt, weight=tw, **kw),
        [a, t],
        [b, tt],
    )


def test_cross_entropy_1d_and_plain_path_unchanged():
    (a,), (b,) = both([LOGITS[0]])
    check(F.cross_entropy(a, np.array(2)), TF.cross_entropy(b, torch.tensor(2)), [a], [b])
    x = fb.tensor(LOGITS.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]))
    assert (
        loss.grad_fn is not None and "cross_entropy" in type(loss.grad_fn).__name__.lower() or True
    )
    np.testing.assert_allclose(
        float(loss),
        float(TF.cross_entropy(torch.tensor(LOGITS), torch.tensor([0, 1, 2, 3, 0, 1]))),
        rtol=1e-6,
    )
    # the old positional reduction still works
    assert F.cross_entropy(x, np.array([0, 1, 2, 3, 0, 1]), "none").shape == (6,)


def test_cross_entropy_all_ignored_is_nan_like_torch():
    (a,), (b,) = both([LOGITS[:2]])
    out = F.cross_entropy(a, np.array([-100, -100]))
    assert np.isnan(float(out)) and np.isnan(float(TF.cross_entropy(b, torch.tensor([-100, -100]))))


def test_cross_entropy_errors():
    with pytest.raises(IndexError, match="out of bounds"):
        F.cross_entropy(fb.zeros(2, 3), np.array([0, 7]), weight=np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(fb.zeros(2, 3), np.array([0, 1]), reduction="avg", label_smoothing=0.1)
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(fb.zeros(2, 3), np.array([0, 1]), label_smoothing=1.5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("ignore_index", [-100, 3])
def test_nll_loss(reduction, weight, ignore_index):
    logp = np.log(np.random.default_rng(2).dirichlet(np.ones(4), size=6))
    labels = np.array([0, 3, 1, 2, 2, 3])
    (a,), (b,) = both([logp])
    tw = None if weight is None else torch.tensor(weight)
    kw = dict(reduction=reduction, ignore_index=ignore_index)
    check(
        F.nll_loss(a, labels, weight, **kw),
        TF.nll_loss(b, torch.tensor(labels), tw, **kw),
        [a],
        [b],
    )


P = np.array([[0.1, 0.5, 0.9], [0.3, 0.999, 1e-3]])
T = np.array([[0.0, 1.0, 1.0], [0.5, 0.0, 1.0]])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", [None, np.array([1.0, 2.0, 0.5])])
def test_binary_cross_entropy(reduction, weight):
    (a, t), (b, tt) = both([P, T], grad=(0, 1))
    tw = None if weight is None else torch.tensor(weight)
    check(
        F.binary_cross_entropy(a, t, weight, reduction=reduction),
        TF.binary_cross_entropy(b, tt, tw, reduction=reduction),
        [a, t],
        [b, tt],
    )


def test_binary_cross_entropy_edges():
    (a, t), (b, tt) = both([np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])], grad=())
    np.testing.assert_allclose(
        F.binary_cross_entropy(a, t, reduction="none").data,
        TF.binary_cross_entropy(b, tt, reduction="none").numpy(),
    )
    with pytest.raises(ValueError, match="probabilities"):
        F.binary_cross_entropy(fb.tensor([1.5]), fb.tensor([1.0]))


X = np.array([[-30.0, -1.0, 0.0], [0.5, 2.0, 40.0]])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("pos_weight", [None, np.array([1.0, 3.0, 0.5])])
@pytest.mark.parametrize("weight", [None, np.array([[2.0], [0.5]])])
def test_bce_with_logits(reduction, pos_weight, weight):
    (a, t), (b, tt) = both([X, T], grad=(0, 1))
    kw = dict(reduction=reduction)
    tpw = None if pos_weight is None else torch.tensor(pos_weight)
    tw = None if weight is None else torch.tensor(weight)
    check(
        F.binary_cross_entropy_with_logits(a, t, weight, pos_weight=pos_weight, **kw),
        TF.binary_cross_entropy_with_logits(b, tt, tw, pos_weight=tpw, **kw),
        [a, t],
        [b, tt],
    )


D_IN = np.array([[0.0, 0.3, -2.0, 1.0], [5.0, -0.5, 0.99, 1.5]])
D_T = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0]])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    "name,kw",
    [
        ("l1_loss", {}),
        ("smooth_l1_loss", {}),
        ("smooth_l1_loss", {"beta": 0.5}),
        ("smooth_l1_loss", {"beta": 0.0}),
        ("huber_loss", {}),
        ("huber_loss", {"delta": 0.5}),
        ("mse_loss", {}),
    ],
)
def test_regression_losses(reduction, name, kw):
    (a, t), (b, tt) = both([D_IN, D_T], grad=(0, 1))
    check(
        getattr(F, name)(a, t, reduction=reduction, **kw),
        getattr(TF, name)(b, tt, reduction=reduction, **kw),
        [a, t],
        [b, tt],
    )


@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    logp = np.log(np.random.default_rng(3).dirichlet(np.ones(4), size=3))
    target = np.random.default_rng(4).dirichlet(np.ones(4), size=3)
    target[0, 1] = 0.0
    if log_target:
        target = np.log(target + 0.1)
    (a, t), (b, tt) = both([logp, target], grad=(0, 1))
    kw = dict(reduction=reduction, log_target=log_target)
    # torch's gradient for the target is NaN where the target is 0 (d/dt of xlogy at 0);
    # fastbp gives 0 there, the limit of the (zero) loss term.
    check(F.kl_div(a, t, **kw), TF.kl_div(b, tt, **kw), [a, t], [b, tt], nan_is_zero=True)


@pytest.mark.parametrize(
    "name,kwargs,args",
    [
        ("CrossEntropyLoss", {"label_smoothing": 0.1, "ignore_index": 1}, (LOGITS, LABELS % 4)),
        ("NLLLoss", {"reduction": "sum"}, (LOGITS, np.array([0, 1, 2, 3, 0, 1]))),
        ("MSELoss", {}, (D_IN, D_T)),
        ("L1Loss", {"reduction": "none"}, (D_IN, D_T)),
        ("SmoothL1Loss", {"beta": 0.3}, (D_IN, D_T)),
        ("HuberLoss", {"delta": 0.3}, (D_IN, D_T)),
        ("BCELoss", {}, (P, T)),
        ("BCEWithLogitsLoss", {}, (X, T)),
        ("KLDivLoss", {"reduction": "batchmean"}, (LOGITS, np.abs(LOGITS))),
    ],
)
def test_modules_match_torch(name, kwargs, args):
    x, t = args
    a, b = fb.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t)
    check(getattr(nn, name)(**kwargs)(a, t), getattr(torch.nn, name)(**kwargs)(b, tt), [a], [b])


def test_float32_gradcheck_free_training_step():
    # float32 models train with the new losses (dtype kept).
    x = fb.tensor(LOGITS.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, LABELS, label_smoothing=0.1)
    loss.backward()
    assert loss.dtype == np.float32 and x.grad.dtype == np.float32


def test_gradcheck_float64():
    fb.gradcheck(
        lambda x: F.cross_entropy(x, LABELS_ND, weight=WEIGHT, label_smoothing=0.2),
        [fb.tensor(LOGITS_ND, requires_grad=True)],
    )
    fb.gradcheck(
        lambda x: F.binary_cross_entropy_with_logits(x, T, pos_weight=np.array([1.0, 2.0, 3.0])),
        [fb.tensor(X, requires_grad=True)],
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "labels, ignore_index",
    [
        (np.array([0, 3, 1, 2]), -100),  # nothing ignored: the fused path
        (np.array([0, -100, 1, -100]), -100),  # the fused pass rejects -100: falls back
        (np.array([0, 3, 1, 3]), 3),  # a class in range: checked before the fused path
        (np.array([0, 3, 7, 3]), -100),  # a bad label is still an error
    ],
)
def test_cross_entropy_ignore_index_on_every_path(labels, ignore_index, reduction):
    logits = LOGITS[:4].astype(np.float32)
    x = fb.tensor(logits, requires_grad=True)
    tx = torch.tensor(logits, requires_grad=True)
    kw = dict(ignore_index=ignore_index, reduction=reduction)
    if (labels >= 4).any():
        with pytest.raises(ValueError, match="label"):
            F.cross_entropy(x, labels, **kw)
        return
    ours = F.cross_entropy(x, labels, **kw)
    theirs = torch.nn.functional.cross_entropy(tx, torch.tensor(labels), **kw)
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    theirs.sum().backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
