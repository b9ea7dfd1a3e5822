"""Tests for fastbp.viz: DOT structure, deep graphs, and rendering with and without Graphviz."""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb
from fastbp import viz

NODE = re.compile(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
EDGE = re.compile(r"^\s*(\w+) -> (\w+);$")


def parse(dot: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """Nodes as ``{id: (label, attributes)}`` and edges as ``[(tail, head)]``."""
    nodes: dict[str, tuple[str, str]] = {}
    edges: list[tuple[str, str]] = []
    for line in dot.splitlines():
        if m := NODE.match(line):
            nodes[m.group(1)] = (m.group(2), m.group(3))
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
    return nodes, edges


def circuit():
    x, y, z = (fb.tensor(v, requires_grad=True) for v in (-2.0, 5.0, -4.0))
    s = x + y
    f = s * z
    return x, y, z, s, f


def test_circuit_structure():
    x, y, z, s, f = circuit()
    dot = viz.to_dot(f, names={x: "x", y: "y", z: "z"})
    assert dot.startswith("digraph fastbp {") and dot.endswith("}")
    nodes, edges = parse(dot)

    ops = {k: label.split("\\n")[0] for k, (label, _) in nodes.items() if k.startswith("op")}
    assert ops == {"op0": "add", "op1": "mul"}
    leaves = {label.split("\\n")[0]: k for k, (label, _) in nodes.items() if k.startswith("leaf")}
    assert set(leaves) == {"x", "y", "z"}
    assert "output" in nodes

    expected = {
        (leaves["x"], "op0"),
        (leaves["y"], "op0"),
        ("op0", "op1"),
        (leaves["z"], "op1"),
        ("op1", "output"),
    }
    assert set(edges) == expected and len(edges) == len(expected)

    # Op boxes carry the output shape; leaves carry shape, dtype and the grad marking.
    assert nodes["op1"][0] == "mul\\nscalar"
    assert nodes[leaves["x"]][0] == "x\\nscalar float32\\nrequires grad"
    assert "shape=box" in nodes["op0"][1]


def test_requires_grad_is_colour_coded():
    w = fb.tensor(np.ones((3, 2)), requires_grad=True)
    data = fb.tensor(np.ones((4, 3)))
    nodes, _ = parse(viz.to_dot((data @ w).sum(), names={w: "w", data: "data"}))
    by_name = {label.split("\\n")[0]: (label, attrs) for label, attrs in nodes.values()}
    assert "requires grad" in by_name["w"][0]
    assert "requires grad" not in by_name["data"][0]
    fill = re.compile(r'fillcolor="(#\w+)"')
    assert fill.search(by_name["w"][1]).group(1) != fill.search(by_name["data"][1]).group(1)
    assert "(4, 3) float64" in by_name["data"][0]


def test_constant_scalars_show_their_value():
    x = fb.tensor([1.0, 2.0], requires_grad=True)
    nodes, _ = parse(viz.to_dot(x * 0.1))
    labels = [label for label, _ in nodes.values()]
    assert "0.1\\nscalar float32" in labels


def test_output_is_deterministic_and_ordered_by_tape():
    def build():
        x, y, z, s, f = circuit()
        return viz.to_dot(f, show_saved=True, names={x: "x", y: "y", z: "z"})

    first = build()
    fb.randn(3) * 2  # unrelated ops advance the global sequence counter
    assert build() == first


def test_named_intermediates_and_escaping():
    x, y, z, s, f = circuit()
    dot = viz.to_dot(f, names={'s "sum"\\': s, "loss\nvalue": f})
    nodes, _ = parse(dot)
    assert nodes["op0"][0] == 's \\"sum\\"\\\\ = add\\nscalar'
    assert nodes["output"][0].startswith("loss\\nvalue\\n")
    assert "\n" not in nodes["output"][0]


def test_shared_input_is_one_node_with_two_edges():
    x = fb.tensor([1.0, 2.0], requires_grad=True)
    nodes, edges = parse(viz.to_dot(x * x))
    assert [k for k in nodes if k.startswith("leaf")] == ["leaf0"]
    assert edges.count(("leaf0", "op0")) == 2


def test_show_saved_lists_arrays_and_bytes():
    x = fb.tensor(np.zeros((4, 3), dtype=np.float32), requires_grad=True)
    out = fb.exp(x).sum()
    nodes, _ = parse(viz.to_dot(out, show_saved=True))
    assert nodes["op0"][0] == "exp\\n(4, 3)\\nsaved (4, 3) float32\\nsaved 48 B"
    assert "saved" not in viz.to_dot(out)


def test_graph_nodes_and_saved_arrays():
    x, y, z, s, f = circuit()
    nodes = viz.graph_nodes(f)
    assert [n.op.name for n in nodes] == ["add", "mul"]
    assert viz.graph_nodes(x) == []
    assert viz.saved_arrays(nodes[0]) == []  # add saves nothing
    assert [float(a) for a in viz.saved_arrays(nodes[1])] == [3.0, -4.0]  # mul saves both


def test_saved_numpy_scalars_count_as_arrays():
    # NumPy ufuncs return scalars for 0-d inputs, so an op on a 0-d tensor may save one.
    x = fb.tensor(0.0, dtype=np.float64, requires_grad=True)
    saved = viz.saved_arrays(fb.sigmoid(x).grad_fn)
    assert [(a.shape, float(a)) for a in saved] == [((), 0.5)]


def test_leaf_and_freed_graph():
    x, y, z, s, f = circuit()
    nodes, edges = parse(viz.to_dot(x))
    assert list(nodes) == ["output"] and edges == []

    f.backward()  # frees the records' inputs: only the last op is still reachable
    nodes, _ = parse(viz.to_dot(f))
    assert nodes["op0"][0] == "mul\\nscalar\\n(freed by backward)"
    assert "dashed" in nodes["op0"][1] and "op1" not in nodes


def test_bad_arguments():
    x = fb.tensor([1.0], requires_grad=True)
    with pytest.raises(TypeError, match="Tensor"):
        viz.to_dot(np.ones(2))
    with pytest.raises(TypeError, match="names"):
        viz.to_dot(x * 2, names={x: 3})
    with pytest.raises(ValueError, match="rankdir"):
        viz.to_dot(x * 2, rankdir="UP")


def test_deep_chain_has_no_recursion_limit():
    x = fb.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(10_000):
        h = h * 1.0
    dot = viz.to_dot(h)
    nodes, edges = parse(dot)
    assert sum(k.startswith("op") for k in nodes) == 10_000
    assert ("op9998", "op9999") in edges
    assert len(viz.graph_nodes(h)) == 10_000


# --------------------------------------------------------------------------- render


def small_graph():
    x = fb.tensor([1.0, 2.0], requires_grad=True)
    return (x * x).sum()


def test_render_without_dot_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RuntimeError, match="install graphviz") as info:
        viz.render(small_graph(), tmp_path / "g.svg")
    assert "brew install graphviz" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_render_reports_when_which_finds_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz 'dot' program was not found"):
        viz.render(small_graph(), tmp_path / "g.png")


def fake_dot(directory: Path, script: str) -> None:
    """Put an executable called ``dot`` running ``script`` (Python) in ``directory``."""
    directory.mkdir()
    exe = directory / "dot"
    exe.write_text(f"#!{sys.executable}\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


@pytest.mark.skipif(os.name == "nt", reason="the fake dot is a POSIX script")
def test_render_with_a_fake_dot(tmp_path, monkeypatch):
    # Writes its stdin and arguments, so we see what render passed without Graphviz.
    fake_dot(
        tmp_path / "bin",
        "import sys\nargs = sys.argv[1:]\nout = args[args.index('-o') + 1]\n"
        "open(out, 'w').write(' '.join(args[:1]) + '\\n' + sys.stdin.read())",
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    target = viz.render(small_graph(), tmp_path / "graph.PNG")
    assert target == tmp_path / "graph.PNG"
    text = target.read_text()
    assert text.startswith("-Tpng\ndigraph fastbp {")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "graph.PNG"]

    viz.render(small_graph(), tmp_path / "graph.img", format="svg")
    assert (tmp_path / "graph.img").read_text().startswith("-Tsvg\n")


@pytest.mark.skipif(os.name == "nt", reason="the fake dot is a POSIX script")
def test_render_reports_dot_failure_and_leaves_no_file(tmp_path, monkeypatch):
    fake_dot(
        tmp_path / "bin", "import sys\nsys.stderr.write('syntax error in line 3')\nsys.exit(2)"
    )
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(RuntimeError, match="exit code 2: syntax error in line 3"):
        viz.render(small_graph(), tmp_path / "g.svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


def test_render_dot_text_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    target = viz.render(small_graph(), tmp_path / "g.dot", names={})
    assert target.read_text().startswith("digraph fastbp {")


def test_render_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="'g.txt'"):
        viz.render(small_graph(), tmp_path / "g.txt")
    with pytest.raises(ValueError, match="'jpeg'"):
        viz.render(small_graph(), tmp_path / "g.svg", format="jpeg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("suffix, magic", [(".svg", b"<svg"), (".png", b"\x89PNG")])
def test_render_with_real_graphviz(tmp_path, suffix, magic):
    x, y, z, s, f = circuit()
    target = viz.render(f, tmp_path / f"circuit{suffix}", names={x: "x", y: "y", z: "z"})
    content = target.read_bytes()
    assert magic in content[:400]
    if suffix == ".svg":
        assert b"mul" in content and b"requires grad" in content
