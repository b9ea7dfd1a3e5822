"""Compile a recorded training step into one Numba function.

Why
---
A replay (:mod:`fastbp.jit.tracing`) still calls each op's forward and vjp from Python: about a
microsecond per call, plus the kernels' own dispatch. For a small model those calls are a
third of the step (a batch of 16 through 784-128-10 spends ~70 µs in BLAS and ~45 µs
around it). The recorded program is plain data, so it can also be *written out* as one
function, straight-line source that calls the kernels one after the other, and compiled by
Numba into a single native call.

How
---
Every op that can be compiled has a :class:`JitForm` in :mod:`fastbp.jit.forms`, found by
the op's name: two small functions that write the op's forward and vjp as lines
of source into a :class:`Source`. This module walks the program's events in order:

* an op: its forward, into a buffer of the recorded output's shape and dtype;
* ``backward()``: the plan the recorder made, as vjp source, each gradient written
  straight into the buffer that will hold it (a parameter's gradient into the step's
  own gradient memory, laid out as the optimizer's flat buffers, from which ``p.grad``
  is lent when read); a second gradient for the same value goes into a scratch buffer
  and is added;
* ``optimizer.zero_grad()`` / ``optimizer.step()``: nothing, and the optimizer's update
  kernel over its flat buffers.

Every buffer is allocated once, when the step is compiled, and passed in as an
argument (Numba freezes global arrays as constants), packed into one array per dtype
(the function takes views of it). The matrix products call NumPy's
own OpenBLAS (:mod:`fastbp.jit.blas`), so results equal the eager step's bit for bit,
with one exception. An optimizer whose update is ``w ← beta·w + alpha·g`` (plain SGD) is
folded into each weight's gradient product, ``w ← beta·w + alpha·xᵀ·dy`` in one GEMM
(:meth:`_Writer._fold`). That rounds the update differently, and ``p.grad`` is then
computed when first read (:mod:`fastbp.jit.deferred`).

A program is compiled only if every event can be: an op without a ``JitForm`` (or with
arguments it does not handle), a gradient for a leaf that is not a parameter of the
step's one optimizer, or anything else unusual leaves the step to the replay, which
handles everything. ``TracedFunction.compiled`` tells which one runs, and why.

Example
-------
The source an op's :class:`JitForm` writes, by hand (``fb.trace(fn).source`` shows a whole
step's):

>>> import numpy as np
>>> from fastbp.jit.source import Source
>>> src = Source()
>>> src.examples["x"] = np.zeros((2, 3), np.float32)
>>> out = src.buffer(("value", 0), src.shape("x"), src.dtype("x"))
>>> src.line(f"np.negative(x, {out})")
>>> src.lines
['    np.negative(x, buf0)']
"""

from __future__ import annotations

import operator
import threading
import weakref
from typing import Any, NamedTuple

import numpy as np

from ..core.tensor import Tensor
from ..kernels import linear
from ..kernels._jit import JIT_DISABLED, kernel_jit
from . import blas
from .deferred import Deferred, pending_class
from .events import BACKWARD, OP
from .forms import FORMS
from .source import FLOATS, NotCompilable, Source

__all__ = ["compile_program", "CompiledStep", "REPLAY"]


class _Param(NamedTuple):
    tensor: Any  # the parameter's Tensor
    view: np.ndarray  # the optimizer's view of its flat data buffer
    slot: int  # its position in the optimizer's flat buffers
    start: int  # where it begins in them (and in the step's gradient memory)


# ----------------------------------------------------------------- gradient memory
# A compiled step writes its gradients into memory of its own, not into the optimizer's
# flat gradient buffer, and hands them out as ``p.grad`` only when they are read
# (fastbp.jit.deferred). An array handed out is built on a ``bytearray`` block, not on
# an ndarray, so NumPy makes that array the ``base`` of every view taken of it (and of
# views of those): it lives exactly as long as anything can reach its gradient. The step
# keeps a weak reference to each such array, and writes into a block only while none of
# them is alive; else it takes another block, so a gradient someone kept is never
# overwritten. Whether memory is free is thus known from Python's object lifetimes,
# not guessed from ``sys.getrefcount``, whose exact counts are a CPython detail.

