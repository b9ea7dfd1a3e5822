# ruff: noqa: E501  (one row per line keeps the table readable)
"""Issue 14, shape and indexing: view flatten unflatten squeeze unsqueeze expand
broadcast_to movedim permute repeat tile repeat_interleave flip roll tril triu diag
diagonal split chunk unbind pad unfold gather scatter scatter_add index_select
masked_fill masked_select nonzero one_hot, and ``__setitem__``, against PyTorch.

One table ``(name, fastbp fn, torch fn, inputs, gradcheck?)``; a function returning
several tensors is checked through their concatenation.
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
import fastbp.nn.functional as F
from fastbp.ops import shape_more

INF, NAN = np.inf, np.nan
RNG = np.random.default_rng(3)
X = RNG.uniform(-2, 2, (3, 4))
X3 = RNG.uniform(-2, 2, (2, 3, 4))
COL = RNG.uniform(-2, 2, (3, 1))
NONCONTIG = np.ascontiguousarray(RNG.uniform(-2, 2, (4, 6)))[:, ::2].T
IDX = np.array([[0, 2, 2, 1], [1, 0, 0, 0]])  # repeated indices
MASK = np.array([[True, False, True, False]])


def T(f):
    return lambda *a: f(__import__("torch"), *a)


def cat_fb(f):
    return lambda *a: fb.concatenate([p.reshape(-1) for p in f(*a)])


def cat_t(f):
    return lambda *a: __import__("torch").cat([p.reshape(-1) for p in f(__import__("torch"), *a)])


ROWS = [
    ("view", lambda x: x.view(4, 3), T(lambda t, x: x.view(4, 3)), [X], True),
    ("view_noncontig", lambda x: x.view(-1), T(lambda t, x: x.reshape(-1)), [NONCONTIG], True),
    ("flatten", lambda x: x.flatten(1), T(lambda t, x: x.flatten(1)), [X3], True),
    ("flatten_fn", lambda x: fb.flatten(x), T(lambda t, x: t.flatten(x)), [X3], True),
    ("flatten_0d", lambda x: x.flatten(), T(lambda t, x: x.flatten()), [np.array(2.0)], True),
    ("unflatten", lambda x: x.unflatten(1, (2, -1)), T(lambda t, x: x.unflatten(1, (2, -1))), [X], True),
    ("squeeze", lambda x: x.squeeze(), T(lambda t, x: x.squeeze()), [COL], True),
    ("squeeze_dim_not1", lambda x: x.squeeze(0), T(lambda t, x: x.squeeze(0)), [COL], True),
    ("squeeze_dims", lambda x: fb.squeeze(x, (1, 2)), T(lambda t, x: x.squeeze((1, 2))), [X[:, None, :1]], True),
    ("unsqueeze", lambda x: x.unsqueeze(-1), T(lambda t, x: x.unsqueeze(-1)), [X], True),
    ("expand", lambda x: x.expand(2, -1, 5), T(lambda t, x: x.expand(2, -1, 5)), [COL], True),
    ("broadcast_to", lambda x: fb.broadcast_to(x, (3, 4)), T(lambda t, x: t.broadcast_to(x, (3, 4))), [COL], True),
    ("expand_as", lambda x, y: x.expand_as(y), T(lambda t, x, y: x.expand_as(y)), [COL, X], True),
    ("permute", lambda x: x.permute(2, 0, 1), T(lambda t, x: x.permute(2, 0, 1)), [X3], True),
    ("movedim", lambda x: x.movedim((0, 1), (2, 0)), T(lambda t, x: x.movedim((0, 1), (2, 0))), [X3], True),
    ("movedim_fn", lambda x: fb.movedim(x, -1, 0), T(lambda t, x: t.movedim(x, -1, 0)), [X3], True),
    ("swapaxes", lambda x: x.swapaxes(0, 2), T(lambda t, x: x.swapaxes(0, 2)), [X3], True),
    ("repeat", lambda x: x.repeat(2, 1, 3), T(lambda t, x: x.repeat(2, 1, 3)), [X], True),
    ("repeat_int", lambda x: x.repeat(2), T(lambda t, x: x.repeat(2)), [np.array([1, 2, 3])], False),
    ("tile", lambda x: fb.tile(x, (2,)), T(lambda t, x: t.tile(x, (2,))), [X], True),
    ("repeat_interleave", lambda x: x.repeat_interleave(2, dim=1), T(lambda t, x: x.repeat_interleave(2, dim=1)), [X], True),
    ("repeat_interleave_tensor", lambda x: fb.repeat_interleave(x, fb.tensor([1, 0, 3]), 0),
     T(lambda t, x: x.repeat_interleave(t.tensor([1, 0, 3]), 0)), [X], True),
    ("repeat_interleave_flat", lambda x: x.repeat_interleave(2), T(lambda t, x: x.repeat_interleave(2)), [X], True),
    ("flip", lambda x: x.flip(0, 2), T(lambda t, x: x.flip(0, 2)), [X3], True),
    ("flip_fn", lambda x: fb.flip(x, (1,)), T(lambda t, x: t.flip(x, (1,))), [NONCONTIG], True),
    ("roll", lambda x: x.roll(1, 1), T(lambda t, x: x.roll(1, 1)), [X], True),
    ("roll_multi", lambda x: x.roll((1, -2), (0, 1)), T(lambda t, x: x.roll((1, -2), (0, 1))), [X], True),
    ("roll_flat", lambda x: fb.roll(x, 5), T(lambda t, x: t.roll(x, 5)), [X], True),
    ("tril", lambda x: x.tril(), T(lambda t, x: x.tril()), [X], True),
    ("triu_k", lambda x: fb.triu(x, 1), T(lambda t, x: t.triu(x, 1)), [X3], True),
    ("tril_neg", lambda x: x.tril(-1), T(lambda t, x: x.tril(-1)), [X], True),
    ("diag_2d", lambda x: x.diag(), T(lambda t, x: x.diag()), [X], True),
    ("diag_2d_off", lambda x: fb.diag(x, 1), T(lambda t, x: t.diag(x, 1)), [X], True),
    ("diag_1d", lambda x: x.diag(-1), T(lambda t, x: x.diag(-1)), [X[0]], True),
    ("diagonal", lambda x: x.diagonal(0, 1, 2), T(lambda t, x: x.diagonal(0, 1, 2)), [X3], True),
    ("diagonal_off", lambda x: fb.diagonal(x, -1, 0, 2), T(lambda t, x: t.diagonal(x, -1, 0, 2)), [X3], True),
    ("split", cat_fb(lambda x: x.split(3, 1)), cat_t(lambda t, x: x.split(3, 1)), [X], True),
    ("split_sections", cat_fb(lambda x: fb.split(x, [1, 3], 1)), cat_t(lambda t, x: t.split(x, [1, 3], 1)), [X], True),
    ("chunk", cat_fb(lambda x: x.chunk(2, 0)), cat_t(lambda t, x: x.chunk(2, 0)), [X], True),
    ("unbind", cat_fb(lambda x: x.unbind(1)), cat_t(lambda t, x: x.unbind(1)), [X], True),
    ("split_count", lambda x: fb.tensor(float(len(x.split(2, 1)))), T(lambda t, x: t.tensor(float(len(x.split(2, 1))))), [X3], False),
    ("chunk_count", lambda x: fb.tensor(float(len(x.chunk(4, 0)))), T(lambda t, x: t.tensor(float(len(x.chunk(4, 0))))), [np.zeros((6, 1))], False),
    ("pad_constant", lambda x: F.pad(x, (1, 2)), T(lambda t, x: t.nn.functional.pad(x, (1, 2))), [X], True),
    ("pad_constant_value", lambda x: F.pad(x, (0, 1, 2, 0), value=-1.0), T(lambda t, x: t.nn.functional.pad(x, (0, 1, 2, 0), value=-1.0)), [X], True),
    ("pad_reflect", lambda x: F.pad(x, (2, 3), mode="reflect"), T(lambda t, x: t.nn.functional.pad(x, (2, 3), mode="reflect")), [X3], True),
    ("pad_replicate", lambda x: F.pad(x, (2, 1, 1, 2), mode="replicate"), T(lambda t, x: t.nn.functional.pad(x, (2, 1, 1, 2), mode="replicate")), [X3], True),
    ("pad_circular", lambda x: F.pad(x, (1, 2, 2, 1), mode="circular"), T(lambda t, x: t.nn.functional.pad(x, (1, 2, 2, 1), mode="circular")), [X3[None]], True),
    ("unfold", lambda x: x.unfold(1, 2, 1), T(lambda t, x: x.unfold(1, 2, 1)), [X], True),
    ("unfold_step", lambda x: x.unfold(-1, 2, 3), T(lambda t, x: x.unfold(-1, 2, 3)), [X3], True),
    ("unfold_dim0", lambda x: x.unfold(0, 2, 1), T(lambda t, x: x.unfold(0, 2, 1)), [X3], True),
    ("gather", lambda x: x.gather(1, fb.tensor(IDX)), T(lambda t, x: x.gather(1, t.tensor(IDX))), [X], True),
    ("gather_smaller", lambda x: fb.gather(x, 0, fb.tensor([[2, 0]])), T(lambda t, x: t.gather(x, 0, t.tensor([[2, 0]]))), [X], True),
    ("scatter_src", lambda x, s: x.scatter(1, fb.tensor([[0, 2], [3, 1]]), s), T(lambda t, x, s: x.scatter(1, t.tensor([[0, 2], [3, 1]]), s)), [X[:2], X3[0, :2, :2]], True),
    ("scatter_value", lambda x: fb.scatter(x, 0, fb.tensor([[1, 0, 2, 2]]), 7.0), T(lambda t, x: t.scatter(x, 0, t.tensor([[1, 0, 2, 2]]), 7.0)), [X], True),
    ("scatter_add", lambda x, s: x.scatter_add(1, fb.tensor(IDX[:, :3]), s), T(lambda t, x, s: x.scatter_add(1, t.tensor(IDX[:, :3]), s)), [X[:2], X3[0, :2, :3]], True),
    ("index_select", lambda x: x.index_select(1, fb.tensor([3, 0, 3])), T(lambda t, x: x.index_select(1, t.tensor([3, 0, 3]))), [X], True),
    ("index_select_fn", lambda x: fb.index_select(x, 0, [2]), T(lambda t, x: t.index_select(x, 0, t.tensor([2]))), [X], True),
    ("masked_fill", lambda x: x.masked_fill(fb.tensor(MASK), -1.0), T(lambda t, x: x.masked_fill(t.tensor(MASK), -1.0)), [X], True),
    ("masked_fill_inf", lambda x: fb.masked_fill(x, x > 0, -INF), T(lambda t, x: x.masked_fill(x > 0, -INF)), [X], False),
    ("masked_select", lambda x: x.masked_select(fb.tensor(MASK)), T(lambda t, x: x.masked_select(t.tensor(MASK))), [X], True),
    ("masked_select_bcast", lambda x: fb.masked_select(x, fb.tensor(MASK.T[:3].repeat(4, 1))), T(lambda t, x: x.masked_select(t.tensor(MASK.T[:3].repeat(4, 1)))), [COL], True),
    ("nonzero", lambda x: x.nonzero(), T(lambda t, x: x.nonzero()), [np.array([[0.0, 1.0], [NAN, 0.0]])], False),
    ("nonzero_tuple", cat_fb(lambda x: fb.nonzero(x, as_tuple=True)), cat_t(lambda t, x: x.nonzero(as_tuple=True)), [np.array([[0, 3], [2, 0]])], False),
    ("nonzero_empty", lambda x: x.nonzero(), T(lambda t, x: x.nonzero()), [np.zeros((0, 2))], False),
    ("one_hot", lambda x: F.one_hot(x, 4), T(lambda t, x: t.nn.functional.one_hot(x, 4)), [np.array([[0, 3], [1, 1]])], False),
    ("one_hot_infer", F.one_hot, T(lambda t, x: t.nn.functional.one_hot(x)), [np.array([2, 0])], False),
    ("flip_bool", lambda x: x.flip(0), T(lambda t, x: x.flip(0)), [np.array([True, False, False])], False),
    ("empty_split", cat_fb(lambda x: x.split(2, 0)), cat_t(lambda t, x: x.split(2, 0)), [np.zeros((0, 3))], False),
]  # fmt: skip


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


def test_scatter_takes_the_leading_block_of_a_larger_src():
    # torch's forward accepts a src larger than the index (its backward then fails).
    x = fb.tensor(X[:2], requires_grad=True)
    src = fb.tensor(X3[0], requires_grad=True)
    assert fb.gradcheck(lambda a, b: a.scatter_add(1, fb.tensor(IDX[:, :3]), b), [x, src])
    torch = pytest.importorskip("torch")
    want = torch.tensor(X[:2]).scatter_add(1, torch.tensor(IDX[:, :3]), torch.tensor(X3[0]))
    np.testing.assert_allclose(x.scatter_add(1, fb.tensor(IDX[:, :3]), src).data, want.numpy())


def test_setitem_writes_tensors_outside_the_graph():
    x = fb.zeros(2, 3)
    x[0, 1] = 5.0
    x[1] = fb.tensor([1.0, 2.0, 3.0])
    x[x > 4] = -1.0
    assert x.data.tolist() == [[0.0, -1.0, 0.0], [1.0, 2.0, 3.0]]
    w = fb.ones(2, requires_grad=True)
    with fb.no_grad():
        w[0] = 3.0
    assert w.data.tolist() == [3.0, 1.0]


def test_setitem_refuses_tensors_in_the_graph():
    w = fb.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        w[0] = 3.0
    with pytest.raises(RuntimeError, match="requires grad"):
        fb.zeros(2)[0] = w[1]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="reflect"):
        F.pad(fb.ones(1, 2), (2, 2), mode="reflect")
    with pytest.raises(ValueError, match="mode"):
        F.pad(fb.ones(1, 2), (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="sum to"):
        fb.ones(4).split([1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        F.one_hot(fb.tensor([3]), 2)
    with pytest.raises(TypeError, match="bool"):
        fb.ones(2).masked_fill(fb.tensor([1, 0]), 0.0)
    with pytest.raises(ValueError, match="unfold"):
        fb.ones(3).unfold(0, 4, 1)


def test_index_outputs_need_no_grad():
    x = fb.tensor([0.0, 1.0], requires_grad=True)
    assert not x.nonzero().requires_grad
    assert not F.one_hot(fb.tensor([1]), 2).requires_grad


# Read by tests/test_ops.py: the ops whose gradients this file checks.
GRADCHECKED_OPS = differentiable_ops(shape_more)


def test_every_op_of_the_module_is_gradchecked():
    check_rows_reach(GRAD_ROWS, GRADCHECKED_OPS)
