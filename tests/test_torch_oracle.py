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