_BLOCKS_KEPT = 2  # gradient blocks a step remembers (see CompiledStep._free_block)


class _GradBlock:
    """Memory for one step's parameter gradients, and the arrays lent out on it."""

    __slots__ = ("memory", "offset", "flat", "lent")

    def __init__(self, size: int, dtype: np.dtype):
        self.memory = bytearray(size * dtype.itemsize + 64)
        # Start on a cache line, as BLAS and the vectorised kernels prefer.
        self.offset = -np.frombuffer(self.memory, np.uint8).ctypes.data % 64
        self.flat = np.ndarray((size,), dtype, self.memory, self.offset)  # the step's own
        self.lent: list[weakref.ref] = []

    def in_use(self) -> bool:
        """True while an array lent out on this block is alive."""
        if self.lent:
            self.lent = [ref for ref in self.lent if ref() is not None]
        return bool(self.lent)

    def lend(self, shape: tuple[int, ...], start: int) -> np.ndarray:
        """An array of ``shape`` on elements ``start...`` of the block, watched."""
        dtype = self.flat.dtype
        out = np.ndarray(shape, dtype, self.memory, self.offset + start * dtype.itemsize)
        self.lent.append(weakref.ref(out))
        return out


class _StepGradients(Deferred):
    """The gradients of one completed call: what every parameter's ``.grad`` defers to."""

    __slots__ = ("step", "block", "buffers")

    def __init__(self, step: CompiledStep, block: _GradBlock, buffers: tuple):
        self.step = step
        self.block = block
        self.buffers = buffers  # the call's buffers (the folded products' x and dy)

    def compute(self, tensor) -> np.ndarray:
        step = self.step
        k = step.index[id(tensor)]
        p = step.params[k]
        out = self.block.lend(p.view.shape, p.start)
        fold = step.fold_of.get(k)
        if fold is not None:  # never written out: computed now, from the call's x and dy
            _weight_gradient(self.buffers[fold[0]], self.buffers[fold[1]], out)
        return out


def _weight_gradient(x: np.ndarray, dy: np.ndarray, out: np.ndarray) -> None:
    """``xᵀ·dy`` into ``out``: a folded weight's ``p.grad``."""
    blas.gemm(x, True, dy, False, out, 1.0, 0.0)


