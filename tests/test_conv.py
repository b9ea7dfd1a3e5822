"""Issue 15: conv2d / conv1d (im2col + BLAS), their kernels against the NumPy twins, vs PyTorch."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.kernels import conv as kconv

# Ops this file gradchecks (read by tests/test_ops.py's coverage check).
GRADCHECKED_OPS = {"conv2d", "conv_transpose2d", "embedding"}

# (x shape, weight shape, stride, padding, dilation, groups)
CONV2D_TABLE = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, 1),
    ((1, 2, 7, 6), (3, 2, 3, 2), (2, 1), (1, 2), (1, 2), 1),  # batch 1, odd sizes, tuples
    ((2, 4, 6, 5), (6, 2, 3, 3), 2, 1, 1, 2),  # groups
    ((2, 3, 5, 5), (6, 1, 3, 3), 1, 1, 1, 3),  # depthwise (multiplier 2)
    ((2, 3, 4, 5), (2, 3, 1, 1), 1, 0, 1, 1),  # 1x1 kernel
    ((2, 2, 4, 3), (3, 2, 4, 3), 1, 0, 1, 1),  # kernel = input size
    ((1, 2, 9, 7), (2, 2, 2, 3), 3, 0, 2, 1),  # stride > kernel, dilation
    ((2, 2, 5, 6), (3, 2, 3, 4), 1, "same", 1, 1),  # asymmetric 'same' (even kernel)
    ((2, 2, 6, 5), (3, 2, 3, 2), 1, "same", (2, 3), 1),
    ((2, 2, 5, 5), (3, 2, 2, 2), 1, "valid", 1, 1),
]

CONV1D_TABLE = [
    ((2, 3, 9), (4, 3, 3), 1, 1, 1, 1),
    ((1, 4, 8), (4, 2, 2), 2, 0, 3, 2),
    ((2, 3, 7), (3, 1, 3), 1, "same", 2, 3),
    ((2, 2, 5), (3, 2, 5), 1, 0, 1, 1),
]


def _inputs(rng, x_shape, w_shape, bias=True):
    x = fb.tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = fb.tensor(rng.standard_normal(w_shape), requires_grad=True)
    b = fb.tensor(rng.standard_normal(w_shape[0]), requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("case", CONV2D_TABLE + CONV1D_TABLE)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_gradcheck(case, bias):
    x_shape, w_shape, stride, padding, dilation, groups = case
    fn = F.conv2d if len(x_shape) == 4 else F.conv1d
    rng = np.random.default_rng(0)
    x, w, b = _inputs(rng, x_shape, w_shape, bias)
    inputs = [x, w] + ([b] if bias else [])

    def f(*args):
        return fn(args[0], args[1], args[2] if bias else None, stride, padding, dilation, groups)

    assert fb.gradcheck(f, inputs)


@pytest.mark.parametrize("case", CONV2D_TABLE + CONV1D_TABLE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    x_shape, w_shape, stride, padding, dilation, groups = case
    spatial = len(x_shape) - 2
    fn, tfn = (F.conv2d, torch.nn.functional.conv2d) if spatial == 2 else (
        F.conv1d, torch.nn.functional.conv1d)  # fmt: skip
    rng = np.random.default_rng(1)
    arrays = [
        rng.standard_normal(x_shape).astype(dtype),
        rng.standard_normal(w_shape).astype(dtype),
        rng.standard_normal(w_shape[0]).astype(dtype),
    ]
    ours = [fb.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ours, stride, padding, dilation, groups)
    ty = tfn(*theirs, stride, padding, dilation, groups)
    dy = rng.standard_normal(ty.shape).astype(dtype)
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    tol = 1e-10 if dtype == np.float64 else 2e-4
    assert y.data.dtype == dtype and y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=tol, atol=tol)
    for ours_t, theirs_t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(ours_t.grad, theirs_t.grad.numpy(), rtol=tol, atol=tol)


def test_conv_edges_vs_torch():
    """inf / NaN propagate like PyTorch's; non-contiguous and unbatched inputs; zeros."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 10, 8))[:, :, ::2, 1::2]  # non-contiguous view
    x[0, 1, 2, 2] = np.nan
    x[1, 0, 0, 0] = np.inf
    w = rng.standard_normal((2, 3, 3, 3))
    got = F.conv2d(x, w, padding=1).data
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=1e-10)
    unbatched = F.conv2d(x[1], w, padding=1)
    np.testing.assert_allclose(unbatched.data[np.isfinite(unbatched.data)],
                               want[1][np.isfinite(want[1])])  # fmt: skip
    assert unbatched.shape == (2, 5, 4)
    zeros = F.conv2d(np.zeros((1, 3, 4, 4)), np.zeros((2, 3, 3, 3)), np.ones(2))
    np.testing.assert_array_equal(zeros.data, np.ones((1, 2, 2, 2)))


