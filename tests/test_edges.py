"""Regression tests for issue 13's op-level items: PyTorch's answers at the edges.

Each test is numbered by the item of issue 13 it covers. Every case is checked against
hand-worked values (so CI without PyTorch still checks it) and, when PyTorch is installed,
against PyTorch itself.
"""

import math

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.core.dtypes import result_dtype

try:
    import torch
except ImportError:  # the hand-worked values still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
inf, nan = math.inf, math.nan


def _grads(fn, *values):
    """fn's output and the gradients of sum(output) for float64 inputs."""
    xs = [fb.tensor(np.array(v, dtype=np.float64), requires_grad=True) for v in values]
    out = fn(*xs)
    out.sum().backward()
    return out.data, [x.grad for x in xs]


def _torch_grads(fn, *values):
    xs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]
    out = fn(*xs)
    out.sum().backward()
    return out.detach().numpy(), [x.grad.numpy() for x in xs]


def _same(got, want):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


# ------------------------------------------------------------------ 1. pow, every case

# (name, function, inputs, hand-worked output, hand-worked gradients), as PyTorch gives them.
POW_CASES = [
    ("x**0 at 0", lambda x: x**0, [[0.0, 2.0]], [1.0, 1.0], [[0.0, 0.0]]),
    ("x**0.5 at 0", lambda x: x**0.5, [[0.0, 4.0]], [0.0, 2.0], [[inf, 0.25]]),
    ("x**1 at 0", lambda x: x**1, [[0.0]], [0.0], [[1.0]]),
    ("x**2 at 0", lambda x: x**2, [[0.0]], [0.0], [[0.0]]),
    ("x**-1 at 0", lambda x: x**-1.0, [[0.0]], [inf], [[-inf]]),
    ("negative base, int exponent", lambda x: x**3, [[-2.0, 0.0]], [-8.0, 0.0], [[12.0, 0.0]]),
    ("0.0**x", lambda x: 0.0**x, [[1.0, 2.0]], [0.0, 0.0], [[0.0, 0.0]]),
    ("0.0**x at 0 and -1", lambda x: 0.0**x, [[0.0, -1.0]], [1.0, inf], [[0.0, -inf]]),
    ("2.0**x", lambda x: 2.0**x, [[0.0, -1.0]], [1.0, 0.5],
     [[math.log(2.0), 0.5 * math.log(2.0)]]),
    ("zero base, tensor exponent", lambda a, p: a**p,
     [[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 1.0, 2.0, -1.0]], [1.0, 0.0, 0.0, 0.0, inf],
     [[0.0, inf, 1.0, 0.0, -inf], [0.0, 0.0, 0.0, 0.0, -inf]]),
    ("x**0 tensor exponent", lambda a, p: a**p, [[0.0, 2.0, -2.0], [0.0, 0.0, 0.0]],
     [1.0, 1.0, 1.0], [[0.0, 0.0, 0.0], [0.0, math.log(2.0), nan]]),
    ("negative base, tensor exponent", lambda a, p: a**p, [[-2.0, -2.0, -2.0], [2.0, 3.0, 0.5]],
     [4.0, -8.0, nan], [[-4.0, 12.0, nan], [nan, nan, nan]]),
    ("1**p", lambda a, p: a**p, [[1.0, 1.0], [nan, 2.0]], [1.0, 1.0], [[nan, 2.0], [0.0, 0.0]]),
]  # fmt: skip


@pytest.mark.parametrize("case", POW_CASES, ids=[c[0] for c in POW_CASES])
def test_1_pow_matches_hand_worked_values(case):
    _, fn, inputs, want_out, want_grads = case
    with np.errstate(all="ignore"):
        out, grads = _grads(fn, *inputs)
    _same(out, want_out)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-15)


@needs_torch
@pytest.mark.parametrize("case", POW_CASES, ids=[c[0] for c in POW_CASES])
def test_1_pow_matches_torch(case):
    _, fn, inputs, _, _ = case
    with np.errstate(all="ignore"):
        out, grads = _grads(fn, *inputs)
    want_out, want_grads = _torch_grads(fn, *inputs)
    np.testing.assert_allclose(out, want_out, rtol=1e-15)
    for got, want in zip(grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-15)


