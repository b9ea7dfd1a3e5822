"""Check analytic gradients against central finite differences."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .core.engine import grad
from .core.grad_mode import no_grad
from .core.tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(RuntimeError):
    """Raised by :func:`gradcheck` when an analytic gradient disagrees with the numeric one."""


def _projected(fn, inputs, weights) -> float:
    """``sum(weights * fn(*inputs))``: a scalar whose gradient is the vjp with ``weights``."""
    with no_grad():
        out = fn(*inputs)
    return float(np.sum(weights * np.asarray(out.data, dtype=np.float64)))


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Tensor | Sequence[Tensor],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    seed: int = 0,
) -> bool:
    """Compare ``fn``'s backward pass with central finite differences.

    The output is projected onto fixed random weights ``v`` (so any output shape
    works): the analytic vector-Jacobian product ``vᵀJ`` from backward is compared,
    element by element, with ``(f(x + eps) - f(x - eps)) / 2eps`` where
    ``f = sum(v * fn(x))``. Use float64 inputs; float32 rounding swamps ``eps=1e-6``.

    Parameters
    ----------
    fn : callable
        Takes the inputs, returns a Tensor.
    inputs : Tensor or sequence of Tensor
        Points at which to check; only those with ``requires_grad`` are checked.
    eps : float, default 1e-6
        Finite-difference step.
    atol : float, default 1e-5
        Absolute tolerance: the check passes where
        ``|analytic - numeric| <= atol + rtol * |numeric|``.
    rtol : float, default 1e-3
        Relative tolerance (see ``atol``).
    seed : int, default 0
        Seed of the projection weights.

    Returns
    -------
    bool
        True when every element passes.

    Raises
    ------
    GradcheckError
        Naming the input, the worst element's index and both values.
    ValueError
        If no input requires a gradient.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> x = fb.tensor(np.array([0.5, -1.0]), requires_grad=True)
    >>> fb.gradcheck(lambda t: fb.tanh(t) * t, [x])
    True
    """
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    checked = [i for i, t in enumerate(inputs) if t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True; nothing to check")

    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    if not out.requires_grad:
        analytic = [np.zeros(inputs[i].shape) for i in checked]
    else:
        analytic = grad(
            out,
            [inputs[i] for i in checked],
            grad_output=weights.astype(out.dtype),
            allow_unused=True,
        )

    for i, a in zip(checked, analytic, strict=True):
        t = inputs[i]
        a = np.zeros(t.shape) if a is None else np.asarray(a, dtype=np.float64)
        original = t.data
        t.data = original.copy()  # perturb a private copy, never the caller's array
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)
        try:
            for k in range(flat.size):
                saved = flat[k]
                flat[k] = saved + eps
                up = _projected(fn, inputs, weights)
                flat[k] = saved - eps
                down = _projected(fn, inputs, weights)
                flat[k] = saved
                numeric.reshape(-1)[k] = (up - down) / (2 * eps)
        finally:
            t.data = original
        excess = np.abs(a - numeric) - (atol + rtol * np.abs(numeric))
        if excess.size and (excess.max() > 0 or not np.isfinite(a).all()):
            worst = np.unravel_index(
                int(np.nanargmax(np.where(np.isfinite(a), excess, np.inf))), t.shape
            )
            raise GradcheckError(
                f"gradcheck: gradient of input {i} (shape {t.shape}, dtype {t.dtype}) is wrong "
                f"at index {tuple(int(j) for j in worst)}: backward gives {a[worst]!r}, finite "
                f"differences give {numeric[worst]!r} (atol={atol}, rtol={rtol})"
            )
    return True
