"""Draw the computation graph behind a tensor with Graphviz.

:func:`to_dot` turns the tape records that produced a tensor into DOT text, which any
Graphviz tool can lay out; :func:`render` runs the ``dot`` program on it and writes an
SVG, PNG or PDF file. The picture reads left to right, the way the forward pass runs::

    x (leaf) ──┐
               add (2,) ──┐
    y (leaf) ──┘          mul (2,) ── output
    z (leaf) ─────────────┘

* a yellow box per recorded op, labelled with the op's name and its output's shape;
* a blue ellipse per leaf that requires a gradient (a parameter or an input you asked
  gradients for), a grey one per constant leaf (data, Python numbers);
* a green ellipse for the tensor you passed in.

Draw the graph *before* calling ``backward()``: backward frees each record's inputs
as it goes (unless ``retain_graph=True``), and a freed record is drawn as a dashed box
with no inputs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .core.engine import FREED, Node
from .core.tensor import Tensor

__all__ = ["graph_nodes", "saved_arrays", "to_dot", "render"]

# The formats ``render`` hands to ``dot -T``; ``.dot``/``.gv`` are written without Graphviz.
_FORMATS = ("svg", "png", "pdf")
_TEXT_SUFFIXES = (".dot", ".gv")

_OP_STYLE = 'shape=box, style="rounded,filled", fillcolor="#fff2cc"'
_FREED_STYLE = 'shape=box, style="rounded,dashed", color="#999999"'
_PARAM_STYLE = 'shape=ellipse, style=filled, fillcolor="#cfe2ff"'
_CONST_STYLE = 'shape=ellipse, style=filled, fillcolor="#eeeeee"'
_OUTPUT_STYLE = 'shape=ellipse, style=filled, fillcolor="#d9f2d9"'


def graph_nodes(tensor: Tensor) -> list[Node]:
    """Return the tape records that produced ``tensor``, in the order they ran.

    The walk is a loop over an explicit stack, so graphs of any depth work.

    Parameters
    ----------
    tensor : Tensor
        Any tensor; a leaf has no records.

    Returns
    -------
    list of Node
        Sorted by ``seq`` (increasing): every record comes after the records that
        produced its inputs.

    Raises
    ------
    TypeError
        If ``tensor`` is not a :class:`~fastbp.Tensor`.

    Examples
    --------
    >>> import fastbp as fb
    >>> from fastbp.viz import graph_nodes
    >>> x = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> [node.op.name for node in graph_nodes((x * 2).sum())]
    ['mul', 'sum']
    """
    nodes, _ = _collect(tensor)
    return nodes


def saved_arrays(node: Node) -> list[np.ndarray]:
    """Return the arrays a tape record keeps for its backward pass.

    A record's ``saved`` slot holds whatever the op's forward chose to keep: an
    array, a tuple mixing arrays with shapes and flags, or nothing. This digs the
    arrays out so you can count the memory backward will need.

    Parameters
    ----------
    node : Node
        A tape record (``tensor.grad_fn``).

    Returns
    -------
    list of ndarray
        Empty when the op saved no array or backward has already freed them.

    Examples
    --------
    >>> import fastbp as fb
    >>> from fastbp.viz import saved_arrays
    >>> x = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> [a.nbytes for a in saved_arrays(fb.exp(x).grad_fn)]  # exp keeps its output
    [8]
    """
    found: list[np.ndarray] = []
    pending: list[Any] = [node.saved]
    while pending:
        item = pending.pop()
        if isinstance(item, np.ndarray):
            found.append(item)
        elif isinstance(item, np.generic):
            # NumPy ufuncs return scalars for 0-d inputs, so an op may save one.
            found.append(np.asarray(item))
        elif isinstance(item, (tuple, list)):
            pending.extend(reversed(item))  # reversed: keep the op's own order
        elif isinstance(item, Mapping):
            pending.extend(reversed(list(item.values())))
    return found


def to_dot(
    tensor: Tensor,
    show_saved: bool = False,
    names: Mapping[Any, Any] | None = None,
    rankdir: str = "LR",
) -> str:
    """Return Graphviz DOT text for the graph that produced ``tensor``.

    Ops are yellow boxes (op name and output shape); leaves are ellipses, blue when
    they require a gradient and grey when they are constants (shape, dtype, and the
    value of one-element constants); ``tensor`` itself is the green ellipse. Edges run
    from each input to the op that consumed it. The output is deterministic: ops are
    numbered in tape order (``seq``), leaves in the order ops first use them.

    Parameters
    ----------
    tensor : Tensor
        The result whose history to draw, usually a loss. Draw it before
        ``backward()``, which frees the records' inputs (or pass
        ``retain_graph=True`` to backward).
    show_saved : bool, default False
        Add to each op box the arrays it saved for backward (shape, dtype) and
        their total size in bytes.
    names : mapping, optional
        Labels for tensors, as ``{tensor: "x"}`` (``{"x": tensor}`` works too).
        A named leaf or output shows its name; a named intermediate shows it in the
        box of the op that produced it.
    rankdir : {"LR", "TB", "RL", "BT"}, default "LR"
        Graphviz layout direction: left to right, top to bottom, ...

    Returns
    -------
    str
        A ``digraph`` in the DOT language.

    Raises
    ------
    TypeError
        If ``tensor`` is not a Tensor, or a ``names`` entry pairs no Tensor with a
        string.
    ValueError
        If ``rankdir`` is not one of the four directions.

    Examples
    --------
    >>> import fastbp as fb
    >>> from fastbp.viz import to_dot
    >>> x = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> print(to_dot(x * 3, names={x: "x"}))  # doctest: +ELLIPSIS
    digraph fastbp {
      graph [rankdir=LR];
      node [fontname="Helvetica", fontsize=11];
      edge [arrowsize=0.7];
      leaf0 [label="x\\n(2,) float32\\nrequires grad", shape=ellipse, ...];
      leaf1 [label="3.0\\nscalar float32", shape=ellipse, ...];
      op0 [label="mul\\n(2,)", shape=box, ...];
      output [label="output\\n(2,) float32", shape=ellipse, ...];
      leaf0 -> op0;
      leaf1 -> op0;
      op0 -> output;
    }
    """
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"to_dot: rankdir must be LR, TB, RL or BT, got {rankdir!r}")
    labels = _names_by_id(names)
    nodes, shapes = _collect(tensor)
    # Renumber in tape order: the global ``seq`` differs from run to run, the
    # order of the records does not.
    op_ids = {node: f"op{i}" for i, node in enumerate(nodes)}

    lines = [
        "digraph fastbp {",
        f"  graph [rankdir={rankdir}];",
        '  node [fontname="Helvetica", fontsize=11];',
        "  edge [arrowsize=0.7];",
    ]
    leaf_ids: dict[int, str] = {}
    leaf_lines: list[str] = []
    op_lines: list[str] = []
    edges: list[str] = []

    def leaf_id(t: Tensor) -> str:
        key = id(t)
        if key not in leaf_ids:
            leaf_ids[key] = f"leaf{len(leaf_ids)}"
            leaf_lines.append(f"  {leaf_ids[key]} [label={_leaf_label(t, labels)}, {_style(t)}];")
        return leaf_ids[key]

    for node in nodes:
        for t in node.inputs:
            source = leaf_id(t) if t._node is None else op_ids[t._node]
            edges.append(f"  {source} -> {op_ids[node]};")
        op_lines.append(
            f"  {op_ids[node]} [label={_op_label(node, shapes[node], labels, show_saved, tensor)}, "
            f"{_FREED_STYLE if node.saved is FREED and not node.inputs else _OP_STYLE}];"
        )

    if tensor._node is None:
        # A leaf has no history: draw it alone, marked as the output.
        out_label = _quote([labels.get(id(tensor), "output"), *_describe(tensor)])
        lines.append(f"  output [label={out_label}, {_OUTPUT_STYLE}];")
    else:
        lines += leaf_lines + op_lines
        out_label = _quote([labels.get(id(tensor), "output"), _shape_dtype(tensor)])
        lines.append(f"  output [label={out_label}, {_OUTPUT_STYLE}];")
        lines += edges
        lines.append(f"  {op_ids[tensor._node]} -> output;")
    lines.append("}")
    return "\n".join(lines)


def render(
    tensor: Tensor,
    path: str | os.PathLike,
    format: str | None = None,  # noqa: A002  (the name users know from Graphviz)
    **dot_options: Any,
) -> Path:
    """Draw the graph behind ``tensor`` into an image file with Graphviz's ``dot``.

    The image is written to a temporary file in the same directory and renamed
    into place, so ``path`` never holds half an image.

    Parameters
    ----------
    tensor : Tensor
        The result whose history to draw (see :func:`to_dot`).
    path : str or PathLike
        Where to write. ``.dot`` and ``.gv`` get the DOT text itself and need no
        Graphviz.
    format : str or None, optional
        Image format, ``"svg"``, ``"png"`` or ``"pdf"``; by default (None) taken from the
        suffix of ``path``.
    **dot_options
        Passed to :func:`to_dot` (``show_saved``, ``names``, ``rankdir``).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        If the format is unknown or cannot be guessed from the suffix.
    RuntimeError
        If the ``dot`` executable is not installed (the message says how to
        install Graphviz), or if ``dot`` fails (the message includes its error).

    Examples
    --------
    >>> import fastbp as fb
    >>> from fastbp.viz import render
    >>> x = fb.tensor([1.0, 2.0], requires_grad=True)
    >>> render((x * x).sum(), "graph.svg")  # doctest: +SKIP
    PosixPath('graph.svg')
    """
    path = Path(path)
    text = to_dot(tensor, **dot_options)
    suffix = path.suffix.lower()
    if format is None and suffix in _TEXT_SUFFIXES:
        _write_atomically(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
        return path
    fmt = (format or suffix.lstrip(".")).lower()
    if fmt not in _FORMATS:
        raise ValueError(
            f"render: cannot write {path.name!r}: format {fmt or '(none)'!r} is not one of "
            f"{', '.join(_FORMATS)}; pass format= or use a .svg/.png/.pdf/.dot file name"
        )
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(_missing_dot_message())

    def run_dot(tmp: str) -> None:
        try:
            done = subprocess.run(
                [dot, f"-T{fmt}", "-o", tmp],
                input=text.encode("utf-8"),
                capture_output=True,
                check=False,
            )
        except OSError as exc:  # found on PATH but not runnable
            raise RuntimeError(f"{_missing_dot_message()} (running {dot!r} failed: {exc})") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip() or "no error message"
            raise RuntimeError(
                f"render: Graphviz 'dot -T{fmt}' failed with exit code {done.returncode}: {detail}"
            )

    _write_atomically(path, run_dot)
    return path


# --------------------------------------------------------------------------- helpers


def _collect(tensor: Tensor) -> tuple[list[Node], dict[Node, tuple[int, ...]]]:
    """Records reachable from ``tensor`` in tape order, and each one's output shape."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"expected a fastbp Tensor, got {type(tensor).__name__}")
    shapes: dict[Node, tuple[int, ...]] = {}
    root = tensor._node
    if root is None:
        return [], shapes
    # The shape comes from the tensor that led us to the record: the record's own
    # ``output`` is a weak reference and may be gone for an intermediate.
    shapes[root] = tensor.shape
    stack = [root]
    while stack:
        node = stack.pop()
        for t in node.inputs:
            parent = t._node
            if parent is not None and parent not in shapes:
                shapes[parent] = t.shape
                stack.append(parent)
    return sorted(shapes, key=lambda n: n.seq), shapes


