"""fb.trace: a traced function records once per signature, then replays with the eager results.

Replays call the very same op functions as the eager engine, in the same order, so a
traced function is compared with its eager twin bit for bit (``np.array_equal``);
gradients are also checked against central finite differences in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from optim_reference import assert_within_rounding

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim
from fastbp.core.state import state as _state

# ----------------------------------------------------------------------------- helpers


def leaf(values, dtype=np.float64):
    return fb.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def counted(fn):
    """Wrap ``fn`` so that ``wrapper.calls`` counts how often its Python body ran."""

    def wrapper(*args):
        wrapper.calls += 1
        return fn(*args)

    wrapper.calls = 0
    wrapper.__name__ = fn.__name__
    return wrapper


def numeric_grad(loss, p, eps=1e-6):
    """Central differences of the scalar ``loss()`` with respect to ``p.data`` (in place)."""
    g = np.zeros_like(p.data)
    for idx in np.ndindex(p.data.shape):
        old = p.data[idx]
        p.data[idx] = old + eps
        up = loss()
        p.data[idx] = old - eps
        down = loss()
        p.data[idx] = old
        g[idx] = (up - down) / (2 * eps)
    return g


def make_model(activation, seed=0, dtype=np.float32):
    fb.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5, dtype=dtype), activation(), nn.Linear(5, 3, dtype=dtype))


def batches(steps, n=8, seed=3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((n, 6)).astype(dtype), rng.integers(0, 3, n)) for _ in range(steps)
    ]


def assert_same_params(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert np.array_equal(p.data, q.data)


def assert_same_grads(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None)
        if p.grad is not None:
            assert np.array_equal(p.grad, q.grad)


OPTIMIZERS = {
    "sgd": (optim.SGD, {"lr": 0.1}),
    "sgd_nesterov_wd": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    ),
    "adam": (optim.Adam, {"lr": 0.01, "weight_decay": 1e-3}),
    "adamw": (optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def twin_training(activation, opt_name, set_to_none=True):
    """Two identical models and optimizers, an eager step for one and a traced step for the
    other."""
    cls, kwargs = OPTIMIZERS[opt_name]
    eager_model, traced_model = make_model(activation), make_model(activation)
    assert_same_params(eager_model, traced_model)
    eager_opt = cls(eager_model.parameters(), **kwargs)
    traced_opt = cls(traced_model.parameters(), **kwargs)

    def eager_step(x, y):
        eager_opt.zero_grad(set_to_none)
        loss = F.cross_entropy(eager_model(x), y)
        loss.backward()
        eager_opt.step()
        return loss

    @counted
    def body(x, y):
        traced_opt.zero_grad(set_to_none)
        loss = F.cross_entropy(traced_model(x), y)
        loss.backward()
        traced_opt.step()
        return loss

    return eager_model, eager_opt, eager_step, traced_model, traced_opt, body


@pytest.fixture(autouse=True)
def no_tracer_left_behind():
    """Every test must leave the engine without a recorder, whatever it raised."""
    yield
    assert _state.observer is None


# ----------------------------------------------------------- 1. equality with eager training


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_training_steps_match_eager_bitwise(act, opt_name):
    """A traced training step gives bitwise the eager losses, grads and parameters, and replays."""
    eager_model, _, eager_step, traced_model, _, body = twin_training(ACTIVATIONS[act], opt_name)
    traced = fb.trace(body)
    # ReLU layers compile (fastbp.jit.compiler), and plain SGD is then folded into the weight
    # gradients' GEMMs, which round the update differently: compared, then made equal.
    folded = act == "relu" and opt_name == "sgd"
    for x, y in batches(5):
        expected = eager_step(x, y)
        loss = traced(x, y)
        assert np.array_equal(loss.data, expected.data)
        assert loss.dtype == expected.dtype == np.float32
        assert_same_grads(eager_model, traced_model)
        if folded:
            for p, q in zip(eager_model.parameters(), traced_model.parameters(), strict=True):
                assert_within_rounding(q.data, p.data)
                q.data[...] = p.data
        assert_same_params(eager_model, traced_model)
    assert body.calls == 1
    assert len(traced.programs) == 1


@pytest.mark.parametrize("opt_name", ["sgd_nesterov_wd", "adam"])
def test_zero_grad_to_zeros_matches_eager(opt_name):
    """zero_grad(set_to_none=False) (grads in the flat buffer) replays as eagerly."""
    eager_model, _, eager_step, traced_model, _, body = twin_training(
        nn.Tanh, opt_name, set_to_none=False
    )
    traced = fb.trace(body)
    for x, y in batches(4):
        assert np.array_equal(traced(x, y).data, eager_step(x, y).data)
        assert_same_grads(eager_model, traced_model)
        assert_same_params(eager_model, traced_model)
    assert body.calls == 1


def test_training_reduces_the_loss_on_replay():
    """Replayed steps keep training: the loss on a fixed batch goes down."""
    model = make_model(nn.ReLU)
    opt = optim.SGD(model.parameters(), lr=0.5)

    @fb.trace
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    x, y = batches(1)[0]
    losses = [step(x, y).item() for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------- 2. gradients without optimizer


def test_fan_out_gradient_lands_in_each_new_argument():
    """x*x + x with a requires_grad Tensor argument: 2x+1 lands in the new argument's .grad."""
    body = counted(lambda x: _backward_and_return((x * x + x).sum()))
    traced = fb.trace(body)
    tensors = [leaf(np.linspace(-1, 1, 5) * k) for k in (1.0, 2.0, -3.0)]
    for t in tensors:
        loss = traced(t)
        expected = leaf(t.data.copy())
        eager_loss = _backward_and_return((expected * expected + expected).sum())
        assert np.array_equal(loss.data, eager_loss.data)
        assert np.array_equal(t.grad, expected.grad)
        np.testing.assert_allclose(t.grad, 2 * t.data + 1, rtol=1e-12)
    # each call wrote only into its own argument
    np.testing.assert_allclose(tensors[0].grad, 2 * tensors[0].data + 1, rtol=1e-12)
    assert body.calls == 1


