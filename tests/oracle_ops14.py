"""Shared checks of the issue-14 op tables: values and gradients against PyTorch, gradcheck.

A row is ``(name, fastbp_fn, torch_fn, make_inputs)``; ``make_inputs(rng)`` returns a
list of NumPy arrays (float arrays are differentiated, others passed as they are).
"""

from __future__ import annotations

import numpy as np

import fastbp as fb


def fb_inputs(arrays, grad=True):
    # from_numpy keeps the memory layout: non-contiguous views reach the ops as views.
    return [fb.from_numpy(a, requires_grad=grad and a.dtype.kind == "f") for a in arrays]


def _np(t):
    return np.asarray(t.data if isinstance(t, fb.Tensor) else t.detach().numpy())


def check_against_torch(torch, fb_fn, torch_fn, arrays, rtol=1e-6, atol=1e-8):
    """Run both libraries on the same float64 inputs; compare outputs and gradients."""
    xs = fb_inputs(arrays)
    ts = [torch.tensor(np.ascontiguousarray(a), requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fb_fn(*xs)
    ref = torch_fn(*ts)
    _check_float32_dtype(torch, fb_fn, torch_fn, arrays)
    got, want = _np(out), _np(ref)
    assert got.shape == want.shape, (got.shape, want.shape)
    if want.dtype.kind == "b":
        assert got.dtype == bool, got.dtype
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol, atol)
    if not ref.requires_grad:
        assert not out.requires_grad
        return
    assert out.requires_grad
    w = np.random.default_rng(1).standard_normal(want.shape)
    ref.backward(torch.tensor(w, dtype=ref.dtype))
    out.backward(w.astype(got.dtype))
    for x, t in zip(xs, ts, strict=True):
        if not t.requires_grad:
            continue
        tg = np.zeros(x.shape) if t.grad is None else t.grad.numpy()
        xg = np.zeros(x.shape) if x.grad is None else x.grad
        np.testing.assert_allclose(xg, tg, rtol, atol)


def _check_float32_dtype(torch, fb_fn, torch_fn, arrays):
    """With float32 inputs the result has torch's dtype (float32 stays float32)."""
    small = [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]
    out = fb_fn(*[fb.from_numpy(a) for a in small])
    ref = torch_fn(*[torch.tensor(np.ascontiguousarray(a)) for a in small])
    assert str(out.dtype) == str(ref.dtype).replace("torch.", ""), (out.dtype, ref.dtype)


def check_gradcheck(fb_fn, arrays):
    xs = fb_inputs(arrays)
    assert fb.gradcheck(fb_fn, xs)


def differentiable_ops(*modules):
    """The names of the differentiable ops that ``modules`` register."""
    from fastbp.core.registry import Op

    return {v.name for m in modules for v in vars(m).values() if isinstance(v, Op) and v.vjp}


def graph_ops(out):
    """The names of the ops recorded in the graph that produced ``out``."""
    seen, names, stack = set(), set(), [out]
    while stack:
        t = stack.pop()
        node = t._node if isinstance(t, fb.Tensor) else None
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(node.op.name)
        stack.extend(node.inputs)
    return names


def check_rows_reach(rows, ops):
    """Every op in ``ops`` is recorded by at least one gradcheck row of the table."""
    reached = set()
    for row in rows:
        arrays = row[3](np.random.default_rng(0)) if callable(row[3]) else row[3]
        arrays = arrays if isinstance(arrays, list) else [arrays]
        reached |= graph_ops(row[1](*fb_inputs(arrays)))
    assert ops <= reached, f"ops no gradcheck row reaches: {sorted(ops - reached)}"