def _names_by_id(names: Mapping[Any, Any] | None) -> dict[int, str]:
    # Keyed by id: looking a Tensor up by value would call its elementwise ``==``.
    labels: dict[int, str] = {}
    for key, value in (names or {}).items():
        if isinstance(key, Tensor) and isinstance(value, str):
            labels[id(key)] = value
        elif isinstance(key, str) and isinstance(value, Tensor):
            labels[id(value)] = key
        else:
            raise TypeError(
                f"to_dot: names must map tensors to strings, got "
                f"{type(key).__name__} -> {type(value).__name__}"
            )
    return labels


def _shape_text(shape: tuple[int, ...]) -> str:
    return "scalar" if shape == () else str(shape)


def _shape_dtype(t: Tensor) -> str:
    return f"{_shape_text(t.shape)} {t.dtype}"


def _describe(t: Tensor) -> list[str]:
    lines = [_shape_dtype(t)]
    if t.requires_grad:
        lines.append("requires grad")
    return lines


def _leaf_label(t: Tensor, labels: dict[int, str]) -> str:
    lines = _describe(t)
    if id(t) in labels:
        lines.insert(0, labels[id(t)])
    elif not t.requires_grad and t.size == 1:
        # Python numbers in formulas: show the value, in the shortest form that
        # round-trips in the tensor's own dtype (0.1, not 0.10000000149011612).
        lines.insert(0, str(t.data.reshape(-1)[0]))
    return _quote(lines)


