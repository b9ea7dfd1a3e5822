"""The engine: record ops on a tape, walk it backwards, accumulate gradients.

How a gradient is computed
--------------------------
Every op applied to a tensor that requires a gradient appends one *record* (a
:class:`Node`) to the tape. A record is plain data: the op, its input tensors, the
arrays the op saved for its backward pass, which inputs need a gradient, and a weak
reference to its output. Its ``seq`` is its place on the tape, taken from a counter
that only grows, so an op's inputs always have smaller numbers than the op itself::

        x ──┐
            add (seq 1) ── s ──┐
        y ──┘                  mul (seq 2) ── f
        z ─────────────────────┘

``f.backward()`` seeds ``df/df = 1`` and walks the records reachable from ``f`` in
*decreasing* ``seq`` (a heap keyed on ``-seq``): a record is only visited after
every record that consumes its output, so its upstream gradient ``dy`` is complete
by then. The walk is a loop, never a recursion, so chains of any length work.

For each record the engine calls the op's vector-Jacobian product (vjp) with the
saved arrays, ``dy`` and which inputs need a gradient. It then does the book-keeping
that no op has to repeat:

* reduce each input gradient to the input's shape (:func:`unbroadcast`) and dtype;
* *sum* the gradients of a tensor used more than once (``x*x + x``): the first
  incoming gradient is stored, later ones are added into a fresh array, because a
  vjp may hand back ``dy`` itself and adding in place would corrupt another
  gradient;
* intermediate gradients live in a dict local to the walk and are dropped as soon
  as they are used; only leaves (tensors no op produced) receive ``.grad``;
* free each record's saved arrays once used, unless ``retain_graph=True``.

What lives elsewhere: the op table (:mod:`fastbp.core.registry`), grad and anomaly
modes (:mod:`~fastbp.core.grad_mode`, :mod:`~fastbp.core.anomaly`), error hints
(:mod:`~fastbp.core.hints`), the guard against changed saved arrays
(:mod:`~fastbp.core.saved`) and the hook a tracer watches through
(:mod:`~fastbp.core.observer`).
"""

from __future__ import annotations

import itertools
import operator
import weakref
from heapq import heappop, heappush
from typing import Any

import numpy as np

from .anomaly import check_finite, user_frame
from .hints import explain
from .hooks import hooked_edges, leaf_edge_done, leaf_hooks, run_hooks
from .registry import Op
from .saved import check as _check_saved
from .saved import guard as _guard_saved
from .state import state

__all__ = [
    "Node", "FREED", "apply", "backward", "grad", "unbroadcast", "fit_gradient",
    "accumulate_grad", "hand_to_leaf", "make_seed",
]  # fmt: skip


