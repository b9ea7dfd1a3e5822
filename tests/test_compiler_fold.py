"""The plain-SGD fold of compiled steps under adversarial use (fastbp.jit.compiler._Writer._fold,
fastbp.jit.deferred): gradients read some of the time, held, read from another thread,
arrays reused or aliased, errors, hyperparameter changes, calls outside the traced step.

Each test steps a traced training step and an eager twin (tests/test_compiler.py: ``Twins``)
and checks what a user can observe: losses and ``p.grad`` bit for bit, parameters within
rounding (folded weights round their update differently). ``count_compiled_runs`` checks
that the compiled function itself ran where a test is about the compiled path.
"""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest
from optim_reference import assert_within_rounding
from test_compiler import (
    Twins,
    _SharedMLP,
    _zero_grad_after_forward,
    batch,
    count_compiled_runs,
    mlp,
    needs_blas,
    training_step,
)

import fastbp as fb
import fastbp.jit.compiler as compiler
import fastbp.nn.functional as F
from fastbp import nn
from fastbp.core.state import state as _state
from fastbp.jit.deferred import PendingGradTensor

pytestmark = needs_blas


@pytest.fixture(autouse=True)
def no_tracer_left_behind():
    yield
    assert _state.observer is None


# ----------------------------------------------------------------------------- helpers


def pairs(twins):
    return list(zip(twins.eager_model.parameters(), twins.traced_model.parameters(), strict=True))


def sync_weights(twins):
    """Parameters within rounding, then the eager values copied in; reads no gradient."""
    for p, q in pairs(twins):
        assert_within_rounding(q.data, p.data)
        q.data[...] = p.data


def both(twins, x, y, traced_x=None):
    """One step of each twin without reading any gradient; equal losses."""
    expected = twins.eager(x, y)
    loss = twins.traced(x if traced_x is None else traced_x, y)
    np.testing.assert_array_equal(loss.data, expected.data)
    sync_weights(twins)


def assert_grad(p, q):
    assert (p.grad is None) == (q.grad is None)
    if p.grad is not None:
        np.testing.assert_array_equal(q.grad, p.grad)


