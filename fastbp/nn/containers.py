"""Container and shape modules: ``ModuleList``, ``ModuleDict``, ``Identity``, ``Flatten``,
``Unflatten``, with PyTorch's names and semantics."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..core.tensor import Tensor
from .module import Module

__all__ = ["ModuleList", "ModuleDict", "Identity", "Flatten", "Unflatten"]


def _need_module(who: str, module: Any) -> Module:
    if not isinstance(module, Module):
        raise TypeError(f"{who}: expected a Module, got {type(module).__name__}")
    return module


class ModuleList(Module):
    """A list of modules whose parameters are registered (names ``'0'``, ``'1'``, ...).

    Unlike :class:`~fastbp.nn.Sequential` it has no ``forward``: index or iterate it in
    your own ``forward``.

    Parameters
    ----------
    modules : iterable of Module, optional

    Raises
    ------
    TypeError
        If an element is not a Module.

    Example
    -------
    >>> from fastbp import nn
    >>> layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    >>> len(layers), [n for n, _ in layers.named_parameters()][:2]
    (3, ['0.weight', '0.bias'])
    """

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _renumber(self, items: list[Module]) -> None:
        for name in list(self._modules):
            object.__delattr__(self, name)
        self._modules.clear()
        for i, module in enumerate(items):
            self.add_module(str(i), module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def _index(self, idx: int) -> str:
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"ModuleList index {idx} out of range for length {n}")
        return str(idx % n)

    def __getitem__(self, idx: int | slice) -> Module | ModuleList:
        if isinstance(idx, slice):
            return ModuleList(list(self._modules.values())[idx])
        return self._modules[self._index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        setattr(self, self._index(idx), _need_module("ModuleList.__setitem__", module))

    def __delitem__(self, idx: int | slice) -> None:
        items = list(self._modules.values())
        del items[idx if isinstance(idx, slice) else int(self._index(idx))]
        self._renumber(items)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end and return ``self``.

        Example
        -------
        >>> from fastbp import nn
        >>> len(nn.ModuleList().append(nn.ReLU()))
        1
        """
        self.add_module(str(len(self)), _need_module("ModuleList.append", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        """Append every module of ``modules`` and return ``self``.

        Example
        -------
        >>> from fastbp import nn
        >>> len(nn.ModuleList([nn.ReLU()]).extend([nn.Tanh(), nn.ReLU()]))
        3
        """
        for module in modules:
            self.append(module)
        return self

    def insert(self, index: int, module: Module) -> None:
        """Insert ``module`` before position ``index`` (renumbering the rest).

        Example
        -------
        >>> from fastbp import nn
        >>> ml = nn.ModuleList([nn.ReLU()]); ml.insert(0, nn.Tanh())
        >>> type(ml[0]).__name__
        'Tanh'
        """
        items = list(self._modules.values())
        items.insert(index, _need_module("ModuleList.insert", module))
        self._renumber(items)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleList has no forward(): iterate over it in your module's forward, or use "
            "nn.Sequential to chain the layers"
        )


class ModuleDict(Module):
    """A dict of modules whose parameters are registered under the keys (insertion order).

    Parameters
    ----------
    modules : mapping or iterable of (str, Module) pairs, optional

    Raises
    ------
    TypeError
        If a value is not a Module.

    Example
    -------
    >>> from fastbp import nn
    >>> heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 3)})
    >>> list(heads.keys()), "a" in heads
    (['a', 'b'], True)
    """

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key: object) -> bool:
        return key in self._modules

    def __getitem__(self, key: str) -> Module:
        try:
            return self._modules[key]
        except KeyError:
            raise KeyError(
                f"ModuleDict has no key {key!r}; keys are {list(self._modules)}"
            ) from None

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, _need_module("ModuleDict.__setitem__", module))

    def __delitem__(self, key: str) -> None:
        self[key]  # the KeyError with the key list
        delattr(self, key)

    def keys(self):
        """The keys, in insertion order."""
        return self._modules.keys()

    def values(self):
        """The modules, in insertion order."""
        return self._modules.values()

    def items(self):
        """``(key, module)`` pairs, in insertion order."""
        return self._modules.items()

    def pop(self, key: str) -> Module:
        """Remove ``key`` and return its module.

        Example
        -------
        >>> from fastbp import nn
        >>> d = nn.ModuleDict({"a": nn.ReLU()}); _ = d.pop("a"); len(d)
        0
        """
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        """Remove every module."""
        for key in list(self._modules):
            del self[key]

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        """Add or replace modules from a mapping or an iterable of ``(key, module)`` pairs.

        Example
        -------
        >>> from fastbp import nn
        >>> d = nn.ModuleDict(); d.update([("act", nn.ReLU())]); list(d)
        ['act']
        """
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "ModuleDict has no forward(): pick a module by key in your module's forward"
        )


class Identity(Module):
    """Return the input unchanged (any constructor arguments are ignored, as in PyTorch).

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> x = fb.ones(2); nn.Identity(54, unused=1)(x) is x
    True
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, input: Any) -> Any:  # noqa: A002
        return input


def _dim(who: str, dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"{who}: dim {dim} is out of range for a {ndim}-D input")
    return dim % ndim


class Flatten(Module):
    """Flatten dims ``start_dim`` .. ``end_dim`` into one (default: all but the batch dim).

    Parameters
    ----------
    start_dim : int, default 1
    end_dim : int, default -1

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Flatten()(fb.zeros(2, 3, 4)).shape, nn.Flatten(0, 1)(fb.zeros(2, 3, 4)).shape
    ((2, 12), (6, 4))
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        shape = input.shape
        if not shape:  # torch flattens a 0-d tensor to shape (1,)
            return input.reshape(1)
        start = _dim("Flatten", self.start_dim, len(shape))
        end = _dim("Flatten", self.end_dim, len(shape))
        if start > end:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} "
                f"for an input of shape {shape}"
            )
        size = 1
        for n in shape[start : end + 1]:
            size *= n
        return input.reshape(*shape[:start], size, *shape[end + 1 :])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Expand dim ``dim`` into the shape ``unflattened_size`` (one entry may be -1).

    Parameters
    ----------
    dim : int
    unflattened_size : tuple of int

    Raises
    ------
    ValueError
        If the sizes do not multiply to the size of ``dim``.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp import nn
    >>> nn.Unflatten(1, (3, 4))(fb.zeros(2, 12)).shape
    (2, 3, 4)
    """

    def __init__(self, dim: int, unflattened_size: tuple[int, ...]):
        super().__init__()
        self.dim = dim
        self.unflattened_size = tuple(int(n) for n in unflattened_size)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        shape = input.shape
        d = _dim("Unflatten", self.dim, len(shape))
        sizes = list(self.unflattened_size)
        known = 1
        for n in sizes:
            if n != -1:
                known *= n
        if sizes.count(-1) == 1 and known and shape[d] % known == 0:
            sizes[sizes.index(-1)] = shape[d] // known
        total = 1
        for n in sizes:
            total *= n
        if -1 in sizes or total != shape[d]:
            raise ValueError(
                f"Unflatten: sizes {self.unflattened_size} do not multiply to {shape[d]}, the "
                f"size of dim {self.dim} of an input of shape {shape}"
            )
        return input.reshape(*shape[:d], *sizes, *shape[d + 1 :])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"
