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
* *sum* the gradients of a tensor used more than once (``x*x + x``) — the first
  incoming gradient is stored, later ones are added into a fresh array, because a
  vjp may hand back ``dy`` itself and adding in place would corrupt another
  gradient;
* intermediate gradients live in a dict local to the walk and are dropped as soon
  as they are used; only leaves (tensors no op produced) receive ``.grad``;
* free each record's saved arrays once used, unless ``retain_graph=True``.

Grad mode and anomaly mode are per thread (``threading.local``), so two threads
can train two models at once without mixing their graphs.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator, Sequence
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from .tensor import Tensor

__all__ = [
    "Op",
    "Node",
    "apply",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "detect_anomaly",
    "unbroadcast",
    "DeferredGrad",
]


class Op(NamedTuple):
    """One differentiable operation: its name, forward and vector-Jacobian product.

    ``forward(*arrays, **params) -> (out, saved)`` computes the output array and
    whatever its backward pass needs. ``vjp(saved, dy, needs) -> grads`` returns one
    gradient (or ``None``) per input; ``needs[i]`` says whether input ``i`` wants one,
    so an op can skip work (e.g. ``dX`` for the data batch). The vjp may return
    gradients in a broadcast shape: the engine reduces them. ``jit``, if set, writes
    the op's forward and vjp as source for a compiled step (:mod:`fastbp.compiler`).
    """

    name: str
    forward: Callable[..., tuple[np.ndarray, Any]]
    vjp: Callable[[Any, np.ndarray, tuple[bool, ...]], Sequence[np.ndarray | None]]
    jit: Any = None


