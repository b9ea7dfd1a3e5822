"""Issue 14, activations: the functional forms and their modules against PyTorch.

One table ``(name, fastbp fn, torch fn, inputs, gradcheck?)``; values and gradients are
compared with torch in float64, at the kinks (0, the bounds), ±inf, NaN and large
values too; smooth points are also checked by gradcheck.
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
from fastbp import nn
from fastbp.ops import activation

INF, NAN = np.inf, np.nan
# Points away from every kink (gradcheck) and the kinks, extremes and NaN (oracle).
SMOOTH = np.array([-3.7, -2.2, -0.8, -0.3, 0.4, 1.1, 2.6, 4.1])
EDGES = np.array([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 6.0, 20.0, 21.0, -50.0, 50.0, INF, -INF, NAN])


def TF(name, **kw):  # torch.nn.functional.<name>, looked up when torch is there
    return lambda x: getattr(__import__("torch").nn.functional, name)(x, **kw)


CASES = [
    ("leaky_relu", lambda x: F.leaky_relu(x), TF("leaky_relu")),
    ("leaky_relu_slope", lambda x: F.leaky_relu(x, 0.2), TF("leaky_relu", negative_slope=0.2)),
    ("elu", lambda x: F.elu(x), TF("elu")),
    ("elu_alpha", lambda x: F.elu(x, alpha=0.5), TF("elu", alpha=0.5)),
    ("selu", F.selu, TF("selu")),
    ("celu", lambda x: F.celu(x, alpha=2.0), TF("celu", alpha=2.0)),
    ("gelu", F.gelu, TF("gelu")),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), TF("gelu", approximate="tanh")),
    ("silu", F.silu, TF("silu")),
    ("mish", F.mish, TF("mish")),
    ("softplus", F.softplus, TF("softplus")),
    ("softplus_beta", lambda x: F.softplus(x, beta=2.0, threshold=5.0),
     TF("softplus", beta=2.0, threshold=5.0)),
    ("softsign", F.softsign, TF("softsign")),
    ("hardtanh", F.hardtanh, TF("hardtanh")),
    ("hardtanh_range", lambda x: F.hardtanh(x, -2.0, 3.0), TF("hardtanh", min_val=-2.0, max_val=3.0)),  # noqa: E501
    ("relu6", F.relu6, TF("relu6")),
    ("hardsigmoid", F.hardsigmoid, TF("hardsigmoid")),
    ("hardswish", F.hardswish, TF("hardswish")),
    ("logsigmoid", F.logsigmoid, TF("logsigmoid")),
]  # fmt: skip

MODULES = {
    "leaky_relu_slope": (lambda: nn.LeakyReLU(0.2), "LeakyReLU", {"negative_slope": 0.2}),
    "elu_alpha": (lambda: nn.ELU(0.5), "ELU", {"alpha": 0.5}),
    "selu": (nn.SELU, "SELU", {}),
    "celu": (lambda: nn.CELU(2.0), "CELU", {"alpha": 2.0}),
    "gelu_tanh": (lambda: nn.GELU("tanh"), "GELU", {"approximate": "tanh"}),
    "silu": (nn.SiLU, "SiLU", {}),
    "mish": (nn.Mish, "Mish", {}),
    "softplus_beta": (lambda: nn.Softplus(2.0, 5.0), "Softplus", {"beta": 2.0, "threshold": 5.0}),
    "softsign": (nn.Softsign, "Softsign", {}),
    "hardtanh_range": (lambda: nn.Hardtanh(-2.0, 3.0), "Hardtanh", {"min_val": -2.0, "max_val": 3.0}),  # noqa: E501
    "relu6": (nn.ReLU6, "ReLU6", {}),
    "hardsigmoid": (nn.Hardsigmoid, "Hardsigmoid", {}),
    "hardswish": (nn.Hardswish, "Hardswish", {}),
    "logsigmoid": (nn.LogSigmoid, "LogSigmoid", {}),
}  # fmt: skip


def _rows():
    rows = []
    for name, f, t in CASES:
        rows.append((name + "_smooth", f, t, [SMOOTH.reshape(2, 4)], True))
        rows.append((name + "_edges", f, t, [EDGES], False))
        rows.append((name + "_noncontig", f, t, [np.tile(SMOOTH, (3, 1)).T[::2]], False))
        rows.append((name + "_empty", f, t, [np.zeros((0, 3))], False))
    rows += [
        ("softmin", lambda x: F.softmin(x, dim=1), lambda x: __import__("torch").nn.functional
         .softmin(x, dim=1), [SMOOTH.reshape(2, 4)], True),
        ("softmin_implicit_dim", F.softmin, lambda x: __import__("torch").nn.functional
         .softmin(x, dim=1), [SMOOTH.reshape(2, 4)], True),
        ("softmin_ties_inf", lambda x: F.softmin(x, dim=0), lambda x: __import__("torch").nn
         .functional.softmin(x, dim=0), [np.array([0.0, 0.0, INF])], False),
        ("normalize", F.normalize, lambda x: __import__("torch").nn.functional.normalize(x),
         [SMOOTH.reshape(2, 4)], True),
        ("normalize_p1_dim0", lambda x: F.normalize(x, p=1, dim=0), lambda x: __import__("torch")
         .nn.functional.normalize(x, p=1, dim=0), [SMOOTH.reshape(2, 4)], True),
        ("normalize_p3", lambda x: F.normalize(x, p=3, dim=-1), lambda x: __import__("torch")
         .nn.functional.normalize(x, p=3, dim=-1), [SMOOTH.reshape(2, 4)], True),
        ("normalize_pinf", lambda x: F.normalize(x, p=INF), lambda x: __import__("torch")
         .nn.functional.normalize(x, p=INF), [SMOOTH.reshape(2, 4)], True),
        ("normalize_zero_row", F.normalize, lambda x: __import__("torch").nn.functional
         .normalize(x), [np.array([[0.0, 0.0], [3.0, 4.0]])], False),
    ]  # fmt: skip
    return rows


ROWS = _rows()


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


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_matches_torch_module(name):
    torch = pytest.importorskip("torch")
    make, torch_name, kwargs = MODULES[name]
    ours, theirs = make(), getattr(torch.nn, torch_name)(**kwargs)
    check_against_torch(torch, ours, theirs, [SMOOTH.reshape(2, 4)])
    assert repr(ours).startswith(torch_name)


@pytest.mark.parametrize("cls, torch_name", [(nn.Softmin, "Softmin"), (nn.Softmax, "Softmax"),
                                             (nn.LogSoftmax, "LogSoftmax")])  # fmt: skip
def test_softmax_family_modules(cls, torch_name):
    torch = pytest.importorskip("torch")
    check_against_torch(torch, cls(dim=0), getattr(torch.nn, torch_name)(dim=0), [SMOOTH[:4]])


def test_float32_stays_float32():
    x = fb.tensor([-1.0, 0.5], requires_grad=True)
    for name, f, _ in CASES:
        y = f(x)
        assert y.dtype == np.float32, name
        y.sum().backward()
        assert x.grad.dtype == np.float32, name
        x.grad = None


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(fb.ones(2), approximate="erf")
    with pytest.raises(ValueError, match="min_val"):
        nn.Hardtanh(2.0, 1.0)


def test_inplace_flag_leaves_the_input_alone():
    x = fb.tensor([-1.0, 2.0])
    nn.LeakyReLU(inplace=True)(x)
    assert x.data.tolist() == [-1.0, 2.0]


# Read by tests/test_ops.py: the ops whose gradients this file checks.
GRADCHECKED_OPS = differentiable_ops(activation)


def test_every_op_of_the_module_is_gradchecked():
    check_rows_reach(GRAD_ROWS, GRADCHECKED_OPS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_kernels_match_their_numpy_twins(dtype):
    from fastbp.kernels.gelu import (
        gelu_backward,
        gelu_backward_numpy,
        gelu_forward,
        gelu_forward_numpy,
    )

    x = np.concatenate([EDGES, SMOOTH, np.random.default_rng(2).normal(0, 4, 50)]).astype(dtype)
    x = x.reshape(8, 9)[:, ::2]  # a non-contiguous view
    dy = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    (out, cdf), (want_out, want_cdf) = gelu_forward(x), gelu_forward_numpy(x)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert out.dtype == cdf.dtype == dtype
    np.testing.assert_allclose(out, want_out, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cdf, want_cdf, rtol=rtol, atol=rtol)
    got = gelu_backward(x, cdf, dy)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, gelu_backward_numpy(x, want_cdf, dy), rtol=rtol, atol=rtol)