def _backward_and_return(loss):
    loss.backward()
    return loss


def test_tensor_argument_gradient_accumulates_like_eager():
    """A Tensor argument that already has a .grad gets the new gradient added, as eagerly."""
    traced = fb.trace(lambda x: _backward_and_return((x * 3.0).sum()))
    traced(leaf([1.0, 2.0]))  # record
    t = leaf([4.0, 5.0])
    t.grad = np.array([1.0, 1.0])
    traced(t)
    np.testing.assert_array_equal(t.grad, [4.0, 4.0])


def test_broadcast_gradients_are_unbroadcast():
    """A (3,1) parameter added to a (3,4) argument gets its summed gradient, as eagerly and FD."""
    rng = np.random.default_rng(0)
    b = leaf(rng.standard_normal((3, 1)))
    c = leaf(rng.standard_normal(4))

    def loss_of(x):
        s = fb.from_numpy(x) + b
        return (fb.tanh(s * c) * s).sum()

    body = counted(lambda x: _backward_and_return(loss_of(x)))
    traced = fb.trace(body)
    for _ in range(3):
        x = rng.standard_normal((3, 4))
        b.grad = c.grad = None
        expected = _backward_and_return(loss_of(x))
        eager = (b.grad, c.grad)
        b.grad = c.grad = None
        loss = traced(x)
        assert np.array_equal(loss.data, expected.data)
        assert b.grad.shape == (3, 1) and c.grad.shape == (4,)
        assert np.array_equal(b.grad, eager[0])
        assert np.array_equal(c.grad, eager[1])
    replayed = (b.grad.copy(), c.grad.copy())
    # finite differences through the replayed forward pass
    for p, g in zip((b, c), replayed, strict=True):
        numeric = numeric_grad(lambda x=x: traced(x).item(), p)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)
    assert body.calls == 1


