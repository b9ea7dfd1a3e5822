"""The Tensor API: constructors, dtypes, operators with NumPy, conversions, errors."""

import numpy as np
import pytest

import fastbp as fb


def test_tensor_copies_and_keeps_floating_dtypes():
    a = np.arange(3.0)
    t = fb.tensor(a)
    a[0] = 99
    assert t.data[0] == 0 and t.dtype == np.float64
    assert fb.tensor(np.ones(2, np.float32)).dtype == np.float32


def test_python_numbers_become_float32_and_ints_stay_integer():
    assert fb.tensor(1.5).dtype == np.float32
    assert fb.tensor([[1.0, 2.0]]).dtype == np.float32
    assert fb.tensor([1, 2]).dtype == np.int64
    assert fb.tensor([1, 2], dtype=np.float64).dtype == np.float64


def test_integer_data_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        fb.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        fb.tensor([1, 2]).requires_grad_()


@pytest.mark.parametrize("bad", [["a", "b"], np.array([object()]), "text"])
def test_non_numeric_data_is_rejected(bad):
    with pytest.raises(TypeError, match="numbers"):
        fb.tensor(bad)


def test_from_numpy_shares_memory():
    a = np.zeros(3, np.float32)
    t = fb.from_numpy(a)
    a[1] = 5
    assert t.data[1] == 5
    with pytest.raises(TypeError):
        fb.from_numpy([1.0])


def test_constructors():
    assert fb.zeros(2, 3).shape == (2, 3) and fb.zeros(2, 3).dtype == np.float32
    assert fb.ones((4,)).data.sum() == 4
    fb.manual_seed(7)
    a = fb.randn(5, requires_grad=True)
    fb.manual_seed(7)
    assert np.array_equal(fb.randn(5).data, a.data) and a.requires_grad
    assert fb.zeros_like(a).shape == (5,) and fb.ones_like(a).data.sum() == 5


def test_properties_and_conversions():
    t = fb.tensor([[1.0, 2.0, 3.0]])
    assert (t.shape, t.ndim, t.size, t.T.shape) == ((1, 3), 2, 3, (3, 1))
    assert t.numpy() is t.data
    assert np.asarray(t) is t.data
    assert fb.tensor([2.0]).item() == 2.0
    with pytest.raises(ValueError, match="one element"):
        t.item()
    x = fb.tensor([1.0], requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.grad_fn is None
    assert "requires_grad=True" in repr(x)


def test_float32_stays_float32_with_python_scalars():
    x = fb.tensor([1.0, 2.0], requires_grad=True)
    y = ((x * 2.5 + 1) / 3 - 0.5) ** 2
    y = 1.0 - fb.exp(-y) * 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_gradient_has_the_tensors_dtype_when_mixed_with_float64():
    x = fb.tensor([1.0, 2.0], requires_grad=True)  # float32
    y = (x * np.array([1.0, 2.0])).sum()  # float64 result
    assert y.dtype == np.float64
    y.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])


@pytest.mark.parametrize(
    "expr",
    [
        lambda a, t: a + t,
        lambda a, t: a - t,
        lambda a, t: a * t,
        lambda a, t: a / t,
        lambda a, t: a**t,
        lambda a, t: t + a,
        lambda a, t: 2.0 * t,
        lambda a, t: 2.0 - t,
    ],
)
def test_ndarray_or_scalar_on_either_side_gives_tensor(expr):
    a = np.array([1.0, 2.0], dtype=np.float32)
    t = fb.tensor([3.0, 4.0], requires_grad=True)
    out = expr(a, t)
    assert isinstance(out, fb.Tensor) and out.requires_grad


def test_ndarray_matmul_tensor():
    out = np.ones((2, 3)) @ fb.tensor(np.ones((3, 4)), requires_grad=True)
    assert isinstance(out, fb.Tensor) and out.shape == (2, 4)


def test_comparisons_give_bool_tensors_without_grad():
    t = fb.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r in (t > 2, t >= 2, t < 2, t <= 2, t == 2, t != 2, 2 < t):
        assert isinstance(r, fb.Tensor) and r.dtype == bool and not r.requires_grad
    assert (t > 1.5).data.tolist() == [False, True, True]
    assert t in {t}  # still hashable


def test_shape_mismatch_names_op_and_shapes():
    a = fb.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"add.*\(2, 3\).*\(4,\)"):
        a + fb.tensor(np.ones(4))
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(2, 3\)"):
        a @ a
    with pytest.raises(ValueError, match="matmul"):  # 1-D @ 1-D is a dot product (torch)
        fb.matmul(fb.ones(3), fb.ones(4))


def test_axis_out_of_range_names_op():
    with pytest.raises(ValueError, match="sum.*axis"):
        fb.ones(2, 3).sum(axis=2)


def test_indexing_with_tensor_and_negative_axes():
    x = fb.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    idx = fb.tensor([2, 2, 0])
    y = x[:, idx.data]
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 0, 2], [1, 0, 2]])
    assert x[-1].shape == (3,)
    assert x[fb.tensor([1])].shape == (1, 3)


def test_stable_softmax_family_for_large_logits():
    z = fb.tensor([[1000.0, 1000.0, -1000.0]])
    np.testing.assert_allclose(fb.softmax(z).data, [[0.5, 0.5, 0.0]])
    # float32 resolves 1000.69 to about 6e-5, hence the tolerance.
    np.testing.assert_allclose(fb.log_softmax(z).data[0, :2], np.log(0.5), rtol=2e-4)
    np.testing.assert_allclose(fb.logsumexp(z).data, 1000 + np.log(2), rtol=1e-6)
    assert np.isfinite(fb.log_softmax(z).data).all()


def test_where_does_not_leak_nan_from_the_untaken_branch():
    x = fb.tensor([1.0, 4.0], requires_grad=True)
    y = fb.where(np.array([False, True]), x, fb.tensor([np.nan, np.nan]))
    y.backward(np.array([np.nan, 1.0]))  # upstream NaN where x was not taken
    np.testing.assert_array_equal(x.grad, [0.0, 1.0])


def test_max_ties_share_the_gradient():
    x = fb.tensor([3.0, 3.0, 1.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [0.5, 0.5, 0.0])
