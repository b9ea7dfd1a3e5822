"""Fuzzed gradients: random expression graphs over random broadcast shapes.

Each example builds a graph from a random sequence of ops whose operands are picked
from everything computed so far (so values fan out and are reused), then checks the
gradient of every input against central finite differences in float64. CI runs a few
hundred examples; set FASTBP_FUZZ_EXAMPLES for more.
"""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
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
    return shapes[:n_inputs], steps, seed


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
    shapes, steps, seed = graph
    rng = np.random.default_rng(seed)
    inputs = [fb.tensor(rng.uniform(-1.5, 1.5, s), requires_grad=True) for s in shapes]
    assert fb.gradcheck(build(steps), inputs, atol=1e-5, rtol=1e-3)
