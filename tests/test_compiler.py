"""fastbp.jit.compiler: a traced training step compiled into one Numba function.

``fb.trace`` records a step on its first call; :func:`fastbp.jit.compiler.compile_program`
writes the recorded program as the source of one function (GEMMs through NumPy's own
OpenBLAS, :func:`fastbp.jit.blas.gemm`), and later calls run it when its runtime
checks pass, else the Python replay. Both must give the eager step's results bit for bit,
but for one thing: a compiled step folds a plain SGD update into the product that makes a
weight's gradient (``w ← w − lr·xᵀ·dy`` in one GEMM), which rounds once where the eager
update rounds twice, so such weights may differ from eager in the last bit; their
``p.grad``, computed when read, is still the eager one bit for bit.

Every comparison is against an eager twin: two models with the same weights (copied with
``.data[...] =``) and optimizers of the same kind, one stepped eagerly, one through the
traced function. :func:`count_compiled_runs` checks that the compiled function itself ran
(rather than the replay) where a test is about the compiled path.

Each traced function compiles its own Numba function (~0.5-1 s), so the configurations
below are chosen to cover every option at least once rather than their full product.
"""

from __future__ import annotations

import numpy as np
import pytest
from optim_reference import assert_within_rounding

import fastbp as fb
import fastbp.jit.blas
import fastbp.nn.functional as F
from fastbp import nn, optim
from fastbp.core.state import state as _state
from fastbp.jit import blas
from fastbp.jit.deferred import PendingGradTensor, raw_grad

needs_blas = pytest.mark.skipif(
    not fastbp.jit.blas.AVAILABLE, reason="NumPy's OpenBLAS CBLAS functions were not found"
)

# ----------------------------------------------------------------------------- helpers

OPTIMIZERS = {
    "sgd": (optim.SGD, {"lr": 0.1}),
    "sgd_wd": (optim.SGD, {"lr": 0.1, "weight_decay": 0.05}),
    "sgd_nesterov_wd": (
        optim.SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    ),
    "adam": (optim.Adam, {"lr": 0.01}),
    "adamw": (optim.AdamW, {"lr": 0.01, "weight_decay": 0.1}),
}


def mlp(sizes, dtype=np.float32, bias=True, activation=nn.ReLU):
    """Linear layers of the given widths with ``activation`` between them (last: Linear)."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(fan_in, fan_out, bias=bias, dtype=dtype))
    return nn.Sequential(*layers)


def copy_weights(source, target):
    for p, q in zip(source.parameters(), target.parameters(), strict=True):
        assert p.shape == q.shape and p.dtype == q.dtype
        q.data[...] = p.data


def training_step(model, opt, reduction="mean", set_to_none=True):
    def step(x, y):
        opt.zero_grad(set_to_none)
        loss = F.cross_entropy(model(x), y, reduction=reduction)
        loss.backward()
        opt.step()
        return loss

    return step


class Twins:
    """Two identical models and optimizers: ``eager(x, y)`` steps one, ``traced(x, y)`` the
    other through ``fb.trace``."""

    def __init__(self, build, opt_name="sgd", reduction="mean", set_to_none=True, make_step=None):
        fb.manual_seed(0)
        self.eager_model = build()
        fb.manual_seed(1)  # different draws, then the same weights copied in
        self.traced_model = build()
        copy_weights(self.eager_model, self.traced_model)
        cls, kwargs = OPTIMIZERS[opt_name]
        # Plain SGD is folded into the weight gradients' products (see the docstring above).
        self.folds = cls is optim.SGD and kwargs.get("momentum", 0) == 0
        self.eager_opt = cls(self.eager_model.parameters(), **kwargs)
        self.traced_opt = cls(self.traced_model.parameters(), **kwargs)
        make_step = make_step or training_step
        self.eager = make_step(self.eager_model, self.eager_opt, reduction, set_to_none)
        self.traced = fb.trace(
            make_step(self.traced_model, self.traced_opt, reduction, set_to_none)
        )

    def record(self, rng, n=4, dtype=np.float32):
        """Take the first step (the traced one records and compiles) on a batch of ``n``; return
        the counter of the compiled function's runs (:func:`count_compiled_runs`)."""
        self.step(*batch(rng, n, 6, 3, dtype))
        return count_compiled_runs(self.traced)

    def set_lr(self, lr):
        for opt in (self.eager_opt, self.traced_opt):
            opt.param_groups[0]["lr"] = lr

    def step(self, x, y):
        """One step of each twin; asserts equal losses, parameters and gradients (bitwise)."""
        expected = self.eager(x, y)
        loss = self.traced(x, y)
        assert loss.dtype == expected.dtype
        np.testing.assert_array_equal(loss.data, expected.data)
        self.assert_same()
        return loss, expected

    def assert_same(self):
        """The twins' parameters and gradients are equal bit for bit.

        Folded weights may differ by rounding: they are checked to be within a few units in
        the last place and then set to the eager values, so the next step starts equal.
        """
        pairs = zip(self.eager_model.parameters(), self.traced_model.parameters(), strict=True)
        for p, q in pairs:
            if self.folds:
                assert_within_rounding(q.data, p.data)
                q.data[...] = p.data
            np.testing.assert_array_equal(q.data, p.data)
            assert (p.grad is None) == (q.grad is None)
            if p.grad is not None:
                np.testing.assert_array_equal(q.grad, p.grad)


