# ruff: noqa: E501  (one row per line keeps the table readable)
"""Issue 14, reductions and scans: var std prod any all argmax argmin amax amin cumsum
cumprod logcumsumexp cummax cummin sort argsort topk median norm, against PyTorch.

One table ``(name, fastbp fn, torch fn, inputs, gradcheck?)``: values and gradients are
compared with torch (float64), with ties, zeros, ±inf, NaN, empty and size-1 axes and
non-contiguous inputs; differentiable rows at smooth points also pass gradcheck.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_ops14 import (
    check_against_torch,
    check_gradcheck,
    check_rows_reach,
    differentiable_ops,
)

import fastbp as fb
from fastbp.ops import reduce_more

INF, NAN = np.inf, np.nan
RNG = np.random.default_rng(7)
X = RNG.uniform(-2, 2, (3, 4))  # distinct values: no ties, no zeros
X3 = RNG.uniform(0.5, 2, (2, 3, 4))
TIES = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, -1.0]])
ZEROS = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 1.5, 0.0, 2.0], [1.0, 2.0, 3.0, 0.5]])
SPECIAL = np.array([[1.0, INF, -2.0, 0.0], [NAN, 1.0, 2.0, 3.0]])
NONCONTIG = np.ascontiguousarray(RNG.uniform(-2, 2, (4, 6)))[:, ::2].T  # (3, 4) view


def t(fn):  # a torch function, looked up when torch is there
    return lambda *a: fn(__import__("torch"), *a)


def first(fn):  # the values of a (values, indices) result
    return lambda *a: fn(*a)[0]


def second(fn):
    return lambda *a: fn(*a)[1]


ROWS = [
    ("var_all", lambda x: x.var(), t(lambda T, x: x.var()), [X], True),
    ("var_dim", lambda x: fb.var(x, dim=1, keepdim=True), t(lambda T, x: x.var(1, keepdim=True)), [X], True),
    ("var_biased", lambda x: x.var(0, unbiased=False), t(lambda T, x: x.var(0, unbiased=False)), [X], True),
    ("var_correction2", lambda x: x.var((0, 2), correction=2),
     t(lambda T, x: x.var((0, 2), correction=2)), [X3], True),
    ("var_size1", lambda x: x.var(1), t(lambda T, x: x.var(1)), [X[:, :1]], False),
    ("var_special", lambda x: x.var(1), t(lambda T, x: x.var(1)), [SPECIAL], False),
    ("std_all", lambda x: x.std(), t(lambda T, x: x.std()), [X], True),
    ("std_dim", lambda x: fb.std(x, 0, correction=0), t(lambda T, x: x.std(0, correction=0)), [NONCONTIG], True),
    ("prod_all", lambda x: x.prod(), t(lambda T, x: x.prod()), [X], True),
    ("prod_dim", lambda x: fb.prod(x, dim=1), t(lambda T, x: x.prod(1)), [X], True),
    ("prod_zeros", lambda x: x.prod(1), t(lambda T, x: x.prod(1)), [ZEROS], True),
    ("prod_zeros_all", lambda x: x.prod(), t(lambda T, x: x.prod()), [ZEROS[:1]], True),
    ("prod_two_zeros", lambda x: x.prod(), t(lambda T, x: x.prod()), [ZEROS[1:2]], True),
    ("prod_empty", lambda x: x.prod(1), t(lambda T, x: x.prod(1)), [np.zeros((2, 0))], False),
    ("prod_int", lambda x: x.prod(0), t(lambda T, x: x.prod(0)), [np.array([[2, 3], [4, -1]])], False),
    ("any", lambda x: (x > 1).any(dim=1), t(lambda T, x: (x > 1).any(dim=1)), [X], False),
    ("all", lambda x: fb.all(x > -1.5, 0), t(lambda T, x: (x > -1.5).all(0)), [X], False),
    ("any_float", lambda x: x.any(), t(lambda T, x: x.any()), [ZEROS], False),
    ("all_empty", lambda x: x.all(), t(lambda T, x: x.all()), [np.zeros((0,))], False),
    ("argmax_all", lambda x: x.argmax(), t(lambda T, x: x.argmax()), [X], False),
    ("argmax_ties", lambda x: x.argmax(dim=1), t(lambda T, x: x.argmax(1)), [TIES], False),
    ("argmin_keep", lambda x: fb.argmin(x, 0, keepdim=True), t(lambda T, x: x.argmin(0, keepdim=True)), [TIES], False),
    ("argmax_nan", lambda x: x.argmax(1), t(lambda T, x: x.argmax(1)), [SPECIAL], False),
    ("amax_ties", lambda x: x.amax(1), t(lambda T, x: x.amax(1)), [TIES], False),
    ("amax_dims", lambda x: fb.amax(x, dim=(0, 2)), t(lambda T, x: x.amax((0, 2))), [X3], True),
    ("amin_ties", lambda x: x.amin(), t(lambda T, x: x.amin()), [np.array([1.0, -1.0, -1.0, 2.0])], False),
    ("cumsum", lambda x: x.cumsum(1), t(lambda T, x: x.cumsum(1)), [X], True),
    ("cumsum_1d_int", lambda x: fb.cumsum(x, 0), t(lambda T, x: x.cumsum(0)), [np.array([1, 2, 3])], False),
    ("cumsum_noncontig", lambda x: x.cumsum(0), t(lambda T, x: x.cumsum(0)), [NONCONTIG], True),
    ("cumprod", lambda x: x.cumprod(1), t(lambda T, x: x.cumprod(1)), [X], True),
    ("cumprod_zeros", lambda x: x.cumprod(dim=1), t(lambda T, x: x.cumprod(1)), [ZEROS], True),
    ("logcumsumexp", lambda x: x.logcumsumexp(1), t(lambda T, x: x.logcumsumexp(1)), [X], True),
    ("logcumsumexp_big", lambda x: x.logcumsumexp(0), t(lambda T, x: x.logcumsumexp(0)),
     [np.array([1000.0, 1001.0, -1000.0, 999.0])], True),
    ("logcumsumexp_ninf", lambda x: x.logcumsumexp(0), t(lambda T, x: x.logcumsumexp(0)),
     [np.array([-INF, 1.0, -INF, 2.0])], False),
    ("cummax_values", first(lambda x: x.cummax(1)), first(lambda x: x.cummax(1)), [TIES], False),
    ("cummax_indices", second(lambda x: x.cummax(1)), second(lambda x: x.cummax(1)), [TIES], False),
    ("cummax_grad", first(lambda x: fb.cummax(x, 1)), first(lambda x: x.cummax(1)), [X], True),
    ("cummax_nan", second(lambda x: x.cummax(1)), second(lambda x: x.cummax(1)),
     [np.array([[1.0, NAN, 3.0, NAN]])], False),
    ("cummin_values", first(lambda x: x.cummin(dim=1)), first(lambda x: x.cummin(1)), [TIES], False),
    ("cummin_indices", second(lambda x: x.cummin(1)), second(lambda x: x.cummin(1)), [TIES], False),
    ("sort_values", first(lambda x: x.sort()), first(lambda x: x.sort()), [X], True),
    ("sort_desc_dim0", first(lambda x: fb.sort(x, 0, descending=True)),
     first(lambda x: x.sort(0, descending=True)), [X], True),
    ("sort_stable_ties", second(lambda x: x.sort(stable=True)),
     second(lambda x: x.sort(stable=True)), [TIES], False),
    ("sort_desc_stable_ties", second(lambda x: x.sort(descending=True, stable=True)),
     second(lambda x: x.sort(descending=True, stable=True)), [TIES], False),
    ("sort_nan_inf", first(lambda x: x.sort(1)), first(lambda x: x.sort(1)), [SPECIAL], False),
    ("sort_nan_inf_desc", second(lambda x: x.sort(1, descending=True)),
     second(lambda x: x.sort(1, descending=True)), [SPECIAL], False),
    ("sort_int", first(lambda x: x.sort()), first(lambda x: x.sort()), [np.array([3, -1, 2])], False),
    ("sort_empty", first(lambda x: x.sort(0)), first(lambda x: x.sort(0)), [np.zeros((0, 2))], False),
    ("argsort", lambda x: x.argsort(dim=0), t(lambda T, x: x.argsort(dim=0)), [X], False),
    ("argsort_desc", lambda x: fb.argsort(x, descending=True), t(lambda T, x: x.argsort(descending=True)), [X], False),
    ("topk", first(lambda x: x.topk(2)), first(lambda x: x.topk(2)), [X], True),
    ("topk_indices", second(lambda x: x.topk(2)), second(lambda x: x.topk(2)), [X], False),
    ("topk_smallest_dim0", first(lambda x: fb.topk(x, 2, dim=0, largest=False)),
     first(lambda x: x.topk(2, dim=0, largest=False)), [X], True),
    ("topk_k0", first(lambda x: x.topk(0)), first(lambda x: x.topk(0)), [X], False),
    ("median_all", lambda x: x.median(), t(lambda T, x: x.median()), [X], True),
    ("median_all_ties", lambda x: x.median(), t(lambda T, x: x.median()), [np.array([2.0, 2.0, 1.0])], False),
    ("median_all_nan", lambda x: x.median(), t(lambda T, x: x.median()), [SPECIAL], False),
    ("median_dim", first(lambda x: x.median(1)), first(lambda x: x.median(1)), [X], True),
    ("median_dim_idx", second(lambda x: fb.median(x, 1)), second(lambda x: x.median(1)), [X], False),
    ("median_dim_keep", first(lambda x: x.median(0, keepdim=True)),
     first(lambda x: x.median(0, keepdim=True)), [X], True),
    ("median_dim_nan", first(lambda x: x.median(1)), first(lambda x: x.median(1)), [SPECIAL], False),
    ("norm_fro", lambda x: x.norm(), t(lambda T, x: x.norm()), [X], True),
    ("norm_p1_dim", lambda x: fb.norm(x, 1, dim=1), t(lambda T, x: x.norm(1, dim=1)), [X], True),
    ("norm_p3_keep", lambda x: x.norm(3, 0, keepdim=True), t(lambda T, x: x.norm(3, 0, keepdim=True)), [X], True),
    ("norm_inf", lambda x: x.norm(INF, 1), t(lambda T, x: x.norm(INF, 1)), [X], True),
    ("norm_inf_ties", lambda x: x.norm(INF), t(lambda T, x: T.linalg.vector_norm(x, INF)),
     [np.array([3.0, -3.0, 1.0])], False),
    ("norm_ninf", lambda x: x.norm(-INF, 1), t(lambda T, x: x.norm(-INF, 1)), [X], True),
    ("norm_p0", lambda x: x.norm(0), t(lambda T, x: x.norm(0)), [ZEROS], False),
    ("norm_zero_vec", lambda x: x.norm(dim=1), t(lambda T, x: x.norm(dim=1)), [np.zeros((2, 3))], False),
    ("norm_zero_p3", lambda x: x.norm(3), t(lambda T, x: x.norm(3)), [np.zeros((3,))], False),
]  # fmt: skip


@pytest.mark.filterwarnings("ignore:var\\(\\)")  # torch warns on var_size1
@pytest.mark.parametrize("name, fb_fn, torch_fn, arrays, diff", ROWS, ids=[r[0] for r in ROWS])
def test_matches_torch(name, fb_fn, torch_fn, arrays, diff):
    torch = pytest.importorskip("torch")
    check_against_torch(torch, fb_fn, torch_fn, arrays)


GRAD_ROWS = [row for row in ROWS if row[4]]


@pytest.mark.parametrize(
    "name, fb_fn, torch_fn, arrays, diff", GRAD_ROWS, ids=[r[0] for r in GRAD_ROWS]
)
def test_gradcheck(name, fb_fn, torch_fn, arrays, diff):
    check_gradcheck(fb_fn, arrays)


def test_results_unpack_like_torch_return_types():
    values, indices = fb.tensor([3.0, 1.0]).sort()
    assert values.data.tolist() == [1.0, 3.0] and indices.data.tolist() == [1, 0]
    assert fb.tensor([3.0, 1.0]).topk(1).indices.data.tolist() == [0]


def test_index_results_do_not_require_grad():
    x = fb.tensor([3.0, 1.0], requires_grad=True)
    assert not x.argmax().requires_grad
    assert not x.sort().indices.requires_grad
    assert x.sort().values.requires_grad


def test_errors():
    with pytest.raises(ValueError, match="topk"):
        fb.ones(3).topk(4)
    with pytest.raises(TypeError, match="give dim"):
        fb.ones(2, 2).cumsum()
    with pytest.raises(TypeError, match="unbiased or correction"):
        fb.ones(3).var(unbiased=True, correction=0)
    with pytest.raises(ValueError, match="empty"):
        fb.zeros(0).argmax()


# Read by tests/test_ops.py: the ops whose gradients this file checks.
GRADCHECKED_OPS = differentiable_ops(reduce_more)


def test_every_op_of_the_module_is_gradchecked():
    check_rows_reach(GRAD_ROWS, GRADCHECKED_OPS)
