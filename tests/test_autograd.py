"""Engine behaviour: accumulation, graph freeing, grad(), no_grad, anomaly mode."""

import threading
import weakref

import numpy as np
import pytest

import fastbp as fb


def leaf(values, dtype=np.float64):
    return fb.tensor(np.asarray(values, dtype=dtype), requires_grad=True)


def test_grad_accumulates_across_backward_calls_until_reset():
    x = leaf([1.0, 2.0])
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 6.0])
    x.zero_grad()
    assert x.grad is None


def test_backward_is_idempotent_with_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.copy()
    x.grad = None
    y.backward()
    np.testing.assert_array_equal(x.grad, first)


def test_second_backward_through_freed_graph_names_retain_graph():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_backward_on_non_scalar_needs_grad():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    (x * 2).backward(np.array([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        fb.tensor([1.0]).sum().backward()


def test_gradient_must_have_output_shape():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"\(3,\)"):
        (x * 2).backward(np.ones(3))


def test_inputs_without_requires_grad_get_no_gradient_computed():
    calls = []
    from fastbp.ops import linalg

    original = linalg.MATMUL.vjp

    def spy(saved, dy, needs):
        calls.append(needs)
        return original(saved, dy, needs)

    x = fb.tensor(np.ones((2, 3)))  # the data batch
    w = leaf(np.ones((3, 4)))
    y = x @ w
    y._node.op = linalg.MATMUL._replace(vjp=spy)
    y.sum().backward()
    assert calls == [(False, True)]
    assert x.grad is None and w.grad is not None


def test_first_gradient_is_never_aliased():
    # add returns dy itself for both inputs; each leaf must own its .grad.
    a, b = leaf([1.0]), leaf([2.0])
    seed = np.array([1.0])
    (a + b).backward(seed)
    a.grad += 100
    assert b.grad[0] == 1.0 and seed[0] == 1.0


def test_long_chain_does_not_recurse():
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad[0] == 1.0


def test_saved_arrays_are_released_after_backward():
    x = leaf(np.ones(5))
    y = fb.exp(x * 2)
    saved = weakref.ref(y.grad_fn.saved)
    z = y.sum()
    del y
    z.backward()  # the user still holds z, but the activations are gone
    assert saved() is None


def test_abandoned_graph_is_freed():
    x = leaf(np.ones(5))
    h = x * 2
    y = fb.exp(h)
    intermediate, saved = weakref.ref(h), weakref.ref(y.grad_fn.saved)
    del h, y
    assert intermediate() is None  # freed by reference counting: no cycles
    assert saved() is None


def test_independent_graphs_do_not_mix():
    a, b = leaf([1.0]), leaf([1.0])
    ya = a * 2
    yb = b * 3
    ya.sum().backward()
    assert b.grad is None
    yb.sum().backward()
    assert a.grad[0] == 2.0 and b.grad[0] == 3.0


def test_no_grad_context_and_decorator():
    x = leaf([1.0])
    with fb.no_grad():
        assert not (x * 2).requires_grad
        with fb.enable_grad():
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad

    @fb.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad
    assert fb.is_grad_enabled()


def test_no_grad_is_per_thread():
    seen = []
    with fb.no_grad():
        t = threading.Thread(target=lambda: seen.append(fb.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_grad_function_leaves_dot_grad_alone():
    x = leaf([2.0, 3.0])
    y = leaf([4.0])
    out = (x * x * y).sum()
    gx, gy = fb.grad(out, [x, y])
    np.testing.assert_array_equal(gx, [16.0, 24.0])
    np.testing.assert_array_equal(gy, [13.0])
    assert x.grad is None and y.grad is None


def test_grad_of_intermediate_and_unused():
    x = leaf([2.0])
    h = x * 3
    out = (h * h).sum()
    (gh,) = fb.grad(out, [h], retain_graph=True)
    np.testing.assert_array_equal(gh, [12.0])
    unused = leaf([1.0])
    with pytest.raises(RuntimeError, match="allow_unused"):
        fb.grad(out, [unused], retain_graph=True)
    assert fb.grad(out, [unused], allow_unused=True) == [None]


def test_grad_with_grad_output_does_not_alias_it():
    x = leaf([1.0, 1.0])
    seed = np.array([3.0, 4.0])
    (g,) = fb.grad(x + 0, x, grad_output=seed)
    g += 1
    np.testing.assert_array_equal(seed, [3.0, 4.0])


def test_detect_anomaly_names_the_op_and_line():
    x = leaf([0.0, 1.0])
    with fb.detect_anomaly():
        y = fb.sqrt(x)  # the culprit: d sqrt / dx at 0 is inf
        loss = (y * 0 + y).sum()
        with pytest.raises(RuntimeError, match=r"'sqrt'.*test_autograd.py:\d+"):
            loss.backward()


def test_without_anomaly_mode_nan_flows_silently():
    x = leaf([0.0])
    fb.sqrt(x).sum().backward()
    assert np.isinf(x.grad[0])


def test_mutating_a_saved_parameter_is_allowed_and_backward_then_raises():
    w = leaf(np.ones((2, 2)))
    x = fb.tensor(np.ones((1, 2)))
    y = (x @ w).sum()
    w.data[...] = 0  # never blocked, as in PyTorch
    with pytest.raises(RuntimeError, match="written to directly"):
        y.backward()
    w.data[...] = 1
    (x @ w).sum().backward()  # a fresh graph sees the new values
    np.testing.assert_array_equal(w.grad, np.ones((2, 2)))


def test_node_records_are_plain_data():
    x = leaf([1.0])
    y = fb.exp(x)
    node = y.grad_fn
    assert node.op.name == "exp"
    assert node.inputs == (x,)
    assert node.output() is y
    assert node.needs == (True,)
    z = fb.exp(y)
    assert z.grad_fn.seq > node.seq


def test_unbroadcast_helper():
    from fastbp.autograd import unbroadcast

    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).tolist() == [[8.0]] * 3
    assert unbroadcast(g, ()).item() == 24.0
    assert unbroadcast(g, (2, 3, 4)) is g
