"""The defaults shown in the API reference are the real ones.

The reference (docs/api.md) is rendered by mkdocstrings from griffe's reading of the numpydoc
``Parameters`` sections. Griffe fills a parameter's default from the signature, except that for a
grouped entry (``a, b : float``) every name gets the default of the *first* name: ``uniform_``'s
``b`` was shown as 0.0 while its signature says 1.0. So, for every public function, class and
method of every module the reference documents, this test checks:

* the default griffe attaches to each documented parameter (what the page shows) equals the
  default in ``inspect.signature``;
* an explicit ``name : type, default X`` equals the signature's default;
* a parameter marked ``, optional`` or ``, default X`` has a default in the signature.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import re
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
API_PAGE = ROOT / "docs" / "api.md"


def documented_modules(page: str) -> dict[str, list[str] | None]:
    """``{module: members or None (all public)}`` from the ``::: module`` blocks of a page."""
    modules: dict[str, list[str] | None] = {}
    current = None
    in_members = False
    for line in page.splitlines():
        if line.startswith(":::"):
            current = line[3:].strip()
            modules[current] = None
            in_members = False
        elif current and line.strip() == "members:":
            in_members = True
            modules[current] = []
        elif current and in_members and line.strip().startswith("- "):
            modules[current].append(line.strip()[2:].strip())
        elif line.strip() and not line.startswith(" "):
            current, in_members = None, False
    return modules


def test_documented_modules_parser():
    page = "# t\n\n::: a.b\n    options:\n      members:\n        - f\n        - G\n\n::: c\n"
    assert documented_modules(page) == {"a.b": ["f", "G"], "c": None}


_MISSING = object()


def _value(text: str):
    """The Python value of a default as written (``0.0``, ``'relu'``, ``(0.9, 0.999)``)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return _MISSING


def _same(doc, real) -> bool:
    if isinstance(doc, (int, float)) and isinstance(real, (int, float)):
        return math.isclose(doc, real, rel_tol=1e-12, abs_tol=0.0) or doc == real
    if isinstance(doc, (tuple, list)) and isinstance(real, (tuple, list)):
        return len(doc) == len(real) and all(_same(a, b) for a, b in zip(doc, real, strict=True))
    return doc == real


# ``x : float, default 0`` / ``x : float, default: 0`` / ``x : float, default=0``
_TYPE_DEFAULT = re.compile(r",\s*default[:=]?\s+(?P<value>.+?)\s*$|,\s*default=(?P<v2>.+?)\s*$")


def _raw_entries(docstring: str) -> list[tuple[list[str], str]]:
    """``([names], type text)`` for each entry line of the numpydoc Parameters section."""
    lines = inspect.cleandoc(docstring).splitlines()
    lines.append("")

    def is_title(k: int) -> bool:
        nxt = lines[k + 1].strip() if k + 1 < len(lines) else ""
        return bool(lines[k].strip()) and bool(nxt) and set(nxt) == {"-"}

    entries: list[tuple[list[str], str]] = []
    starts = [k for k in range(len(lines)) if lines[k].strip() == "Parameters" and is_title(k)]
    if not starts:
        return entries
    for k in range(starts[0] + 2, len(lines)):
        line = lines[k]
        if is_title(k):
            break
        if line.strip() and not line.startswith((" ", "\t")):
            names, _, kind = line.partition(" : ")
            entries.append(([n.strip() for n in names.split(",")], kind.strip()))
    return entries


def test_raw_entries_parser():
    doc = """Do it.

    Parameters
    ----------
    x : Tensor
        The input.
    a, b : float, default 0
    c : int, optional

    Returns
    -------
    Tensor
    """
    assert _raw_entries(doc) == [
        (["x"], "Tensor"),
        (["a", "b"], "float, default 0"),
        (["c"], "int, optional"),
    ]


