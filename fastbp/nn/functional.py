"""Stateless layer functions (``import fastbp.nn.functional as F``).

The activations are those of :mod:`fastbp.functions`; ``linear`` records one op;
``cross_entropy`` validates its arguments and then records the fused softmax +
cross-entropy op; ``mse_loss`` is composed from tensor ops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functions
from ..core.engine import apply
from ..core.tensor import Tensor, as_tensor
from ..ops.linalg import LINEAR
from ..ops.loss import (
    CROSS_ENTROPY,
    MSE_LOSS,
    NonFiniteInput,
    NonFiniteLogits,
    label_range_error,
    non_finite_logits_error,
)

__all__ = [
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "linear",
    "cross_entropy",
    "mse_loss",
]

_REDUCTIONS = ("mean", "sum", "none")

# The activations are the tensor functions themselves (``F.relu is fb.relu``): one
# spelling of each op, routed through the Tensor methods.
relu, sigmoid, tanh = functions.relu, functions.sigmoid, functions.tanh
softmax, log_softmax = functions.softmax, functions.log_softmax


def linear(x: Any, w: Any, b: Any = None) -> Tensor:
    """Affine map ``x @ w + b`` recorded as one fused op.

    Parameters
    ----------
    x : Tensor or array_like
        Shape ``(N, in_features)``.
    w : Tensor or array_like
        Shape ``(in_features, out_features)`` (fastbp's layout, not PyTorch's).
    b : Tensor or array_like, optional
        Shape ``(out_features,)``.

    Returns
    -------
    Tensor
        Shape ``(N, out_features)``.

    Raises
    ------
    ValueError
        If the shapes do not fit; the message names all of them.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.linear(fb.ones(2, 3), fb.ones(3, 4), fb.zeros(4))
    tensor([[3., 3., 3., 3.],
            [3., 3., 3., 3.]])
    """
    if b is None:
        return apply(LINEAR, (as_tensor(x), as_tensor(w)))
    return apply(LINEAR, (as_tensor(x), as_tensor(w), as_tensor(b)))


def _labels_array(labels: Any, logits_shape: tuple[int, ...]) -> np.ndarray:
    """Check the dtype and shape of ``labels`` and return them as an integer array.

    Their range is checked by the kernel as it reads them; :func:`_check_label_range`
    explains a failure.
    """
    array = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: labels must be integer class indices, got dtype {array.dtype} "
            f"(shape {array.shape}); convert them with labels.astype(np.int64)"
        )
    n = logits_shape[0]
    if array.shape != (n,):
        raise ValueError(
            f"cross_entropy: labels have shape {array.shape} but logits have shape "
            f"{logits_shape}; expected labels of shape ({n},), one class index per row"
        )
    # Cast to intp inside the op (cross_entropy's forward), so that fb.trace sees the
    # caller's array itself and replays follow it.
    return array


def _check_label_range(labels: np.ndarray, logits_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming the first label outside ``[0, C)``, if there is one."""
    error = label_range_error(labels, logits_shape)
    if error is not None:
        raise error


def _non_finite_error(data: np.ndarray) -> ValueError:
    # -inf logits (masked classes) are allowed, as in PyTorch; NaN, +inf and rows with only
    # -inf make the loss NaN and are reported (the op raises the same error when traced).
    return non_finite_logits_error(data)


