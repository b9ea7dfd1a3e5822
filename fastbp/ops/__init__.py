"""The op table: every differentiable operation, its forward and its vjp, by name.

An op is defined once, with :func:`defop`, next to the functions that implement it::

    def _exp_forward(x):
        out = np.exp(x)
        return out, out          # (output, what the vjp needs)

    def _exp_vjp(out, dy, needs):
        return (dy * out,)       # one gradient per input

    EXP = defop("exp", _exp_forward, _exp_vjp)

Rules a vjp follows (the engine does the rest):

* return one entry per input, ``None`` where ``needs[i]`` is False;
* a gradient may keep the broadcast output shape: the engine sums it back down;
* never modify ``dy`` or a saved array in place, and never return a saved array
  itself (the engine may hand the gradient to the user as ``.grad``).

``OPS`` (:mod:`fastbp.core.registry`) maps each name to its :class:`~fastbp.core.registry.Op`,
so ``sorted(OPS)`` lists everything fastbp knows. The ops register themselves here;
the layers that read the table (the engine below, :mod:`fastbp.jit` above) never need
an op module to know about them.
"""

from __future__ import annotations

from ..core.registry import OPS, Op, defop

__all__ = ["OPS", "Op", "defop"]

from . import compare, elementwise, linalg, loss, reduce, shape  # noqa: E402,F401  (fill the table)

from . import activation, elementwise_more, linalg_nd, reduce_more, shape_more  # noqa: E402,F401  # isort: skip

from . import conv, norm, pool  # noqa: E402,F401  # isort: skip  (issue 15)