class CompiledStep:
    """A program compiled into one function, with the checks that let it run.

    Calling it runs the step and returns, per output of the traced function, None,
    ``("arg", position)`` or a copy of the output's array; or it returns
    :data:`REPLAY` when this call must be replayed instead (an argument that is not
    C-contiguous, a parameter rebound, an error raised inside, e.g. by a non-finite
    loss), and says why in ``fallback``.
    """

    def __init__(self, function, arg_slots, params, optimizer, flat, packs, views, outputs, folded):
        self.function = function
        self.arg_slots = arg_slots  # positions of the traced function's array arguments
        self.params = params
        self.tensors = [p.tensor for p in params]
        self.data_views = [p.view for p in params]
        self.index = {id(t): k for k, t in enumerate(self.tensors)}  # kept alive by params
        self.pending = [pending_class(type(t)) for t in self.tensors]
        self.optimizer = optimizer
        self.flat = flat
        self.outputs = outputs  # per output: ("arg", position), ("buffer", position) or None
        # Per parameter whose update is folded into its gradient's product: the positions
        # of that product's x and dy among the buffers. The buffers holding them alternate
        # between two sets from call to call (see _Writer._fold); the others are shared.
        self.fold_of = {k: (x, dy) for k, x, dy in folded}
        self.folded = bool(folded)
        self.packs = packs  # per set: the arrays every buffer is a view of
        self.views = views  # per set: each buffer, as a view of the packs
        self.current = 0
        if flat is not None:
            self.block = _GradBlock(flat.grad.size, flat.grad.dtype)
            self.blocks = [self.block]
        self._rule = None  # the update rule the arguments below were made for
        self._fixed: tuple = ()
        self._fixed_block = None
        self.busy = threading.Lock()
        self.fallback = ""  # why the last call was replayed ("" if it ran compiled)

    def _replay(self, why: str) -> object:
        self.fallback = why
        return REPLAY

    def _free_block(self) -> _GradBlock:
        """A block no lent gradient uses: someone kept last step's ``p.grad`` (or it is
        still in its slot, read). Two blocks are remembered, so a loop that reads every
        step's gradients has them take turns; a block forgotten while in use is freed
        with the last array lent out of it."""
        for block in self.blocks:
            if block is not self.block and not block.in_use():
                return block
        block = _GradBlock(self.flat.grad.size, self.flat.grad.dtype)
        self.blocks = [self.block, block][-_BLOCKS_KEPT:]
        return block

    def __call__(self, args: tuple[Any, ...]) -> Any:
        arrays = []
        flat = self.flat
        data = None if flat is None else flat.data
        for i in self.arg_slots:
            a = args[i]
            if not isinstance(a, np.ndarray):  # a Tensor
                a = a.data
            if not a.flags.c_contiguous:
                return self._replay(f"argument {i} is not C-contiguous")
            # The step updates parameters before it has read every argument. An array
            # owning its memory (no base) cannot overlap the parameters' buffer.
            base = a.base
            if base is not None and data is not None and np.may_share_memory(a, data):
                return self._replay(f"argument {i} shares memory with the parameters")
            arrays.append(a)
        block = None
        if flat is not None:
            if flat.uniform is None:
                return self._replay("the parameters have had different numbers of updates")
            if not all(map(operator.is_, map(_DATA, self.tensors), self.data_views)) or not all(
                map(_REQUIRES_GRAD, self.tensors)
            ):
                return self._replay("a parameter was rebound or no longer requires grad")
            rule = self.optimizer.update_rule(flat)
            if rule is None:  # e.g. maximize turned on since the step was compiled
                return self._replay("the optimizer's update has no compiled rule now")
            if self.folded and rule.fold is None:
                return self._replay(
                    "the optimizer's update can no longer be folded "
                    "into the weight gradients (momentum turned on?)"
                )
            block = self.block
            if block.lent and block.in_use():
                block = self._free_block()
            if rule is not self._rule or block is not self._fixed_block:
                if rule.arrays[0] is not data:
                    return self._replay("the optimizer's update runs on other buffers")
                # The parameters are views of data (arrays[0]); the gradients, of the block.
                fold = rule.fold if self.folded else ()
                self._fixed = (data, block.flat, *rule.arrays[2:], *rule.scalars, *fold)
                self._rule, self._fixed_block = rule, block
            arrays.extend(self._fixed)
        # The buffers are this step's own: a second thread calling it meanwhile replays.
        if not self.busy.acquire(blocking=False):
            return self._replay("another thread is running this step")
        try:
            # A step returns 1 where the eager step would raise (a label out of range, NaN
            # logits), before any gradient or parameter is written: the replay then raises
            # the engine's error.
            current = self.current
            status = self.function(*arrays, *self.packs[current])
            if status != 0:
                return self._replay("the step stopped where the eager step raises")
            self.current ^= 1
            self.fallback = ""
            buffers = self.views[current]
            # Copies: the buffers are overwritten by the next call.
            outputs = [
                out if out is None or out[0] == "arg" else buffers[out[1]].copy()
                for out in self.outputs
            ]
        finally:
            self.busy.release()
        if flat is not None:
            self.block = block
            # Every p.grad is this call's, made when first read (fastbp.jit.deferred).
            gradients = _StepGradients(self, block, buffers)
            for t, cls in zip(self.tensors, self.pending, strict=True):
                _SET_GRAD(t, gradients)
                if type(t) is not cls:
                    t.__class__ = cls
                t._version += 1
            flat.uniform += 1
        return outputs