def cross_entropy(logits: Any, labels: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy between unnormalised scores and integer class labels.

    ``loss_i = -log(softmax(logits_i)[labels_i]) = logsumexp(logits_i) - logits_i[labels_i]``,
    computed in one fused, numerically stable op whose gradient is
    ``softmax(logits) - onehot(labels)`` (scaled by ``1/N`` for ``'mean'``).

    Parameters
    ----------
    logits : Tensor or array_like
        Shape ``(N, C)``, floating point; ``-inf`` masks a class (as in PyTorch), NaN and
        ``+inf`` are errors.
    labels : Tensor or ndarray of int
        Shape ``(N,)``, values in ``[0, C)``.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        Average over the batch, sum, or return the ``(N,)`` per-sample losses.

    Returns
    -------
    Tensor
        A scalar, or shape ``(N,)`` for ``reduction='none'``.

    Raises
    ------
    TypeError
        If the labels are not integers (e.g. float or bool) or the logits are not
        floating point.
    ValueError
        If the logits are not 2-D, the batch is empty, the labels' shape is not
        ``(N,)``, a label is outside ``[0, C)``, the logits contain NaN or +inf or a
        row of only -inf (the loss would be NaN), or
        ``reduction`` is unknown.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> loss = F.cross_entropy(fb.zeros(4, 10), np.array([1, 2, 3, 4]))
    >>> round(loss.item(), 4)  # log(10)
    2.3026
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
        )
    logits = as_tensor(logits)
    data = logits.data
    if data.ndim != 2:
        raise ValueError(
            f"cross_entropy: logits must be 2-D (batch, classes), got shape {data.shape}; "
            f"for a single sample use logits.reshape(1, -1)"
        )
    if data.dtype.kind != "f":
        raise TypeError(
            f"cross_entropy: logits must be floating point, got dtype {data.dtype} "
            f"(shape {data.shape})"
        )
    if data.shape[0] == 0:
        raise ValueError(
            f"cross_entropy: empty batch (logits shape {data.shape}); the loss of zero "
            f"samples is undefined, skip empty batches"
        )
    labels = _labels_array(labels, data.shape)
    # NOTE: the label range and the finiteness of the logits are checked by the fused
    # kernel in its single pass (check_finite); only a failure pays for the explanation.
    try:
        return apply(
            CROSS_ENTROPY, (logits,), labels=labels, reduction=reduction, check_finite=True
        )
    except ValueError as exc:
        _check_label_range(labels, data.shape)
        if isinstance(exc.__cause__, NonFiniteLogits):
            raise _non_finite_error(data) from None
        raise


