"""Tests for fastbp.nn: Module semantics, Linear, Sequential, activations, functional, init."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.nn import init

# Ops this file gradchecks (read by tests/test_ops.py's coverage check).
GRADCHECKED_OPS = {"mse_loss"}


def f64(a, requires_grad=True):
    return fb.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


class Block(nn.Module):
    """A module with an own parameter, a constant, a child and a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.scale = fb.ones(3, requires_grad=True)
        self.constant = fb.ones(3)  # no grad: a plain attribute
        self.layers = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        self.head = nn.Linear(2, 1, bias=False)

    def forward(self, x):
        return self.head(self.layers(x * self.scale))


# ------------------------------------------------------------------------ Module


def test_registration_and_dotted_names():
    block = Block()
    names = [name for name, _ in block.named_parameters()]
    assert names == [
        "scale",
        "layers.0.weight",
        "layers.0.bias",
        "layers.2.weight",
        "layers.2.bias",
        "head.weight",
    ]
    assert [p for p in block.parameters()] == [p for _, p in block.named_parameters()]
    assert "constant" not in dict(block.named_parameters())
    assert block.constant.shape == (3,)


def test_order_is_deterministic_across_instances_and_calls():
    a, b = Block(), Block()
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    first = [id(p) for p in a.parameters()]
    assert first == [id(p) for p in a.parameters()]


def test_children_and_modules():
    block = Block()
    assert [type(m).__name__ for m in block.children()] == ["Sequential", "Linear"]
    assert [name for name, _ in block.named_modules()] == [
        "",
        "layers",
        "layers.0",
        "layers.1",
        "layers.2",
        "head",
    ]
    assert len(list(block.modules())) == 6


def test_non_leaf_and_non_grad_tensors_are_not_parameters():
    m = nn.Module()
    w = fb.ones(2, requires_grad=True)
    m.cached = w * 2  # an activation, not a weight
    m.buffer = fb.zeros(2)
    assert list(m.parameters()) == []
    m.w = w
    assert list(m.parameters()) == [w]


def test_reassign_delete_and_none():
    m = nn.Linear(2, 3)
    new_weight = fb.zeros(2, 3, requires_grad=True)
    m.weight = new_weight
    assert next(m.parameters()) is new_weight
    with pytest.raises(TypeError, match="registered parameter 'weight'"):
        m.weight = np.zeros((2, 3))
    m.bias = None
    assert [n for n, _ in m.named_parameters()] == ["weight"]
    del m.weight
    assert list(m.parameters()) == []


def test_assignment_before_init_is_explained():
    class Forgetful(nn.Module):
        def __init__(self):
            self.w = fb.ones(1, requires_grad=True)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgetful()


def test_shared_parameter_listed_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(net.parameters())) == 2
    assert set(net.state_dict()) == {"0.weight", "0.bias"}  # module visited once


def test_call_runs_forward_and_base_forward_raises():
    block = Block()
    out = block(fb.ones(5, 3))
    assert out.shape == (5, 1)
    with pytest.raises(NotImplementedError, match="Module must implement forward"):
        nn.Module()(1)


def test_train_eval_recursive():
    block = Block()
    assert all(m.training for m in block.modules())
    assert block.eval() is block
    assert not any(m.training for m in block.modules())
    block.train()
    assert all(m.training for m in block.modules())


def test_zero_grad_sets_none_or_zeros():
    block = Block()
    block(fb.ones(4, 3)).sum().backward()
    assert all(p.grad is not None for p in block.parameters())
    grads = [p.grad for p in block.parameters()]
    block.zero_grad(set_to_none=False)
    assert all(p.grad is g and not g.any() for p, g in zip(block.parameters(), grads, strict=True))
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())