def test_conv_first_layer_skips_dx():
    """An input that needs no gradient gets none (the dx product is skipped)."""
    rng = np.random.default_rng(3)
    x = fb.tensor(rng.standard_normal((2, 1, 5, 5)))
    w = fb.tensor(rng.standard_normal((2, 1, 3, 3)), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (2, 1, 3, 3)


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, message",
    [
        ((2, 3), (4, 3, 3, 3), {}, "conv2d: expected a 4-D input"),
        ((2, 3, 5, 5), (4, 3, 3), {}, "conv2d: expected a 4-D weight"),
        ((2, 3, 5, 5), (4, 2, 3, 3), {}, "expects an input with 2 channels"),
        ((2, 3, 5, 5), (4, 1, 3, 3), {"groups": 2}, "divisible by groups=2"),
        ((2, 3, 2, 2), (4, 3, 3, 3), {}, "does not fit"),
        ((2, 3, 2, 2), (4, 3, 2, 2), {"dilation": 2}, "does not fit"),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 2, "padding": "same"}, "strided"),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"padding": "full"}, "padding must be"),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"stride": 0}, "stride must be >= 1"),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"bias": np.zeros(3)}, r"bias must have shape \(4,\)"),
        ((2, 3, 5, 5), (4, 3, 3, 3), {"groups": 0}, "groups must be a positive int"),
    ],
)
def test_conv2d_errors_name_the_op_and_shapes(x_shape, w_shape, kwargs, message):
    with pytest.raises(ValueError, match=message):
        F.conv2d(np.zeros(x_shape), np.zeros(w_shape), **kwargs)


def test_conv_errors_on_types():
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a tuple of 2"):
        F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2)), stride=(1, 2, 3))
    with pytest.raises(TypeError, match="share a dtype"):
        F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(TypeError, match="float32/float64"):
        F.conv2d(np.zeros((1, 1, 4, 4), np.int64), np.zeros((1, 1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="conv1d: expected a 3-D input"):
        F.conv1d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 2)))


# ---- kernels vs twins -------------------------------------------------------------------------

GEOMETRIES = [  # x shape, kernel, stride, padding, dilation
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 1), (1, 2)),
    ((1, 1, 5, 5), (5, 5), (1, 1), (0, 0), (1, 1)),
    ((2, 2, 4, 9), (1, 1), (3, 2), (0, 0), (1, 1)),
    ((3, 2, 6, 6), (3, 3), (3, 3), (1, 1), (2, 1)),
]


def _out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_im2col_col2im_match_twins_and_are_adjoint(geometry, dtype):
    shape, k, s, p, d = geometry
    out = (_out(shape[2], k[0], s[0], p[0], d[0]), _out(shape[3], k[1], s[1], p[1], d[1]))
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    cols = kconv.im2col(x, k, s, p, d, out)
    np.testing.assert_array_equal(cols, kconv.im2col_numpy(x, k, s, p, d, out))
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = kconv.col2im(c, shape, s, p, d)
    np.testing.assert_allclose(back, kconv.col2im_numpy(c, shape, s, p, d), rtol=1e-5, atol=1e-5)
    # <im2col(x), c> == <x, col2im(c)>: col2im is im2col's adjoint.
    np.testing.assert_allclose((cols * c).sum(), (x * back).sum(), rtol=1e-4)


