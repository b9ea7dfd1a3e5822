"""Bad input, tried as a new user would: every public entry point fails at once with an
error that names the op, the shapes or dtypes involved, and what to do.

The same table is shown to users in docs/errors.md.
"""

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim


def used_twice():
    x = fb.tensor([1.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def mutate_saved_weight():
    w = fb.tensor(np.ones((2, 2)), requires_grad=True)
    y = (fb.ones(1, 2, dtype=np.float64) @ w).sum()
    w.data[0, 0] = 5.0
    y.backward()


# (case, call, exception, words the message must contain: op, shapes/dtypes, remedy)
CASES = [
    ("add shapes", lambda: fb.ones(2, 3) + fb.ones(4), ValueError,
     ["add", "(2, 3)", "(4,)", "broadcast"]),
    ("mul shapes", lambda: fb.ones(2, 3) * np.ones((3, 2)), ValueError,
     ["mul", "(2, 3)", "(3, 2)", "Fix:"]),
    ("sub shapes", lambda: fb.ones(5) - fb.ones(4), ValueError, ["sub", "(5,)", "(4,)"]),
    ("div shapes", lambda: fb.ones(2, 2) / fb.ones(3), ValueError, ["div", "(2, 2)", "(3,)"]),
    ("maximum shapes", lambda: fb.maximum(fb.ones(2), fb.ones(3)), ValueError,
     ["maximum", "(2,)", "(3,)"]),
    ("matmul inner", lambda: fb.ones(2, 3) @ fb.ones(2, 3), ValueError,
     ["matmul", "(2, 3)", "transpose"]),
    ("matmul 1-D", lambda: fb.ones(3) @ fb.ones(4), ValueError, ["matmul", "(3,)", "(4,)"]),
    ("Linear features", lambda: nn.Linear(4, 2)(fb.zeros(3, 5)), ValueError,
     ["Linear(in_features=4", "4 features", "(3, 5)", "previous layer"]),
    ("Linear 1-D input", lambda: nn.Linear(4, 2)(fb.zeros(4)), ValueError,
     ["Linear(in_features=4", "(4,)", "reshape"]),
    ("int requires grad", lambda: fb.tensor([1, 2], requires_grad=True), TypeError,
     ["int64", "float32"]),
    ("object array", lambda: fb.tensor(np.array([object()])), TypeError,
     ["object", "numbers", "np.asarray"]),
    ("strings", lambda: fb.tensor(["a", "b"]), TypeError, ["<U1", "numbers"]),
    ("float labels", lambda: F.cross_entropy(fb.zeros(2, 3), np.array([0.0, 1.0])), TypeError,
     ["cross_entropy", "float64", "astype"]),
    ("label out of range", lambda: F.cross_entropy(fb.zeros(2, 3), np.array([0, 3])),
     ValueError, ["cross_entropy", "label 3", "3 classes", "[0, 2]"]),
    ("labels shape", lambda: F.cross_entropy(fb.zeros(2, 3), np.array([0, 1, 2])), ValueError,
     ["cross_entropy", "(3,)", "(2, 3)"]),
    ("NaN logits", lambda: F.cross_entropy(fb.tensor([[np.nan, 0.0]]), np.array([0])),
     ValueError, ["cross_entropy", "nan", "learning rate"]),
    ("Inf logits", lambda: F.cross_entropy(fb.tensor([[np.inf, 0.0]]), np.array([0])),
     ValueError, ["cross_entropy", "inf"]),
    ("empty batch", lambda: F.cross_entropy(fb.zeros(0, 3), np.zeros(0, dtype=int)),
     ValueError, ["cross_entropy", "empty batch", "(0, 3)"]),
    ("mse shapes", lambda: F.mse_loss(fb.zeros(2, 3), fb.zeros(3, 2)), ValueError,
     ["mse_loss", "(2, 3)", "(3, 2)", "reshape"]),
    ("NaN regression target", lambda: F.mse_loss(fb.zeros(2), fb.tensor([0.0, np.nan])),
     ValueError, ["mse_loss", "target", "(2,)", "NaN"]),
    ("Inf prediction", lambda: F.mse_loss(fb.tensor([np.inf]), fb.zeros(1)), ValueError,
     ["mse_loss", "pred", "Inf"]),
    ("axis out of range", lambda: fb.ones(2, 3).sum(axis=2), ValueError,
     ["sum", "(2, 3)", "axis"]),
    ("softmax axis", lambda: fb.softmax(fb.ones(2, 3), axis=-3), ValueError,
     ["softmax", "axis"]),
    ("reshape size", lambda: fb.ones(2, 3).reshape(4, 4), ValueError,
     ["reshape", "(2, 3)", "same number of elements"]),
    ("index out of range", lambda: fb.ones(2, 3)[5], IndexError, ["getitem", "(2, 3)"]),
    ("concatenate shapes", lambda: fb.concatenate([fb.ones(2, 3), fb.ones(3, 2)]), ValueError,
     ["concatenate", "(2, 3)", "(3, 2)"]),
    ("where condition", lambda: fb.where(np.array([1, 0]), fb.zeros(2), fb.zeros(2)),
     TypeError, ["where", "int64", "x > 0"]),
    ("backward twice", used_twice, RuntimeError, ["second time", "retain_graph=True"]),
    ("backward non-scalar", lambda: (fb.ones(3, requires_grad=True) * 2).backward(),
     RuntimeError, ["(3,)", "grad=", ".sum()"]),
    ("backward without grad", lambda: fb.ones(3).sum().backward(), RuntimeError,
     ["does not require grad", "requires_grad=True"]),
    ("backward grad shape", lambda: (fb.ones(3, requires_grad=True) * 2).backward(np.ones(2)),
     ValueError, ["(2,)", "(3,)"]),
    ("mutated saved weight", mutate_saved_weight, RuntimeError,
     ["matmul", "(2, 2)", "written to directly", "backward() before"]),
    ("negative lr", lambda: optim.SGD([fb.zeros(1, requires_grad=True)], lr=-1), ValueError,
     ["SGD", "lr", ">= 0"]),
    ("no parameters", lambda: optim.Adam([]), ValueError, ["Adam", "empty"]),
    ("DataLoader batch size", lambda: fb.data.DataLoader(np.zeros((4, 2)), np.zeros(4), 0),
     ValueError, ["DataLoader", "batch_size", ">= 1"]),
    ("DataLoader lengths", lambda: fb.data.DataLoader(np.zeros((4, 2)), np.zeros(3), 2),
     ValueError, ["DataLoader", "(4, 2)", "(3,)", "equal length"]),
    ("missing checkpoint", lambda: fb.load("/nonexistent/ckpt.npz"), FileNotFoundError,
     ["/nonexistent/ckpt.npz"]),
    ("missing MNIST", lambda: fb.data.load_mnist("/nonexistent", download=False),
     FileNotFoundError, ["train-images-idx3-ubyte", "FASTBP_DATA", "download=True"]),
    ("state dict keys", lambda: nn.Linear(2, 2).load_state_dict({"weight": np.zeros((2, 2))}),
     KeyError, ["missing keys", "bias"]),
    ("state dict shape", lambda: nn.Linear(2, 2).load_state_dict(
        {"weight": np.zeros((3, 2)), "bias": np.zeros(2)}), ValueError,
     ["weight", "(3, 2)", "(2, 2)"]),
]  # fmt: skip


@pytest.mark.parametrize("call, error, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_with_a_message_that_helps(call, error, words):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message lacks {missing}: {message}"


def test_truncated_and_foreign_checkpoints(tmp_path):
    good = tmp_path / "good.npz"
    fb.save({"w": np.ones(3)}, good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:40])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    for path in (truncated, foreign):
        with pytest.raises(ValueError, match=str(path.name)):
            fb.load(path)
