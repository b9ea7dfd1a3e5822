"""A second oracle: values and gradients compared with PyTorch (skipped without torch)."""

import numpy as np
import pytest

import fastbp as fb

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(5)

CASES = [
    ("broadcast-arith", lambda m, a, b: (a * b + a / (m.exp(b) + 1) - b) ** 2,
     [(3, 4), (4,)]),
    ("matmul-tanh", lambda m, a, b: m.tanh(a @ b), [(3, 4), (4, 5)]),
    ("sigmoid-relu", lambda m, a, b: m.sigmoid(a) * m.relu(b), [(2, 3), (2, 3)]),
    ("softmax", lambda m, a, b: m.softmax(a * b, -1), [(3, 5), (1, 5)]),
    ("log_softmax", lambda m, a, b: m.log_softmax(a + b, -1), [(3, 5), (3, 1)]),
    ("logsumexp", lambda m, a, b: m.logsumexp(a, 1) * b, [(3, 5), (3,)]),
    ("max-mean", lambda m, a, b: m.amax(a, 0) + m.mean(b), [(4, 3), (2, 2)]),
    ("maximum", lambda m, a, b: m.maximum(a, b), [(3, 4), (4,)]),
    ("indexing", lambda m, a, b: a[[0, 2, 2]] * b, [(3, 4), (4,)]),
    ("concat-stack", lambda m, a, b: m.stack([m.cat([a, b], 1), m.cat([b, a], 1)], 0),
     [(2, 3), (2, 3)]),
    ("sqrt-log-abs", lambda m, a, b: m.sqrt(m.abs(a) + 1) * m.log(m.abs(b) + 2),
     [(3, 3), (3, 3)]),
]  # fmt: skip


class FastbpNamespace:
    exp, tanh, sigmoid, relu, sqrt, log, abs = (
        fb.exp,
        fb.tanh,
        fb.sigmoid,
        fb.relu,
        fb.sqrt,
        fb.log,
        fb.abs,
    )
    maximum, mean = fb.maximum, fb.mean

    @staticmethod
    def softmax(x, axis):
        return fb.softmax(x, axis=axis)

    @staticmethod
    def log_softmax(x, axis):
        return fb.log_softmax(x, axis=axis)

    @staticmethod
    def logsumexp(x, axis):
        return fb.logsumexp(x, axis=axis)

    @staticmethod
    def amax(x, axis):
        return x.max(axis=axis)

    @staticmethod
    def cat(xs, axis):
        return fb.concatenate(xs, axis=axis)

    @staticmethod
    def stack(xs, axis):
        return fb.stack(xs, axis=axis)