def test_kernel_wrappers_reject_non_float():
    with pytest.raises(TypeError, match="im2col: x must be a float32/float64 array"):
        kconv.im2col(np.zeros((1, 1, 2, 2), np.int32), (1, 1), (1, 1), (0, 0), (1, 1), (2, 2))


@pytest.mark.parametrize("module", ["fastbp.kernels.conv", "fastbp.nn.functional_conv",
                                    "fastbp.nn.functional_norm", "fastbp.nn.norm",
                                    "fastbp.examples.mnist_cnn",
                                    "fastbp.nn.conv", "fastbp.ops.pool", "fastbp.kernels.norm",
                                    "fastbp.kernels.dropout"])  # fmt: skip
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ---- modules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, args", [(nn.Conv2d, (4, 6, 3)), (nn.Conv1d, (4, 6, 3))])
def test_conv_module_init_and_shapes(cls, args):
    fb.manual_seed(0)
    layer = cls(*args, stride=1, padding=1, groups=2)
    fan_in = 2 * 3 ** (2 if cls is nn.Conv2d else 1)
    bound = 1 / np.sqrt(fan_in)
    assert layer.weight.shape == ((6, 2, 3, 3) if cls is nn.Conv2d else (6, 2, 3))
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound  # the whole range is used
    assert layer.weight.data.dtype == np.float32
    x = fb.zeros(2, 4, 5, 5) if cls is nn.Conv2d else fb.zeros(2, 4, 5)
    assert layer(x).shape == ((2, 6, 5, 5) if cls is nn.Conv2d else (2, 6, 5))
    assert set(layer.state_dict()) == {"weight", "bias"}
    fb.manual_seed(0)
    again = cls(*args, stride=1, padding=1, groups=2)
    np.testing.assert_array_equal(again.weight.data, layer.weight.data)
    assert "Conv" in repr(layer) and "groups=2" in repr(layer)


def test_conv2d_module_matches_torch_with_copied_weights():
    torch = pytest.importorskip("torch")
    layer = nn.Conv2d(3, 5, (3, 2), stride=2, padding=1, dilation=(1, 2), bias=False)
    assert layer.bias is None
    ref = torch.nn.Conv2d(3, 5, (3, 2), stride=2, padding=1, dilation=(1, 2), bias=False)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.weight.data))
    x = np.random.default_rng(5).standard_normal((2, 3, 8, 7)).astype(np.float32)
    np.testing.assert_allclose(layer(x).data, ref(torch.tensor(x)).detach().numpy(), atol=1e-5)


def test_conv_module_errors():
    with pytest.raises(ValueError, match="Conv2d: in_channels"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="Conv2d: padding_mode"):
        nn.Conv2d(2, 4, 3, padding_mode="reflect")


# ---- transposed convolution and embedding -----------------------------------------------------

# (x shape, weight shape, stride, padding, output_padding, groups, dilation)
CONVT_TABLE = [
    ((2, 4, 3, 4), (4, 3, 3, 2), 2, 1, 1, 1, 1),
    ((1, 4, 3, 3), (4, 1, 2, 3), (1, 2), (0, 1), (0, 1), 2, (2, 1)),  # groups, batch 1
    ((2, 2, 2, 2), (2, 3, 1, 1), 1, 0, 0, 1, 1),  # 1x1 kernel
    ((2, 3, 3, 3), (3, 3, 3, 3), 1, 1, 0, 3, 1),  # depthwise, kernel = input size
]


@pytest.mark.parametrize("case", CONVT_TABLE)
def test_conv_transpose2d_matches_torch_and_gradcheck(case):
    torch = pytest.importorskip("torch")
    x_shape, w_shape, stride, padding, out_pad, groups, dilation = case
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape),
              rng.standard_normal(w_shape[1] * groups)]  # fmt: skip
    ours = [fb.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    args = (stride, padding, out_pad, groups, dilation)
    y = F.conv_transpose2d(*ours, *args)
    ty = torch.nn.functional.conv_transpose2d(*theirs, *args)
    dy = rng.standard_normal(tuple(ty.shape))
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-10)
    for a, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.grad, t.grad.numpy(), atol=1e-10)
    assert fb.gradcheck(lambda *a: F.conv_transpose2d(*a, *args), ours)


