"""The source of a compiled step as it is written: :class:`Source`, and :class:`JitForm`.

A :class:`JitForm` (:mod:`fastbp.jit.forms`) writes one op into a :class:`Source`;
:mod:`fastbp.jit.compiler` writes the rest of the step around them and compiles it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from . import blas

__all__ = ["FLOATS", "JitForm", "NotCompilable", "Source"]

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class NotCompilable(Exception):
    """Raised while writing a program's source: this program is replayed instead."""


class JitForm(NamedTuple):
    """An op written as source for a compiled step.

    ``forward(source, out, inputs, params)`` writes lines that compute the op into the
    buffer named ``out`` from the values named ``inputs``; ``params`` are the op's
    keyword arguments, with arrays replaced by the names of their values.
    ``vjp(source, out, inputs, params, dy, grads)`` writes lines that compute the
    gradient of each input into the buffer named ``grads[i]`` (None: not wanted) from
    the output gradient named ``dy``. Either raises :class:`NotCompilable` for
    arguments it does not handle.
    """

    forward: Callable[..., None]
    vjp: Callable[..., None]


class Source:
    """The source of one compiled step as it is written, and the arrays it takes.

    Values (arguments, parameters, op outputs, buffers) are named variables of the
    generated function; kernels are its globals.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.globals: dict[str, Any] = {"np": np}
        self.examples: dict[str, np.ndarray] = {}  # name -> an array of its shape and dtype
        self.buffers: dict[str, np.ndarray] = {}  # name -> the buffer itself
        self.products: dict[str, tuple[int, str, str]] = {}  # dw -> (its line, x, dy)
        # Output gradients read by their op's vjp alone, which may overwrite them.
        self.private_gradients: set[str] = set()
        self._keys: dict[Any, str] = {}

    def line(self, text: str) -> None:
        """Append one line to the function body."""
        self.lines.append("    " + text)

    def kernel(self, name: str, function: Callable[..., Any]) -> str:
        """Make ``function`` callable as ``name`` from the generated source."""
        self.globals[name] = function
        return name

    def weight_gradient(self, x: str, dy: str, dw: str) -> None:
        """Write ``dw = xᵀ·dy``, noted as such: the step may fold its SGD update into it."""
        self.products[dw] = (len(self.lines), x, dy)
        self.line(f"{self.kernel('gemm', blas.gemm)}({x}, True, {dy}, False, {dw}, 1.0, 0.0)")

    def buffer(self, key: Any, shape: tuple[int, ...], dtype: np.dtype) -> str:
        """The name of a buffer for ``key`` (allocated on first request, then the same)."""
        name = self._keys.get(key)
        if name is None:
            name = self._keys[key] = f"buf{len(self.buffers)}"
            self.buffers[name] = np.empty(shape, dtype)
            self.examples[name] = self.buffers[name]
        return name

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of the value called ``name``."""
        return self.examples[name].shape

    def dtype(self, name: str) -> np.dtype:
        """The dtype of the value called ``name``."""
        return self.examples[name].dtype

    def require(self, condition: bool, why: str) -> None:
        """Raise :class:`NotCompilable` with ``why`` unless ``condition`` holds."""
        if not condition:
            raise NotCompilable(why)

    def float_matrices(self, op: str, *names: str) -> np.dtype:
        """Require 2-D arrays of one float dtype (float32 or float64); return it."""
        dtype = self.dtype(names[0])
        for name in names:
            self.require(
                self.dtype(name) == dtype and dtype in FLOATS and len(self.shape(name)) == 2,
                f"{op}: needs 2-D float32/float64 arrays of one dtype",
            )
        return dtype
