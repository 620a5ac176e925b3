"""A griffe extension for the API reference: the docstrings' Sphinx habits, in Markdown.

tcm's docstrings are in Google style with Sphinx's cross-reference roles
(``:func:`~tcm.models.add_tcm```), which mkdocstrings does not read. Before the docstrings are
parsed, a role becomes inline code (the last name alone with ``~``, as Sphinx shows it), an
``Example:`` section the ``Examples:`` section that renders doctests as code, and a paragraph's
closing ``::`` a colon (the indented block after it is then a Markdown code block).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
LITERAL = re.compile(r"::\s*$", re.MULTILINE)


def _role(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def to_markdown(text: str) -> str:
    """A docstring's Sphinx markup as Markdown (see the module docstring)."""
    text = ROLE.sub(_role, text)
    text = EXAMPLE.sub(r"\1Examples:", text)
    return LITERAL.sub(":", text)


class SphinxMarkup(griffe.Extension):
    """Rewrites every docstring with :func:`to_markdown` as its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