def _chain(x, idx, a, b):
    """A chain of elementwise, reduction, shape and indexing ops."""
    t = fb.from_numpy(x)
    h = fb.tanh(a * t) + fb.sigmoid(t / (1.5 + b * b))
    z = fb.log(fb.exp(h) + 1.0)
    r = z.reshape(4, 3)[1:, :2]
    picked = z[idx]  # rows chosen by an index-array argument
    return (r * r).mean() + z.sum() * 0.25 - fb.mean(picked * z[0])


def test_chain_of_ops_matches_eager_and_finite_differences():
    """exp/tanh/sigmoid/log/mul/div/sum/mean/reshape/getitem: replayed grads equal eager and FD."""
    rng = np.random.default_rng(1)
    a = leaf(rng.standard_normal((3, 4)))
    b = leaf(rng.standard_normal(4))
    body = counted(lambda x, idx: _backward_and_return(_chain(x, idx, a, b)))
    traced = fb.trace(body)
    for k in range(4):
        x = rng.standard_normal((3, 4))
        idx = np.array([k % 3, 2, (k + 1) % 3])
        a.grad = b.grad = None
        expected = _backward_and_return(_chain(x, idx, a, b))
        eager = (a.grad, b.grad)
        a.grad = b.grad = None
        loss = traced(x, idx)
        assert np.array_equal(loss.data, expected.data)
        assert np.array_equal(a.grad, eager[0])
        assert np.array_equal(b.grad, eager[1])
    assert body.calls == 1
    replayed = (a.grad.copy(), b.grad.copy())
    for p, g in zip((a, b), replayed, strict=True):
        numeric = numeric_grad(lambda: traced(x, idx).item(), p)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)
    assert body.calls == 1
    # and the eager gradients themselves pass fastbp's own check
    assert fb.gradcheck(lambda a_, b_: _chain(x, idx, a_, b_), [a, b])


def test_index_array_argument_follows_the_argument():
    """Indexing a parameter with an index-array argument gathers the new rows on replay."""
    w = leaf(np.arange(12.0).reshape(4, 3))
    traced = fb.trace(lambda idx: _backward_and_return(w[idx].sum()))
    for idx in ([0, 0], [3, 1], [2, 2]):
        w.grad = None
        loss = traced(np.array(idx))
        assert loss.item() == w.data[idx].sum()
        expected = np.zeros((4, 3))
        np.add.at(expected, np.array(idx), 1.0)
        np.testing.assert_array_equal(w.grad, expected)
    assert len(traced.programs) == 1


# --------------------------------------------------------------------------- 3. arguments


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_labels_of_any_integer_dtype_follow_the_argument(label_dtype):
    """cross_entropy casts labels inside; the replay uses each call's labels, not the first."""
    model = make_model(nn.Tanh, dtype=np.float64)
    body = counted(lambda x, y: _backward_and_return(F.cross_entropy(model(x), y)))
    traced = fb.trace(body)
    x = batches(1, dtype=np.float64)[0][0]
    losses = []
    for labels in ([0, 1, 2, 0, 1, 2, 0, 1], [2, 2, 2, 2, 0, 0, 0, 0], [1, 0, 1, 0, 1, 0, 1, 0]):
        y = np.array(labels, dtype=label_dtype)
        for p in model.parameters():
            p.grad = None
        expected = _backward_and_return(F.cross_entropy(model(x), y))
        eager = [p.grad for p in model.parameters()]
        for p in model.parameters():
            p.grad = None
        loss = traced(x, y)
        assert np.array_equal(loss.data, expected.data)
        for p, g in zip(model.parameters(), eager, strict=True):
            assert np.array_equal(p.grad, g)
        losses.append(loss.item())
    assert len(set(losses)) == 3  # only the labels changed, and so did the loss
    assert body.calls == 1 and len(traced.programs) == 1


