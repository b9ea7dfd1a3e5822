"""Issue 15 kernels: the pixel-major conv transforms, fused bias + ReLU, batch norm, dropout.

Each kernel is compared with its NumPy twin; the fused ops are compared with the unfused path
and with PyTorch, and gradchecked in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.kernels import conv as kconv
from fastbp.kernels import dropout as kdrop
from fastbp.kernels import norm as kbn

# Ops this file gradchecks (read by tests/test_ops.py's coverage check).
GRADCHECKED_OPS = {"conv2d_relu", "conv2d_relu_pool2", "batch_norm_train", "dropout_mask"}

GEOMETRIES = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), (1, 2)),
    ((1, 1, 5, 5), (5, 5), (1, 1), (0, 0), (1, 1)),  # kernel = input, batch 1
    ((2, 9, 4, 9), (1, 1), (3, 2), (0, 0), (1, 1)),  # 1x1 kernel, strided
    ((3, 8, 6, 6), (3, 3), (3, 3), (1, 1), (2, 1)),
    ((2, 16, 5, 7), (3, 3), (1, 1), (1, 1), (1, 1)),
]


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _geometry(geometry):
    shape, k, s, p, d = geometry
    out = (_out(shape[2], k[0], s[0], p[0], d[0]), _out(shape[3], k[1], s[1], p[1], d[1]))
    return shape, k, s, p, d, out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_pixel_transforms_match_twins_and_are_adjoint(geometry, dtype):
    shape, k, s, p, d, out = _geometry(geometry)
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    cols = kconv.im2col_pixels(x, k, s, p, d, out)
    np.testing.assert_array_equal(cols, kconv.im2col_pixels_numpy(x, k, s, p, d, out))
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = kconv.col2im_pixels(c, shape, k, s, p, d, out)
    twin = kconv.col2im_pixels_numpy(c, shape, k, s, p, d, out)
    np.testing.assert_allclose(back, twin, rtol=1e-5, atol=1e-5)
    # <im2col(x), c> == <x, col2im(c)>: the gather is the unfolding's adjoint.
    np.testing.assert_allclose((cols * c).sum(), (x * back).sum(), rtol=1e-4)


def test_col2im_pixels_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match=r"col2im_pixels: dcols of shape \(3, 9\)"):
        kconv.col2im_pixels(np.ones((3, 9)), (1, 1, 2, 2), (3, 3), (1, 1), (1, 1), (1, 1), (2, 2))
    with pytest.raises(TypeError, match="im2col_pixels: x must be a float32/float64"):
        kconv.im2col_pixels(np.ones((1, 1, 2, 2), np.int64), (1, 1), (1, 1), (0, 0), (1, 1),
                            (2, 2))  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 1, 1, 1), (3, 70, 7, 9)])
def test_bias_act_kernels_match_twins(shape, bias, relu, dtype):
    rng = np.random.default_rng(5)
    n, o, oh, ow = shape
    out_t = rng.standard_normal((n * oh * ow, o)).astype(dtype)
    out_t[0, 0] = 0.0  # ReLU at exactly 0
    b = rng.standard_normal(o).astype(dtype) if bias else None
    y = kconv.conv_bias_act(out_t, b, shape, relu)
    np.testing.assert_array_equal(y, kconv.conv_bias_act_numpy(out_t, b, shape, relu))
    dy = rng.standard_normal(shape).astype(dtype)
    dz_t, db = kconv.conv_bias_act_backward(y, dy, relu)
    dz_twin, db_twin = kconv.conv_bias_act_backward_numpy(y, dy, relu)
    np.testing.assert_array_equal(dz_t, dz_twin)
    np.testing.assert_allclose(db, db_twin, rtol=1e-5, atol=1e-5)
    assert db.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 1, 1, 1), (3, 7, 9, 9)])
def test_channel_major_bias_act_kernels_match_twins(shape, bias, relu, dtype):
    rng = np.random.default_rng(15)
    n, o, oh, ow = shape
    out = rng.standard_normal((o, n * oh * ow)).astype(dtype)
    out[0, 0] = 0.0
    b = rng.standard_normal(o).astype(dtype) if bias else None
    y = kconv.conv_bias_act_channels(out, b, shape, relu)
    np.testing.assert_array_equal(y, kconv.conv_bias_act_channels_numpy(out, b, shape, relu))
    dy = rng.standard_normal(shape).astype(dtype)
    dz, db = kconv.conv_bias_act_channels_backward(y, dy, relu)
    dz_twin, db_twin = kconv.conv_bias_act_channels_backward_numpy(y, dy, relu)
    np.testing.assert_array_equal(dz, dz_twin)
    np.testing.assert_allclose(db, db_twin, rtol=1e-5, atol=1e-5)


def test_bias_act_keeps_nan():
    out_t = np.array([[np.nan, -1.0]])
    y = kconv.conv_bias_act(out_t, None, (1, 2, 1, 1), True)
    np.testing.assert_array_equal(y.ravel(), [np.nan, 0.0])
    np.testing.assert_array_equal(y, kconv.conv_bias_act_numpy(out_t, None, (1, 2, 1, 1), True))


# ---- fused conv2d + ReLU ----------------------------------------------------------------------

# (x shape, weight shape, stride, padding, dilation, groups)
FUSED_TABLE = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1, 1, 1),  # few channels: the channel-major layout
    ((2, 8, 5, 6), (4, 8, 3, 3), 1, 1, 1, 1),  # the pixel-major layout
    ((1, 8, 7, 6), (3, 8, 3, 2), (2, 1), (1, 2), (1, 2), 1),  # batch 1, odd sizes, tuples
    ((2, 8, 4, 5), (5, 8, 1, 1), 1, 0, 1, 1),  # 1x1 kernel
    ((2, 8, 4, 3), (3, 8, 4, 3), 1, 0, 1, 1),  # kernel = input size
    ((2, 4, 6, 5), (6, 2, 3, 3), 2, 1, 1, 2),  # groups
]


def _conv_module(x_shape, w_shape, stride, padding, dilation, groups, bias=True):
    conv = nn.Conv2d(x_shape[1], w_shape[0], w_shape[2:], stride, padding, dilation, groups,
                     bias=bias, dtype=np.float64)  # fmt: skip
    return conv


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", FUSED_TABLE)
def test_conv2d_relu_gradcheck_and_equals_unfused(case, bias):
    fb.manual_seed(0)
    conv = _conv_module(*case, bias=bias)
    rng = np.random.default_rng(6)
    x = fb.tensor(rng.standard_normal(case[0]), requires_grad=True)
    params = [conv.weight] + ([conv.bias] if bias else [])

    def fused(x, *ps):
        return conv.forward_relu(x)

    assert fb.gradcheck(fused, [x, *params])
    y = conv.forward_relu(x)
    dy = rng.standard_normal(y.shape)
    (y * fb.tensor(dy)).sum().backward()
    grads = [t.grad.copy() for t in (x, *params)]
    for t in (x, *params):
        t.grad = None
    y2 = conv(x).relu()
    (y2 * fb.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y.data, y2.data)
    for g, t in zip(grads, (x, *params), strict=True):
        np.testing.assert_allclose(g, t.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_fuses_conv_relu_and_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    fb.manual_seed(1)
    ours = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1, dtype=dtype), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 3 * 3, 4, dtype=dtype))  # fmt: skip
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(16 * 3 * 3, 4),
    ).to(torch.float64 if dtype == np.float64 else torch.float32)  # fmt: skip
    with torch.no_grad():
        for p, q in zip(theirs.parameters(), ours.parameters(), strict=True):
            p.copy_(torch.tensor(np.ascontiguousarray(q.data.T if p.ndim == 2 else q.data)))
    x = np.random.default_rng(7).standard_normal((3, 1, 6, 6)).astype(dtype)
    y = ours(fb.tensor(x))
    from fastbp import viz

    dot = viz.to_dot(y)
    assert dot.count("conv2d_relu") == 2 and "relu\\n" not in dot.replace("conv2d_relu", "")
    y.sum().backward()
    ty = theirs(torch.tensor(x))
    ty.sum().backward()
    tol = 1e-10 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=tol, atol=tol)
    for p, q in zip(theirs.parameters(), ours.parameters(), strict=True):
        g = p.grad.numpy()
        np.testing.assert_allclose(q.grad, g.T if g.ndim == 2 else g, rtol=tol * 10, atol=tol)


def test_sequential_does_not_fuse_a_conv_subclass():
    class Shifted(nn.Conv2d):
        def forward(self, x):
            return super().forward(x) - 1.0

    fb.manual_seed(2)
    model = nn.Sequential(Shifted(1, 2, 3), nn.ReLU())
    x = fb.tensor(np.random.default_rng(3).standard_normal((1, 1, 4, 4)).astype(np.float32))
    expected = (model[0](x)).relu().data
    np.testing.assert_array_equal(model(x).data, expected)


# ---- batch norm -------------------------------------------------------------------------------

BN_SHAPES = [(4, 3, 1), (3, 2, 5), (2, 3, 12), (1, 2, 9), (7, 1, 1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_kernels_match_twins(shape, affine, dtype):
    rng = np.random.default_rng(8)
    c = shape[1]
    # A large common offset: the statistics must not cancel it away.
    x = (rng.standard_normal(shape) * 2 + 100).astype(dtype)
    w = rng.standard_normal(c).astype(dtype) if affine else None
    b = rng.standard_normal(c).astype(dtype) if affine else None
    got = kbn.batch_norm_forward(x, w, b, 1e-5)
    want = kbn.batch_norm_forward_numpy(x, w, b, 1e-5)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for a, t in zip(got, want, strict=True):
        np.testing.assert_allclose(a, t, rtol=tol, atol=tol)
    assert got[0].dtype == dtype
    dy = rng.standard_normal(shape).astype(dtype)
    got = kbn.batch_norm_backward(x, dy, got[1], got[3], w)
    want = kbn.batch_norm_backward_numpy(x, dy, want[1], want[3], w)
    for a, t in zip(got, want, strict=True):
        np.testing.assert_allclose(a, t, rtol=tol * 10, atol=tol * 10)


def test_batch_norm_kernel_errors_name_the_kernel():
    with pytest.raises(ValueError, match=r"batch_norm_forward: weight must have shape \(3,\)"):
        kbn.batch_norm_forward(np.ones((2, 3, 1)), np.ones(2), None, 1e-5)
    with pytest.raises(ValueError, match="batch_norm_backward: dy of shape"):
        kbn.batch_norm_backward(np.ones((2, 3, 1)), np.ones((2, 3, 2)), np.zeros(3), np.ones(3),
                                None)  # fmt: skip


# (input shape, weight, bias)
BN_TABLE = [
    ((4, 3), True, True),
    ((3, 2, 5), True, False),
    ((2, 3, 4, 3), False, True),
    ((1, 2, 3, 3), True, True),  # batch 1 (the spatial positions are the sample)
    ((2, 1, 1, 2), False, False),
]


@pytest.mark.parametrize("case", BN_TABLE)
def test_batch_norm_train_op_gradcheck_and_torch(case):
    shape, has_w, has_b = case
    rng = np.random.default_rng(9)
    c = shape[1]
    x = fb.tensor(rng.standard_normal(shape) * 3 + 1, requires_grad=True)
    w = fb.tensor(rng.standard_normal(c), requires_grad=True) if has_w else None
    b = fb.tensor(rng.standard_normal(c), requires_grad=True) if has_b else None
    inputs = [t for t in (x, w, b) if t is not None]

    def f(*args):
        it = iter(args[1:])
        return F.batch_norm(args[0], None, None, next(it) if has_w else None,
                            next(it) if has_b else None, training=True)  # fmt: skip

    assert fb.gradcheck(f, inputs)
    torch = pytest.importorskip("torch")
    rm, rv = np.zeros(c), np.ones(c)
    trm, trv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    theirs = [torch.tensor(t.data, requires_grad=True) for t in inputs]
    it = iter(theirs[1:])
    ty = torch.nn.functional.batch_norm(theirs[0], trm, trv, next(it) if has_w else None,
                                        next(it) if has_b else None, training=True,
                                        momentum=0.2)  # fmt: skip
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2)
    dy = rng.standard_normal(shape)
    (y * fb.tensor(dy)).sum().backward()
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    for ours, t in zip(inputs, theirs, strict=True):
        np.testing.assert_allclose(ours.grad, t.grad.numpy(), atol=1e-9)
    np.testing.assert_allclose(rm, trm.numpy(), atol=1e-12)  # running_var is unbiased, as torch
    np.testing.assert_allclose(rv, trv.numpy(), atol=1e-12)


def test_batch_norm_module_float32_one_record():
    from fastbp import viz

    bn = nn.BatchNorm2d(4)
    x = fb.tensor(np.random.default_rng(10).standard_normal((3, 4, 2, 2)).astype(np.float32),
                  requires_grad=True)  # fmt: skip
    y = bn(x)
    assert y.dtype == np.float32
    assert viz.to_dot(y).count("batch_norm_train") == 1
    y.sum().backward()
    assert x.grad.dtype == np.float32 and bn.weight.grad.dtype == np.float32


# ---- dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_dropout_kernels_match_twins(p, channelwise, dtype):
    x = np.random.default_rng(11).standard_normal((40, 50)).astype(dtype)
    seed = 2**63 + 12345  # the upper half of the uint64 range too
    y, keep = kdrop.dropout_forward(x, p, seed, channelwise)
    y_twin, keep_twin = kdrop.dropout_forward_numpy(x, p, seed, channelwise)
    np.testing.assert_array_equal(keep, keep_twin)
    np.testing.assert_array_equal(y, y_twin)
    assert keep.shape == ((40,) if channelwise else (2000,))
    if 0.0 < p < 1.0 and not channelwise:
        assert abs((1 - keep.mean()) - p) < 0.05
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    kept = np.broadcast_to(keep[:, None], x.shape) if channelwise else keep.reshape(x.shape)
    np.testing.assert_allclose(y, np.where(kept, x * dtype(scale), 0), rtol=1e-6)
    dy = np.ones_like(x)
    dx = kdrop.dropout_backward(dy, keep, p, channelwise)
    np.testing.assert_array_equal(dx, kdrop.dropout_backward_numpy(dy, keep, p, channelwise))


def test_dropout_kernel_seeds_differ_and_nan_propagates():
    x = np.ones((1, 4000))
    a = kdrop.dropout_forward(x, 0.5, 1, False)[1]
    b = kdrop.dropout_forward(x, 0.5, 2, False)[1]
    assert 0.4 < (a != b).mean() < 0.6
    y, keep = kdrop.dropout_forward(np.full((1, 64), np.nan), 0.5, 3, False)
    assert np.isnan(y).all()  # x * 0, as the unfused x * mask


def test_dropout_kernel_errors():
    with pytest.raises(TypeError, match="dropout_forward: x must be a 2-D float32/float64"):
        kdrop.dropout_forward(np.ones(3), 0.5, 0, False)
    with pytest.raises(ValueError, match="dropout_backward: mask of shape"):
        kdrop.dropout_backward(np.ones((2, 2)), np.ones(3, bool), 0.5, False)


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_dropout_op_is_seeded_and_its_gradient_is_the_mask(fn):
    x = fb.tensor(np.random.default_rng(12).standard_normal((3, 4, 5, 6)), requires_grad=True)
    fb.manual_seed(5)
    y1 = fn(x, 0.4)
    fb.manual_seed(5)
    y2 = fn(x, 0.4)
    np.testing.assert_array_equal(y1.data, y2.data)
    assert not np.array_equal(fn(x, 0.4).data, y1.data)  # a new draw every call
    dy = np.random.default_rng(13).standard_normal(x.shape)
    (y1 * fb.tensor(dy)).sum().backward()
    kept = y1.data != 0
    np.testing.assert_allclose(x.grad, np.where(kept, dy / 0.6, 0.0), rtol=1e-12)
    if fn is F.dropout2d:
        assert (kept.all(axis=(2, 3)) | ~kept.any(axis=(2, 3))).all()

    # gradcheck with a fixed mask: reseed before every evaluation.
    def f(t):
        fb.manual_seed(6)
        return fn(t, 0.4)

    assert fb.gradcheck(f, [x])


# ---- max-pool 2x2 backward in one pass --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 8, 6), (1, 2, 5, 7), (3, 1, 2, 2)])
def test_max_pool_2x2_backward_matches_twin(shape, dtype):
    rng = np.random.default_rng(14)
    x = rng.standard_normal(shape).astype(dtype)
    out_size = (shape[2] // 2, shape[3] // 2)
    _, idx = kconv.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), out_size)
    dy = rng.standard_normal((*shape[:2], *out_size)).astype(dtype)
    dx = kconv.max_pool2d_backward(dy, idx, shape, (2, 2))
    np.testing.assert_array_equal(dx, kconv.max_pool2d_backward_numpy(dy, idx, shape))
    # The general scatter gives the same.
    np.testing.assert_array_equal(dx, kconv.max_pool2d_backward(dy, idx, shape))


def test_max_pool_2x2_gradient_vs_torch_with_odd_sizes():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(16).standard_normal((2, 3, 7, 5))
    t = fb.tensor(x, requires_grad=True)
    F.max_pool2d(t, 2).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(tt, 2).sum().backward()
    np.testing.assert_array_equal(t.grad, tt.grad.numpy())


# ---- fused conv -> ReLU -> 2x2 max-pool -------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pixels_major", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (1, 9, 5, 7), (3, 1, 2, 2)])
def test_conv_relu_pool_kernels_match_twins(shape, bias, pixels_major, dtype):
    rng = np.random.default_rng(17)
    n, o, oh, ow = shape
    m = n * oh * ow
    product = rng.standard_normal((m, o) if pixels_major else (o, m)).astype(dtype)
    product.flat[:8] = 0.5  # ties: the first maximum wins
    b = rng.standard_normal(o).astype(dtype) if bias else None
    pooled, code, finite = kconv.conv_relu_pool(product, b, shape, pixels_major)
    p_twin, c_twin, f_twin = kconv.conv_relu_pool_numpy(product, b, shape, pixels_major)
    np.testing.assert_array_equal(pooled, p_twin)
    np.testing.assert_array_equal(code, c_twin)
    assert finite and f_twin
    dy = rng.standard_normal(pooled.shape).astype(dtype)
    dz, db = kconv.conv_relu_pool_backward(pooled, code, dy, shape, pixels_major)
    dz_twin, db_twin = kconv.conv_relu_pool_backward_numpy(pooled, code, dy, shape, pixels_major)
    np.testing.assert_array_equal(dz, dz_twin)
    np.testing.assert_allclose(db, db_twin, rtol=1e-5, atol=1e-5)
    # An inf in dy, at a window that passes no gradient and at one that does: PyTorch's
    # answer is 0 and inf there, never a NaN (an inf times a 0/1 mask would be one).
    dy.flat[0], dy.flat[-1] = np.inf, -np.inf
    pooled.flat[0], pooled.flat[-1] = 0.0, 1.0
    dz, db = kconv.conv_relu_pool_backward(pooled, code, dy, shape, pixels_major)
    dz_twin, db_twin = kconv.conv_relu_pool_backward_numpy(pooled, code, dy, shape, pixels_major)
    assert not np.isnan(dz).any()
    np.testing.assert_array_equal(dz, dz_twin)
    np.testing.assert_array_equal(db, db_twin)


def test_conv_relu_pool_reports_non_finite():
    product = np.array([[1.0, np.nan, 0.0, 2.0]])
    assert not kconv.conv_relu_pool(product, None, (1, 1, 2, 2), False)[2]
    assert not kconv.conv_relu_pool_numpy(product, None, (1, 1, 2, 2), False)[2]


POOL_TABLE = [
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 1),  # few channels: channel-major
    ((2, 8, 6, 5), (5, 8, 3, 3), 1, 1),  # pixel-major, odd width (a last column no window reads)
    ((1, 8, 7, 9), (3, 8, 2, 2), 1, 0),  # batch 1, odd sizes, even kernel
    ((2, 9, 8, 8), (4, 9, 3, 3), 2, 1),  # strided conv
    ((2, 16, 6, 4), (16, 16, 3, 3), 1, 1),  # Winograd tiles, each one pooling window
    ((1, 16, 7, 5), (17, 16, 3, 3), 1, 1),  # Winograd-sized, odd output: the im2col path
]


@pytest.fixture
def small_winograd(monkeypatch):
    """Let small shapes take the Winograd layout (in use from 1500 output tiles)."""
    from fastbp.ops import conv as conv_ops

    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_TILES", 1)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", POOL_TABLE)
def test_conv2d_relu_pool2_gradcheck_and_equals_unfused(case, bias, small_winograd):
    x_shape, w_shape, stride, padding = case
    fb.manual_seed(3)
    conv = nn.Conv2d(x_shape[1], w_shape[0], w_shape[2:], stride, padding, bias=bias,
                     dtype=np.float64)  # fmt: skip
    rng = np.random.default_rng(18)
    x = fb.tensor(rng.standard_normal(x_shape), requires_grad=True)
    params = [conv.weight] + ([conv.bias] if bias else [])
    assert fb.gradcheck(lambda x, *ps: conv.forward_relu_pool(x), [x, *params])
    y = conv.forward_relu_pool(x)
    same_algorithm = y._node.saved[2] == conv(x)._node.saved[3][-1]
    dy = rng.standard_normal(y.shape)
    (y * fb.tensor(dy)).sum().backward()
    grads = [t.grad.copy() for t in (x, *params)]
    for t in (x, *params):
        t.grad = None
    y2 = F.max_pool2d(conv(x).relu(), 2)
    (y2 * fb.tensor(dy)).sum().backward()
    if same_algorithm:
        np.testing.assert_array_equal(y.data, y2.data)
    else:  # odd output: fused im2col, unfused Winograd (16+ channels): rounding differs
        np.testing.assert_allclose(y.data, y2.data, rtol=1e-13, atol=1e-13)
    for g, t in zip(grads, (x, *params), strict=True):
        np.testing.assert_allclose(g, t.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("channels", [8, 16])  # 16: the Winograd layout, which recomputes
def test_conv2d_relu_pool2_nan_takes_the_unfused_rules(channels, small_winograd):
    fb.manual_seed(4)
    conv = nn.Conv2d(channels, channels, 3, padding=1, dtype=np.float64)
    x = np.random.default_rng(19).standard_normal((1, channels, 4, 4))
    x[0, 0, 1, 1] = np.nan
    t = fb.tensor(x, requires_grad=True)
    y = conv.forward_relu_pool(t)
    expected = F.max_pool2d(conv(fb.tensor(x)).relu(), 2)
    np.testing.assert_array_equal(y.data, expected.data)  # NaN where the unfused path has it
    y.sum().backward()
    assert t.grad.shape == x.shape


def test_conv2d_relu_pool2_winograd_inf_in_dy_as_torch(small_winograd):
    """An inf in the pooled gradient reaches exactly the gradients PyTorch's does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    x, w = rng.standard_normal((2, 16, 6, 6)), rng.standard_normal((16, 16, 3, 3))
    dy = rng.standard_normal((2, 16, 3, 3))
    dy[1, 2, 1, 1] = np.inf
    fx, fw = fb.tensor(x, requires_grad=True), fb.tensor(w, requires_grad=True)
    conv = nn.Conv2d(16, 16, 3, padding=1, bias=False, dtype=np.float64)
    conv.weight = fw
    y = conv.forward_relu_pool(fx)
    assert y._node.saved[2] == "winograd"
    y.backward(dy)  # pooled gradient holds an inf: backward recomputes through im2col
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.max_pool2d(torch.relu(torch.nn.functional.conv2d(tx, tw, padding=1)), 2)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    for got, want in ((fx.grad, tx.grad.numpy()), (fw.grad, tw.grad.numpy())):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9)


def test_sequential_fuses_only_a_plain_2x2_pool():
    from fastbp import viz

    fb.manual_seed(5)
    x = fb.tensor(np.random.default_rng(20).standard_normal((2, 1, 8, 8)).astype(np.float32))
    for pool, fused in [
        (nn.MaxPool2d(2), True),
        (nn.MaxPool2d(2, stride=2), True),
        (nn.MaxPool2d(3), False),
        (nn.MaxPool2d(2, stride=1), False),
        (nn.MaxPool2d(2, ceil_mode=True), False),
        (nn.MaxPool2d(2, padding=1), False),
    ]:
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), pool)
        y = model(x)
        assert ("conv2d_relu_pool2" in viz.to_dot(y)) == fused, pool
        np.testing.assert_array_equal(y.data, pool(model[0](x).relu()).data)
    grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.ReLU(), nn.MaxPool2d(2))
    x2 = fb.tensor(np.random.default_rng(21).standard_normal((1, 2, 6, 6)).astype(np.float32))
    assert "conv2d_relu_pool2" not in viz.to_dot(grouped(x2))
