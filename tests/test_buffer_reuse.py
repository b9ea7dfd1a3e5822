"""The kernels' output pool (``fastbp.kernels.dispatch``): a block is lent to one array and
comes back only when that array, and every view of it, has died (issue 13 item 11)."""

from __future__ import annotations

import ast
import gc
import inspect
import tracemalloc

import numpy as np
import pytest

import fastbp as fb
from fastbp.kernels import dispatch

F32 = np.dtype(np.float32)
SHAPE = (512, 256)  # 512 KiB of float32: pooled


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


@pytest.fixture(autouse=True)
def empty_pool():
    gc.collect()
    dispatch.release_buffers()
    yield
    dispatch.release_buffers()


def test_no_reference_count_guess():
    # CPython's exact reference counts change between versions: the pool must not use them.
    names = {
        node.attr
        for node in ast.walk(ast.parse(inspect.getsource(dispatch)))
        if isinstance(node, ast.Attribute)
    }
    assert "getrefcount" not in names


def test_small_outputs_are_not_pooled():
    assert dispatch._output((16, 16), F32) is None
    assert dispatch.buffer_stats()["lent"] == 0


def test_a_block_is_lent_to_one_array_and_comes_back_when_it_dies():
    a = dispatch._output(SHAPE, F32)
    assert a.shape == SHAPE and a.dtype == F32 and a.flags.c_contiguous and a.flags.writeable
    b = dispatch._output(SHAPE, F32)
    assert not np.shares_memory(a, b)  # ``a`` is alive: its block is not lent again
    where = _address(b)
    assert dispatch.buffer_stats() == {
        "lent": 2,
        "lent_bytes": 2 * (512 * 1024 + 64),
        "idle": 0,
        "idle_bytes": 0,
    }
    del b
    assert dispatch.buffer_stats()["idle"] == 1
    c = dispatch._output(SHAPE, F32)
    assert _address(c) == where  # the free block is reused...
    assert not np.shares_memory(a, c)  # ...and never one in use
    # The same bytes serve any shape and dtype of that size.
    del c
    d = dispatch._output((256, 256), np.dtype(np.float64))
    assert _address(d) == where


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[1:],
        lambda a: a.T,
        lambda a: a.reshape(-1)[::2].reshape(256, 256)[3:],  # a view of a view of a view
        lambda a: np.frombuffer(a, np.uint8),
        lambda a: memoryview(a),
        lambda a: fb.from_numpy(a),
    ],
    ids=["slice", "transpose", "chain", "frombuffer", "memoryview", "tensor"],
)
def test_a_view_keeps_the_block_lent(view):
    a = dispatch._output(SHAPE, F32)
    a[...] = 7.0
    v = view(a)
    del a
    gc.collect()
    assert dispatch.buffer_stats()["lent"] == 1
    other = dispatch._output(SHAPE, F32)
    other[...] = -1.0
    assert not np.shares_memory(other, np.asarray(getattr(v, "data", v)))
    del other
    del v
    gc.collect()
    assert dispatch.buffer_stats() == {
        "lent": 0,
        "lent_bytes": 0,
        "idle": 2,
        "idle_bytes": 2 * (512 * 1024 + 64),
    }


def test_idle_blocks_are_bounded():
    arrays = [dispatch._output(SHAPE, F32) for _ in range(3 * dispatch._POOL_PER_SIZE)]
    del arrays
    assert dispatch.buffer_stats()["idle"] == dispatch._POOL_PER_SIZE
    for n in range(2 * dispatch._POOL_SIZES):  # many sizes (varying batch sizes)
        dispatch._output((300 + n, 256), F32)
    assert len(dispatch._free) <= dispatch._POOL_SIZES


def test_release_buffers_forgets_lent_blocks_too():
    a = dispatch._output(SHAPE, F32)
    dispatch.release_buffers()
    a[...] = 1.0  # still a valid array: its block lives as long as it does
    del a
    assert dispatch.buffer_stats() == {"lent": 0, "lent_bytes": 0, "idle": 0, "idle_bytes": 0}


def _chain_backward(x, weights):
    """20 ops whose backward runs the pooled kernels on 512 KiB gradients."""
    h = x
    for w in weights:
        h = h @ w
    h.sum().backward()


def test_gradients_kept_across_steps_are_never_overwritten():
    rng = np.random.default_rng(0)
    x = fb.tensor(rng.standard_normal(SHAPE).astype(np.float32), requires_grad=True)
    w = fb.tensor((np.eye(256) * 0.5).astype(np.float32), requires_grad=True)
    (x @ w @ w).sum().backward()
    first_x, first_w = x.grad, w.grad
    kept_x, kept_w = first_x.copy(), first_w.copy()
    x.grad = None
    w.grad = None
    (2 * (x @ w @ w)).sum().backward()  # a new step while the old gradients are kept
    np.testing.assert_array_equal(first_x, kept_x)
    np.testing.assert_array_equal(first_w, kept_w)
    np.testing.assert_allclose(x.grad, 2 * kept_x)
    np.testing.assert_allclose(w.grad, 2 * kept_w)


def test_memory_held_after_backward_stays_flat_and_returns_to_baseline():
    rng = np.random.default_rng(0)
    x = fb.tensor(rng.standard_normal(SHAPE).astype(np.float32), requires_grad=True)
    weights = [
        fb.tensor((np.eye(256) + 0.01 * rng.standard_normal((256, 256))).astype(np.float32))
        for _ in range(20)
    ]
    _chain_backward(x, weights)  # compile the kernels outside the measurement
    x.grad = None
    gc.collect()
    dispatch.release_buffers()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        held = []
        for _ in range(4):
            _chain_backward(x, weights)
            x.grad = None
            gc.collect()
            stats = dispatch.buffer_stats()
            assert stats["lent"] == 0  # every gradient died, every block came back
            held.append(tracemalloc.get_traced_memory()[0] - baseline)
        # Flat: the pool holds what one backward needed at once (a gradient and the next
        # one: 2 blocks), not one block per op, and no more after four backwards.
        assert 1 <= stats["idle"] and stats["idle_bytes"] <= 2 * (512 * 1024 + 64)
        assert max(held) - min(held) < 64 * 1024, held
        assert held[-1] < stats["idle_bytes"] + 64 * 1024, held
        dispatch.release_buffers()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert after < 64 * 1024, f"{after / 1e6:.4f} MB remain after release_buffers()"


def test_pooled_arrays_start_on_a_cache_line():
    arrays = [dispatch._output((300 + n, 256), F32) for n in range(4)]
    assert all(_address(a) % 64 == 0 for a in arrays)