def mse_loss(pred: Any, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(pred - target)**2``, reduced over all elements.

    Parameters
    ----------
    pred : Tensor or array_like
    target : Tensor or array_like
        Same shape as ``pred`` (a shape mismatch such as ``(N, 1)`` vs ``(N,)`` would
        silently broadcast to ``(N, N)``, so it is an error).
    reduction : {'mean', 'sum', 'none'}, default 'mean'

    Returns
    -------
    Tensor
        A scalar, or the elementwise squared errors for ``reduction='none'``.

    Raises
    ------
    ValueError
        If the shapes differ, ``reduction`` is unknown, or an input holds NaN/Inf.

    Example
    -------
    >>> import fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> F.mse_loss(fb.tensor([1.0, 2.0]), fb.tensor([1.0, 4.0]))
    tensor(2.)
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"mse_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    pred = as_tensor(pred)
    target = pred._operand(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"mse_loss: pred has shape {pred.shape} but target has shape {target.shape}; "
            f"they must match (reshape one of them, e.g. pred.reshape(-1))"
        )
    # One op, whose forward checks for NaN/Inf: a traced step replays the check too.
    try:
        return apply(MSE_LOSS, (pred, target), reduction=reduction)
    except ValueError as exc:
        if isinstance(exc.__cause__, NonFiniteInput):
            raise exc.__cause__ from None
        raise


# ------------------------------------------------------------ issue 14: more activations
# Each is one op of fastbp.ops.activation. ``inplace`` is accepted for PyTorch code but
# the result is always a new tensor (the input is left unchanged).


from ..ops import activation as _activation_ops  # noqa: E402


def _act(name: str, x: Any, **params: Any) -> Tensor:
    return apply(_activation_ops.OPS_BY_NAME[name], (as_tensor(x),), **params)


def leaky_relu(input: Any, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > 0``, else ``negative_slope * x``; the gradient at 0 is the slope.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.leaky_relu(fb.tensor([-2.0, 3.0]), 0.5)
    tensor([-1.,  3.])
    """
    return _act("leaky_relu", input, negative_slope=negative_slope)


def elu(input: Any, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x`` where ``x > 0``, else ``alpha * (exp(x) - 1)``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.elu(fb.tensor([0.0, 1.0]))
    tensor([0., 1.])
    """
    return _act("elu", input, alpha=alpha)


def selu(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``scale * elu(x, alpha)`` with the self-normalising constants of torch.nn.SELU.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.selu(fb.tensor([0.0]))
    tensor([0.])
    """
    return _act("selu", input)


def celu(input: Any, alpha: float = 1.0, inplace: bool = False) -> Tensor:  # noqa: A002
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.celu(fb.tensor([2.0]))
    tensor([2.])
    """
    return _act("celu", input, alpha=alpha)


def gelu(input: Any, approximate: str = "none") -> Tensor:  # noqa: A002
    """``x * Φ(x)`` (``approximate='none'``, with erf) or its tanh approximation.

    Raises
    ------
    ValueError
        If ``approximate`` is not 'none' or 'tanh'.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.gelu(fb.tensor([0.0, 10.0]), approximate="tanh")
    tensor([ 0., 10.])
    """
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _act("gelu", input, approximate=approximate)


def silu(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * sigmoid(x)`` (also called swish).

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.silu(fb.tensor([0.0]))
    tensor([0.])
    """
    return _act("silu", input)


def mish(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * tanh(softplus(x))``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.mish(fb.tensor([0.0]))
    tensor([0.])
    """
    return _act("mish", input)


def softplus(input: Any, beta: float = 1.0, threshold: float = 20.0) -> Tensor:  # noqa: A002
    """``log(1 + exp(beta * x)) / beta``, and ``x`` itself where ``beta * x > threshold``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.softplus(fb.tensor([0.0, 100.0]))
    tensor([  0.6931472, 100.       ])
    """
    return _act("softplus", input, beta=beta, threshold=threshold)


def softsign(input: Any) -> Tensor:  # noqa: A002
    """``x / (1 + |x|)``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.softsign(fb.tensor([1.0]))
    tensor([0.5])
    """
    return _act("softsign", input)


def hardtanh(
    input: Any,  # noqa: A002
    min_val: float = -1.0,
    max_val: float = 1.0,
    inplace: bool = False,
) -> Tensor:
    """Clamp to ``[min_val, max_val]``; unlike ``clamp``, no gradient at the bounds (torch).

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.hardtanh(fb.tensor([-3.0, 0.5, 3.0]))
    tensor([-1. ,  0.5,  1. ])
    """
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return _act("hardtanh", input, min_val=min_val, max_val=max_val)


def relu6(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``min(max(x, 0), 6)`` (``hardtanh(x, 0, 6)``).

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.relu6(fb.tensor([-1.0, 7.0]))
    tensor([0., 6.])
    """
    return _act("hardtanh", input, min_val=0.0, max_val=6.0)


def hardsigmoid(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``relu6(x + 3) / 6``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.hardsigmoid(fb.tensor([0.0]))
    tensor([0.5])
    """
    return _act("hardsigmoid", input)


def hardswish(input: Any, inplace: bool = False) -> Tensor:  # noqa: A002
    """``x * relu6(x + 3) / 6``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.hardswish(fb.tensor([3.0]))
    tensor([3.])
    """
    return _act("hardswish", input)


def logsigmoid(input: Any) -> Tensor:  # noqa: A002
    """``log(sigmoid(x))``, finite for every finite ``x``.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.logsigmoid(fb.tensor([-200.0]))
    tensor([-200.])
    """
    return _act("logsigmoid", input)


def _implicit_dim(ndim: int) -> int:
    # torch's legacy rule for softmax-like functions called without dim.
    return 0 if ndim in (0, 1, 3) else 1


def softmin(input: Any, dim: int | None = None) -> Tensor:  # noqa: A002
    """``softmax(-x, dim)``.

    Without ``dim`` the legacy rule of torch picks one (0 for 0-, 1- and 3-D input,
    else 1); pass it explicitly.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.softmin(fb.tensor([0.0, 0.0]), dim=0)
    tensor([0.5, 0.5])
    """
    x = as_tensor(input)
    return functions.softmax(-x, axis=_implicit_dim(x.ndim) if dim is None else dim)


def normalize(
    input: Any,  # noqa: A002
    p: float = 2.0,
    dim: int = 1,
    eps: float = 1e-12,
) -> Tensor:
    """Divide by the ``p``-norm along ``dim``, clamped below by ``eps``.

    Parameters
    ----------
    input : Tensor
    p : float, default 2.0
        The norm's exponent (``float('inf')`` for the max-norm).
    dim : int, default 1
    eps : float, default 1e-12
        A slice whose norm is below ``eps`` is divided by ``eps`` (its gradient then
        does not flow through the norm), so zeros stay zeros.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.normalize(fb.tensor([[3.0, 4.0], [0.0, 0.0]]))
    tensor([[0.6, 0.8],
            [0. , 0. ]])
    """
    x = as_tensor(input)
    return apply(_activation_ops.NORMALIZE, (x,), p=float(p), axis=dim, eps=eps)


__all__ += [
    "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softsign",
    "hardtanh", "relu6", "hardsigmoid", "hardswish", "logsigmoid", "softmin", "normalize",
]  # fmt: skip


# ---- convolution and pooling (issue 15; implemented in functional_conv.py) --------------------
from .functional_conv import (  # noqa: E402
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose2d,
    embedding,
    interpolate,
    max_pool1d,
    max_pool2d,
)

__all__ += [
    "conv1d", "conv2d", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool2d", "adaptive_max_pool2d", "conv_transpose2d", "embedding", "interpolate",
]  # fmt: skip


# ---------------------------------------------------- issue 14: pad and one_hot


def pad(input: Any, pad: Any, mode: str = "constant", value: float | None = None) -> Tensor:  # noqa: A002
    """Pad with ``pad = (left, right, top, bottom, ...)``, last dimension first (torch order).

    Parameters
    ----------
    input : Tensor
    pad : sequence of int
        Two sizes per padded dimension, starting from the last.
    mode : {'constant', 'reflect', 'replicate', 'circular'}
    value : float, optional
        The fill of ``'constant'`` padding (default 0).

    Raises
    ------
    ValueError
        For an odd number of sizes, an unknown mode, or reflect padding as large as
        the dimension.

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.pad(fb.tensor([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect")
    tensor([[3., 2., 1., 2., 3., 2.]])
    """
    return apply(
        _shape_ops.PAD,
        (as_tensor(input),),
        pad=tuple(int(p) for p in pad),
        mode=mode,
        value=0.0 if value is None else value,
    )


def one_hot(tensor: Any, num_classes: int = -1) -> Tensor:
    """One-hot int64 encoding: a new last dimension of ``num_classes`` (max + 1 if -1).

    Example
    -------
    >>> import fastbp as fb, fastbp.nn.functional as F
    >>> F.one_hot(fb.tensor([0, 2]), 3)
    tensor([[1, 0, 0],
            [0, 0, 1]])
    """
    return apply(_shape_ops.ONE_HOT, (as_tensor(tensor),), num_classes=num_classes)


from ..ops import shape_more as _shape_ops  # noqa: E402

__all__ += ["pad", "one_hot"]

# ---- normalisation and dropout (issue 15; implemented in functional_norm.py) ------------------
from .functional_norm import batch_norm, dropout, dropout2d, group_norm, layer_norm  # noqa: E402

__all__ += ["batch_norm", "layer_norm", "group_norm", "dropout", "dropout2d"]

# ---- losses (issue 14; implemented in functional_loss.py) -------------------------------------
from .functional_loss import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy_general,
    huber_loss,
    kl_div,
    l1_loss,
    nll_loss,
    smooth_l1_loss,
)

_fused_cross_entropy = cross_entropy


def cross_entropy(  # noqa: F811  (extends the fused one above, which it calls)
    input: Any,  # noqa: A002
    target: Any,
    weight: Any = None,
    size_average: Any = None,
    ignore_index: int = -100,
    reduce: Any = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Softmax cross-entropy with PyTorch's options (``torch.nn.functional.cross_entropy``).

    The plain call, ``(N, C)`` logits and ``(N,)`` integer labels in range, without
    ``weight`` or ``label_smoothing``, runs the fused kernel (see the fused op's notes
    in :mod:`fastbp.ops.loss`). Everything else is built from ``log_softmax``:

    * ``weight`` (``(C,)``): ``loss_i = weight[t_i]·(−log p_i[t_i])``; ``'mean'`` divides
      by the sum of the weights of the counted targets;
    * ``ignore_index``: those targets count for nothing (0 loss, 0 gradient);
    * ``label_smoothing`` ε: mixes the target with the uniform distribution;
    * probability targets: a float target of the input's shape;
    * ``(N, C, d1, ...)`` logits with ``(N, d1, ...)`` targets (class axis 1), and
      ``(C,)`` logits with a scalar target.

    Parameters
    ----------
    input : Tensor
        Logits.
    target : array_like of int, or float Tensor / array of the input's shape
    weight : array_like, optional
    size_average, reduce : None
        Deprecated in PyTorch; must be None. (A string here is read as ``reduction``,
        which fastbp's earlier signature took third.)
    ignore_index : int, default -100
    reduction : {'mean', 'sum', 'none'}, default 'mean'
    label_smoothing : float, default 0

    Returns
    -------
    Tensor

    Raises
    ------
    ValueError
        For mismatched shapes, a bad reduction or label_smoothing outside [0, 1].
    IndexError
        For a label outside ``[0, C)`` that is not ``ignore_index``.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> import fastbp.nn.functional as F
    >>> x = fb.zeros(2, 3, requires_grad=True)
    >>> loss = F.cross_entropy(x, np.array([0, -100]), weight=np.array([2.0, 1.0, 1.0]))
    >>> round(float(loss), 4), x.grad is None
    (1.0986, True)
    """
    if isinstance(weight, str):  # the old positional reduction
        weight, reduction = None, weight
    if size_average is not None or reduce is not None:
        raise TypeError(
            "cross_entropy: size_average and reduce are deprecated in PyTorch and not "
            "supported; use reduction='mean'|'sum'|'none'"
        )
    shape = input.shape if isinstance(input, Tensor) else tuple(np.shape(input))
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    general = (
        weight is not None
        or label_smoothing
        or len(shape) > 2  # (N, C, d1, ...)
        or (len(shape) == 1 and t.ndim == 0)  # (C,) logits and one label
        or (t.dtype.kind == "f" and t.shape == shape)  # class probabilities
    )
    if not general and t.dtype.kind in "iu":
        if len(shape) == 2 and not 0 <= ignore_index < shape[1]:
            # The fused kernel rejects labels outside [0, C) in its pass over them, so an
            # ignored target (-100) costs nothing unless one is there.
            try:
                return _fused_cross_entropy(input, target, reduction)
            except ValueError:
                if not (t == ignore_index).any():
                    raise
                general = True
        else:
            general = bool((t == ignore_index).any())
    if not general:  # the fused path (it also reports bad labels)
        return _fused_cross_entropy(input, target, reduction)
    return cross_entropy_general(input, target, weight, ignore_index, reduction, label_smoothing)


__all__ += [
    "nll_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "l1_loss",
    "smooth_l1_loss",
    "huber_loss",
    "kl_div",
]
