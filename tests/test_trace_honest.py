"""An honest traced step (issue 12): Python state a replay would freeze warns at record
time (TracerWarning) or makes the trace record again; the cache is an LRU of set size."""

import warnings

import numpy as np
import pytest

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import nn, optim
from fastbp.jit import TracerWarning


def setup(seed=0):
    fb.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    return model, optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


X = np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4)
Y = np.arange(8) % 3


def frozen_text(traced):
    return traced.compiled[1]


def test_item_and_bool_of_a_traced_value_warn_and_are_reported():
    model, opt = setup()

    @fb.trace
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        if loss.item() > 100:  # a branch on a traced value
            raise AssertionError("unreachable")
        loss.backward()
        opt.step()
        return loss

    with pytest.warns(TracerWarning, match=r"item\(\) of a tensor"):
        step(X, Y)
    assert "frozen: item()" in frozen_text(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step(X, Y)  # replays warn no more

    @fb.trace
    def branch(x):
        return fb.tensor(1.0) if bool((fb.from_numpy(x) > 0).sum() > 3) else None

    with pytest.warns(TracerWarning, match=r"bool\(\)"):
        branch(X)


def test_numpy_work_on_p_grad_before_step_warns():
    model, opt = setup()

    @fb.trace
    def clipped(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        for p in model.parameters():
            np.clip(p.grad, -0.01, 0.01, out=p.grad)  # hand-written clipping
        opt.step()

    with pytest.warns(TracerWarning, match="gradient of a parameter.*changed between"):
        clipped(X, Y)
    assert "hand-written clipping" in frozen_text(clipped)

    model, opt = setup()

    @fb.trace
    def replaced(x, y):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        model[0].weight.grad = model[0].weight.grad * 0.5
        opt.step()

    with pytest.warns(TracerWarning, match="before step|between backward"):
        replaced(X, Y)


def test_an_array_computed_with_numpy_inside_the_step_warns():
    w = fb.tensor(np.ones(4, np.float32), requires_grad=True)

    @fb.trace
    def step(x):
        scaled = fb.from_numpy(np.clip(x, 0, 1))  # NumPy work on data: frozen
        loss = (w * scaled).sum()
        loss.backward()
        return loss

    with pytest.warns(TracerWarning, match="baked into the trace as a constant"):
        step(np.ones(4, np.float32))


def test_random_draws_outside_fastbp_warn():
    w = fb.tensor(np.ones(3, np.float32), requires_grad=True)

    @fb.trace
    def noisy(x):
        noise = np.random.default_rng().standard_normal(3)  # a fresh generator: fine
        del noise
        return (w * fb.from_numpy(x)).sum()

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fb.no_grad():
            noisy(np.ones(3, np.float32))

    @fb.trace
    def global_draw(x):
        scale = np.random.rand()  # noqa: NPY002 (the global generator, on purpose)
        return (w * fb.from_numpy(x)).sum() * scale

    with pytest.warns(TracerWarning, match="global generator"), fb.no_grad():
        global_draw(np.ones(3, np.float32))


def test_a_module_attribute_changed_between_calls_records_again():
    model, opt = setup()
    eager_model, eager_opt = setup()

    def body(m, o):
        def step(x, y):
            o.zero_grad()
            loss = F.cross_entropy(m(x), y)
            loss.backward()
            o.step()
            return loss

        return step

    traced, eager = fb.trace(body(model, opt)), body(eager_model, eager_opt)
    for swap in (False, False, True, True):
        if swap and not isinstance(getattr(model, "1"), nn.Sigmoid):
            setattr(model, "1", nn.Sigmoid())  # a layer swapped: the recording is stale
            setattr(eager_model, "1", nn.Sigmoid())
        np.testing.assert_array_equal(traced(X, Y).data, eager(X, Y).data)
    assert traced.recordings == 2


def test_an_optimizer_swapped_for_another_records_again():
    model, _ = setup()
    state = {"opt": optim.SGD(model.parameters(), lr=0.1)}
    current = state["opt"]

    def step(x, y):
        current.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        current.step()
        return loss

    traced = fb.trace(step)
    traced(X, Y)
    traced(X, Y)
    before = model[0].weight.data.copy()
    current = optim.SGD(model.parameters(), lr=0.0)  # noqa: F841 (read by step's closure)
    traced(X, Y)
    np.testing.assert_array_equal(model[0].weight.data, before)  # the new lr=0 optimizer ran
    assert traced.recordings == 2


def test_the_cache_is_an_lru_of_settable_size():
    w = fb.tensor(np.ones(1, np.float32), requires_grad=True)
    traced = fb.trace(cache_size=2)(lambda x: (w * fb.from_numpy(x)).sum())
    a, b, c = (np.ones(n, np.float32) for n in (1, 2, 3))
    with fb.no_grad():
        traced(a)
        traced(b)
        traced(a)  # a is now the most recently used
        traced(c)  # evicts b only
        keys = [k[1][0] for k in traced.programs]
        assert keys == [(1,), (3,)] and traced.recordings == 3
        traced(a)
        assert traced.recordings == 3
        traced(b)
        assert traced.recordings == 4 and len(traced.programs) == 2
    with pytest.raises(ValueError, match="cache_size"):
        fb.trace(lambda x: x, cache_size=0)


def test_an_update_rule_that_stops_compiling_replays():
    fb.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = optim.Adam(model.parameters(), lr=0.01)

    @fb.trace
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step(X, Y)
    step(X, Y)
    opt.param_groups[0]["maximize"] = True  # no compiled rule for it
    before = float(step(X, Y))
    assert "no compiled rule" in step.compiled[1] or not step.compiled[0]
    assert np.isfinite(before)


def test_train_eval_and_buffers_between_calls_record_again():
    """Module writes that bypass ``setattr`` (train()/eval(), register_buffer) are seen."""
    model, opt = setup()

    @fb.trace
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step(X, Y)
    step(X, Y)
    assert step.recordings == 1
    model.eval()
    step(X, Y)
    assert step.recordings == 2
    step(X, Y)
    model.register_buffer("scale", np.ones(1))
    step(X, Y)
    assert step.recordings == 3
    del model.scale
    step(X, Y)
    assert step.recordings == 4


def test_module_snapshots_are_compared_only_after_a_module_write(monkeypatch):
    """Replays skip comparing the modules' attributes while no module attribute was
    written anywhere; a write elsewhere makes the next replay compare them (and find
    them unchanged)."""
    from fastbp.jit import tracing

    model, opt = setup()
    other = nn.Linear(2, 2)

    @fb.trace
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    step(X, Y)
    step(X, Y)  # compares once: the recording's own writes
    compared = []
    real = tracing._Snapshot.same

    def counting(snapshot):
        compared.append(snapshot.module)
        return real(snapshot)

    monkeypatch.setattr(tracing._Snapshot, "same", counting)
    for _ in range(3):
        step(X, Y)
    assert True not in compared
    other.extra = 1.0  # a write to a module the step does not use
    step(X, Y)
    assert True in compared
    assert step.recordings == 1
