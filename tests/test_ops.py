"""Every op in the table, checked against central finite differences in float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp as fb
from fastbp.ops import OPS

RNG = np.random.default_rng(1234)


def make(shape, low=-2.0, high=2.0):
    return fb.tensor(RNG.uniform(low, high, size=shape), requires_grad=True)


def positive(shape):
    return make(shape, 0.5, 2.0)


def distinct(shape):
    # Values far apart so that max/min/relu/abs are differentiable at every point.
    n = int(np.prod(shape))
    values = RNG.permutation(np.linspace(-2.0, 2.0, n) + 0.1)
    return fb.tensor(values.reshape(shape), requires_grad=True)


# (id, function, input makers). Broadcasting variants are separate rows.
CASES = [
    ("add", lambda a, b: a + b, [make((3, 4)), make((3, 4))]),
    ("add-broadcast-row", lambda a, b: a + b, [make((3, 4)), make((4,))]),
    ("add-broadcast-both", lambda a, b: a + b, [make((3, 1)), make((1, 4))]),
    ("add-scalar-tensor", lambda a, b: a + b, [make((2, 3)), make(())]),
    ("radd-python", lambda a: 2.0 + a, [make((3,))]),
    ("sub", lambda a, b: a - b, [make((2, 3, 4)), make((3, 1))]),
    ("rsub-ndarray", lambda a: np.ones((2, 3)) - a, [make((3,))]),
    ("mul", lambda a, b: a * b, [make((4, 1, 3)), make((2, 1))]),
    ("div", lambda a, b: a / b, [make((3, 4)), positive((4,))]),
    ("rdiv", lambda a: 1.0 / a, [positive((3,))]),
    ("neg", lambda a: -a, [make((2, 2))]),
    ("pow-scalar", lambda a: a**3, [make((3, 2))]),
    ("pow-tensor", lambda a, b: a**b, [positive((3, 2)), make((2,))]),
    ("rpow", lambda a: 2.0**a, [make((3,))]),
    ("matmul", lambda a, b: a @ b, [make((3, 4)), make((4, 2))]),
    ("matmul-fn", lambda a, b: fb.matmul(a, b), [make((1, 5)), make((5, 1))]),
    ("exp", fb.exp, [make((3, 2))]),
    ("log", fb.log, [positive((3, 2))]),
    ("sqrt", fb.sqrt, [positive((4,))]),
    ("tanh", fb.tanh, [make((3, 2))]),
    ("sigmoid", fb.sigmoid, [make((3, 2))]),
    ("relu", fb.relu, [distinct((3, 4))]),
    ("abs", fb.abs, [distinct((3, 4))]),
    ("clip", lambda a: fb.clip(a, -1.0, 1.0), [distinct((3, 4))]),
    ("clip-low-only", lambda a: a.clip(min=0.0), [distinct((5,))]),
    ("sum-all", lambda a: a.sum(), [make((3, 4))]),
    ("sum-axis", lambda a: fb.sum(a, axis=1), [make((3, 4, 2))]),
    ("sum-tuple-negative-keepdims", lambda a: a.sum(axis=(0, -1), keepdims=True),
     [make((3, 4, 2))]),
    ("mean", lambda a: a.mean(axis=-2), [make((3, 4, 2))]),
    ("mean-all", lambda a: fb.mean(a), [make((3, 4))]),
    ("max", lambda a: a.max(axis=1), [distinct((3, 4))]),
    ("max-all-keepdims", lambda a: a.max(keepdims=True), [distinct((3, 4))]),
    ("min", lambda a: fb.min(a, axis=(0, 2)), [distinct((2, 3, 2))]),
    ("maximum", fb.maximum, [distinct((3, 4)), distinct((4,)) * 1.05]),
    ("minimum", fb.minimum, [distinct((3, 1)), distinct((1, 4)) * 0.95]),
    ("where", lambda a, b: fb.where(a.data > 0, a, b), [make((3, 4)), make((4,))]),
    ("reshape", lambda a: a.reshape(4, 3) * fb.tensor(np.arange(12.0).reshape(4, 3)),
     [make((3, 4))]),
    ("reshape-tuple-minus1", lambda a: fb.reshape(a, (-1,)), [make((2, 3))]),
    ("transpose", lambda a: a.T @ a, [make((3, 2))]),
    ("transpose-axes", lambda a: a.transpose(2, 0, 1) * 2, [make((2, 3, 4))]),
    ("getitem-slice", lambda a: a[1:, ::2], [make((3, 4))]),
    ("getitem-int-array-repeated", lambda a: a[np.array([0, 2, 0, 0])], [make((3, 2))]),
    ("getitem-list-and-int", lambda a: a[[1, 1], 0], [make((3, 2))]),
    ("getitem-bool-mask", lambda a: a[a.data > 0], [make((4, 3))]),
    ("concatenate", lambda a, b: fb.concatenate([a, b, a], axis=1), [make((2, 3)), make((2, 1))]),
    ("stack", lambda a, b: fb.stack([a, b], axis=-1), [make((2, 3)), make((2, 3))]),
    ("softmax", lambda a: fb.softmax(a, axis=1), [make((3, 4))]),
    ("softmax-axis0", lambda a: fb.softmax(a, axis=0), [make((3, 4))]),
    ("log_softmax", lambda a: fb.log_softmax(a), [make((3, 4))]),
    ("logsumexp", lambda a: fb.logsumexp(a, axis=1), [make((3, 4))]),
    ("logsumexp-all-keepdims", lambda a: fb.logsumexp(a, keepdims=True), [make((3, 4))]),
    ("linear", lambda x, w, b: fb.autograd.apply(OPS["linear"], (x, w, b)),
     [make((4, 3)), make((3, 2)), make((2,))]),
    ("linear_relu", lambda x, w, b: fb.autograd.apply(OPS["linear_relu"], (x, w, b)),
     [distinct((4, 3)), distinct((3, 2)), distinct((2,))]),
    ("linear_relu-no-bias", lambda x, w: fb.autograd.apply(OPS["linear_relu"], (x, w)),
     [distinct((4, 3)), distinct((3, 2))]),
    ("linear_sigmoid", lambda x, w, b: fb.autograd.apply(OPS["linear_sigmoid"], (x, w, b)),
     [make((4, 3)), make((3, 2)), make((2,))]),
    ("linear-no-bias", lambda x, w: fb.autograd.apply(OPS["linear"], (x, w)),
     [make((1, 3)), make((3, 2))]),
    ("cross_entropy", lambda z: fb.autograd.apply(OPS["cross_entropy"], (z,),
                                                  labels=np.array([0, 2, 1]), reduction="mean"),
     [make((3, 4))]),
]  # fmt: skip


@pytest.mark.parametrize("fn, inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gradient_matches_finite_differences(fn, inputs):
    assert fb.gradcheck(fn, inputs)


OTHER_TABLES = [
    "test_ops_math", "test_ops_reduce_more", "test_ops_shape_more", "test_activations",
    "test_conv", "test_pool", "test_nn", "test_cnn_kernels",
]  # fmt: skip


def test_every_registered_op_is_covered_by_the_table():
    names = {c[0].split("-")[0] for c in CASES}  # "linear_relu-no-bias" covers linear_relu
    aliases = {"radd": "add", "rsub": "sub", "rdiv": "div", "rpow": "pow"}
    covered = {aliases.get(n, n) for n in names}
    # Tables in other files gradcheck their own ops (and check that they reach them).
    for module in OTHER_TABLES:
        covered |= pytest.importorskip(module).GRADCHECKED_OPS
    differentiable = {n for n, op in OPS.items() if op.vjp is not None}
    missing = {n for n in differentiable if not n.endswith("_example")} - covered
    assert not missing, f"ops without a gradient test: {sorted(missing)}"


def test_gradcheck_catches_a_wrong_vjp():
    from fastbp.ops import defop

    bad = defop("bad_double", lambda x: (2 * x, None), lambda s, dy, n: (3 * dy,))
    x = make((3,))
    with pytest.raises(fb.gradcheck.__globals__["GradcheckError"], match="input 0"):
        fb.gradcheck(lambda t: fb.autograd.apply(bad, (t,)), [x])
    del OPS["bad_double"]


# -------------------------------------------------------------- broadcasting property


@st.composite
def broadcastable_pair(draw):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
    )
    return shapes.input_shapes


@settings(max_examples=60, deadline=None)
@given(shapes=broadcastable_pair(), op=st.sampled_from(["add", "sub", "mul", "div", "maximum"]))
def test_binary_ops_reduce_gradients_to_each_input_shape(shapes, op):
    a = make(shapes[0])
    b = positive(shapes[1]) if op == "div" else make(shapes[1])
    fn = {
        "add": lambda x, y: x + y,
        "sub": lambda x, y: x - y,
        "mul": lambda x, y: x * y,
        "div": lambda x, y: x / y,
        "maximum": lambda x, y: fb.maximum(x, y * 1.0001 + 0.0003),
    }[op]
    out = fn(a, b)
    out.sum().backward()
    assert a.grad.shape == a.shape and b.grad.shape == b.shape
    assert fb.gradcheck(
        fn, [fb.tensor(a.data, requires_grad=True), fb.tensor(b.data, requires_grad=True)]
    )


@settings(max_examples=40, deadline=None)
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), data=st.data())
def test_reductions_over_random_axes(shape, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    keepdims = data.draw(st.booleans())
    x = make(shape)
    assert fb.gradcheck(lambda t: t.sum(axis=axis, keepdims=keepdims) * 2, [x])
    assert fb.gradcheck(lambda t: fb.logsumexp(t, axis=axis, keepdims=keepdims), [x])