def test_numpy_and_tensor_arguments():
    """ndarray and constant Tensor arguments are read afresh on every replay."""
    w = leaf([1.0, -2.0, 0.5])

    def body(x, s):
        loss = (w * x * s).sum()
        loss.backward()
        return loss

    traced = fb.trace(body)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, s = rng.standard_normal(3), fb.tensor(rng.standard_normal(3))
        w.grad = None
        loss = traced(x, s)
        np.testing.assert_allclose(loss.item(), np.sum(w.data * x * s.data), rtol=1e-12)
        np.testing.assert_allclose(w.grad, x * s.data, rtol=1e-12)
        assert s.grad is None
    assert len(traced.programs) == 1


def test_hashable_arguments_select_separate_traces():
    """A float scale and a string are part of the signature: each value gets its own trace."""
    w = leaf([1.0, 2.0])

    @counted
    def body(x, scale, mode):
        t = w * fb.from_numpy(x)
        out = (t * scale).sum() if mode == "sum" else (t * scale).mean()
        out.backward()
        return out

    traced = fb.trace(body)
    x = np.array([3.0, 4.0])
    cases = [(0.5, "sum", 5.5), (2.0, "sum", 22.0), (0.5, "mean", 2.75), (2.0, "mean", 11.0)]
    for _ in range(2):
        for scale, mode, expected in cases:
            w.grad = None
            assert traced(x, scale, mode).item() == expected
            factor = scale if mode == "sum" else scale / 2
            np.testing.assert_allclose(w.grad, factor * x)
    assert len(traced.programs) == 4
    assert body.calls == 4


def test_new_batch_size_records_a_new_program():
    """A new batch size (the last batch of an epoch) records a new program with eager results."""
    eager_model, _, eager_step, traced_model, _, body = twin_training(nn.ReLU, "adam")
    traced = fb.trace(body)
    sizes = [8, 8, 5, 8, 5, 3]
    for n, seed in zip(sizes, range(len(sizes)), strict=True):
        x, y = batches(1, n=n, seed=seed)[0]
        assert np.array_equal(traced(x, y).data, eager_step(x, y).data)
        assert_same_grads(eager_model, traced_model)
        assert_same_params(eager_model, traced_model)
    assert len(traced.programs) == 3
    assert body.calls == 3


def test_many_signatures_stay_bounded_and_correct():
    """Past the cap on stored programs old ones are dropped; calls stay right."""
    from fastbp.jit.tracing import CACHE_SIZE

    w = leaf([2.0])
    body = counted(lambda x: _backward_and_return((w * x).sum()))
    traced = fb.trace(body)
    sizes = range(1, CACHE_SIZE + 3)
    for _ in range(2):
        for n in sizes:
            x = np.arange(float(n)) + 1.0
            w.grad = None
            assert traced(x).item() == 2.0 * x.sum()
            np.testing.assert_array_equal(w.grad, [x.sum()])
            assert len(traced.programs) <= CACHE_SIZE
    assert body.calls > len(sizes)  # dropped programs were recorded again


def test_unhashable_argument_raises_type_error():
    """A list (neither an array nor hashable) is refused at every call."""
    traced = fb.trace(lambda x, options: None)
    with pytest.raises(TypeError, match="argument 1 is a list"):
        traced(np.ones(2), [1, 2])
    with pytest.raises(TypeError, match="dict"):
        traced(np.ones(2), {"a": 1})
    assert traced.programs == {}


# ----------------------------------------------------------------------------- 4. returns


