"""MkDocs hooks for the fastbp site (registered under ``hooks:`` in mkdocs.yml).

* A page line ``<!-- fastbp-graph: NAME -->`` becomes a picture of the computation graph
  ``NAME`` from ``docs/make_graphs.py``, drawn at build time with :mod:`fastbp.viz`. With
  Graphviz's ``dot`` installed the picture is an SVG added to the site; without it the
  DOT text is shown instead and a note goes to stderr. That note is deliberately *not* an
  MkDocs warning, so ``mkdocs build --strict`` still passes on a machine without Graphviz.
* The line ``<!-- fastbp-benchmarks -->`` becomes the contents of ``benchmarks/README.md``
  (headings moved one level down, pictures copied into the site, links to files outside
  the docs turned into plain text), or a sentence pointing there while that file does
  not exist yet. The results then live in one place and the site never drifts from it.
* A fence opened with ```` ```python skip ```` is shown as ordinary Python: the ``skip``
  only tells ``tests/test_docs.py`` not to execute that block.
"""

from __future__ import annotations

import html
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

_HERE = Path(__file__).resolve().parent
_BENCHMARKS = _HERE.parent / "benchmarks"
_MARKER = re.compile(r"^<!--\s*fastbp-graph:\s*([\w-]+)\s*-->\s*$", re.MULTILINE)
_SKIP_FENCE = re.compile(r"^(\s*)```python skip[ \t]*$", re.MULTILINE)
_IMAGE_DIR = "img/graphs"
_BENCH_MARKER = re.compile(r"^<!--\s*fastbp-benchmarks\s*-->\s*$", re.MULTILINE)
_BENCH_IMAGE_DIR = "img/benchmarks"
_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,5}) ", re.MULTILINE)

# Filled by on_config: name -> SVG bytes (Graphviz present) or DOT text (absent), and
# name -> the picture's alt text.
_pictures: dict[str, bytes | str] = {}
_alts: dict[str, str] = {}


def _load_make_graphs() -> ModuleType:
    # Loaded by path: docs/ is not a package and should not become importable by accident.
    spec = importlib.util.spec_from_file_location(
        "fastbp_docs_make_graphs", _HERE / "make_graphs.py"
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load {_HERE / 'make_graphs.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_config(config: Any) -> Any:
    """Draw every graph once per build."""
    graphs = _load_make_graphs()
    _pictures.clear()
    with_dot = graphs.have_dot()
    for name in graphs.GRAPHS:
        _pictures[name] = graphs.svg(name) if with_dot else graphs.dot_source(name)
    if not with_dot:
        print(
            "fastbp docs: Graphviz 'dot' was not found, so the computation graphs are shown "
            "as DOT text. Install Graphviz (apt-get install graphviz / brew install graphviz) "
            "for pictures.",
            file=sys.stderr,
        )
    _alts.clear()
    _alts.update({name: alt for name, (_, alt) in graphs.GRAPHS.items()})
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the graph pictures and the benchmark plots to the site as generated files."""
    for name, picture in _pictures.items():
        if isinstance(picture, bytes):
            files.append(File.generated(config, f"{_IMAGE_DIR}/{name}.svg", content=picture))
    for image in _benchmark_images():
        files.append(
            File.generated(config, f"{_BENCH_IMAGE_DIR}/{image.name}", abs_src_path=str(image))
        )
    return files


def _benchmark_images() -> list[Path]:
    """The pictures ``benchmarks/README.md`` shows that exist on disk."""
    readme = _BENCHMARKS / "README.md"
    if not readme.is_file():
        return []
    found = []
    for _, target in _IMAGE.findall(readme.read_text(encoding="utf-8")):
        path = (_BENCHMARKS / target).resolve()
        if _is_local(target) and path.is_file() and path not in found:
            found.append(path)
    return found


def _is_local(target: str) -> bool:
    return not re.match(r"^(?:[a-z][a-z0-9+.-]*:|#|/)", target)


def _benchmark_section(prefix: str) -> str:
    """``benchmarks/README.md`` adapted to sit inside a page, or a pointer to it."""
    readme = _BENCHMARKS / "README.md"
    if not readme.is_file():
        return (
            "The measured results are kept in `benchmarks/README.md` in the repository, "
            "next to the scripts that produce them; run the commands below to reproduce "
            "them on your machine."
        )
    text = readme.read_text(encoding="utf-8")
    lines = text.splitlines()
    if lines and lines[0].startswith("# "):  # the README's own title
        text = "\n".join(lines[1:])
    text = _HEADING.sub(lambda m: "#" + m.group(1) + " ", text)
    available = {p.name for p in _benchmark_images()}

    def image(match: re.Match[str]) -> str:
        alt, target = match.groups()
        name = Path(target).name
        if _is_local(target):
            if name in available:
                return f"![{alt}]({prefix}{_BENCH_IMAGE_DIR}/{name})"
            return f"*(picture `benchmarks/{target}` not generated yet)*"
        return match.group(0)

    def link(match: re.Match[str]) -> str:
        label, target = match.groups()
        # Files next to the README are not part of the site: name them instead of linking.
        return f"{label} (`benchmarks/{target}`)" if _is_local(target) else match.group(0)

    return "*From `benchmarks/README.md`:*\n\n" + _LINK.sub(link, _IMAGE.sub(image, text))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Replace graph markers by pictures and drop the ``skip`` from test-skipped fences."""
    markdown = _SKIP_FENCE.sub(r"\1```python", markdown)
    depth = page.file.src_uri.count("/")
    prefix = "../" * depth

    def picture(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in _pictures:
            raise PluginError(
                f"{page.file.src_uri}: unknown graph {name!r} in a fastbp-graph marker; "
                f"docs/make_graphs.py defines {', '.join(sorted(_pictures))}"
            )
        content = _pictures[name]
        if isinstance(content, bytes):
            return f"![{_alts[name]}]({prefix}{_IMAGE_DIR}/{name}.svg)"
        return (
            '<pre class="fastbp-dot"><code>'
            + html.escape(content)
            + "</code></pre>\n\n*Graphviz was not installed when this site was built: "
            "above is the graph's DOT text, which any Graphviz viewer can draw.*"
        )

    markdown = _BENCH_MARKER.sub(lambda _: _benchmark_section(prefix), markdown)
    return _MARKER.sub(picture, markdown)
