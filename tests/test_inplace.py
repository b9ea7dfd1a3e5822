"""In-place tensor ops with PyTorch's semantics (issue 17): writes, versions, the leaf
rule, recording on non-leaves, and the manual SGD idiom step for step."""

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim

BINARY = [
    ("add_", lambda t, o: t.add_(o)),
    ("sub_", lambda t, o: t.sub_(o)),
    ("mul_", lambda t, o: t.mul_(o)),
    ("div_", lambda t, o: t.div_(o)),
    ("__iadd__", lambda t, o: t.__iadd__(o)),
    ("__isub__", lambda t, o: t.__isub__(o)),
    ("__imul__", lambda t, o: t.__imul__(o)),
    ("__itruediv__", lambda t, o: t.__itruediv__(o)),
]
VALUES = np.array([[1.5, -2.0, 0.0], [4.0, 0.25, -0.5]])
OTHERS = [2.0, np.array([1.0, -3.0, 0.5]), -0.0]


@pytest.mark.parametrize("name, method", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("other", OTHERS, ids=["scalar", "row", "minus-zero"])
def test_binary_in_place_writes_the_array_and_bumps_the_version(name, method, other):
    t = fb.tensor(VALUES.copy())
    array, version = t.data, t._version
    with np.errstate(divide="ignore", invalid="ignore"):
        out = method(t, other)
    assert out is t and t.data is array and t._version == version + 1
    ufunc = {"add": np.add, "sub": np.subtract, "mul": np.multiply}
    key = name.strip("_").replace("i", "", 1) if name.startswith("__") else name[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = ufunc.get(key, np.true_divide)(VALUES, other)
    np.testing.assert_array_equal(t.data, expected)


def test_in_place_ops_match_torch_values():
    torch = pytest.importorskip("torch")
    for name, method in BINARY:
        for other in OTHERS:
            with np.errstate(divide="ignore", invalid="ignore"):
                ours = method(fb.tensor(VALUES.copy()), other).data
            tt = torch.tensor(VALUES.copy())
            theirs = method(tt, torch.as_tensor(other) if isinstance(other, np.ndarray) else other)
            np.testing.assert_array_equal(ours, theirs.numpy(), err_msg=name, strict=True)


def test_fill_zero_copy_clamp_normal_uniform():
    t = fb.tensor(VALUES.copy())
    assert t.zero_() is t and not t.data.any()
    t.fill_(3.0)
    np.testing.assert_array_equal(t.data, np.full((2, 3), 3.0))
    t.copy_(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(t.data, [[1, 2, 3], [1, 2, 3]])
    t.clamp_(1.5, 2.5)
    np.testing.assert_array_equal(t.data, [[1.5, 2, 2.5], [1.5, 2, 2.5]])
    fb.manual_seed(0)
    t.normal_(10.0, 0.01)
    assert abs(t.data.mean() - 10) < 0.1
    t.uniform_(-1.0, -0.5)
    assert ((t.data >= -1) & (t.data < -0.5)).all()
    assert t._version == 6


def test_a_leaf_that_requires_grad_refuses_outside_no_grad():
    w = fb.tensor([1.0, 2.0], requires_grad=True)
    for call in (lambda: w.add_(1.0), lambda: w.zero_(), lambda: w.clamp_(0.0, 1.0)):
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            call()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w += 1
    with fb.no_grad():
        w -= 0.5
        w.mul_(2.0)
    np.testing.assert_array_equal(w.data, [1.0, 3.0])
    assert w.requires_grad and w.is_leaf


def test_a_float_cannot_be_stored_in_an_int_tensor():
    t = fb.tensor([1, 2])
    with pytest.raises(TypeError, match="can't be cast"):
        t += 0.5
    t += 2
    np.testing.assert_array_equal(t.data, [3, 4])


def test_a_shape_changing_in_place_op_is_refused():
    with pytest.raises(RuntimeError, match="cannot change the shape"):
        fb.ones(3).add_(np.ones((2, 3)))


def test_in_place_on_a_non_leaf_is_recorded_like_torch():
    torch = pytest.importorskip("torch")
    x = fb.tensor(VALUES.copy(), requires_grad=True)
    c = fb.tensor(np.array([0.5, 2.0, -1.0]), requires_grad=True)
    y = x * 2
    y.mul_(c)
    y.add_(1.0)
    y.clamp_(-3.0, 3.0)
    (y * y).sum().backward()
    tx = torch.tensor(VALUES.copy(), requires_grad=True)
    tc = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64, requires_grad=True)
    ty = tx * 2
    ty.mul_(tc)
    ty.add_(1.0)
    ty.clamp_(-3.0, 3.0)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy())
    np.testing.assert_allclose(x.grad, tx.grad.numpy())
    np.testing.assert_allclose(c.grad, tc.grad.numpy())


def test_in_place_on_a_non_leaf_by_hand():
    x = fb.tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x * 3
    y += x  # y = 4x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [4.0, 4.0])
    x.grad = None
    z = x * 1
    z.copy_(fb.tensor(np.array([5.0, 5.0])))  # the old value gets a zero gradient
    (z * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [5.0, 5.0])


def test_backward_through_a_graph_that_saved_the_old_value_raises():
    x = fb.tensor(np.array([0.5, 1.0]), requires_grad=True)
    y = x.exp()  # exp saves its output
    y.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()
    w = fb.tensor(np.array([1.0, 2.0]), requires_grad=True)
    kept = (w * w).sum()
    with fb.no_grad():
        w.sub_(0.1)
    with pytest.raises(RuntimeError, match="modified in place"):
        kept.backward()


def _model(seed):
    fb.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_manual_sgd_loop_equals_optim_sgd_step_for_step():
    manual, reference = _model(3), _model(3)
    opt = optim.SGD(reference.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.standard_normal((8, 6)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        manual.zero_grad()
        F.cross_entropy(manual(fb.from_numpy(x)), y).backward()
        with fb.no_grad():
            for p in manual.parameters():
                p -= 0.05 * p.grad  # PyTorch's manual-update idiom
        opt.zero_grad()
        F.cross_entropy(reference(fb.from_numpy(x)), y).backward()
        opt.step()
        # Equal to float32 rounding: the fused kernel rounds w - lr·g once (an FMA), the
        # manual loop rounds lr·g and then the difference.
        for p, q in zip(manual.parameters(), reference.parameters(), strict=True):
            np.testing.assert_allclose(p.data, q.data, rtol=4e-7, atol=1e-7)
