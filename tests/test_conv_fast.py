"""Winograd F(2x2, 3x3) transforms: kernels against their NumPy twins, and the whole
convolution (forward and every gradient) against PyTorch in float64 and float32 (those
skipped without torch; the twin tests always run)."""

import numpy as np
import pytest

from fastbp.kernels import winograd as wg

CASES = [((2, 3, 7, 9), 5, (1, 1)), ((1, 4, 6, 6), 2, (0, 0)), ((3, 8, 5, 4), 6, (1, 1))]


def _conv(x, w, b, pad, out, relu):
    v = wg.input_tiles(x, pad, out)
    u = wg.weight_transform(w)
    y, finite = wg.output_tiles(wg.batched_product(v, u), b, (x.shape[0], w.shape[0], *out), relu)
    assert finite
    return y, v, u


def _backward(x_shape, v, u, y, dy, pad, out, relu):
    dm, db = wg.output_tiles_adjoint(y, dy, relu)
    dx = wg.input_tiles_adjoint(wg.batched_product(dm, u.transpose(0, 2, 1)), x_shape, pad, out)
    dw = wg.weight_transform_adjoint(wg.batched_product(v.transpose(0, 2, 1), dm))
    return dx, dw, db


def _out_size(shape, pad):
    return (shape[2] + 2 * pad[0] - 2, shape[3] + 2 * pad[1] - 2)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("shape", "out_c", "pad"), CASES)
def test_kernels_match_twins(shape, out_c, pad, relu):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)[:, :, ::-1]  # non-contiguous input
    out = _out_size(shape, pad)
    v = wg.input_tiles(x, pad, out)
    np.testing.assert_allclose(v, wg.input_tiles_numpy(x, pad, out), atol=1e-12)
    m = rng.standard_normal((16, v.shape[1], out_c))
    b = rng.standard_normal(out_c)
    y, finite = wg.output_tiles(m, b, (shape[0], out_c, *out), relu)
    y_twin, finite_twin = wg.output_tiles_numpy(m, b, y.shape, relu)
    np.testing.assert_allclose(y, y_twin, atol=1e-12)
    assert finite and finite_twin
    m[3, 0, 0] = np.inf  # reported, by the kernel and its twin
    assert not wg.output_tiles(m, b, y.shape, relu)[1]
    assert not wg.output_tiles_numpy(m, b, y.shape, relu)[1]
    dy = rng.standard_normal(y.shape)
    for got, want in zip(
        wg.output_tiles_adjoint(y, dy, relu),
        wg.output_tiles_adjoint_numpy(y, dy, relu),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=1e-12)
    dv = rng.standard_normal(v.shape)
    np.testing.assert_allclose(
        wg.input_tiles_adjoint(dv, shape, pad, out),
        wg.input_tiles_adjoint_numpy(dv, shape, pad, out),
        atol=1e-12,
    )


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize(("shape", "out_c", "pad"), CASES)
def test_winograd_conv_matches_torch_float64(shape, out_c, pad, relu):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((out_c, shape[1], 3, 3))
    b = rng.standard_normal(out_c)
    out = _out_size(shape, pad)
    y, v, u = _conv(x, w, b, pad, out, relu)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, padding=pad)
    ty = torch.relu(ty) if relu else ty
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    dx, dw, db = _backward(shape, v, u, y, dy, pad, out, relu)
    for got, want in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-10)