_DATA = operator.attrgetter("data")
_REQUIRES_GRAD = operator.attrgetter("requires_grad")
_SET_GRAD = Tensor.__dict__["grad"].__set__  # the slot, under a pending class's property

REPLAY = object()


def compile_program(program, examples: list[np.ndarray | None]) -> tuple[Any, str]:
    """Compile ``program`` (a fastbp.jit.tracing._Program) if it can be.

    Parameters
    ----------
    program : fastbp.jit.tracing._Program
        The recorded tape.
    examples : list of ndarray or None
        For each of the program's values, the array it held while recording.

    Returns
    -------
    (CompiledStep or None, str)
        The compiled step and the generated source, or None and why it was not compiled.

    Example
    -------
    >>> from fastbp.jit.source import NotCompilable
    >>> issubclass(NotCompilable, Exception)
    True
    """
    if not blas.AVAILABLE:
        return None, "NumPy's OpenBLAS CBLAS functions were not found (fastbp.jit.blas)"
    try:
        return _Writer(program, examples).write()
    except NotCompilable as why:
        return None, str(why)


class _Writer:
    """Writes the source of one program: see the module docstring."""

    def __init__(self, program, examples):
        self.program = program
        self.examples = examples
        self.src = Source()
        self.names: dict[int, str] = {}  # value index -> variable name
        self.arg_slots: list[int] = []
        self.arg_of: dict[int, int] = {}  # value index -> position among the arguments
        self.param_of: dict[int, int] = {}  # value index -> number of the parameter
        self.slot_of: dict[int, int] = {}  # value index -> the parameter's optimizer slot
        self.optimizer = None
        self.zeroed = False
        self.stepped = False
        self.backward_done = False
        self.leaf_grads: dict[int, str] = {}  # parameter value index -> its gradient's name
        self.finished: dict[int, int] = {}  # parameter value index -> line after its gradient
        self.accumulated: set[int] = set()  # parameters given more than one gradient
        self.folded: dict[int, tuple[str, str]] = {}  # parameter value index -> (x, dy)

    # ------------------------------------------------------------------ values
    def _value(self, index: int) -> str:
        """The variable name of value ``index`` (arguments and constants on first use)."""
        name = self.names.get(index)
        if name is not None:
            return name
        program, src = self.program, self.src
        position = dict(program.argument_leaves).get(index)
        if position is not None:
            name = f"arg{position}"
            example = self.examples[index]
            src.require(isinstance(example, np.ndarray), "an argument is not an array")
            src.examples[name] = example
            self.arg_slots.append(position)
            self.arg_of[index] = position
        else:  # parameters are named up front: what is left is a constant
            constant = program.values_template[index]
            src.require(isinstance(constant, np.ndarray), "a value of unknown origin")
            name = src.buffer(("constant", index), constant.shape, constant.dtype)
            src.buffers[name] = src.examples[name] = np.ascontiguousarray(constant)  # baked in
        self.names[index] = name
        return name

    def _params(self, event_params: dict, subs: tuple) -> dict:
        params = dict(event_params)
        for name, index in subs:
            self.src.require(type(index) is int, "an op takes a tuple of arrays")
            params[name] = self._value(index)
        return params

    # ------------------------------------------------------------------ events
    def write(self) -> tuple[CompiledStep, str]:
        program, src = self.program, self.src
        self._name_parameters()
        self.op_of: dict[int, tuple] = {}  # step -> the names of its inputs, its params
        for event in program.events:
            if event[0] == OP:
                self._forward(event)
            elif event[0] == BACKWARD:
                self._backward(event)
            else:
                self._call(event)
        if self.optimizer is not None:
            src.require(self.stepped, "the optimizer's step() is not part of the function")
        outputs = []
        for index in program.outputs:
            if index is None:
                outputs.append(None)
            elif index in self.arg_of:
                outputs.append(("arg", self.arg_of[index]))
            else:
                src.require(index < program.n_steps, "the function returns a parameter")
                outputs.append(("buffer", self._value(index)))
        return self._build(outputs)

    def _name_parameters(self) -> None:
        for k, (j, t) in enumerate(self.program.parameter_leaves):
            self.names[j] = f"param{k}"
            self.param_of[j] = k
            self.src.examples[f"param{k}"] = t.data

    def _forward(self, event) -> None:
        _, step, _, inputs, params, subs, op = event
        src = self.src
        form = FORMS.get(op.name)
        src.require(form is not None, f"op '{op.name}' has no compiled form")
        src.require(not self.backward_done, "an op runs after backward()")
        example = self.examples[step]
        src.require(example.dtype in FLOATS, f"op '{op.name}' has a non-float output")
        name = self.names[step] = src.buffer(("value", step), example.shape, example.dtype)
        names = tuple(self._value(i) for i in inputs)
        params = self._params(params, subs)
        self.op_of[step] = (names, params)
        src.line(f"# {op.name}")
        form.forward(src, name, names, params)

    def _backward(self, event) -> None:
        _, root, seed, _retain, plan = event
        src, program = self.src, self.program
        src.require(not self.backward_done, "more than one backward()")
        src.require(isinstance(seed, np.ndarray), "backward() is given a gradient")
        src.require(root < program.n_steps, "backward() of a leaf")
        self.backward_done = True
        pending: dict[int, str] = {root: src.buffer("seed", seed.shape, seed.dtype)}
        src.buffers[pending[root]][...] = seed
        parameters = {j for j, _ in program.parameter_leaves}
        for step, op, _needs, routes in plan:
            dy = pending.get(step)
            if dy is None:
                continue
            inputs, params = self.op_of[step]
            grads: list[str | None] = [None] * len(inputs)
            adds = []
            for k, dest in routes:
                shape, dtype = src.shape(inputs[k]), src.dtype(inputs[k])
                if dest >= program.n_steps:
                    src.require(dest in parameters, "a gradient for a leaf that is no parameter")
                    target = self.leaf_grads.get(dest)
                    if target is None:
                        target = self.leaf_grads[dest] = f"grad{self.param_of[dest]}"
                        src.examples[target] = self.examples[dest]
                        grads[k] = target
                        continue
                else:
                    target = pending.get(dest)
                    if target is None:
                        target = pending[dest] = src.buffer(("grad", dest), shape, dtype)
                        src.private_gradients.add(target)
                        grads[k] = target
                        continue
                # A second gradient for the same value: into scratch, then added.
                if dest >= program.n_steps:
                    self.accumulated.add(dest)
                scratch = src.buffer(("scratch", step, k), shape, dtype)
                grads[k] = scratch
                adds.append((target, scratch))
            src.line(f"# {op.name} vjp")
            FORMS[op.name].vjp(src, self.names[step], inputs, params, dy, tuple(grads))
            for target, scratch in adds:
                src.line(f"np.add({target}, {scratch}, {target})")
            for _, dest in routes:
                if dest >= program.n_steps:
                    self.finished[dest] = len(src.lines)  # its gradient is complete here

    def _call(self, event) -> None:
        _, method, margs, mkwargs = event
        src = self.src
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", "")
        src.require(
            getattr(owner, "update_kernel", None) is not None and name in ("zero_grad", "step"),
            f"the call {name}() is not an optimizer's zero_grad() or step()",
        )
        src.require(self.optimizer in (None, owner), "more than one optimizer")
        src.require(len(owner.flat_buffers) == 1, "the optimizer holds parameters of two dtypes")
        self.optimizer = owner
        if name == "zero_grad":
            src.require(not self.backward_done, "zero_grad() after backward()")
            # Either way the step writes each gradient whole (into zeros, eagerly).
            self.zeroed = True
            return
        src.require(self.backward_done and self.zeroed, "step() without zero_grad(), backward()")
        src.require(not self.stepped, "step() twice")
        self.stepped = True
        flat = owner.flat_buffers[0]
        slot = {id(p): i for i, p in enumerate(flat.params)}
        for j, t in self.program.parameter_leaves:
            src.require(id(t) in slot, "a parameter outside the optimizer")
            self.slot_of[j] = slot[id(t)]
        src.require(
            len(self.leaf_grads) == len(flat.params),
            "a parameter of the optimizer gets no gradient, or is not used",
        )
        # Each parameter is updated as soon as its gradient is complete, while the
        # gradient is still in cache, rather than in one pass over the flat buffers
        # after backward. The update is elementwise, so the bits are the same; and no
        # later line reads the parameter (every op using it has had its vjp by then).
        self._fold(owner)
        gemm = src.kernel("gemm", blas.gemm)
        rule = owner.update_rule(flat)
        src.require(rule is not None, "the parameters have had different numbers of updates")
        kernel = src.kernel("update", rule.kernel)
        arrays = len(rule.arrays)  # data, grad and state buffers come first, then scalars
        args = [f"opt{i}" for i in range(arrays + len(rule.scalars))]
        for j, where in sorted(self.finished.items(), key=lambda item: -item[1]):
            if j in self.folded:
                x, dy = self.folded[j]
                src.lines.insert(
                    where,
                    f"    {gemm}({x}, True, {dy}, False, param{self.param_of[j]}, "
                    f"fold_alpha, fold_beta)  # step",
                )
                continue
            sl = flat.slices[self.slot_of[j]]
            sliced = [f"{a}[{sl.start}:{sl.stop}]" for a in args[:arrays]] + args[arrays:]
            src.lines.insert(where, f"    {kernel}({', '.join(sliced)})  # step")

    def _fold(self, optimizer) -> None:
        """Fold the optimizer's update into each weight gradient that allows it.

        With an update ``w ← beta·w + alpha·g`` (plain SGD), a weight whose gradient is one
        product ``xᵀ·dy`` is updated by that product alone, ``w ← beta·w + alpha·xᵀ·dy``
        in one GEMM: the gradient is never written out, nor read back by the update (a
        pass over the weights and their gradients saved). ``p.grad`` computes ``xᵀ·dy``
        when read (:mod:`fastbp.jit.deferred`), so ``x`` and ``dy`` must outlive
        the step: an argument is copied (the caller may change it), and the step's
        buffers holding them alternate between two sets from call to call, so that a
        call that stops early (and replays) leaves the last step's gradients readable.
        """
        if optimizer.fold_coefficients(optimizer.param_groups[0]) is None:
            return
        src = self.src
        arguments = {self.names[index] for index in self.arg_of}
        for j, k in self.param_of.items():
            product = src.products.get(f"grad{k}")
            if product is None or j in self.accumulated:
                continue
            line, x, dy = product
            if x in arguments:
                copy = src.buffer(("argument copy", x), src.shape(x), src.dtype(x))
                kernel = src.kernel("copy_matrix", linear._copy_matrix)
                src.lines[line] = f"    {kernel}({x}, {copy})"
                x = copy
            elif x not in src.buffers:  # a parameter: it changes during the step
                continue
            else:
                src.lines[line] = f"    # grad{k} = {x}ᵀ·{dy}: folded into param{k}'s update"
            self.folded[j] = (x, dy)

    # ------------------------------------------------------------------ the function
    def _build(self, outputs) -> tuple[CompiledStep, str]:
        src, program = self.src, self.program
        flat = None
        params: list[_Param] = []
        header = [f"arg{i}" for i in self.arg_slots]
        # Arrays are passed in as few arguments as can be: Numba's dispatcher spends about
        # a third of a microsecond on each array argument, against a few nanoseconds for a
        # view taken inside. So the parameters are views of the optimizer's flat data
        # (opt0), the gradients of the step's gradient memory (opt1), and the buffers of
        # one array per dtype (a second one for the folded products' x and dy).
        prologue = []
        if self.optimizer is not None:
            flat = self.optimizer.flat_buffers[0]
            rule = self.optimizer.update_rule(flat)  # not None: checked in _call
            src.require(
                rule.arrays[0] is flat.data and rule.arrays[1] is flat.grad,
                "the optimizer's update rule does not run on its flat data and gradients",
            )
            for k, (j, t) in enumerate(program.parameter_leaves):
                i = self.slot_of[j]
                sl = flat.slices[i]
                params.append(_Param(t, flat.data_views[i], i, sl.start))
                shape = tuple(t.data.shape)
                prologue.append(f"param{k} = opt0[{sl.start}:{sl.stop}].reshape({shape})")
                prologue.append(f"grad{k} = opt1[{sl.start}:{sl.stop}].reshape({shape})")
            count = len(rule.arrays) + len(rule.scalars)
            header += [f"opt{i}" for i in range(count)]
            if self.folded:
                header += ["fold_alpha", "fold_beta"]
        else:
            src.require(not program.parameter_leaves, "parameters without an optimizer step")
        position = {name: i for i, name in enumerate(src.buffers)}
        kept = {name for pair in self.folded.values() for name in pair}
        packs, views, pack_lines = _pack(src.buffers, kept)
        header += [name for name, _ in pack_lines]
        for _, lines in pack_lines:
            prologue += lines
        body = ["    " + line for line in prologue] + src.lines
        text = f"def step({', '.join(header)}):\n" + "\n".join(body) + "\n    return 0\n"
        namespace = dict(src.globals)
        exec(compile(text, "<fastbp compiled step>", "exec"), namespace)
        function = namespace["step"]
        if not JIT_DISABLED:
            function = kernel_jit(cache=False)(function)
        folded = [
            (self.param_of[j], position[x], position[dy]) for j, (x, dy) in self.folded.items()
        ]
        step = CompiledStep(
            function,
            self.arg_slots,
            params,
            self.optimizer,
            flat,
            packs,
            views,
            [
                out if out is None or out[0] == "arg" else ("buffer", position[out[1]])
                for out in outputs
            ],
            folded,
        )
        return step, text


