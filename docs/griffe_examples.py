"""Griffe extension for the API pages: adapt docstrings written for Sphinx to Markdown.

Two things in fastbp's NumPy-style docstrings do not render as intended with mkdocstrings,
and this fixes them before each docstring is parsed (the source files stay as they are):

* numpydoc names the section ``Examples``; an ``Example`` heading is unknown to griffe's
  NumPy parser, so its doctest lines would be rendered as Markdown text (``>>>`` as
  quotes, ``[...]`` outputs as links). It is renamed.
* Sphinx roles such as ``:func:`tensor``` or ``:class:`~fastbp.Tensor``` would show up
  literally; they become inline code (the name after the last dot for ``~`` targets).
* A paragraph ending in ``::`` (reStructuredText's "a literal block follows") ends in a
  single colon; the indented block after it is already a Markdown code block.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^([ \t]*)Example\n\1-{3,}[ \t]*$", re.MULTILINE)
_LITERAL_INTRO = re.compile(r"(\S)::[ \t]*\n(?=[ \t]*\n)")
_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")


def _role_to_code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxToMarkdown(griffe.Extension):
    """Rename ``Example`` sections and turn Sphinx roles into inline code."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None:
            return
        text = _SINGULAR.sub(r"\1Examples\n\1--------", docstring.value)
        text = _LITERAL_INTRO.sub(r"\1:\n", text)
        docstring.value = _ROLE.sub(_role_to_code, text)