def test_returns_tensor_tuple_and_none_without_graph():
    """A tensor, a tuple of tensors and None come back as such, with no graph, every call."""
    w = leaf([1.0, 2.0, 3.0])

    @fb.trace
    def one(x):
        loss = (w * x).sum()
        loss.backward()
        return loss

    @fb.trace
    def several(x):
        y = w * x
        loss = y.sum()
        loss.backward()
        return loss, y, None

    @fb.trace
    def nothing(x):
        (w * x).sum().backward()

    for k in range(3):
        x = np.array([1.0, 0.0, -1.0]) * (k + 1)
        loss = one(x)
        assert isinstance(loss, fb.Tensor)
        assert not loss.requires_grad and loss.grad_fn is None
        assert loss.item() == -2.0 * (k + 1)
        result = several(x)
        assert isinstance(result, tuple) and len(result) == 3
        loss, y, none = result
        assert none is None
        for t in (loss, y):
            assert isinstance(t, fb.Tensor)
            assert not t.requires_grad and t.grad_fn is None
        np.testing.assert_array_equal(y.data, w.data * x)
        assert nothing(x) is None


def test_returning_a_float_raises_type_error():
    """Returning a Python float is refused at the first call (it would be frozen)."""
    w = leaf([1.0])

    def body(x):
        loss = (w * x).sum()
        loss.backward()
        return loss.item()

    traced = fb.trace(body)
    with pytest.raises(TypeError, match="returned a float"):
        traced(np.ones(1))
    assert traced.programs == {}


def test_returning_a_tensor_with_a_graph_raises_value_error():
    """Returning a tensor that still has a graph (no backward, grad on) is refused."""
    w = leaf([1.0, 2.0])
    traced = fb.trace(lambda x: (w * x).sum())
    with pytest.raises(ValueError, match="still has a graph"):
        traced(np.ones(2))
    assert traced.programs == {}


# ----------------------------------------------------------------------- 5. errors and modes


def test_same_shape_numpy_view_of_an_argument_raises():
    """A same-shape NumPy view of an argument (x[::-1]) made inside is refused."""
    w = leaf(np.ones((2, 3)))

    @fb.trace
    def body(x):
        loss = (fb.from_numpy(x[::-1]) @ w).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="view of argument 0"):
        body(np.arange(8.0).reshape(4, 2))


def test_sliced_numpy_view_of_an_argument_raises():
    """A NumPy slice of an argument (x[:, :2]) made inside raises ValueError at recording."""
    w = leaf(np.ones((2, 3)))

    @fb.trace
    def body(x):
        loss = (fb.from_numpy(x[:, :2]) @ w).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="view of argument 0"):
        body(np.arange(12.0).reshape(3, 4))


def test_outside_tensor_with_graph_raises():
    """A tensor computed outside the function with a graph is refused."""
    w = leaf([1.0, 2.0])
    h = w * 2.0

    @fb.trace
    def body(x):
        loss = (h * x).sum()
        loss.backward()
        return loss

    with pytest.raises(ValueError, match="computed outside it with a graph"):
        body(np.ones(2))
    # detached, it is a constant and fine
    d = h.detach()
    traced = fb.trace(lambda x: _backward_and_return((w * d * x).sum()))
    w.grad = None
    traced(np.ones(2))
    w.grad = None
    traced(np.array([1.0, 3.0]))
    np.testing.assert_array_equal(w.grad, [2.0, 12.0])


def test_fb_grad_inside_raises():
    """fb.grad cannot be replayed, so it raises RuntimeError inside a traced function."""
    w = leaf([1.0, 2.0])

    @fb.trace
    def body(x):
        return fb.grad((w * x).sum(), w)

    with pytest.raises(RuntimeError, match="fb.grad cannot be replayed"):
        body(np.ones(2))
    assert body.programs == {}
    assert fb.grad((w * w).sum(), w)[0].tolist() == [2.0, 4.0]  # usable outside


