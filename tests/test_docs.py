"""The documentation runs: code blocks in the pages, docstring examples, and the site build.

* Every fenced ```` ```python ```` block of ``docs/*.md`` and ``README.md`` is executed, one
  page at a time, in order, in one namespace (a page reads as a script), in a temporary
  working directory. A block opened with ```` ```python skip ```` is not run (used only
  where running it would take minutes, and the page says why). A page containing
  ``<!-- fastbp-docs: needs-mnist -->`` is skipped when ``$FASTBP_DATA`` does not hold MNIST.
* Shown outputs are checked. A block is parsed with :mod:`ast` and run statement by
  statement, capturing each statement's stdout, and two forms are asserted:

  - a top-level ``print(...)`` statement whose last line ends in a comment: the comment is
    the printed text, e.g. ``print(x.grad, y.grad)  # -4.0 -4.0``;
  - a ```` ```text ```` block right after a Python block (only blank lines between): the
    whole block's printed text.

  Both compare after normalising whitespace (every run of spaces, tabs and newlines is one
  space; the ends are stripped), and ``...`` in the expected text matches any text (with
  the spaces either side of it), so ``# 2.0595...`` checks four decimals. Any other comment
  is prose and not checked: a value a reader should trust is shown by a ``print`` (and an
  explanation goes on its own line).
* Every fastbp module's docstring examples run under :mod:`doctest`.
* ``mkdocs build --strict`` succeeds (skipped when MkDocs is not installed).
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import importlib
import importlib.util
import io
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest

import fastbp
import fastbp.ops

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]

# An opening fence (any indentation, e.g. inside an admonition), its info string, the body,
# and the closing fence at the same indentation.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
NEEDS_MNIST = "<!-- fastbp-docs: needs-mnist -->"
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """Return ``(line number, code, skipped)`` for each Python block of a Markdown page."""
    blocks = []
    for match in FENCE.finditer(text):
        words = match.group("info").split()
        if not words or words[0] not in ("python", "py"):
            continue
        line = text.count("\n", 0, match.start()) + 2  # the first line of code
        code = textwrap.dedent(match.group("body"))
        blocks.append((line, code, "skip" in words[1:]))
    return blocks


def shown_outputs(text: str) -> dict[int, str]:
    """``{first code line of a Python block: the ```text block shown right after it}``."""
    shown = {}
    matches = list(FENCE.finditer(text))
    for block, after in zip(matches, matches[1:], strict=False):
        words, next_words = block.group("info").split(), after.group("info").split()
        if (
            words
            and words[0] in ("python", "py")
            and next_words[:1] == ["text"]
            and not text[block.end() : after.start()].strip()
        ):
            shown[text.count("\n", 0, block.start()) + 2] = textwrap.dedent(after.group("body"))
    return shown


class OutputMismatch(AssertionError):
    """A page shows an output that its code does not print."""


def _normalised(text: str) -> str:
    return " ".join(text.split())


def output_matches(expected: str, printed: str) -> bool:
    """True if ``printed`` is ``expected`` up to whitespace, ``...`` (and a space either
    side of it) matching any text."""
    parts = [re.escape(part) for part in re.split(r" ?\.\.\. ?", _normalised(expected))]
    return re.fullmatch(".*?".join(parts), _normalised(printed), re.DOTALL) is not None


def _print_comments(code: str, tree: ast.Module) -> dict[int, str]:
    """``{index of a top-level print statement: the comment ending its last line}``."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = (token.start[1], token.string[1:].strip())
    found = {}
    for i, stmt in enumerate(tree.body):
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Name)
            and call.func.id == "print"
        ):
            continue
        comment = comments.get(stmt.end_lineno)
        if comment is not None and comment[0] >= stmt.end_col_offset:
            found[i] = comment[1]
    return found


def run_block(code: str, namespace: dict, filename: str, line: int) -> str:
    """Run one block statement by statement; check its ``print(...)  # output`` lines.

    Returns the block's whole printed text. Raises :class:`OutputMismatch` naming the page line
    of a print whose output differs from its comment; other exceptions propagate.
    """
    tree = ast.parse(code, filename)
    expected = _print_comments(code, tree)
    ast.increment_lineno(tree, line - 1)
    printed = []
    for i, stmt in enumerate(tree.body):
        out = io.StringIO()
        module = ast.Module(body=[stmt], type_ignores=[])
        with contextlib.redirect_stdout(out):
            exec(compile(module, filename, "exec"), namespace)
        printed.append(out.getvalue())
        if i in expected and not output_matches(expected[i], out.getvalue()):
            raise OutputMismatch(
                f"{filename}:{stmt.end_lineno}: the comment shows {expected[i]!r} but the "
                f"statement printed {out.getvalue().rstrip()!r}"
            )
    return "".join(printed)


def run_page(text: str, where: str) -> None:
    """Run a page's Python blocks in one namespace, asserting every output it shows."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    shown = shown_outputs(text)
    for line, code, skipped in python_blocks(text):
        if skipped:
            continue
        try:
            printed = run_block(code, namespace, where, line)
        except OutputMismatch:
            raise
        except BaseException as exc:
            pytest.fail(f"the code block at {where}:{line} raised {type(exc).__name__}: {exc}")
        if line in shown and not output_matches(shown[line], printed):
            raise OutputMismatch(
                f"{where}:{line}: the block printed {printed.rstrip()!r}, but the page shows "
                f"{shown[line].rstrip()!r} after it"
            )


def test_fence_parser():
    page = (
        "text\n```python\na = 1\n```\n\n```bash\nls\n```\n"
        "!!! note\n    ```python\n    b = a + 1\n    ```\n```python skip\nslow()\n```\n"
    )
    assert python_blocks(page) == [
        (3, "a = 1\n", False),
        (11, "b = a + 1\n", False),
        (14, "slow()\n", True),
    ]


def test_output_matching_convention():
    assert output_matches("-4.0 -4.0 3.0", "-4.0 -4.0 3.0\n")
    assert output_matches("[ 1. -2.  4.] None", "[ 1. -2. 4.]\nNone\n")  # whitespace runs
    assert output_matches("2.0595...", "2.0595697")
    assert output_matches("['abs', 'add', ...]", "['abs', 'add', 'exp']")
    assert output_matches("a ... c", "a c")  # ``...`` may match nothing
    assert not output_matches("2.0595...", "2.0596")
    assert not output_matches("-4.0 -4.0", "-4.0 -4.0 3.0")  # the whole output, not a prefix
    assert not output_matches("(1+2)", "3")  # regex characters are literal


PAGE_SHOWING = """
```python
x = 2  # a prose comment: never checked
print(x * 3)  # 6
for i in range(2):
    print(i)  # inside a loop: not a top-level print, not checked
```

```python
print("a", "b")
print([1.5, 2.5])
```

```text
a b
[1.5, ...]
```
"""


def test_shown_outputs_are_asserted():
    assert shown_outputs(PAGE_SHOWING) == {10: "a b\n[1.5, ...]\n"}
    run_page(PAGE_SHOWING, "fake.md")  # right outputs: passes


@pytest.mark.parametrize(
    "wrong, message",
    [
        (("print(x * 3)  # 6", "print(x * 3)  # 7"), "fake.md:4: the comment shows '7'"),
        (("[1.5, ...]", "[2.5, ...]"), "fake.md:10: the block printed"),
        (("print(x * 3)  # 6", "print(x * 3, end='')  # 6.0"), "statement printed '6'"),
    ],
    ids=["comment", "text-block", "value"],
)
def test_a_wrong_shown_output_fails(wrong, message):
    page = PAGE_SHOWING.replace(*wrong)
    assert page != PAGE_SHOWING
    with pytest.raises(OutputMismatch, match=re.escape(message)):
        run_page(page, "fake.md")


def test_a_failing_block_names_its_page_line():
    with pytest.raises(pytest.fail.Exception, match="fake.md:2 raised ZeroDivisionError"):
        run_page("```python\n1 / 0\n```\n", "fake.md")


@pytest.fixture
def op_table():
    """Undo, after the test, any op a page or an example registers with ``defop``.

    Otherwise ``tests/test_ops.py`` would find ops without a gradient test, and running
    the same example twice would fail on the duplicate name.
    """
    snapshot = dict(fastbp.ops.OPS)
    yield
    fastbp.ops.OPS.clear()
    fastbp.ops.OPS.update(snapshot)


def _has_mnist() -> bool:
    root = os.environ.get("FASTBP_DATA")
    if not root:
        return False
    return all(
        (Path(root) / n).is_file() or (Path(root) / f"{n}.gz").is_file() for n in MNIST_FILES
    )


@pytest.mark.usefixtures("op_table")
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_code_blocks_run(page: Path, tmp_path, monkeypatch):
    text = page.read_text(encoding="utf-8")
    blocks = [b for b in python_blocks(text) if not b[2]]
    if not blocks:
        pytest.skip("no Python blocks to run")
    if NEEDS_MNIST in text and not _has_mnist():
        pytest.skip("the page trains on MNIST and $FASTBP_DATA does not hold it")
    data = os.environ.get("FASTBP_DATA")
    if data:
        # The page runs in a temporary directory: a relative path must still find the data.
        monkeypatch.setenv("FASTBP_DATA", str(Path(data).resolve()))
    monkeypatch.chdir(tmp_path)
    run_page(text, str(page.relative_to(ROOT)))


# --------------------------------------------------------------------------- doctests


def _fastbp_modules() -> list[str]:
    names = [fastbp.__name__]
    for info in pkgutil.walk_packages(fastbp.__path__, prefix="fastbp.", onerror=lambda n: None):
        names.append(info.name)
    return sorted(names)


@pytest.mark.usefixtures("op_table")
@pytest.mark.parametrize("name", _fastbp_modules())
def test_docstring_examples(name: str, tmp_path, monkeypatch):
    try:
        # From sys.modules, not an attribute: ``fastbp.gradcheck`` is also a function name.
        importlib.import_module(name)
    except ImportError as exc:  # an optional dependency (e.g. matplotlib) is missing
        pytest.skip(f"{name} does not import: {exc}")
    module = sys.modules[name]
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = doctest.testmod(
            module,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
            report=True,
        )
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}:\n" + (
        out.getvalue()
    )


# --------------------------------------------------------------------------- site build


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """The site, built once with ``mkdocs build --strict`` for every test that reads it."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed")
    for plugin in ("material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(plugin.split(".")[0]) is None:
            pytest.skip(f"{plugin} is not installed (pip install -e '.[docs]')")
    site = tmp_path_factory.mktemp("docs") / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return site


def test_mkdocs_build_strict(built_site):
    site = built_site
    for page in ("index.html", "tutorial/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert "to_dot" in api and "backward" in api
    tutorial = (site / "tutorial" / "index.html").read_text(encoding="utf-8")
    assert "fastbp-graph" not in tutorial  # every marker was replaced


# --------------------------------------------------------------------------- page layout

# Runs in the page after load: each content table's width against the content column.
_MEASURE = """<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var column = document.querySelector(".md-content__inner").getBoundingClientRect();
    var tables = [];
    document.querySelectorAll(".md-content__inner table").forEach(function (t) {
      var r = t.getBoundingClientRect();
      tables.push({columns: t.rows.length ? t.rows[0].cells.length : 0,
                   right: r.right, scroll: t.scrollWidth, client: t.clientWidth,
                   header: t.rows.length ? t.rows[0].textContent.trim().slice(0, 60) : ""});
    });
    var pre = document.createElement("pre");
    pre.id = "fastbp-layout";
    pre.textContent = JSON.stringify({viewport: window.innerWidth, column: column.right,
                                      tables: tables});
    document.body.appendChild(pre);
  }, 300);
});
</script>"""


def _browser() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(browser: str, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_performance_tables_fit_the_content_column_at_1280px(built_site):
    """No table of the performance page scrolls sideways in a 1280 px wide window.

    With a headless Chromium the page is laid out for real: each table's scroll width must
    not exceed its visible width and its right edge must stay inside the content column
    (a screenshot is written next to the site, for a human to look at). Without a browser
    the check falls back to the built HTML and CSS: the extra stylesheet that narrows the
    cells is linked, and no table has more than seven columns.
    """
    import json

    page = built_site / "performance" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert "stylesheets/extra.css" in html
    css = (built_site / "stylesheets" / "extra.css").read_text(encoding="utf-8")
    assert "min-width" in css  # Material's 5rem per header alone overflows 7 columns
    browser = _browser()
    if browser is None:
        widest = max(
            len(re.findall(r"<th\b", t)) for t in re.findall(r"(?s)<thead>.*?</thead>", html)
        )
        assert widest <= 7, f"a table of {widest} columns on the performance page"
        pytest.skip("no headless Chromium: checked the HTML and CSS only")
    probe = page.with_name("layout-probe.html")
    probe.write_text(html.replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    done = _chromium(browser, probe.as_uri(), "--window-size=1280,1000", "--dump-dom")
    found = re.search(r'<pre id="fastbp-layout">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the browser gave no measurement:\n{done.stderr[-2000:]}"
    layout = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert layout["viewport"] == 1280 and layout["tables"], layout
    _chromium(
        browser,
        page.as_uri(),
        "--window-size=1280,1600",
        f"--screenshot={built_site / 'performance-1280.png'}",
    )
    too_wide = [
        t
        for t in layout["tables"]
        if t["scroll"] > t["client"] + 1 or t["right"] > layout["column"] + 1
    ]
    assert not too_wide, (
        f"tables wider than the {layout['column']:.0f} px content column at 1280 px "
        f"(screenshot: {built_site / 'performance-1280.png'}): {too_wide}"
    )


def _load_hooks():
    spec = importlib.util.spec_from_file_location("fastbp_docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_graphs_fall_back_to_dot_text_without_graphviz(monkeypatch, capsys):
    import shutil
    from types import SimpleNamespace

    hooks = _load_hooks()
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda cmd, *a, **k: None if cmd == "dot" else real_which(cmd)
    )
    hooks.on_config({})
    assert "Graphviz 'dot' was not found" in capsys.readouterr().err  # stderr, not a warning
    page = SimpleNamespace(file=SimpleNamespace(src_uri="tutorial.md"))
    html = hooks.on_page_markdown(
        "intro\n<!-- fastbp-graph: circuit -->\n```python skip\nx = 1\n```\n", page, {}, None
    )
    assert '<pre class="fastbp-dot"><code>digraph fastbp {' in html
    assert "leaf0 -&gt; op0;" in html  # escaped for HTML
    assert "```python\nx = 1" in html  # the test-only `skip` is not shown
    with pytest.raises(Exception, match="unknown graph 'nope'"):
        hooks.on_page_markdown("<!-- fastbp-graph: nope -->\n", page, {}, None)


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed")
def test_benchmark_results_are_included_from_their_readme(tmp_path, monkeypatch):
    hooks = _load_hooks()
    monkeypatch.setattr(hooks, "_BENCHMARKS", tmp_path)
    assert "benchmarks/README.md" in hooks._benchmark_section("")  # not there yet: a pointer

    (tmp_path / "plot.png").write_bytes(b"\x89PNG")
    (tmp_path / "README.md").write_text(
        "# Benchmarks\n\n## Results\n\n![step times](plot.png)\n![later](missing.png)\n"
        "See [the script](compare.py) and [PyTorch](https://pytorch.org).\n"
    )
    assert hooks._benchmark_images() == [tmp_path / "plot.png"]
    section = hooks._benchmark_section("")
    assert "# Benchmarks" not in section and "### Results" in section
    assert "![step times](img/benchmarks/plot.png)" in section
    assert "`benchmarks/missing.png` not generated yet" in section
    assert "the script (`benchmarks/compare.py`)" in section
    assert "[PyTorch](https://pytorch.org)" in section
