"""Build the computation-graph pictures shown in the tutorial, with ``fastbp.viz``.

The MkDocs hook (``docs/hooks.py``) calls :func:`svg` (or :func:`dot_source`) at build
time, so the pictures always show what the current fastbp records. Each graph here is
built by the same code as the tutorial's matching code block.

Run it by hand to look at the pictures without building the site::

    python docs/make_graphs.py /tmp/graphs    # SVGs with Graphviz, .dot files without
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import fastbp as fb
import fastbp.nn.functional as F
from fastbp import viz

Drawing = tuple[fb.Tensor, dict[str, Any]]  # the tensor to draw and to_dot's options


def circuit() -> Drawing:
    """The tutorial's first circuit, ``f = (x + y) * z`` at x=-2, y=5, z=-4."""
    x = fb.tensor(-2.0, requires_grad=True)
    y = fb.tensor(5.0, requires_grad=True)
    z = fb.tensor(-4.0, requires_grad=True)
    q = x + y
    f = q * z
    return f, {"names": {"x": x, "y": y, "z": z, "q": q, "f": f}}


def staged() -> Drawing:
    """``f = (x + σ(y)) / (σ(x) + (x + y)²)`` at x=3, y=-4, one op per stage."""
    x = fb.tensor(3.0, dtype=np.float64, requires_grad=True)
    y = fb.tensor(-4.0, dtype=np.float64, requires_grad=True)
    sigy = fb.sigmoid(y)
    num = x + sigy
    sigx = fb.sigmoid(x)
    xpy = x + y
    xpysqr = xpy**2
    den = sigx + xpysqr
    f = num / den
    names = {"x": x, "y": y, "sigy": sigy, "num": num, "sigx": sigx, "xpy": xpy}
    names.update({"xpysqr": xpysqr, "den": den, "f": f})
    return f, {"names": names}


def mlp() -> Drawing:
    """The tutorial's one-hidden-layer MLP with an L2 penalty, with saved arrays shown."""
    rng = np.random.default_rng(0)
    n, d, h, c, lam = 128, 784, 256, 10, 1e-3
    X = fb.tensor(rng.standard_normal((n, d), dtype=np.float32))
    labels = rng.integers(0, c, size=n)
    W1 = fb.tensor(0.01 * rng.standard_normal((d, h), dtype=np.float32), requires_grad=True)
    b1 = fb.zeros(h, requires_grad=True)
    W2 = fb.tensor(0.01 * rng.standard_normal((h, c), dtype=np.float32), requires_grad=True)
    b2 = fb.zeros(c, requires_grad=True)
    hidden = F.relu(F.linear(X, W1, b1))
    scores = F.linear(hidden, W2, b2)
    data_loss = F.cross_entropy(scores, labels)
    reg_loss = 0.5 * lam * ((W1 * W1).sum() + (W2 * W2).sum())
    loss = data_loss + reg_loss
    names = {"X": X, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "hidden": hidden}
    names.update({"scores": scores, "data_loss": data_loss, "reg_loss": reg_loss, "loss": loss})
    return loss, {"names": names, "show_saved": True}


# name -> (builder, alt text for the picture)
GRAPHS: dict[str, tuple[Callable[[], Drawing], str]] = {
    "circuit": (circuit, "Computation graph of f = (x + y) * z"),
    "staged": (staged, "Computation graph of f = (x + sigmoid(y)) / (sigmoid(x) + (x + y)^2)"),
    "mlp": (mlp, "Computation graph of a one-hidden-layer MLP with an L2 penalty"),
}


def dot_source(name: str) -> str:
    """Return the DOT text of the graph called ``name``."""
    tensor, options = GRAPHS[name][0]()
    return viz.to_dot(tensor, **options)


def have_dot() -> bool:
    """Whether Graphviz's ``dot`` program is on PATH."""
    return shutil.which("dot") is not None


def svg(name: str) -> bytes:
    """Return the graph called ``name`` as an SVG, laid out by Graphviz.

    Raises
    ------
    RuntimeError
        If ``dot`` is missing or fails (from :func:`fastbp.viz.render`).
    """
    tensor, options = GRAPHS[name][0]()
    with tempfile.TemporaryDirectory() as tmp:
        return viz.render(tensor, Path(tmp, f"{name}.svg"), **options).read_bytes()


def main(argv: list[str] | None = None) -> int:
    """Write every graph into the directory given on the command line."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python docs/make_graphs.py OUTPUT_DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for name in GRAPHS:
        if have_dot():
            path = out / f"{name}.svg"
            path.write_bytes(svg(name))
        else:
            path = out / f"{name}.dot"
            path.write_text(dot_source(name) + "\n", encoding="utf-8")
        print(path)
    if not have_dot():
        print("Graphviz 'dot' not found: wrote DOT text instead of SVG", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