def test_anomaly_mode_runs_eagerly():
    """Under fb.detect_anomaly() the body runs on every call and nothing is recorded."""
    w = leaf([1.0, 2.0])
    body = counted(lambda x: _backward_and_return((w * x).sum()))
    traced = fb.trace(body)
    with fb.detect_anomaly():
        for k in range(3):
            w.grad = None
            loss = traced(np.array([1.0, 1.0]) * k)
            assert loss.item() == 3.0 * k
            np.testing.assert_array_equal(w.grad, [k, k])
    assert body.calls == 3
    assert traced.programs == {}
    traced(np.ones(2))  # outside: records
    traced(np.ones(2))  # and replays
    assert body.calls == 4
    # anomaly mode still catches a NaN gradient, because the ops run in the engine
    bad = fb.trace(lambda x: _backward_and_return(fb.sqrt(w * x).sum()))
    with fb.detect_anomaly(), pytest.raises(RuntimeError, match="sqrt"):
        bad(np.zeros(2))


def test_nested_trace_is_recorded_into_the_outer_one():
    """A traced function called in another's first call is inlined: results stay right on replay."""
    eager_model, _, eager_step, traced_model, traced_opt, _ = twin_training(nn.Sigmoid, "sgd")
    inner_body = counted(lambda x, y: F.cross_entropy(traced_model(x), y))
    inner = fb.trace(inner_body)

    @counted
    def outer_body(x, y):
        traced_opt.zero_grad()
        loss = inner(x, y)  # still has a graph: fine, it is part of the outer recording
        loss.backward()
        traced_opt.step()
        return loss

    outer = fb.trace(outer_body)
    for x, y in batches(4):
        assert np.array_equal(outer(x, y).data, eager_step(x, y).data)
        assert_same_params(eager_model, traced_model)
    assert outer_body.calls == 1 and inner_body.calls == 1
    assert inner.programs == {} and len(outer.programs) == 1


def test_no_grad_evaluation_traces_and_replays():
    """An evaluation function under fb.no_grad() traces, replays and equals eager."""
    model = make_model(nn.ReLU)
    body = counted(lambda x: (model(x), fb.softmax(model(x), axis=1).max(axis=1)))
    traced = fb.trace(body)
    with fb.no_grad():
        for x, _ in batches(3):
            logits, confidence = traced(x)
            assert np.array_equal(logits.data, model(x).data)
            assert np.array_equal(confidence.data, fb.softmax(model(x), axis=1).max(axis=1).data)
            assert not logits.requires_grad
    assert body.calls == 1 and len(traced.programs) == 1
    assert all(p.grad is None for p in model.parameters())


def test_grad_mode_is_part_of_the_signature():
    """The same arguments under no_grad and with grad on select two separate programs."""
    w = leaf([1.0, 2.0])

    @counted
    def body(x):
        out = (w * x).sum()
        if fb.is_grad_enabled():
            out.backward()
        return out

    traced = fb.trace(body)
    x = np.array([3.0, 5.0])
    for _ in range(2):
        w.grad = None
        with fb.no_grad():
            assert traced(x).item() == 13.0
        assert w.grad is None
        assert traced(x).item() == 13.0
        np.testing.assert_array_equal(w.grad, x)
    assert body.calls == 2 and len(traced.programs) == 2
    with fb.no_grad():
        # recorded under no_grad: a function that needs backward there fails eagerly
        with pytest.raises(RuntimeError, match="does not require grad"):
            fb.trace(lambda x: _backward_and_return((w * x).sum()))(x)


# -------------------------------------------------------------- 6. hyperparameters between calls