def count_compiled_runs(traced):
    """Count the completed runs of the compiled function of ``traced``'s last program.

    Wraps ``CompiledStep.function`` (an internal: the jitted step) so a test can tell a
    compiled call from a fallback to the replay. Returns a list that grows by one per run.
    """
    step = traced._last.compiled
    assert step is not None, traced.compiled
    inner, runs = step.function, []

    def counting(*arrays):
        result = inner(*arrays)
        if result == 0:  # 1: the step stopped where the eager step raises
            runs.append(1)
        return result

    step.function = counting
    return runs


def batch(rng, n, n_in, n_classes, dtype=np.float32, label_dtype=np.int64):
    x = rng.standard_normal((n, n_in)).astype(dtype)
    return x, rng.integers(0, n_classes, n).astype(label_dtype)


@pytest.fixture(autouse=True)
def no_tracer_left_behind():
    """Every test must leave the engine without a recorder, whatever it raised."""
    yield
    assert _state.observer is None


# ------------------------------------------------------------- 1. kernels.blas.gemm

# (batch, fan_in, fan_out) of a layer; the products a layer's forward and vjp take.
LAYERS = [(1, 7, 5), (1, 200, 300), (3, 7, 5), (16, 64, 10), (16, 784, 128), (100, 130, 128)]


def _products(rng, n, n_in, n_out, dtype):
    """(name, a, trans_a, b, trans_b, what np.dot computes) for the products of one layer."""
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    dy = rng.standard_normal((n, n_out)).astype(dtype)
    products = [
        ("x·w", x, False, w, False, np.dot(x, w)),
        ("dy·wᵀ", dy, False, w, True, np.dot(dy, w.T)),
    ]
    if n > 1:  # a batch of one takes the outer product for dw instead
        products.append(("xᵀ·dy", x, True, dy, False, np.dot(x.T, dy)))
    return products


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LAYERS, ids=lambda s: "x".join(map(str, s)))
def test_gemm_equals_np_dot_bitwise(shape, dtype):
    """gemm gives np.dot's bits for a layer's three products (gemv for a single row)."""
    rng = np.random.default_rng(sum(shape))
    for name, a, trans_a, b, trans_b, expected in _products(rng, *shape, dtype):
        c = np.full(expected.shape, np.nan, dtype)
        result = blas.gemm(a, trans_a, b, trans_b, c, 1.0, 0.0)
        assert result is None
        assert c.dtype == dtype
        np.testing.assert_array_equal(c, expected, err_msg=name)


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 128, 160), (128, 130, 128)], ids=str)
def test_gemm_agrees_with_np_matmul_for_large_weight_gradients(shape, dtype):
    """Eagerly, xᵀ·dy of a large layer goes through np.matmul: the same bits as gemm."""
    n, n_in, n_out = shape  # w.size >= 16384 and 1 < n <= 128: the matmul route
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, n_in)).astype(dtype)
    dy = rng.standard_normal((n, n_out)).astype(dtype)
    c = np.empty((n_in, n_out), dtype)
    blas.gemm(x, True, dy, False, c, 1.0, 0.0)
    np.testing.assert_array_equal(c, np.matmul(x.T, dy))


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 7, 5), (4, 9, 6), (16, 64, 10)], ids=str)
def test_gemm_beta_one_accumulates(shape, dtype):
    """beta=1 adds the product to what c holds (gemv and gemm paths alike)."""
    rng = np.random.default_rng(11)
    for name, a, trans_a, b, trans_b, product in _products(rng, *shape, dtype):
        start = rng.standard_normal(product.shape).astype(dtype)
        c = start.copy()
        blas.gemm(a, trans_a, b, trans_b, c, 1.0, 1.0)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(c, start + product, rtol=rtol, atol=rtol, err_msg=name)
        assert not np.array_equal(c, product)  # it did accumulate


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ["one-column", "one-row-transposed"])
def test_gemm_single_column_or_transposed_row_is_close_to_np_dot(case, dtype):
    # np.dot takes gemv here and gemm does not mirror it (the bits may differ), which is why
    # the compiler replays layers of width 1 (test_width_one_layer_is_replayed_bitwise).
    rng = np.random.default_rng(0)
    if case == "one-column":  # the forward of a Linear(300, 1) layer
        a, trans_a = rng.standard_normal((7, 300)).astype(dtype), False
        b = rng.standard_normal((300, 1)).astype(dtype)
        expected = np.dot(a, b)
    else:  # the weight gradient of a Linear(1, 300) layer, batch of 200
        a, trans_a = rng.standard_normal((200, 1)).astype(dtype), True
        b = rng.standard_normal((200, 300)).astype(dtype)
        expected = np.dot(a.T, b)
    c = np.empty(expected.shape, dtype)
    blas.gemm(a, trans_a, b, False, c, 1.0, 0.0)
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


