"""Issue 14, math ops: N-D matmul, einsum, elementwise math, clamp, remainders, tests.

One table: ``(name, fastbp fn, torch fn, inputs)``; every row is checked against
PyTorch (values and gradients, float64) and, where differentiable, by gradcheck.
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
from fastbp.ops import elementwise_more, linalg_nd

INF, NAN = np.inf, np.nan


def r(*shape, low=-2.0, high=2.0):
    return lambda rng: rng.uniform(low, high, shape)


def fixed(*arrays):
    return lambda rng: [np.asarray(a) for a in arrays]


def many(*gens):
    return lambda rng: [g(rng) for g in gens]


def noncontig(rng):
    return [rng.uniform(-2, 2, (4, 6))[:, ::2]]


def T(name):  # the torch function of that name, looked up when torch is there
    return lambda *a: getattr(__import__("torch"), name)(*a)


# name, fastbp fn, torch fn, inputs, differentiable (gradcheck)
ROWS = [
    ("matmul_2d", fb.matmul, T("matmul"), many(r(3, 4), r(4, 2)), True),
    ("matmul_1d_1d", fb.matmul, T("matmul"), many(r(4), r(4)), True),
    ("matmul_1d_2d", fb.matmul, T("matmul"), many(r(4), r(4, 3)), True),
    ("matmul_2d_1d", fb.matmul, T("matmul"), many(r(3, 4), r(4)), True),
    ("matmul_batched_bcast", fb.matmul, T("matmul"), many(r(2, 1, 3, 4), r(5, 4, 2)), True),
    ("matmul_1d_batched", fb.matmul, T("matmul"), many(r(4), r(2, 4, 3)), True),
    ("matmul_batched_1d", fb.matmul, T("matmul"), many(r(2, 3, 4), r(4)), True),
    ("matmul_empty_batch", fb.matmul, T("matmul"), many(r(0, 2, 3), r(3, 2)), False),
    ("matmul_operator", lambda a, b: a @ b, lambda a, b: a @ b, many(r(2, 3, 4), r(4, 2)), True),
    ("einsum_mm", lambda a, b: fb.einsum("ij,jk->ik", a, b),
     lambda a, b: __import__("torch").einsum("ij,jk->ik", a, b), many(r(2, 3), r(3, 4)), True),
    ("einsum_batch_ellipsis", lambda a, b: fb.einsum("...ij,...jk", a, b),
     lambda a, b: __import__("torch").einsum("...ij,...jk", a, b),
     many(r(2, 2, 3), r(1, 3, 4)), True),
    ("einsum_trace", lambda a: fb.einsum("ii", a),
     lambda a: __import__("torch").einsum("ii", a), many(r(3, 3)), True),
    ("einsum_diag", lambda a: fb.einsum("ii->i", a),
     lambda a: __import__("torch").einsum("ii->i", a), many(r(3, 3)), True),
    ("einsum_outer_sum", lambda a, b: fb.einsum("i,j->j", a, b),
     lambda a, b: __import__("torch").einsum("i,j->j", a, b), many(r(3), r(2)), True),
    ("einsum_three", lambda a, b, c: fb.einsum("ij,jk,kl->il", a, b, c),
     lambda a, b, c: __import__("torch").einsum("ij,jk,kl->il", a, b, c),
     many(r(2, 3), r(3, 4), r(4, 2)), True),
    ("einsum_bcast_letters", lambda a, b: fb.einsum("bij,bjk->bik", a, b),
     lambda a, b: __import__("torch").einsum("bij,bjk->bik", a, b),
     many(r(1, 2, 3), r(3, 3, 2)), True),
    ("einsum_transpose", lambda a: fb.einsum("ijk->kji", a),
     lambda a: __import__("torch").einsum("ijk->kji", a), many(r(2, 3, 4)), True),
]  # fmt: skip

_UNARY = {
    "sin": r(5), "cos": r(5), "tan": r(5, low=-1.2, high=1.2),
    "asin": r(5, low=-0.9, high=0.9), "acos": r(5, low=-0.9, high=0.9), "atan": r(5),
    "sinh": r(5), "cosh": r(5), "asinh": r(5), "acosh": r(5, low=1.1, high=3.0),
    "atanh": r(5, low=-0.9, high=0.9), "log2": r(5, low=0.1, high=3), "log10": r(5, low=0.1),
    "exp2": r(5), "log1p": r(5, low=-0.9), "expm1": r(5), "rsqrt": r(5, low=0.1, high=3),
    "square": r(5),
}  # fmt: skip
for _name, _gen in _UNARY.items():
    ROWS.append((_name, getattr(fb, _name), T(_name), many(_gen), True))
    ROWS.append((_name + "_method", lambda x, n=_name: getattr(x, n)(),
                 lambda x, n=_name: getattr(x, n)(), lambda rng, g=_gen: [g(rng)[None, ::-1]], True))  # noqa: E501  # fmt: skip
_EDGE = np.array([0.0, -0.0, 1.0, -1.0, INF, -INF, NAN, 0.5])
for _name in _UNARY:
    ROWS.append((_name + "_edges", getattr(fb, _name), T(_name), fixed(_EDGE), False))
    ROWS.append((_name + "_int", getattr(fb, _name), T(_name), fixed(np.array([0, 1, 2, -3])),
                 False))  # fmt: skip
ROWS.append(("sin_noncontig", fb.sin, T("sin"), noncontig, True))
ROWS.append(("sin_empty", fb.sin, T("sin"), fixed(np.zeros((0, 3))), False))

_ROUNDING = ["sign", "floor", "ceil", "round", "trunc"]
_HALVES = np.array([-2.5, -1.5, -0.5, 0.0, 0.5, 1.5, 2.5, 0.3, -0.7, INF, -INF, NAN])
for _name in _ROUNDING:
    ROWS.append((_name, getattr(fb, _name), T(_name), fixed(_HALVES), False))
    ROWS.append((_name + "_int", getattr(fb, _name), T(_name), fixed(np.array([-3, 0, 4])),
                 False))  # fmt: skip
    # Away from the jumps the finite differences are 0, like the gradient.
    ROWS.append((_name + "_grad", getattr(fb, _name), T(_name),
                 fixed(np.array([0.3, -0.7, 1.2, 2.6, -1.9])), True))  # fmt: skip
ROWS.append(("round_decimals_grad", lambda x: fb.round(x, 2),
             lambda x: __import__("torch").round(x, decimals=2),
             fixed(np.array([0.1234, -0.3331, 1.5])), True))  # fmt: skip
ROWS.append(("round_decimals", lambda x: fb.round(x, 2),
             lambda x: __import__("torch").round(x, decimals=2), r(6), False))  # fmt: skip

ROWS += [
    ("clamp_scalar", lambda x: fb.clamp(x, -1.0, 1.0), lambda x: x.clamp(-1.0, 1.0),
     fixed(np.array([-2.0, -1.0, 0.0, 1.0, 2.0, NAN])), False),
    ("clamp_min_only", lambda x: x.clamp(min=0.5), lambda x: x.clamp(min=0.5), r(6), True),
    ("clamp_max_only", lambda x: fb.clamp(x, max=0.5), lambda x: x.clamp(max=0.5), r(6), True),
    ("clamp_tensor_bounds", fb.clamp, T("clamp"),
     fixed(np.array([0.0, 1.0, 2.0, 3.0, 0.5]), np.array([1.0, 1.0, 3.0, 1.0, 0.0]),
           np.array([2.0, 2.0, 2.0, 3.0, 1.0])), False),
    ("clamp_bcast_bounds", fb.clamp, T("clamp"),
     many(r(3, 4), r(4, low=-1, high=-0.5), r(3, 1, low=0.5, high=1)), True),
    ("lerp", fb.lerp, T("lerp"), many(r(3, 4), r(3, 4), r(4, low=0, high=1)), True),
    ("lerp_scalar_w", lambda a, b: fb.lerp(a, b, 0.3), lambda a, b: a.lerp(b, 0.3),
     many(r(5), r(5)), True),
    ("logaddexp", fb.logaddexp, T("logaddexp"), many(r(3, 4), r(4)), True),
    ("logaddexp_edges", fb.logaddexp, T("logaddexp"),
     fixed(np.array([-INF, 1000.0, INF, 0.0, NAN]), np.array([0.0, 1000.0, 1.0, -INF, 0.0])),
     False),
    ("copysign", fb.copysign, T("copysign"),
     fixed(np.array([1.0, -2.0, 0.0, 3.0, -0.0]), np.array([-1.0, 1.0, -1.0, -0.0, 2.0])), False),
    ("copysign_grad", fb.copysign, T("copysign"), many(r(5), r(5)), True),
    ("remainder", lambda a, b: a % b, lambda a, b: a % b,
     fixed(np.array([-7.0, 7.0, -7.0, 7.5, 0.0]), np.array([2.0, -2.0, -2.0, 2.0, 3.0])), False),
    ("remainder_grad", fb.remainder, T("remainder"),
     fixed(np.array([-7.3, 7.2, 5.1]), np.array([2.1, -2.2, 1.9])), True),
    ("remainder_int", lambda a, b: a % b, lambda a, b: a % b,
     fixed(np.array([-7, 7, -7, 0]), np.array([2, -2, -2, 3])), False),
    ("fmod", fb.fmod, T("fmod"),
     fixed(np.array([-7.0, 7.0, -7.0, 7.5]), np.array([2.0, -2.0, -2.0, 2.0])), False),
    ("fmod_grad", fb.fmod, T("fmod"), fixed(np.array([-7.3, 7.2, 5.1]), np.array([2.1, -2.2, 1.9])),
     True),
    ("fmod_int", fb.fmod, T("fmod"), fixed(np.array([-7, 7, -7]), np.array([2, -2, -2])), False),
    # torch marks a // b as requiring grad but has no derivative for it; fastbp does not record it.
    ("floordiv", lambda a, b: a // b, lambda a, b: (a // b).detach(),
     fixed(np.array([-7.0, 7.0, -7.0, 1.0]), np.array([2.0, -2.0, -2.0, 0.0])), False),
    ("floordiv_int", lambda a, b: a // b, lambda a, b: a // b,
     fixed(np.array([-7, 7, -7]), np.array([2, -2, -2])), False),
    ("rfloordiv_scalar", lambda a: 7 // a, lambda a: 7 // a, fixed(np.array([2, -2, 3])), False),
    ("isnan", fb.isnan, T("isnan"), fixed(_EDGE), False),
    ("isinf", fb.isinf, T("isinf"), fixed(_EDGE), False),
    ("isfinite", fb.isfinite, T("isfinite"), fixed(_EDGE), False),
    ("isfinite_int", fb.isfinite, T("isfinite"), fixed(np.array([1, 2])), False),
    ("isclose", fb.isclose, T("isclose"),
     fixed(np.array([1.0, 2.0, NAN, INF]), np.array([1.0 + 1e-9, 2.1, NAN, INF])), False),
    ("isclose_nan", lambda a, b: fb.isclose(a, b, equal_nan=True),
     lambda a, b: __import__("torch").isclose(a, b, equal_nan=True),
     fixed(np.array([NAN, 1.0]), np.array([NAN, 1.0])), False),
]  # fmt: skip

_B1, _B2 = np.array([True, True, False, False]), np.array([True, False, True, False])
for _op, _f in [("and", lambda a, b: a & b), ("or", lambda a, b: a | b),
                ("xor", lambda a, b: a ^ b)]:  # fmt: skip
    ROWS.append((f"bool_{_op}", _f, _f, fixed(_B1, _B2), False))
    ROWS.append((f"int_{_op}", _f, _f, fixed(np.array([5, 3, -1]), np.array([1, 6, 4])), False))
    ROWS.append((f"logical_{_op}", getattr(fb, f"logical_{_op}"), T(f"logical_{_op}"),
                 fixed(np.array([0.0, 2.0, NAN, 0.0]), np.array([1.0, 0.0, 1.0, 0.0])), False))  # noqa: E501  # fmt: skip
ROWS.append(("bitwise_methods", lambda a, b: a.bitwise_and(b).bitwise_or(a.bitwise_not()).bitwise_xor(b),  # noqa: E501
             lambda a, b: a.bitwise_and(b).bitwise_or(a.bitwise_not()).bitwise_xor(b),
             fixed(np.array([5, 3, -1]), np.array([1, 6, 4])), False))  # fmt: skip
ROWS.append(("where_method", lambda x: x.where(x > 0, -x * 2), lambda x: x.where(x > 0, -x * 2),
             r(6), True))  # fmt: skip
ROWS.append(("bool_invert", lambda a: ~a, lambda a: ~a, fixed(_B1), False))
ROWS.append(("int_invert", lambda a: ~a, lambda a: ~a, fixed(np.array([0, 5, -3])), False))
ROWS.append(("logical_not", fb.logical_not, T("logical_not"), fixed(_EDGE), False))
ROWS.append(("where_scalars", lambda c: fb.where(c > 0, 1.0, -1.0),
             lambda c: __import__("torch").where(c > 0, 1.0, -1.0), r(5), False))  # fmt: skip
ROWS.append(("where_tensor_scalar", lambda c, x: fb.where(c > 0, x, 0.0),
             lambda c, x: __import__("torch").where(c > 0, x, 0.0), many(r(5), r(5)), True))  # noqa: E501  # fmt: skip

IDS = [row[0] for row in ROWS]


def _arrays(make):
    out = make(np.random.default_rng(0))
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("name, fb_fn, torch_fn, make, diff", ROWS, ids=IDS)
def test_matches_torch(name, fb_fn, torch_fn, make, diff):
    torch = pytest.importorskip("torch")
    check_against_torch(torch, fb_fn, torch_fn, _arrays(make))


GRAD_ROWS = [row for row in ROWS if row[4]]


@pytest.mark.parametrize(
    "name, fb_fn, torch_fn, make, diff", GRAD_ROWS, ids=[row[0] for row in GRAD_ROWS]
)
def test_gradcheck(name, fb_fn, torch_fn, make, diff):
    check_gradcheck(fb_fn, _arrays(make))


def test_two_d_matmul_stays_on_the_kernel_op():
    a = fb.ones(2, 3, requires_grad=True)
    assert (a @ fb.ones(3, 4)).grad_fn.op.name == "matmul"
    assert (fb.ones(3) @ a.T).grad_fn.op.name == "matmul_nd"


def test_matmul_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        fb.matmul(fb.ones(2, 3), fb.ones(2, 2, 3))
    with pytest.raises(ValueError, match="at least one dimension"):
        fb.matmul(fb.ones(3), fb.tensor(2.0))


def test_einsum_rejects_a_wrong_operand_count():
    with pytest.raises(ValueError, match="operands"):
        fb.einsum("ij,jk->ik", fb.ones(2, 2))


def test_rounding_and_tests_record_nothing_they_should_not():
    x = fb.tensor([1.5, -0.5], requires_grad=True)
    assert fb.floor(x).requires_grad  # torch: floor is differentiable, with gradient 0
    assert not fb.isnan(x).requires_grad
    assert not (x // 1.0).requires_grad


def test_bitwise_on_floats_says_what_to_do():
    with pytest.raises(TypeError, match="bool or integer"):
        fb.tensor([1.0]) & fb.tensor([1.0])


def test_dim_keepdim_aliases_on_the_old_reductions():
    x = fb.tensor(np.arange(6.0).reshape(2, 3))
    assert x.sum(dim=1, keepdim=True).shape == (2, 1)
    assert x.mean(dim=0).shape == (3,)
    assert x.max(dim=-1).shape == (2,)
    assert x.min(1, keepdim=True).shape == (2, 1)
    with pytest.raises(TypeError, match="only one"):
        x.sum(axis=0, dim=1)


# Read by tests/test_ops.py: the ops whose gradients this file checks.
GRADCHECKED_OPS = differentiable_ops(elementwise_more, linalg_nd)


def test_every_op_of_the_module_is_gradchecked():
    check_rows_reach(GRAD_ROWS, GRADCHECKED_OPS)