def test_conv_transpose2d_module_and_errors():
    torch = pytest.importorskip("torch")
    layer = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    ref = torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
    assert layer.weight.shape == tuple(ref.weight.shape)
    bound = 1 / np.sqrt(3 * 9)  # PyTorch's fan_in for the transposed layout
    assert np.abs(layer.weight.data).max() <= bound
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.weight.data))
        ref.bias.copy_(torch.tensor(layer.bias.data))
    x = np.random.default_rng(8).standard_normal((2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(layer(x).data, ref(torch.tensor(x)).detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="output_padding"):
        F.conv_transpose2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3, 3)), output_padding=1)
    with pytest.raises(ValueError, match="expects 2 input channels"):
        F.conv_transpose2d(np.zeros((1, 1, 3, 3)), np.zeros((2, 1, 3, 3)))
    with pytest.raises(ValueError, match="empty output"):
        F.conv_transpose2d(np.zeros((1, 1, 1, 1)), np.zeros((1, 1, 1, 1)), padding=1)


def test_embedding_vs_torch_repeated_indices_and_padding_idx():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    w = rng.standard_normal((6, 3))
    idx = np.array([[1, 2, 1], [5, 1, 0]])
    ours, theirs = fb.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = F.embedding(idx, ours, padding_idx=1)
    ty = torch.nn.functional.embedding(torch.tensor(idx), theirs, padding_idx=1)
    dy = rng.standard_normal(y.shape)
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), atol=1e-12)
    assert fb.gradcheck(lambda t: F.embedding(idx, t), [fb.tensor(w, requires_grad=True)])
    fb.manual_seed(0)
    layer = nn.Embedding(6, 3, padding_idx=2)
    np.testing.assert_array_equal(layer.weight.data[2], 0)
    assert layer(np.array([2, 3])).shape == (2, 3)
    with pytest.raises(IndexError, match="embedding: index out of range"):
        F.embedding(np.array([6]), w)
    with pytest.raises(TypeError, match="indices must be integers"):
        F.embedding(np.array([0.5]), w)


# Winograd F(2x2, 3x3): 3x3, stride 1, undilated, groups 1; the fixture below lets small
# shapes take it (it is in use from 16 channels each way and 1500 output tiles).
WINOGRAD_TABLE = [
    ((2, 3, 5, 6), (2, 3, 3, 3), 1),  # odd output width
    ((1, 2, 4, 4), (3, 2, 3, 3), 0),  # batch 1, a single 2x2 tile
    ((2, 3, 3, 5), (2, 3, 3, 3), 2),  # padding wider than the kernel's reach
    ((1, 2, 3, 3), (2, 2, 3, 3), 0),  # kernel the size of the input: one output pixel
    ((2, 2, 6, 5), (3, 2, 3, 3), "same"),
    ((1, 16, 4, 5), (17, 16, 3, 3), 1),  # the channel counts the library needs
]


@pytest.fixture
def small_winograd(monkeypatch):
    """Let the small shapes below take the Winograd layout."""
    from fastbp.ops import conv as conv_ops

    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_CHANNELS", 1)


def _takes_winograd(x, w, padding):
    from fastbp.ops import conv as conv_ops

    y = F.conv2d(fb.tensor(np.asarray(x), requires_grad=True), w, None, 1, padding)
    suits = conv_ops._winograd_suits(
        np.asarray(x), np.asarray(w), (1, 1), (1, 1), 1, tuple(y.shape[-2:])
    )
    return suits and y._node.saved[3][-1] == "winograd"