def _objects(module_name: str, members: list[str] | None):
    """``(qualified name, runtime object, griffe object)`` for each public callable documented."""
    loader = griffe.GriffeLoader(docstring_parser=griffe.Parser.numpy, search_paths=[str(ROOT)])
    gmod = loader.load(module_name)
    module = importlib.import_module(module_name)
    names = members
    if names is None:
        public = getattr(module, "__all__", None)
        names = (
            list(public)
            if public is not None
            else [n for n in gmod.members if not n.startswith("_")]
        )
    for name in names:
        obj = getattr(module, name, None)
        if obj is None or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        try:
            gobj = gmod[name]
            while gobj.is_alias:
                gobj = gobj.final_target
        except Exception:  # re-exported from a module griffe cannot resolve statically
            continue
        yield f"{module_name}.{name}", obj, gobj
        if inspect.isclass(obj):
            for meth_name, gmeth in gobj.members.items():
                if meth_name.startswith("_") or gmeth.is_alias or not gmeth.is_function:
                    continue
                meth = inspect.getattr_static(obj, meth_name, None)
                meth = getattr(meth, "__func__", meth)
                if inspect.isfunction(meth):
                    yield f"{module_name}.{name}.{meth_name}", meth, gmeth


def _cases():
    page = API_PAGE.read_text(encoding="utf-8")
    cases = []
    for module_name, members in documented_modules(page).items():
        cases.append(pytest.param(module_name, members, id=module_name))
    return cases


def default_mismatches(module_name: str, members: list[str] | None) -> list[str]:
    problems = []
    for qualname, obj, gobj in _objects(module_name, members):
        if gobj.docstring is None:
            continue
        try:
            signature = inspect.signature(obj)
        except (TypeError, ValueError):
            continue
        params = signature.parameters
        # A class's constructor parameters are documented in the class docstring.
        sections = gobj.docstring.parse(griffe.Parser.numpy)
        shown = {
            p.name: p.default for s in sections if s.kind.value == "parameters" for p in s.value
        }
        for name, default in shown.items():
            real = params.get(name)
            if real is None or real.default is inspect.Parameter.empty or default is None:
                continue
            doc = _value(str(default))
            if doc is not _MISSING and not _same(doc, real.default):
                problems.append(
                    f"{qualname}: the reference shows {name}={default} but the signature says "
                    f"{name}={real.default!r}"
                )
        for names, kind in _raw_entries(gobj.docstring.value):
            match = _TYPE_DEFAULT.search(kind)
            for name in names:
                name = name.lstrip("*")
                real = params.get(name)
                if real is None:
                    continue
                has_default = real.default is not inspect.Parameter.empty
                if (match or kind.endswith("optional")) and not has_default:
                    problems.append(
                        f"{qualname}: {name} is documented as optional but has no default"
                    )
                if match and has_default:
                    text = match.group("value") or match.group("v2")
                    doc = _value(text)
                    if doc is not _MISSING and not _same(doc, real.default):
                        problems.append(
                            f"{qualname}: documented '{name} : {kind}' but the signature says "
                            f"{name}={real.default!r}"
                        )
    return problems


@pytest.mark.parametrize(("module_name", "members"), _cases())
def test_documented_defaults_match_signatures(module_name, members):
    problems = default_mismatches(module_name, members)
    assert not problems, "\n".join(problems)


def test_checker_catches_a_grouped_entry(tmp_path, monkeypatch):
    """The grouped entry that misled the reference is caught (the check is not vacuous)."""
    pkg = tmp_path / "fbdoccheck"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        '__all__ = ["uniform", "scaled"]\n\n'
        "def uniform(t, a: float = 0.0, b: float = 1.0):\n"
        '    """Fill.\n\n    Parameters\n    ----------\n    t : object\n'
        '        The thing.\n    a, b : float\n        Bounds.\n    """\n\n'
        "def scaled(t, scale: float = 2.0, eps=None):\n"
        '    """Scale.\n\n    Parameters\n    ----------\n    t : object\n'
        "    scale : float, default 1.0\n    eps : float, optional\n"
        '    t2 : int, optional\n    """\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(
        griffe,
        "GriffeLoader",
        _with_search_path(griffe.GriffeLoader, str(tmp_path)),
    )
    problems = default_mismatches("fbdoccheck", None)
    assert any("uniform: the reference shows b=0.0" in p for p in problems), problems
    assert any("scaled: documented 'scale : float, default 1.0'" in p for p in problems), problems
    assert not any("eps" in p for p in problems), problems


def _with_search_path(cls, path):
    def make(**kwargs):
        kwargs["search_paths"] = [path, *kwargs.get("search_paths", [])]
        return cls(**kwargs)

    return make