def test_state_dict_round_trip_is_in_place_and_copies():
    fb.manual_seed(1)
    a = Block()
    fb.manual_seed(2)
    b = Block()
    state = a.state_dict()
    state["scale"][...] = 7.0  # a copy: the module is untouched
    assert (a.scale.data == 1).all()
    arrays = [p.data for p in b.parameters()]
    b.load_state_dict(a.state_dict())
    for (name, pa), pb, array in zip(a.named_parameters(), b.parameters(), arrays, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        assert pb.data is array  # loaded in place
    x = fb.randn(5, 3)
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_casts_dtype():
    m = nn.Linear(2, 2)
    state = {k: v.astype(np.float64) + 1 for k, v in m.state_dict().items()}
    m.load_state_dict(state)
    assert m.weight.dtype == np.float32
    np.testing.assert_allclose(m.weight.data, state["weight"], rtol=1e-6)


def test_load_state_dict_strict_errors_name_keys():
    m = Block()
    before = m.state_dict()
    state = m.state_dict()
    del state["layers.2.bias"]
    with pytest.raises(KeyError, match=r"missing keys \['layers.2.bias'\]"):
        m.load_state_dict(state)
    state = m.state_dict()
    state["layers.9.weight"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"unexpected keys \['layers.9.weight'\]"):
        m.load_state_dict(state)
    state = m.state_dict()
    state["layers.0.weight"] = np.zeros((4, 3), dtype=np.float32)
    state["scale"] = np.full(3, 5.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"'layers.0.weight' has shape \(4, 3\).*\(3, 4\)"):
        m.load_state_dict(state)
    for key, value in m.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(value, before[key])


def test_load_state_dict_non_strict_ignores_key_sets():
    m = nn.Linear(2, 2)
    m.load_state_dict({"weight": np.ones((2, 2)), "extra": np.zeros(3)}, strict=False)
    assert (m.weight.data == 1).all()


def test_repr_like_pytorch():
    net = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10, bias=False))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=784, out_features=128)\n"
        "  (1): ReLU()\n"
        "  (2): Linear(in_features=128, out_features=10, bias=False)\n"
        ")"
    )
    outer = nn.Sequential(nn.Sequential(nn.Tanh()), nn.Sigmoid())
    assert repr(outer) == (
        "Sequential(\n  (0): Sequential(\n    (0): Tanh()\n  )\n  (1): Sigmoid()\n)"
    )
    assert repr(nn.Parameter(np.zeros(1, np.float32))).startswith("Parameter containing:")


def test_parameter_requires_float():
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(np.zeros(2, dtype=np.int64))


# ---------------------------------------------------------------------- Sequential


def test_sequential_container_protocol():
    layers = [nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)]
    net = nn.Sequential(*layers)
    assert len(net) == 3
    assert list(net) == layers
    assert net[0] is layers[0] and net[-1] is layers[2]
    sub = net[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == layers[1:]
    with pytest.raises(IndexError, match="out of range for 3 modules"):
        net[3]
    with pytest.raises(TypeError, match="not a Module"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_activation_modules_match_functional():
    x = fb.tensor([[-2.0, 0.5, 3.0]])
    for module, fn in ((nn.ReLU(), F.relu), (nn.Sigmoid(), F.sigmoid), (nn.Tanh(), F.tanh)):
        np.testing.assert_array_equal(module(x).data, fn(x).data)
    np.testing.assert_allclose(nn.Tanh()(x).data, np.tanh(x.data))


# -------------------------------------------------------------------------- Linear


def test_linear_init_bounds_and_spread():
    fb.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (400, 300) and b.shape == (300,)
    assert w.dtype == np.float32 and b.dtype == np.float32
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(b).max() <= bound * (1 + 1e-6)
    # Uniform on [-bound, bound]: mean 0, std bound/sqrt(3), and it reaches the edges.
    assert abs(w.mean()) < 0.01 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    assert np.abs(w).max() > 0.99 * bound


def test_linear_init_reproducible_under_manual_seed():
    fb.manual_seed(123)
    a = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    fb.manual_seed(123)
    b = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    fb.manual_seed(124)
    c = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key])
        assert not np.array_equal(value, c.state_dict()[key])


def test_linear_forward_is_one_fused_record():
    layer = nn.Linear(3, 2)
    x = fb.randn(4, 3)
    y = layer(x)
    np.testing.assert_allclose(
        y.data, x.data @ layer.weight.data + layer.bias.data, rtol=1e-6, atol=1e-6
    )
    assert y.grad_fn.op.name == "linear"
    assert y.grad_fn.inputs == (x, layer.weight, layer.bias)
    no_bias = nn.Linear(3, 2, bias=False)
    assert len(no_bias(x).grad_fn.inputs) == 2
    assert [n for n, _ in no_bias.named_parameters()] == ["weight"]


def test_linear_accepts_ndarray_and_float64():
    layer = nn.Linear(3, 2, dtype=np.float64)
    assert layer.weight.dtype == np.float64
    assert layer(np.ones((2, 3))).shape == (2, 2)


def test_linear_feature_mismatch_names_layer_expected_and_got():
    layer = nn.Linear(784, 128)
    with pytest.raises(ValueError) as info:
        layer(fb.zeros(32, 100))
    message = str(info.value)
    assert "Linear(in_features=784, out_features=128)" in message
    assert "784" in message and "100" in message and "(32, 100)" in message
    with pytest.raises(ValueError, match=r"2-D input.*shape \(784,\).*reshape\(1, -1\)"):
        layer(fb.zeros(784))