@pytest.mark.parametrize("case", WINOGRAD_TABLE[:-1])  # the 16-channel case: vs torch below
@pytest.mark.parametrize("relu", [False, True])
def test_winograd_conv_gradcheck(case, relu, small_winograd):
    x_shape, w_shape, padding = case
    rng = np.random.default_rng(4)
    x, w, b = _inputs(rng, x_shape, w_shape)
    assert _takes_winograd(x, w, padding)
    if relu:
        conv = nn.Conv2d(w_shape[1], w_shape[0], 3, padding=padding, dtype=np.float64)
        conv.weight, conv.bias = w, b  # the model's Conv2d -> ReLU records 'conv2d_relu'
        model = nn.Sequential(conv, nn.ReLU())
        assert fb.gradcheck(lambda *a: model(a[0]), [x, w, b])
    else:
        assert fb.gradcheck(lambda *a: F.conv2d(a[0], a[1], a[2], 1, padding), [x, w, b])


@pytest.mark.parametrize("case", WINOGRAD_TABLE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_winograd_conv_matches_torch(case, dtype, small_winograd):
    torch = pytest.importorskip("torch")
    x_shape, w_shape, padding = case
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape, w_shape[:1])]
    arrays[0] = arrays[0][:, :, ::-1]  # a non-contiguous view
    ours = [fb.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    y = F.relu(F.conv2d(*ours, 1, padding))
    ty = torch.relu(torch.nn.functional.conv2d(*theirs, 1, padding))
    dy = rng.standard_normal(ty.shape).astype(dtype)
    (y * fb.tensor(dy)).sum().backward()
    (ty * torch.tensor(dy)).sum().backward()
    tol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=tol, atol=tol)
    for ours_t, theirs_t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(ours_t.grad, theirs_t.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("where", ["x", "w", "dy"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_winograd_conv_nan_and_inf_as_torch(where, value, small_winograd):
    """A NaN or an inf reaches exactly the outputs (and gradients) PyTorch's does."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 16, 6, 6))
    w = rng.standard_normal((16, 16, 3, 3))
    dy = rng.standard_normal((2, 16, 6, 6))
    {"x": x, "w": w, "dy": dy}[where][1, 3, 2, 4 if where != "w" else 1] = value
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, padding=1)
    ty.backward(torch.tensor(dy))
    fx, fw = fb.tensor(x, requires_grad=True), fb.tensor(w, requires_grad=True)
    y = F.conv2d(fx, fw, padding=1)
    y.backward(dy)
    for got, want in ((y.data, ty.detach()), (fx.grad, tx.grad), (fw.grad, tw.grad)):
        want = want.numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9)


def test_winograd_path_choice_by_size():
    """A batch of fewer than 1500 output tiles keeps im2col (faster there); more take Winograd."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    assert not _takes_winograd(rng.standard_normal((4, 16, 14, 14)).astype(np.float32), w, 1)
    assert _takes_winograd(rng.standard_normal((31, 16, 14, 14)).astype(np.float32), w, 1)


def test_winograd_path_choice(small_winograd, monkeypatch):
    """Below 16 channels, strided, dilated or grouped convolutions keep the im2col path."""
    from fastbp.ops import conv as conv_ops

    monkeypatch.setattr(conv_ops, "_WINOGRAD_MIN_CHANNELS", 16)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 16, 6, 6))
    assert _takes_winograd(x, rng.standard_normal((16, 16, 3, 3)), 1)
    assert not _takes_winograd(x, rng.standard_normal((8, 16, 3, 3)), 1)
    assert not _takes_winograd(x[:, :8], rng.standard_normal((16, 8, 3, 3)), 1)
    assert not _takes_winograd(x, rng.standard_normal((16, 16, 5, 5)), 2)
    from fastbp.ops import conv as conv_ops

    w = rng.standard_normal((16, 16, 3, 3))
    for stride, dilation, groups in (((2, 2), (1, 1), 1), ((1, 1), (2, 2), 1), ((1, 1), (1, 1), 2)):
        assert not conv_ops._winograd_suits(x, w, stride, dilation, groups, (6, 6))
    assert not conv_ops._winograd_suits(x.astype(np.float16), w, (1, 1), (1, 1), 1, (6, 6))