def _style(t: Tensor) -> str:
    return _PARAM_STYLE if t.requires_grad else _CONST_STYLE


def _op_label(
    node: Node,
    shape: tuple[int, ...],
    labels: dict[int, str],
    show_saved: bool,
    root: Tensor,
) -> str:
    output = node.output() if node.output is not None else None
    # The final output's name is on its own ellipse; other named outputs go in the box.
    name = labels.get(id(output)) if output is not None and output is not root else None
    lines = [f"{name} = {node.op.name}" if name else node.op.name, _shape_text(shape)]
    if node.saved is FREED:
        lines.append("(freed by backward)")
    elif show_saved:
        arrays = saved_arrays(node)
        lines += [f"saved {_shape_text(a.shape)} {a.dtype}" for a in arrays]
        if arrays:
            lines.append(f"saved {_bytes(sum(a.nbytes for a in arrays))}")
    return _quote(lines)


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _quote(lines: list[str]) -> str:
    """One DOT string of centred lines, with quotes and backslashes escaped."""
    escaped = []
    for line in lines:
        line = line.replace("\\", "\\\\").replace('"', '\\"')
        # A raw newline inside a label would become part of the text; make it a line break.
        escaped.append(line.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))
    return '"' + "\\n".join(escaped) + '"'


def _missing_dot_message() -> str:
    return (
        "render: the Graphviz 'dot' program was not found on PATH. Install Graphviz "
        "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; conda: "
        "conda install graphviz), or call fastbp.viz.to_dot() and paste the text into any "
        "Graphviz viewer"
    )


def _write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_name)`` for a temporary name next to ``path``, then rename it."""
    # A name, not a file from mkstemp: mkstemp's 0600 mode would survive the rename,
    # while a file made by ``write`` gets the user's usual permissions.
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