# --------------------------------------------- 2. compiled MLP steps equal the eager ones

# (optimizer, dtype, batch, label dtype, reduction, bias, widths, set_to_none): every
# option at least once, and batch sizes 1, 3 and 16 in both dtypes. The 100x200 layer with a
# batch of 16 takes the eager weight gradient through np.matmul rather than np.dot.
CONFIGS = {
    "sgd-f32-b1-i64-mean": ("sgd", np.float32, 1, np.int64, "mean", True, (6, 5, 3), True),
    "nesterov-f32-b3-i32-sum-nobias": (
        "sgd_nesterov_wd",
        np.float32,
        3,
        np.int32,
        "sum",
        False,
        (6, 5, 3),
        True,
    ),
    "adam-f32-b16-i64-sum-wide-deep": (
        "adam",
        np.float32,
        16,
        np.int64,
        "sum",
        True,
        (100, 200, 7, 4),
        True,
    ),
    "adamw-f64-b1-i32-mean-nobias": (
        "adamw",
        np.float64,
        1,
        np.int32,
        "mean",
        False,
        (6, 5, 3),
        True,
    ),
    "sgd-f64-b3-i64-sum-deep": ("sgd", np.float64, 3, np.int64, "sum", True, (9, 8, 7, 4), True),
    "sgd_wd-f32-b16-i32-mean-wide": (
        "sgd_wd",
        np.float32,
        16,
        np.int32,
        "mean",
        True,
        (100, 200, 7, 4),
        True,
    ),
    "nesterov-f64-b16-i32-mean-zeros": (
        "sgd_nesterov_wd",
        np.float64,
        16,
        np.int32,
        "mean",
        True,
        (6, 5, 3),
        False,  # zero_grad(set_to_none=False): gradients kept in the flat buffer
    ),
}


# Every config is strictly bitwise. "sgd-f64-b3-i64-sum-deep" once drifted one ulp in a
# third of full-suite runs: the softmax row sum took the scalar path of its loop whenever
# an overlap check failed for arrays that sat close together in the heap, and added in
# another order (fixed in fastbp/kernels/losses.py, the row sum in a loop of its own).