class _Freed:
    """Marker left in ``Node.saved`` after backward released the saved arrays."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<freed>"


FREED = _Freed()

# ``next`` on itertools.count is atomic under the GIL: numbers stay unique across threads.
_next_seq = itertools.count(1).__next__


class Node:
    """A tape record: the op, its inputs, what it saved, which inputs need a gradient,
    its place ``seq`` on the tape, a weak reference to its ``output``, the user's line
    that created it (``where``, anomaly mode only) and the ``guards`` that let backward
    check that the saved arrays did not change (:mod:`fastbp.core.saved`). Made only by
    :func:`apply`, which fills the fields directly.
    """

    __slots__ = ("op", "inputs", "saved", "needs", "seq", "output", "where", "guards")

    def release(self) -> None:
        """Drop the saved arrays and the inputs (so activations free during backward)."""
        self.saved = FREED
        self.inputs = ()
        self.guards = ()

    def __repr__(self) -> str:
        shapes = ", ".join(str(t.shape) for t in self.inputs)
        return f"<Node #{self.seq} {self.op.name}({shapes})>"


# --------------------------------------------------------------------------- shapes


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back down to ``shape``.

    Parameters
    ----------
    g : ndarray
        Gradient with the broadcast (output) shape.
    shape : tuple of int
        The shape of the input it belongs to.

    Returns
    -------
    ndarray
        ``g`` itself when the shapes already match, else ``g`` summed over the
        leading axes NumPy added and over the axes where ``shape`` has size 1.

    Example
    -------
    >>> import numpy as np
    >>> unbroadcast(np.ones((4, 3)), (1, 3))
    array([[4., 4., 4.]])
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
    )
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def fit_gradient(g: np.ndarray, data: np.ndarray, op: Op) -> np.ndarray:
    """Bring the gradient ``g`` for the input array ``data`` of ``op`` to its shape and dtype."""
    if g.shape != data.shape:
        try:
            g = unbroadcast(np.asarray(g), data.shape)
        except ValueError as exc:
            raise ValueError(
                f"backward of '{op.name}' returned a gradient of shape {np.shape(g)} for "
                f"an input of shape {data.shape}; the vjp is wrong"
            ) from exc
    if g.dtype != data.dtype:
        g = g.astype(data.dtype)
    return g


# --------------------------------------------------------------------------- recording


def apply(op: Op, inputs: tuple[Any, ...], **params: Any) -> Any:
    """Run ``op`` forward on ``inputs`` and record it if a gradient may be needed.

    This is the single door through which every op passes.

    Parameters
    ----------
    op : Op
        The operation from the op table.
    inputs : tuple of Tensor
        Its tensor inputs.
    **params
        Non-differentiable arguments (axis, shape, ...), passed to ``op.forward``.

    Returns
    -------
    Tensor
        The output; it requires a gradient iff grad mode is on and an input does.

    Raises
    ------
    ValueError, TypeError, IndexError
        When the forward computation rejects the inputs; the message names the op
        and the shapes and dtypes of its inputs.
    """
    try:
        n = len(inputs)  # the common arities without building a list of arrays
        if params:
            out, saved = op.forward(*[t.data for t in inputs], **params)
        elif n == 2:  # NOTE: a call without ** is measurably cheaper; most ops take none
            out, saved = op.forward(inputs[0].data, inputs[1].data)
        elif n == 1:
            out, saved = op.forward(inputs[0].data)
        else:
            out, saved = op.forward(*[t.data for t in inputs])
    except (ValueError, TypeError, IndexError) as exc:
        raise explain(op.name, inputs, params, exc) from exc
    if type(out) is not np.ndarray:  # NumPy returns scalars for 0-d results
        out = np.asarray(out)
    # The class of results (Tensor, also for a subclass's inputs): the engine needs no import.
    result = _new(inputs[0].result_class)
    result.data = out
    result.grad = None
    result._node = None
    result._version = 0
    result.requires_grad = False
    thread = state
    if thread.grad_enabled and op.vjp is not None:  # an op without a vjp is never recorded
        if n == 2:
            needs = (inputs[0].requires_grad, inputs[1].requires_grad)
        elif n == 1:
            needs = (inputs[0].requires_grad,)
        else:
            needs = tuple(map(_requires_grad, inputs))
        if True in needs:
            result.requires_grad = True
            node = _new(Node)
            node.guards = () if saved is None else _guard_saved(inputs, saved, out)
            node.op = op
            node.inputs = inputs
            node.saved = saved
            node.needs = needs
            node.seq = _next_seq()
            node.output = _weakref(result)
            node.where = user_frame() if thread.anomaly else None
            result._node = node
    if thread.observer is not None:
        thread.observer.record_op(op, inputs, params, result)
    return result


_requires_grad = operator.attrgetter("requires_grad")
_new = object.__new__
_weakref = weakref.ref


# --------------------------------------------------------------------------- walking


def _walk(root, seed: np.ndarray, retain_graph: bool, targets: dict[int, list[int]] | None):
    """Propagate ``seed`` from ``root`` to every reachable leaf.

    With ``targets`` (``id(tensor) -> its positions``) gradients are collected for
    those tensors and returned instead of being accumulated into ``.grad``.
    """
    collected = None
    if targets is not None:
        collected = [None] * sum(map(len, targets.values()))
        for i in targets.get(id(root), ()):
            collected[i] = seed
    node = root._node
    if node is None:  # the root is a leaf
        if targets is None:
            accumulate_grad(root, seed, owned=False)
        return collected
    anomaly = state.anomaly
    collecting = targets is not None
    hooked = hooked_edges(root) if leaf_hooks and not collecting else None
    pending: dict[Node, np.ndarray] = {node: seed}
    heap: list[tuple[int, Node]] = [(-node.seq, node)]
    while heap:
        node = heappop(heap)[1]
        dy = pending.pop(node)
        saved = node.saved
        if saved is FREED:
            raise RuntimeError(
                f"trying to backward through the graph a second time: the values saved "
                f"by '{node.op.name}' were freed by the first backward. Pass "
                f"retain_graph=True to the first backward() if you need to call it again."
            )
        op, inputs, needs = node.op, node.inputs, node.needs
        if node.guards:
            _check_saved(op.name, node.guards, node.output())
        grads = op.vjp(saved, dy, needs)
        if not retain_graph:  # release() inlined: this loop runs once per recorded op
            node.saved = FREED
            node.inputs = ()
            node.guards = ()
        for t, need, g in zip(inputs, needs, grads, strict=True):
            if not need or g is None:
                if hooked and need and id(t) in hooked:
                    leaf_edge_done(hooked, t)
                continue
            if type(g) is not np.ndarray:
                g = np.asarray(g)
            data = t.data
            if g.shape != data.shape or (g.dtype is not data.dtype and g.dtype != data.dtype):
                g = fit_gradient(g, data, op)
            if anomaly:
                check_finite(g, op.name, node.where, "backward")
            if collecting and id(t) in targets:
                for i in targets[id(t)]:
                    collected[i] = g if collected[i] is None else collected[i] + g
            parent = t._node
            if parent is None:
                if not collecting:
                    hand_to_leaf(t, g, dy, grads)
                    if hooked and id(t) in hooked:
                        leaf_edge_done(hooked, t)
            elif parent in pending:
                pending[parent] = pending[parent] + g
            else:
                pending[parent] = g
                heappush(heap, (-parent.seq, parent))
    for t, _ in (hooked or {}).values():  # edges never reached (a vjp gave None upstream)
        run_hooks(t)
    return collected


def hand_to_leaf(t, g: np.ndarray, dy: np.ndarray, grads) -> None:
    """Accumulate the vjp result ``g`` into leaf ``t``; ``grads`` is all the vjp returned."""
    # ``dy``, a view of it, or an array returned for two inputs may belong to someone
    # else: only a fresh array may become ``.grad``.
    owned = g is not dy and g.base is None
    if owned and len(grads) > 1:  # a plain loop: a generator costs more than these tests
        seen = 0
        for x in grads:
            seen += x is g
        owned = seen == 1
    accumulate_grad(t, g, owned)


def accumulate_grad(t, g: np.ndarray, owned: bool) -> None:
    """Add ``g`` into ``t.grad``; the first gradient is kept as is only if ``owned``."""
    if t.grad is None:
        if owned:
            flags = g.flags
            owned = flags.writeable and flags.c_contiguous
        t.grad = g if owned else g.copy()
    else:
        np.add(t.grad, g, out=t.grad)


def make_seed(root, grad_output: Any, who: str) -> np.ndarray:
    """The upstream gradient of ``root`` as an array: ``grad_output``, or 1 for a scalar."""
    data = root.data
    if grad_output is None:
        if data.size != 1:
            raise RuntimeError(
                f"{who}: grad can be created implicitly only for a scalar output, but the "
                f"output has shape {data.shape}; pass grad=<array of that shape>, or reduce "
                f"the output first (e.g. .sum())"
            )
        return np.ones(data.shape, dtype=data.dtype)
    seed = np.asarray(getattr(grad_output, "data", grad_output))
    if seed.shape != data.shape:
        raise ValueError(
            f"{who}: grad has shape {seed.shape} but the output has shape {data.shape}"
        )
    return seed.astype(data.dtype, copy=False)


def _needs_graph(t, who: str) -> None:
    if not t.requires_grad:
        raise RuntimeError(
            f"{who}: the tensor of shape {t.shape} does not require grad and has no "
            f"graph; create its inputs with requires_grad=True, and don't compute it under "
            f"fb.no_grad()"
        )


def backward(root, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate ``d root / d leaf`` into ``.grad`` of every leaf that requires one.

    Parameters
    ----------
    root : Tensor
        The output to differentiate (usually a scalar loss).
    grad : array_like, optional
        Upstream gradient with ``root``'s shape; required unless ``root`` has one element.
    retain_graph : bool, default False
        Keep the saved arrays so backward can run through the graph again.

    Raises
    ------
    RuntimeError
        If ``root`` does not require grad, if ``grad`` is missing for a non-scalar
        output, or if the graph was already freed by an earlier backward.
    ValueError
        If ``grad`` has the wrong shape.

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor(3.0, requires_grad=True)
    >>> (x * x).backward()
    >>> x.grad
    array(6., dtype=float32)
    """
    _needs_graph(root, "backward")
    seed = make_seed(root, grad, "backward")
    watcher = state.observer
    if watcher is not None:
        watcher.record_backward(root, grad, seed, retain_graph)
    _walk(root, seed, retain_graph, None)
    if watcher is not None:
        watcher.backward_finished(root)


