"""Record a function's tape on its first call, replay the tape on later calls: ``fb.trace``.

Why
---
An eager training step pays Python for every op it records: a Tensor and a record per
op, the module code around it, and in backward a heap and a dict to find each
record's turn. For a small model that book-keeping costs more than the arithmetic
(about 50 µs of a 90 µs step for a batch of one through 784-128-10). Yet a training
loop records the *same* tape every step. :func:`trace` records it once, as plain
data, and later calls run only the ops' forward and vjp functions, in the recorded
order, on the new arrays: no modules, no Tensors, no records, no heap.

What a trace is
---------------
The first call with a given signature (the shapes and dtypes of the array
arguments, the values of the others) runs the function eagerly while the engine
reports to a recorder:

* every op that passes through :func:`fastbp.core.engine.apply`, with the places its
  inputs come from: an argument, a tensor that lives outside the function (a
  parameter, read afresh on every call), or an earlier op's output;
* every ``backward()``, as a plan: the records it visits, in the order the engine
  visits them, and where each input gradient goes (an earlier op, or a leaf's
  ``.grad``);
* every optimizer ``zero_grad()`` and ``step()``, which are replayed as calls.

If every op of the program has a compiled form, :mod:`fastbp.jit.compiler` also writes the
program out as one Numba function, and later calls run that instead of the replay.

It is the contract of ``torch.jit.trace`` and ``jax.jit``: Python code in the
function runs only at the first call. Branches on tensor values, ``print``, or
NumPy work done outside fastbp's ops are frozen: an array an op receives that is
not an argument itself, an earlier op's output, or the array of a tensor living
outside the function is baked in as a constant (so convert arguments with
``fb.from_numpy``/``fb.as_tensor``, which share memory, not with a copy). A NumPy
view of an argument is refused, since it could not follow the argument.

Example
-------
>>> import numpy as np, fastbp as fb
>>> w = fb.tensor([1.0, 2.0], requires_grad=True)
>>> @fb.trace
... def loss_and_grad(x):
...     loss = (w * x).sum()
...     loss.backward()
...     return loss
>>> loss_and_grad(np.array([3.0, 4.0], np.float32))  # records
tensor(11.)
>>> w.grad = None
>>> loss_and_grad(np.array([1.0, 1.0], np.float32))  # replays
tensor(3.)
>>> w.grad
array([1., 1.], dtype=float32)
"""

from __future__ import annotations

import functools
import operator
import random
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import engine
from ..core.engine import FREED, accumulate_grad, fit_gradient, hand_to_leaf
from ..core.observer import set_observer
from ..core.saved import fingerprint
from ..core.state import state
from ..core.tensor import Tensor, _constant
from ..nn.module import ATTRIBUTE_WRITES, Module
from .compiler import REPLAY, compile_program
from .events import BACKWARD as _BACKWARD
from .events import CALL as _CALL
from .events import OP as _OP

__all__ = ["trace", "TracedFunction", "TracerWarning"]


class TracerWarning(UserWarning):
    """Warned while recording a traced function: something a replay will freeze."""


CACHE_SIZE = 8  # programs kept per traced function by default (LRU); a new batch size is one


