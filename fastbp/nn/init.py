"""In-place parameter initialisers (``fastbp.nn.init``).

Each function overwrites ``tensor.data`` in place (so views of it, such as an
optimizer's flat buffer, see the new values), draws from
:func:`fastbp.core.tensor.default_generator` unless a generator is given (so
:func:`fastbp.manual_seed` makes initialisation reproducible) and returns the tensor.

NOTE: fastbp stores a Linear weight as ``(in_features, out_features)``, the transpose
of PyTorch's layout, so for a 2-D tensor ``fan_in`` is ``shape[0]`` and ``fan_out``
is ``shape[1]``.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.tensor import Tensor, default_generator

__all__ = [
    "calculate_gain",
    "fan_in_and_fan_out",
    "uniform_",
    "normal_",
    "zeros_",
    "kaiming_uniform_",
]


def _generator(generator: np.random.Generator | None) -> np.random.Generator:
    # Looked up at call time: manual_seed replaces the module-level generator.
    return generator if generator is not None else default_generator()


def _fill(t: Tensor, values: np.ndarray, where: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"init.{where}: expected a Tensor, got {type(t).__name__}")
    t.data[...] = values
    t._version += 1  # a graph that saved the old values must not backward through them
    return t


def _check_float(t: Tensor, where: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"init.{where}: expected a Tensor, got {type(t).__name__}")
    if t.data.dtype.kind != "f":
        raise TypeError(
            f"init.{where}: needs a floating-point tensor, got dtype {t.data.dtype} "
            f"(shape {t.shape})"
        )


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Return the recommended gain for an activation (as in PyTorch).

    Parameters
    ----------
    nonlinearity : {'linear', 'sigmoid', 'tanh', 'relu', 'leaky_relu'}
    param : float, optional
        Negative slope for 'leaky_relu' (default 0.01).

    Returns
    -------
    float
        1 for linear and sigmoid, 5/3 for tanh, sqrt(2) for relu,
        ``sqrt(2 / (1 + slope**2))`` for leaky_relu.

    Raises
    ------
    ValueError
        For an unknown nonlinearity.

    Example
    -------
    >>> from fastbp.nn import init
    >>> round(init.calculate_gain("relu"), 4)
    1.4142
    """
    if nonlinearity in ("linear", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    raise ValueError(
        f"calculate_gain: unknown nonlinearity {nonlinearity!r}; use one of 'linear', "
        f"'sigmoid', 'tanh', 'relu', 'leaky_relu'"
    )


def fan_in_and_fan_out(t: Tensor) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a weight stored ``(in_features, out_features)``.

    Parameters
    ----------
    t : Tensor
        At least 2-D; extra trailing axes multiply both fans (receptive field).

    Returns
    -------
    (int, int)

    Raises
    ------
    ValueError
        If ``t`` has fewer than 2 dimensions.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.nn import init
    >>> init.fan_in_and_fan_out(fb.zeros(784, 128))
    (784, 128)
    """
    shape = t.shape
    if len(shape) < 2:
        raise ValueError(
            f"fan_in_and_fan_out: needs a weight with at least 2 dimensions "
            f"(in_features, out_features), got shape {shape}"
        )
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[0] * receptive, shape[1] * receptive


def uniform_(
    t: Tensor, a: float = 0.0, b: float = 1.0, generator: np.random.Generator | None = None
) -> Tensor:
    """Fill ``t`` in place with samples from ``U(a, b)``.

    Parameters
    ----------
    t : Tensor
        A floating-point tensor.
    a : float, default 0.0
        Lower bound.
    b : float, default 1.0
        Upper bound.
    generator : numpy.random.Generator, optional
        Defaults to the generator seeded by :func:`fastbp.manual_seed`.

    Returns
    -------
    Tensor
        ``t``.

    Raises
    ------
    TypeError
        If ``t`` is not a floating-point Tensor.
    ValueError
        If ``a > b``.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.nn import init
    >>> w = init.uniform_(fb.zeros(100), -0.1, 0.1)
    >>> bool((abs(w.data) <= 0.1).all())
    True
    """
    _check_float(t, "uniform_")
    if a > b:
        raise ValueError(f"init.uniform_: lower bound a={a} exceeds upper bound b={b}")
    values = _generator(generator).uniform(a, b, t.shape)
    return _fill(t, values, "uniform_")


def normal_(
    t: Tensor, mean: float = 0.0, std: float = 1.0, generator: np.random.Generator | None = None
) -> Tensor:
    """Fill ``t`` in place with samples from ``N(mean, std**2)``.

    Parameters
    ----------
    t : Tensor
        A floating-point tensor.
    mean : float, default 0.0
        Mean.
    std : float, default 1.0
        Standard deviation (``std >= 0``).
    generator : numpy.random.Generator, optional
        Defaults to the generator seeded by :func:`fastbp.manual_seed`.

    Returns
    -------
    Tensor
        ``t``.

    Raises
    ------
    TypeError
        If ``t`` is not a floating-point Tensor.
    ValueError
        If ``std`` is negative.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.nn import init
    >>> init.normal_(fb.zeros(2, 3), std=0.01).shape
    (2, 3)
    """
    _check_float(t, "normal_")
    if std < 0:
        raise ValueError(f"init.normal_: std must be >= 0, got {std}")
    values = _generator(generator).normal(mean, std, t.shape)
    return _fill(t, values, "normal_")


def zeros_(t: Tensor) -> Tensor:
    """Fill ``t`` with zeros in place.

    Parameters
    ----------
    t : Tensor

    Returns
    -------
    Tensor
        ``t``.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.nn import init
    >>> init.zeros_(fb.ones(2)).data
    array([0., 0.], dtype=float32)
    """
    if not isinstance(t, Tensor):
        raise TypeError(f"init.zeros_: expected a Tensor, got {type(t).__name__}")
    return _fill(t, 0, "zeros_")


def kaiming_uniform_(
    t: Tensor,
    a: float = 0.0,
    mode: str = "fan_in",
    nonlinearity: str = "leaky_relu",
    generator: np.random.Generator | None = None,
) -> Tensor:
    """Fill ``t`` in place with He (Kaiming) uniform samples.

    Samples come from ``U(-bound, bound)`` with
    ``bound = gain * sqrt(3 / fan)``, ``gain = calculate_gain(nonlinearity, a)``.
    With ``a = sqrt(5)`` (what Linear uses, like PyTorch) this is
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Parameters
    ----------
    t : Tensor
        A weight of at least 2 dimensions, stored ``(in_features, out_features)``.
    a : float, default 0
        Negative slope of the leaky ReLU that follows the layer.
    mode : {'fan_in', 'fan_out'}
        Preserve the variance of the forward ('fan_in') or backward pass.
    nonlinearity : str, default 'leaky_relu'
        See :func:`calculate_gain`.
    generator : numpy.random.Generator, optional
        Defaults to the generator seeded by :func:`fastbp.manual_seed`.

    Returns
    -------
    Tensor
        ``t``. A tensor with no elements is returned unchanged.

    Raises
    ------
    TypeError
        If ``t`` is not a floating-point Tensor.
    ValueError
        If ``t`` has fewer than 2 dimensions or ``mode`` is unknown.

    Example
    -------
    >>> import math, fastbp as fb
    >>> from fastbp.nn import init
    >>> w = init.kaiming_uniform_(fb.zeros(64, 8), a=math.sqrt(5))
    >>> bool((abs(w.data) <= 1 / 8 + 1e-7).all())
    True
    """
    _check_float(t, "kaiming_uniform_")
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init.kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(t)
    if t.data.size == 0:
        return t
    fan = fan_in if mode == "fan_in" else fan_out
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(t, -bound, bound, generator)
