"""Issue 15: max / average / adaptive pooling vs PyTorch, gradcheck, kernels vs twins, modules."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.kernels import conv as kconv

# Ops this file gradchecks (read by tests/test_ops.py's coverage check).
GRADCHECKED_OPS = {
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "resample2d",
}

# (x shape, kernel, stride, padding, dilation, ceil_mode)
MAX_TABLE = [
    ((2, 3, 6, 6), 2, None, 0, 1, False),
    ((1, 2, 7, 5), 3, 2, 1, 1, False),  # batch 1, odd sizes, padding
    ((2, 2, 7, 5), 3, 2, 1, 1, True),  # ceil_mode adds a partial window
    ((2, 2, 8, 9), (2, 3), (3, 2), (1, 0), (2, 1), True),
    ((2, 2, 5, 5), 1, 1, 0, 1, False),  # 1x1 kernel
    ((2, 2, 4, 3), (4, 3), None, 0, 1, False),  # kernel = input size
    ((2, 1, 9, 9), 3, 1, 1, 3, False),  # dilation
]
MAX1D_TABLE = [
    ((2, 3, 9), 2, None, 0, 1, False),
    ((1, 2, 10), 3, 2, 1, 2, True),
]
# (x shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_TABLE = [
    ((2, 3, 6, 6), 2, None, 0, False, True, None),
    ((1, 2, 7, 5), 3, 2, 1, False, True, None),
    ((2, 2, 7, 5), 3, 2, 1, False, False, None),
    ((2, 2, 7, 6), 3, 2, 1, True, True, None),
    ((2, 2, 7, 6), (3, 2), (2, 3), (1, 1), True, False, None),
    ((2, 2, 4, 3), (4, 3), None, 0, False, True, None),
    ((2, 2, 5, 5), 2, 1, 1, False, True, 3),
]
AVG1D_TABLE = [((2, 3, 9), 3, 2, 1, True, False), ((1, 2, 6), 2, None, 0, False, True)]
ADAPTIVE_TABLE = [((2, 3, 7, 5), (3, 2)), ((1, 2, 6, 6), 3), ((2, 2, 5, 4), (1, None)),
                  ((2, 1, 3, 3), (5, 4))]  # fmt: skip


def _distinct(rng, shape):
    """Values with no ties (so the max has a derivative for the finite differences)."""
    return rng.permutation(np.prod(shape)).reshape(shape) / 7.0 + rng.uniform(0, 0.01, shape)


def _torch_pair(torch, fn, tfn, x, *args, **kwargs):
    ours = fb.tensor(x, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    y, ty = fn(ours, *args, **kwargs), tfn(theirs, *args, **kwargs)
    if isinstance(y, tuple):
        (y, yi), (ty, tyi) = y, ty
        np.testing.assert_array_equal(yi.data, tyi.numpy())
    dy = np.random.default_rng(9).standard_normal(tuple(ty.shape))
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", MAX_TABLE + MAX1D_TABLE)
@pytest.mark.parametrize("return_indices", [False, True])
def test_max_pool_matches_torch(case, return_indices):
    torch = pytest.importorskip("torch")
    shape, k, s, p, d, ceil = case
    fn, tfn = (F.max_pool2d, torch.nn.functional.max_pool2d) if len(shape) == 4 else (
        F.max_pool1d, torch.nn.functional.max_pool1d)  # fmt: skip
    x = np.random.default_rng(0).standard_normal(shape)
    _torch_pair(torch, fn, tfn, x, k, s, p, d, ceil, return_indices)


@pytest.mark.parametrize("case", MAX_TABLE + MAX1D_TABLE)
def test_max_pool_gradcheck(case):
    shape, k, s, p, d, ceil = case
    fn = F.max_pool2d if len(shape) == 4 else F.max_pool1d
    x = fb.tensor(_distinct(np.random.default_rng(1), shape), requires_grad=True)
    assert fb.gradcheck(lambda t: fn(t, k, s, p, d, ceil), [x], eps=1e-7)


def test_max_pool_ties_inf_nan_vs_torch():
    torch = pytest.importorskip("torch")
    x = np.zeros((1, 2, 4, 4))
    x[0, 1] = -np.inf
    x[0, 1, 0, 1] = x[0, 1, 1, 0] = np.nan  # two NaN in one window: the last one wins
    x[0, 1, 3, 3] = np.inf
    # Ties (all zeros, all -inf) route the gradient to the first maximum, as PyTorch does.
    _torch_pair(torch, F.max_pool2d, torch.nn.functional.max_pool2d, x[:, :1], 2, 1, 0, 1,
                False, True)  # fmt: skip
    got, idx = F.max_pool2d(x, 2, return_indices=True)
    want, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(got.data, want.numpy())  # NaN positions equal too
    np.testing.assert_array_equal(idx.data, tidx.numpy())
    for fn, tfn, args in [
        (F.max_pool2d, torch.nn.functional.max_pool2d, (3, 1, 1)),
        (F.adaptive_max_pool2d, torch.nn.functional.adaptive_max_pool2d, (3,)),
    ]:
        got, idx = fn(x, *args, return_indices=True)
        want, tidx = tfn(torch.tensor(x), *args, return_indices=True)
        np.testing.assert_array_equal(got.data, want.numpy())
        np.testing.assert_array_equal(idx.data, tidx.numpy())


def test_max_pool_unbatched_noncontiguous_and_float32():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal((3, 10, 12)).astype(np.float32)[:, ::2, 1:]
    got = F.max_pool2d(x, 2, ceil_mode=True)
    want = torch.nn.functional.max_pool2d(torch.tensor(x), 2, ceil_mode=True).numpy()
    assert got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, want)


@pytest.mark.parametrize("case", AVG_TABLE + AVG1D_TABLE)
def test_avg_pool_matches_torch_and_gradcheck(case):
    torch = pytest.importorskip("torch")
    spatial = len(case[0]) - 2
    fn, tfn = (F.avg_pool2d, torch.nn.functional.avg_pool2d) if spatial == 2 else (
        F.avg_pool1d, torch.nn.functional.avg_pool1d)  # fmt: skip
    shape, *args = case
    x = np.random.default_rng(3).standard_normal(shape)
    _torch_pair(torch, fn, tfn, x, *args)
    t = fb.tensor(x, requires_grad=True)
    assert fb.gradcheck(lambda v: fn(v, *args), [t])


@pytest.mark.parametrize("case", ADAPTIVE_TABLE)
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pools_match_torch_and_gradcheck(case, kind):
    torch = pytest.importorskip("torch")
    shape, size = case
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    tfn = getattr(torch.nn.functional, f"adaptive_{kind}_pool2d")
    x = _distinct(np.random.default_rng(4), shape)
    _torch_pair(torch, fn, tfn, x, size)
    if kind == "max":
        _torch_pair(torch, fn, tfn, x, size, True)
    t = fb.tensor(x, requires_grad=True)
    assert fb.gradcheck(lambda v: fn(v, size), [t], eps=1e-7)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: F.max_pool2d(np.zeros((2, 3)), 2), "max_pool2d: expected a 4-D input"),
        (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, padding=2), "at most half"),
        (lambda: F.max_pool2d(np.zeros((1, 1, 2, 2)), 3), "max_pool2d: kernel size"),
        (lambda: F.max_pool1d(np.zeros((1, 1, 3)), 2, dilation=3), "max_pool1d: kernel size"),
        (lambda: F.avg_pool2d(np.zeros((1, 1, 2, 2)), 3), "avg_pool2d: kernel size"),
        (lambda: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, divisor_override=0), "divisor"),
        (lambda: F.max_pool2d(np.zeros((1, 1, 4, 4)), 0), "kernel_size must be >= 1"),
        (lambda: F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), 0), "positive ints"),
        (lambda: F.adaptive_max_pool2d(np.zeros((1, 4)), 2), "expected a 4-D input"),
    ],
)
def test_pool_errors_name_the_op_and_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_pool_rejects_int_input():
    with pytest.raises(TypeError, match="max_pool2d"):
        F.max_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2)
    with pytest.raises(TypeError, match="avg_pool2d: expected a floating-point input"):
        F.avg_pool2d(np.zeros((1, 1, 4, 4), np.int64), 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "geometry",
    [((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), (1, 2), (4, 5)),
     ((1, 2, 5, 5), (5, 5), (1, 1), (0, 0), (1, 1), (1, 1)),
     ((2, 2, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1), (4, 4))],
)  # fmt: skip
def test_max_pool_kernels_match_twins(geometry, dtype):
    shape, k, s, p, d, out = geometry
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    x[0, 0, 0, :3] = x[0, 0, 1, :3] = 5.0  # ties
    if dtype == np.float64:  # with a NaN the 2x2 fast path is not taken
        x[-1, -1, -1, -1] = np.nan
    got, idx = kconv.max_pool2d_forward(x, k, s, p, d, out)
    want, widx = kconv.max_pool2d_forward_numpy(x, k, s, p, d, out)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(idx, widx)
    dy = rng.standard_normal(got.shape).astype(dtype)
    np.testing.assert_allclose(
        kconv.max_pool2d_backward(dy, idx, shape),
        kconv.max_pool2d_backward_numpy(dy, idx, shape),
        rtol=1e-6,
    )


def test_pool_modules():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(6).standard_normal((2, 3, 7, 7))
    pairs = [
        (nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (nn.AvgPool2d(3, 2, 1, count_include_pad=False),
         torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)),
        (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
        (nn.AdaptiveMaxPool2d(2), torch.nn.AdaptiveMaxPool2d(2)),
    ]  # fmt: skip
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).numpy(), atol=1e-12)
        assert type(ours).__name__ in repr(ours)
    x1 = x[:, :, 0]
    np.testing.assert_allclose(nn.MaxPool1d(2)(x1).data, torch.nn.MaxPool1d(2)(torch.tensor(x1)))
    np.testing.assert_allclose(nn.AvgPool1d(3, 2)(x1).data,
                               torch.nn.AvgPool1d(3, 2)(torch.tensor(x1)))  # fmt: skip
    values, indices = nn.MaxPool2d(2, return_indices=True)(x)
    assert indices.data.dtype == np.int64 and values.shape == (2, 3, 3, 3)


INTERP_TABLE = [
    {"size": (8, 3)},
    {"scale_factor": 2},
    {"scale_factor": (1.5, 0.7)},
    {"size": (9, 4), "mode": "bilinear"},
    {"size": (3, 11), "mode": "bilinear", "align_corners": True},
    {"scale_factor": 2.5, "mode": "bilinear"},
    {"size": (1, 1), "mode": "bilinear", "align_corners": True},
    {"size": (5, 7), "mode": "bilinear"},  # same size: the identity
]


@pytest.mark.parametrize("kwargs", INTERP_TABLE)
def test_interpolate_matches_torch_and_gradcheck(kwargs):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(10).standard_normal((2, 3, 5, 7))
    _torch_pair(torch, F.interpolate, torch.nn.functional.interpolate, x, **kwargs)
    t = fb.tensor(x[:1, :1], requires_grad=True)
    assert fb.gradcheck(lambda v: F.interpolate(v, **kwargs), [t])


def test_interpolate_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="mode must be"):
        F.interpolate(x, size=2, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners only applies"):
        F.interpolate(x, size=2, align_corners=True)
    with pytest.raises(ValueError, match="only 4-D inputs"):
        F.interpolate(np.zeros((1, 4)), size=2)
