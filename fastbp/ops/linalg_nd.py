"""General products: N-D ``matmul`` with broadcast batch dimensions, and ``einsum``.

The 2-D product stays the op ``matmul`` (:mod:`fastbp.ops.linalg`, on the fast kernel
path and known to the compiler by that name); every other rank goes through
``matmul_nd`` here. Both delegate the arithmetic to NumPy/BLAS.
"""

from __future__ import annotations

import string

import numpy as np

from ..core.registry import defop

# ----------------------------------------------------------------------- matmul_nd


def _matmul_nd_forward(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands need at least one dimension, got shapes {a.shape} and "
            f"{b.shape}; use * for a product with a scalar"
        )
    return np.matmul(a, b), (a, b)


def _matmul_nd_vjp(saved, dy, needs):
    a, b = saved
    if a.ndim == 1 and b.ndim == 1:  # the dot product: dy is a scalar
        return (dy * b if needs[0] else None), (dy * a if needs[1] else None)
    # A 1-D operand acts as a row (left) or a column (right) that matmul then drops:
    # give it and dy those axes back, take the batched products, and drop them again.
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    dy2 = dy
    if a.ndim == 1:
        dy2 = np.expand_dims(dy2, -2)
    if b.ndim == 1:
        dy2 = np.expand_dims(dy2, -1)
    da = db = None
    if needs[0]:
        da = np.matmul(dy2, np.swapaxes(b2, -1, -2))
        if a.ndim == 1:
            da = da[..., 0, :]
    if needs[1]:
        db = np.matmul(np.swapaxes(a2, -1, -2), dy2)
        if b.ndim == 1:
            db = db[..., 0]
    # Batch dimensions that were broadcast are summed back by the engine.
    return da, db


MATMUL_ND = defop("matmul_nd", _matmul_nd_forward, _matmul_nd_vjp)

# -------------------------------------------------------------------------- einsum


def _parse_einsum(subscripts: str, shapes) -> tuple[list[str], str]:
    """Return the explicit input and output subscripts, ``...`` spelled out in letters."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
        explicit = True
    else:
        lhs, out, explicit = subscripts, "", False
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(
            f"einsum: the subscripts '{subscripts}' name {len(terms)} operands but "
            f"{len(shapes)} were given"
        )
    used = set(subscripts) - set(".,->")
    spare = [c for c in string.ascii_letters if c not in used]
    width = 0
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            width = max(width, len(shape) - (len(term) - 3))
    if width > len(spare):
        raise ValueError("einsum: too many dimensions under '...'")
    ell = "".join(spare[:width])
    full = []
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            k = len(shape) - (len(term) - 3)
            term = term.replace("...", ell[width - k :] if k else "")
        if len(term) != len(shape):
            raise ValueError(
                f"einsum: subscript '{term}' has {len(term)} letters for an operand of "
                f"shape {tuple(shape)}"
            )
        full.append(term)
    if explicit:
        out = out.replace("...", ell)
    else:
        # Implicit mode: the letters seen exactly once, alphabetically, after '...'.
        counts: dict[str, int] = {}
        for term in full:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    return full, out


def _einsum_forward(*arrays, subscripts):
    terms, out = _parse_einsum(subscripts, [a.shape for a in arrays])
    sizes: dict[str, int] = {}
    for term, a in zip(terms, arrays, strict=True):
        for c, n in zip(term, a.shape, strict=True):
            if sizes.get(c, 1) == 1:
                sizes[c] = n
    result = np.einsum(",".join(terms) + "->" + out, *arrays, optimize=True)
    return np.asarray(result), (arrays, terms, out, sizes)


def _einsum_vjp(saved, dy, needs):
    arrays, terms, out, sizes = saved
    grads = []
    for i, term in enumerate(terms):
        if not needs[i]:
            grads.append(None)
            continue
        # d/d(operand i): contract dy with every other operand onto operand i's letters.
        others = [(terms[j], arrays[j]) for j in range(len(terms)) if j != i]
        present = set(out).union(*(set(t) for t, _ in others))
        letters = "".join(dict.fromkeys(c for c in term if c in present))
        spec = ",".join([out] + [t for t, _ in others]) + "->" + letters
        g = np.einsum(spec, dy, *[a for _, a in others], optimize=True)
        # Letters of operand i seen nowhere else were summed away: broadcast them back.
        unique = "".join(dict.fromkeys(term))
        missing = [c for c in unique if c not in present]
        if missing:
            g = np.expand_dims(g, tuple(range(len(letters), len(unique))))
            order = letters + "".join(missing)
            g = np.moveaxis(g, range(len(order)), [order.index(c) for c in unique])
            g = np.broadcast_to(g, [sizes[c] for c in unique])
        # Sizes of 1 that einsum broadcast: sum them back down.
        own = {}
        for c, n in zip(term, arrays[i].shape, strict=True):
            own[c] = n
        axes = tuple(k for k, c in enumerate(unique) if own[c] == 1 and g.shape[k] != 1)
        if axes:
            g = g.sum(axis=axes, keepdims=True)
        if len(unique) == len(term):
            grads.append(np.ascontiguousarray(g.transpose([unique.index(c) for c in term])))
        else:
            # A repeated letter (a diagonal such as 'ii->i'): write g onto the diagonal.
            dx = np.zeros(arrays[i].shape, dtype=np.result_type(dy, g))
            ranges = {c: np.arange(g.shape[k]) for k, c in enumerate(unique)}
            shape = [1] * len(unique)
            index = []
            for c in term:
                k = unique.index(c)
                s = list(shape)
                s[k] = -1
                index.append(ranges[c].reshape(s))
            dx[tuple(index)] = g
            grads.append(dx)
    return tuple(grads)


EINSUM = defop("einsum", _einsum_forward, _einsum_vjp)