@pytest.mark.parametrize("fn, shapes", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_matches_pytorch(fn, shapes):
    arrays = [RNG.standard_normal(s) for s in shapes]
    ours = [fb.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(FastbpNamespace, *ours)
    ref = fn(torch, *theirs)
    np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    weights = RNG.standard_normal(out.shape)
    out.backward(weights)
    ref.backward(torch.tensor(weights))
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o.grad, t.grad.numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------- edge values (issue 13, "beyond the list")
# Zeros (and -0), ties, +-inf, NaN, empty and size-1 axes, non-contiguous views: values and
# gradients must equal PyTorch's, NaN for NaN. Each input is float64; ``edge`` picks values.

_I, _N = np.inf, np.nan
EDGE_INPUTS = {
    "zeros": np.array([[0.0, -0.0, 1.0], [2.0, 0.0, -1.0]]),
    "ties": np.array([[1.0, 3.0, 3.0], [-2.0, -2.0, -2.0]]),
    "inf": np.array([[_I, -_I, 1.0], [0.0, 2.0, -_I]]),
    "nan": np.array([[_N, 1.0, 2.0], [0.0, _N, _N]]),
    "size1": np.array([[0.5], [-0.5]]),
    "empty": np.zeros((2, 0)),
    "strided": np.arange(24.0).reshape(4, 6)[::2, ::2].T - 4.0,  # shape (3, 2), not contiguous
}
EDGE_OPS = {
    "exp": lambda m, x: m.exp(x),
    "log_abs": lambda m, x: m.log(m.abs(x)),
    "sqrt_abs": lambda m, x: m.sqrt(m.abs(x)),
    "tanh": lambda m, x: m.tanh(x),
    "sigmoid": lambda m, x: m.sigmoid(x),
    "relu": lambda m, x: m.relu(x),
    "square_pow": lambda m, x: x**2,
    "pow0": lambda m, x: x**0,
    "rpow": lambda m, x: 2.0**x,
    "mul_self": lambda m, x: x * x,
    "div_const": lambda m, x: x / 3.0,
    "maximum0": lambda m, x: m.maximum(x, x * 0),
    "sum1": lambda m, x: x.sum(1),
    "mean0": lambda m, x: x.mean(0),
    "max_all": lambda m, x: x.max(),
    "min_all": lambda m, x: x.min(),
    "amax1": lambda m, x: m.amax(x, 1),
    "max_dim0": lambda m, x: m.max_dim(x, 0),
    "logsumexp1": lambda m, x: m.logsumexp(x, 1),
    "softmax1": lambda m, x: m.softmax(x, 1),
    "log_softmax1": lambda m, x: m.log_softmax(x, 1),
}
# Combinations where one side raises (PyTorch raises too) are checked to raise on both.
_RAISES = {("max_all", "empty"), ("min_all", "empty"), ("amax1", "empty")}
# Where fastbp deliberately differs: torch.amax sends NaN to every gradient of a slice with
# a NaN (0/0: NaN == NaN is false), while torch.max, and fastbp's amax, route dy to the NaN
# elements (issue 13 item 7); checked against hand-worked values instead.
_DIVERGES = {
    ("amax1", "nan"): [[1 / 2, 0.0, 0.0], [0.0, 1.5 / 2, 1.5 / 2]],
}
# relu's backward kernel (fastbp.kernels.activations) tests ``out > 0``, so a NaN input gets
# gradient 0 where PyTorch passes dy (``not out <= 0``): reported, not fixed here.
_KNOWN_BUGS: set[tuple[str, str]] = set()  # (op, edge) pairs known to differ from torch


class _EdgeFastbp(FastbpNamespace):
    @staticmethod
    def amax(x, axis):
        return fb.amax(x, axis)

    @staticmethod
    def max_dim(x, axis):
        return x.max(dim=axis)


class _EdgeTorch:
    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def max_dim(x, axis):
        return torch.max(x, dim=axis).values

    @staticmethod
    def maximum(a, b):
        return torch.maximum(a, b)


@pytest.mark.parametrize("edge", list(EDGE_INPUTS))
@pytest.mark.parametrize("op", list(EDGE_OPS))
def test_edge_values_match_pytorch(op, edge):
    array = EDGE_INPUTS[edge]
    fn = EDGE_OPS[op]
    ours = fb.from_numpy(array.copy() if edge != "strided" else array, requires_grad=True)
    theirs = torch.tensor(array, requires_grad=True)
    if (op, edge) in _DIVERGES:
        out = fn(_EdgeFastbp, ours)
        out.backward(np.linspace(0.5, 1.5, out.size).reshape(out.shape))
        np.testing.assert_allclose(ours.grad, _DIVERGES[op, edge], rtol=1e-12)
        return
    if (op, edge) in _RAISES:
        with pytest.raises(ValueError):
            fn(_EdgeFastbp, ours)
        with pytest.raises((RuntimeError, IndexError)):
            fn(_EdgeTorch(), theirs)
        return
    with np.errstate(all="ignore"):
        out = fn(_EdgeFastbp, ours)
        ref = fn(_EdgeTorch(), theirs)
        np.testing.assert_allclose(out.data, ref.detach().numpy(), rtol=1e-12, atol=1e-15)
        weights = np.linspace(0.5, 1.5, max(out.size, 1))[: out.size].reshape(out.shape)
        out.backward(weights)
        ref.backward(torch.tensor(weights))
    try:
        np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-15)
    except AssertionError:
        if (op, edge) in _KNOWN_BUGS:
            pytest.xfail(f"{op} at {edge}: a known difference from torch")
        raise
    assert (op, edge) not in _KNOWN_BUGS, "fixed: remove it from _KNOWN_BUGS"


@pytest.mark.parametrize(
    "make",
    [
        lambda m, a, b: a * b,
        lambda m, a, b: a + b,
        lambda m, a, b: a / b,
        lambda m, a, b: a * 2.5,
        lambda m, a, b: b - 1,
        lambda m, a, b: m.maximum(a, b),
    ],
)
@pytest.mark.parametrize(
    "a_dtype, b_dtype",
    [(np.int64, np.float32), (np.bool_, np.int64), (np.int32, np.int64), (np.float32, np.float64),
     (np.bool_, np.float32), (np.uint8, np.int8)],
)  # fmt: skip
def test_int_and_bool_inputs_promote_like_pytorch(make, a_dtype, b_dtype):
    a = np.array([[1, 0, 1]], dtype=a_dtype)
    b = np.array([[1], [2]], dtype=b_dtype)
    out = make(fb, fb.tensor(a, dtype=a_dtype), fb.tensor(b, dtype=b_dtype))
    ref = make(torch, torch.from_numpy(a), torch.from_numpy(b))
    assert out.dtype == ref.numpy().dtype
    np.testing.assert_allclose(out.data.astype(np.float64), ref.numpy().astype(np.float64))