@needs_blas
@pytest.mark.parametrize("config", list(CONFIGS))
def test_compiled_step_equals_eager_bitwise(config):
    """Compiled steps give the eager losses, parameters and gradients bit for bit."""
    opt_name, dtype, n, label_dtype, reduction, bias, sizes, set_to_none = CONFIGS[config]
    twins = Twins(lambda: mlp(sizes, dtype, bias), opt_name, reduction, set_to_none)
    rng = np.random.default_rng(5)
    losses, expected_losses, snapshots = [], [], []
    for i in range(5):
        x, y = batch(rng, n, sizes[0], sizes[-1], dtype, label_dtype)
        loss, expected = twins.step(x, y)
        assert loss.dtype == dtype
        losses.append(loss)
        expected_losses.append(expected)
        snapshots.append(loss.data.copy())
        if i == 0:
            assert twins.traced.compiled == (True, "")
            runs = count_compiled_runs(twins.traced)
    assert len(runs) == 4  # every call after the recording one ran compiled
    assert twins.traced.compiled == (True, "")
    assert len(twins.traced.programs) == 1
    # 6. the returned losses are independent of each other and of later calls
    for loss, expected, snapshot in zip(losses, expected_losses, snapshots, strict=True):
        np.testing.assert_array_equal(loss.data, snapshot)
        np.testing.assert_array_equal(loss.data, expected.data)
    assert len({id(loss.data) for loss in losses}) == len(losses)
    # the model trained: the parameters moved from their initial values
    fb.manual_seed(0)
    initial = mlp(sizes, dtype, bias)
    moved = [
        not np.array_equal(p.data, q.data)
        for p, q in zip(initial.parameters(), twins.traced_model.parameters(), strict=True)
    ]
    assert all(moved)


@needs_blas
def test_source_is_the_generated_step_function():
    """5. .source holds the generated function while compiled (and calls gemm)."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    assert twins.traced.source is None  # not recorded yet
    assert twins.traced.compiled == (False, "not recorded yet")
    rng = np.random.default_rng(0)
    twins.step(*batch(rng, 4, 6, 3))
    source = twins.traced.source
    assert isinstance(source, str)
    assert "def step(" in source
    assert "gemm(" in source
    assert "softmax_cross_entropy(" in source
    assert source.count("# step") == 4  # one optimizer update per parameter
    compile(source, "<step>", "exec")  # valid Python


# ----------------------------------------------------------- 3. learning-rate changes


@needs_blas
def test_learning_rate_changes_between_calls_take_effect():
    """opt.param_groups[0]['lr'] set between calls is used by the compiled step."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd_nesterov_wd")
    rng = np.random.default_rng(3)
    runs = twins.record(rng)
    for lr in (0.1, 0.3, 0.0, 0.02):
        twins.set_lr(lr)
        before = [p.data.copy() for p in twins.traced_model.parameters()]
        twins.step(*batch(rng, 4, 6, 3))
        after = [p.data for p in twins.traced_model.parameters()]
        changed = [not np.array_equal(b, a) for b, a in zip(before, after, strict=True)]
        assert not any(changed) if lr == 0.0 else all(changed)
    assert len(runs) == 4


# ---------------------------------------------------------- 4. fallbacks to the replay


def _tanh_model():
    return mlp((6, 5, 3), activation=nn.Tanh)


def _sigmoid_model():
    return mlp((6, 5, 3), activation=nn.Sigmoid)