def test_linear_rejects_bad_arguments():
    with pytest.raises(ValueError, match="in_features must be >= 0"):
        nn.Linear(-1, 2)
    with pytest.raises(TypeError, match="out_features must be an int"):
        nn.Linear(2, 2.5)
    with pytest.raises(TypeError, match="dtype must be floating point"):
        nn.Linear(2, 2, dtype=np.int32)


def test_linear_gradcheck_through_module():
    fb.manual_seed(3)
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = f64(np.random.default_rng(0).standard_normal((4, 3)))
    assert fb.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


# ---------------------------------------------------------------------- functional

RNG = np.random.default_rng(42)


def away_from_zero(shape):
    x = RNG.uniform(0.1, 2.0, shape) * RNG.choice([-1.0, 1.0], shape)
    return f64(x)


@pytest.mark.parametrize(
    "fn",
    [
        F.relu,
        F.sigmoid,
        F.tanh,
        F.softmax,
        F.log_softmax,
        lambda x: F.softmax(x, axis=0),
        lambda x: F.log_softmax(x, axis=0),
    ],
    ids=["relu", "sigmoid", "tanh", "softmax", "log_softmax", "softmax_ax0", "log_softmax_ax0"],
)
def test_activation_gradients(fn):
    assert fb.gradcheck(fn, [away_from_zero((3, 4))])


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_functional_gradients(with_bias):
    x, w, b = away_from_zero((5, 3)), away_from_zero((3, 2)), away_from_zero((2,))
    if with_bias:
        assert fb.gradcheck(F.linear, [x, w, b])
        expected = x.data @ w.data + b.data
        np.testing.assert_allclose(F.linear(x, w, b).data, expected)
    else:
        assert fb.gradcheck(F.linear, [x, w])
        np.testing.assert_allclose(F.linear(x, w).data, x.data @ w.data)


def test_linear_functional_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"linear.*\(5, 3\).*\(4, 2\)"):
        F.linear(fb.zeros(5, 3), fb.zeros(4, 2))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_gradients(reduction):
    logits = f64(RNG.standard_normal((6, 4)))
    labels = np.array([0, 3, 1, 1, 2, 0])
    assert fb.gradcheck(lambda t: F.cross_entropy(t, labels, reduction=reduction), [logits])