@pytest.mark.parametrize("opt_name", ["sgd_nesterov_wd", "adamw"])
def test_hyperparameters_changed_outside_take_effect(opt_name):
    """lr and weight_decay set in param_groups between calls are used by the replayed step()."""
    eager_model, eager_opt, eager_step, traced_model, traced_opt, body = twin_training(
        nn.Tanh, opt_name
    )
    traced = fb.trace(body)
    schedule = [(0.1, 0.01), (0.05, 0.0), (0.2, 0.1), (0.01, 0.05), (0.3, 0.0)]
    for (lr, wd), (x, y) in zip(schedule, batches(5), strict=True):
        for opt in (eager_opt, traced_opt):
            opt.param_groups[0]["lr"] = lr
            opt.param_groups[0]["weight_decay"] = wd
        assert np.array_equal(traced(x, y).data, eager_step(x, y).data)
        assert_same_params(eager_model, traced_model)
    assert body.calls == 1
    # and it mattered: a run without the schedule ends elsewhere
    _, _, _, other_model, _, other_body = twin_training(nn.Tanh, opt_name)
    other = fb.trace(other_body)
    for x, y in batches(5):
        other(x, y)
    assert not np.array_equal(other_model[0].weight.data, traced_model[0].weight.data)


# ---------------------------------------------------------------------- 7. retain_graph


def test_retain_graph_two_backwards_accumulate_twice():
    """Two backward calls (the first with retain_graph=True) accumulate twice, as eagerly."""
    rng = np.random.default_rng(4)
    w = leaf(rng.standard_normal((4, 3)))
    b = leaf(rng.standard_normal(3))

    def body(x):
        loss = fb.tanh(fb.from_numpy(x) @ w + b).sum()
        loss.backward(retain_graph=True)
        loss.backward()
        return loss

    traced = fb.trace(body)
    for _ in range(3):
        x = rng.standard_normal((2, 4))
        w.grad = b.grad = None
        expected = body(x)
        eager = (w.grad, b.grad)
        w.grad = b.grad = None
        loss = traced(x)
        assert np.array_equal(loss.data, expected.data)
        assert np.array_equal(w.grad, eager[0])
        assert np.array_equal(b.grad, eager[1])
    # twice the gradient of one backward
    w.grad = b.grad = None
    _backward_and_return(fb.tanh(fb.from_numpy(x) @ w + b).sum())
    once = w.grad.copy()
    w.grad = None
    traced(x)
    np.testing.assert_allclose(w.grad, 2 * once, rtol=1e-14)


# ------------------------------------------------------------------- 8. explicit gradient


@pytest.mark.parametrize(
    "kind",
    [
        "tensor",
        "ndarray",
    ],
)
def test_explicit_backward_gradient_follows_the_argument(kind):
    """y.backward(g) with g an argument (Tensor or ndarray): each replay seeds with the new g."""
    rng = np.random.default_rng(5)
    w = leaf(rng.standard_normal((3, 2)))

    def body(x, g):
        y = fb.sigmoid(fb.from_numpy(x) @ w)
        y.backward(g)
        return y

    traced = fb.trace(body)
    x = rng.standard_normal((4, 3))
    for _ in range(3):
        g = rng.standard_normal((4, 2))
        if kind == "tensor":
            g = fb.tensor(g)
        w.grad = None
        body(x, g)
        eager = w.grad
        w.grad = None
        traced(x, g)
        assert np.array_equal(w.grad, eager)
    assert len(traced.programs) == 1


def test_explicit_float32_gradient_for_float64_root():
    """A float32 gradient for a float64 root is cast in backward; replays cast the new one."""
    w = leaf([1.0, 2.0])

    def body(g):
        (w * 3.0).backward(g)

    traced = fb.trace(body)
    for g in ([1.0, 2.0], [0.5, -1.0], [4.0, 0.25]):
        w.grad = None
        traced(np.array(g, np.float32))
        np.testing.assert_array_equal(w.grad, 3.0 * np.array(g))
        assert w.grad.dtype == np.float64


def test_explicit_scalar_gradient_equal_to_one_at_first_call():
    """A scalar root's explicit gradient follows the argument even if it was 1 at the first call."""
    w = leaf([1.0, 2.0])

    def body(g):
        (w * w).sum().backward(g)

    traced = fb.trace(body)
    for g in (1.0, 3.0, -0.5):
        w.grad = None
        traced(fb.tensor(g, dtype=np.float64))
        np.testing.assert_array_equal(w.grad, g * 2 * w.data)