@pytest.mark.parametrize(
    ("build", "loss_fn", "label_dtype", "why"),
    [
        (_tanh_model, None, np.int64, "op 'tanh' has no compiled form"),
        (_sigmoid_model, None, np.int64, "op 'linear_sigmoid' has no compiled form"),
        (
            lambda: mlp((6, 5, 3)),
            lambda z, y: F.cross_entropy(z, y) * 0.5,
            np.int64,
            "op 'mul' has no compiled form",
        ),
        (
            lambda: mlp((6, 5, 3)),
            lambda z, y: F.cross_entropy(z, y, "none").sum(),
            np.int64,
            "reduction='none'",
        ),
        (lambda: mlp((6, 5, 3)), None, np.uint8, "labels neither intp nor int32"),
    ],
    ids=["tanh-layer", "sigmoid-layer", "elementwise-in-loss", "reduction-none", "uint8-labels"],
)
def test_step_that_cannot_compile_replays_like_eager(build, loss_fn, label_dtype, why):
    """A program with an op without a compiled form (or arguments it refuses) replays."""
    loss_fn = loss_fn or F.cross_entropy
    fb.manual_seed(0)
    eager_model = build()
    traced_model = build()
    copy_weights(eager_model, traced_model)
    eager_opt = optim.SGD(eager_model.parameters(), lr=0.1, momentum=0.9)
    traced_opt = optim.SGD(traced_model.parameters(), lr=0.1, momentum=0.9)

    def make(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            return loss

        return step

    eager, traced = make(eager_model, eager_opt), fb.trace(make(traced_model, traced_opt))
    rng = np.random.default_rng(4)
    for _ in range(4):
        x, y = batch(rng, 4, 6, 3, label_dtype=label_dtype)
        np.testing.assert_array_equal(traced(x, y).data, eager(x, y).data)
        compiled, reason = traced.compiled
        assert compiled is False
        assert isinstance(reason, str) and reason
        if blas.AVAILABLE:  # else the reason is that BLAS is missing
            assert why in reason
        assert traced.source is None
        for p, q in zip(eager_model.parameters(), traced_model.parameters(), strict=True):
            np.testing.assert_array_equal(q.data, p.data)
            np.testing.assert_array_equal(q.grad, p.grad)


@needs_blas
def test_runtime_checks_replay_like_eager_then_compiled_resumes():
    """A Fortran-ordered x, strided labels, or a parameter whose .data the user rebound: that
    call replays, equal to eager, and the next ordinary call runs compiled again."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd_nesterov_wd")
    rng = np.random.default_rng(6)
    runs = twins.record(rng)
    twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 1
    # a non-C-contiguous argument
    x, y = batch(rng, 4, 6, 3)
    fortran = np.asfortranarray(x)[:, ::1]
    assert not fortran.flags.c_contiguous and np.array_equal(fortran, x)
    twins.step(fortran, y)
    assert len(runs) == 1  # replayed
    x, y = batch(rng, 4, 6, 3)
    strided = np.repeat(y, 2)[::2]
    assert not strided.flags.c_contiguous and np.array_equal(strided, y)
    twins.step(x, strided)
    assert len(runs) == 1  # replayed
    twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 2  # compiled again
    # a parameter rebound to a new array, no longer the optimizer's view
    for model in (twins.eager_model, twins.traced_model):
        w = model[2].weight
        w.data = w.data * 0.5
    twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 2  # replayed, and step() copied the array back into its buffer
    twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 3  # compiled again
    assert twins.traced.compiled == (True, "")


@needs_blas
def test_gradient_held_from_last_step_is_not_overwritten():
    """g = w.grad kept after a call keeps its values; the new w.grad is the eager one. The
    step goes on compiled, into other memory, and takes its own back once g is let go."""
    twins = Twins(lambda: mlp((6, 5, 3)), "adam")
    rng = np.random.default_rng(8)
    runs = twins.record(rng)
    twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 1
    held = [p.grad for p in twins.traced_model.parameters()]
    saved = [g.copy() for g in held]
    for i in range(2):
        twins.step(*batch(rng, 4, 6, 3))
        assert twins.traced.compiled == (True, "")
        assert len(runs) == 2 + i
        for g, s, p in zip(held, saved, twins.traced_model.parameters(), strict=True):
            np.testing.assert_array_equal(g, s)
            assert p.grad is not g
            assert not np.shares_memory(p.grad, g)
    # Two blocks take turns: each step reads every p.grad (Twins.step compares them),
    # alive in its slot until the next step. The held one's block is forgotten, alive.
    step = twins.traced._last.compiled
    assert len(step.blocks) == 2
    del held, g
    for _ in range(6):
        twins.step(*batch(rng, 4, 6, 3))
    assert len(runs) == 9
    assert len(step.blocks) == 2  # no memory taken per step


@needs_blas
def test_view_of_gradient_held_from_last_step_is_not_overwritten():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(8)
    twins.step(*batch(rng, 4, 6, 3))
    twins.step(*batch(rng, 4, 6, 3))
    history = [p.grad.ravel() for p in twins.traced_model.parameters()]
    saved = [g.copy() for g in history]
    twins.step(*batch(rng, 4, 6, 3))
    for g, s in zip(history, saved, strict=True):
        np.testing.assert_array_equal(g, s)


def _bad_batches(rng):
    """An x with labels out of range (3 and -1 for 3 classes), then an x holding a NaN."""
    x, y = batch(rng, 4, 6, 3)
    for bad in (3, -1):
        labels = y.copy()
        labels[2] = bad
        yield x, labels
    x = x.copy()
    x[1, 3] = np.nan
    yield x, y


@needs_blas
def test_errors_raise_like_eager():
    """Out-of-range labels raise eager's exception type, a NaN input a ValueError; nothing is
    updated, and training goes on equal to eager."""
    twins = Twins(lambda: mlp((6, 5, 3)), "adamw")
    rng = np.random.default_rng(10)
    twins.step(*batch(rng, 4, 6, 3))
    twins.step(*batch(rng, 4, 6, 3))
    assert twins.traced.compiled == (True, "")
    before = [p.data.copy() for p in twins.traced_model.parameters()]
    for x, y in _bad_batches(rng):
        with pytest.raises(ValueError) as eager_error:
            twins.eager(x, y)
        with pytest.raises(ValueError) as traced_error:
            twins.traced(x, y)
        if not np.isnan(x).any():
            assert type(traced_error.value) is type(eager_error.value)
        twins.assert_same()
    for b, p in zip(before, twins.traced_model.parameters(), strict=True):
        np.testing.assert_array_equal(p.data, b)
    for _ in range(2):
        twins.step(*batch(rng, 4, 6, 3))


# ----------------------------------------------------------------- 7. weight sharing


class _SharedMLP(nn.Module):
    """The same Linear twice in a row: its weight and bias get two gradients each."""

    def __init__(self, dtype=np.float32):
        super().__init__()
        self.first = nn.Linear(6, 5, dtype=dtype)
        self.shared = nn.Linear(5, 5, dtype=dtype)
        self.last = nn.Linear(5, 3, dtype=dtype)
        self.layers = nn.Sequential(
            self.first, nn.ReLU(), self.shared, nn.ReLU(), self.shared, nn.ReLU(), self.last
        )

    def forward(self, x):
        return self.layers(x)


@needs_blas
def test_shared_weights_equal_eager():
    """A parameter used twice (two gradients, added) gives the eager results bit for bit."""
    dtype = np.float32
    twins = Twins(lambda: _SharedMLP(dtype), "sgd_nesterov_wd")
    assert len(list(twins.traced_model.parameters())) == 6
    rng = np.random.default_rng(12)
    twins.step(*batch(rng, 4, 6, 3, dtype))
    assert twins.traced.compiled == (True, "")
    assert "np.add(" in twins.traced.source  # the second gradient, added from scratch
    runs = count_compiled_runs(twins.traced)
    for _ in range(3):
        twins.step(*batch(rng, 4, 6, 3, dtype))
    assert len(runs) == 3


# --------------------------------------------- found by these tests, and fixed since


@needs_blas
def test_width_one_layer_is_replayed_bitwise():
    sizes, n, dtype = (64, 1, 3), 16, np.float32
    twins = Twins(lambda: mlp(sizes, dtype), "sgd")
    rng = np.random.default_rng(0)
    for _ in range(4):
        twins.step(*batch(rng, n, sizes[0], sizes[-1], dtype))
    assert twins.traced.compiled == (False, "linear: a layer of width 1")


@needs_blas
def test_two_batch_sizes_both_run_compiled():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(13)
    runs16 = twins.record(rng, 16)
    runs3 = twins.record(rng, 3)
    for _ in range(2):
        twins.step(*batch(rng, 16, 6, 3))  # results still equal eager (replay)
        twins.step(*batch(rng, 3, 6, 3))
    assert twins.traced.compiled == (True, "")
    assert (len(runs16), len(runs3)) == (2, 2)


@needs_blas
def test_compiled_step_runs_again_after_an_error():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(14)
    runs = twins.record(rng)
    x, y = next(_bad_batches(rng))
    for step in (twins.eager, twins.traced):
        with pytest.raises(ValueError):
            step(x, y)
    twins.step(*batch(rng, 4, 6, 3))  # still equal to eager
    assert twins.traced.compiled == (True, "")
    assert len(runs) == 1


# ------------------------------------------ 8. plain SGD folded into the weight gradients


@needs_blas
def test_plain_sgd_is_folded_and_gradients_are_computed_when_read():
    """Each weight is updated by its gradient's GEMM; p.grad computes xᵀ·dy on first read,
    from a copy of the batch (the caller may reuse its array), once."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(20)
    twins.step(*batch(rng, 4, 6, 3))
    source = twins.traced.source
    assert source.count("fold_alpha, fold_beta)  # step") == 2  # the two weights
    assert source.count("update(") == 2  # the two biases, as before
    runs = count_compiled_runs(twins.traced)
    x, y = batch(rng, 4, 6, 3)
    expected = twins.eager(x, y)
    np.testing.assert_array_equal(twins.traced(x, y).data, expected.data)
    assert len(runs) == 1
    model = twins.traced_model
    weights, biases = [model[0].weight, model[2].weight], [model[0].bias, model[2].bias]
    # Every p.grad is lent when read: the biases' were written out, the weights' are
    # computed then.
    assert all(isinstance(p, PendingGradTensor) for p in weights + biases)
    x[...] = 0  # the caller reuses its batch array before reading the gradients
    twins.assert_same()  # reads every p.grad: the eager bits
    assert all(type(raw_grad(p)) is np.ndarray for p in weights + biases)
    assert not any(isinstance(p, PendingGradTensor) for p in weights + biases)
    assert weights[0].grad is weights[0].grad


@needs_blas
def test_adam_and_momentum_are_not_folded():
    for name in ("adam", "sgd_nesterov_wd"):
        twins = Twins(lambda: mlp((6, 5, 3)), name)
        twins.step(*batch(np.random.default_rng(21), 4, 6, 3))
        assert "fold_alpha" not in twins.traced.source
        assert twins.traced.source.count("update(") == 4


@needs_blas
def test_momentum_turned_on_after_compiling_replays_until_turned_off():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(22)
    runs = twins.record(rng)
    twins.step(*batch(rng, 4, 6, 3))
    for momentum, compiled_runs in ((0.9, 1), (0.9, 1), (0.0, 2)):
        for opt in (twins.eager_opt, twins.traced_opt):
            opt.param_groups[0]["momentum"] = momentum
        twins.step(*batch(rng, 4, 6, 3))
        assert len(runs) == compiled_runs
        compiled, why = twins.traced.compiled
        assert compiled is (momentum == 0) and ("momentum" in why) is (momentum != 0)


def _zero_grad_after_forward(model, opt, reduction, set_to_none):
    """A step that calls zero_grad() after the forward: when the forward raises, the
    gradients of the last step stay readable (eagerly as well)."""

    def step(x, y):
        loss = F.cross_entropy(model(x), y, reduction=reduction)
        opt.zero_grad(set_to_none)
        loss.backward()
        opt.step()
        return loss

    return step


@needs_blas
def test_folded_gradients_survive_a_step_that_stops():
    """A call that stops in the forward (bad labels, NaN) writes the other set of buffers:
    the deferred gradients of the last step still give the eager ones."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd", make_step=_zero_grad_after_forward)
    rng = np.random.default_rng(23)
    for _ in range(2):
        twins.step(*batch(rng, 4, 6, 3))
    assert twins.traced.compiled == (True, "")
    weight = twins.traced_model[0].weight
    for x, y in _bad_batches(rng):
        good = batch(rng, 4, 6, 3)
        twins.eager(*good), twins.traced(*good)  # (twins.step would read the gradients)
        assert isinstance(weight, PendingGradTensor)
        for step in (twins.eager, twins.traced):
            with pytest.raises(ValueError):
                step(x, y)
        twins.assert_same()  # computes the deferred gradients: still the last step's


@needs_blas
def test_zero_grad_after_a_folded_step():
    """zero_grad() replaces a deferred gradient (None, or zeros in the flat buffer)."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(24)
    twins.step(*batch(rng, 4, 6, 3))
    weight = twins.traced_model[0].weight
    twins.traced(*batch(rng, 4, 6, 3))
    assert isinstance(weight, PendingGradTensor)
    twins.traced_opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(weight.grad, np.zeros_like(weight.data))
    twins.traced(*batch(rng, 4, 6, 3))
    assert isinstance(weight, PendingGradTensor)
    twins.traced_model.zero_grad()
    assert weight.grad is None
