"""The base class of every optimizer: flat buffers and the step machinery they share.

See :mod:`fastbp.optim` for how an update is made fast (one kernel call over flat
buffers); the optimizers themselves live in one module each.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from .. import kernels
from ..core.observer import record_call
from ..core.tensor import Tensor
from .checks import check_pair, check_range

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


# ------------------------------------------------------- helpers of several optimizers


def _l2(param: np.ndarray, grad: np.ndarray, wd: float) -> np.ndarray:
    # Coupled weight decay: a new array, never the user's gradient changed in place.
    return grad + wd * param if wd != 0 else grad


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