class _Recorder:
    """Receives the engine's reports during a recording call and turns them into a program."""

    def __init__(self, args: tuple[Any, ...]):
        self.args = args
        self.arg_arrays = [
            a.data if isinstance(a, Tensor) else a if isinstance(a, np.ndarray) else None
            for a in args
        ]
        self.events: list[tuple] = []
        self.steps: list[Tensor] = []  # the output tensor of each recorded op
        self.step_of: dict[int, int] = {}  # id(output tensor) -> its step
        self.step_of_node: dict[int, int] = {}  # id(record) -> its step
        self.step_of_array: dict[int, int] = {}  # id(output array) -> its step
        # Leaves: where a value that no recorded op produced comes from.
        self.leaves: list[tuple] = []
        self.leaf_of: dict[int, int] = {}  # id(tensor or array) -> leaf index
        self.keep: list[Any] = []  # keeps the objects behind those ids alive
        # What a replay freezes, in words (TracedFunction.compiled says it), and what lets
        # a later call see that the Python state the recording depended on has changed.
        self.frozen: list[str] = []
        self.watched: dict[int, _Snapshot] = {}
        # Module attribute writes so far: snapshots taken after this are of no older state.
        self.module_writes = ATTRIBUTE_WRITES[0]
        self.grads: list[tuple[Tensor, Any, bytes | None]] = []  # after the last backward
        self.random_states = _random_states()

    # ------------------------------------------------------------------ frozen Python state
    def freeze(self, what: str) -> None:
        """Note (and warn, as torch.jit.trace does) something a replay will not redo."""
        if what not in self.frozen:
            self.frozen.append(what)
            warnings.warn(f"fb.trace: {what}", TracerWarning, stacklevel=4)

    def record_read(self, t: Tensor, how: str) -> None:
        """A tensor's value left fastbp: Python code using it runs at the first call only."""
        self.freeze(
            f"{how} of a tensor of shape {t.shape} turns a traced value into a Python or NumPy "
            f"value; code that uses it (a branch, a print, NumPy work) runs only when the "
            f"step is recorded, and its result is reused by every replay"
        )

    def record_object(self, obj: Any) -> None:
        """Snapshot a module's attributes: a later call with other ones records again."""
        if id(obj) not in self.watched:
            self.watched[id(obj)] = _Snapshot.of_object(obj)

    def backward_finished(self, root: Tensor) -> None:
        """Remember the gradients backward left, to see NumPy work on them before step()."""
        self.grads = [
            (t, t.grad, None if t.grad is None else fingerprint(t.grad))
            for kind, t, *_ in self.leaves
            if kind == "tensor" and t.requires_grad
        ]

    def _check_grads(self, when: str) -> None:
        for t, grad, print_ in self.grads:
            now = t.grad
            if now is not grad or (now is not None and fingerprint(now) != print_):
                self.freeze(
                    f"the gradient of a parameter of shape {t.shape} was changed between "
                    f"backward() and {when} by code outside fastbp's ops (NumPy work on "
                    f"p.grad, such as hand-written clipping); a replay does not repeat it. "
                    f"Do such work outside the traced function, or with fastbp ops"
                )

    # ------------------------------------------------------------------ where values live
    def _source(self, array: np.ndarray, who: str) -> tuple:
        """Classify an array that no recorded op produced: an argument or a constant."""
        for i, a in enumerate(self.arg_arrays):
            if a is not None and array is a:
                return ("arg", i)
        for i, a in enumerate(self.arg_arrays):
            if a is not None and np.shares_memory(array, a):
                raise ValueError(
                    f"fb.trace: {who} is a view of argument {i} {a.shape} {a.dtype} made "
                    f"outside fastbp's ops, so it could not follow the argument on later "
                    f"calls; use fastbp ops (reshape, indexing) on the argument instead"
                )
        if array.size > 1 and array.flags.writeable:
            self.freeze(
                f"{who} is an array of shape {array.shape} that is not an argument; its "
                f"values are baked into the trace as a constant (if it was computed from an "
                f"argument with NumPy, compute it with fastbp ops instead)"
            )
        return ("const", array)

    def _leaf(self, t: Tensor) -> int:
        """The leaf index of a tensor that no recorded op produced."""
        index = self.leaf_of.get(id(t))
        if index is not None:
            return index
        if t._node is not None:
            raise ValueError(
                f"fb.trace: the function uses a tensor of shape {t.shape} computed outside it "
                f"with a graph; compute it inside the function, or pass it .detach()ed"
            )
        arg = next((i for i, a in enumerate(self.args) if a is t), None)
        if arg is not None:
            leaf = ("arg", arg)
        elif t.requires_grad:
            leaf = ("tensor", t)  # a parameter: read afresh on every call
        else:
            source = self._source(t.data, f"a tensor of shape {t.shape}")
            leaf = ("tensor", t) if source[0] == "const" else source
        index = self.leaf_of[id(t)] = len(self.leaves)
        self.leaves.append(leaf)
        self.keep.append(t)
        return index

    def _ref(self, t: Tensor) -> tuple[str, int]:
        step = self.step_of.get(id(t))
        return ("step", step) if step is not None else ("leaf", self._leaf(t))

    def _array_ref(self, array: np.ndarray, who: str) -> tuple[str, int]:
        step = self.step_of_array.get(id(array))
        if step is not None and self.steps[step].data is array:
            return ("step", step)  # an op's output passed as an array (a where mask...)
        index = self.leaf_of.get(id(array))
        if index is None:
            index = self.leaf_of[id(array)] = len(self.leaves)
            self.leaves.append(self._source(array, who))
            self.keep.append(array)
        return ("leaf", index)

    # ------------------------------------------------------------------ engine reports
    def record_call(self, method: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        """Called through :func:`fastbp.core.observer.record_call`: make the call now, with
        the recorder paused (its own ops are part of the call), and replay it every call."""
        self._check_grads(f"{getattr(method, '__name__', 'the call')}()")
        self.events.append((_CALL, method, args, kwargs))
        set_observer(None)
        try:
            method(*args, **kwargs)
        finally:
            set_observer(self)
        self.backward_finished(None)  # what the call left is the new reference

    def record_op(self, op, inputs: tuple[Tensor, ...], params: dict, result) -> None:
        """Called by :func:`fastbp.core.engine.apply` after each op."""
        refs = tuple(self._ref(t) for t in inputs)
        arrays = []  # (name, ref) for an array, (name, ((position, ref), ...)) for a tuple
        for name, value in params.items():
            who = f"the {name!r} argument of '{op.name}'"
            if isinstance(value, np.ndarray):
                arrays.append((name, self._array_ref(value, who)))
            elif isinstance(value, tuple):  # an index such as (rows, labels)
                inner = tuple(
                    (k, self._array_ref(item, who))
                    for k, item in enumerate(value)
                    if isinstance(item, np.ndarray)
                )
                if inner:
                    arrays.append((name, inner))
        step = len(self.steps)
        self.events.append((_OP, step, op, refs, params, arrays))
        self.steps.append(result)
        self.step_of[id(result)] = step
        self.step_of_array[id(result.data)] = step
        if result._node is not None:
            self.step_of_node[id(result._node)] = step

    def record_backward(
        self, root: Tensor, grad: Any, seed: np.ndarray, retain_graph: bool
    ) -> None:
        """Called by :func:`fastbp.core.engine.backward` before it walks the graph.

        ``grad`` is what the user passed (None for the implicit 1), ``seed`` the array
        the engine made of it, in the root's dtype.
        """
        seed_ref = None
        if grad is not None:
            raw = grad.data if isinstance(grad, Tensor) else grad
            if not isinstance(raw, np.ndarray):
                raw = seed  # a Python number: a constant
            seed_ref = self._array_ref(raw, "the gradient passed to backward()")
        root_ref = self._ref(root)
        # The walk visits the records reachable from the root in decreasing ``seq``.
        nodes: dict[int, engine.Node] = {}
        stack = [root._node] if root._node is not None else []
        while stack:
            node = stack.pop()
            if id(node) in nodes:
                continue
            nodes[id(node)] = node
            for t, need in zip(node.inputs, node.needs, strict=True):
                if need and t._node is not None:
                    stack.append(t._node)
        visits = []
        for node in sorted(nodes.values(), key=lambda n: -n.seq):
            if node.saved is FREED:
                return  # the engine is about to raise its "second time" error
            step = self.step_of_node.get(id(node))
            if step is None:  # _leaf rejects such tensors first; kept as a guard
                raise ValueError("fb.trace: backward reaches an op recorded outside the function")
            dests = tuple(
                self._ref(t) if need else None
                for t, need in zip(node.inputs, node.needs, strict=True)
            )
            visits.append((step, node.op, node.needs, dests))
        self.events.append(
            (_BACKWARD, root_ref, seed_ref, seed.shape, seed.dtype, retain_graph, visits)
        )

    # ------------------------------------------------------------------ the program
    def finish(self, result: Any) -> _Program:
        """Check what the function returned and freeze the recording into a program."""
        self._check_grads("the end of the function")
        if _random_states() != self.random_states:
            self.freeze(
                "random numbers were drawn with NumPy's or Python's global generator; the "
                "values drawn at the first call are reused by every replay (draw them "
                "outside the traced function and pass them in as arguments)"
            )
        items = result if isinstance(result, tuple | list) else (result,)
        outputs = []
        for item in items:
            if item is None:
                outputs.append(None)
                continue
            if not isinstance(item, Tensor):
                raise TypeError(
                    f"fb.trace: the function returned a {type(item).__name__}; a traced "
                    f"function returns Tensors (or a tuple of them), since anything else "
                    f"would be frozen at its first value. Return the tensor and call "
                    f".item() on the result"
                )
            if item._node is not None and item._node.saved is not FREED:
                raise ValueError(
                    f"fb.trace: the function returned a tensor of shape {item.shape} that "
                    f"still has a graph, and a replay records none; call backward() inside "
                    f"the function, or compute it under fb.no_grad()"
                )
            outputs.append(self._ref(item))
        shape = type(result) if isinstance(result, tuple | list) else None
        return _Program(self, outputs, shape)


class _Program:
    """A recorded tape: everything a replay needs, as flat lists of indices."""

    def __init__(self, recorder: _Recorder, outputs: list, shape: type | None):
        n_steps = len(recorder.steps)
        self.n_steps = n_steps

        def index(ref):  # values[]: the op outputs first, then the leaves
            kind, i = ref
            return i if kind == "step" else n_steps + i

        # values[] and tensors[] of a call start as copies of these templates; then the
        # parameters' current arrays and the arguments are filled in.
        self.values_template: list[Any] = [None] * n_steps
        self.tensors_template: list[Tensor | None] = [None] * n_steps
        self.parameter_leaves: list[tuple[int, Tensor]] = []
        self.argument_leaves: list[tuple[int, int]] = []
        for j, (kind, *where) in enumerate(recorder.leaves, start=n_steps):
            self.values_template.append(where[0] if kind == "const" else None)
            self.tensors_template.append(where[0] if kind == "tensor" else None)
            if kind == "tensor":
                self.parameter_leaves.append((j, where[0]))
            elif kind == "arg":
                self.argument_leaves.append((j, where[0]))
        self.events = []
        for event in recorder.events:
            if event[0] == _OP:
                _, step, op, refs, params, arrays = event
                params = {k: v for k, v in params.items() if not isinstance(v, np.ndarray)}
                subs = tuple(
                    (name, index(ref))
                    if type(ref[0]) is str
                    else (name, tuple((k, index(r)) for k, r in ref))
                    for name, ref in arrays
                )
                inputs = tuple(map(index, refs))
                self.events.append((_OP, step, op.forward, inputs, params, subs, op))
            elif event[0] == _BACKWARD:
                _, root, seed, seed_shape, seed_dtype, retain, visits = event
                # Per record: where each needed input gradient goes (the vjp's slot
                # and the value it belongs to), so the replay skips the rest.
                plan = [
                    (step, op, needs, tuple((k, index(d)) for k, d in enumerate(dests) if d))
                    for step, op, needs, dests in visits
                ]
                if seed is None:  # the implicit d(root)/d(root) = 1, made once
                    seed = np.ones(seed_shape, seed_dtype)
                    seed.setflags(write=False)  # a vjp may hand it on; nobody may write it
                else:
                    seed = (index(seed), seed_dtype)  # cast like the engine, each call
                self.events.append((_BACKWARD, index(root), seed, retain, plan))
            else:
                self.events.append(event)
        self.outputs = [None if ref is None else index(ref) for ref in outputs]
        self.shape = shape
        # The array each value held while recording: the shapes and dtypes to compile for.
        examples = [t.data for t in recorder.steps]
        for kind, *where in recorder.leaves:
            if kind == "arg":
                examples.append(recorder.arg_arrays[where[0]])
            else:
                examples.append(where[0].data if kind == "tensor" else where[0])
        # The compiled step and its source, or None and why the replay runs instead.
        self.compiled, self.compile_note = compile_program(self, examples)
        self.frozen = recorder.frozen
        # Modules' snapshots are compared only when some module attribute was written
        # (nn.module.ATTRIBUTE_WRITES moved) since they last compared equal.
        self.modules = [s for s in recorder.watched.values() if s.module]
        self.watched = [s for s in recorder.watched.values() if not s.module]
        self.module_writes = recorder.module_writes
        self.globals: _Snapshot | None = None  # set by TracedFunction: what fn's names held

    def still_valid(self) -> bool:
        """False if a module or a name the function uses holds something else now."""
        if self.globals is not None and not self.globals.same():
            return False
        for snapshot in self.watched:
            if not snapshot.same():
                return False
        writes = ATTRIBUTE_WRITES[0]
        if writes != self.module_writes:
            for snapshot in self.modules:
                if not snapshot.same():
                    return False
            self.module_writes = writes
        return True

    def run(self, args: tuple[Any, ...]) -> Any:
        """Run the compiled step on ``args`` if there is one and it can, else replay the tape."""
        if self.compiled is not None:
            outputs = self.compiled(args)
            if outputs is not REPLAY:
                return self.compiled_results(outputs, args)
        n_steps = self.n_steps
        values = self.values_template[:]
        tensors = self.tensors_template[:]
        for j, t in self.parameter_leaves:
            values[j] = t.data
        for j, i in self.argument_leaves:
            a = args[i]
            if isinstance(a, Tensor):
                tensors[j] = a
                a = a.data
            values[j] = a
        saved: list[Any] = [None] * n_steps
        for event in self.events:
            kind = event[0]
            if kind == _OP:
                _, step, forward, inputs, params, subs, _ = event
                if subs:
                    params = dict(params)
                    for name, i in subs:
                        if type(i) is int:
                            params[name] = values[i]
                        else:  # a tuple holding arrays
                            items = list(params[name])
                            for k, j in i:
                                items[k] = values[j]
                            params[name] = tuple(items)
                out, saved[step] = forward(*[values[i] for i in inputs], **params)
                values[step] = out if type(out) is np.ndarray else np.asarray(out)
            elif kind == _BACKWARD:
                self._backward(event, values, tensors, saved)
            else:
                _, method, margs, mkwargs = event
                method(*margs, **mkwargs)
                # A call may rebind a parameter's array (loading a state, say).
                for j, t in self.parameter_leaves:
                    values[j] = t.data
        return self.results(values, tensors)

    def results(self, values: list, tensors: list) -> Any:
        """The function's return value, from the values of a call."""
        results = []
        for i in self.outputs:
            if i is None:
                results.append(None)
            elif tensors[i] is not None:
                results.append(tensors[i])
            else:
                results.append(_constant(values[i]))
        return results[0] if self.shape is None else self.shape(results)

    def compiled_results(self, outputs: list, args: tuple[Any, ...]) -> Any:
        """The function's return value after a compiled call (see ``CompiledStep``)."""
        if self.shape is None and type(outputs[0]) is np.ndarray:  # one tensor, the usual
            return _constant(outputs[0])
        results = []
        for out in outputs:
            if out is None:
                results.append(None)
            elif type(out) is tuple:  # an argument returned as it is
                a = args[out[1]]
                results.append(a if isinstance(a, Tensor) else _constant(a))
            else:
                results.append(_constant(out))
        return results[0] if self.shape is None else self.shape(results)

    def _backward(self, event, values, tensors, saved) -> None:
        _, root, seed, retain, plan = event
        n_steps = self.n_steps
        if type(seed) is tuple:
            seed = np.asarray(values[seed[0]]).astype(seed[1], copy=False)
        if root >= n_steps:  # the root is a leaf
            if tensors[root] is not None:
                accumulate_grad(tensors[root], seed, owned=False)
            return
        pending: list[Any] = [None] * n_steps
        pending[root] = seed
        for step, op, needs, routes in plan:
            dy = pending[step]
            if dy is None:  # no gradient reached this record (a vjp returned None)
                continue
            pending[step] = None
            grads = op.vjp(saved[step], dy, needs)
            if not retain:
                saved[step] = None
            for k, dest in routes:
                g = grads[k]
                if g is None:
                    continue
                if type(g) is not np.ndarray:
                    g = np.asarray(g)
                data = values[dest]
                if g.shape != data.shape or g.dtype is not data.dtype:
                    g = fit_gradient(g, data, op)
                if dest < n_steps:
                    previous = pending[dest]
                    pending[dest] = g if previous is None else previous + g
                elif tensors[dest] is not None:
                    hand_to_leaf(tensors[dest], g, dy, grads)


def _without_graph(t: Tensor) -> Tensor:
    """``t`` itself if no recorded op made it (as a replay returns), else its value alone."""
    return t if t._node is None else _constant(t.data)


def _signature(args: tuple[Any, ...]) -> tuple:
    key = [state.grad_enabled]
    for i, a in enumerate(args):
        kind = type(a)
        if kind is np.ndarray:
            key.append((a.shape, a.dtype))
        elif kind is Tensor or isinstance(a, Tensor):
            if a._node is not None:
                raise ValueError(
                    f"fb.trace: argument {i} (shape {a.shape}) was computed with a graph, "
                    f"which a traced function cannot extend; pass a leaf tensor or "
                    f".detach() it"
                )
            key.append((kind, a.data.shape, a.data.dtype, a.requires_grad))
        elif isinstance(a, np.ndarray):
            key.append((kind, a.shape, a.dtype))
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(
                    f"fb.trace: argument {i} is a {type(a).__name__}; pass arrays, tensors, or "
                    f"hashable values (numbers, strings), which select a separate trace"
                ) from None
            key.append((kind, a))
    # The same array passed twice is one value in a recording: part of the signature.
    if len(args) == 2:  # the usual (x, y), without a list and a set
        if args[0] is args[1]:
            key.append((0, 0))
    elif len(args) > 2:
        ids = [id(a) for a in args]
        if len(set(ids)) < len(ids):
            key.append(tuple(ids.index(k) for k in ids))
    return tuple(key)


class _Snapshot:
    """What an object's attributes (or a function's global names) referred to, by identity.

    Checked at every replay, so it compares identities only, with C-level loops: a module
    whose ``training`` flag, layers or parameters were rebound, or a global optimizer
    swapped for another, makes the trace record again rather than replay a stale program.
    """

    __slots__ = ("namespace", "keys", "values", "cells", "cell_values", "whole", "module")

    def __init__(self, namespace: dict, keys: list | None = None):
        self.namespace = namespace  # re-read at each check
        self.whole = keys is None
        self.keys = list(namespace) if keys is None else keys
        self.values = list(map(namespace.get, self.keys))
        self.cells: tuple = ()
        self.cell_values: list = []
        self.module = False  # a Module's attributes, which change only through its methods

    @classmethod
    def of_object(cls, obj: Any) -> _Snapshot:
        """The attributes of ``obj`` (its ``__dict__``)."""
        snapshot = cls(vars(obj))
        snapshot.module = isinstance(obj, Module)
        return snapshot

    @classmethod
    def of_names(cls, fn: Callable[..., Any]) -> _Snapshot | None:
        """The globals and closure cells ``fn`` reads, or None for a callable without code."""
        code = getattr(fn, "__code__", None)
        if code is None:
            return None
        names = [k for k in code.co_names if k in fn.__globals__]
        snapshot = cls(fn.__globals__, names)
        snapshot.cells = tuple(c for c in fn.__closure__ or () if _filled(c))
        snapshot.cell_values = [c.cell_contents for c in snapshot.cells]
        return snapshot

    def same(self) -> bool:
        if self.cells:
            try:
                now = list(map(_CONTENTS, self.cells))
            except ValueError:  # a cell emptied since (the enclosing name deleted)
                return False
            if not all(map(operator.is_, now, self.cell_values)):
                return False
        d = self.namespace
        # An object's attributes: one added or removed is a change. (A function's globals
        # hold other names too: only the ones it reads are compared.)
        if self.whole and len(d) != len(self.keys):
            return False
        return all(map(operator.is_, map(d.get, self.keys), self.values))


_CONTENTS = operator.attrgetter("cell_contents")
_EMPTY = object()


def _filled(cell) -> bool:
    try:
        return cell.cell_contents is not _EMPTY
    except ValueError:  # an empty cell (a name assigned later in the enclosing function)
        return False


def _random_states() -> tuple:
    """The global generators' states: NumPy's legacy one and Python's ``random``."""
    kind, keys, pos, *_ = np.random.get_state()  # noqa: NPY002 (the legacy global one)
    return (kind, keys.tobytes(), pos, random.getstate())


class TracedFunction:
    """A function that records its tape on its first call per signature and replays it after.

    Made by :func:`trace`; call it like the function it wraps.
    """

    def __init__(self, fn: Callable[..., Any], cache_size: int = CACHE_SIZE):
        if not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"fb.trace: cache_size must be an int >= 1, got {cache_size!r}")
        self.fn = fn
        self.cache_size = cache_size
        # Least recently used first: a full cache evicts one program, the oldest.
        self.programs: OrderedDict[tuple, _Program] = OrderedDict()
        self.recordings = 0  # how many times a program was recorded (re-recordings count)
        self._last: _Program | None = None
        functools.update_wrapper(self, fn)

    @property
    def compiled(self) -> tuple[bool, str]:
        """Whether the last call's step runs compiled (:mod:`fastbp.jit.compiler`), and if not, why.

        Returns
        -------
        (bool, str)
            ``(True, "")``, or ``(False, reason)``; ``(False, "not recorded yet")``
            before the first call. A compiled step whose last call fell back to the
            replay says why (say, an argument is not C-contiguous). When
            the recording froze Python state (a ``.item()`` inside the step, NumPy work on
            ``p.grad``, a constant array, random draws), the text ends with
            ``"frozen: "`` and what was frozen, one item per ``"; "``.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.trace(lambda x: x).compiled
        (False, 'not recorded yet')
        """
        if self._last is None:
            return False, "not recorded yet"
        frozen = "; ".join(self._last.frozen)
        if self._last.compiled is None:
            why = self._last.compile_note
            return False, f"{why}; frozen: {frozen}" if frozen else why
        fallback = self._last.compiled.fallback
        if fallback:
            why = f"compiled, but the last call was replayed: {fallback}"
            return False, f"{why}; frozen: {frozen}" if frozen else why
        return True, f"frozen: {frozen}" if frozen else ""

    @property
    def source(self) -> str | None:
        """The generated source of the last call's compiled step, or None if it replays.

        Example
        -------
        >>> import fastbp as fb
        >>> fb.trace(lambda x: x).source is None
        True
        """
        if self._last is None or self._last.compiled is None:
            return None
        return self._last.compile_note

    def __call__(self, *args: Any) -> Any:
        if state.observer is not None or state.anomaly:
            # Inside another recording, its recorder records these ops; in anomaly
            # mode every op must run through the engine to be checked.
            return self.fn(*args)
        key = _signature(args)
        program = self.programs.get(key)
        if program is not None:
            if program.still_valid():
                if program is not self._last:  # the last one called is already the newest
                    self.programs.move_to_end(key)
                    self._last = program
                return program.run(args)
            del self.programs[key]  # a module or a name changed: record again
        recorder = _Recorder(args)
        set_observer(recorder)
        try:
            result = self.fn(*args)
        finally:
            set_observer(None)
        program = recorder.finish(result)
        program.globals = _Snapshot.of_names(self.fn)
        self.recordings += 1
        while len(self.programs) >= self.cache_size:
            self.programs.popitem(last=False)
        self.programs[key] = self._last = program
        # Return what a replay returns: op outputs as tensors without a graph.
        if isinstance(result, Tensor):
            return _without_graph(result)
        if isinstance(result, tuple | list):
            return type(result)(None if t is None else _without_graph(t) for t in result)
        return result

    def __repr__(self) -> str:
        return f"<fb.trace of {getattr(self.fn, '__qualname__', self.fn)!r}>"


