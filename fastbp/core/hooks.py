"""Gradient hooks: call user code once a leaf's gradient of a backward is complete.

A data-parallel wrapper (:mod:`fastbp.distributed`) starts reducing a bucket of
gradients as soon as every gradient in it is final, while the walk goes on. Only
when some leaf has a hook does the walk count, before it starts, the edges into each
hooked leaf (:func:`hooked_edges`); each gradient delivered, or found to be None, takes
one off (:func:`leaf_edge_done`), and the last one runs the leaf's hooks.

Walk-start hooks (:func:`register_walk_start_hook`) see that count before the walk
computes anything: a data-parallel wrapper learns there which of its parameters this
backward will never reach (an unused branch), instead of waiting for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["register_post_accumulate_grad_hook", "register_walk_start_hook", "RemovableHandle"]

# id(leaf tensor) -> hooks to call once its gradient is complete in a backward (torch's
# register_post_accumulate_grad_hook). By id, not weak keys: a Tensor's == is elementwise;
# a finalizer drops the entry with the tensor, so a hook never keeps a tensor alive.
leaf_hooks: dict[int, list] = {}
# Called with hooked_edges' result as each backward walk over hooked leaves starts.
walk_start_hooks: list = []


class RemovableHandle:
    """Returned by a hook registration; :meth:`remove` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable[..., Any]):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        """Unregister the hook (a second call does nothing)."""
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


def register_post_accumulate_grad_hook(t, hook: Callable[[Any], None]) -> RemovableHandle:
    """Call ``hook(t)`` each time a backward has finished accumulating ``t.grad``.

    Parameters
    ----------
    t : Tensor
        A leaf that requires grad.
    hook : callable
        Called with the tensor, once per backward that reaches it, after its last
        gradient of that backward was added into ``t.grad``.

    Returns
    -------
    RemovableHandle

    Raises
    ------
    RuntimeError
        If ``t`` is not a leaf that requires grad.

    Example
    -------
    >>> import fastbp as fb
    >>> w = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> seen = []
    >>> handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.copy()))
    >>> (w * w + w).sum().backward()
    >>> seen
    [array([3., 5.], dtype=float32)]
    """
    if t._node is not None or not t.requires_grad:
        raise RuntimeError(
            "register_post_accumulate_grad_hook: only a leaf tensor that requires grad "
            f"has a gradient to accumulate (shape {t.shape})"
        )
    hooks = leaf_hooks.get(id(t))
    if hooks is None:
        hooks = leaf_hooks[id(t)] = []
        weakref.finalize(t, leaf_hooks.pop, id(t), None)
    hooks.append(hook)
    return RemovableHandle(hooks, hook)


def hooked_edges(root) -> dict[int, list]:
    """For each hooked leaf reachable from ``root``: [tensor, number of edges into it]."""
    counts: dict[int, list] = {}
    seen, stack = set(), [root._node]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for t, need in zip(node.inputs, node.needs, strict=True):
            if not need:
                continue
            if t._node is not None:
                stack.append(t._node)
            elif leaf_hooks.get(id(t)):
                counts.setdefault(id(t), [t, 0])[1] += 1
    for hook in list(walk_start_hooks):
        hook(counts)
    return counts


def register_walk_start_hook(hook: Callable[[dict], None]) -> RemovableHandle:
    """Call ``hook(reached)`` when a backward that reaches hooked leaves starts its walk.

    Only backwards run while some leaf has a post-accumulate-grad hook call it (the walk
    counts its edges into those leaves only then); ``fastbp.grad`` does not.

    Parameters
    ----------
    hook : callable
        Called with a dict ``id(leaf) -> [leaf, edges]`` of the hooked leaves the walk
        will reach, before any gradient is computed. Each of them gets its
        post-accumulate-grad hooks run once in this backward; a hooked leaf missing from
        the dict gets none. The hook may raise to stop the backward before it starts.

    Returns
    -------
    RemovableHandle

    Example
    -------
    >>> import fastbp as fb
    >>> a = fb.tensor([1.0], requires_grad=True)
    >>> b = fb.tensor([2.0], requires_grad=True)
    >>> hooks = [t.register_post_accumulate_grad_hook(lambda t: None) for t in (a, b)]
    >>> seen = []
    >>> handle = register_walk_start_hook(lambda reached: seen.append(id(b) in reached))
    >>> (a * 3).sum().backward()
    >>> handle.remove(); seen
    [False]
    """
    walk_start_hooks.append(hook)
    return RemovableHandle(walk_start_hooks, hook)


def run_hooks(t) -> None:
    for hook in list(leaf_hooks.get(id(t), ())):
        hook(t)


def leaf_edge_done(hooked: dict, t) -> None:
    """One edge of the walk into the hooked leaf ``t`` is done; after its last, run the hooks."""
    entry = hooked[id(t)]
    entry[1] -= 1
    if entry[1] == 0:
        del hooked[id(t)]
        run_hooks(t)
