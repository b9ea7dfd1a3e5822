"""Who owns a compiled step's gradient memory (issue 13 item 11).

A compiled step writes its gradients into blocks of its own and lends ``p.grad`` out of
them when read; a block is written again only once every array lent out of it (or any
view of one) has died. These tests hold, view, read and drop gradients the ways a
training loop does, and check that nothing held is overwritten, that the step keeps
running compiled, and that memory stays flat. None of it may depend on reference counts:
holding extra references to the parameters or to the optimizer's own buffers changes
nothing.
"""

from __future__ import annotations

import ast
import inspect
import weakref

import numpy as np
import pytest
from test_compiler import Twins, _bad_batches, _zero_grad_after_forward, batch, mlp, needs_blas

import fastbp.jit.compiler as compiler
import fastbp.jit.deferred as deferred

pytestmark = needs_blas


def test_no_reference_counts_in_the_jit_layer():
    for module in (compiler, deferred):
        tree = ast.parse(inspect.getsource(module))
        names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "getrefcount" not in names, module.__name__


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_extra_references_to_parameters_and_optimizer_buffers_keep_it_compiled(opt_name):
    """References the step has no business counting: the parameters themselves, the
    optimizer's flat gradient buffer and its views. (An exact reference count of those
    used to send every call to the replay.)"""
    twins = Twins(lambda: mlp((6, 5, 3)), opt_name)
    rng = np.random.default_rng(0)
    runs = twins.record(rng)
    flat = twins.traced_opt.flat_buffers[0]
    extra = [list(twins.traced_model.parameters()), flat.grad, list(flat.grad_views)]
    extra.append([g.reshape(-1) for g in flat.grad_views])
    for i in range(4):
        twins.step(*batch(rng, 4, 6, 3))
        assert twins.traced.compiled == (True, "")
        assert len(runs) == i + 1
    del extra


def test_held_gradients_and_views_of_them_keep_their_values():
    twins = Twins(lambda: mlp((6, 5, 4, 3)), "sgd")  # folded weights, written biases
    rng = np.random.default_rng(1)
    runs = twins.record(rng, 8)
    kept = []  # (array, its values when kept), from every step
    for _ in range(5):
        twins.step(*batch(rng, 8, 6, 3))
        for p in twins.traced_model.parameters():
            for held in (p.grad, p.grad.ravel()[1:], p.grad.T, p.grad[..., :1]):
                kept.append((held, held.copy()))
        for held, values in kept:
            np.testing.assert_array_equal(held, values)
    assert len(runs) == 5


def test_memory_stays_flat_over_many_steps():
    """Reading p.grad every step, keeping it for one step, or never: a bounded number of
    blocks; keeping many steps' gradients and letting them go: back to that bound."""
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(2)
    runs = twins.record(rng, 4)
    step = twins.traced._last.compiled
    model = twins.traced_model
    for _ in range(20):  # nobody reads: one block
        twins.traced(*batch(rng, 4, 6, 3))
    assert len(step.blocks) == 1
    last = None
    for _ in range(20):  # each step's gradients kept until the next one's are read
        twins.traced(*batch(rng, 4, 6, 3))
        last = [p.grad for p in model.parameters()]
    assert len(step.blocks) == 2
    history = []
    for _ in range(10):  # every step's gradients kept: the step never writes over them
        twins.traced(*batch(rng, 4, 6, 3))
        history.append([p.grad for p in model.parameters()])
    blocks = {id(g.base) for grads in history for g in grads}
    assert len(blocks) == 10
    assert len(step.blocks) == 2
    lent = [weakref.ref(g) for step_grads in history for g in step_grads]
    del history, last
    for _ in range(20):
        twins.traced(*batch(rng, 4, 6, 3))
    assert len(step.blocks) == 2
    # Every array lent died with its last reference (and with it a block the step forgot).
    assert all(ref() is None for ref in lent)
    assert len(runs) == 70


def test_a_lent_gradient_dies_with_its_last_view():
    twins = Twins(lambda: mlp((6, 5, 3)), "adam")
    rng = np.random.default_rng(3)
    twins.record(rng, 4)
    twins.traced(*batch(rng, 4, 6, 3))
    step = twins.traced._last.compiled
    weight = twins.traced_model[0].weight
    view = weight.grad[1:]  # the lent array is the base of the view
    lent = weakref.ref(view.base)
    assert lent() is weight.grad
    twins.traced(*batch(rng, 4, 6, 3))  # its block is in use: the step takes another
    assert len(step.blocks) == 2 and lent() is not None
    del view
    assert lent() is None  # no slot holds it any more, nor the step


def test_two_programs_over_one_model_lend_from_their_own_blocks():
    twins = Twins(lambda: mlp((6, 5, 3)), "sgd")
    rng = np.random.default_rng(4)
    runs16 = twins.record(rng, 16)
    runs3 = twins.record(rng, 3)
    held = []
    for _ in range(3):
        for n in (16, 3):
            twins.step(*batch(rng, n, 6, 3))
            held.append([(p.grad, p.grad.copy()) for p in twins.traced_model.parameters()])
    for grads in held:
        for g, values in grads:
            np.testing.assert_array_equal(g, values)
    assert (len(runs16), len(runs3)) == (3, 3)


def test_a_call_that_stops_leaves_the_last_gradients_readable():
    """A bad batch stops the compiled step before any gradient is written, and its replay
    raises before zero_grad(): p.grad (deferred, never read) is still the last step's."""
    twins = Twins(lambda: mlp((6, 5, 3)), "adam", make_step=_zero_grad_after_forward)
    rng = np.random.default_rng(5)
    runs = twins.record(rng, 4)
    for x, y in _bad_batches(rng):
        good = batch(rng, 4, 6, 3)
        twins.eager(*good), twins.traced(*good)
        for step in (twins.eager, twins.traced):
            with pytest.raises(ValueError):
                step(x, y)
        twins.assert_same()
    assert len(runs) == 3