def trace(fn: Callable[..., Any] | None = None, *, cache_size: int = CACHE_SIZE) -> Any:
    """Record ``fn``'s tape on its first call, then replay the tape on later calls.

    Use it on a training step. The forward ops, ``backward()`` and the optimizer's
    ``zero_grad()``/``step()`` are recorded once per signature (the shapes and dtypes
    of the array and tensor arguments, the values of the others) and replayed with
    the new arguments, skipping the modules, the Tensors and the engine's
    book-keeping. The gradients, updates and results equal the eager ones.

    Parameters
    ----------
    fn : callable
        Takes arrays, tensors or hashable values (positionally) and returns a
        Tensor, a tuple of Tensors, or None. Tensors it returns must have no graph
        left (call ``backward()`` inside, or compute them under ``fb.no_grad()``).

    Returns
    -------
    TracedFunction
        Call it like ``fn``.

    Raises
    ------
    TypeError
        At a call, for an unhashable non-array argument; at the recording call, if
        ``fn`` returns something other than Tensors.
    ValueError
        At the recording call, if ``fn`` returns a tensor that still has a graph,
        uses a tensor computed outside it that has a graph, or gives an op a view of
        an argument made with NumPy.

    Notes
    -----
    As with ``torch.jit.trace`` and ``jax.jit``, Python code inside ``fn`` runs only
    when a signature is first seen: branches on tensor values, printing, learning
    rate changes made inside ``fn`` and NumPy computations outside fastbp's ops are
    frozen, and so is a copy of an argument made outside fastbp's ops (use
    ``fb.from_numpy``, which shares memory). Parameters and optimizer
    hyperparameters are read at every call, so change the learning rate outside
    ``fn``. Setting ``p.grad = None`` by hand inside ``fn`` is not replayed; call
    ``optimizer.zero_grad()`` or ``model.zero_grad()``, which are. Under
    ``fb.detect_anomaly()`` the function runs eagerly.

    A call records again when a module the function called, or a global or closure
    variable it reads, holds other objects than at the recording (a layer swapped,
    ``model.eval()``, another optimizer). Module attributes are compared only after
    some module attribute was written through the module's own methods (assignment,
    ``del``, ``train()``/``eval()``, buffers, hooks), so a write straight into a
    module's ``__dict__`` is not seen.

    When every op of a recorded step can be compiled, the step is also compiled into
    one Numba function (:mod:`fastbp.jit.compiler`; about a second per signature), which
    later calls run instead of the replay; :attr:`TracedFunction.compiled` tells.

    Example
    -------
    >>> import numpy as np, fastbp as fb
    >>> from fastbp import nn, optim
    >>> import fastbp.nn.functional as F
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> opt = optim.SGD(model.parameters(), lr=0.1)
    >>> @fb.trace
    ... def train_step(x, y):
    ...     opt.zero_grad()
    ...     loss = F.cross_entropy(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    ...     return loss
    >>> x, y = np.ones((2, 4), np.float32), np.array([0, 2])
    >>> first, second = train_step(x, y).item(), train_step(x, y).item()
    >>> second < first
    True
    """
    if fn is None:  # @fb.trace(cache_size=...)
        return functools.partial(TracedFunction, cache_size=cache_size)
    return TracedFunction(fn, cache_size)
