"""``fastbp.nn.utils``: gradient clipping and flattening parameters to one vector, as
``torch.nn.utils``."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..core.tensor import Tensor

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "parameters_to_vector",
    "vector_to_parameters",
]


def _as_list(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    return [parameters] if isinstance(parameters, Tensor) else list(parameters)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
    foreach: bool | None = None,
) -> Tensor:
    """Scale all gradients in place so that their joint norm is at most ``max_norm``.

    The norm is taken over all gradients together, as if concatenated into one
    vector; every gradient is multiplied by ``min(1, max_norm / (total_norm + 1e-6))``,
    as in PyTorch. Parameters without a gradient are skipped.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
    max_norm : float
    norm_type : float, default 2.0
        The p of the p-norm; ``float("inf")`` for the largest absolute value.
    error_if_nonfinite : bool, default False
        Raise if the total norm is NaN or infinite (otherwise the gradients become NaN).
    foreach : bool or None
        Accepted for PyTorch compatibility and ignored.

    Returns
    -------
    Tensor
        The total norm before clipping (a 0-d tensor).

    Raises
    ------
    RuntimeError
        If ``error_if_nonfinite`` and the norm is not finite.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp.nn.utils import clip_grad_norm_
    >>> w = fb.zeros(2, requires_grad=True); w.grad = np.array([3.0, 4.0], dtype=np.float32)
    >>> float(clip_grad_norm_([w], 1.0)), np.round(w.grad, 4)
    (5.0, array([0.6, 0.8], dtype=float32))
    """
    grads = [p.grad for p in _as_list(parameters) if p.grad is not None]
    norm_type = float(norm_type)
    if not grads:
        return Tensor(np.array(0.0, dtype=np.float32))
    dtype = np.result_type(*[g.dtype for g in grads])
    if norm_type == math.inf:
        per = [np.max(np.abs(g)) if g.size else dtype.type(0) for g in grads]
        total = np.max(np.asarray(per, dtype=dtype))
    else:
        per = [np.linalg.norm(g.reshape(-1), ord=norm_type) for g in grads]
        total = np.linalg.norm(np.asarray(per, dtype=dtype), ord=norm_type)
    total = np.asarray(total, dtype=dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{float(total)}, so they cannot be clipped; pass error_if_nonfinite=False to "
            f"clip anyway (the gradients become NaN), or find where the non-finite value "
            f"comes from (fb.detect_anomaly)"
        )
    coef = np.minimum(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1.0))
    with np.errstate(invalid="ignore"):  # a non-finite norm makes NaN, as in PyTorch
        for g in grads:
            g *= coef.astype(g.dtype)  # in place: p.grad may be a view of an optimizer buffer
    return Tensor(total)


def clip_grad_value_(
    parameters: Tensor | Iterable[Tensor], clip_value: float, foreach: bool | None = None
) -> None:
    """Clamp every gradient in place to ``[-clip_value, clip_value]``.

    Parameters
    ----------
    parameters : Tensor or iterable of Tensor
    clip_value : float
    foreach : bool or None
        Ignored.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp.nn.utils import clip_grad_value_
    >>> w = fb.zeros(3, requires_grad=True); w.grad = np.array([-2.0, 0.5, 9.0], dtype=np.float32)
    >>> clip_grad_value_(w, 1.0); w.grad
    array([-1. ,  0.5,  1. ], dtype=float32)
    """
    c = float(clip_value)
    for p in _as_list(parameters):
        if p.grad is not None:
            np.clip(p.grad, -c, c, out=p.grad)


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """Concatenate the parameters' values into one 1-D tensor (a copy, no gradient).

    Example
    -------
    >>> from fastbp import nn
    >>> from fastbp.nn.utils import parameters_to_vector
    >>> parameters_to_vector(nn.Linear(3, 2).parameters()).shape
    (8,)
    """
    arrays = [np.asarray(p.data).reshape(-1) for p in parameters]
    if not arrays:
        raise ValueError("parameters_to_vector: got no parameters")
    return Tensor(np.concatenate(arrays))


def vector_to_parameters(vec: Tensor | np.ndarray, parameters: Iterable[Tensor]) -> None:
    """Copy consecutive slices of the 1-D ``vec`` into the parameters, in place.

    Raises
    ------
    TypeError
        If ``vec`` is not 1-D.
    ValueError
        If its length differs from the parameters' total size.

    Example
    -------
    >>> import numpy as np
    >>> from fastbp import nn
    >>> from fastbp.nn.utils import vector_to_parameters
    >>> lin = nn.Linear(2, 1); vector_to_parameters(np.arange(3.0), lin.parameters())
    >>> lin.weight.data.ravel(), lin.bias.data
    (array([0., 1.], dtype=float32), array([2.], dtype=float32))
    """
    v = np.asarray(vec.data if isinstance(vec, Tensor) else vec)
    if v.ndim != 1:
        raise TypeError(f"vector_to_parameters: expected a 1-D vector, got shape {v.shape}")
    params = list(parameters)
    total = sum(p.data.size for p in params)
    if total != v.size:
        raise ValueError(
            f"vector_to_parameters: the vector has {v.size} elements but the parameters "
            f"have {total} in all"
        )
    offset = 0
    for p in params:
        n = p.data.size
        # In place, so an optimizer's flat buffer (p.data is a view of it) stays in use.
        np.copyto(p.data, v[offset : offset + n].reshape(p.data.shape), casting="unsafe")
        p._version += 1
        offset += n
