"""Matrix products: matmul and the fused Linear (affine) layer."""

from __future__ import annotations

from . import defop


def _check_2d(name, a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name} takes 2-D matrices; got {a.ndim}-D and {b.ndim}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions differ: {a.shape} @ {b.shape} needs {a.shape[1]} == {b.shape[0]}"
        )


def _matmul_forward(a, b):
    _check_2d("matmul", a, b)
    return a @ b, (a, b)


def _matmul_vjp(saved, dy, needs):
    a, b = saved
    da = dy @ b.T if needs[0] else None
    db = a.T @ dy if needs[1] else None
    return da, db


MATMUL = defop("matmul", _matmul_forward, _matmul_vjp)


def _linear_forward(x, w, b=None):
    # One record for Y = X·W + b: its vjp sees needs[0] and skips dX = dY·Wᵀ (the
    # largest product of a first layer) when X is the data batch.
    _check_2d("linear", x, w)
    y = x @ w
    if b is not None:
        if b.shape != (w.shape[1],):
            raise ValueError(f"bias must have shape ({w.shape[1]},), got {b.shape}")
        y += b
    return y, (x, w)


def _linear_vjp(saved, dy, needs):
    x, w = saved
    dx = dy @ w.T if needs[0] else None
    dw = x.T @ dy if needs[1] else None
    if len(needs) == 2:  # no bias
        return dx, dw
    return dx, dw, (dy.sum(axis=0) if needs[2] else None)


LINEAR = defop("linear", _linear_forward, _linear_vjp)