def _pack(buffers: dict[str, np.ndarray], kept: set[str]):
    """Lay the buffers out in one array per dtype; those in ``kept`` in two copies.

    Returns, per set of buffers (two: the kept ones differ), the arrays to pass; per set,
    each buffer as a view of them, in ``buffers``' order; and per array, its argument
    name with the lines of source that take the buffers' views of it.
    """
    groups: dict[tuple[bool, np.dtype], list[str]] = {}
    for name, b in buffers.items():
        groups.setdefault((name in kept, b.dtype), []).append(name)
    packs: tuple[list, list] = ([], [])
    views: tuple[dict, dict] = ({}, {})
    pack_lines = []
    for n, ((alternates, dtype), names) in enumerate(groups.items()):
        # Each buffer starts on a cache line (64 bytes), as separate allocations would.
        per_line = max(1, 64 // dtype.itemsize)
        starts, size = [], 0
        for name in names:
            starts.append(size)
            size += -(-max(buffers[name].size, 1) // per_line) * per_line
        lines = []
        arrays = [_aligned(size, dtype)]
        arrays.append(_aligned(size, dtype) if alternates else arrays[0])
        for name, start in zip(names, starts, strict=True):
            b = buffers[name]
            stop = start + b.size
            lines.append(f"{name} = pack{n}[{start}:{stop}].reshape({tuple(b.shape)})")
            for s, array in enumerate(arrays):
                view = array[start:stop].reshape(b.shape)
                view[...] = b  # a constant, the seed: what the buffer was given
                views[s][name] = view
        for s in (0, 1):
            packs[s].append(arrays[s])
        pack_lines.append((f"pack{n}", lines))
    order = list(buffers)
    return (
        tuple(tuple(p) for p in packs),
        tuple(tuple(v[name] for name in order) for v in views),
        pack_lines,
    )


def _aligned(size: int, dtype: np.dtype) -> np.ndarray:
    """An array of ``size`` elements starting on a cache line."""
    raw = np.empty(size * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size * dtype.itemsize].view(dtype)