class _Freed:
    """Marker left in ``Node.saved`` after backward released the saved arrays."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<freed>"


FREED = _Freed()

# A global, thread-safe counter (``next`` on itertools.count is atomic under the
# GIL): sequence numbers stay unique even if a graph is built across threads.
_next_seq = itertools.count(1).__next__


class Node:
    """A tape record: plain data describing one recorded op application.

    Attributes
    ----------
    op : Op
        The operation.
    inputs : tuple of Tensor
        The tensors the op was applied to.
    saved : object
        What ``op.forward`` saved for the vjp; ``FREED`` after backward.
    needs : tuple of bool
        Which inputs require a gradient.
    seq : int
        Place on the tape; inputs always have smaller numbers.
    output : weakref to Tensor
        The tensor this op produced (weak, so abandoned graphs are freed).
    where : str or None
        The user's line that created the op, recorded in anomaly mode only.
    locked : tuple of ndarray
        Parameter arrays this record holds read-only (see :class:`_LockingNode`).

    Records are made only by :func:`apply`, which fills the fields directly (no
    ``__init__`` call on the hot path).
    """

    __slots__ = ("op", "inputs", "saved", "needs", "seq", "output", "where", "locked")

    def release(self) -> None:
        """Drop the saved arrays and the input tensors, and unlock parameter arrays.

        Dropping the inputs lets intermediate activations be freed during backward
        even while the user still holds the loss tensor.
        """
        self.saved = FREED
        self.inputs = ()
        if self.locked:
            _unlock(self.locked)
            self.locked = ()

    def __repr__(self) -> str:
        shapes = ", ".join(str(t.shape) for t in self.inputs)
        return f"<Node #{self.seq} {self.op.name}({shapes})>"


class _LockingNode(Node):
    """A record that saved parameters: it holds their arrays read-only and remembers
    their versions. A subclass, so that the common record pays for no ``__del__``."""

    __slots__ = ("params", "versions")

    def check_versions(self) -> None:
        """Raise if fastbp updated a saved parameter in place since this op ran."""
        for t, version in zip(self.params, self.versions, strict=True):
            if t._version != version:
                raise RuntimeError(
                    f"backward of '{self.op.name}': a parameter it saved (shape {t.shape}) "
                    f"was modified in place (e.g. by optimizer.step()) after the forward "
                    f"pass, so its gradient would be wrong. Call backward() before step(), "
                    f"or recompute the forward pass."
                )

    def __del__(self):
        # An abandoned graph must give the parameters' arrays back to the user.
        if self.locked:
            _unlock(self.locked)


# --------------------------------------------------------------------------- state


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.grad_enabled = True
        self.anomaly = False
        # The recorder of a first call to an ``fb.trace`` function (see
        # :mod:`fastbp.tracing`); None when nothing is being traced.
        self.tracer = None


_state = _ThreadState()


def is_grad_enabled() -> bool:
    """Return whether ops are being recorded on this thread.

    Returns
    -------
    bool
        False inside :class:`no_grad`.

    Example
    -------
    >>> import fastbp as fb
    >>> with fb.no_grad():
    ...     fb.is_grad_enabled()
    False
    """
    return _state.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Set grad mode on this thread for a ``with`` block or a decorated function."""

    enabled = True

    def __enter__(self):
        self._previous = _state.grad_enabled
        _state.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous
        return False

    def __call__(self, func):
        # ContextDecorator reuses one instance across calls, which breaks under
        # recursion and threads (``_previous`` is shared); make a fresh one per call.
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with type(self)():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Context manager and decorator that stops recording ops on this thread.

    Use it for evaluation and for in-place parameter updates: results computed
    inside do not require a gradient and keep nothing alive for backward.

    Example
    -------
    >>> import fastbp as fb
    >>> w = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> with fb.no_grad():
    ...     y = w * 2
    >>> y.requires_grad
    False
    """

    enabled = False


class enable_grad(_GradMode):
    """Context manager and decorator that re-enables recording inside ``no_grad``.

    Example
    -------
    >>> import fastbp as fb
    >>> with fb.no_grad(), fb.enable_grad():
    ...     fb.is_grad_enabled()
    True
    """

    enabled = True


@contextlib.contextmanager
def detect_anomaly() -> Iterator[None]:
    """Raise as soon as backward produces a NaN or Inf, naming the op that caused it.

    Inside the block every recorded op remembers the line of user code that
    created it (this costs a stack walk per op, so use it for debugging only).
    During backward, a gradient containing NaN/Inf raises ``RuntimeError`` naming
    the forward op whose vjp produced it and where that op was called.

    Raises
    ------
    RuntimeError
        From ``backward`` when a non-finite gradient appears.

    Example
    -------
    >>> import fastbp as fb
    >>> x = fb.tensor([0.0], requires_grad=True)
    >>> with fb.detect_anomaly():
    ...     y = fb.sqrt(x).sum()
    ...     y.backward()  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    RuntimeError: backward of 'sqrt' produced inf ...
    """
    previous = _state.anomaly
    _state.anomaly = True
    try:
        yield
    finally:
        _state.anomaly = previous


def _user_frame() -> str:
    """The innermost stack frame outside fastbp, as 'file:line in func: code'."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/fastbp/" not in frame.filename.replace("\\", "/"):
            return f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}"
    return "<unknown>"


# ------------------------------------------------------------------ saved-array lock
# An op that saves a leaf's array for backward (``w`` in ``x @ w``) would produce
# silently wrong gradients if the user changed ``w.data`` in place before backward.
# While a record holds it, the array is made read-only; NumPy then refuses the
# write at once. A per-array count supports several records holding one array.

_lock_counts: dict[int, int] = {}
_lock_guard = threading.Lock()


