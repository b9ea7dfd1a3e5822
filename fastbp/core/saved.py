"""Saved-array guard: a backward must not use values that changed after the forward pass.

An op saves arrays for its backward (``w`` and ``x`` in ``x @ w``, its own output for
``exp``). If one of them changed before backward, the gradients would be silently
wrong. Nothing is ever locked: writes are always allowed, as in PyTorch, and a
backward through a graph whose saved values changed raises instead. Two checks:

* **Versions.** Every in-place write made through fastbp (an in-place op such as
  ``add_``, ``optimizer.step()``, ``load_state_dict``) bumps the tensor's ``_version``.
  A record remembers the version of each tensor whose array it saved.
* **Fingerprints.** A raw NumPy write (``p.data -= lr * p.grad``, ``np.copyto`` into a
  layer's input, a write to the user's own array behind ``fb.from_numpy``) bumps
  nothing. So the record also keeps a fingerprint of each such array: all its bytes for
  small arrays, and for larger ones a sample of :data:`SAMPLES` elements spread evenly
  over it (a copy of 256 bytes or so, whatever the array's size). Backward compares it.

NOTE: the fingerprint of a large array is a sample. A raw write that leaves every
sampled element as it was (one element changed in a million) is not caught; a write
through fastbp always is, and so is every raw write seen in practice (a scaling, a
copy, an update with a gradient that is not zero at all sampled places). Checking the
whole array at every op would cost a pass over memory per saved array, about as
much as the op itself for the elementwise ones.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SAMPLES", "sample", "fingerprint", "guard", "check"]

SAMPLES = 64  # elements sampled from an array larger than that


def sample(a: np.ndarray) -> np.ndarray:
    """The elements of ``a`` that its fingerprint reads, as a view of ``a``.

    All of ``a`` if it has at most :data:`SAMPLES` elements; else about that many,
    evenly strided back from the last element. A record
    keeps this view, so that its check at backward is one ``tobytes`` call.

    Example
    -------
    >>> import numpy as np
    >>> sample(np.arange(1000)).size, sample(np.arange(10)).size
    (67, 10)
    """
    n = a.size
    if n <= SAMPLES:
        return a
    if a.flags.c_contiguous:
        return a.reshape(-1)[:: -(n // SAMPLES)]
    # Any layout: a strided sample along each axis, about SAMPLES elements in all.
    per_axis = max(2, int(SAMPLES ** (1 / a.ndim)))
    return a[tuple(slice(None, None, -max(1, size // per_axis)) for size in a.shape)]


def fingerprint(a: np.ndarray) -> bytes:
    """A cheap summary of ``a``'s values: its bytes, or a sample of them for a large array.

    Example
    -------
    >>> import numpy as np
    >>> a = np.zeros(1000, np.float32)
    >>> before = fingerprint(a)
    >>> a *= 2; fingerprint(a) == before    # zeros stay zeros: nothing changed
    True
    >>> a += 1; fingerprint(a) == before
    False
    """
    return sample(a).tobytes()


def guard(inputs, saved, out: np.ndarray) -> tuple:
    """What a record keeps to check its saved arrays: ``(tensor or None, version, array,
    sample, fingerprint)`` for each saved array that is an input's or the output's.

    The output's entry has no tensor (the record holds its output weakly); its version
    is 0, the version of a new tensor.
    """
    # NOTE: this runs for every recorded op that saves something, so the two shapes
    # nearly every op saves (its own output; its inputs' arrays) get a path without a
    # loop: about half the cost of the general one below on a tiny array.
    if saved is out:  # exp, tanh, sigmoid...: the output alone
        view = out if out.size <= SAMPLES else sample(out)
        return ((None, 0, out, view, view.tobytes()),)
    if type(saved) is not tuple:
        saved = (saved,)
    guards = []
    for item in saved:
        if item is out:
            view = item if item.size <= SAMPLES else sample(item)
            guards.append((None, 0, item, view, view.tobytes()))
            continue
        for t in inputs:
            if t.data is item:
                if item.ndim == 0 and not item.flags.writeable:
                    break  # a cached Python-scalar constant: nobody can write it
                view = item if item.size <= SAMPLES else sample(item)
                guards.append((t, t._version, item, view, view.tobytes()))
                break
    return tuple(guards)


def check(name: str, guards: tuple, output) -> None:
    """Raise ``RuntimeError`` if a saved array of op ``name`` changed since its forward.

    ``output`` is the op's output tensor, or None if it is gone.
    """
    for t, version, array, view, print_ in guards:
        owner = t if t is not None else output
        if owner is not None and owner._version != version:  # first: it names the cause
            raise RuntimeError(
                f"backward of '{name}': a tensor it saved (shape {array.shape}, "
                f"{array.dtype}) was modified in place (e.g. by optimizer.step() or add_()) "
                f"after the forward pass (version {owner._version}, expected {version}), so "
                f"its gradient would be wrong. Call backward() before modifying it, or "
                f"recompute the forward pass."
            )
        if view.tobytes() != print_:
            raise RuntimeError(
                f"backward of '{name}': an array it saved (shape {array.shape}, "
                f"{array.dtype}) was written to directly after the forward pass (a raw "
                f"NumPy write to .data, or to an array shared with fb.from_numpy), so its "
                f"gradient would be wrong. Call backward() before changing the array, "
                f"write through a copy, or recompute the forward pass."
            )