def grad(
    output,
    inputs,
    grad_output: Any = None,
    retain_graph: bool = False,
    allow_unused: bool = False,
) -> list[np.ndarray | None]:
    """Return ``d output / d input`` for each input, without touching ``.grad``.

    Parameters
    ----------
    output : Tensor
        The tensor to differentiate.
    inputs : Tensor or sequence of Tensor
        Leaves or intermediate tensors of ``output``'s graph; one may appear twice.
    grad_output : array_like, optional
        Upstream gradient; required unless ``output`` has one element.
    retain_graph : bool, default False
        Keep the graph for another backward or grad call.
    allow_unused : bool, default False
        Return ``None`` for an input the output does not depend on instead of raising.

    Returns
    -------
    list of ndarray
        One gradient per input, in the input's shape and dtype.

    Raises
    ------
    RuntimeError
        If an input is not used to compute ``output`` (and ``allow_unused`` is off),
        or for the same reasons as :func:`backward`.

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor(2.0, requires_grad=True)
    >>> fb.grad(x ** 3, x)
    [array(12., dtype=float32)]
    """
    if state.observer is not None:
        raise RuntimeError(
            "grad: fb.grad cannot be replayed inside a function traced by fb.trace; call "
            "backward() there and read .grad, or call fb.grad outside the traced function"
        )
    inputs = [inputs] if hasattr(inputs, "_node") else list(inputs)
    _needs_graph(output, "grad")
    targets: dict[int, list[int]] = {}
    for i, t in enumerate(inputs):
        targets.setdefault(id(t), []).append(i)
    seed = make_seed(output, grad_output, "grad")
    collected = _walk(output, seed, retain_graph, targets)
    for i, (t, g) in enumerate(zip(inputs, collected, strict=True)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {t.shape}) is not used to compute the output; "
                    f"pass allow_unused=True to get None for it"
                )
        else:
            collected[i] = np.array(g)  # the walk may hand back shared arrays
    return collected