def bad_batch(rng, n, kind, n_in=6, n_classes=3, dtype=np.float32):
    x, y = batch(rng, n, n_in, n_classes, dtype)
    if kind == "label":
        y[n // 2] = n_classes
    else:
        x[0, 1] = np.nan
    return x, y


def both_raise(twins, x, y):
    for step in (twins.eager, twins.traced):
        with pytest.raises(ValueError):
            step(x, y)


# ------------------------------------------------------- reading p.grad some of the time


def test_grads_read_some_steps_some_parameters_held_then_released():
    twins = Twins(lambda: mlp((6, 5, 4, 3)), "sgd")
    rng = np.random.default_rng(1)
    runs = twins.record(rng, 8)
    for i in range(6):
        both(twins, *batch(rng, 8, 6, 3))
        for k, (p, q) in enumerate(pairs(twins)):
            if (i + k) % 3 == 0:  # a different subset every step, some steps none of them
                assert_grad(p, q)
    assert len(runs) == 6
    # a folded weight's gradient held across calls keeps its values, like eager's
    (pe, pt) = pairs(twins)[2]
    assert isinstance(pt, PendingGradTensor)
    held_e, held_t = pe.grad, pt.grad
    saved = held_e.copy()
    for _ in range(3):
        twins.step(*batch(rng, 8, 6, 3))
        np.testing.assert_array_equal(held_t, saved)
        np.testing.assert_array_equal(held_e, saved)
    del held_t, held_e
    for _ in range(2):
        both(twins, *batch(rng, 8, 6, 3))
    twins.assert_same()
    assert len(runs) == 11  # compiled throughout: a held gradient is never written into


def test_two_batch_sizes_alternate_with_reads_and_errors():
    """Batch 16 and a last partial batch of 5, with the zero_grad after the forward so that a
    failed call keeps the last gradients (of the *other* signature's program)."""
    twins = Twins(lambda: mlp((6, 5, 4, 3)), "sgd_wd", make_step=_zero_grad_after_forward)
    rng = np.random.default_rng(2)
    runs16 = twins.record(rng, 16)
    runs5 = twins.record(rng, 5)
    for i in range(4):
        for n in (16, 5):
            both(twins, *batch(rng, n, 6, 3))
            if (i + n) % 2:
                twins.assert_same()
            other = 5 if n == 16 else 16
            both_raise(twins, *bad_batch(rng, other, "label" if i % 2 else "nan"))
            twins.assert_same()  # still the last good step's gradients
    assert (len(runs16), len(runs5)) == (4, 4)


def test_caller_reuses_its_arrays_before_reading_the_gradients():
    """The batch is copied for the deferred products: refilling x (an ndarray, or the array
    behind a Tensor argument) and y after the call leaves p.grad the step's gradient."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(3)
    x, y = np.empty((8, 6), np.float32), np.empty(8, np.int64)
    for as_tensor in (False, True):
        for i in range(4):
            x[...], y[...] = batch(rng, 8, 6, 3)
            both(twins, x, y, traced_x=fb.from_numpy(x) if as_tensor else None)
            if i == 0:  # the recording call of this signature
                runs = count_compiled_runs(twins.traced)
            x[...] = rng.standard_normal(x.shape)  # the loader refills its arrays
            y[...] = rng.integers(0, 3, 8)
            twins.assert_same()
        assert len(runs) == 3


# --------------------------------------------------------------- errors and hyperparameters


@pytest.mark.parametrize(
    "make_step", [training_step, _zero_grad_after_forward], ids=["zg-first", "zg-after-forward"]
)
@pytest.mark.parametrize("set_to_none", [True, False], ids=["none", "zeros"])
def test_errors_then_reads_then_training_goes_on(make_step, set_to_none):
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd", set_to_none=set_to_none, make_step=make_step)
    rng = np.random.default_rng(4)
    runs = twins.record(rng, 8)
    for kind in ("label", "nan", "label"):
        both(twins, *batch(rng, 8, 6, 3))
        both_raise(twins, *bad_batch(rng, 8, kind))
        both_raise(twins, *bad_batch(rng, 8, kind))  # twice in a row: the same buffer set
        twins.assert_same()
    for _ in range(2):
        twins.step(*batch(rng, 8, 6, 3))
    assert len(runs) == 5


def test_learning_rate_weight_decay_and_momentum_changes():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(5)
    twins.step(*batch(rng, 8, 6, 3))
    settings = [
        (0.3, 0.0, 0.0),
        (0.05, 0.1, 0.0),
        (0.1, 0.1, 0.9),
        (0.1, 0.0, 0.9),
        (0.0, 0.2, 0.0),
        (0.2, 0.0, 0.0),
    ]
    for lr, wd, momentum in settings:
        for opt in (twins.eager_opt, twins.traced_opt):
            opt.param_groups[0].update(lr=lr, weight_decay=wd, momentum=momentum)
        for _ in range(2):
            both(twins, *batch(rng, 8, 6, 3))
        twins.assert_same()


def test_optimizer_and_module_calls_outside_the_traced_step():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(6)
    runs = twins.record(rng, 8)

    def on_both(action):
        for model, opt in (
            (twins.eager_model, twins.eager_opt),
            (twins.traced_model, twins.traced_opt),
        ):
            action(model, opt)

    def backward(model, opt):
        F.cross_entropy(model(xb), yb).backward()

    actions = [
        lambda m, o: o.zero_grad(set_to_none=False),
        lambda m, o: m.zero_grad(set_to_none=False),
        lambda m, o: m.zero_grad(),
        backward,  # accumulated into the deferred gradients
        lambda m, o: o.step(),  # a manual update from the deferred gradients
    ]
    for i, action in enumerate(actions + [backward, lambda m, o: o.step()]):
        both(twins, *batch(rng, 8, 6, 3))
        xb, yb = batch(rng, 5, 6, 3)
        on_both(action)
        if i % 2:
            twins.assert_same()
        else:
            on_both(backward)  # reads (and adds to) the gradients first
            on_both(lambda m, o: o.step())
            twins.assert_same()
    assert len(runs) == 7


# ------------------------------------------------------------------------ other models


class _MatmulNet(nn.Module):
    """x @ W1 @ W2 with bare parameters (fb.matmul, no nn.Linear); W2 is also used twice."""

    def __init__(self, dtype=np.float32, twice=False):
        super().__init__()
        rng = np.random.default_rng(30)
        self.w1 = fb.tensor(rng.standard_normal((6, 5)).astype(dtype) * 0.4, requires_grad=True)
        self.w2 = fb.tensor(rng.standard_normal((5, 5)).astype(dtype) * 0.4, requires_grad=True)
        self.w3 = fb.tensor(rng.standard_normal((5, 3)).astype(dtype) * 0.4, requires_grad=True)
        self.twice = twice

    def forward(self, x):
        h = fb.matmul(x, self.w1) @ self.w2
        if self.twice:
            h = h @ self.w2
        return h @ self.w3


MODELS = {
    "f64-nobias-sgd_wd": (lambda: mlp((6, 5, 4, 3), np.float64, bias=False), np.float64),
    "matmul-f32": (lambda: _MatmulNet(), np.float32),
    "matmul-f64-shared": (lambda: _MatmulNet(np.float64, twice=True), np.float64),
    "shared-linear-sgd": (lambda: _SharedMLP(), np.float32),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_other_models_fold_like_eager(name):
    build, dtype = MODELS[name]
    twins = Twins(build, "sgd_wd" if "wd" in name else "sgd")
    rng = np.random.default_rng(7)
    twins.step(*batch(rng, 8, 6, 3, dtype))
    assert twins.traced.compiled == (True, "")
    assert "fold_alpha" in twins.traced.source
    runs = count_compiled_runs(twins.traced)
    for i in range(4):
        both(twins, *batch(rng, 8, 6, 3, dtype))
        if i % 2:
            twins.assert_same()
        else:
            # In the model's dtype: float32 data into a float64 model is a dtype mismatch
            # (a TypeError, as in PyTorch; issue 13 item 5), not the bad label under test.
            both_raise(twins, *bad_batch(rng, 8, "label", dtype=dtype))
    twins.assert_same()
    assert len(runs) == 4


# ------------------------------------------------------------- copies, checkpoints, threads


def test_deepcopy_pickle_and_state_dicts_right_after_a_traced_step(tmp_path):
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd_wd")
    rng = np.random.default_rng(8)
    twins.step(*batch(rng, 8, 6, 3))
    both(twins, *batch(rng, 8, 6, 3))
    assert isinstance(twins.traced_model[0].weight, PendingGradTensor)
    copies = []
    for dup in (copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))):
        copies.append((dup(twins.eager_model), dup(twins.traced_model)))
    se, st = twins.eager_model.state_dict(), twins.traced_model.state_dict()
    fb.save(st, tmp_path / "model.npz")
    fb.save(twins.traced_opt.state_dict(), tmp_path / "opt.npz")
    loaded = fb.load(tmp_path / "model.npz")
    for key in se:
        assert_within_rounding(st[key], se[key])
        np.testing.assert_array_equal(loaded[key], st[key])
    assert (
        fb.load(tmp_path / "opt.npz")["state"].keys()
        == twins.eager_opt.state_dict()["state"].keys()
    )
    for _ in range(2):  # training on leaves the copies' gradients as they were
        both(twins, *batch(rng, 8, 6, 3))
    for ce, ct in copies:
        for p, q in zip(ce.parameters(), ct.parameters(), strict=True):
            assert_within_rounding(q.data, p.data)
            assert_grad(p, q)


def test_two_threads_train_their_own_models():
    errors = []

    def train(seed):
        try:
            twins = Twins(lambda: mlp((6, 5, 4, 3)), "sgd")
            rng = np.random.default_rng(seed)
            for i in range(12):
                twins.step(*batch(rng, 16 if i % 3 else 5, 6, 3))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=train, args=(seed,)) for seed in (9, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_grad_read_in_another_thread_during_the_next_step_is_not_left_stale(monkeypatch):
    """A thread reading a folded weight's p.grad while the next step runs: once both are done,
    p.grad must be the new step's gradient, as eagerly. The read is made to straddle the step
    (deterministically) by holding the deferred product until the step has returned."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(11)
    runs = twins.record(rng, 8)
    started, step_done = threading.Event(), threading.Event()
    real = compiler._weight_gradient

    def straddling(*args):
        if threading.current_thread() is not threading.main_thread():
            started.set()
            step_done.wait(10)
        return real(*args)

    monkeypatch.setattr(compiler, "_weight_gradient", straddling)
    both(twins, *batch(rng, 8, 6, 3))
    weight = twins.traced_model[0].weight
    read = []
    reader = threading.Thread(target=lambda: read.append(weight.grad.copy()))
    reader.start()
    assert started.wait(10)
    both(twins, *batch(rng, 8, 6, 3))  # the next step, while the reader computes
    step_done.set()
    reader.join()
    assert len(runs) == 2
    np.testing.assert_array_equal(weight.grad, twins.eager_model[0].weight.grad)


# ---------------------------------------------- aliasing of p.grad and of the batch array


def test_gradient_held_after_a_traced_step_survives_optimizer_zero_grad_zeros():
    """Eagerly (zero_grad() to None), p.grad after a step is an array of its own: a user holding
    it keeps its values through opt.zero_grad(set_to_none=False). After a compiled step p.grad
    is lent out of the step's own memory, which that call does not touch."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(12)
    for _ in range(2):
        twins.step(*batch(rng, 8, 6, 3))
    held = [(p.grad, q.grad) for p, q in pairs(twins)]
    saved = [p_grad.copy() for p_grad, _ in held]
    twins.eager_opt.zero_grad(set_to_none=False)
    twins.traced_opt.zero_grad(set_to_none=False)
    for (p_grad, q_grad), s in zip(held, saved, strict=True):
        np.testing.assert_array_equal(p_grad, s)
        np.testing.assert_array_equal(q_grad, p_grad)


def test_batch_array_that_is_a_parameter_gives_the_eager_step():
    """The batch passed is the array of a parameter (C-contiguous, right shape). Eagerly every
    gradient is computed before the optimizer updates anything; the compiled step must not
    read the argument after updating the parameter it aliases."""
    twins = Twins(lambda: mlp((3, 4, 3)), "sgd")
    twins.set_lr(0.5)
    rng = np.random.default_rng(13)
    for _ in range(3):
        y = rng.integers(0, 3, 4)
        expected = twins.eager(twins.eager_model[2].weight.data, y)
        loss = twins.traced(twins.traced_model[2].weight.data, y)
        np.testing.assert_array_equal(loss.data, expected.data)
        for p, q in pairs(twins):
            assert_grad(p, q)  # the first layer's weight gradient read the updated batch
        sync_weights(twins)


# --------------------------------------------------------------------- random sequences


def _random_session(seed, make_step, set_to_none, n_actions=45):
    """Random steps (two batch sizes, a batch of one, a Tensor batch, a second traced function
    over the same model), reads, holds, errors, hyperparameter changes and calls outside."""
    rng = np.random.default_rng(seed)
    twins = Twins(lambda: mlp((6, 5, 4, 3)), "sgd", set_to_none=set_to_none, make_step=make_step)
    other_eager = training_step(twins.eager_model, twins.eager_opt, "sum", not set_to_none)
    other_traced = fb.trace(
        training_step(twins.traced_model, twins.traced_opt, "sum", not set_to_none)
    )
    flat_e, flat_t = twins.eager_opt.flat_buffers[0].grad, twins.traced_opt.flat_buffers[0].grad
    held = []
    actions = [
        "step16",
        "step5",
        "step1",
        "tensor",
        "other",
        "read",
        "hold",
        "release",
        "bad",
        "lr",
        "wd",
        "momentum",
        "zero_grad",
        "module_zero_grad",
        "manual_step",
        "backward",
    ]
    for _ in range(n_actions):
        act = actions[rng.integers(len(actions))]
        if act in ("step16", "step5", "step1", "tensor"):
            n = {"step5": 5, "step1": 1}.get(act, 16)
            x, y = batch(rng, n, 6, 3)
            both(twins, x, y, traced_x=fb.from_numpy(x) if act == "tensor" else None)
            x[...] = 0
        elif act == "other":
            x, y = batch(rng, 16, 6, 3)
            np.testing.assert_array_equal(other_traced(x, y).data, other_eager(x, y).data)
            sync_weights(twins)
        elif act == "read":
            for p, q in pairs(twins):
                if rng.random() < 0.6:
                    assert_grad(p, q)
        elif act == "hold":
            p, q = pairs(twins)[rng.integers(4)]
            # (only where both gradients alias their flat buffer alike: see the test above)
            if (
                p.grad is not None
                and q.grad is not None
                and (np.shares_memory(p.grad, flat_e) == np.shares_memory(q.grad, flat_t))
            ):
                held.append((p.grad, q.grad))
        elif act == "release":
            for p_grad, q_grad in held:
                np.testing.assert_array_equal(q_grad, p_grad)
            held.clear()
        elif act == "bad":
            x, y = bad_batch(
                rng, int(rng.choice([16, 5])), "label" if rng.random() < 0.5 else "nan"
            )
            both_raise(twins, x, y)
        elif act in ("lr", "wd", "momentum"):
            key, values = {
                "lr": ("lr", (0.0, 0.05, 0.2)),
                "wd": ("weight_decay", (0.0, 0.1)),
                "momentum": ("momentum", (0.0, 0.0, 0.9)),
            }[act]
            value = float(rng.choice(values))
            for opt in (twins.eager_opt, twins.traced_opt):
                opt.param_groups[0][key] = value
        elif act == "zero_grad":
            held.clear()
            twins.eager_opt.zero_grad(set_to_none=False)
            twins.traced_opt.zero_grad(set_to_none=False)
        elif act == "module_zero_grad":
            flag = bool(rng.random() < 0.5)
            twins.eager_model.zero_grad(flag)
            twins.traced_model.zero_grad(flag)
        elif act == "manual_step":
            twins.eager_opt.step()
            twins.traced_opt.step()
            sync_weights(twins)
        elif act == "backward":
            x, y = batch(rng, 5, 6, 3)
            F.cross_entropy(twins.eager_model(x), y).backward()
            F.cross_entropy(twins.traced_model(x), y).backward()
    twins.assert_same()


@pytest.mark.parametrize(
    ("seed", "make_step", "set_to_none"),
    [(100, training_step, True), (101, _zero_grad_after_forward, False)],
    ids=["zg-first-none", "zg-after-forward-zeros"],
)
def test_random_sessions_equal_eager(seed, make_step, set_to_none):
    _random_session(seed, make_step, set_to_none)
