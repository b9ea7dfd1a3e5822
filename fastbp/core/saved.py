"""Saved-array protection: a backward must not run on values changed since forward.

An op that saves a parameter's array for backward (``w`` in ``x @ w``) would produce
silently wrong gradients if the array changed before backward. Two guards:

* fastbp's own in-place updates (an optimizer's ``step``) bump the tensor's
  ``_version``; the record remembers the versions and backward compares them;
* while a record holds a parameter's array, the array is read-only, so a raw NumPy
  write to it raises at once. A per-array count lets several records hold one array,
  and releasing the record (backward, or the graph being dropped) makes it writable.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["lock", "unlock", "check_versions", "saved_parameters"]

_lock_counts: dict[int, int] = {}
_lock_guard = threading.Lock()


def lock(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
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


def unlock(arrays: tuple[np.ndarray, ...]) -> None:
    """Undo one :func:`lock` of each array; the last one makes it writable again."""
    with _lock_guard:
        for a in arrays:
            key = id(a)
            count = _lock_counts.get(key, 1) - 1
            if count <= 0:
                _lock_counts.pop(key, None)
                a.setflags(write=True)
            else:
                _lock_counts[key] = count


def saved_parameters(inputs, saved) -> list:
    """The parameters (leaves that require grad) among ``inputs`` whose very array is saved."""
    held = saved if type(saved) is tuple else (saved,)
    params = []
    for t in inputs:
        if t._node is None and t.requires_grad:
            data = t.data
            for item in held:
                if item is data:
                    params.append(t)
                    break
    return params


def check_versions(name: str, params, versions) -> None:
    """Raise if fastbp updated a saved parameter in place since op ``name`` ran."""
    for t, version in zip(params, versions, strict=True):
        if t._version != version:
            raise RuntimeError(
                f"backward of '{name}': a parameter it saved (shape {t.shape}) "
                f"was modified in place (e.g. by optimizer.step()) after the forward "
                f"pass, so its gradient would be wrong. Call backward() before step(), "
                f"or recompute the forward pass."
            )
