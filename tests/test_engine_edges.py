"""The engine at its edges: repeated grad() inputs, grad modes on generators and as bare
decorators, and post-accumulate gradient hooks (issue 13 items 2 and 3; DDP's hook)."""

import numpy as np
import pytest

import fastbp as fb


def leaf(values):
    return fb.tensor(np.asarray(values, dtype=np.float64), requires_grad=True)


# ------------------------------------------------------------ 2. fb.grad(y, [x, x])
def test_grad_of_the_same_input_twice_returns_it_twice():
    x = leaf([1.0, 2.0])
    gx, gx2 = fb.grad((x * x).sum(), [x, x])
    np.testing.assert_array_equal(gx, [2.0, 4.0])
    np.testing.assert_array_equal(gx2, [2.0, 4.0])
    assert gx is not gx2  # two arrays, as torch returns two tensors


def test_grad_of_an_intermediate_twice_and_a_leaf():
    x = leaf([3.0])
    h = x * 2
    gh, gx, gh2 = fb.grad((h * h).sum(), [h, x, h])
    np.testing.assert_array_equal(gh, [12.0])
    np.testing.assert_array_equal(gh2, [12.0])
    np.testing.assert_array_equal(gx, [24.0])


def test_grad_twice_matches_torch():
    torch = pytest.importorskip("torch")
    x = leaf([0.5, -1.0])
    ours = fb.grad((x.exp() * x).sum(), [x, x])
    tx = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    theirs = torch.autograd.grad((tx.exp() * tx).sum(), [tx, tx])
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b.numpy())


# ------------------------------------------------------------ 3. grad modes as decorators
def test_no_grad_on_a_generator_function_holds_inside_it_only():
    x = leaf([1.0])

    @fb.no_grad()
    def gen():
        for _ in range(2):
            yield x * 2, fb.is_grad_enabled()

    outside = []
    for y, enabled in gen():
        assert not y.requires_grad and not enabled
        outside.append(fb.is_grad_enabled())
    assert outside == [True, True]  # the caller's code between items keeps grad on


def test_bare_no_grad_decorator_and_enable_grad():
    x = leaf([1.0])

    @fb.no_grad
    def f():
        return x * 2

    @fb.enable_grad
    def g():
        return x * 2

    assert not f().requires_grad
    with fb.no_grad():
        assert g().requires_grad
    assert f.__name__ == "f"


def test_generator_send_throw_and_close_under_no_grad():
    @fb.no_grad()
    def echo():
        received = yield fb.is_grad_enabled()
        while True:
            try:
                received = yield (received, fb.is_grad_enabled())
            except KeyError:
                received = "caught"

    gen = echo()
    assert next(gen) is False
    assert gen.send("a") == ("a", False)
    assert gen.throw(KeyError()) == ("caught", False)
    gen.close()
    assert fb.is_grad_enabled()


def test_no_grad_rejects_a_non_callable_argument():
    with pytest.raises(TypeError, match="no_grad"):
        fb.no_grad(3)


# ------------------------------------------------------------ post-accumulate hooks
def test_hook_runs_once_after_the_last_gradient_of_a_leaf_used_twice():
    w = leaf([1.0, 2.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.copy()))
    (w * w + w).sum().backward()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], [3.0, 5.0])


def test_hooks_fire_in_walk_order_and_handles_remove_them():
    a, b = leaf([2.0]), leaf([3.0])
    order = []
    handle = a.register_post_accumulate_grad_hook(lambda t: order.append("a"))
    b.register_post_accumulate_grad_hook(lambda t: order.append("b"))
    ((a * 2).exp() * b).sum().backward()  # b's edge is done before a's
    assert order == ["b", "a"]
    handle.remove()
    handle.remove()
    order.clear()
    ((a * 2).exp() * b).sum().backward()
    assert order == ["b"]


def test_hook_runs_when_a_vjp_gives_no_gradient_upstream():
    w = leaf([1.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad))
    (w * 0 + w).sum().backward()
    assert len(seen) == 1


def test_hook_needs_a_leaf_that_requires_grad_and_keeps_no_tensor_alive():
    import gc
    import weakref

    from fastbp.core import hooks

    with pytest.raises(RuntimeError, match="leaf"):
        (leaf([1.0]) * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(RuntimeError, match="leaf"):
        fb.ones(1).register_post_accumulate_grad_hook(print)
    w = leaf([1.0])
    w.register_post_accumulate_grad_hook(lambda t: None)
    ref, key = weakref.ref(w), id(w)
    del w
    gc.collect()
    assert ref() is None and key not in hooks.leaf_hooks


def test_fb_grad_does_not_run_hooks():
    w = leaf([1.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(1))
    fb.grad((w * 3).sum(), w)
    assert seen == [] and w.grad is None
