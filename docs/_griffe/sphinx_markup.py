"""A griffe extension for the API reference: the docstrings' Sphinx habits, in Markdown.

tcm's docstrings are in Google style with Sphinx's cross-reference roles
(``:func:`~tcm.models.add_tcm```), which mkdocstrings does not read. Before the docstrings are
parsed, a role becomes inline code (the last name alone with ``~``, as Sphinx shows it), an
``Example:`` section the ``Examples:`` section that renders doctests as code, and a paragraph's
closing ``::`` a colon followed by the indented block after it as a fenced code block.
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


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _literal_blocks(text: str) -> str:
    """``text::`` and the block indented under it -> ``text:`` and a fenced code block."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not LITERAL.search(line):
            out.append(line)
            continue
        out.append(LITERAL.sub(":", line))
        base = _indent(line)
        block_end = i
        while block_end < len(lines) and (
            not lines[block_end].strip() or _indent(lines[block_end]) > base
        ):
            block_end += 1
        block = lines[i:block_end]
        while block and not block[-1].strip():
            block.pop()
        body = [s for s in block if s.strip()]
        if not body:
            continue
        cut = min(_indent(s) for s in body)
        fence = " " * base + "```"
        code = [" " * base + s[cut:] if s.strip() else "" for s in block]
        while not code[0].strip():
            code.pop(0)
        out += ["", fence + "text", *code, fence, ""]
        i = block_end
    return "\n".join(out)


def to_markdown(text: str) -> str:
    """A docstring's Sphinx markup as Markdown (see the module docstring)."""
    text = ROLE.sub(_role, text)
    text = EXAMPLE.sub(r"\1Examples:", text)
    return _literal_blocks(text)


class SphinxMarkup(griffe.Extension):
    """Rewrites every docstring with :func:`to_markdown` as its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
