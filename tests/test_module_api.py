"""Module API (buffers, hooks, apply, to, requires_grad_), containers and nn.utils, vs torch."""

import numpy as np
import pytest

import fastbp as fb
from fastbp import nn
from fastbp.nn.utils import (
    clip_grad_norm_,
    clip_grad_value_,
    parameters_to_vector,
    vector_to_parameters,
)


class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("running", np.zeros(2, dtype=np.float32))
        self.register_buffer("scratch", np.ones(2, dtype=np.float32), persistent=False)
        self.register_buffer("count", np.array(0, dtype=np.int64))

    def forward(self, x):
        return self.lin(x)


def test_buffers_in_state_dict_and_persistent_flag():
    m = WithBuffers()
    assert list(m.state_dict()) == ["running", "count", "lin.weight", "lin.bias"]
    assert [n for n, _ in m.named_buffers()] == ["running", "scratch", "count"]
    assert all(p is not m.running for p in m.parameters())
    m.running = np.array([1.0, 2.0], dtype=np.float32)  # reassigning keeps it a buffer
    assert isinstance(m.running, fb.Tensor) and "running" in m._buffers
    other = WithBuffers()
    other.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(other.running.data, [1.0, 2.0])
    with pytest.raises(KeyError, match="already a parameter"):
        m.register_buffer("lin", np.zeros(1))
    del m.scratch
    assert "scratch" not in dict(m.named_buffers())


def test_to_double_float_casts_params_and_float_buffers_only():
    m = WithBuffers().double()
    assert m.lin.weight.dtype == np.float64 and m.running.dtype == np.float64
    assert m.count.dtype == np.int64
    out = m(fb.ones(1, 3, dtype=np.float64))
    assert out.dtype == np.float64
    assert m.float().lin.bias.dtype == np.float32
    assert m.to("cpu") is m
    with pytest.raises(TypeError, match="floating-point"):
        m.to(np.int32)


def test_apply_order_matches_torch():
    torch = pytest.importorskip("torch")
    seen, tseen = [], []
    nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU(), nn.Tanh())).apply(
        lambda m: seen.append(type(m).__name__)
    )
    tnn = torch.nn
    tnn.Sequential(tnn.Linear(2, 2), tnn.Sequential(tnn.ReLU(), tnn.Tanh())).apply(
        lambda m: tseen.append(type(m).__name__)
    )
    assert seen == tseen


def test_forward_hooks_modify_and_remove():
    m = nn.Linear(2, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: args[0] * 0)
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape))
    h3 = m.register_forward_hook(lambda mod, args, out: out + 1)
    out = m(fb.ones(3, 2))
    np.testing.assert_allclose(out.data, m.bias.data + 1 + np.zeros((3, 2)), rtol=1e-6)
    assert calls == [(3, 2)]
    for h in (h1, h2, h3):
        h.remove()
    h1.remove()  # twice is harmless
    np.testing.assert_allclose(
        m(fb.ones(1, 2)).data, (np.ones((1, 2)) @ m.weight.data) + m.bias.data, rtol=1e-6
    )
    assert calls == [(3, 2)]
    with pytest.raises(TypeError, match="callable"):
        m.register_forward_hook(3)


def test_hooks_on_one_module_do_not_leak_to_others():
    a, b = nn.ReLU(), nn.ReLU()
    a.register_forward_hook(lambda *args: fb.zeros(1))
    assert b(fb.ones(1)).data[0] == 1.0 and a(fb.ones(1)).data[0] == 0.0


def test_requires_grad_freezes():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net[0].requires_grad_(False)
    net(fb.ones(1, 2)).sum().backward()
    assert net[0].weight.grad is None and net[1].weight.grad is not None
    assert len(list(net.parameters())) == 4
    net.zero_grad()
    assert net[1].weight.grad is None