def _lock(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Make ``arrays`` read-only; return those now counted (already read-only ones are not)."""
    counted = []
    with _lock_guard:
        for a in arrays:
            key = id(a)
            count = _lock_counts.get(key)
            if count is None:
                if not a.flags.writeable:
                    continue  # read-only for reasons of its own: leave it alone
                a.setflags(write=False)
                count = 0
            _lock_counts[key] = count + 1
            counted.append(a)
    return tuple(counted)


def _unlock(arrays: tuple[np.ndarray, ...]) -> None:
    with _lock_guard:
        for a in arrays:
            key = id(a)
            count = _lock_counts.get(key, 1) - 1
            if count <= 0:
                _lock_counts.pop(key, None)
                a.setflags(write=True)
            else:
                _lock_counts[key] = count


# --------------------------------------------------------------------------- helpers


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


def _fit(g: np.ndarray, data: np.ndarray, op: Op) -> np.ndarray:
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


def apply(op: Op, inputs: tuple[Tensor, ...], **params: Any) -> Tensor:
    """Run ``op`` forward on ``inputs`` and record it if a gradient may be needed.

    This is the single door through which every differentiable op passes.

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
    ValueError, TypeError
        When the forward computation rejects the inputs; the message names the op
        and the shapes and dtypes of its inputs.
    """
    try:
        # The common arities without building a list of arrays.
        n = len(inputs)
        if n == 2:
            out, saved = op.forward(inputs[0].data, inputs[1].data, **params)
        elif n == 1:
            out, saved = op.forward(inputs[0].data, **params)
        else:
            out, saved = op.forward(*[t.data for t in inputs], **params)
    except (ValueError, TypeError, IndexError) as exc:
        raise _explain(op, inputs, params, exc) from exc
    if type(out) is not np.ndarray:  # NumPy returns scalars for 0-d results
        out = np.asarray(out)
    result = _new_tensor(_Tensor)
    result.data = out
    result._grad = None
    result._node = None
    result._version = 0
    state = _state
    if state.grad_enabled and op.vjp is not None:  # an op without a vjp is never recorded
        needs = tuple(map(_requires_grad, inputs))
        if True in needs:
            result.requires_grad = True
            # A parameter (a leaf that requires grad) whose array the op may have saved
            # is locked read-only until backward, so that mutating it raises.
            node = None
            if saved is not None:
                for t in inputs:
                    if t._node is None and t.requires_grad:
                        node = _lock_parameters(inputs, saved)
                        break
            if node is None:
                node = _new_node(Node)
                node.locked = ()
            node.op = op
            node.inputs = inputs
            node.saved = saved
            node.needs = needs
            node.seq = _next_seq()
            node.output = _weakref(result)
            node.where = _user_frame() if state.anomaly else None
            result._node = node
            if state.tracer is not None:
                state.tracer.record_op(op, inputs, params, result)
            return result
    result.requires_grad = False
    if state.tracer is not None:
        state.tracer.record_op(op, inputs, params, result)
    return result


def _lock_parameters(inputs, saved) -> Node:
    """The record for an op that may have saved parameter arrays.

    Parameters (leaves that require grad) whose very array is among the saved values
    are locked read-only while the record holds them (a bias, which ``linear`` does
    not save, stays writable), and their versions are remembered.
    """
    held = saved if type(saved) is tuple else (saved,)
    params = []
    for t in inputs:
        if t._node is None and t.requires_grad:
            data = t.data
            for item in held:
                if item is data:
                    params.append(t)
                    break
    if not params:
        node = _new_node(Node)
        node.locked = ()
        return node
    node = _new_node(_LockingNode)
    node.params = tuple(params)
    node.versions = tuple([t._version for t in params])
    node.locked = _lock(tuple([t.data for t in params]))
    return node


_requires_grad = operator.attrgetter("requires_grad")
_new_node = object.__new__
_weakref = weakref.ref
_new_tensor = object.__new__
_Tensor: type = None  # set by fastbp.tensor once the class exists (import cycle)


# What to do about the usual ways a forward computation rejects its inputs: first by
# op, then by the words of NumPy's message.
_HINTS_BY_OP = {
    "getitem": "indices must lie within the tensor's shape",
    "reshape": "the new shape must have the same number of elements",
    "concatenate": "all dimensions except the joining axis must match",
    "stack": "all inputs must have the same shape",
}
_HINTS_BY_MESSAGE = (
    ("broadcast", "shapes must match or broadcast (trailing dimensions equal or 1); "
     "reshape an input or add a size-1 axis"),
    ("inner dimensions", "the first operand's columns must equal the second's rows; "
     "check the order of the operands or transpose one with .T"),
    ("2-d", "reshape the operands to 2-D matrices"),
    ("axis", "pass an axis in [-ndim, ndim)"),
)  # fmt: skip


def _explain(op: Op, inputs, params, exc: Exception) -> Exception:
    """Re-raise a forward failure naming the op, the input shapes/dtypes and a remedy."""
    described = ", ".join(f"{tuple(t.data.shape)} {t.data.dtype}" for t in inputs)
    extra = "".join(f", {k}={v!r}" for k, v in params.items() if k != "key")
    if isinstance(exc, ValueError):  # first: NumPy's AxisError is also an IndexError
        kind = ValueError
    elif isinstance(exc, IndexError):
        kind = IndexError
    else:
        kind = TypeError
    text = str(exc)
    hint = _HINTS_BY_OP.get(op.name) or next(
        (h for key, h in _HINTS_BY_MESSAGE if key in text.lower()), None
    )
    advice = f". Fix: {hint}" if hint else ""
    return kind(f"{op.name}: cannot apply to inputs [{described}]{extra}: {text}{advice}")


def _check_finite(a: np.ndarray, op: Op, where: str | None, phase: str) -> None:
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        bad = "nan" if np.isnan(a).any() else "inf"
        raise RuntimeError(
            f"{phase} of '{op.name}' produced {bad} values; the op was created at {where}"
        )


# --------------------------------------------------------------------------- walking


def _walk(
    root: Tensor,
    seed: np.ndarray,
    retain_graph: bool,
    targets: dict[int, int] | None,
) -> list[np.ndarray | None] | None:
    """Propagate ``seed`` from ``root`` to every reachable leaf.

    With ``targets`` (``id(tensor) -> position``) gradients are collected for those
    tensors and returned instead of being accumulated into ``.grad``.
    """
    collected: list[np.ndarray | None] | None = None
    if targets is not None:
        collected = [None] * len(targets)
        if id(root) in targets:
            collected[targets[id(root)]] = seed
    node = root._node
    if node is None:  # the root is a leaf
        if targets is None:
            _accumulate_leaf(root, seed, owned=False)
        return collected

    anomaly = _state.anomaly
    collecting = targets is not None
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
        op = node.op
        inputs = node.inputs
        if type(node) is _LockingNode:
            node.check_versions()
        needs = node.needs
        grads = op.vjp(saved, dy, needs)
        if not retain_graph:
            if node.locked:
                node.release()
            else:  # release() inlined: this loop runs once per recorded op
                node.saved = FREED
                node.inputs = ()
        for t, need, g in zip(inputs, needs, grads, strict=True):
            if not need or g is None:
                continue
            if type(g) is not np.ndarray:
                g = np.asarray(g)
            data = t.data
            if g.shape != data.shape or (g.dtype is not data.dtype and g.dtype != data.dtype):
                g = _fit(g, data, op)
            if anomaly:
                _check_finite(g, op, node.where, "backward")
            if collecting and id(t) in targets:
                i = targets[id(t)]
                collected[i] = g if collected[i] is None else collected[i] + g
            parent = t._node
            if parent is None:
                if not collecting:
                    _hand_to_leaf(t, g, dy, grads)
                continue
            if parent in pending:
                pending[parent] = pending[parent] + g
            else:
                pending[parent] = g
                heappush(heap, (-parent.seq, parent))
    return collected


def _hand_to_leaf(t: Tensor, g: np.ndarray, dy: np.ndarray, grads) -> None:
    """Accumulate the vjp result ``g`` into leaf ``t``; ``grads`` is all the vjp returned."""
    # ``dy``, a view of it, or an array returned for two inputs may belong to someone
    # else: only a fresh array may become ``.grad``.
    _accumulate_leaf(t, g, g is not dy and g.base is None and not _returned_twice(g, grads))


def _returned_twice(g: np.ndarray, grads) -> bool:
    """True if a vjp returned the very array ``g`` for more than one input."""
    count = 0
    for x in grads:
        if x is g:
            count += 1
    return count > 1


class DeferredGrad:
    """A gradient that :attr:`Tensor.grad` computes when it is first read.

    A compiled step (:mod:`fastbp.compiler`) that folds a plain SGD update into the
    product ``w ← w − lr·xᵀ·dy`` never writes ``xᵀ·dy`` out: writing it and reading it
    back would cost two passes over memory the size of the weights, for a gradient most
    training loops never look at. It leaves one of these in ``p._grad`` instead, and
    ``p.grad`` then computes the product from the step's saved ``x`` and ``dy``, once.

    Parameters
    ----------
    compute : callable
        Called with no arguments; returns the gradient array.

    Example
    -------
    >>> import numpy as np
    >>> import fastbp as fb
    >>> w = fb.zeros(2, requires_grad=True)
    >>> w._grad = fb.autograd.DeferredGrad(lambda: np.ones(2, np.float32))
    >>> w.grad
    array([1., 1.], dtype=float32)
    """

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[], np.ndarray]):
        self.compute = compute


def _accumulate_leaf(t: Tensor, g: np.ndarray, owned: bool) -> None:
    """Add ``g`` into ``t.grad``; the first gradient is kept as is only if ``owned``."""
    if t.grad is None:
        if owned:
            flags = g.flags
            owned = flags.writeable and flags.c_contiguous
        t.grad = g if owned else g.copy()
    else:
        np.add(t.grad, g, out=t.grad)


def _seed(root: Tensor, grad_output, who: str) -> np.ndarray:
    if grad_output is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"{who}: grad can be created implicitly only for a scalar output, but the "
                f"output has shape {root.shape}; pass grad=<array of that shape>, or reduce "
                f"the output first (e.g. .sum())"
            )
        return np.ones(root.data.shape, dtype=root.data.dtype)
    seed = np.asarray(grad_output.data if isinstance(grad_output, _Tensor) else grad_output)
    if seed.shape != root.data.shape:
        raise ValueError(
            f"{who}: grad has shape {seed.shape} but the output has shape {root.shape}"
        )
    return seed.astype(root.data.dtype, copy=False)


def backward(root: Tensor, grad: Any = None, retain_graph: bool = False) -> None:
    """Accumulate ``d root / d leaf`` into ``.grad`` of every leaf that requires one.

    Parameters
    ----------
    root : Tensor
        The output to differentiate (usually a scalar loss).
    grad : array_like, optional
        Upstream gradient with ``root``'s shape; required unless ``root`` has one
        element.
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
    if not root.requires_grad:
        raise RuntimeError(
            f"backward: the tensor of shape {root.shape} does not require grad and has no "
            f"graph; create its inputs with requires_grad=True, and don't compute it under "
            f"fb.no_grad()"
        )
    seed = _seed(root, grad, "backward")
    if _state.tracer is not None:
        _state.tracer.record_backward(root, grad, seed, retain_graph)
    _walk(root, seed, retain_graph, None)


def grad(
    output: Tensor,
    inputs: Tensor | Sequence[Tensor],
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
        Leaves or intermediate tensors of ``output``'s graph.
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
    from .tensor import Tensor

    if _state.tracer is not None:
        raise RuntimeError(
            "grad: fb.grad cannot be replayed inside a function traced by fb.trace; call "
            "backward() there and read .grad, or call fb.grad outside the traced function"
        )
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if not output.requires_grad:
        raise RuntimeError(
            f"grad: the output of shape {output.shape} does not require grad; create its "
            f"inputs with requires_grad=True"
        )
    targets = {id(t): i for i, t in enumerate(inputs)}
    collected = _walk(output, _seed(output, grad_output, "grad"), retain_graph, targets)
    for i, (t, g) in enumerate(zip(inputs, collected, strict=True)):
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {t.shape}) is not used to compute the output; "
                    f"pass allow_unused=True to get None for it"
                )
        else:
            # The walk may hand back ``grad_output`` or arrays shared between inputs.
            collected[i] = np.array(g)
    return collected
