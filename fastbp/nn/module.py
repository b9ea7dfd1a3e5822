"""``Module`` and ``Parameter``: containers that own trainable tensors and submodules.

A module registers what is assigned to it: a :class:`~fastbp.Tensor` that requires a
gradient becomes a parameter, a :class:`Module` becomes a child. Registration order
is kept, so :meth:`Module.parameters` always yields the same tensors in the same
order (own parameters first, then each child's, depth first), which is what an
optimizer and a state dict rely on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..core.observer import record_call, record_object
from ..core.state import state
from ..core.tensor import Tensor

__all__ = ["Module", "Parameter", "RemovableHandle"]

# How many attribute writes modules have had through their own methods (assignment,
# del, train()/eval(), buffers, hooks). A traced function (fastbp.jit) snapshots the
# attributes of the modules it calls; while this count is unchanged, none was written,
# and the snapshots need not be compared again before a replay.
ATTRIBUTE_WRITES = [0]


class Parameter(Tensor):
    """A leaf tensor that requires a gradient: the marker for a trainable weight.

    Any tensor with ``requires_grad=True`` assigned to a module is registered as a
    parameter; this subclass only makes the intent explicit and prints as such.
    The array is shared, not copied.

    Parameters
    ----------
    data : array_like or Tensor
        Floating-point values.
    requires_grad : bool, default True
        Whether the parameter is trainable.

    Raises
    ------
    TypeError
        If the data is not floating point (only floats can require gradients).

    Example
    -------
    >>> import numpy as np
    >>> from fastbp.nn import Parameter
    >>> p = Parameter(np.zeros(3, dtype=np.float32))
    >>> p.requires_grad, p.shape
    (True, (3,))
    """

    __slots__ = ()

    def __init__(self, data: Any, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def _is_parameter(value: Any) -> bool:
    # A non-leaf that requires grad (an activation cached on the module) is not trainable
    # and must not end up in parameters() or the state dict.
    return isinstance(value, Parameter) or (
        isinstance(value, Tensor) and value.requires_grad and value._node is None
    )


def _indent(text: str, spaces: int) -> str:
    """Indent every line but the first (the first follows a ``(name): `` prefix)."""
    lines = text.split("\n")
    pad = " " * spaces
    return "\n".join([lines[0]] + [pad + line for line in lines[1:]])


class Module:
    """Base class of layers and models: holds parameters and submodules.

    Subclasses call ``super().__init__()`` first, then assign their parameters
    (tensors with ``requires_grad=True``) and submodules as attributes, and
    implement :meth:`forward`. Calling the module calls ``forward``.

    Attributes
    ----------
    training : bool
        True in training mode (the default), False after :meth:`eval`.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> class Affine(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = fb.ones(3, requires_grad=True)
    ...         self.inner = nn.Linear(3, 2)
    ...     def forward(self, x):
    ...         return self.inner(x * self.scale)
    >>> [name for name, _ in Affine().named_parameters()]
    ['scale', 'inner.weight', 'inner.bias']
    """

    training: bool

    def __init__(self) -> None:
        # Set through object.__setattr__: our __setattr__ needs these dicts to exist.
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_forward_pre_hooks", {})
        object.__setattr__(self, "_forward_hooks", {})
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name: str, value: Any) -> None:
        ATTRIBUTE_WRITES[0] += 1
        d = self.__dict__
        params = d.get("_parameters")
        if params is None:
            if isinstance(value, Module) or _is_parameter(value):
                raise AttributeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} '{name}' "
                    f"before Module.__init__(); call super().__init__() first in __init__"
                )
            object.__setattr__(self, name, value)
            return
        modules = d["_modules"]
        buffers = d.get("_buffers")
        if buffers is not None and name in buffers:
            # Reassigning a buffer (e.g. a running statistic) keeps it a buffer.
            if value is not None and not isinstance(value, Tensor):
                value = Tensor(np.asarray(value))
            buffers[name] = value
            object.__setattr__(self, name, value)
            return
        if isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
        elif _is_parameter(value):
            modules.pop(name, None)
            params[name] = value
        elif name in params or name in modules:
            if value is not None:
                kind = "parameter" if name in params else "submodule"
                raise TypeError(
                    f"{type(self).__name__}: cannot assign {type(value).__name__} to the "
                    f"registered {kind} '{name}'; assign a tensor with requires_grad=True "
                    f"(or a Module), or None, or `del` the attribute first"
                )
            # None keeps the slot (like an absent bias) but it holds nothing.
            (params if name in params else modules)[name] = None
        # Kept in __dict__ too, so reading ``self.weight`` in forward is a plain lookup.
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        ATTRIBUTE_WRITES[0] += 1
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self.__dict__.get("_buffers", {}).pop(name, None)
        self.__dict__.get("_non_persistent", set()).discard(name)
        object.__delattr__(self, name)

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        """Register ``param`` under ``name`` (same as assigning the attribute).

        Parameters
        ----------
        name : str
            Attribute name; must not contain a dot.
        param : Tensor or None
            A tensor with ``requires_grad=True``, or None for an empty slot.

        Raises
        ------
        ValueError
            If ``name`` is empty or contains a dot.
        TypeError
            If ``param`` does not require a gradient.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> m = nn.Module()
        >>> m.register_parameter("w", fb.zeros(2, requires_grad=True))
        >>> list(m.state_dict())
        ['w']
        """
        _check_name(self, name)
        if param is not None and not _is_parameter(param):
            raise TypeError(
                f"{type(self).__name__}.register_parameter('{name}'): expected a tensor with "
                f"requires_grad=True or None, got {type(param).__name__}"
                + (" with requires_grad=False" if isinstance(param, Tensor) else "")
            )
        if param is None:
            self._modules.pop(name, None)
            self._parameters[name] = None
            ATTRIBUTE_WRITES[0] += 1
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, param)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` as a child under ``name`` (same as assigning it).

        Parameters
        ----------
        name : str
            Attribute name; must not contain a dot.
        module : Module or None
            The child.

        Raises
        ------
        ValueError
            If ``name`` is empty or contains a dot.
        TypeError
            If ``module`` is not a Module.

        Example
        -------
        >>> from fastbp import nn
        >>> m = nn.Module()
        >>> m.add_module("act", nn.ReLU())
        >>> m
        Module(
          (act): ReLU()
        )
        """
        _check_name(self, name)
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}.add_module('{name}'): expected a Module, "
                f"got {type(module).__name__}"
            )
        if module is None:
            self._parameters.pop(name, None)
            self._modules[name] = None
            ATTRIBUTE_WRITES[0] += 1
            object.__setattr__(self, name, None)
        else:
            setattr(self, name, module)

    # ---------------------------------------------------------------------- calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the module's output; subclasses must override it.

        Raises
        ------
        NotImplementedError
            Always, on the base class.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    # Class-level empty defaults: a module whose __init__ predates hooks still calls fast.
    _forward_pre_hooks: dict = {}
    _forward_hooks: dict = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if state.observer is not None:  # a trace records again if this module changes
            record_object(self)
        if self._forward_pre_hooks or self._forward_hooks:
            return self._call_with_hooks(args, kwargs)
        return self.forward(*args, **kwargs)

    def _call_with_hooks(self, args: tuple, kwargs: dict) -> Any:
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # -------------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, child)`` for the direct submodules, in registration order.

        Example
        -------
        >>> from fastbp import nn
        >>> [n for n, _ in nn.Sequential(nn.ReLU(), nn.Tanh()).named_children()]
        ['0', '1']
        """
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator[Module]:
        """Yield the direct submodules, in registration order.

        Example
        -------
        >>> from fastbp import nn
        >>> len(list(nn.Sequential(nn.ReLU(), nn.Tanh()).children()))
        2
        """
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module and all descendants, depth first.

        This module comes first with the name ``prefix`` (empty by default); a module
        reachable twice is yielded once.

        Example
        -------
        >>> from fastbp import nn
        >>> [n for n, _ in nn.Sequential(nn.Linear(2, 2), nn.ReLU()).named_modules()]
        ['', '0', '1']
        """
        seen: set[int] = set()
        stack: list[tuple[str, Module]] = [(prefix, self)]
        # An explicit stack, not recursion: very deep nestings must not hit the limit.
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            kids = [
                (f"{name}.{child_name}" if name else child_name, child)
                for child_name, child in module.named_children()
            ]
            stack.extend(reversed(kids))

    def modules(self) -> Iterator[Module]:
        """Yield this module and all its descendants, depth first.

        Example
        -------
        >>> from fastbp import nn
        >>> [type(m).__name__ for m in nn.Sequential(nn.ReLU()).modules()]
        ['Sequential', 'ReLU']
        """
        for _, module in self.named_modules():
            yield module

    def named_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(dotted_name, parameter)`` in a fixed order.

        The order is each module's own parameters in registration order, modules
        visited depth first (this module, then its first child and that child's
        descendants, then the next child). A tensor shared by two modules is yielded
        once, under its first name.

        Parameters
        ----------
        prefix : str, default ""
            Prepended (with a dot) to every name.
        recurse : bool, default True
            Include the parameters of submodules.

        Returns
        -------
        iterator of (str, Tensor)

        Example
        -------
        >>> from fastbp import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        >>> [name for name, _ in net.named_parameters()]
        ['0.weight', '0.bias', '2.weight', '2.bias']
        """
        seen: set[int] = set()
        walk = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for module_name, module in walk:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        """Yield the parameters in the order of :meth:`named_parameters`.

        Parameters
        ----------
        recurse : bool, default True
            Include the parameters of submodules.

        Returns
        -------
        iterator of Tensor

        Example
        -------
        >>> from fastbp import nn
        >>> [p.shape for p in nn.Linear(4, 3).parameters()]
        [(4, 3), (3,)]
        """
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    # ------------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and all below.

        Parameters
        ----------
        mode : bool, default True

        Returns
        -------
        Module
            ``self``, so calls can be chained.

        Example
        -------
        >>> from fastbp import nn
        >>> nn.Sequential(nn.ReLU()).train(False)[0].training
        False
        """
        mode = bool(mode)
        ATTRIBUTE_WRITES[0] += 1
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> Module:
        """Switch to evaluation mode: same as ``train(False)``.

        Returns
        -------
        Module
            ``self``.

        Example
        -------
        >>> from fastbp import nn
        >>> nn.ReLU().eval().training
        False
        """
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters.

        Parameters
        ----------
        set_to_none : bool, default True
            Set ``.grad`` to None (as PyTorch does by default); with False, fill the
            existing gradient arrays with zeros in place.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> lin = nn.Linear(2, 1)
        >>> lin(fb.ones(1, 2)).sum().backward()
        >>> lin.zero_grad()
        >>> lin.weight.grad is None
        True
        """
        if record_call(self.zero_grad, set_to_none):
            return
        for param in self.parameters():
            if set_to_none or param.grad is None:
                param.grad = None
            else:
                param.grad.fill(0)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict[str, np.ndarray]:
        """Return ``{dotted_name: copy of the array}`` for parameters and persistent buffers.

        Every name is listed, including a second name of a shared parameter, so the
        dict can be loaded into a fresh copy of the same architecture. Each module's
        parameters come first, then its buffers, as in PyTorch.

        Returns
        -------
        dict of str to ndarray
            Independent copies; changing them does not change the module.

        Example
        -------
        >>> from fastbp import nn
        >>> {k: v.shape for k, v in nn.Linear(4, 3).state_dict().items()}
        {'weight': (4, 3), 'bias': (3,)}
        """
        return {name: param.data.copy() for name, param in self._all_named_state()}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Copy the arrays of ``state_dict`` into the parameters, in place.

        Values are copied into the existing arrays (cast to each parameter's dtype),
        so references to the parameters, and an optimizer built on them, stay valid.
        Everything is checked before anything is copied: on error the module is
        unchanged.

        Parameters
        ----------
        state_dict : mapping of str to array_like
            As returned by :meth:`state_dict` (values may be ndarrays or Tensors).
        strict : bool, default True
            Require exactly the module's keys. With False, missing and unexpected
            keys are ignored (shapes are still checked).

        Raises
        ------
        KeyError
            If ``strict`` and keys are missing or unexpected; the message lists them.
        ValueError
            If a value's shape differs from its parameter's (names the key and both
            shapes), or if a parameter is read-only because a graph that has not been
            backpropagated still holds it.

        Example
        -------
        >>> from fastbp import nn
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> b.load_state_dict(a.state_dict())
        >>> bool((a.weight.data == b.weight.data).all())
        True
        """
        own = dict(self._all_named_state())
        where = f"{type(self).__name__}.load_state_dict"
        if strict:
            missing = [k for k in own if k not in state_dict]
            unexpected = [k for k in state_dict if k not in own]
            if missing or unexpected:
                parts = []
                if missing:
                    parts.append(f"missing keys {missing}")
                if unexpected:
                    parts.append(f"unexpected keys {unexpected}")
                raise KeyError(
                    f"{where}: {' and '.join(parts)}; the state dict was saved from a "
                    f"different architecture (expected keys {list(own)}); pass strict=False "
                    f"to load only the matching keys"
                )
        pairs = []
        for name, param in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = np.asarray(value.data if isinstance(value, Tensor) else value)
            if value.shape != param.data.shape:
                raise ValueError(
                    f"{where}: '{name}' has shape {value.shape} in the state dict but the "
                    f"parameter has shape {param.data.shape}; the state dict was saved "
                    f"from a different architecture"
                )
            pairs.append((param, value))
        for param, value in pairs:
            np.copyto(param.data, value, casting="unsafe")
            param._version += 1  # a graph recorded before the load now refuses backward

    def _all_named_parameters(self) -> Iterator[tuple[str, Tensor]]:
        """Like named_parameters, but a shared parameter appears under every name."""
        for module_name, module in self.named_modules():
            for name, param in module._parameters.items():
                if param is not None:
                    yield (f"{module_name}.{name}" if module_name else name), param

    def _all_named_state(self) -> Iterator[tuple[str, Tensor]]:
        """Parameters and persistent buffers, module by module (each module's parameters
        first, then its buffers), as PyTorch orders a state dict."""
        for module_name, module in self.named_modules():
            dot = f"{module_name}." if module_name else ""
            for name, param in module._parameters.items():
                if param is not None:
                    yield dot + name, param
            skip = module.__dict__.get("_non_persistent", ())
            for name, buf in module.__dict__.get("_buffers", {}).items():
                if buf is not None and name not in skip:
                    yield dot + name, buf

    # ---------------------------------------------------------------------- buffers
    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Register a non-trainable array (e.g. a running mean) under ``name``.

        A buffer is saved in :meth:`state_dict` (unless ``persistent=False``), converted
        by :meth:`to`, and never returned by :meth:`parameters`. Reassigning the
        attribute later keeps it a buffer.

        Parameters
        ----------
        name : str
            Attribute name; must not contain a dot.
        tensor : Tensor, array_like or None
            The value (wrapped in a Tensor that does not require grad); None keeps an
            empty slot.
        persistent : bool, default True
            Whether the buffer is part of the state dict.

        Raises
        ------
        ValueError
            If ``name`` is empty or contains a dot.
        KeyError
            If ``name`` is already a parameter or submodule.

        Example
        -------
        >>> import numpy as np
        >>> from fastbp import nn
        >>> m = nn.Module()
        >>> m.register_buffer("running_mean", np.zeros(3))
        >>> list(m.state_dict()), [n for n, _ in m.named_buffers()]
        (['running_mean'], ['running_mean'])
        """
        _check_name(self, name)
        if name in self._parameters or name in self._modules:
            raise KeyError(
                f"{type(self).__name__}.register_buffer('{name}'): '{name}' is already a "
                f"parameter or submodule; `del` it first or pick another name"
            )
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(np.asarray(tensor))
        ATTRIBUTE_WRITES[0] += 1
        if "_buffers" not in self.__dict__:  # a module built before buffers existed
            object.__setattr__(self, "_buffers", {})
            object.__setattr__(self, "_non_persistent", set())
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    def named_buffers(self, prefix: str = "", recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        """Yield ``(dotted_name, buffer)`` for every buffer (persistent or not), depth first.

        Parameters
        ----------
        prefix : str, default ""
            Prepended (with a dot) to every name.
        recurse : bool, default True
            Include the buffers of submodules.

        Example
        -------
        >>> import numpy as np
        >>> from fastbp import nn
        >>> inner = nn.Module(); inner.register_buffer("n", np.zeros(1))
        >>> outer = nn.Sequential(inner)
        >>> [name for name, _ in outer.named_buffers()]
        ['0.n']
        """
        seen: set[int] = set()
        walk = self.named_modules(prefix) if recurse else iter([(prefix, self)])
        for module_name, module in walk:
            for name, buf in module.__dict__.get("_buffers", {}).items():
                if buf is None or id(buf) in seen:
                    continue
                seen.add(id(buf))
                yield (f"{module_name}.{name}" if module_name else name), buf

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Yield the buffers in the order of :meth:`named_buffers`.

        Example
        -------
        >>> from fastbp import nn
        >>> list(nn.Linear(2, 2).buffers())
        []
        """
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    # ------------------------------------------------------------------ whole-module
    def apply(self, fn: Callable[[Module], Any]) -> Module:
        """Call ``fn`` on every submodule (children first, depth first), then on ``self``.

        Typical use is initialisation: ``model.apply(init_weights)``.

        Parameters
        ----------
        fn : callable
            Takes a module; its return value is ignored.

        Returns
        -------
        Module
            ``self``.

        Example
        -------
        >>> from fastbp import nn
        >>> seen = []
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> _ = net.apply(lambda m: seen.append(type(m).__name__))
        >>> seen
        ['Linear', 'ReLU', 'Sequential']
        """
        # Post-order without recursion (deep nestings must not hit the recursion limit).
        order: list[Module] = []
        stack: list[tuple[Module, bool]] = [(self, False)]
        seen: set[int] = set()
        while stack:
            module, expanded = stack.pop()
            if expanded:
                order.append(module)
                continue
            if id(module) in seen:
                continue
            seen.add(id(module))
            stack.append((module, True))
            stack.extend((child, False) for child in reversed(list(module.children())))
        for module in order:
            fn(module)
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` of every parameter (freeze with False) and return ``self``.

        Frozen parameters stay in :meth:`parameters` and the state dict; backward gives
        them no gradient.

        Parameters
        ----------
        requires_grad : bool, default True

        Example
        -------
        >>> from fastbp import nn
        >>> [p.requires_grad for p in nn.Linear(2, 1).requires_grad_(False).parameters()]
        [False, False]
        """
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def to(self, dtype: Any) -> Module:
        """Cast every floating-point parameter, gradient and buffer to ``dtype``, in place.

        Only dtypes are supported (fastbp runs on the CPU; a device string such as
        ``"cpu"`` is accepted and ignored). Parameters are rebound to new arrays, so
        build the optimizer after calling ``to``. Integer buffers are left alone, as in
        PyTorch.

        Parameters
        ----------
        dtype : numpy dtype, str or "cpu"
            A floating-point dtype (e.g. ``np.float64`` or ``"float32"``).

        Returns
        -------
        Module
            ``self``.

        Raises
        ------
        TypeError
            If ``dtype`` is not a floating-point dtype.

        Example
        -------
        >>> import numpy as np
        >>> from fastbp import nn
        >>> nn.Linear(2, 1).to(np.float64).weight.dtype
        dtype('float64')
        """
        if isinstance(dtype, str) and dtype == "cpu":
            return self
        target = np.dtype(dtype)
        if target.kind != "f":
            raise TypeError(
                f"{type(self).__name__}.to: expected a floating-point dtype, got {target}; "
                f"parameters must stay floating point"
            )
        for module in self.modules():
            for param in module._parameters.values():
                if param is not None and param.data.dtype != target:
                    param.data = param.data.astype(target)
                    if param.grad is not None:
                        param.grad = np.asarray(param.grad).astype(target)
                    param._version += 1
            for buf in module.__dict__.get("_buffers", {}).values():
                if buf is not None and buf.data.dtype.kind == "f" and buf.data.dtype != target:
                    buf.data = buf.data.astype(target)
        return self

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32 (``to(np.float32)``).

        Example
        -------
        >>> from fastbp import nn
        >>> nn.Linear(2, 1).double().float().weight.dtype
        dtype('float32')
        """
        return self.to(np.float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64 (``to(np.float64)``).

        Example
        -------
        >>> from fastbp import nn
        >>> nn.Linear(2, 1).double().bias.dtype
        dtype('float64')
        """
        return self.to(np.float64)

    # ------------------------------------------------------------------------ hooks
    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, args)`` before every forward.

        A hook that returns something other than None replaces the positional
        arguments (a non-tuple is wrapped in a 1-tuple), as in PyTorch.

        Parameters
        ----------
        hook : callable

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> m = nn.ReLU()
        >>> h = m.register_forward_pre_hook(lambda mod, args: (-args[0],))
        >>> m(fb.tensor([-2.0])).data, h.remove(), m(fb.tensor([-2.0])).data
        (array([2.], dtype=float32), None, array([0.], dtype=float32))
        """
        return self._add_hook("_forward_pre_hooks", hook)

    def register_forward_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """Call ``hook(module, args, output)`` after every forward.

        A hook that returns something other than None replaces the output.

        Parameters
        ----------
        hook : callable

        Returns
        -------
        RemovableHandle
            ``handle.remove()`` unregisters the hook; also a context manager.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp import nn
        >>> shapes = []
        >>> m = nn.Linear(3, 2)
        >>> with m.register_forward_hook(lambda mod, args, out: shapes.append(out.shape)):
        ...     _ = m(fb.ones(4, 3))
        >>> _ = m(fb.ones(1, 3)); shapes
        [(4, 2)]
        """
        return self._add_hook("_forward_hooks", hook)

    def _add_hook(self, table: str, hook: Callable[..., Any]) -> RemovableHandle:
        if not callable(hook):
            raise TypeError(
                f"{type(self).__name__}.register{table[:-6]}_hook: expected a callable, "
                f"got {type(hook).__name__}"
            )
        ATTRIBUTE_WRITES[0] += 1
        hooks = self.__dict__.get(table)
        if hooks is None:  # the class-level default is shared: never mutate it
            hooks = {}
            object.__setattr__(self, table, hooks)
        handle = RemovableHandle(hooks)
        hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """Return the text shown inside the parentheses of the repr (empty by default).

        Example
        -------
        >>> from fastbp import nn
        >>> nn.Linear(4, 3).extra_repr()
        'in_features=4, out_features=3'
        """
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [
            f"({name}): {_indent(repr(module), 2)}" for name, module in self._modules.items()
        ]
        head = type(self).__name__ + "("
        if not children and len(lines) <= 1:
            return head + extra + ")"
        body = "\n  ".join(lines + children)
        return f"{head}\n  {body}\n)"


def _check_name(module: Module, name: str) -> None:
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(
            f"{type(module).__name__}: invalid attribute name {name!r}; use a non-empty "
            f"string without dots"
        )


class RemovableHandle:
    """What ``register_forward_hook`` and friends return: ``remove()`` unregisters the hook.

    Also a context manager that removes the hook on exit. Removing twice is harmless.

    Example
    -------
    >>> from fastbp import nn
    >>> m = nn.ReLU()
    >>> h = m.register_forward_hook(lambda *a: None)
    >>> h.remove(); len(m._forward_hooks)
    0
    """

    _ids = itertools.count()

    def __init__(self, table: dict):
        self.id = next(RemovableHandle._ids)
        self._table = table

    def remove(self) -> None:
        """Unregister the hook (no-op if already removed)."""
        self._table.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()