def test_1_pow_float32_stays_float32():
    x = fb.tensor([0.0, 1.5], requires_grad=True)
    y = x**0
    y.sum().backward()
    assert y.dtype == x.grad.dtype == np.float32
    _same(x.grad, [0.0, 0.0])


# ------------------------------------------------------------ 4. cross_entropy with -inf


def test_4_cross_entropy_masked_classes_give_a_finite_loss():
    logits = np.array([[1.0, -inf, 0.0], [0.0, 0.0, 0.0]])
    x = fb.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, np.array([0, 1]))
    loss.backward()
    # Row 0 is softmax over the two unmasked classes: log(1 + e^-1); row 1 is log 3.
    want = (math.log(1 + math.exp(-1.0)) + math.log(3.0)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-12)
    p = 1 / (1 + math.exp(-1.0))
    np.testing.assert_allclose(
        x.grad, [[(p - 1) / 2, 0.0, (1 - p) / 2], [1 / 6, -1 / 3, 1 / 6]], rtol=1e-12
    )
    # The label's own logit -inf: an infinite loss, as in PyTorch (not an error).
    none = F.cross_entropy(fb.tensor(logits), np.array([1, 1]), reduction="none")
    assert none.data[0] == inf and np.isfinite(none.data[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "bad, words",
    [(nan, "non-finite"), (inf, "non-finite"), ("row", "-inf for every class")],
)
def test_4_cross_entropy_still_reports_a_nan_loss(dtype, bad, words):
    logits = np.zeros((2, 3), dtype)
    if bad == "row":
        logits[1] = -inf
    else:
        logits[1, 2] = bad
    with pytest.raises(ValueError, match=words):
        F.cross_entropy(fb.tensor(logits), np.array([0, 1]))


@needs_torch
def test_4_cross_entropy_matches_torch_with_minus_inf():
    logits = np.array([[1.0, -inf, 0.0, 2.0], [-inf, 0.5, -inf, 0.0], [0.0, 0.0, 0.0, 0.0]])
    labels = np.array([0, 1, 3])
    for reduction in ("mean", "sum", "none"):
        x = fb.tensor(logits, requires_grad=True)
        loss = F.cross_entropy(x, labels, reduction=reduction)
        loss.sum().backward()
        t = torch.tensor(logits, requires_grad=True)
        want = torch.nn.functional.cross_entropy(t, torch.tensor(labels), reduction=reduction)
        want.sum().backward()
        np.testing.assert_allclose(loss.data, want.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(x.grad, t.grad.numpy(), rtol=1e-12, atol=1e-15)


@needs_torch
@pytest.mark.parametrize("bad", [nan, inf])
def test_4_torch_gives_nan_where_fastbp_raises(bad):
    # The errors above are where PyTorch silently returns NaN.
    logits = torch.tensor([[1.0, bad, 0.0]])
    assert torch.isnan(torch.nn.functional.cross_entropy(logits, torch.tensor([0])))


# ------------------------------------------------------------------- 5. dtype promotion

PROMOTIONS = [
    # (a, b, torch's result for a * b)
    (np.array([1, 2]), np.array([1.0, 2.0], np.float32), np.float32),
    (np.array([1.0, 2.0], np.float32), np.array([1, 2], np.int32), np.float32),
    (np.array([True, False]), np.array([1, 2]), np.int64),
    (np.array([True, False]), np.array([1.0, 2.0], np.float32), np.float32),
    (np.array([1, 2], np.int32), np.array([1, 2], np.int64), np.int64),
    (np.array([1, 2], np.uint8), np.array([1, 2], np.int8), np.int16),
    (np.array([1.0], np.float32), np.array([1.0], np.float64), np.float64),
    (np.array([1.0, 2.0], np.float32), np.array(2.0, np.float64), np.float32),  # 0-d
    (np.array([1, 2]), np.array(2.0, np.float64), np.float64),  # 0-d float, higher kind
    (np.array([1, 2], np.int32), np.array(7), np.int32),  # 0-d int, same kind
    (np.array([1, 2]), 2.5, np.float32),  # Python float: the default float dtype
    (np.array([1, 2], np.int32), 2, np.int32),
    (np.array([1.0], np.float64), 2.5, np.float64),
    (np.array([1.0], np.float32), 2, np.float32),
    (np.array([True]), True, np.bool_),
    (np.array([True]), 3, np.int64),
    (np.array([True]), 3.0, np.float32),
]


def _tensor_or_scalar(v):
    return fb.tensor(v, dtype=v.dtype) if isinstance(v, np.ndarray) else v


@pytest.mark.parametrize("a, b, want", PROMOTIONS)
def test_5_binary_ops_promote_as_torch(a, b, want):
    assert result_dtype(a, b) == want and result_dtype(b, a) == want
    ta, tb = _tensor_or_scalar(a), _tensor_or_scalar(b)
    ops = [lambda x, y: x * y, lambda x, y: y + x]
    if want is not np.bool_:  # bool - bool raises, in PyTorch as in NumPy
        ops.append(lambda x, y: x - y)
    for op in ops:
        out = op(ta, tb)
        assert out.dtype == want
        np.testing.assert_array_equal(out.data, op(np.asarray(a), np.asarray(b)).astype(want))


@needs_torch
@pytest.mark.parametrize("a, b, want", PROMOTIONS)
def test_5_promotion_table_is_torchs(a, b, want):
    def as_torch(v):
        return torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v

    assert (as_torch(a) * as_torch(b)).numpy().dtype == want


@pytest.mark.parametrize(
    "a, b, want",
    [
        (np.array([1, 2]), np.array([2, 4]), np.float32),
        (np.array([True]), np.array([True]), np.float32),
        (np.array([1, 2]), 4, np.float32),
        (np.array([1.0], np.float64), np.array([2]), np.float64),
    ],
)
def test_5_true_division_of_integers_is_float32(a, b, want):
    out = _tensor_or_scalar(a) / _tensor_or_scalar(b)
    assert out.dtype == want
    if torch is not None:
        assert (torch.from_numpy(a) / (torch.from_numpy(b) if isinstance(b, np.ndarray) else b)
                ).numpy().dtype == want  # fmt: skip


def test_5_int_times_float32_parameter_keeps_float32_gradients():
    w = fb.tensor([1.0, 2.0], requires_grad=True)
    y = fb.tensor([3, 4]) * w
    assert y.dtype == np.float32
    y.sum().backward()
    assert w.grad.dtype == np.float32
    _same(w.grad, [3.0, 4.0])


def test_5_float64_input_to_float32_linear_raises_like_torch():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError) as info:
        layer(fb.tensor(np.ones((4, 3))))
    message = str(info.value)
    for words in ("linear", "same dtype", "float64", "float32", "(4, 3)", "(3, 2)", "astype"):
        assert words in message
    with pytest.raises(TypeError, match="same dtype"):
        fb.tensor(np.ones((2, 3))) @ fb.ones(3, 2)
    assert layer(fb.ones(4, 3)).dtype == np.float32  # same dtypes still fine
    if torch is not None:
        with pytest.raises(RuntimeError, match="same dtype"):
            torch.nn.Linear(3, 2)(torch.ones(4, 3, dtype=torch.float64))


# ---------------------------------------------------------------------------- 6. -0.0


def test_6_minus_zero_is_not_the_cached_plus_zero():
    x = fb.tensor([1.0, 2.0])
    assert not np.signbit((x * 0.0).data).any()
    negative = (x * -0.0).data
    assert np.signbit(negative).all()
    assert np.signbit((x + -0.0 * 1.0).data).any() == np.signbit(np.float32(1.0) + -0.0)
    # Cached the other way round too.
    y = fb.tensor([3.0])
    assert np.signbit((y * -0.0).data).all() and not np.signbit((y * 0.0).data).any()
    if torch is not None:
        assert torch.signbit(torch.tensor([1.0, 2.0]) * -0.0).all()


# --------------------------------------------------- 7. max/min with NaN and ties, empties

EXTREMES = [
    ("max NaN", lambda x: x.max(), [1.0, nan, 3.0], [0.0, 1.0, 0.0]),
    ("max two NaN", lambda x: x.max(), [nan, 1.0, nan], [0.5, 0.0, 0.5]),
    ("min NaN", lambda x: x.min(), [1.0, nan, -3.0], [0.0, 1.0, 0.0]),
    ("max ties split", lambda x: x.max(), [3.0, 1.0, 3.0], [0.5, 0.0, 0.5]),
    ("max dim ties first", lambda x: x.max(dim=1), [[3.0, 1.0, 3.0]], [[1.0, 0.0, 0.0]]),
    ("min dim ties first", lambda x: x.min(dim=0), [[1.0], [1.0]], [[1.0], [0.0]]),
    ("max dim NaN", lambda x: x.max(dim=1), [[3.0, nan, 3.0], [nan, 1.0, nan]],
     [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]),
    ("max inf", lambda x: x.max(), [1.0, inf, -inf], [0.0, 1.0, 0.0]),
    ("max all -inf", lambda x: x.max(), [-inf, -inf], [0.5, 0.5]),
]  # fmt: skip


@pytest.mark.parametrize("case", EXTREMES, ids=[c[0] for c in EXTREMES])
def test_7_max_min_route_the_gradient_as_torch(case):
    _, fn, values, want = case
    _, (grad,) = _grads(fn, values)
    _same(grad, want)
    if torch is not None:

        def torch_fn(t):
            out = fn(t)
            return out[0] if isinstance(out, tuple) else out  # torch.max(x, dim)

        _same(grad, _torch_grads(torch_fn, values)[1][0])


def test_7_logsumexp_over_an_empty_axis_is_minus_inf():
    x = fb.tensor(np.zeros((2, 0)), requires_grad=True)
    y = fb.logsumexp(x, axis=1)
    _same(y.data, [-inf, -inf])
    y.sum().backward()
    assert x.grad.shape == (2, 0)
    if torch is not None:
        _same(torch.logsumexp(torch.zeros(2, 0), dim=1).numpy(), y.data)


def test_7_empty_reductions_return_torchs_values_or_raise_clearly():
    with np.errstate(all="raise"):  # no NumPy "mean of empty slice" warning either
        x = fb.tensor(np.zeros((0, 3)), requires_grad=True)
        mean = x.mean()
        assert np.isnan(mean.item())
        mean.backward()
        assert x.grad.shape == (0, 3)
        _same(fb.zeros(2, 0).mean(axis=1).data, [nan, nan])
        assert fb.zeros(0).sum().item() == 0.0
        assert fb.zeros(0, 2).max(dim=1).shape == (0,)  # nothing reduced over an empty dim
        assert fb.softmax(fb.zeros(2, 0), axis=1).shape == (2, 0)
    for call in (lambda: fb.zeros(0).max(), lambda: fb.zeros(2, 0).min(dim=1)):
        with pytest.raises(ValueError, match=r"cannot reduce an empty tensor of shape"):
            call()
    with pytest.raises(ValueError, match="empty batch"):
        F.cross_entropy(fb.zeros(0, 4), np.zeros(0, np.int64))
    if torch is not None:
        assert torch.isnan(torch.zeros(0, 3).mean())
        with pytest.raises(RuntimeError):
            torch.zeros(0).max()
        with pytest.raises(IndexError):  # torch.zeros(2, 0).min(dim=1)
            torch.zeros(2, 0).min(dim=1)


# ------------------------------------------------------- 8. eager and traced runs agree


def _step_fn(loss_name):
    fb.manual_seed(0)
    model = nn.Linear(3, 2)

    def step(x, y):
        model.zero_grad()
        out = model(x)
        if loss_name == "mse":
            loss = F.mse_loss(out, y)
        else:
            loss = F.cross_entropy(out, y)
        loss.backward()
        return loss.detach()

    return model, step


GOOD_X = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
EDGE_STEPS = [
    ("mse NaN input", "mse", np.where(GOOD_X > 0.5, np.nan, GOOD_X).astype(np.float32),
     np.zeros((4, 2), np.float32), "pred of shape \\(4, 2\\) contains NaN"),
    ("mse NaN target", "mse", GOOD_X, np.full((4, 2), np.nan, np.float32),
     "target of shape \\(4, 2\\) contains NaN"),
    ("cross_entropy bad label", "ce", GOOD_X, np.array([0, 1, 2, 1]), "label 2"),
    ("cross_entropy NaN logits", "ce", np.where(GOOD_X > 0.5, np.nan, GOOD_X).astype(np.float32),
     np.array([0, 1, 0, 1]), "non-finite"),
]  # fmt: skip


@pytest.mark.parametrize("case", EDGE_STEPS, ids=[c[0] for c in EDGE_STEPS])
def test_8_eager_and_traced_steps_agree_on_nan_and_errors(case):
    _, loss_name, x, y, error = case
    good_y = np.zeros((4, 2), np.float32) if loss_name == "mse" else np.array([0, 1, 0, 1])
    eager_model, eager_step = _step_fn(loss_name)
    traced_model, traced_body = _step_fn(loss_name)
    traced = fb.trace(traced_body)
    # Record on a good batch, then replay the edge batch; eagerly, the same two steps.
    eager_step(fb.tensor(GOOD_X), good_y)
    traced(fb.tensor(GOOD_X), good_y)
    if error is not None:
        with pytest.raises(ValueError, match=error):
            eager_step(fb.tensor(x), y)
        with pytest.raises(ValueError, match=error):
            traced(fb.tensor(x), y)
        return
    eager_loss = eager_step(fb.tensor(x), y)
    traced_loss = traced(fb.tensor(x), y)
    assert np.isnan(eager_loss.item()) and np.isnan(traced_loss.item())
    for p, q in zip(eager_model.parameters(), traced_model.parameters(), strict=True):
        _same(np.isnan(p.grad), np.isnan(q.grad))
        np.testing.assert_array_equal(p.grad, q.grad)


# ------------------------------------------- beyond the list: found by the edge-value fuzzers


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_beyond_maximum_minimum_with_nan_give_dy_to_both_sides(name):
    # Element 0 and 1: one side NaN, so the result is NaN and neither side loses: PyTorch
    # masks out only the loser, so both get dy (before: the NaN side got nothing, or the
    # other). Element 2: a tie, half each.
    values = ([nan, 2.0, 1.0], [1.0, nan, 1.0])
    _, grads = _grads(getattr(fb, name), *values)
    _same(grads[0], [1.0, 1.0, 0.5])
    _same(grads[1], [1.0, 1.0, 0.5])
    if torch is not None:
        want = _torch_grads(getattr(torch, name), *values)[1]
        _same(grads[0], want[0])
        _same(grads[1], want[1])


def test_beyond_log_softmax_of_a_row_with_plus_inf_is_nan():
    x = fb.tensor(np.array([[inf, -inf, 1.0], [0.0, 1.0, -inf]]))
    out = fb.log_softmax(x, axis=1).data
    assert np.isnan(out[0]).all()
    np.testing.assert_allclose(out[1, :2], [-math.log1p(math.e), 1 - math.log1p(math.e)])
    assert out[1, 2] == -inf
    if torch is not None:
        want = torch.log_softmax(torch.tensor(x.data), 1).numpy()
        np.testing.assert_allclose(out, want, rtol=1e-15)


# ------------------------------------------------------------ relu at NaN (beyond the list)
def test_relu_and_linear_relu_pass_the_gradient_at_nan_inputs_as_torch():
    x = fb.tensor(np.array([[np.nan, 1.0, -1.0]]), requires_grad=True)
    fb.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1.0, 1.0, 0.0]])  # torch.relu: the same
    from fastbp import nn

    layer = nn.Linear(2, 3, dtype=np.float64)
    layer.weight.data[...] = [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]
    layer.bias.data[...] = 0
    h = fb.tensor(np.array([[np.nan, 2.0]]), requires_grad=True)
    nn.Sequential(layer, nn.ReLU())(h).sum().backward()  # the fused linear_relu record
    np.testing.assert_array_equal(layer.bias.grad, [1.0, 1.0, 1.0])