def test_winograd_float32_error_is_small():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 9, 10)).astype(np.float32)
    w = (0.1 * rng.standard_normal((8, 16, 3, 3))).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    y, v, u = _conv(x, w, b, (1, 1), (9, 10), False)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, _ = _backward(x.shape, v, u, None, dy, (1, 1), (9, 10), False)
    assert y.dtype == dx.dtype == dw.dtype == np.float32
    tx, tw = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w))
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b.astype(np.float64)), padding=1)
    ty.backward(torch.tensor(dy.astype(np.float64)))
    for got, want in ((y, ty.detach()), (dx, tx.grad), (dw, tw.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_pool_relu_tiles_match_twins(bias):
    rng = np.random.default_rng(4)
    n, o, oh, ow = 2, 5, 6, 4
    tiles = n * (oh // 2) * (ow // 2)
    m = rng.standard_normal((16, tiles, o))
    m[:, 0, 0] = 0.0  # a window of ties (all four outputs equal) and a zero maximum
    b = rng.standard_normal(o) if bias else None
    pooled, code, finite = wg.pool_relu_tiles(m, b, (n, o, oh, ow))
    twin = wg.pool_relu_tiles_numpy(m, b, (n, o, oh, ow))
    np.testing.assert_allclose(pooled, twin[0], atol=1e-12)
    np.testing.assert_array_equal(code, twin[1])
    assert finite and twin[2]
    dy = rng.standard_normal(pooled.shape)
    for got, want in zip(
        wg.pool_relu_tiles_adjoint(pooled, code, dy),
        wg.pool_relu_tiles_adjoint_numpy(pooled, code, dy),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, atol=1e-12)
    m[7, 3, 2] = np.nan
    assert not wg.pool_relu_tiles(m, b, (n, o, oh, ow))[2]
    with pytest.raises(ValueError, match="must be even"):
        wg.pool_relu_tiles(m, b, (n, o, oh + 1, ow))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("relu", "pool"), [(False, False), (True, False), (True, True)])
def test_blocked_drivers_equal_the_whole_batch(monkeypatch, dtype, relu, pool):
    # Blocks of 2 images over a batch of 5 (the last block shorter): conv_forward and
    # conv_backward give the bits of the kernels run once on the whole batch.
    rng = np.random.default_rng(3)
    shape, out_c, pad = (5, 3, 6, 8), 4, (1, 1)
    out = _out_size(shape, pad)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((out_c, shape[1], 3, 3)).astype(dtype)
    b = rng.standard_normal(out_c).astype(dtype)
    u = wg.weight_transform(w)
    per_image = wg._block_bytes(shape[1], out_c, out, np.dtype(dtype).itemsize)
    monkeypatch.setattr(wg, "_BLOCK_BYTES", 2 * per_image)
    assert [hi - lo for lo, hi in wg._image_blocks(shape[0], per_image)] == [2, 2, 1]
    y, code, finite, xs = wg.conv_forward(x, u, b, pad, out, relu, pool)
    assert finite
    m = wg.batched_product(wg.input_tiles(x, pad, out), u)
    full = (shape[0], out_c, *out)
    if pool:
        y_ref, code_ref, _ = wg.pool_relu_tiles(m, b, full)
        np.testing.assert_array_equal(code, code_ref)
    else:
        y_ref, _ = wg.output_tiles(m, b, full, relu)
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx, du, db, ok = wg.conv_backward(xs, shape, u, y, code, dy, pad, out, relu, pool, (True, True))
    assert ok
    if pool:
        dm, db_ref = wg.pool_relu_tiles_adjoint(y_ref, code_ref, dy)
    else:
        dm, db_ref = wg.output_tiles_adjoint(y_ref if relu else None, dy, relu)
    v = wg.input_tiles(x, pad, out)
    dx_ref = wg.input_tiles_adjoint(wg.batched_product(dm, u.transpose(0, 2, 1)), shape, pad, out)
    np.testing.assert_array_equal(dx, dx_ref)  # the input gradient: no sum across images
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}
    # du and db sum over the blocks in a different order than one product over all tiles
    np.testing.assert_allclose(du, wg.batched_product(v.transpose(0, 2, 1), dm), **tol)
    np.testing.assert_allclose(db, db_ref, **tol)
    dx_none, du_only, _, _ = wg.conv_backward(
        xs, shape, u, y, code, dy, pad, out, relu, pool, (False, True)
    )
    assert dx_none is None
    np.testing.assert_array_equal(du_only, du)
