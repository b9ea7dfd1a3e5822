"""Fuzzed gradients: random expression graphs over random broadcast shapes.

Each example builds a graph from a random sequence of ops whose operands are picked
from everything computed so far (so values fan out and are reused), then checks the
gradient of every input against central finite differences in float64. CI runs a few
hundred examples; set FASTBP_FUZZ_EXAMPLES for more.
"""

import os

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp as fb

EXAMPLES = int(os.environ.get("FASTBP_FUZZ_EXAMPLES", "200"))

# Smooth ops only: finite differences are meaningless at kinks (relu at 0, max ties).
UNARY = {
    "tanh": fb.tanh,
    "sigmoid": fb.sigmoid,
    "exp_small": lambda t: fb.exp(t * 0.3),
    "square": lambda t: t * t,
    "softplus": lambda t: fb.log(1.0 + fb.exp(t)),
    "neg": lambda t: -t,
    "sqrt_pos": lambda t: fb.sqrt(t * t + 1.0),
    "softmax_last": lambda t: fb.softmax(t, axis=-1) if t.ndim else t,
    "logsumexp_keep": lambda t: fb.logsumexp(t, axis=-1, keepdims=True) if t.ndim else t,
    "sum0_keep": lambda t: t.sum(axis=0, keepdims=True) if t.ndim else t,
    "mean_last": lambda t: t.mean(axis=-1) if t.ndim else t,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / (b * b + 1.0),
}


@st.composite
def graphs(draw):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3)
    ).input_shapes
    n_inputs = draw(st.integers(1, 3))
    steps = draw(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(UNARY) + sorted(BINARY)),
                st.integers(0, 10_000),
                st.integers(0, 10_000),
            ),
            min_size=1,
            max_size=8,
        )
    )
    seed = draw(st.integers(0, 2**32 - 1))
    # Edge values (issue 13): exact zeros (and -0.0) in the inputs, non-contiguous views of
    # them, and an integer or bool constant operand mixed in (it must promote, not upcast).
    edges = draw(
        st.fixed_dictionaries(
            {"zeros": st.booleans(), "strided": st.booleans(), "int_const": st.booleans()}
        )
    )
    return shapes[:n_inputs], steps, seed, edges


def build(steps):
    def fn(*inputs):
        values = list(inputs)
        for name, i, j in steps:
            a = values[i % len(values)]
            if name in UNARY:
                values.append(UNARY[name](a))
            else:
                b = values[j % len(values)]
                try:
                    np.broadcast_shapes(a.shape, b.shape)
                except ValueError:  # a reduction changed a shape: combine with itself
                    b = a
                values.append(BINARY[name](a, b))
        # Sum everything so that every intermediate (fan-out included) reaches the output.
        total = values[-1].sum()
        for v in values[len(inputs) : -1]:
            total = total + v.sum() * 0.5
        return total

    return fn


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(graph=graphs())
def test_random_graph_gradients_match_finite_differences(graph):
    shapes, steps, seed, edges = graph
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, s) for s in shapes]
    if edges["zeros"]:  # every op in the tables is smooth at 0
        for a in arrays:
            a[rng.random(a.shape) < 0.3] = 0.0
            a[rng.random(a.shape) < 0.1] = -0.0
    if edges["strided"]:  # the same values, read through a transposed, strided view
        arrays = [np.ascontiguousarray(np.repeat(a.T, 2, axis=0))[::2].T for a in arrays]
    inputs = [fb.from_numpy(a, requires_grad=True) for a in arrays]
    fn = build(steps)
    if edges["int_const"]:
        offset = fb.tensor(rng.integers(-2, 3, shapes[0]), dtype=np.int64)
        flag = fb.tensor(rng.random(shapes[0]) < 0.5, dtype=np.bool_)

        def fn(*xs, inner=fn):
            shifted = (xs[0] + offset) * flag + xs[0]  # int and bool promote to float64
            assert shifted.dtype == np.float64
            return inner(shifted, *xs[1:])

    # Central differences resolve about |f| * 1e-16 / eps = |f| * 1e-10, a tenth of atol at
    # |f| = 1e4; past that (exp of a square of a square reaches 1e12) the check would test
    # float64's rounding, not the gradient.
    with fb.no_grad():
        assume(abs(fn(*inputs).item()) < 1e4)
    assert fb.gradcheck(fn, inputs, atol=1e-5, rtol=1e-3)


@settings(max_examples=max(EXAMPLES // 4, 10), deadline=None)
@given(graph=graphs(), where=st.integers(0, 10_000), value=st.sampled_from([np.nan, np.inf]))
def test_random_graphs_propagate_nan_and_inf_like_numpy(graph, where, value):
    """Recording (and backward through) a graph over a NaN or inf input never raises,
    and its forward equals the same graph evaluated without recording, NaN for NaN."""
    shapes, steps, seed, _ = graph
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(-1.5, 1.5, s) for s in shapes]
    first = arrays[0].reshape(-1)
    if first.size:
        first[where % first.size] = value
    with np.errstate(all="ignore"):
        out = build(steps)(*[fb.tensor(a, requires_grad=True) for a in arrays])
        out.backward()
        clean = build(steps)(*[fb.tensor(a) for a in arrays])
    np.testing.assert_array_equal(out.data, clean.data)
    assert out.dtype == np.float64
