"""Every optimizer validates its hyperparameters' types and ranges, with useful messages.

``optim.SGD(params, lr="0.1")`` used to fail with a bare ``TypeError: '>=' not supported
between instances of 'str' and 'float'``. The optimizers are found by walking the
subclasses of ``Optimizer``, so an optimizer added later is checked by the same table, and
each float hyperparameter of its signature is tried with wrong types and values.
"""

from __future__ import annotations

import inspect
import math
import re
from fractions import Fraction

import numpy as np
import pytest

import fastbp as fb
from fastbp import optim
from fastbp.optim.checks import check_pair, check_range


def _optimizers() -> list[type]:
    seen, todo = [], list(optim.Optimizer.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls not in seen and cls.__module__.startswith("fastbp.optim"):
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def _float_args(cls) -> list[str]:
    """Names of the signature's float hyperparameters (annotations are strings here)."""
    out = []
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if str(p.annotation).replace(" ", "") in ("float", "float|None"):
            out.append(name)
    return out


def _params():
    return [fb.ones(3, requires_grad=True)]


def _valid(cls) -> dict:
    """Keyword arguments that construct ``cls`` (lr has no default in SGD)."""
    sig = inspect.signature(cls.__init__)
    lr = sig.parameters.get("lr")
    return {"lr": 0.01} if lr is not None and lr.default is inspect.Parameter.empty else {}


CASES = [(cls, name) for cls in _optimizers() for name in _float_args(cls)]


def test_every_optimizer_is_covered():
    names = {cls.__name__ for cls in _optimizers()}
    assert {"SGD", "Adam", "AdamW"} <= names
    assert ("SGD", "lr") in {(c.__name__, n) for c, n in CASES}


@pytest.mark.parametrize(("cls", "arg"), CASES, ids=[f"{c.__name__}-{n}" for c, n in CASES])
@pytest.mark.parametrize(
    "bad",
    ["0.1", "fast", True, None, [0.1], np.array([0.1]), 1 + 2j],
    ids=["numeric-str", "str", "bool", "None", "list", "array", "complex"],
)
def test_wrong_type_names_optimizer_argument_and_value(cls, arg, bad):
    kwargs = {**_valid(cls), arg: bad}
    with pytest.raises(TypeError) as info:
        cls(_params(), **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}: "), msg
    assert re.search(rf"\b{arg}\b", msg), msg
    assert repr(bad) in msg and type(bad).__name__ in msg, msg
    assert "'>=' not supported" not in msg


def test_numeric_string_hint():
    with pytest.raises(
        TypeError,
        match=r"SGD: learning rate lr must be a real number, got str "
        r"'0\.1'; pass a float such as 0\.1",
    ):
        optim.SGD(_params(), lr="0.1")


@pytest.mark.parametrize(("cls", "arg"), CASES, ids=[f"{c.__name__}-{n}" for c, n in CASES])
@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, -math.inf])
def test_out_of_range_names_optimizer_argument_and_value(cls, arg, bad):
    kwargs = {**_valid(cls), arg: bad}
    with pytest.raises(ValueError) as info:
        cls(_params(), **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}: ") and re.search(rf"\b{arg}\b", msg), msg
    assert repr(bad) in msg, msg


@pytest.mark.parametrize(
    "cls", [c for c in _optimizers() if "betas" in inspect.signature(c).parameters]
)
@pytest.mark.parametrize(
    ("betas", "error", "shown"),
    [
        (0.9, TypeError, "0.9"),
        ("09", TypeError, "'09'"),
        ((0.9,), ValueError, "(0.9,)"),
        ((0.9, 0.99, 0.999), ValueError, "(0.9, 0.99, 0.999)"),
        (("0.9", 0.999), TypeError, "'0.9'"),
        ((0.9, None), TypeError, "None"),
        ((1.0, 0.999), ValueError, "1.0"),
        ((0.9, -0.1), ValueError, "-0.1"),
        ((math.nan, 0.999), ValueError, "nan"),
    ],
)
def test_betas(cls, betas, error, shown):
    with pytest.raises(error) as info:
        cls(_params(), betas=betas)
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}: ") and "beta" in msg and shown in msg, msg


@pytest.mark.parametrize("cls", _optimizers())
@pytest.mark.parametrize(
    "value", [0, 1, 0.0, np.float32(0.5), np.float64(0.25), np.int64(0), Fraction(1, 10)]
)
def test_real_numbers_of_any_kind_are_accepted(cls, value):
    kwargs = _valid(cls)
    for arg in _float_args(cls):
        if arg == "eps" and value == 0:
            continue
        opt = cls(_params(), **{**kwargs, arg: value})
        assert opt.param_groups[0][arg] == value


def test_edges_of_the_ranges():
    optim.SGD(_params(), lr=0.0)  # zero is allowed, as in PyTorch
    optim.Adam(_params(), betas=(0.0, 0.0))
    with pytest.raises(ValueError, match=r"beta1 1\.0; it must be in \[0\.0, 1\.0\)"):
        optim.Adam(_params(), betas=(1.0, 0.5))
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(_params(), lr=0.1, nesterov=True)  # needs momentum > 0


def test_helpers_directly():
    check_range("X", "rate", 3, 0, 5)
    with pytest.raises(ValueError, match=r"X: invalid rate 5; it must be in \[0, 5\)"):
        check_range("X", "rate", 5, 0, 5)
    with pytest.raises(TypeError, match=r"X: rate must be a real number, got Tensor"):
        check_range("X", "rate", fb.tensor(0.1), 0)
    check_pair("X", "betas", [0.1, 0.2])
    with pytest.raises(TypeError, match="got str 'ab'"):
        check_pair("X", "betas", "ab")  # a string of length 2 is not a pair


torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"lr": -0.1}),
        ("SGD", {"lr": 0.1, "momentum": -0.5}),
        ("SGD", {"lr": 0.1, "weight_decay": -1e-4}),
        ("SGD", {"lr": 0.1, "nesterov": True}),
        ("Adam", {"lr": -1e-3}),
        ("Adam", {"betas": (1.0, 0.999)}),
        ("Adam", {"betas": (0.9, 1.0)}),
        ("Adam", {"eps": -1e-8}),
        ("Adam", {"weight_decay": -0.1}),
        ("AdamW", {"betas": (-0.1, 0.999)}),
    ],
)
def test_rejects_what_torch_rejects(name, kwargs):
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.ones(3, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=f"^{name}: "):
        getattr(optim, name)(_params(), **kwargs)


def test_sgd_kernel_error_on_the_every_step_path_is_explained():
    # SGD.step's every-step path calls the kernel directly; an error must still come
    # back explained by the checked wrapper, naming the kernel and the array.
    w, v = fb.ones(3, requires_grad=True), fb.ones(2, requires_grad=True)
    opt = optim.SGD([v, w], lr=0.1)
    opt.zero_grad()
    ((w * 2).sum() + (v * 3).sum()).backward()
    opt._flats[0].flat_views[1].flags.writeable = False  # w's slice of the flat buffer
    with pytest.raises(ValueError, match=r"sgd_update: param must be writable.*shape \(3,\)"):
        opt.step()
    np.testing.assert_allclose(v.data, [0.7, 0.7])  # the parameter before it was updated
    np.testing.assert_array_equal(w.data, [1, 1, 1])