def test_train_eval_children():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    assert not net.eval()[1].training and net.train()[0].training
    assert [n for n, _ in net.named_children()] == ["0", "1"]


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    ml.append(nn.Linear(2, 1))
    ml.insert(1, nn.Tanh())
    assert [type(m).__name__ for m in ml] == ["Linear", "Tanh", "ReLU", "Linear"]
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "3.weight", "3.bias"]
    del ml[1]
    assert type(ml[1]).__name__ == "ReLU" and type(ml[-1]).__name__ == "Linear" and len(ml) == 3
    assert len(ml[1:]) == 2
    with pytest.raises(IndexError):
        ml[5]
    with pytest.raises(TypeError):
        ml.append(3)
    md = nn.ModuleDict({"enc": nn.Linear(2, 3)})
    md["dec"] = nn.Linear(3, 2)
    assert list(md) == ["enc", "dec"] and list(md.state_dict())[0] == "enc.weight"
    md.pop("enc")
    assert list(md.keys()) == ["dec"]
    with pytest.raises(KeyError, match="keys are"):
        md["nope"]
    with pytest.raises(NotImplementedError):
        md(1)


@pytest.mark.parametrize(
    "shape,start,end", [((2, 3, 4), 1, -1), ((2, 3, 4), 0, 1), ((5,), 0, -1), ((2, 1, 0), 1, 2)]
)
def test_flatten_matches_torch(shape, start, end):
    torch = pytest.importorskip("torch")
    x = np.zeros(shape, dtype=np.float32)
    want = torch.nn.Flatten(start, end)(torch.from_numpy(x)).shape
    assert nn.Flatten(start, end)(fb.tensor(x)).shape == tuple(want)


def test_unflatten_and_identity():
    assert nn.Unflatten(1, (2, -1))(fb.zeros(3, 8)).shape == (3, 2, 4)
    with pytest.raises(ValueError, match="multiply"):
        nn.Unflatten(1, (3, 3))(fb.zeros(3, 8))
    x = fb.ones(2, requires_grad=True)
    nn.Flatten(0)(nn.Unflatten(0, (1, 2))(x)).sum().backward()
    np.testing.assert_array_equal(x.grad, [1, 1])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=s) for s in [(3, 4), (4,), (1,)]]
    ps = [fb.zeros(g.shape, dtype=np.float64, requires_grad=True) for g in grads]
    for p, g in zip(ps, grads, strict=True):
        p.grad = g.copy()
    tps = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(tps, grads, strict=True):
        p.grad = torch.from_numpy(g.copy())
    total = clip_grad_norm_(ps + [fb.zeros(2, requires_grad=True)], max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type)
    np.testing.assert_allclose(float(total), float(ttotal), rtol=1e-12)
    for p, tp in zip(ps, tps, strict=True):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_nonfinite():
    w = fb.zeros(2, dtype=np.float64, requires_grad=True)
    w.grad = np.array([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="not finite|cannot be clipped"):
        clip_grad_norm_([w], 1.0, error_if_nonfinite=True)
    assert float(clip_grad_norm_([w], 1.0)) == np.inf
    assert float(clip_grad_norm_([fb.zeros(1, requires_grad=True)], 1.0)) == 0.0


def test_clip_grad_value_and_vectors():
    w = fb.zeros(3, dtype=np.float64, requires_grad=True)
    w.grad = np.array([-5.0, 0.1, np.nan])
    clip_grad_value_([w], 0.5)
    np.testing.assert_array_equal(w.grad[:2], [-0.5, 0.1])
    lin = nn.Linear(3, 2)
    v = parameters_to_vector(lin.parameters())
    assert v.shape == (8,) and not v.requires_grad
    vector_to_parameters(np.arange(8.0), lin.parameters())
    np.testing.assert_array_equal(lin.bias.data, [6.0, 7.0])
    np.testing.assert_array_equal(parameters_to_vector(lin.parameters()).data, np.arange(8.0))
    with pytest.raises(ValueError, match="8"):
        vector_to_parameters(np.arange(7.0), lin.parameters())
