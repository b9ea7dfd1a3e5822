"""Integer (e.g. raw uint8 pixel) input to a float layer raises, as in PyTorch.

``model(fb.tensor(x_uint8))`` used to run, silently training on unscaled 0..255 values.
PyTorch raises a dtype mismatch ("mat1 and mat2 must have the same dtype, but got Byte and
Float"); fastbp raises a TypeError that names the op, both dtypes and shapes, and says how
to scale pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from fastbp import nn

torch = pytest.importorskip("torch")

INT_DTYPES = ["uint8", "int8", "int32", "int64", "bool"]


def _layers():
    fb.manual_seed(0)
    return [nn.Linear(4, 3), nn.Linear(4, 3, bias=False)]


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_rejects_integer_input_like_torch(dtype, bias):
    x = np.arange(8).reshape(2, 4).astype(dtype)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.nn.Linear(4, 3, bias=bias)(torch.from_numpy(x))
    layer = nn.Linear(4, 3, bias=bias)
    with pytest.raises(TypeError) as info:
        layer(fb.tensor(x))
    msg = str(info.value)
    assert "linear" in msg and dtype in msg and "float32" in msg and "(2, 4)" in msg, msg
    assert ("x.astype(np.float32) / 255" in msg) == (dtype == "uint8"), msg


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("int_on_left", [True, False])
def test_matmul_rejects_int_with_float(dtype, int_on_left):
    ints = np.ones((2, 2), dtype=dtype)
    floats = np.ones((2, 2), np.float32)
    a, b = (ints, floats) if int_on_left else (floats, ints)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.from_numpy(a) @ torch.from_numpy(b)
    with pytest.raises(TypeError, match=rf"matmul: .*{dtype}.*float32|matmul: .*float32.*{dtype}"):
        fb.tensor(a) @ fb.tensor(b)


def test_matmul_of_two_integer_matrices_still_works():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    b = np.arange(6, dtype=np.int64).reshape(3, 2)
    out = fb.tensor(a) @ fb.tensor(b)
    np.testing.assert_array_equal(out.data, (torch.from_numpy(a) @ torch.from_numpy(b)).numpy())


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_fused_linear_activation_rejects_uint8(activation):
    """The fused Linear+activation ops share the same check."""
    from fastbp.core.engine import apply
    from fastbp.ops import OPS

    x = fb.tensor(np.zeros((2, 4), np.uint8))
    w = fb.tensor(np.zeros((4, 3), np.float32))
    b = fb.tensor(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match=r"Scale them first: x\.astype\(np\.float32\) / 255"):
        apply(OPS[f"linear_{activation}"], (x, w, b))


def test_scaled_pixels_are_accepted():
    pixels = np.arange(8, dtype=np.uint8).reshape(2, 4)
    layer = _layers()[0]
    out = layer(fb.tensor(pixels.astype(np.float32) / 255))
    assert out.shape == (2, 3) and out.dtype == np.float32


def test_a_model_with_uint8_input_fails_before_training():
    fb.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = fb.tensor(np.full((3, 4), 200, np.uint8))
    with pytest.raises(TypeError, match="uint8 input"):
        model(x)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid"])
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_real_functions_of_integers_are_float32_like_torch(name, dtype):
    # NumPy computes them in float64; torch in its default float32, and so does fastbp now.
    values = np.array([0, 1, 3]).astype(dtype)
    ours = getattr(fb, name)(fb.tensor(values))
    theirs = getattr(torch, name)(torch.tensor(values))
    assert ours.dtype == np.float32 and theirs.dtype == torch.float32
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-6)