def numpy_cross_entropy(logits, labels):
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return lse - logits[np.arange(len(labels)), labels]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_numpy_and_is_stable(dtype):
    logits = np.array(
        [[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [3.0, 1.0, 1000.0]], dtype=dtype
    )
    labels = np.array([1, 2, 2])
    t = fb.tensor(logits, requires_grad=True)
    per_sample = F.cross_entropy(t, labels, reduction="none")
    expected = numpy_cross_entropy(logits, labels)
    np.testing.assert_allclose(per_sample.data, expected, rtol=1e-6)
    assert per_sample.data[0] == pytest.approx(2000.0)
    assert per_sample.data[1] == pytest.approx(math.log(3), rel=1e-6)
    loss = F.cross_entropy(t, labels)
    assert loss.dtype == dtype
    assert loss.item() == pytest.approx(expected.mean(), rel=1e-6)
    loss.backward()
    assert np.isfinite(t.grad).all()
    np.testing.assert_allclose(t.grad.sum(axis=1), 0, atol=1e-6)  # softmax - onehot
    sum_loss = F.cross_entropy(t, fb.tensor(labels), reduction="sum")
    assert sum_loss.item() == pytest.approx(expected.sum(), rel=1e-6)


def test_cross_entropy_matches_torch():
    torch = pytest.importorskip("torch")
    logits = RNG.standard_normal((8, 5))
    labels = RNG.integers(0, 5, 8)
    for reduction in ("mean", "sum", "none"):
        t = f64(logits)
        ours = F.cross_entropy(t, labels, reduction=reduction)
        ours.backward(np.ones(ours.shape))
        tt = torch.tensor(logits, requires_grad=True)
        ref = torch.nn.functional.cross_entropy(tt, torch.tensor(labels), reduction=reduction)
        ref.backward(torch.ones_like(ref))
        np.testing.assert_allclose(ours.data, ref.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(t.grad, tt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cross_entropy_errors():
    logits = fb.zeros(3, 4)
    with pytest.raises(TypeError, match="labels must be integer.*float64"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="labels must be integer.*bool"):
        F.cross_entropy(logits, np.array([True, False, True]))
    with pytest.raises(ValueError, match=r"label 4 at position 1 is out of range for 4 classes"):
        F.cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"label -1 at position 2"):
        F.cross_entropy(logits, np.array([0, 1, -1]))
    with pytest.raises(
        ValueError, match=r"labels have shape \(2,\) but logits have shape \(3, 4\)"
    ):
        F.cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels have shape \(3, 1\)"):
        F.cross_entropy(logits, np.array([[0], [1], [2]]))
    with pytest.raises(ValueError, match="empty batch"):
        F.cross_entropy(fb.zeros(0, 4), np.array([], dtype=np.int64))
    bad = np.zeros((3, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*nan at \[1, 2\]"):
        F.cross_entropy(fb.tensor(bad), np.array([0, 1, 2]))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        F.cross_entropy(fb.tensor(bad), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="must be 2-D"):
        F.cross_entropy(fb.zeros(4), np.array([0]))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.cross_entropy(logits, np.array([0, 1, 2]), reduction="avg")


def test_cross_entropy_huge_finite_logits_are_not_flagged():
    # The sum overflows to inf, but every element is finite: no error.
    logits = np.full((2, 3), 3e38, dtype=np.float32)
    loss = F.cross_entropy(fb.tensor(logits), np.array([0, 1]))
    assert loss.item() == pytest.approx(math.log(3), rel=1e-5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_gradients_and_values(reduction):
    pred, target = f64(RNG.standard_normal((4, 3))), f64(RNG.standard_normal((4, 3)))
    assert fb.gradcheck(lambda p, t: F.mse_loss(p, t, reduction=reduction), [pred, target])
    squared = (pred.data - target.data) ** 2
    expected = {"mean": squared.mean(), "sum": squared.sum(), "none": squared}[reduction]
    np.testing.assert_allclose(F.mse_loss(pred, target.data, reduction).data, expected)


def test_mse_loss_errors():
    with pytest.raises(ValueError, match=r"pred has shape \(4, 1\) but target has shape \(4,\)"):
        F.mse_loss(fb.zeros(4, 1), fb.zeros(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(fb.zeros(4), fb.zeros(4), reduction="max")


# ---------------------------------------------------------------------------- init


def test_init_functions_work_in_place():
    t = fb.zeros(50, 40)
    array = t.data
    assert init.uniform_(t, -0.5, 0.25) is t and t.data is array
    assert t.data.min() >= -0.5 and t.data.max() < 0.25
    init.normal_(t, mean=3.0, std=0.5)
    assert t.data.mean() == pytest.approx(3.0, abs=0.05)
    assert t.data.std() == pytest.approx(0.5, rel=0.05)
    init.zeros_(t)
    assert not t.data.any() and t.data is array


@pytest.mark.parametrize(
    ("a", "mode", "nonlinearity", "fan"),
    [
        (math.sqrt(5), "fan_in", "leaky_relu", 60),
        (0.0, "fan_in", "relu", 60),
        (0, "fan_out", "relu", 30),
    ],
)
def test_kaiming_uniform_bound(a, mode, nonlinearity, fan):
    t = init.kaiming_uniform_(fb.zeros(60, 30), a=a, mode=mode, nonlinearity=nonlinearity)
    bound = init.calculate_gain(nonlinearity, a) * math.sqrt(3 / fan)
    assert np.abs(t.data).max() <= bound * (1 + 1e-6)
    assert np.abs(t.data).max() > 0.95 * bound


def test_init_reproducible_and_validated():
    fb.manual_seed(5)
    a = init.kaiming_uniform_(fb.zeros(4, 3)).data.copy()
    fb.manual_seed(5)
    np.testing.assert_array_equal(init.kaiming_uniform_(fb.zeros(4, 3)).data, a)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_uniform_(fb.zeros(4))
    with pytest.raises(TypeError, match="floating-point"):
        init.uniform_(fb.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swish")
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Sigmoid])
def test_sequential_fuses_linear_and_activation_without_changing_results(activation):
    fb.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4), activation(), nn.Linear(4, 3))
    x = fb.tensor(np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32))
    out = model(x)
    assert out.grad_fn.inputs[0].grad_fn.op.name.startswith("linear_")  # one fused record
    out.sum().backward()
    fused = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    unfused = model[2](model[1](model[0](x)))  # module by module: no fusion
    np.testing.assert_allclose(unfused.data, out.data, rtol=1e-6)
    unfused.sum().backward()
    for a, b in zip(fused, (p.grad for p in model.parameters()), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
