"""PyTorch's keyword names where fastbp also takes NumPy's (issue 17, "Torch keyword names"):
``dim``/``keepdim`` beside ``axis``/``keepdims`` on every function that takes an axis."""

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F

X = np.arange(12.0).reshape(3, 4) / 7


def t():
    return fb.tensor(X)


CASES = [
    ("softmax", lambda: F.softmax(t(), dim=0), lambda: fb.softmax(t(), axis=0)),
    ("log_softmax", lambda: F.log_softmax(t(), dim=0), lambda: fb.log_softmax(t(), 0)),
    ("logsumexp", lambda: fb.logsumexp(t(), dim=1, keepdim=True),
     lambda: fb.logsumexp(t(), axis=1, keepdims=True)),
    ("concatenate", lambda: fb.concatenate([t(), t()], dim=1),
     lambda: fb.concatenate([t(), t()], axis=1)),
    ("cat", lambda: fb.cat([t(), t()], dim=1), lambda: fb.concatenate([t(), t()], 1)),
    ("stack", lambda: fb.stack([t(), t()], dim=2), lambda: fb.stack([t(), t()], axis=2)),
    ("sum", lambda: t().sum(dim=1, keepdim=True), lambda: t().sum(axis=1, keepdims=True)),
    ("mean", lambda: fb.mean(t(), dim=0), lambda: fb.mean(t(), axis=0)),
    ("max", lambda: t().max(dim=1), lambda: t().max(axis=1)),
]  # fmt: skip


@pytest.mark.parametrize("name, torch_style, numpy_style", CASES, ids=[c[0] for c in CASES])
def test_dim_and_keepdim_mean_axis_and_keepdims(name, torch_style, numpy_style):
    np.testing.assert_array_equal(torch_style().data, numpy_style().data)


def test_defaults_are_torchs():
    np.testing.assert_allclose(F.softmax(t()).data.sum(axis=-1), 1.0)
    assert fb.cat([t(), t()]).shape == (6, 4)


def test_both_spellings_at_once_must_agree():
    with pytest.raises(TypeError, match="give only one"):
        fb.softmax(t(), axis=0, dim=1)


def test_matches_torch():
    torch = pytest.importorskip("torch")
    tx = torch.tensor(X)
    np.testing.assert_allclose(F.softmax(t(), dim=0).data, torch.softmax(tx, dim=0).numpy())
    np.testing.assert_allclose(
        fb.logsumexp(t(), dim=1, keepdim=True).data, torch.logsumexp(tx, dim=1, keepdim=True)
    )
    np.testing.assert_array_equal(fb.cat([t(), t()], dim=1).data, torch.cat([tx, tx], 1))
