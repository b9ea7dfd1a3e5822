"""Optimizers with PyTorch's update rules: ``SGD``, ``Adam`` and ``AdamW``.

How an update is made fast
--------------------------
At construction an optimizer packs its parameters into one flat, contiguous buffer
per dtype and **rebinds each** ``p.data`` **to a reshaped view of that buffer**
(values are copied, shapes kept; code holding the old array keeps a stale copy,
so read ``p.data`` afresh). Gradients get one flat buffer too: :meth:`zero_grad`
fills it with zeros and sets each ``p.grad`` to its view, and backward then
accumulates into those views in place. A whole update is therefore one kernel
call over the flat buffers, whatever the number of layers::

    flat params  [ w1 ........ | b1 .. | w2 ..... | b2 ]   <- p.data are views
    flat grads   [ dw1 ....... | db1 . | dw2 .... | db2 ]  <- p.grad are views
    flat state   [ momentum / Adam moments, same layout ]

``step`` stays correct when gradients did not arrive through the views: a
``p.grad`` that was replaced (e.g. after :meth:`fastbp.nn.Module.zero_grad` set it
to None and backward stored a fresh array) is copied into the flat buffer first; a
parameter whose ``p.grad`` is None is skipped, as in PyTorch (no update, no state
change), by updating the others one by one. A ``p.data`` that was rebound by
someone else is copied back into the flat buffer.

The update kernels are ``fastbp.kernels.sgd_update`` and
``fastbp.kernels.adam_update`` (Numba) when available, else the NumPy twins below.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import kernels
from ..core.observer import record_call
from ..core.tensor import Tensor
from .checks import check_pair, check_range

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "FlatBuffers", "UpdateRule"]


# The update kernels: one pass each over flat buffers (NumPy twins in fastbp.kernels).
_sgd_update, _adam_update = kernels.sgd_update, kernels.adam_update


# ------------------------------------------------------------------------- buffers


class FlatBuffers:
    """The parameters of one dtype packed into flat buffers, with their views.

    Attributes
    ----------
    params : list of Tensor
        The parameters, in buffer order; ``params[i].data`` is ``data_views[i]``.
    data, grad : ndarray
        The flat parameter and gradient buffers (1-D).
    state : tuple of ndarray
        The optimizer's flat state buffers (momentum, Adam moments), same layout.
    slices : list of slice
        Where each parameter lives in the flat buffers.
    data_views, grad_views : list of ndarray
        Each parameter's view of ``data`` and ``grad``, in its own shape.
    uniform : int or None
        The number of updates every parameter has had, or None if they differ.
    group : int
        The index of the parameter group (``Optimizer.param_groups``) they belong to.
    names : tuple of str
        The names of the ``state`` buffers.
    """

    __slots__ = (
        "params",
        "indices",
        "data",
        "grad",
        "state",
        "data_views",
        "flat_views",
        "grad_views",
        "state_views",
        "slices",
        "counts",
        "uniform",
        "group",
        "names",
    )

    def __init__(
        self,
        params: list[Tensor],
        indices: list[int],
        n_state: int,
        group: int = 0,
        names: tuple[str, ...] = (),
    ):
        dtype = params[0].data.dtype
        self.group = group  # index of its parameter group in Optimizer.param_groups
        self.names = tuple(names)  # the state buffers' names, as in the state dict
        total = sum(p.data.size for p in params)
        self.params = params
        self.indices = indices  # position of each parameter in the optimizer's list
        self.data = np.empty(total, dtype=dtype)
        self.grad = np.zeros(total, dtype=dtype)
        self.state = tuple(np.zeros(total, dtype=dtype) for _ in range(n_state))
        self.slices = []
        self.data_views = []
        self.grad_views = []
        offset = 0
        for p in params:
            sl = slice(offset, offset + p.data.size)
            offset = sl.stop
            view = self.data[sl].reshape(p.data.shape)
            view[...] = p.data
            p.data = view
            self.slices.append(sl)
            self.data_views.append(view)
            self.grad_views.append(self.grad[sl].reshape(p.data.shape))
        self.state_views = [tuple(s[sl] for s in self.state) for sl in self.slices]
        self.flat_views = [self.data[sl] for sl in self.slices]  # 1-D, as the kernels take them
        # Number of updates each parameter has had. While they are all equal (the usual
        # case) ``uniform`` holds that number and one kernel call updates everything.
        self.counts = [0] * len(params)
        self.uniform: int | None = 0

    def count(self, i: int) -> int:
        return self.uniform if self.uniform is not None else self.counts[i]

    def set_counts(self, counts: list[int]) -> None:
        self.counts = counts
        self.uniform = counts[0] if counts and all(c == counts[0] for c in counts) else None


class UpdateRule(NamedTuple):
    """An optimizer's update of one :class:`FlatBuffers`, as a compiled step runs it.

    ``kernel(*arrays, *scalars)`` updates every parameter of the buffers at once;
    ``kernel`` takes slices of ``arrays`` as well, to update one parameter. ``fold`` is
    ``(alpha, beta)`` when the update is ``w ← beta·w + alpha·g`` (so that it can be
    folded into the product that makes ``g``), else None.
    """

    kernel: Callable[..., Any]
    arrays: tuple[np.ndarray, ...]
    scalars: tuple
    fold: tuple[float, float] | None


def _collect(params: Any, who: str) -> list[Tensor]:
    if isinstance(params, Tensor):
        raise TypeError(
            f"{who}: params must be an iterable of tensors, got a single Tensor; "
            f"pass [tensor] or model.parameters()"
        )
    try:
        items = list(params)
    except TypeError:
        raise TypeError(
            f"{who}: params must be an iterable of tensors (e.g. model.parameters()), "
            f"got {type(params).__name__}"
        ) from None
    out: list[Tensor] = []
    seen: set[int] = set()
    for i, p in enumerate(items):
        if isinstance(p, dict):
            raise TypeError(
                f"{who}: params mixes parameter groups (dicts) and tensors; pass either "
                f"tensors or a list of dicts like {{'params': [...], 'lr': 0.1}}"
            )
        if not isinstance(p, Tensor):
            raise TypeError(f"{who}: params[{i}] is a {type(p).__name__}, not a Tensor")
        if p.data.dtype.kind != "f":
            raise TypeError(
                f"{who}: params[{i}] has dtype {p.data.dtype} (shape {p.shape}); only "
                f"floating-point tensors can be optimized"
            )
        if not p.is_leaf:
            raise ValueError(
                f"{who}: params[{i}] (shape {p.shape}) is not a leaf: it was computed by an "
                f"op. Optimize the tensors you created, e.g. model.parameters()"
            )
        if id(p) not in seen:  # a tensor listed twice is optimized once
            seen.add(id(p))
            out.append(p)
    if not out:
        raise ValueError(f"{who}: got an empty parameter list; nothing to optimize")
    return out


# Type and range checks of every hyperparameter, one helper for every optimizer.
_check_range = check_range
_check_pair = check_pair


def _own_grads(flat: FlatBuffers) -> list[np.ndarray] | None:
    """Each parameter's gradient as a flat view, if backward gave every one its own array.

    That is the usual case after ``zero_grad()`` (set to None): each ``p.grad`` is the
    C-contiguous array its kernel produced. Returns None when the general path of
    :meth:`Optimizer.step` is needed: a missing, misshapen or foreign-dtype gradient, a
    gradient in the flat buffer, or a rebound ``p.data``.
    """
    dtype = flat.data.dtype
    grads = []
    views = zip(flat.params, flat.data_views, flat.grad_views, strict=True)
    for p, data_view, grad_view in views:
        g = p.grad
        if (
            type(g) is not np.ndarray
            or g is grad_view
            or p.data is not data_view
            or g.dtype is not dtype
            or g.shape != data_view.shape
            or not g.flags.c_contiguous
        ):
            return None
        grads.append(g.reshape(-1))
    return grads


# ----------------------------------------------------------------------- optimizer


class Optimizer:
    """Base class: flat parameter/gradient/state buffers and the step machinery.

    Subclasses set ``_state_names`` and implement ``_update``; users call
    :meth:`step`, :meth:`zero_grad`, :meth:`state_dict` and :meth:`load_state_dict`.
    Hyperparameters live in ``param_groups[0]`` (a dict, as in PyTorch) and are read
    at every step, so changing ``opt.param_groups[0]["lr"]`` takes effect at once.

    Parameters
    ----------
    params : iterable of Tensor
        Floating-point leaf tensors; duplicates are dropped. Each ``p.data`` is
        rebound to a view of the optimizer's flat buffer.
    defaults : dict
        The hyperparameters.

    Raises
    ------
    TypeError
        If ``params`` is not an iterable of floating-point tensors.
    ValueError
        If it is empty or holds a non-leaf tensor.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> w = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> opt = SGD([w], lr=0.5)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> w.data
    array([0., 0.], dtype=float32)
    """

    _state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]):
        who = type(self).__name__
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self._flats: list[FlatBuffers] = []
        if isinstance(params, Tensor):
            _collect(params, who)  # raises the single-Tensor error
        try:
            items = list(params)
        except TypeError:
            items = params  # _collect names the type
        if isinstance(items, list) and items and all(isinstance(g, Mapping) for g in items):
            for group in items:
                self.add_param_group(group)
        else:
            self.add_param_group({"params": items})

    def add_param_group(self, param_group: Mapping[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (others from the defaults).

        As in PyTorch, e.g. to exempt biases from weight decay. Each group gets its own
        flat buffers (one per dtype), so a step is still one fused update per group.
        Parameters are numbered across groups in order, as in :meth:`state_dict`.

        Parameters
        ----------
        param_group : dict
            ``{"params": iterable of Tensor, <hyperparameter>: value, ...}``.

        Raises
        ------
        TypeError
            If it is not a dict, or ``params`` is not an iterable of float tensors.
        ValueError
            If ``params`` is missing or empty, or a parameter is already in a group.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> w, b = fb.ones(2, requires_grad=True), fb.ones(1, requires_grad=True)
        >>> opt = SGD([w], lr=0.1, weight_decay=0.01)
        >>> opt.add_param_group({"params": [b], "weight_decay": 0.0})
        >>> [g["weight_decay"] for g in opt.param_groups], opt.param_groups[1]["lr"]
        ([0.01, 0.0], 0.1)
        """
        who = f"{type(self).__name__}.add_param_group"
        if not isinstance(param_group, Mapping):
            raise TypeError(f"{who}: expected a dict with a 'params' key, got {type(param_group)}")
        if "params" not in param_group:
            raise ValueError(f"{who}: the group {sorted(param_group)} has no 'params' key")
        group = dict(param_group)
        if isinstance(group["params"], Tensor):  # {"params": w} is a group of one, as in torch
            group["params"] = [group["params"]]
        params = _collect(group["params"], type(self).__name__)
        taken = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(
                f"{who}: some parameters appear in more than one parameter group; each "
                f"tensor may belong to one group only"
            )
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = params
        index = len(self.param_groups)
        base = sum(len(g["params"]) for g in self.param_groups)
        by_dtype: dict[np.dtype, list[int]] = {}
        for i, p in enumerate(params):
            by_dtype.setdefault(p.data.dtype, []).append(i)
        names = self._state_names_for(group)
        flats = [
            FlatBuffers([params[i] for i in idx], [base + i for i in idx], len(names), index, names)
            for idx in by_dtype.values()
        ]
        for flat in flats:
            self._init_state(group, flat)
        self.param_groups.append(group)
        self._flats.extend(flats)

    # ---------------------------------------------------------------------- public
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients before the next backward.

        By default (as in PyTorch) every ``p.grad`` becomes None: backward then hands
        each parameter the gradient array its kernel computed, without a copy, and
        :meth:`step` updates each parameter from it in place. With
        ``set_to_none=False`` the flat gradient buffer is zero-filled and each
        ``p.grad`` is set to its view, so backward accumulates into the buffer and
        :meth:`step` is one kernel call over all parameters; that costs a fill and an
        add per step, which only pays for models with very many small parameters.

        Parameters
        ----------
        set_to_none : bool, default True
            Set every ``p.grad`` to None. A parameter that then receives no gradient
            is not updated at all (as in PyTorch), whereas with zeros momentum and
            weight decay still move it.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> w = fb.ones(2, requires_grad=True)
        >>> opt = SGD([w], lr=0.1); opt.zero_grad(set_to_none=False)
        >>> w.grad
        array([0., 0.], dtype=float32)
        >>> opt.zero_grad(); w.grad is None
        True
        """
        if record_call(self.zero_grad, set_to_none):
            return
        for flat in self._flats:
            if set_to_none:
                for p in flat.params:
                    p.grad = None
                continue
            flat.grad.fill(0)
            for p, view in zip(flat.params, flat.grad_views, strict=True):
                p.grad = view if p.requires_grad else None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place.

        Raises
        ------
        ValueError
            If a gradient's shape differs from its parameter's.

        Notes
        -----
        Each parameter's version is bumped, so that a backward through a graph recorded
        before this step raises instead of using the updated values.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> w = fb.tensor([1.0], requires_grad=True)
        >>> opt = SGD([w], lr=0.1)
        >>> opt.zero_grad(); (3 * w).sum().backward(); opt.step()
        >>> w.data
        array([0.7], dtype=float32)
        """
        if record_call(self.step):
            return
        groups = self.param_groups
        for flat in self._flats:
            group = groups[flat.group]
            # Bump the version of every parameter this step changes, so that backward
            # through a graph recorded before the step refuses to use the new values.
            for p in flat.params:
                if p.grad is not None:
                    p._version += 1
            if flat.uniform is not None:
                grads = _own_grads(flat)
                if grads is not None:  # the usual case after zero_grad(): one call each
                    self._update_each(group, flat.flat_views, grads, flat.state_views, flat.uniform)
                    flat.uniform += 1
                    continue
            missing, loose = self._gather(flat)
            if not missing and not loose and flat.uniform is not None:
                self._update(group, flat.data, flat.grad, flat.state, flat.uniform)
                flat.uniform += 1
            else:
                self._step_each(group, flat, missing, loose)

    def state_dict(self) -> dict[str, Any]:
        """Return the optimizer's state as plain data (copies), ready for ``serialization.save``.

        Returns
        -------
        dict
            ``{"state": {"<i>": {"step": int, <buffer name>: ndarray or None}},
            "param_groups": [{<hyperparameters>, "params": [0, 1, ...]}]}``, where
            ``i`` is the parameter's position in the list given at construction
            (numbered across parameter groups, as in PyTorch; a str, so that the dict
            can be saved) and only parameters updated at least once appear in
            ``"state"``. There is one entry in ``"param_groups"`` per group.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import Adam
        >>> w = fb.ones(2, requires_grad=True)
        >>> opt = Adam([w]); opt.zero_grad(); w.sum().backward(); opt.step()
        >>> sorted(opt.state_dict()["state"]["0"])
        ['exp_avg', 'exp_avg_sq', 'step']
        """
        state: dict[str, Any] = {}
        for flat in self._flats:
            group = self.param_groups[flat.group]
            for i, index in enumerate(flat.indices):
                count = flat.count(i)
                if count == 0:
                    continue
                entry: dict[str, Any] = {"step": int(count)}
                entry.update(self._extra_state(group, count))
                for name, view in zip(flat.names, flat.state_views[i], strict=True):
                    entry[name] = self._export_buffer(name, view, flat.params[i].shape, group)
                state[str(index)] = entry
        groups = []
        first = 0
        for g in self.param_groups:
            saved = {k: v for k, v in g.items() if k != "params"}
            saved["params"] = list(range(first, first + len(g["params"])))
            first += len(g["params"])
            groups.append(saved)
        state = dict(sorted(state.items(), key=lambda item: int(item[0])))
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters, step counts and buffers saved by :meth:`state_dict`.

        The optimizer must have been built over the same parameters (same number,
        order and shapes). Everything is checked before anything changes.

        Parameters
        ----------
        state_dict : mapping
            As returned by :meth:`state_dict` (possibly after a save/load round trip).

        Raises
        ------
        ValueError
            If the structure, the number of parameters, the hyperparameter names
            (e.g. an SGD state loaded into Adam) or a buffer's shape do not match.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> w = fb.ones(2, requires_grad=True)
        >>> a = SGD([w], lr=0.1, momentum=0.9)
        >>> b = SGD([w], lr=1.0, momentum=0.9)
        >>> b.load_state_dict(a.state_dict()); b.param_groups[0]["lr"]
        0.1
        """
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(
                f"{who}: expected a dict with keys 'state' and 'param_groups' (from "
                f"optimizer.state_dict()), got "
                f"{sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)}"
            )
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{who}: the state dict has {len(groups)} parameter groups but this "
                f"optimizer has {len(self.param_groups)}"
            )
        saved_groups = []
        n_params = 0
        for k, (saved, own) in enumerate(zip(groups, self.param_groups, strict=True)):
            saved_group = dict(saved)
            saved_params = saved_group.pop("params", [])
            params = own["params"]
            n_params += len(params)
            if len(saved_params) != len(params):
                raise ValueError(
                    f"{who}: the state dict is for {len(saved_params)} parameters but this "
                    f"optimizer has {len(params)}"
                    + (f" in group {k}" if len(groups) > 1 else "")
                    + "; build it over the same model.parameters()"
                )
            expected = set(self.defaults)
            # Options added since the state dict was saved take their current value.
            late = {"maximize", "amsgrad"} & (expected - set(saved_group))
            extra = {x for x in set(saved_group) - expected if x not in own}
            if extra or expected - set(saved_group) - late:
                raise ValueError(
                    f"{who}: hyperparameters {sorted(saved_group)} do not match "
                    f"{type(self).__name__}'s {sorted(expected)}; was it saved from another "
                    f"optimizer type?"
                )
            saved_groups.append(saved_group)
        pending = []  # (flat, counts, [(i, name, array)]) applied after all checks pass
        saved_state = {str(k): v for k, v in state_dict["state"].items()}  # int keys too
        unknown = [k for k in saved_state if not (k.isdigit() and int(k) < n_params)]
        if unknown:
            raise ValueError(
                f"{who}: state entries {unknown} do not name parameters 0..{n_params - 1}"
            )
        for flat in self._flats:
            counts = []
            copies = []
            for i, index in enumerate(flat.indices):
                entry = saved_state.get(str(index))
                if entry is None:
                    counts.append(0)
                    continue
                counts.append(int(np.asarray(entry.get("step", 0))))
                shape = flat.params[i].shape
                for name in flat.names:
                    value = entry.get(name)
                    if value is None:
                        continue
                    value = np.asarray(value)
                    if value.shape != shape:
                        raise ValueError(
                            f"{who}: state '{name}' of parameter {index} has shape "
                            f"{value.shape} but the parameter has shape {shape}"
                        )
                    copies.append((i, flat.names.index(name), value))
            pending.append((flat, counts, copies))
        for own, saved_group in zip(self.param_groups, saved_groups, strict=True):
            own.update(saved_group)
        for flat, counts, copies in pending:
            for s in flat.state:
                s.fill(0)
            self._init_state(self.param_groups[flat.group], flat)
            for i, k, value in copies:
                np.copyto(flat.state_views[i][k], value.reshape(-1), casting="unsafe")
            flat.set_counts(counts)

    def __repr__(self) -> str:
        lines = []
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {group[k]}" for k in sorted(group) if k != "params")
        return f"{type(self).__name__} (\n" + "\n".join(lines) + "\n)"

    # ------------------------------------------------------------- the update rule
    #: The update as a jitted loop over flat buffers, ``kernel(data, grad, *state,
    #: *scalars)``; None for an optimizer that has none. Compiled steps call it.
    update_kernel: Callable[..., Any] | None = None

    @property
    def flat_buffers(self) -> list[FlatBuffers]:
        """The parameters packed by dtype: one :class:`FlatBuffers` per dtype."""
        return self._flats

    def update_rule(self, flat: FlatBuffers) -> UpdateRule | None:
        """How :meth:`step` updates ``flat`` now: kernel, buffers, scalars, fold.

        This is the interface a compiled training step (:mod:`fastbp.jit`) reads, so
        that it can run the same update in its own code.

        Parameters
        ----------
        flat : FlatBuffers
            One of :attr:`flat_buffers`.

        Returns
        -------
        UpdateRule or None
            None if the optimizer has no update kernel, has more than one parameter
            group, uses an option the kernel does not implement (``maximize``,
            ``amsgrad``), or the parameters of ``flat`` have had different numbers of
            updates.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import SGD
        >>> opt = SGD([fb.ones(3, requires_grad=True)], lr=0.5)
        >>> rule = opt.update_rule(opt.flat_buffers[0])
        >>> rule.fold
        (-0.5, 1.0)
        """
        # A compiled step runs one optimizer of one group (fastbp.jit reads group 0), and the
        # kernels know neither maximize nor amsgrad: those steps stay eager.
        if self.update_kernel is None or flat.uniform is None or len(self.param_groups) != 1:
            return None
        group = self.param_groups[flat.group]
        # A compiled step asks at every call: the same rule is returned while the group's
        # hyperparameters are the same objects and the step count changes no scalar.
        values = tuple(group.values())
        count = self._count_key(flat.uniform)
        cached = self.__dict__.get("_rule_cache")
        if (
            cached is not None
            and cached[0] is flat
            and cached[1] == count
            and len(cached[2]) == len(values)
            and all(map(operator.is_, cached[2], values))
        ):
            return cached[3]
        if not self._kernel_runs(group):
            rule = None
        else:
            rule = UpdateRule(
                self.update_kernel,
                (flat.data, flat.grad, *flat.state),
                self._scalars(group, flat.uniform),
                self.fold_coefficients(group),
            )
        self._rule_cache = (flat, count, values, rule)
        return rule

    def fold_coefficients(self, group: dict[str, Any]) -> tuple[float, float] | None:
        """``(alpha, beta)`` if this step updates every parameter as ``w ← beta·w + alpha·g``.

        Such an update needs no state, so a compiled step can fold it into the product
        that makes a weight's gradient, ``w ← beta·w + alpha·xᵀ·dy`` in one GEMM.
        None (the default) when the update is anything else.

        Example
        -------
        >>> import fastbp as fb
        >>> from fastbp.optim import Adam
        >>> opt = Adam([fb.ones(1, requires_grad=True)])
        >>> opt.fold_coefficients(opt.param_groups[0]) is None
        True
        """
        return None

    # -------------------------------------------------------------------- internals
    # A subclass gives its update kernel's scalar arguments (_scalars) and calls the
    # kernel on one parameter (_apply).

    def _scalars(self, group: dict[str, Any], count: int) -> tuple:
        """The update kernel's arguments after the arrays, for step number ``count``."""
        raise NotImplementedError

    def _count_key(self, count: int) -> Any:
        """What of step number ``count`` :meth:`_scalars` depends on (all of it, here)."""
        return count

    def _apply(self, param, grad, state, scalars: tuple) -> None:
        raise NotImplementedError

    def _update(self, group, param, grad, state, count) -> None:
        if group.get("maximize"):
            grad = -grad  # a new array: the user's gradient is left alone
        self._apply(param, grad, state, self._scalars(group, count))

    def _update_each(self, group, params, grads, states, count) -> None:
        """Update parameter ``i`` from ``grads[i]``, all at step ``count`` (one call each)."""
        scalars = self._scalars(group, count)  # looked up once
        maximize = group.get("maximize")
        for param, grad, state in zip(params, grads, states, strict=True):
            self._apply(param, -grad if maximize else grad, state, scalars)

    def _state_names_for(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The state buffers a group's flat buffers hold (fixed when the group is added)."""
        return self._state_names

    def _init_state(self, group: dict[str, Any], flat: FlatBuffers) -> None:
        """Fill fresh state buffers (zeros already); Adagrad starts from another value."""

    def _extra_state(self, group: dict[str, Any], count: int) -> dict[str, Any]:
        """Scalar per-parameter state shown in the state dict besides ``step``."""
        return {}

    def _kernel_runs(self, group: dict[str, Any]) -> bool:
        """Whether :attr:`update_kernel` implements this group's options."""
        return not group.get("maximize")

    def _export_buffer(self, name: str, view: np.ndarray, shape, group=None) -> np.ndarray | None:
        return view.reshape(shape).copy()

    def _gather(self, flat: FlatBuffers) -> tuple[list[int], dict[int, np.ndarray]]:
        """Check parameters and gradients against the flat buffers.

        Returns the parameters without a gradient, and the gradients that live
        outside the flat buffer (as contiguous 1-D arrays of the buffer's dtype).
        """
        missing: list[int] = []
        loose: dict[int, np.ndarray] = {}
        for i, (p, data_view, grad_view) in enumerate(
            zip(flat.params, flat.data_views, flat.grad_views, strict=True)
        ):
            if p.data is not data_view:
                self._rebind(flat, i)
            g = p.grad
            if g is grad_view:
                continue
            if g is None:
                missing.append(i)
                continue
            if np.shape(g) != data_view.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {flat.indices[i]} has shape "
                    f"{data_view.shape} but its .grad has shape {np.shape(g)}"
                )
            loose[i] = np.ascontiguousarray(g, dtype=flat.grad.dtype).reshape(-1)
        return missing, loose

    def _rebind(self, flat: FlatBuffers, i: int) -> None:
        """``p.data`` was replaced by someone else: copy it in and point it back at the buffer."""
        p = flat.params[i]
        view = flat.data_views[i]
        if p.data.shape != view.shape:
            raise ValueError(
                f"{type(self).__name__}.step: parameter {flat.indices[i]} was built with shape "
                f"{view.shape} but its .data now has shape {p.data.shape}; create a new "
                f"optimizer after changing parameter shapes"
            )
        np.copyto(view, p.data, casting="same_kind")
        p.data = view

    def _step_each(
        self, group, flat: FlatBuffers, missing: list[int], loose: dict[int, np.ndarray]
    ) -> None:
        """Update the parameters one by one (one kernel call each), skipping those
        without a gradient and reading loose gradients where they are."""
        counts = [flat.count(i) for i in range(len(flat.params))]
        skip = set(missing)
        for i, sl in enumerate(flat.slices):
            if i in skip:
                continue
            grad = loose.get(i)
            if grad is None:
                grad = flat.grad[sl]
            self._update(group, flat.data[sl], grad, flat.state_views[i], counts[i])
            counts[i] += 1
        flat.set_counts(counts)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2.

    Per parameter ``w`` with gradient ``g`` (PyTorch's rule, step for step)::

        g ← g + λ·w                      (weight_decay λ: L2 regularisation)
        b ← g                            (first step)
        b ← μ·b + (1 − τ)·g              (later steps; momentum μ, dampening τ)
        g ← g + μ·b  if nesterov else b  (only when μ ≠ 0)
        w ← w − lr·g

    ``weight_decay`` adds ``λ·w`` to the gradient, i.e. the gradient of the penalty
    ``(λ/2)·‖w‖²`` added to the loss.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer
        (see the module docstring).
    lr : float
        Learning rate.
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty coefficient λ.
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    maximize : bool, default False
        Maximize the objective (step along the gradient), as in PyTorch.

    Raises
    ------
    ValueError
        For a negative or non-finite hyperparameter, or ``nesterov`` without
        momentum or with dampening.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import SGD
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = SGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     opt.zero_grad(); (w * 1.0).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.1 * (1 + 1.9)
    0.71
    """

    _state_names = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        who = "SGD"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "momentum", momentum, 0.0)
        _check_range(who, "dampening", dampening, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"SGD: nesterov=True needs momentum > 0 and dampening == 0, got "
                f"momentum={momentum}, dampening={dampening}"
            )
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": bool(nesterov),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    update_kernel = staticmethod(kernels.optim._sgd_loop)

    def _count_key(self, count):
        return count == 0  # the first step starts the momentum buffer; the rest are alike

    def _scalars(self, group, count):
        return (
            float(group["lr"]),
            float(group["momentum"]),
            float(group["dampening"]),
            float(group["weight_decay"]),
            bool(group["nesterov"]),
            count == 0,
        )

    def fold_coefficients(self, group):
        # Without momentum, w ← w − lr·(g + λ·w) = (1 − lr·λ)·w − lr·g.
        if group["momentum"] != 0 or group.get("maximize") or len(self.param_groups) != 1:
            return None
        lr = float(group["lr"])
        return -lr, 1.0 - lr * float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        # NOTE: the momentum buffer is allocated even when momentum == 0 so the kernel
        # always gets a real array of the right size (it does not touch it then).
        _sgd_update(param, grad, state[0], *scalars)

    def _update_each(self, group, params, grads, states, count) -> None:
        # The every-step path: _own_grads has checked each gradient's dtype, shape and
        # layout, so the loop calls the kernel itself, without the two Python layers of
        # _apply and sgd_update (about 1 us per parameter on a small model).
        if group.get("maximize"):
            super()._update_each(group, params, grads, states, count)
            return
        scalars = self._scalars(group, count)
        loop = self.update_kernel
        i = 0
        try:
            for i, param in enumerate(params):
                loop(param, grads[i], states[i][0], *scalars)
        except Exception:
            # Only a kernel error gets here (e.g. a parameter made read-only): the checked
            # wrapper explains it. Parameters before i are updated, as with one call each.
            _sgd_update(params[i], grads[i], states[i][0], *scalars)
            raise

    def _export_buffer(self, name, view, shape, group=None):
        # As in PyTorch, plain SGD has no momentum buffer.
        group = self.param_groups[0] if group is None else group
        return None if group["momentum"] == 0 else view.reshape(shape).copy()


class Adam(Optimizer):
    """Adam (Kingma & Ba), with PyTorch's update rule and bias correction.

    Per parameter ``w`` with gradient ``g`` at step ``t`` (1, 2, ...)::

        g ← g + λ·w                          (weight_decay λ: L2 regularisation)
        m ← β1·m + (1 − β1)·g
        v ← β2·v + (1 − β2)·g²
        w ← w − lr/(1 − β1ᵗ) · m / (sqrt(v)/sqrt(1 − β2ᵗ) + eps)

    ``weight_decay`` here is coupled L2 regularisation: ``λ·w`` is added to the
    gradient (the gradient of ``(λ/2)·‖w‖²``) and so is rescaled by Adam like the
    rest of the gradient; use :class:`AdamW` for decoupled weight decay.

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        Decay rates of the first and second moment estimates, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator for numerical stability.
    weight_decay : float, default 0
        L2 penalty coefficient λ.
    amsgrad : bool, default False
        Use the running maximum of ``v`` in the denominator (AMSGrad); runs in NumPy,
        not the fused kernel. Fixed per group when the group is added.
    maximize : bool, default False
        Maximize the objective.

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # the first Adam step moves by ~lr
    0.9
    """

    _state_names = ("exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        who = type(self).__name__
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_pair(who, "betas", betas)
        _check_range(who, "beta1", betas[0], 0.0, 1.0)
        _check_range(who, "beta2", betas[1], 0.0, 1.0)
        _check_range(who, "eps", eps, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        defaults = {
            "lr": lr,
            "betas": (float(betas[0]), float(betas[1])),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": bool(amsgrad),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    update_kernel = staticmethod(kernels.optim._adam_loop)

    def _state_names_for(self, group):
        # The running maximum of v exists only for amsgrad groups (fixed when added).
        return self._state_names + (("max_exp_avg_sq",) if group.get("amsgrad") else ())

    def _kernel_runs(self, group):
        return not group.get("maximize") and not group.get("amsgrad")

    def _scalars(self, group, count):
        beta1, beta2 = group["betas"]
        return (
            float(group["lr"]),
            float(beta1),
            float(beta2),
            float(group["eps"]),
            float(group["weight_decay"]),
            count + 1,
            self._decoupled,
        )

    def _apply(self, param, grad, state, scalars):
        if len(state) == 3:
            _amsgrad_update(param, grad, *state, *scalars)
        else:
            _adam_update(param, grad, state[0], state[1], *scalars)


def _amsgrad_update(param, grad, exp_avg, exp_avg_sq, max_sq, lr, beta1, beta2, eps, wd, step, dec):
    """Adam/AdamW with amsgrad (PyTorch's rule), in NumPy over flat buffers.

    NOTE: NumPy, not a Numba kernel: amsgrad is rare and this costs ~2x the fused kernel.
    """
    g = grad
    if wd != 0:
        if dec:
            param *= 1.0 - lr * wd
        else:
            g = grad + wd * param
    exp_avg += (1.0 - beta1) * (g - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * g * g
    np.maximum(max_sq, exp_avg_sq, out=max_sq)
    denom = np.sqrt(max_sq) / math.sqrt(1.0 - beta2**step) + eps
    param -= (lr / (1.0 - beta1**step)) * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as PyTorch's AdamW.

    The decay shrinks the weights directly instead of entering the gradient::

        w ← w − lr·λ·w                   (before the Adam step; not rescaled by Adam)
        then the Adam update of :class:`Adam` with λ = 0

    Parameters
    ----------
    params : iterable of Tensor
        The parameters; each ``p.data`` is rebound to a view of a flat buffer.
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
        Decoupled decay coefficient λ.
    amsgrad : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import AdamW
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = AdamW([w], lr=0.1, weight_decay=0.5)
    >>> opt.zero_grad(); (w * 0.0).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # only the decay acts: 1 - 0.1 * 0.5
    0.95
    """

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )


# ------------------------------------------------------------ more optimizers (issue 14)
# RMSprop, Adagrad, Adamax, NAdam and RAdam update the flat buffers with NumPy expressions
# (each a handful of passes). PyTorch's update rules, step for step; per parameter
# group hyperparameters are read at every step, like SGD's and Adam's.


def _l2(param: np.ndarray, grad: np.ndarray, wd: float) -> np.ndarray:
    # Coupled weight decay: a new array, never the user's gradient changed in place.
    return grad + wd * param if wd != 0 else grad


class RMSprop(Optimizer):
    """RMSprop with PyTorch's rule (optionally centered, with momentum).

    Per parameter ``w`` with gradient ``g``::

        g ← g + λ·w
        v ← α·v + (1 − α)·g²
        ḡ ← α·ḡ + (1 − α)·g,  d = sqrt(v − ḡ²) + eps   (centered)
        d = sqrt(v) + eps                                (otherwise)
        b ← μ·b + g/d,  w ← w − lr·b                     (momentum μ > 0)
        w ← w − lr·g/d                                   (otherwise)

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-2
    alpha : float, default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import RMSprop
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = RMSprop([w], lr=0.01)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    0.9
    """

    # All three buffers always exist, so that momentum or centered can be turned on later.
    _state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ):
        who = "RMSprop"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "alpha", alpha, 0.0)
        _check_range(who, "eps", eps, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        _check_range(who, "momentum", momentum, 0.0)
        defaults = {
            "lr": lr,
            "alpha": alpha,
            "eps": eps,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "centered": bool(centered),
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        return (
            float(group["lr"]),
            float(group["alpha"]),
            float(group["eps"]),
            float(group["weight_decay"]),
            float(group["momentum"]),
            bool(group["centered"]),
        )

    def _apply(self, param, grad, state, scalars):
        lr, alpha, eps, wd, momentum, centered = scalars
        square_avg, buf, grad_avg = state
        g = _l2(param, grad, wd)
        square_avg *= alpha
        square_avg += (1.0 - alpha) * g * g
        if centered:
            grad_avg += (1.0 - alpha) * (g - grad_avg)
            avg = np.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg += eps
        if momentum > 0:
            buf *= momentum
            buf += g / avg
            param -= lr * buf
        else:
            param -= lr * (g / avg)

    def _export_buffer(self, name, view, shape, group=None):
        group = self.param_groups[0] if group is None else group
        if name == "momentum_buffer" and group["momentum"] == 0:
            return None
        if name == "grad_avg" and not group["centered"]:
            return None
        return view.reshape(shape).copy()


class Adagrad(Optimizer):
    """Adagrad with PyTorch's rule (learning-rate decay, initial accumulator).

    At step ``t`` (1, 2, ...)::

        g ← g + λ·w
        s ← s + g²
        w ← w − lr / (1 + (t − 1)·lr_decay) · g / (sqrt(s) + eps)

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
        The starting value of ``s``.
    eps : float, default 1e-10
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adagrad
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adagrad([w], lr=0.5)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # 1 - 0.5 * 2 / 2
    0.5
    """

    _state_names = ("sum",)

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ):
        who = "Adagrad"
        _check_range(who, "learning rate lr", lr, 0.0)
        _check_range(who, "lr_decay", lr_decay, 0.0)
        _check_range(who, "weight_decay", weight_decay, 0.0)
        _check_range(who, "initial_accumulator_value", initial_accumulator_value, 0.0)
        _check_range(who, "eps", eps, 0.0)
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": bool(maximize),
        }
        super().__init__(params, defaults)

    def _init_state(self, group, flat):
        flat.state[0].fill(group["initial_accumulator_value"])

    def _scalars(self, group, count):
        clr = float(group["lr"]) / (1.0 + count * float(group["lr_decay"]))
        return clr, float(group["eps"]), float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        clr, eps, wd = scalars
        g = _l2(param, grad, wd)
        total = state[0]
        total += g * g
        param -= clr * (g / (np.sqrt(total) + eps))


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm), PyTorch's rule.

    At step ``t``::

        g ← g + λ·w
        m ← β1·m + (1 − β1)·g
        u ← max(β2·u, |g| + eps)
        w ← w − lr/(1 − β1ᵗ) · m/u

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import Adamax
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = Adamax([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)
    0.9
    """

    _state_names = ("exp_avg", "exp_inf")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("Adamax", lr, betas, eps, weight_decay)
        defaults["maximize"] = bool(maximize)
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        beta1, beta2 = group["betas"]
        step = count + 1
        clr = float(group["lr"]) / (1.0 - float(beta1) ** step)
        return clr, float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"])

    def _apply(self, param, grad, state, scalars):
        clr, beta1, beta2, eps, wd = scalars
        exp_avg, exp_inf = state
        g = _l2(param, grad, wd)
        exp_avg += (1.0 - beta1) * (g - exp_avg)
        exp_inf *= beta2
        np.maximum(exp_inf, np.abs(g) + eps, out=exp_inf)
        param -= clr * (exp_avg / exp_inf)


def _adam_like_defaults(who, lr, betas, eps, weight_decay) -> dict[str, Any]:
    _check_range(who, "learning rate lr", lr, 0.0)
    _check_pair(who, "betas", betas)
    _check_range(who, "beta1", betas[0], 0.0, 1.0)
    _check_range(who, "beta2", betas[1], 0.0, 1.0)
    _check_range(who, "eps", eps, 0.0)
    _check_range(who, "weight_decay", weight_decay, 0.0)
    return {
        "lr": lr,
        "betas": (float(betas[0]), float(betas[1])),
        "eps": eps,
        "weight_decay": weight_decay,
    }


class NAdam(Optimizer):
    """NAdam (Adam with Nesterov momentum and momentum decay), PyTorch's rule.

    At step ``t``, with ``μₜ = β1·(1 − ½·0.96^(t·ψ))`` (``ψ = momentum_decay``)::

        g ← g + λ·w                (or w ← w − lr·λ·w if decoupled_weight_decay)
        m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
        d = sqrt(v/(1 − β2ᵗ)) + eps
        w ← w − lr·(1 − μₜ)/(1 − Πᵢ≤ₜ μᵢ) · g/d − lr·μₜ₊₁/(1 − Πᵢ≤ₜ₊₁ μᵢ) · m/d

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 2e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    decoupled_weight_decay : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import NAdam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = NAdam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> float(w.data[0]) < 1.0
    True
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("NAdam", lr, betas, eps, weight_decay)
        _check_range("NAdam", "momentum_decay", momentum_decay, 0.0)
        defaults.update(
            momentum_decay=momentum_decay,
            decoupled_weight_decay=bool(decoupled_weight_decay),
            maximize=bool(maximize),
        )
        super().__init__(params, defaults)

    @staticmethod
    def _mu(beta1: float, psi: float, t: int) -> float:
        return beta1 * (1.0 - 0.5 * 0.96 ** (t * psi))

    def _mu_product(self, group, steps: int) -> float:
        # The product of μ₁..μₜ depends on the step number only (PyTorch keeps it as
        # state 'mu_product'; here it is recomputed, so uneven counts need no extra buffer).
        # NOTE: PyTorch holds it in a float32 scalar tensor whatever the parameters' dtype;
        # the product is rounded the same way so that float64 runs agree with it exactly.
        beta1, psi = float(group["betas"][0]), float(group["momentum_decay"])
        # Cached per (beta1, psi): products[t] is the product up to step t.
        products = self.__dict__.setdefault("_mu_products", {}).setdefault((beta1, psi), [1.0])
        while len(products) <= steps:
            t = len(products)
            mu = np.float32(self._mu(beta1, psi, t))
            products.append(float(np.float32(np.float32(products[-1]) * mu)))
        return products[steps]

    def _extra_state(self, group, count):
        return {"mu_product": self._mu_product(group, count)}

    def _scalars(self, group, count):
        beta1, beta2 = (float(b) for b in group["betas"])
        psi = float(group["momentum_decay"])
        step = count + 1
        mu, mu_next = self._mu(beta1, psi, step), self._mu(beta1, psi, step + 1)
        product = self._mu_product(group, step)
        return (
            float(group["lr"]),
            beta1,
            beta2,
            float(group["eps"]),
            float(group["weight_decay"]),
            bool(group["decoupled_weight_decay"]),
            1.0 - beta2**step,
            mu,
            mu_next,
            product,
            product * mu_next,
        )

    def _apply(self, param, grad, state, scalars):
        lr, beta1, beta2, eps, wd, decoupled, bc2, mu, mu_next, prod, prod_next = scalars
        exp_avg, exp_avg_sq = state
        g = grad
        if wd != 0:
            if decoupled:
                param *= 1.0 - lr * wd
            else:
                g = grad + wd * param
        exp_avg += (1.0 - beta1) * (g - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * g * g
        denom = np.sqrt(exp_avg_sq / bc2) + eps
        param -= (lr * (1.0 - mu) / (1.0 - prod)) * (g / denom)
        param -= (lr * mu_next / (1.0 - prod_next)) * (exp_avg / denom)


class RAdam(Optimizer):
    """RAdam (rectified Adam), PyTorch's rule.

    At step ``t``, with ``ρ∞ = 2/(1 − β2) − 1`` and ``ρₜ = ρ∞ − 2t·β2ᵗ/(1 − β2ᵗ)``::

        g ← g + λ·w                (or w ← w − lr·λ·w if decoupled_weight_decay)
        m ← β1·m + (1 − β1)·g,  v ← β2·v + (1 − β2)·g²
        m̂ = m/(1 − β1ᵗ)
        w ← w − lr·m̂·r·sqrt(1 − β2ᵗ)/(sqrt(v) + eps)   if ρₜ > 5, with
            r = sqrt((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ))
        w ← w − lr·m̂                                    otherwise

    Parameters
    ----------
    params : iterable of Tensor or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    decoupled_weight_decay : bool, default False
    maximize : bool, default False

    Raises
    ------
    ValueError
        For an out-of-range hyperparameter.

    Example
    -------
    >>> import fastbp as fb
    >>> from fastbp.optim import RAdam
    >>> w = fb.tensor([1.0], requires_grad=True)
    >>> opt = RAdam([w], lr=0.1)
    >>> opt.zero_grad(); (w * w).sum().backward(); opt.step()
    >>> round(float(w.data[0]), 4)  # early steps are plain momentum SGD: 1 - 0.1 * 2
    0.8
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = _adam_like_defaults("RAdam", lr, betas, eps, weight_decay)
        defaults.update(
            decoupled_weight_decay=bool(decoupled_weight_decay), maximize=bool(maximize)
        )
        super().__init__(params, defaults)

    def _scalars(self, group, count):
        beta1, beta2 = (float(b) for b in group["betas"])
        step = count + 1
        bc1, bc2 = 1.0 - beta1**step, 1.0 - beta2**step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2**step / bc2
        rect = None
        if rho_t > 5.0:
            rect = math.sqrt(
                (rho_t - 4.0)
                * (rho_t - 2.0)
                * rho_inf
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
            )
        return (
            float(group["lr"]),
            beta1,
            beta2,
            float(group["eps"]),
            float(group["weight_decay"]),
            bool(group["decoupled_weight_decay"]),
            bc1,
            bc2,
            rect,
        )

    def _apply(self, param, grad, state, scalars):
        lr, beta1, beta2, eps, wd, decoupled, bc1, bc2, rect = scalars
        exp_avg, exp_avg_sq = state
        g = grad
        if wd != 0:
            if decoupled:
                param *= 1.0 - lr * wd
            else:
                g = grad + wd * param
        exp_avg += (1.0 - beta1) * (g - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1.0 - beta2) * g * g
        corrected = exp_avg / bc1
        if rect is None:
            param -= corrected * lr
        else:
            adaptive = math.sqrt(bc2) / (np.sqrt(exp_avg_sq) + eps)
            param -= corrected * lr * adaptive * rect


__all__ += ["RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam"]

from . import lr_scheduler  # noqa: E402  (uses only param_groups: no import cycle)