# -------------------------------------------------- further bugs: values frozen or misrouted


def test_constant_equal_to_an_argument_stays_constant():
    """A constant that equals an argument at the first call stays a constant on replay."""

    @fb.trace
    def masked(x, mask):
        return (fb.from_numpy(x) * fb.from_numpy(mask) + fb.ones(3)).sum()

    x = np.array([1.0, 2.0, 3.0], np.float32)
    assert masked(x, np.ones(3, np.float32)).item() == 9.0
    assert masked(x, np.zeros(3, np.float32)).item() == 3.0

    @fb.trace
    def scaled(x, t):
        return (fb.from_numpy(x) / fb.from_numpy(t) * 2.0).sum()

    assert scaled(np.ones(2), np.array(2.0)).item() == 2.0
    assert scaled(np.ones(2), np.array(4.0)).item() == 1.0


def test_same_array_passed_twice_at_first_call():
    """f(a, a) then f(a, b): the replay reads b for the second argument."""
    w = leaf([1.0, 1.0, 1.0])

    @fb.trace
    def diff(a, b):
        loss = ((fb.from_numpy(a) - fb.from_numpy(b)) * w).sum()
        loss.backward()
        return loss

    a, b = np.arange(3.0), np.zeros(3)
    assert diff(a, a).item() == 0.0
    assert diff(a, b).item() == 3.0


def test_tuple_index_with_argument_labels_follows_the_argument():
    """w[np.arange(n), labels] gathers the new labels' entries on replay."""
    w = leaf(np.arange(12.0).reshape(3, 4))

    @fb.trace
    def gather(labels):
        out = w[np.arange(3), labels].sum()
        out.backward()
        return out

    assert gather(np.array([0, 1, 2])).item() == 15.0
    assert gather(np.array([3, 3, 3])).item() == 21.0


def test_where_with_a_comparison_mask_follows_the_argument():
    """fb.where(t > 0, t, 0.1 * t) (leaky ReLU) recomputes the mask on replay."""

    @fb.trace
    def leaky(x):
        t = fb.from_numpy(x)
        return fb.where(t > 0, t, t * 0.1).sum()

    assert np.isclose(leaky(np.array([1.0, -1.0])).item(), 0.9)
    assert np.isclose(leaky(np.array([-1.0, 1.0])).item(), 0.9)


def test_module_zero_grad_inside_is_replayed():
    """model.zero_grad() in a traced step resets the gradients on every replay, as eagerly."""
    eager_model, traced_model = make_model(nn.Tanh), make_model(nn.Tanh)
    eager_opt = optim.SGD(eager_model.parameters(), lr=0.1)
    traced_opt = optim.SGD(traced_model.parameters(), lr=0.1)

    @fb.trace
    def step(x, y):
        traced_model.zero_grad()
        loss = F.cross_entropy(traced_model(x), y)
        loss.backward()
        traced_opt.step()
        return loss

    for x, y in batches(3):
        eager_model.zero_grad()
        F.cross_entropy(eager_model(x), y).backward()
        eager_opt.step()
        step(x, y)
        assert_same_grads(eager_model, traced_model)
        assert_same_params(eager_model, traced_model)


def test_replay_with_a_non_leaf_tensor_argument_raises():
    """A replay given a Tensor argument that has a graph raises, as the recording call does."""
    traced = fb.trace(lambda x: _backward_and_return((x * x).sum()))
    traced(leaf([1.0, 2.0]))  # records with a leaf argument
    w = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match="graph"):
        traced(w * 2.0)


def test_returning_a_wrapped_array_argument():
    """A tensor wrapping an array argument is returned with the argument's values, every call."""

    @fb.trace
    def passthrough(x):
        return fb.from_numpy(x)

    for value in (1.0, 2.0):
        x = np.full(3, value, np.float32)
        out = passthrough(x)
        assert np.array_equal(out.data, x)
        assert not out.requires_grad
